//! What the meta-agent's tools may see: the harness folder, the ledger, and the train side of
//! the job folders. It is built from [`TrainTasks`], so a holdout task is not hidden by a check
//! somewhere but absent: a holdout job is not a train job, and a holdout trial has no train task.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use autoagent_agent::tools::ToolError;
use autoagent_harbor::{JobDir, Task, Trajectory, TrialDir, TrialResult};
use tokio_util::sync::CancellationToken;

use crate::evaluate::Evaluator;
use crate::experiment::{ExperimentId, JobKind};
use crate::split::TrainTasks;

pub struct MetaContext {
    pub harness_dir: PathBuf,
    pub jobs_dir: PathBuf,
    pub ledger_path: PathBuf,
    pub train: TrainTasks,
    pub evaluator: Arc<Evaluator>,
    /// The experiment this session proposes for.
    pub experiment: ExperimentId,
    /// Attempts per task of a spot check, unless the call asks for others.
    pub spot_attempts: u32,
    /// The flakiness model's prior (`[accept] flaky_prior`), for the task-stability digest.
    pub flaky_prior: f64,
    pub cancel: CancellationToken,
}

/// The one answer for a task that is not a train task, holdout or not.
pub(crate) fn no_such_task(task: &str) -> ToolError {
    ToolError::RespondToModel(format!("no train task named `{task}`"))
}

/// The one answer for a trial that is not a train trial, holdout or not.
pub(crate) fn no_such_trial(trial: &str) -> ToolError {
    ToolError::RespondToModel(format!("no trial named `{trial}` (list_trials shows them)"))
}

impl MetaContext {
    pub(crate) fn task(&self, task: &str) -> Result<&Task, ToolError> {
        self.train.get(task).ok_or_else(|| no_such_task(task))
    }

    /// The train-task job folders (evaluations and spot checks), newest first.
    pub(crate) fn train_jobs(&self) -> Vec<(ExperimentId, JobKind, PathBuf)> {
        let mut jobs: Vec<(ExperimentId, JobKind, PathBuf)> = std::fs::read_dir(&self.jobs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let (id, kind) = ExperimentId::parse_job(&e.file_name().to_string_lossy())?;
                match kind {
                    JobKind::Train | JobKind::Incumbent | JobKind::Spot(_) => {
                        Some((id, kind, e.path()))
                    }
                    JobKind::Holdout => None,
                }
            })
            .collect();
        jobs.sort_by(|a, b| b.2.cmp(&a.2));
        jobs
    }

    /// The train evaluation of experiment `id`, when it ran.
    pub(crate) fn evaluation(&self, id: ExperimentId) -> Option<PathBuf> {
        self.train_jobs()
            .into_iter()
            .find(|(i, kind, _)| *i == id && *kind == JobKind::Train)
            .map(|(_, _, p)| p)
    }

    /// The trials of a job that belong to train tasks, by task then trial name.
    pub(crate) fn trials_of(&self, job: &Path) -> Vec<TrialResult> {
        let mut out = JobDir::new(job).trial_results();
        out.retain(|t| self.train.contains(&t.task_name));
        out
    }

    /// A trial folder by trial name: in a train job, of a train task.
    pub(crate) fn trial_dir(&self, trial: &str) -> Result<PathBuf, ToolError> {
        let plain = Path::new(trial)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
            && !trial.contains('/');
        if !plain || trial.is_empty() {
            return Err(no_such_trial(trial));
        }
        for (_, _, job) in self.train_jobs() {
            let d = job.join(trial);
            if let Ok(r) = TrialDir::new(&d).read_result()
                && self.train.contains(&r.task_name)
            {
                return Ok(d);
            }
        }
        Err(no_such_trial(trial))
    }

    /// `rel` inside harness/, refusing absolute paths, `..`, `.git`, git control files and
    /// anything that resolves (through symlinks) outside.
    pub fn harness_path(&self, rel: &str) -> Result<PathBuf, ToolError> {
        let refuse = |why: &str| {
            Err(ToolError::RespondToModel(format!(
                "refused: {rel:?} {why}; paths are relative to harness/ and stay inside it"
            )))
        };
        let p = Path::new(rel);
        if rel.is_empty() {
            return Ok(self.harness_dir.clone());
        }
        if p.is_absolute() {
            return refuse("is absolute");
        }
        for c in p.components() {
            match c {
                Component::ParentDir => return refuse("goes up with `..`"),
                Component::Normal(n) if n == ".git" => return refuse("is inside .git"),
                // Git's own control files would let a change hide from the leak guard.
                Component::Normal(n) if n == ".gitignore" || n == ".gitattributes" => {
                    return refuse("is a git control file");
                }
                Component::Normal(_) | Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return refuse("is absolute"),
            }
        }
        let root = self
            .harness_dir
            .canonicalize()
            .map_err(|e| ToolError::RespondToModel(format!("harness dir: {e}")))?;
        let full = self.harness_dir.join(p);
        // The nearest existing ancestor (the path itself when it exists) must resolve inside.
        let mut probe = full.clone();
        loop {
            if std::fs::symlink_metadata(&probe).is_ok() {
                let real = probe.canonicalize().map_err(|_| {
                    ToolError::RespondToModel(format!("refused: {rel:?} is a broken link"))
                })?;
                if !real.starts_with(&root) {
                    return refuse("resolves outside harness/ (a symlink)");
                }
                break;
            }
            if !probe.pop() {
                return refuse("cannot be resolved");
            }
        }
        Ok(full)
    }
}

/// The harness's files, relative to `root`, without `.git`.
pub(crate) fn list_files(dir: &Path, root: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        if p.is_dir() {
            list_files(&p, root, out);
        } else {
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
}

pub(crate) fn read_trajectory_file(trial_dir: &Path) -> Result<Trajectory, ToolError> {
    TrialDir::new(trial_dir)
        .read_trajectory()
        .map_err(|e| match e {
            autoagent_harbor::fs::ReadError::Io { .. } => ToolError::RespondToModel(
                "this trial has no trajectory (the agent did not start)".into(),
            ),
            autoagent_harbor::fs::ReadError::Json { source, .. } => {
                ToolError::RespondToModel(format!("unreadable trajectory: {}", source.inner()))
            }
        })
}

pub(crate) fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    autoagent_harbor::text::cut_middle(s, max, "[... truncated ...]")
}

pub(crate) fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
