//! Every attempt of the run, read back from the job folders: the incumbent's history, the
//! candidate's attempts so far, and the flakiness model. Nothing here is kept in memory between
//! looks, so a run killed anywhere rebuilds exactly what it had from what is on disk, and a trial
//! is counted once: by the one job folder that holds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use autoagent_eval::job::JobConfig;
use autoagent_harbor::JobDir;

use crate::accept::{FlakinessModel, Tallies};
use crate::evaluate::{passed, score};
use crate::experiment::{ExperimentId, JobKind};

/// One job folder's attempts.
#[derive(Debug, Clone, Default)]
pub struct JobAttempts {
    /// The harness commit it ran (`harness_commit` in its `config.json`).
    pub commit: String,
    /// Passes over attempts per task; infrastructure failures are no attempt, and a suspect
    /// trial is a failed one (see [`passed`]): the policy never sees a suspect pass.
    pub tallies: Tallies,
    /// The same, without the trials copied from the trial cache: they are another job's
    /// attempts of the same tree, already counted there.
    pub fresh: Tallies,
    /// Finished trials per task, infrastructure failures included: what a job's target counts.
    pub finished: BTreeMap<String, u32>,
    /// Rewards summed over the attempts in `tallies`.
    pub reward_sum: f64,
    /// Task-model spend of the trials that ran, per task: (sum, trials) over those with a
    /// known price.
    pub cost: BTreeMap<String, (f64, u32)>,
    /// Trials that ran (not copied from the trial cache).
    pub ran: u64,
    /// Task-model tokens (prompt + completion) of the trials that ran.
    pub tokens: u64,
    /// Trials copied from the trial cache.
    pub cached: u64,
    /// Trials the integrity monitor marked suspect, by name (counted as failures above).
    pub suspect: Vec<String>,
}

impl JobAttempts {
    /// Reads `dir`; an absent or unreadable folder has no attempts.
    pub fn read(dir: &Path) -> Self {
        let job = JobDir::new(dir);
        let commit = std::fs::read_to_string(job.config_path())
            .ok()
            .and_then(|t| serde_json::from_str::<JobConfig>(&t).ok())
            .and_then(|c| c.agent_kwargs.get("harness_commit").cloned())
            .unwrap_or_default();
        let mut out = Self {
            commit,
            ..Self::default()
        };
        for t in job.trial_results() {
            *out.finished.entry(t.task_name.clone()).or_default() += 1;
            let cached = t.cached_from.is_some();
            if cached {
                out.cached += 1;
            } else {
                out.ran += 1;
                if let Some(a) = &t.agent_result {
                    out.tokens += a.n_input_tokens.unwrap_or(0) + a.n_output_tokens.unwrap_or(0);
                }
                if let Some(c) = t.agent_result.as_ref().and_then(|a| a.cost_usd) {
                    let e = out.cost.entry(t.task_name.clone()).or_default();
                    e.0 += c;
                    e.1 += 1;
                }
            }
            if !t.is_infrastructure_error() {
                if t.is_suspect() {
                    out.suspect.push(t.trial_name.clone());
                }
                out.reward_sum += score(&t);
                out.tallies.record(&t.task_name, passed(&t));
                if !cached {
                    out.fresh.record(&t.task_name, passed(&t));
                }
            }
        }
        out
    }

    /// Finished trials of `task`.
    pub fn finished(&self, task: &str) -> u32 {
        self.finished.get(task).copied().unwrap_or(0)
    }
}

/// The train-side job folders of the run (evaluations, incumbent top-ups, spot checks).
pub struct History {
    jobs: Vec<(ExperimentId, JobKind, PathBuf, JobAttempts)>,
}

impl History {
    /// Reads every train-side job folder under `jobs_dir`.
    pub fn load(jobs_dir: &Path) -> Self {
        let mut jobs = Vec::new();
        for e in std::fs::read_dir(jobs_dir).into_iter().flatten().flatten() {
            let Some((id, kind)) = ExperimentId::parse_job(&e.file_name().to_string_lossy()) else {
                continue;
            };
            if kind == JobKind::Holdout {
                continue;
            }
            let attempts = JobAttempts::read(&e.path());
            jobs.push((id, kind, e.path(), attempts));
        }
        jobs.sort_by(|a, b| a.2.cmp(&b.2));
        Self { jobs }
    }

    /// The attempts of one job (none when it does not exist yet).
    pub fn job(&self, id: ExperimentId, kind: JobKind) -> JobAttempts {
        self.jobs
            .iter()
            .find(|(i, k, _, _)| *i == id && *k == kind)
            .map(|(_, _, _, a)| a.clone())
            .unwrap_or_default()
    }

    /// The incumbent's history when experiment `accepted_by` made `commit` the incumbent: the
    /// attempts that got it kept, and every other attempt of the same commit since (the top-ups
    /// of later comparisons). Spot checks ran a working tree, not a commit: an identical tree's
    /// spot-check attempts reach a comparison through the trial cache instead.
    pub fn incumbent(&self, accepted_by: ExperimentId, commit: &str) -> (Tallies, Tallies) {
        let accepted = self.job(accepted_by, JobKind::Train).tallies;
        let mut since = Tallies::new();
        for (id, kind, _, a) in &self.jobs {
            if a.commit == commit && !(*id == accepted_by && *kind == JobKind::Train) {
                since.merge(&a.tallies);
            }
        }
        (accepted, since)
    }

    /// Attempts of `commit` on each task, outside job `except`: where the next attempt index of
    /// that tree starts in a new job (the trial cache's key).
    pub fn attempts_of(
        &self,
        commit: &str,
        except: (ExperimentId, JobKind),
    ) -> BTreeMap<String, u32> {
        let mut out: BTreeMap<String, u32> = BTreeMap::new();
        for (id, kind, _, a) in &self.jobs {
            if a.commit == commit && (*id, *kind) != except {
                for (task, n) in &a.finished {
                    *out.entry(task.clone()).or_default() += n;
                }
            }
        }
        out
    }

    /// The flakiness model from every attempt of every tree: one entry per commit (a commit's
    /// evaluation and its top-ups are one tree), one per spot check.
    pub fn flakiness(&self, prior: f64) -> FlakinessModel {
        let mut trees: BTreeMap<String, Tallies> = BTreeMap::new();
        for (_, kind, path, a) in &self.jobs {
            let key = match kind {
                JobKind::Spot(_) => path.display().to_string(),
                _ if a.commit.is_empty() => path.display().to_string(),
                _ => a.commit.clone(),
            };
            trees.entry(key).or_default().merge(&a.fresh);
        }
        let mut model = FlakinessModel::new(prior);
        for (tree, t) in &trees {
            model.set_tree(tree, t);
        }
        model
    }

    /// The mean task-model cost of a trial of `task`, from every trial that ran with a known
    /// price; the mean over every task when `task` has none; `None` with no priced trial.
    pub fn trial_cost(&self, task: Option<&str>) -> Option<f64> {
        let (mut sum, mut n, mut all_sum, mut all_n) = (0.0, 0u32, 0.0, 0u32);
        for (_, _, _, a) in &self.jobs {
            for (t, (c, k)) in &a.cost {
                all_sum += c;
                all_n += k;
                if Some(t.as_str()) == task {
                    sum += c;
                    n += k;
                }
            }
        }
        if n > 0 {
            Some(sum / f64::from(n))
        } else if all_n > 0 {
            Some(all_sum / f64::from(all_n))
        } else {
            None
        }
    }

    /// Task-model tokens of every trial that ran (holdout jobs aside).
    pub fn tokens(&self) -> u64 {
        self.jobs.iter().map(|(_, _, _, a)| a.tokens).sum()
    }

    /// Trials experiment `id` ran (every job of it but the holdout, cache hits excluded).
    pub fn ran_by(&self, id: ExperimentId) -> u64 {
        self.jobs
            .iter()
            .filter(|(i, _, _, _)| *i == id)
            .map(|(_, _, _, a)| a.ran)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::Tally;
    use pretty_assertions::assert_eq;

    /// A finished trial of task `t` with `reward`, suspect or not.
    fn trial(job: &Path, name: &str, reward: f64, suspect: bool) {
        let mut v = serde_json::json!({
            "id": name, "task_name": "t", "trial_name": name, "trial_uri": "file:///x",
            "task_id": {"path": "/t"}, "source": null, "task_checksum": "c", "config": {},
            "agent_info": {"name": "harness", "version": "1", "model_info": null},
            "agent_result": null, "verifier_result": {"rewards": {"reward": reward}},
            "verifier_environment_mode": "shared", "exception_info": null,
            "started_at": null, "finished_at": null, "environment_setup": null,
            "agent_setup": null, "agent_execution": null, "verifier": null, "step_results": null
        });
        if suspect {
            v["integrity"] = "suspect".into();
            v["integrity_evidence"] = serde_json::json!(["wrote /logs/verifier/reward.txt"]);
        }
        std::fs::create_dir_all(job.join(name)).unwrap();
        std::fs::write(job.join(name).join("result.json"), v.to_string()).unwrap();
    }

    #[test]
    fn a_suspect_pass_is_a_failed_attempt_and_is_named() {
        let d = tempfile::tempdir().unwrap();
        trial(d.path(), "t__a", 1.0, false);
        trial(d.path(), "t__b", 1.0, true);
        trial(d.path(), "t__c", 0.0, false);
        let a = JobAttempts::read(d.path());
        assert_eq!(a.tallies.get("t"), Tally::new(1, 3));
        assert_eq!(a.fresh.get("t"), Tally::new(1, 3));
        assert_eq!(a.reward_sum, 1.0);
        assert_eq!(a.suspect, vec!["t__b".to_owned()]);
        assert_eq!(a.finished("t"), 3);
        assert_eq!(
            crate::evaluate::suspect_note(&a.suspect).as_deref(),
            Some("1 suspect trial(s) counted as failures: t__b")
        );
    }
}
