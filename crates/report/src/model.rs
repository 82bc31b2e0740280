//! The dashboard's data model, read from a workspace's files (or from a plain jobs dir, ours or
//! Harbor's): the run's summary and phase, the experiments, the task × experiment matrix with
//! attempts per cell and flaky tasks marked, the trials of a job, and one trial in full.
//!
//! Files are read through their on-disk formats only (`results.tsv` with the ledger's parser,
//! `.autoagent/state.json` and `autoagent.toml` as loose JSON/TOML, `jobs/*/*/result.json` as
//! Harbor's trial result), so a format that gains fields, or a run writing them right now, does
//! not break a reader. Every path built from a name given by a caller goes through
//! [`resolve_inside`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use autoagent_optimize::ledger::{Ledger, LedgerError, Status};
use serde::Serialize;
use serde_json::Value;

use crate::git::Repo;
use crate::{experiment_of, plot_data};

/// Where a workspace keeps what a run writes besides the ledger.
pub const STATE_DIR: &str = ".autoagent";
/// The STOP file: `optimize` stops at the next experiment boundary when it exists.
pub const STOP_FILE: &str = "STOP";
/// The steering note the next meta-agent session reads after `program.md`.
pub const STEERING_FILE: &str = ".autoagent/steering.md";
/// The run's log.
pub const LOG_FILE: &str = ".autoagent/optimize.log";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "{0}: neither a workspace (results.tsv, autoagent.toml or harness/) nor a jobs dir (job folders of trials)"
    )]
    NotAWorkspace(PathBuf),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{path}: refused: {why}")]
    Refused { path: String, why: &'static str },
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a folder given to the dashboard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An optimization workspace: ledger, state, harness history and `jobs/`.
    Workspace,
    /// A folder of job folders (`autoagent eval` or `harbor run` output): tasks and trials only.
    Jobs,
}

/// A folder the dashboard reads.
#[derive(Debug, Clone)]
pub struct Source {
    pub root: PathBuf,
    pub kind: Kind,
}

fn is_trial_dir(p: &Path) -> bool {
    p.join("result.json").is_file() || p.join("config.json").is_file() || p.join("agent").is_dir()
}

fn is_job_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && is_trial_dir(&e.path()))
        || p.join("result.json").is_file()
}

impl Source {
    /// A workspace when the folder has `results.tsv`, `autoagent.toml` or `harness/`; a jobs
    /// dir when it holds job folders; otherwise an error naming the folder.
    pub fn open(root: &Path) -> Result<Self, ModelError> {
        let root = root.canonicalize().map_err(|source| ModelError::Io {
            path: root.to_owned(),
            source,
        })?;
        let kind = if root.join(crate::LEDGER_FILE).is_file()
            || root.join("autoagent.toml").is_file()
            || root.join("harness").is_dir()
        {
            Kind::Workspace
        } else if std::fs::read_dir(&root)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_type().is_ok_and(|t| t.is_dir()) && is_job_dir(&e.path()))
        {
            Kind::Jobs
        } else {
            return Err(ModelError::NotAWorkspace(root));
        };
        Ok(Self { root, kind })
    }

    /// The folder of job folders.
    pub fn jobs_dir(&self) -> PathBuf {
        match self.kind {
            Kind::Workspace => self.root.join("jobs"),
            Kind::Jobs => self.root.clone(),
        }
    }

    pub fn harness(&self) -> Repo {
        Repo::new(&self.root.join("harness"), crate::git::DEFAULT_TIMEOUT)
    }

    pub fn ledger(&self) -> Result<Ledger, ModelError> {
        match self.kind {
            Kind::Workspace => Ok(Ledger::load(&self.root.join(crate::LEDGER_FILE))?),
            Kind::Jobs => Ok(Ledger {
                path: self.root.join(crate::LEDGER_FILE),
                rows: Vec::new(),
            }),
        }
    }
}

/// `root` joined with `rel`, refused unless every component is a plain name (no `..`, no root,
/// no `.`), the result exists, and no component on the way is a symlink: a URL can name
/// nothing outside `root`, even through a link planted inside it.
pub fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, ModelError> {
    let refused = |why| ModelError::Refused {
        path: rel.to_owned(),
        why,
    };
    if rel.is_empty() {
        return Err(refused("an empty path"));
    }
    if rel.contains('\0') || rel.contains('\\') {
        return Err(refused("a path with a NUL or a backslash"));
    }
    let mut path = root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(name) => {
                path.push(name);
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(refused("a symlink"));
                    }
                    Ok(_) => {}
                    Err(_) => return Err(ModelError::NotFound(rel.to_owned())),
                }
            }
            Component::ParentDir => return Err(refused("a path with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused("an absolute path"));
            }
            Component::CurDir => return Err(refused("a path with `.`")),
        }
    }
    Ok(path)
}

/// One name (a job, a trial): a single plain path component.
fn check_name(name: &str) -> Result<(), ModelError> {
    if name.contains("..") {
        return Err(ModelError::Refused {
            path: name.to_owned(),
            why: "a path with `..`",
        });
    }
    if name.is_empty()
        || name.contains('/')
        || name.contains('\\')
        || name == "."
        || name == ".."
        || name.contains('\0')
    {
        return Err(ModelError::Refused {
            path: name.to_owned(),
            why: "not a plain name",
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run.

/// What `.autoagent/state.json` says about an unfinished experiment, read loosely: `phase` may
/// be a string (`"meta"`) or a tagged object (`{"evaluate": {…}}`, `{"kind": "evaluate"}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct State {
    pub experiment: Option<u32>,
    pub phase: Option<String>,
    pub commit: Option<String>,
    pub description: Option<String>,
    pub rationale: Option<String>,
    pub meta_cost_usd: Option<f64>,
    pub started_unix: Option<u64>,
}

fn phase_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => ["kind", "name", "phase", "type"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str).map(str::to_owned))
            .or_else(|| (m.len() == 1).then(|| m.keys().next().cloned()).flatten()),
        _ => None,
    }
}

/// Looks for `key` at the top of the state, then inside a tagged phase object.
fn state_field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null()).or_else(|| {
        let phase = v.get("phase")?.as_object()?;
        phase
            .get(key)
            .or_else(|| phase.values().find_map(|inner| inner.get(key)))
            .filter(|x| !x.is_null())
    })
}

impl State {
    pub fn load(root: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(root.join(STATE_DIR).join("state.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        let s = |k: &str| {
            state_field(&v, k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Some(Self {
            experiment: state_field(&v, "experiment")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            phase: v.get("phase").and_then(phase_name),
            commit: s("commit"),
            description: s("description").filter(|d| !d.is_empty()),
            rationale: s("rationale").filter(|d| !d.is_empty()),
            meta_cost_usd: state_field(&v, "meta_cost_usd").and_then(Value::as_f64),
            started_unix: state_field(&v, "started_unix").and_then(Value::as_u64),
        })
    }
}

/// The phase the run is in, as the files tell it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    /// `idle` (no experiment under way), `meta`, `evaluate`, `deciding`, or the state file's
    /// own word for a phase this reader does not know.
    pub name: String,
    /// For people: "exp-0003: meta-agent session", "exp-0003: evaluating 4 of 6 trials".
    pub text: String,
    pub experiment: Option<u32>,
    pub trials_done: Option<u64>,
    pub trials_total: Option<u64>,
}

/// A job's progress: finished trials and the total it will run (from its `result.json`).
pub fn job_progress(job_dir: &Path) -> (u64, Option<u64>) {
    let done = std::fs::read_dir(job_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("result.json").is_file())
        .count() as u64;
    let total = std::fs::read_to_string(job_dir.join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("n_total_trials").and_then(Value::as_u64));
    (done, total)
}

fn phase_of(root: &Path, state: Option<&State>) -> Phase {
    let Some(state) = state else {
        return Phase {
            name: "idle".into(),
            text: "no experiment under way".into(),
            experiment: None,
            trials_done: None,
            trials_total: None,
        };
    };
    let n = state.experiment;
    let job = n.map(|n| format!("exp-{n:04}"));
    let prefix = job.clone().unwrap_or_else(|| "experiment".into());
    let raw = state.phase.clone().unwrap_or_default();
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("meta") {
        return Phase {
            name: "meta".into(),
            text: format!("{prefix}: meta-agent session"),
            experiment: n,
            trials_done: None,
            trials_total: None,
        };
    }
    if lower.starts_with("eval") {
        // The holdout job runs after the train job, when the change would be kept.
        let jobs = root.join("jobs");
        let (train, holdout) = match &job {
            Some(j) => (jobs.join(j), jobs.join(format!("{j}-holdout"))),
            None => (PathBuf::new(), PathBuf::new()),
        };
        let (dir, what) = if holdout.is_dir() {
            (holdout, "holdout")
        } else {
            (train, "train")
        };
        let (done, total) = job_progress(&dir);
        let finished = total.is_some_and(|t| done >= t && t > 0);
        return Phase {
            name: if finished { "deciding" } else { "evaluate" }.into(),
            text: match (finished, total) {
                (true, _) => format!("{prefix}: deciding"),
                (false, Some(t)) => format!("{prefix}: evaluating {done} of {t} {what} trials"),
                (false, None) => format!("{prefix}: evaluating ({done} {what} trials done)"),
            },
            experiment: n,
            trials_done: Some(done),
            trials_total: total,
        };
    }
    Phase {
        name: if raw.is_empty() {
            "unknown".into()
        } else {
            raw.clone()
        },
        text: format!("{prefix}: {raw}"),
        experiment: n,
        trials_done: None,
        trials_total: None,
    }
}

/// The settings that bound a run, from `autoagent.toml` (flags given to `optimize` are not on
/// disk, so they are not shown).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Limits {
    pub budget_usd: Option<f64>,
    pub max_iterations: Option<u64>,
    pub hours: Option<f64>,
}

fn limits(root: &Path) -> Limits {
    let Some(v) = std::fs::read_to_string(root.join("autoagent.toml"))
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
    else {
        return Limits::default();
    };
    let o = v.get("optimize");
    let num = |k: &str| {
        o.and_then(|o| o.get(k))
            .and_then(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
    };
    Limits {
        budget_usd: num("budget_usd"),
        max_iterations: o
            .and_then(|o| o.get("max_iterations"))
            .and_then(toml::Value::as_integer)
            .and_then(|i| u64::try_from(i).ok()),
        hours: num("hours"),
    }
}

/// One ledger row, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Experiment {
    pub experiment: u32,
    pub commit: String,
    pub status: &'static str,
    pub avg_score: f64,
    pub passed: u32,
    pub trials: u32,
    pub task_scores: Vec<(String, u32, u32)>,
    pub cost_usd: Option<f64>,
    pub meta_cost_usd: Option<f64>,
    pub task_cost_usd: Option<f64>,
    pub holdout_score: Option<f64>,
    pub harness_size: u64,
    pub duration_s: f64,
    pub description: String,
    pub job_dir: String,
    /// The incumbent's score after this row: the running best.
    pub best_after: Option<f64>,
    /// For a kept row after the baseline: its score minus the incumbent's before it.
    pub delta: Option<f64>,
}

fn experiments(ledger: &Ledger) -> Vec<Experiment> {
    let mut out = Vec::with_capacity(ledger.rows.len());
    let mut best: Option<f64> = None;
    for (i, r) in ledger.rows.iter().enumerate() {
        let before = best;
        if r.status == Status::Keep {
            best = Some(r.avg_score);
        }
        out.push(Experiment {
            experiment: experiment_of(i, r),
            commit: r.commit.clone(),
            status: r.status.as_str(),
            avg_score: r.avg_score,
            passed: r.passed,
            trials: r.trials,
            task_scores: r.task_scores.clone(),
            cost_usd: r.cost_usd,
            meta_cost_usd: r.meta_cost_usd,
            task_cost_usd: r.task_cost_usd,
            holdout_score: r.holdout_score,
            harness_size: r.harness_size,
            duration_s: r.duration_s,
            description: r.description.clone(),
            job_dir: r.job_dir.clone(),
            best_after: best,
            delta: match (r.status, before) {
                (Status::Keep, Some(b)) => Some(r.avg_score - b),
                _ => None,
            },
        });
    }
    out
}

/// The chart's data, the same as the progress plot's ([`crate::PlotData`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub points: Vec<ChartPoint>,
    pub running_best: Vec<(u32, f64)>,
    pub holdout: Vec<(u32, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChartPoint {
    pub experiment: u32,
    pub score: f64,
    pub status: &'static str,
    pub passed: u32,
    pub trials: u32,
    pub commit: String,
    pub description: String,
}

pub fn chart(ledger: &Ledger) -> Chart {
    let data = plot_data(ledger);
    Chart {
        points: data
            .points
            .into_iter()
            .map(|p| ChartPoint {
                experiment: p.experiment,
                score: p.score,
                status: p.status.as_str(),
                passed: p.passed,
                trials: p.trials,
                commit: p.commit,
                description: p.description,
            })
            .collect(),
        running_best: data.running_best,
        holdout: data.holdout,
    }
}

/// The run page: the summary, the chart, the ledger, spend, phase and elapsed time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub kind: Kind,
    pub root: String,
    pub experiments: Vec<Experiment>,
    pub chart: Chart,
    pub kept: usize,
    pub discarded: usize,
    pub crashed: usize,
    /// The best kept experiment (the later one on a tie).
    pub best: Option<u32>,
    /// Spend recorded in the ledger, plus the meta-agent's spend of the experiment under way.
    pub spent_usd: f64,
    /// Rows whose cost is unknown (a model without a price).
    pub cost_unknown: usize,
    pub limits: Limits,
    pub phase: Phase,
    pub state: Option<State>,
    /// Time spent in experiments: the ledger's durations plus the one under way.
    pub elapsed_s: f64,
    pub stop_requested: bool,
    pub steering: Option<String>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn run_summary(src: &Source) -> Result<RunSummary, ModelError> {
    let ledger = src.ledger()?;
    let state = match src.kind {
        Kind::Workspace => State::load(&src.root),
        Kind::Jobs => None,
    };
    let count = |s: Status| ledger.rows.iter().filter(|r| r.status == s).count();
    let best = ledger
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == Status::Keep)
        .fold(None::<(u32, f64)>, |acc, (i, r)| match acc {
            Some((_, s)) if s > r.avg_score => acc,
            _ => Some((experiment_of(i, r), r.avg_score)),
        })
        .map(|b| b.0);
    let running = state
        .as_ref()
        .and_then(|s| s.started_unix)
        .map_or(0.0, |t| now_unix().saturating_sub(t) as f64);
    let steering = std::fs::read_to_string(src.root.join(STEERING_FILE))
        .ok()
        .filter(|s| !s.trim().is_empty());
    Ok(RunSummary {
        kind: src.kind,
        root: src.root.display().to_string(),
        chart: chart(&ledger),
        kept: count(Status::Keep),
        discarded: count(Status::Discard),
        crashed: count(Status::Crash),
        best,
        spent_usd: ledger.spent_usd() + state.as_ref().and_then(|s| s.meta_cost_usd).unwrap_or(0.0),
        cost_unknown: ledger.rows.iter().filter(|r| r.cost_usd.is_none()).count(),
        limits: match src.kind {
            Kind::Workspace => limits(&src.root),
            Kind::Jobs => Limits::default(),
        },
        phase: phase_of(&src.root, state.as_ref()),
        elapsed_s: ledger.rows.iter().map(|r| r.duration_s).sum::<f64>() + running,
        stop_requested: src.root.join(STOP_FILE).exists(),
        steering,
        state,
        experiments: experiments(&ledger),
    })
}

// ---------------------------------------------------------------------------------------------
// Trials and jobs.

/// One trial, from its `result.json` (absent while it runs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialRef {
    pub job: String,
    pub trial: String,
    pub task: String,
    /// No `result.json` yet.
    pub running: bool,
    pub reward: Option<f64>,
    /// The reward reached 1.
    pub passed: bool,
    pub exception: Option<String>,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The verifier-integrity monitor's evidence when the trial is `suspect` (something the
    /// agent did touched what the verifier relies on); absent for a trial that is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspect: Option<Vec<String>>,
}

/// The single reward when there is one key, else `reward` (Harbor's rule).
pub fn reward_of(result: &Value) -> Option<f64> {
    let rewards = result.get("verifier_result")?.get("rewards")?.as_object()?;
    if rewards.len() == 1 {
        rewards.values().next()?.as_f64()
    } else {
        rewards.get("reward")?.as_f64()
    }
}

fn trial_ref(job: &str, trial_dir: &Path) -> Option<TrialRef> {
    let trial = trial_dir.file_name()?.to_string_lossy().into_owned();
    let result: Option<Value> = std::fs::read_to_string(trial_dir.join("result.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let config: Option<Value> = if result.is_none() {
        std::fs::read_to_string(trial_dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    } else {
        None
    };
    let str_at = |v: &Option<Value>, path: &[&str]| {
        let mut x = v.as_ref()?;
        for p in path {
            x = x.get(*p)?;
        }
        x.as_str().map(str::to_owned)
    };
    // A running trial names its task in config.json (`task.path`); else the name before `__`.
    let task = str_at(&result, &["task_name"])
        .or_else(|| {
            str_at(&config, &["task", "path"]).and_then(|p| {
                Path::new(&p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_else(|| {
            trial
                .rsplit_once("__")
                .map_or(trial.as_str(), |(t, _)| t)
                .to_owned()
        });
    let reward = result.as_ref().and_then(reward_of);
    let agent = result.as_ref().and_then(|r| r.get("agent_result"));
    let u = |k: &str| agent.and_then(|a| a.get(k)).and_then(Value::as_u64);
    Some(TrialRef {
        job: job.to_owned(),
        trial,
        task,
        running: result.is_none(),
        reward,
        passed: reward.is_some_and(|r| r >= 1.0 - 1e-9),
        exception: str_at(&result, &["exception_info", "exception_type"]),
        cost_usd: agent
            .and_then(|a| a.get("cost_usd"))
            .and_then(Value::as_f64),
        input_tokens: u("n_input_tokens"),
        output_tokens: u("n_output_tokens"),
        started_at: str_at(&result, &["started_at"]),
        finished_at: str_at(&result, &["finished_at"]),
        suspect: (str_at(&result, &["integrity"]).as_deref() == Some("suspect")).then(|| {
            result
                .as_ref()
                .and_then(|r| r.get("integrity_evidence"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        }),
    })
}

/// The trials of one job, by trial name.
pub fn job_trials(src: &Source, job: &str) -> Result<Vec<TrialRef>, ModelError> {
    check_name(job)?;
    let dir = resolve_inside(&src.jobs_dir(), job)?;
    let mut out: Vec<TrialRef> = std::fs::read_dir(&dir)
        .map_err(|source| ModelError::Io {
            path: dir.clone(),
            source,
        })?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| is_trial_dir(&e.path()))
        .filter_map(|e| trial_ref(job, &e.path()))
        .collect();
    out.sort_by(|a, b| a.trial.cmp(&b.trial));
    Ok(out)
}

/// The job folders, by name (symlinked ones left out).
pub fn jobs(src: &Source) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(src.jobs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| is_job_dir(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// The task × experiment matrix.

/// One cell: a task's trials in one column (an experiment's train job, or a job).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    pub passed: u32,
    pub attempts: u32,
    /// Some attempts passed and some did not.
    pub flaky: bool,
    pub trials: Vec<TrialRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// `exp-0003`, or the job's name in a plain jobs dir.
    pub name: String,
    pub job: String,
    pub experiment: Option<u32>,
    pub status: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskMatrix {
    pub columns: Vec<Column>,
    pub tasks: Vec<String>,
    /// `cells[task][column]`, `None` where the task was not run.
    pub cells: BTreeMap<String, Vec<Option<Cell>>>,
    /// Tasks with a mixed cell somewhere.
    pub flaky: BTreeSet<String>,
}

fn cells_of(trials: Vec<TrialRef>) -> BTreeMap<String, Cell> {
    let mut by_task: BTreeMap<String, Cell> = BTreeMap::new();
    for t in trials.into_iter().filter(|t| !t.running) {
        let cell = by_task.entry(t.task.clone()).or_insert_with(|| Cell {
            passed: 0,
            attempts: 0,
            flaky: false,
            trials: Vec::new(),
        });
        cell.attempts += 1;
        cell.passed += u32::from(t.passed);
        cell.trials.push(t);
    }
    for c in by_task.values_mut() {
        c.flaky = c.passed > 0 && c.passed < c.attempts;
    }
    by_task
}

pub fn task_matrix(src: &Source) -> Result<TaskMatrix, ModelError> {
    let all_jobs = jobs(src);
    let mut columns = Vec::new();
    let mut per_column: Vec<BTreeMap<String, Cell>> = Vec::new();
    match src.kind {
        Kind::Workspace => {
            let ledger = src.ledger()?;
            let mut seen = BTreeSet::new();
            for (i, r) in ledger.rows.iter().enumerate() {
                let n = experiment_of(i, r);
                let job = format!("exp-{n:04}");
                seen.insert(job.clone());
                let cells = if all_jobs.contains(&job) {
                    cells_of(job_trials(src, &job)?)
                } else {
                    // No trials on disk (a crash, or a job dir removed): the ledger's counts.
                    r.task_scores
                        .iter()
                        .map(|(t, p, k)| {
                            (
                                t.clone(),
                                Cell {
                                    passed: *p,
                                    attempts: *k,
                                    flaky: *p > 0 && p < k,
                                    trials: Vec::new(),
                                },
                            )
                        })
                        .collect()
                };
                columns.push(Column {
                    name: job.clone(),
                    job,
                    experiment: Some(n),
                    status: Some(r.status.as_str()),
                });
                per_column.push(cells);
            }
            // The experiment under way, once its train job has trials.
            if let Some(n) = State::load(&src.root).and_then(|s| s.experiment) {
                let job = format!("exp-{n:04}");
                if !seen.contains(&job) && all_jobs.contains(&job) {
                    per_column.push(cells_of(job_trials(src, &job)?));
                    columns.push(Column {
                        name: job.clone(),
                        job,
                        experiment: Some(n),
                        status: None,
                    });
                }
            }
        }
        Kind::Jobs => {
            for job in all_jobs {
                per_column.push(cells_of(job_trials(src, &job)?));
                columns.push(Column {
                    name: job.clone(),
                    job,
                    experiment: None,
                    status: None,
                });
            }
        }
    }
    let tasks: BTreeSet<String> = per_column.iter().flat_map(|c| c.keys().cloned()).collect();
    let mut cells = BTreeMap::new();
    let mut flaky = BTreeSet::new();
    for task in &tasks {
        let row: Vec<Option<Cell>> = per_column.iter().map(|c| c.get(task).cloned()).collect();
        if row.iter().flatten().any(|c| c.flaky) {
            flaky.insert(task.clone());
        }
        cells.insert(task.clone(), row);
    }
    Ok(TaskMatrix {
        columns,
        tasks: tasks.into_iter().collect(),
        cells,
        flaky,
    })
}

// ---------------------------------------------------------------------------------------------
// One experiment.

/// A task's passes in an experiment and in the incumbent it was measured against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskDelta {
    pub task: String,
    pub passed: Option<u32>,
    pub trials: Option<u32>,
    pub incumbent_passed: Option<u32>,
    pub incumbent_trials: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentDetail {
    pub row: Experiment,
    /// The kept experiment this one was measured against (none for the baseline).
    pub incumbent: Option<Experiment>,
    /// The commit's message: the description, then the meta-agent's rationale.
    pub message: Option<String>,
    pub rationale: Option<String>,
    /// `refs/autoagent/discarded/N` when it exists.
    pub discarded_ref: Option<String>,
    /// The commit shown: the ledger's, or the discarded ref's.
    pub commit: Option<String>,
    /// `git show` of the commit: the change against the incumbent it was made on.
    pub diff: Result<String, String>,
    pub tasks: Vec<TaskDelta>,
    /// The meta-agent session's trajectory (`.autoagent/meta/exp-NNNN.json`), when kept.
    pub meta_trajectory: Option<String>,
    /// The jobs of this experiment: train, holdout, spot checks.
    pub jobs: Vec<String>,
}

pub async fn experiment_detail(src: &Source, n: u32) -> Result<ExperimentDetail, ModelError> {
    let ledger = src.ledger()?;
    let rows = experiments(&ledger);
    let idx = rows
        .iter()
        .position(|r| r.experiment == n)
        .ok_or_else(|| ModelError::NotFound(format!("exp-{n:04}")))?;
    let row = rows[idx].clone();
    let incumbent = rows[..idx]
        .iter()
        .rev()
        .find(|r| r.status == Status::Keep.as_str())
        .cloned();
    let repo = src.harness();
    let discarded_ref = format!("refs/autoagent/discarded/{n}");
    let discarded = repo.resolve_ref(&discarded_ref).await;
    let commit = if crate::git::is_commit(&row.commit) {
        Some(row.commit.clone())
    } else {
        discarded.clone()
    };
    let (diff, message) = match &commit {
        Some(c) => (
            repo.show_diff(c).await.map_err(|e| e.to_string()),
            repo.message(c).await.ok(),
        ),
        None => (
            Err("no commit was recorded (the session changed nothing)".to_owned()),
            None,
        ),
    };
    let rationale = message.as_deref().and_then(|m| {
        let (_, body) = m.split_once("\n\n")?;
        let body = body.trim();
        (!body.is_empty()).then(|| body.to_owned())
    });
    let mut tasks: BTreeMap<String, TaskDelta> = BTreeMap::new();
    for (t, p, k) in &row.task_scores {
        tasks.insert(
            t.clone(),
            TaskDelta {
                task: t.clone(),
                passed: Some(*p),
                trials: Some(*k),
                incumbent_passed: None,
                incumbent_trials: None,
            },
        );
    }
    if let Some(inc) = &incumbent {
        for (t, p, k) in &inc.task_scores {
            let e = tasks.entry(t.clone()).or_insert_with(|| TaskDelta {
                task: t.clone(),
                passed: None,
                trials: None,
                incumbent_passed: None,
                incumbent_trials: None,
            });
            e.incumbent_passed = Some(*p);
            e.incumbent_trials = Some(*k);
        }
    }
    let meta = format!("{STATE_DIR}/meta/exp-{n:04}.json");
    let job = format!("exp-{n:04}");
    Ok(ExperimentDetail {
        row,
        incumbent,
        message,
        rationale,
        discarded_ref: discarded.map(|_| discarded_ref),
        commit,
        diff,
        tasks: tasks.into_values().collect(),
        meta_trajectory: src.root.join(&meta).is_file().then_some(meta),
        jobs: jobs(src)
            .into_iter()
            .filter(|j| *j == job || j.starts_with(&format!("{job}-")))
            .collect(),
    })
}

/// The file of a meta-agent session's trajectory, when it exists.
pub fn meta_trajectory_path(src: &Source, n: u32) -> Result<PathBuf, ModelError> {
    resolve_inside(&src.root, &format!("{STATE_DIR}/meta/exp-{n:04}.json"))
}

// ---------------------------------------------------------------------------------------------
// One trial.

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialDetail {
    pub summary: Option<TrialRef>,
    /// `result.json` as written.
    pub result: Option<Value>,
    /// `agent/trajectory.json` (ATIF), with continuation files appended as `continuations`.
    pub trajectory: Option<Value>,
    pub continuations: Vec<Value>,
    /// `verifier/test-stdout.txt`.
    pub verifier_output: Option<String>,
    /// `exception.txt`.
    pub exception: Option<String>,
}

/// Files larger than this are cut when shown.
const MAX_TEXT: usize = 2_000_000;

fn read_text(p: &Path) -> Option<String> {
    let bytes = std::fs::read(p).ok()?;
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("\n[… cut: the file is larger than the dashboard shows]\n");
    }
    Some(s)
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// A file inside the trial dir, refused if a symlink sits on the way.
fn trial_file(dir: &Path, rel: &str) -> Option<PathBuf> {
    resolve_inside(dir, rel).ok().filter(|p| p.is_file())
}

pub fn trial_detail(src: &Source, job: &str, trial: &str) -> Result<TrialDetail, ModelError> {
    check_name(job)?;
    check_name(trial)?;
    let dir = resolve_inside(&src.jobs_dir(), &format!("{job}/{trial}"))?;
    let mut continuations = Vec::new();
    for i in 1.. {
        match trial_file(&dir, &format!("agent/trajectory.cont-{i}.json"))
            .and_then(|p| read_json(&p))
        {
            Some(v) => continuations.push(v),
            None => break,
        }
    }
    Ok(TrialDetail {
        summary: trial_ref(job, &dir),
        result: trial_file(&dir, "result.json").and_then(|p| read_json(&p)),
        trajectory: trial_file(&dir, "agent/trajectory.json").and_then(|p| read_json(&p)),
        continuations,
        verifier_output: trial_file(&dir, "verifier/test-stdout.txt").and_then(|p| read_text(&p)),
        exception: trial_file(&dir, "exception.txt").and_then(|p| read_text(&p)),
    })
}

/// The last `max` bytes of the run's log.
pub fn log_tail(src: &Source, max: usize) -> Option<String> {
    let text = read_text(&src.root.join(LOG_FILE))?;
    if text.len() <= max {
        return Some(text);
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    Some(text[start..].to_owned())
}

/// A fingerprint of what the dashboard shows, cheap to compute: the sizes and modification
/// times of the ledger, the state file, the STOP file, the steering note, and the job folders'
/// listings. A change means a page should refresh.
pub fn fingerprint(src: &Source) -> String {
    let stamp = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or(Duration::ZERO);
            format!("{}:{}", m.len(), t.as_nanos())
        })
    };
    let mut parts = vec![
        stamp(&src.root.join(crate::LEDGER_FILE)),
        stamp(&src.root.join(STATE_DIR).join("state.json")),
        stamp(&src.root.join(STOP_FILE)),
        stamp(&src.root.join(STEERING_FILE)),
    ];
    let jobs_dir = src.jobs_dir();
    for job in jobs(src) {
        let dir = jobs_dir.join(&job);
        parts.push(stamp(&dir));
        parts.push(stamp(&dir.join("result.json")));
    }
    parts
        .into_iter()
        .map(|p| p.unwrap_or_else(|| "-".into()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suspect_trial_carries_its_evidence_and_an_honest_one_none() {
        let d = tempfile::tempdir().unwrap();
        let write = |name: &str, extra: serde_json::Value| {
            let t = d.path().join(name);
            std::fs::create_dir_all(&t).unwrap();
            let mut r = serde_json::json!({
                "task_name": "t", "verifier_result": {"rewards": {"reward": 1}},
                "exception_info": null, "agent_result": null
            });
            if let (Some(r), Some(x)) = (r.as_object_mut(), extra.as_object()) {
                r.extend(x.clone());
            }
            std::fs::write(t.join("result.json"), r.to_string()).unwrap();
            t
        };
        let s = write(
            "t__suspect",
            serde_json::json!({"integrity": "suspect", "integrity_evidence": ["wrote /logs/verifier/reward.txt"]}),
        );
        let h = write("t__honest", serde_json::json!({}));
        let s = trial_ref("j", &s).unwrap();
        assert_eq!(
            s.suspect,
            Some(vec!["wrote /logs/verifier/reward.txt".to_owned()])
        );
        let h = trial_ref("j", &h).unwrap();
        assert_eq!(h.suspect, None);
        assert!(!serde_json::to_string(&h).unwrap().contains("suspect"));
    }
}
