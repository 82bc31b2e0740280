//! The evaluation progress bar: done / total, running, errors, mean so far, elapsed.

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
}

impl JobProgress {
    pub fn new(bar: ProgressBar, prefix: &'static str) -> Self {
        Self {
            bar,
            prefix,
            running: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rewards: Mutex::new((0.0, 0)),
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
        self.bar.set_message(format!(
            "{}running {}  errors {}  mean {mean}{throttled}",
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
    fn trial_retrying(&self, trial: &str, exception: &str, attempt: u32) {
        self.bar.println(format!(
            "retrying {trial} after {exception} (retry {attempt})"
        ));
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
        self.bar.inc(1);
        self.refresh();
    }
}
