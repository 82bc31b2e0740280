//! A job: every (task × attempt) trial of a dataset, run under a concurrency limit, with
//! infrastructure retries, a live `result.json`, and resume (spec §7, §9, §10).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoagent_harbor::exception::ExceptionType;
use autoagent_harbor::layout::sort_trials;
use autoagent_harbor::result::{
    EvalStats, JobResult, JobStats, evals_key, mean_metric, pass_at_k, python_number_str,
};
use autoagent_harbor::{Dataset, InvalidTask, JobDir, Task, TrialResult};
use autoagent_sandbox::Backend;
use chrono::Local;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::agent::TrialAgent;
use crate::cache::{CacheKey, CachedTrial, TrialCache};
use crate::trial::{TrialSpec, image_spec, run_trial};

/// The sandbox label that carries the job's id.
pub const JOB_LABEL: &str = "autoagent.job";
/// The sandbox label that carries the trial's name.
pub const TRIAL_LABEL: &str = "autoagent.trial";

/// Reruns of one trial after its host was lost (`SandboxHostLostError`), on top of
/// `max_retries`: a lost host is no fault of the trial's, but a host that keeps coming back and
/// failing must not hold a trial forever.
const MAX_HOST_LOST_RETRIES: u32 = 5;

/// What a job is: written to `<job>/config.json`; a resumed job must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobConfig {
    pub job_name: String,
    pub jobs_dir: PathBuf,
    /// `-p`: a task dir or a dataset dir.
    pub path: PathBuf,
    pub agent: String,
    /// The model, for agents that have one (part of the evals key).
    pub model: Option<String>,
    /// Agent settings that change what a trial does (a harness dir and its revision).
    #[serde(default)]
    pub agent_kwargs: BTreeMap<String, String>,
    pub n_attempts: u32,
    pub max_retries: u32,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub sandbox: String,
    pub force_build: bool,
    pub timeout_multiplier: f64,
    #[serde(default)]
    pub disable_verification: bool,
    /// Not part of identity: a job may be resumed with another concurrency.
    #[serde(skip)]
    pub n_concurrent: usize,
    /// Per-task targets of finished trials, replacing `n_attempts` when not empty (a task
    /// absent from it gets 0). Not part of identity: a caller grows them between calls of
    /// [`run_job`] on one job dir, and each call runs only the trials that are missing.
    #[serde(skip)]
    pub task_attempts: BTreeMap<String, u32>,
    /// The trial cache, when trials may be reused. Not part of identity: a hit is the same
    /// measurement as a run.
    #[serde(skip)]
    pub cache: Option<JobCache>,
}

/// What a job needs to use the trial cache: the cache, and the key parts that the job's
/// config does not name by content.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCache {
    pub cache: Arc<TrialCache>,
    /// Content hash of the harness tree the agent runs (see [`crate::cache::tree_hash`]).
    pub harness_tree: String,
    /// The task model and its settings that change behaviour (provider, model id, base URL,
    /// sampling), as one string.
    pub model_key: String,
    /// The attempt index of this job's first trial of each task (absent: 0). The i-th trial
    /// of task T in this job has attempt index `first_attempt[T] + i`.
    pub first_attempt: BTreeMap<String, u32>,
}

impl Default for JobConfig {
    /// One attempt of the `oracle` agent in Docker, with no name or tasks yet: a base for
    /// `JobConfig { job_name, path, .., ..Default::default() }`.
    fn default() -> Self {
        Self {
            job_name: String::new(),
            jobs_dir: PathBuf::from("jobs"),
            path: PathBuf::new(),
            agent: "oracle".to_owned(),
            model: None,
            agent_kwargs: BTreeMap::new(),
            n_attempts: 1,
            max_retries: 0,
            include: Vec::new(),
            exclude: Vec::new(),
            sandbox: "docker".to_owned(),
            force_build: false,
            timeout_multiplier: 1.0,
            disable_verification: false,
            n_concurrent: 1,
            task_attempts: BTreeMap::new(),
            cache: None,
        }
    }
}

impl JobConfig {
    pub fn job_dir(&self) -> PathBuf {
        self.jobs_dir.join(&self.job_name)
    }

    /// The config with the fields that are not part of the job's identity cleared: what a
    /// resumed job must match.
    fn identity(&self) -> Self {
        Self {
            n_concurrent: 0,
            task_attempts: BTreeMap::new(),
            cache: None,
            ..self.clone()
        }
    }

    /// How many finished trials of `task` this job aims at.
    fn target(&self, task: &str) -> usize {
        let n = if self.task_attempts.is_empty() {
            self.n_attempts
        } else {
            self.task_attempts.get(task).copied().unwrap_or(0)
        };
        n as usize
    }
}

/// The attempt indices of a task's missing trials: the lowest ones from `first` on that the
/// finished trials do not hold. A finished trial without a recorded index (a job that ran
/// without the cache) holds the lowest free one, so with no gaps the j-th trial gets
/// `first + j`; after a trial was removed (an infrastructure failure the optimizer reruns),
/// its index is the one reused, never one a kept trial already measured.
fn attempt_indices(first: u32, recorded: &[Option<u32>], missing: usize) -> Vec<u32> {
    let used: std::collections::BTreeSet<u32> = recorded.iter().flatten().copied().collect();
    let unrecorded = recorded.iter().filter(|r| r.is_none()).count();
    (first..)
        .filter(|i| !used.contains(i))
        .skip(unrecorded)
        .take(missing)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Dataset(#[from] autoagent_harbor::task::DatasetError),
    #[error(
        "no task matches the filters (-i {include:?} -x {exclude:?}) among {available} task(s)"
    )]
    NoTasks {
        include: Vec<String>,
        exclude: Vec<String>,
        available: usize,
    },
    #[error("invalid glob `{0}`: {1}")]
    Glob(String, String),
    #[error(
        "job `{name}` exists in {dir} with a different configuration; resume it with the same settings or choose another --job-name.\n{diff}"
    )]
    ConfigMismatch {
        name: String,
        dir: PathBuf,
        diff: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> JobError {
    move |source| JobError::Io {
        context: context.into(),
        source,
    }
}

/// What the caller hears while the job runs (the CLI draws its progress bar from these).
pub trait JobObserver: Send + Sync {
    fn job_started(&self, _total: usize, _already_done: usize) {}
    fn trial_started(&self, _trial_name: &str, _task: &str) {}
    /// The trial's sandbox is up on `host` (backends with hosts only; again on each retry).
    fn trial_host(&self, _trial_name: &str, _host: &str) {}
    fn trial_retrying(&self, _trial_name: &str, _exception: &str, _attempt: u32) {}
    fn trial_finished(&self, _result: &TrialResult) {}
}

/// An observer that hears nothing.
pub struct Silent;
impl JobObserver for Silent {}

/// What a finished (or interrupted) job produced.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job_dir: PathBuf,
    pub result: JobResult,
    /// Every trial with a `result.json`, sorted by task then trial name (resumed ones included).
    pub trials: Vec<TrialResult>,
    /// Tasks that did not load, with why.
    pub invalid_tasks: Vec<InvalidTask>,
    /// True when the job was cancelled before every trial finished.
    pub cancelled: bool,
}

/// Harbor's trial name: `<task_name[:32] without trailing _ and ->__<7 random chars>`.
pub(crate) fn trial_name(task: &str) -> String {
    let prefix: String = task.chars().take(32).collect();
    let prefix = prefix.trim_end_matches(['_', '-']).replace('/', "-");
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let suffix: String = (0..7)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}__{suffix}")
}

fn glob_match(patterns: &[String], name: &str) -> Result<bool, JobError> {
    for p in patterns {
        let pat = glob::Pattern::new(p).map_err(|e| JobError::Glob(p.clone(), e.to_string()))?;
        if pat.matches(name) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Loads and filters the tasks for a job (`-p`, `-i`, `-x`).
pub(crate) fn select_tasks(config: &JobConfig) -> Result<Dataset, JobError> {
    let mut ds = Dataset::load(&config.path)?;
    let available = ds.tasks.len() + ds.invalid.len();
    let mut kept = Vec::new();
    for t in std::mem::take(&mut ds.tasks) {
        let included = config.include.is_empty() || glob_match(&config.include, &t.name)?;
        if included && !glob_match(&config.exclude, &t.name)? {
            kept.push(t);
        }
    }
    let mut invalid = Vec::new();
    for t in std::mem::take(&mut ds.invalid) {
        let included = config.include.is_empty() || glob_match(&config.include, &t.error.task)?;
        if included && !glob_match(&config.exclude, &t.error.task)? {
            invalid.push(t);
        }
    }
    if kept.is_empty() && invalid.is_empty() {
        return Err(JobError::NoTasks {
            include: config.include.clone(),
            exclude: config.exclude.clone(),
            available,
        });
    }
    ds.tasks = kept;
    ds.invalid = invalid;
    Ok(ds)
}

/// Appends timestamped lines to `job.log`.
#[derive(Clone)]
struct JobLog(Arc<Mutex<Option<std::fs::File>>>);

impl JobLog {
    fn open(path: &Path) -> Self {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        Self(Arc::new(Mutex::new(f)))
    }
    fn line(&self, msg: &str) {
        if let Ok(mut f) = self.0.lock()
            && let Some(f) = f.as_mut()
        {
            let _ = writeln!(f, "{} {msg}", Local::now().format("%Y-%m-%d %H:%M:%S%.3f"));
        }
    }
}

/// Shared, live state of a running job, from which `result.json` is rewritten after every trial.
struct Live {
    result: JobResult,
    trials: Vec<TrialResult>,
    running: u64,
    pending: u64,
}

/// Runs (or resumes) a job. Cancelling `cancel` stops new trials, ends the running ones,
/// removes their sandboxes, and returns what finished; their dirs are rerun on resume.
pub async fn run_job(
    config: &JobConfig,
    backend: Arc<dyn Backend>,
    agent: Arc<dyn TrialAgent>,
    observer: Arc<dyn JobObserver>,
    cancel: CancellationToken,
) -> Result<JobOutcome, JobError> {
    let dataset = select_tasks(config)?;
    let job_dir = config.job_dir();
    std::fs::create_dir_all(&job_dir).map_err(io_err(format!("creating {}", job_dir.display())))?;
    let job_dir = std::path::absolute(&job_dir).unwrap_or(job_dir);
    let job = JobDir::new(&job_dir);
    let log = JobLog::open(&job.log_path());

    // Resume: the same config, finished trials kept, unfinished trial dirs removed.
    let config_path = job.config_path();
    let mut previous_result: Option<JobResult> = None;
    if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
            .map_err(io_err(format!("reading {}", config_path.display())))?;
        let old: JobConfig = serde_json::from_str(&text).map_err(|e| JobError::ConfigMismatch {
            name: config.job_name.clone(),
            dir: job_dir.clone(),
            diff: format!("{}: {e}", config_path.display()),
        })?;
        if old.identity() != config.identity() {
            return Err(JobError::ConfigMismatch {
                name: config.job_name.clone(),
                dir: job_dir.clone(),
                diff: config_diff(&old, config),
            });
        }
        previous_result = job.read_result().ok();
        log.line("resuming");
    } else {
        let bytes = serde_json::to_vec_pretty(config).unwrap_or_default();
        std::fs::write(&config_path, bytes)
            .map_err(io_err(format!("writing {}", config_path.display())))?;
    }
    let mut done: Vec<TrialResult> = Vec::new();
    for trial in job
        .trial_dirs()
        .map_err(io_err(format!("listing {}", job_dir.display())))?
    {
        match trial.read_result() {
            Ok(r) => done.push(r),
            Err(_) => {
                let path = trial.path();
                log.line(&format!("removing unfinished trial {}", path.display()));
                std::fs::remove_dir_all(path)
                    .map_err(io_err(format!("removing {}", path.display())))?;
            }
        }
    }

    // What is left to run: each task's target, minus its trials already finished; with the
    // cache, each with its attempt index and the image the key names.
    let mut todo: Vec<Todo> = Vec::new();
    for task in &dataset.tasks {
        let recorded: Vec<Option<u32>> = done
            .iter()
            .filter(|r| r.task_name == task.name)
            .map(|r| r.attempt_index)
            .collect();
        let missing = config.target(&task.name).saturating_sub(recorded.len());
        if missing == 0 {
            continue;
        }
        let task = Arc::new(task.clone());
        match &config.cache {
            None => todo.extend((0..missing).map(|_| Todo {
                task: task.clone(),
                cache: None,
            })),
            Some(jc) => {
                let first = jc.first_attempt.get(&task.name).copied().unwrap_or(0);
                let image_id = image_key(backend.as_ref(), &task, config.force_build).await;
                for attempt in attempt_indices(first, &recorded, missing) {
                    todo.push(Todo {
                        task: task.clone(),
                        cache: Some((
                            jc.cache.clone(),
                            CacheKey {
                                harness_tree: jc.harness_tree.clone(),
                                model_key: jc.model_key.clone(),
                                task_name: task.name.clone(),
                                task_checksum: task.checksum(),
                                image_id: image_id.clone(),
                                attempt,
                            },
                        )),
                    });
                }
            }
        }
    }
    let total = done.len() + todo.len();
    let digests = Arc::new(crate::lock::task_digests(&dataset.tasks));
    {
        // Every planned trial: those finished already, then those to run.
        let by_name: BTreeMap<&str, &Task> =
            dataset.tasks.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut planned: Vec<&Task> = done
            .iter()
            .filter_map(|r| by_name.get(r.task_name.as_str()).copied())
            .collect();
        planned.extend(todo.iter().map(|t| t.task.as_ref()));
        let lock = crate::lock::job_lock(config, &planned, dataset.name.as_deref(), &digests);
        if let Err(e) = crate::lock::write(&job_dir, &lock) {
            log.line(&format!("cannot write lock.json: {e}"));
        }
    }
    for bad in &dataset.invalid {
        log.line(&format!("invalid task: {bad}"));
    }
    log.line(&format!(
        "job {}: {} trial(s), {} already done, agent {}, sandbox {}",
        config.job_name,
        total,
        done.len(),
        config.agent,
        backend.kind()
    ));
    observer.job_started(total, done.len());

    let started_at = previous_result
        .as_ref()
        .map(|r| r.started_at)
        .unwrap_or_else(|| Local::now().naive_local());
    if let Some(prev) = &previous_result {
        // A killed run leaves its containers behind; they carry the job's id.
        let n = backend.remove_labelled(JOB_LABEL, &prev.id).await;
        if n > 0 {
            log.line(&format!(
                "removed {n} sandbox(es) left by the interrupted run"
            ));
        }
    }
    let live = Arc::new(Mutex::new(Live {
        result: JobResult {
            id: previous_result
                .as_ref()
                .map(|r| r.id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            started_at,
            updated_at: None,
            finished_at: None,
            n_total_trials: total as u64,
            stats: JobStats {
                n_retries: previous_result
                    .as_ref()
                    .map(|r| r.stats.n_retries)
                    .unwrap_or(0),
                ..JobStats::default()
            },
        },
        trials: done,
        running: 0,
        pending: todo.len() as u64,
    }));
    write_job_result(&job, &live, config, false);

    let semaphore = Arc::new(tokio::sync::Semaphore::new(config.n_concurrent.max(1)));
    let mut set = tokio::task::JoinSet::new();
    let job_id = live.lock().map(|l| l.result.id.clone()).unwrap_or_default();
    for Todo { task, cache } in todo {
        let semaphore = semaphore.clone();
        let backend = backend.clone();
        let agent = agent.clone();
        let observer = observer.clone();
        let live = live.clone();
        let job = job.clone();
        let config = config.clone();
        let log = log.clone();
        let cancel = cancel.clone();
        let source = dataset.name.clone();
        let job_id = job_id.clone();
        let digests = digests.clone();
        set.spawn(async move {
            if cancel.is_cancelled() {
                return;
            }
            let name = trial_name(&task.name);
            // A hit is copied, not run: it needs no sandbox, so it does not wait for a slot.
            if let Some((trial_cache, key)) = &cache {
                let restore = Restore {
                    cache: trial_cache.clone(),
                    key: key.clone(),
                    trial_dir: job.trial(&name).path().to_path_buf(),
                    trial_name: name.clone(),
                    task_dir: task.dir.clone(),
                    source: source.clone(),
                    config: trial_config_json(&config, &task, &name, job.path(), &job_id),
                };
                let restored = tokio::task::spawn_blocking(move || restore.run()).await;
                match restored {
                    Ok(Ok(Some(result))) => {
                        observer.trial_started(&name, &task.name);
                        log.line(&format!(
                            "trial {name}: cache hit (attempt {}, key {}), copied from {}",
                            key.attempt,
                            &key.digest()[..12],
                            result.cached_from.as_deref().unwrap_or("?")
                        ));
                        if let Ok(mut l) = live.lock() {
                            l.pending = l.pending.saturating_sub(1);
                            l.trials.push(result.clone());
                        }
                        write_job_result(&job, &live, &config, false);
                        observer.trial_finished(&result);
                        return;
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => log.line(&format!("trial {name}: cache hit not restored: {e}")),
                    Err(e) => log.line(&format!("trial {name}: cache restore failed: {e}")),
                }
            }
            let Ok(permit) = semaphore.acquire_owned().await else {
                return;
            };
            if cancel.is_cancelled() {
                return;
            }
            if let Ok(mut l) = live.lock() {
                l.pending = l.pending.saturating_sub(1);
                l.running += 1;
            }
            let digest = digests.get(&task.name).map_or("", String::as_str);
            let lock = crate::lock::trial_lock(&config, &task, source.as_deref(), digest);
            let spec = TrialSpec {
                lock,
                trial_dir: job.trial(&name).path().to_path_buf(),
                trial_name: name.clone(),
                source,
                force_build: config.force_build,
                timeout_multiplier: config.timeout_multiplier,
                disable_verification: config.disable_verification,
                config: trial_config_json(&config, &task, &name, job.path(), &job_id),
                labels: BTreeMap::from([
                    (JOB_LABEL.to_owned(), job_id),
                    (TRIAL_LABEL.to_owned(), name.clone()),
                ]),
                attempt_index: cache.as_ref().map(|(_, k)| k.attempt),
                task,
            };
            observer.trial_started(&name, &spec.task.name);
            log.line(&format!("trial {name} started"));
            let mut attempt = 0;
            let mut host_lost = 0;
            let host: Mutex<Option<String>> = Mutex::new(None);
            let on_host = |h: &str| {
                log.line(&format!("trial {name} on host {h}"));
                observer.trial_host(&name, h);
                if let Ok(mut slot) = host.lock() {
                    *slot = Some(h.to_owned());
                }
            };
            let result = loop {
                let r = tokio::select! {
                    r = run_trial(&spec, backend.as_ref(), agent.as_ref(), &on_host) => r,
                    () = cancel.cancelled() => return,
                };
                let kind = r.exception_type().unwrap_or_default().to_owned();
                let on = host
                    .lock()
                    .ok()
                    .and_then(|h| h.clone())
                    .map(|h| format!(" on host {h}"))
                    .unwrap_or_default();
                if r.exception() == Some(&ExceptionType::SandboxHostLostError)
                    && host_lost < MAX_HOST_LOST_RETRIES
                {
                    // Not the trial's fault: rerun at once elsewhere, outside max_retries.
                    host_lost += 1;
                    log.line(&format!(
                        "trial {name}: {kind}{on}; rerun on another host ({host_lost}/{MAX_HOST_LOST_RETRIES}, not counted in max_retries)"
                    ));
                    observer.trial_retrying(&name, &kind, attempt + host_lost);
                    if let Ok(mut l) = live.lock() {
                        l.result.stats.n_retries += 1;
                    }
                    let _ = std::fs::remove_dir_all(&spec.trial_dir);
                    continue;
                }
                let retry =
                    r.exception().is_some_and(|e| e.is_retried()) && attempt < config.max_retries;
                if !retry {
                    break r;
                }
                attempt += 1;
                log.line(&format!(
                    "trial {name}: {kind}{on}; retry {attempt}/{}",
                    config.max_retries
                ));
                observer.trial_retrying(&name, &kind, attempt + host_lost);
                if let Ok(mut l) = live.lock() {
                    l.result.stats.n_retries += 1;
                }
                let _ = std::fs::remove_dir_all(&spec.trial_dir);
                // Harbor's backoff: min(1 s × 1.0^attempt, 60 s).
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = cancel.cancelled() => return,
                }
            };
            let on = host
                .lock()
                .ok()
                .and_then(|h| h.clone())
                .map(|h| format!(" on host {h}"))
                .unwrap_or_default();
            log.line(&format!(
                "trial {name} finished{on}: rewards {} exception {}",
                result
                    .rewards()
                    .map(|r| serde_json::to_string(r).unwrap_or_default())
                    .unwrap_or_else(|| "none".to_owned()),
                result.exception_type().unwrap_or("none")
            ));
            drop(permit);
            if let Some((trial_cache, mut key)) = cache
                && crate::cache::qualifies(&result)
            {
                // A prebuilt image may have been pulled by this very trial: name it now.
                key.image_id = image_key(backend.as_ref(), &spec.task, config.force_build).await;
                let (dir, r) = (spec.trial_dir.clone(), result.clone());
                let stored = tokio::task::spawn_blocking(move || {
                    trial_cache.store(&key, &dir, &r).map(|s| (s, key))
                })
                .await;
                match stored {
                    Ok(Ok((true, key))) => log.line(&format!(
                        "trial {name}: stored in the cache (attempt {}, key {})",
                        key.attempt,
                        &key.digest()[..12]
                    )),
                    Ok(Ok((false, _))) => {}
                    Ok(Err(e)) => log.line(&format!("trial {name}: not stored in the cache: {e}")),
                    Err(e) => log.line(&format!("trial {name}: cache store failed: {e}")),
                }
            }
            if let Ok(mut l) = live.lock() {
                l.running = l.running.saturating_sub(1);
                l.trials.push(result.clone());
            }
            write_job_result(&job, &live, &config, false);
            observer.trial_finished(&result);
        });
    }
    let mut cancelled = false;
    loop {
        tokio::select! {
            next = set.join_next() => {
                match next {
                    None => break,
                    Some(Err(e)) if e.is_panic() => log.line(&format!("a trial task panicked: {e}")),
                    Some(_) => {}
                }
            }
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                log.line("cancelled: stopping running trials and removing their sandboxes");
                set.abort_all();
            }
        }
    }
    if cancelled {
        backend.destroy_all().await;
    }
    write_job_result(&job, &live, config, !cancelled);
    let (result, mut trials) = {
        let l = live.lock().map_err(|_| JobError::Io {
            context: "job state".to_owned(),
            source: std::io::Error::other("poisoned"),
        })?;
        (l.result.clone(), l.trials.clone())
    };
    sort_trials(&mut trials);
    Ok(JobOutcome {
        job_dir,
        result,
        trials,
        invalid_tasks: dataset.invalid,
        cancelled,
    })
}

/// A trial still to run, and its cache and key when the job uses the cache.
struct Todo {
    task: Arc<Task>,
    cache: Option<(Arc<TrialCache>, CacheKey)>,
}

/// The image part of a cache key: the backend's kind and what it names the task's image.
async fn image_key(backend: &dyn Backend, task: &Task, force_build: bool) -> String {
    let id = backend.image_id(&image_spec(task, force_build)).await;
    format!("{}:{}", backend.kind(), id.unwrap_or_default())
}

/// Copying a cache hit into the job: what the copy's `result.json` must say about its new
/// place.
struct Restore {
    cache: Arc<TrialCache>,
    key: CacheKey,
    trial_dir: PathBuf,
    trial_name: String,
    task_dir: PathBuf,
    source: Option<String>,
    config: serde_json::Value,
}

impl Restore {
    /// The restored trial's result on a hit, `None` on a miss. A failed copy is removed
    /// (an error: the trial then runs).
    fn run(self) -> Result<Option<TrialResult>, crate::cache::CacheError> {
        let Some(hit) = self.cache.lookup(&self.key) else {
            return Ok(None);
        };
        let copied = self.copy(&hit);
        if copied.is_err() {
            let _ = std::fs::remove_dir_all(&self.trial_dir);
        }
        copied.map(Some)
    }

    fn copy(&self, hit: &CachedTrial) -> Result<TrialResult, crate::cache::CacheError> {
        let io = |what: &str, p: &Path| {
            let context = format!("{what} {}", p.display());
            move |source| crate::cache::CacheError::Io { context, source }
        };
        hit.restore(&self.trial_dir)?;
        let trial = autoagent_harbor::TrialDir::new(&self.trial_dir);
        let mut r = hit.result.clone();
        r.id = uuid::Uuid::new_v4().to_string();
        r.trial_name = self.trial_name.clone();
        r.trial_uri = format!("file://{}", self.trial_dir.display());
        r.task_id = autoagent_harbor::result::TaskId {
            path: self.task_dir.display().to_string(),
            ..r.task_id
        };
        r.source = self.source.clone();
        r.config = self.config.clone();
        r.cached_from = Some(hit.info.trial_path.display().to_string());
        r.cached_cost_usd = hit.info.cost_usd;
        // A hit is not paid again: the job's and the optimizer's spend add 0 for it.
        if let Some(a) = r.agent_result.as_mut() {
            a.cost_usd = Some(0.0);
        }
        r.attempt_index = Some(self.key.attempt);
        let bytes = serde_json::to_vec_pretty(&self.config).unwrap_or_default();
        std::fs::write(trial.config_path(), bytes).map_err(io("writing", &trial.config_path()))?;
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(trial.log_path())
                .map_err(io("opening", &trial.log_path()))?;
            let _ = writeln!(
                f,
                "{} restored from the trial cache (entry {}) as {}; measured by {}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                hit.info.key,
                self.trial_name,
                hit.info.trial_path.display()
            );
        }
        // Last: a trial dir without result.json is unfinished, and resume removes it.
        trial
            .write_result(&r)
            .map_err(io("writing", &trial.result_path()))?;
        Ok(r)
    }
}

/// The `config` recorded in each trial's `config.json` and `result.json`, in Harbor's shape.
fn trial_config_json(
    config: &JobConfig,
    task: &Task,
    trial_name: &str,
    job_dir: &Path,
    job_id: &str,
) -> serde_json::Value {
    serde_json::json!({
        "task": { "path": task.dir.display().to_string() },
        "trial_name": trial_name,
        "trials_dir": job_dir.display().to_string(),
        "timeout_multiplier": config.timeout_multiplier,
        "agent": {
            "name": config.agent,
            "model_name": config.model,
            "kwargs": config.agent_kwargs,
        },
        "environment": {
            "type": config.sandbox,
            "force_build": config.force_build,
            "delete": true,
        },
        "verifier": { "disable": config.disable_verification },
        "job_id": job_id,
    })
}

fn config_diff(old: &JobConfig, new: &JobConfig) -> String {
    let a = serde_json::to_value(old).unwrap_or_default();
    let b = serde_json::to_value(new).unwrap_or_default();
    let mut lines = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (k, va) in a {
            let vb = b.get(k).cloned().unwrap_or_default();
            if *va != vb {
                lines.push(format!("  {k}: was {va}, now {vb}"));
            }
        }
    }
    lines.join("\n")
}

/// Computes the job stats from the trials so far and rewrites `<job>/result.json`
/// (atomically: written to a temp file, then renamed).
fn write_job_result(job: &JobDir, live: &Mutex<Live>, config: &JobConfig, finished: bool) {
    let Ok(mut l) = live.lock() else { return };
    let now = Local::now().naive_local();
    let stats = compute_stats(
        &l.trials,
        config,
        l.running,
        l.pending,
        l.result.stats.n_retries,
    );
    l.result.stats = stats;
    l.result.updated_at = Some(now);
    if finished {
        l.result.finished_at = Some(now);
    }
    let result = l.result.clone();
    drop(l);
    let _ = job.write_result(&result);
}

/// Harbor's job stats (spec §7-8) over the finished trials.
pub(crate) fn compute_stats(
    trials: &[TrialResult],
    config: &JobConfig,
    running: u64,
    pending: u64,
    n_retries: u64,
) -> JobStats {
    let mut evals: BTreeMap<String, Vec<&TrialResult>> = BTreeMap::new();
    for t in trials {
        let key = evals_key(&config.agent, config.model.as_deref(), t.source.as_deref());
        evals.entry(key).or_default().push(t);
    }
    let mut out = BTreeMap::new();
    for (key, ts) in evals {
        let rewards: Vec<_> = ts.iter().map(|t| t.rewards()).collect();
        let mut reward_stats: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut exception_stats: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in &ts {
            if let Some(r) = t.rewards() {
                for (k, v) in r {
                    reward_stats
                        .entry(k.clone())
                        .or_default()
                        .entry(python_number_str(v))
                        .or_default()
                        .push(t.trial_name.clone());
                }
            }
            if let Some(e) = t.exception_type() {
                exception_stats
                    .entry(e.to_owned())
                    .or_default()
                    .push(t.trial_name.clone());
            }
        }
        let per_task: Vec<(String, _)> = ts
            .iter()
            .map(|t| (t.task_name.clone(), t.rewards()))
            .collect();
        out.insert(
            key,
            EvalStats {
                n_trials: rewards.iter().filter(|r| r.is_some()).count() as u64,
                n_errors: ts.iter().filter(|t| t.exception_info.is_some()).count() as u64,
                metrics: vec![mean_metric(&rewards)],
                pass_at_k: pass_at_k(&per_task),
                reward_stats,
                exception_stats,
            },
        );
    }
    let sum_opt = |f: &dyn Fn(&TrialResult) -> Option<u64>| -> Option<u64> {
        let vals: Vec<u64> = trials.iter().filter_map(f).collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    };
    // The trials whose agent ran and reported; like the token counts, the cost is null when
    // none did.
    let reported: Vec<_> = trials
        .iter()
        .filter_map(|t| t.agent_result.as_ref())
        .collect();
    JobStats {
        n_completed_trials: trials.len() as u64,
        n_errored_trials: trials.iter().filter(|t| t.exception_info.is_some()).count() as u64,
        n_running_trials: running,
        n_pending_trials: pending,
        n_cancelled_trials: 0,
        n_retries,
        evals: out,
        n_input_tokens: sum_opt(&|t| t.agent_result.as_ref()?.n_input_tokens),
        n_cache_tokens: sum_opt(&|t| t.agent_result.as_ref()?.n_cache_tokens),
        n_output_tokens: sum_opt(&|t| t.agent_result.as_ref()?.n_output_tokens),
        cost_usd: if reported.is_empty() {
            None
        } else {
            autoagent_harbor::cost::sum(reported.iter().map(|a| a.cost_usd))
        },
        n_cached_trials: Some(trials.iter().filter(|t| t.is_cached()).count() as u64)
            .filter(|&n| n > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_names_follow_harbor() {
        let n = trial_name("a-very-long-task-name-that-goes-on-and-on-and-on");
        let (prefix, suffix) = n.split_once("__").unwrap();
        assert_eq!(prefix, "a-very-long-task-name-that-goes");
        assert_eq!(suffix.len(), 7);
        assert!(trial_name("x_-").starts_with("x__"));
    }

    #[test]
    fn attempt_indices_fill_the_lowest_free_ones() {
        assert_eq!(attempt_indices(0, &[], 3), [0, 1, 2]);
        assert_eq!(attempt_indices(5, &[], 2), [5, 6]);
        // The j-th trial gets first + j, however the earlier ones were recorded.
        assert_eq!(attempt_indices(0, &[Some(0), Some(1)], 2), [2, 3]);
        assert_eq!(attempt_indices(0, &[None, None], 1), [2]);
        assert_eq!(attempt_indices(0, &[Some(1), None], 1), [2]);
        // A removed trial's index is reused, never a kept one's.
        assert_eq!(attempt_indices(0, &[Some(1)], 1), [0]);
        assert_eq!(attempt_indices(3, &[Some(4)], 2), [3, 5]);
        assert!(attempt_indices(0, &[Some(0)], 0).is_empty());
    }

    #[test]
    fn targets_and_identity() {
        let mut c = JobConfig {
            n_attempts: 3,
            ..JobConfig::default()
        };
        assert_eq!(c.target("a"), 3);
        c.task_attempts = BTreeMap::from([("a".to_owned(), 2)]);
        assert_eq!(c.target("a"), 2);
        assert_eq!(
            c.target("b"),
            0,
            "a task absent from task_attempts gets none"
        );
        let mut d = c.clone();
        d.task_attempts.clear();
        d.n_concurrent = 9;
        assert_eq!(c.identity(), d.identity());
        d.n_attempts = 4;
        assert_ne!(c.identity(), d.identity());
    }
}
