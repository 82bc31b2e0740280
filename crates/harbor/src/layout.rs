//! Harbor's job and trial directories (spec §7): where every file lives, and the one place
//! that reads and writes the `result.json`s.
//!
//! ```text
//! <jobs_dir>/<job_name>/           JobDir
//!   config.json  result.json  job.log
//!   <trial_name>/                  TrialDir
//!     config.json  result.json  trial.log  exception.txt
//!     agent/       = /logs/agent      (trajectory.json, oracle.txt, exit-code.txt)
//!     verifier/    = /logs/verifier   (reward.txt | reward.json, test-stdout.txt)
//!     artifacts/   manifest.json, logs/artifacts/ = /logs/artifacts
//! ```

use std::path::{Path, PathBuf};

use crate::atif::Trajectory;
use crate::fs::{ReadError, read_shared, read_shared_json, write_atomic};
use crate::result::{JobResult, TrialResult};

const RESULT: &str = "result.json";
const CONFIG: &str = "config.json";

/// A job's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDir(PathBuf);

impl JobDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// The job's `config.json`: what the job is, which a resumed job must match.
    pub fn config_path(&self) -> PathBuf {
        self.0.join(CONFIG)
    }
    pub fn result_path(&self) -> PathBuf {
        self.0.join(RESULT)
    }
    pub fn log_path(&self) -> PathBuf {
        self.0.join("job.log")
    }
    /// The dir of the trial with this name (which need not exist yet).
    pub fn trial(&self, name: &str) -> TrialDir {
        TrialDir(self.0.join(name))
    }

    pub fn read_result(&self) -> Result<JobResult, ReadError> {
        read_shared_json(&self.result_path())
    }
    /// Rewrites the job's `result.json` whole (temp file and rename).
    pub fn write_result(&self, result: &JobResult) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(result).map_err(std::io::Error::other)?;
        write_atomic(&self.result_path(), &bytes)
    }

    /// Every trial dir of the job (its sub-directories), sorted by name.
    pub fn trial_dirs(&self) -> std::io::Result<Vec<TrialDir>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(&self.0)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(TrialDir(path));
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// The results of the job's finished trials (those with a readable `result.json`),
    /// sorted by task then trial name. A job dir that does not exist has none.
    pub fn trial_results(&self) -> Vec<TrialResult> {
        let mut out: Vec<TrialResult> = self
            .trial_dirs()
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.read_result().ok())
            .collect();
        sort_trials(&mut out);
        out
    }
}

/// Sorts trial results by task, then trial name: the order every listing of a job uses.
pub fn sort_trials(trials: &mut [TrialResult]) {
    trials.sort_by(|a, b| (&a.task_name, &a.trial_name).cmp(&(&b.task_name, &b.trial_name)));
}

/// One trial's directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrialDir(PathBuf);

impl TrialDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// The trial's name: its dir's name.
    pub fn name(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
    pub fn config_path(&self) -> PathBuf {
        self.0.join(CONFIG)
    }
    pub fn result_path(&self) -> PathBuf {
        self.0.join(RESULT)
    }
    pub fn log_path(&self) -> PathBuf {
        self.0.join("trial.log")
    }
    /// `exception.txt`: the first exception's type, message and detail.
    pub fn exception_path(&self) -> PathBuf {
        self.0.join("exception.txt")
    }
    /// The host side of `/logs/agent`.
    pub fn agent_dir(&self) -> PathBuf {
        self.0.join("agent")
    }
    /// The host side of `/logs/verifier`.
    pub fn verifier_dir(&self) -> PathBuf {
        self.0.join("verifier")
    }
    /// `artifacts/`: the task's artifacts, mirrored, and `manifest.json`.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.0.join("artifacts")
    }
    /// `steps/<name>/`: a multi-step trial's `agent/`, `verifier/` and `artifacts/` of that
    /// step.
    pub fn step_dir(&self, step: &str) -> PathBuf {
        self.0.join("steps").join(step)
    }
    pub fn trajectory_path(&self) -> PathBuf {
        self.agent_dir().join("trajectory.json")
    }
    /// `verifier/test-stdout.txt`: what `tests/test.sh` printed.
    pub fn test_stdout_path(&self) -> PathBuf {
        self.verifier_dir().join("test-stdout.txt")
    }

    /// The dirs bind-mounted into the sandbox: (host dir, path in the sandbox).
    pub fn mounts(&self) -> [(PathBuf, &'static str); 3] {
        [
            (self.agent_dir(), "/logs/agent"),
            (self.verifier_dir(), "/logs/verifier"),
            (
                self.artifacts_dir().join("logs/artifacts"),
                "/logs/artifacts",
            ),
        ]
    }

    /// The trial's `result.json`: written last, so a trial without one did not finish.
    pub fn read_result(&self) -> Result<TrialResult, ReadError> {
        read_shared_json(&self.result_path())
    }
    /// Writes the trial's `result.json` whole (temp file and rename): resume relies on a
    /// result being either complete or absent.
    pub fn write_result(&self, result: &TrialResult) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(result).map_err(std::io::Error::other)?;
        write_atomic(&self.result_path(), &bytes)
    }
    /// The agent's ATIF trajectory (`agent/trajectory.json`), read without following links.
    /// `agent/trajectory.json`; for a multi-step trial, its steps' trajectories in step order
    /// as one (the later ones' steps appended and numbered on, each step's start noted in
    /// `notes`).
    pub fn read_trajectory(&self) -> Result<Trajectory, ReadError> {
        let direct = match Trajectory::read(&self.trajectory_path()) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let steps = self.step_names();
        if steps.is_empty() {
            return Err(direct);
        }
        let mut merged: Option<Trajectory> = None;
        let mut notes = Vec::new();
        let mut last_err = None;
        for step in steps {
            let t = match Trajectory::read(&self.step_dir(&step).join("agent/trajectory.json")) {
                Ok(t) => t,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let m = merged.get_or_insert_with(|| Trajectory {
                steps: Vec::new(),
                ..t.clone()
            });
            notes.push(format!(
                "trial step `{step}` starts at step {}",
                m.steps.len() + 1
            ));
            for mut s in t.steps {
                s.step_id = m.steps.len() as u64 + 1;
                m.steps.push(s);
            }
        }
        match merged {
            Some(mut m) => {
                m.notes = Some(notes.join("; "));
                Ok(m)
            }
            None => Err(last_err.unwrap_or(direct)),
        }
    }
    /// `verifier/test-stdout.txt`, read without following links; for a multi-step trial, each
    /// step's, under a line naming the step.
    pub fn read_test_stdout(&self) -> std::io::Result<String> {
        let direct = read_shared(&self.test_stdout_path());
        let steps = self.step_names();
        if direct.is_ok() || steps.is_empty() {
            return direct;
        }
        let mut out = String::new();
        for step in steps {
            let text = read_shared(&self.step_dir(&step).join("verifier/test-stdout.txt"))
                .unwrap_or_else(|_| "(no verifier output)\n".to_owned());
            out.push_str(&format!("== step {step} ==\n{text}"));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }
    /// The steps a multi-step trial ran, in order: from `result.json` when it says, else the
    /// dirs under `steps/` by name. Empty for a single-step trial.
    pub fn step_names(&self) -> Vec<String> {
        if let Ok(r) = self.read_result()
            && let Some(steps) = r.step_results
        {
            return steps.into_iter().map(|s| s.step_name).collect();
        }
        let mut names: Vec<String> = std::fs::read_dir(self.0.join("steps"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(task: &str, name: &str) -> TrialResult {
        serde_json::from_value(serde_json::json!({
            "id": "x", "task_name": task, "trial_name": name, "trial_uri": "file:///x",
            "task_id": {"path": "tasks/x"}, "source": null, "task_checksum": "0",
            "config": {}, "agent_info": {"name": "nop", "version": "1", "model_info": null},
            "agent_result": null, "verifier_result": null, "verifier_environment_mode": "shared",
            "exception_info": null, "started_at": null, "finished_at": null,
            "environment_setup": null, "agent_setup": null, "agent_execution": null,
            "verifier": null, "step_results": null
        }))
        .unwrap()
    }

    #[test]
    fn trial_results_are_read_sorted_and_unfinished_trials_skipped() {
        let d = tempfile::tempdir().unwrap();
        let job = JobDir::new(d.path());
        for (task, name) in [("b", "b__2"), ("a", "a__9"), ("a", "a__1")] {
            let t = job.trial(name);
            std::fs::create_dir_all(t.path()).unwrap();
            t.write_result(&trial(task, name)).unwrap();
        }
        std::fs::create_dir_all(job.trial("c__unfinished").path()).unwrap();
        let names: Vec<String> = job
            .trial_results()
            .into_iter()
            .map(|t| t.trial_name)
            .collect();
        assert_eq!(names, ["a__1", "a__9", "b__2"]);
        assert_eq!(job.trial_dirs().unwrap().len(), 4);
        let e = job.trial("c__unfinished").read_result().unwrap_err();
        assert!(e.is_missing(), "{e}");
        assert!(
            JobDir::new(d.path().join("none"))
                .trial_results()
                .is_empty()
        );
    }

    #[test]
    fn a_multi_step_trial_reads_as_one_trajectory_and_one_verifier_output_in_step_order() {
        let d = tempfile::tempdir().unwrap();
        let t = TrialDir::new(d.path().join("ms__1"));
        let traj = |text: &str| {
            serde_json::json!({
                "schema_version": "ATIF-v1.6",
                "agent": {"name": "a", "version": "1"},
                "steps": [
                    {"step_id": 1, "source": "user", "message": format!("{text} 1")},
                    {"step_id": 2, "source": "agent", "message": format!("{text} 2")}
                ]
            })
            .to_string()
        };
        // "zeta" runs before "alpha": the order is result.json's, not the names'.
        for (step, out) in [("zeta", "first"), ("alpha", "second")] {
            let s = t.step_dir(step);
            std::fs::create_dir_all(s.join("agent")).unwrap();
            std::fs::create_dir_all(s.join("verifier")).unwrap();
            std::fs::write(s.join("agent/trajectory.json"), traj(out)).unwrap();
            std::fs::write(s.join("verifier/test-stdout.txt"), format!("{out} ok")).unwrap();
        }
        let mut r = trial("ms", "ms__1");
        r.step_results = Some(vec![
            crate::result::StepResult::new("zeta"),
            crate::result::StepResult::new("alpha"),
        ]);
        t.write_result(&r).unwrap();
        let merged = t.read_trajectory().unwrap();
        let ids: Vec<u64> = merged.steps.iter().map(|s| s.step_id).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let text = serde_json::to_string(&merged.steps).unwrap();
        assert!(text.find("first 2") < text.find("second 1"), "{text}");
        assert_eq!(
            merged.notes.as_deref(),
            Some("trial step `zeta` starts at step 1; trial step `alpha` starts at step 3")
        );
        assert_eq!(
            t.read_test_stdout().unwrap(),
            "== step zeta ==\nfirst ok\n== step alpha ==\nsecond ok\n"
        );
        // A single-step trial without a trajectory is still an error.
        let single = TrialDir::new(d.path().join("s__1"));
        std::fs::create_dir_all(single.path()).unwrap();
        assert!(single.read_trajectory().is_err());
    }

    #[test]
    fn a_planted_symlink_is_not_read_as_a_result() {
        let d = tempfile::tempdir().unwrap();
        let t = TrialDir::new(d.path().join("t__1"));
        std::fs::create_dir_all(t.path()).unwrap();
        let elsewhere = d.path().join("elsewhere.json");
        std::fs::write(&elsewhere, serde_json::to_vec(&trial("a", "t__1")).unwrap()).unwrap();
        std::os::unix::fs::symlink(&elsewhere, t.result_path()).unwrap();
        assert!(t.read_result().is_err());
    }
}
