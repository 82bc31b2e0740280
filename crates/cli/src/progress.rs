//! The evaluation progress bar: done / total, running, errors, mean so far, elapsed, and, once
//! trials run on more than one Docker host, how many each host runs and has finished.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use autoagent_eval::JobObserver;
use autoagent_harbor::TrialResult;
use indicatif::{ProgressBar, ProgressStyle};

pub const BAR_TEMPLATE: &str = "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len}  {msg}";

/// Draws a job's progress on `bar`; `prefix` starts its message (e.g. "evaluating: ").
pub struct JobProgress {
    bar: ProgressBar,
    prefix: &'static str,
    running: AtomicU64,
    errors: AtomicU64,
    rewards: Mutex<(f64, u64)>,
    hosts: Mutex<Hosts>,
}

/// Trials per host: where each running trial is, and each host's running and finished counts.
#[derive(Default)]
struct Hosts {
    of_trial: HashMap<String, String>,
    /// Host URL → (running, finished).
    counts: BTreeMap<String, (u64, u64)>,
}

impl Hosts {
    fn leave(&mut self, trial: &str) -> Option<String> {
        let host = self.of_trial.remove(trial)?;
        if let Some(c) = self.counts.get_mut(&host) {
            c.0 = c.0.saturating_sub(1);
        }
        Some(host)
    }

    /// `  hosts: docker.sock 2 running 5 done, dockerd2.sock 1 running 3 done`, once there are
    /// two hosts to tell apart.
    fn line(&self) -> String {
        if self.counts.len() < 2 {
            return String::new();
        }
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(url, (running, done))| {
                let label = url
                    .parse::<autoagent_sandbox::docker::DockerHost>()
                    .map(|h| h.label())
                    .unwrap_or_else(|_| url.clone());
                format!("{label} {running} running {done} done")
            })
            .collect();
        format!("  hosts: {}", parts.join(", "))
    }
}

impl JobProgress {
    pub fn new(bar: ProgressBar, prefix: &'static str) -> Self {
        Self {
            bar,
            prefix,
            running: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rewards: Mutex::new((0.0, 0)),
            hosts: Mutex::new(Hosts::default()),
        }
    }

    fn refresh(&self) {
        let (sum, n) = self.rewards.lock().map(|r| *r).unwrap_or((0.0, 0));
        let mean = if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.3}", sum / n as f64)
        };
        // A provider pacing us (429/529 or an exhausted rate-limit budget) explains a slow run.
        let throttled = if autoagent_llm::governor::throttled() {
            "  throttled"
        } else {
            ""
        };
        let hosts = self.hosts.lock().map(|h| h.line()).unwrap_or_default();
        self.bar.set_message(format!(
            "{}running {}  errors {}  mean {mean}{throttled}{hosts}",
            self.prefix,
            self.running.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed)
        ));
    }
}

impl JobObserver for JobProgress {
    fn job_started(&self, total: usize, already_done: usize) {
        self.bar.set_style(
            ProgressStyle::with_template(BAR_TEMPLATE)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_length(total as u64);
        self.bar.set_position(already_done as u64);
        // One bar serves job after job (the optimizer's evaluations): counts start over.
        if let Ok(mut r) = self.rewards.lock() {
            *r = (0.0, 0);
        }
        self.errors.store(0, Ordering::Relaxed);
        if let Ok(mut h) = self.hosts.lock() {
            *h = Hosts::default();
        }
        if already_done > 0 {
            self.bar.println(format!(
                "resuming: {already_done} of {total} trials already done"
            ));
        }
        self.refresh();
    }
    fn trial_started(&self, _trial: &str, _task: &str) {
        self.running.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }
    fn trial_host(&self, trial: &str, host: &str) {
        if let Ok(mut h) = self.hosts.lock() {
            h.leave(trial);
            h.of_trial.insert(trial.to_owned(), host.to_owned());
            h.counts.entry(host.to_owned()).or_default().0 += 1;
        }
        self.refresh();
    }
    fn trial_retrying(&self, trial: &str, exception: &str, attempt: u32) {
        let on = self
            .hosts
            .lock()
            .ok()
            .and_then(|mut h| h.leave(trial))
            .map(|host| format!(" on {host}"))
            .unwrap_or_default();
        self.bar.println(format!(
            "retrying {trial} after {exception}{on} (retry {attempt})"
        ));
        self.refresh();
    }
    fn trial_finished(&self, r: &TrialResult) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        if r.exception_info.is_some() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut m) = self.rewards.lock() {
            m.0 += r.reward().unwrap_or(0.0);
            m.1 += 1;
        }
        if let Ok(mut h) = self.hosts.lock()
            && let Some(host) = h.leave(&r.trial_name)
            && let Some(c) = h.counts.get_mut(&host)
        {
            c.1 += 1;
        }
        self.bar.inc(1);
        self.refresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_trials_per_host() {
        let p = JobProgress::new(ProgressBar::hidden(), "");
        p.job_started(4, 0);
        let a = "unix:///var/run/docker.sock";
        let b = "unix:///run/autoagent-dockerd2.sock";
        for (t, h) in [("t1", a), ("t2", b), ("t3", b)] {
            p.trial_started(t, "task");
            p.trial_host(t, h);
        }
        // t3's host is lost: it is retried and lands on the other host.
        p.trial_retrying("t3", "SandboxHostLostError", 1);
        p.trial_host("t3", a);
        let done: TrialResult = serde_json::from_value(serde_json::json!({
            "id": "x", "task_name": "task", "trial_name": "t2", "trial_uri": "",
            "task_id": {"path": ""}, "task_checksum": "", "config": {},
            "agent_info": {"name": "oracle", "version": "1"},
            "verifier_environment_mode": "shared"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        p.trial_finished(&done);
        let line = p.hosts.lock().map(|h| h.line()).unwrap_or_default();
        assert_eq!(
            line,
            "  hosts: autoagent-dockerd2.sock 0 running 1 done, docker.sock 2 running 0 done"
        );
    }
}
