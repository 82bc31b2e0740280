//! The loop (DESIGN §5), decided by code: baseline; then per experiment a meta-agent session →
//! guards → commit → evaluation → keep or discard → a ledger row. It stops only at an experiment
//! boundary, on its limits or a `STOP` file, and resumes after a kill from the ledger, the
//! harness history, the job folders and `.autoagent/state.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use autoagent_agent::{EndReason, Harness, Run, RunError, RunObserver, Totals, Trajectory};
use autoagent_eval::job::JobObserver;
use autoagent_harbor::{Dataset, Task};
use autoagent_llm::{EnvSource, ErrorKind, ModelConfig, build_model};
use autoagent_sandbox::local::{Isolation, LocalBackend};
use autoagent_sandbox::{Backend, EnvironmentSpec};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::evaluate::{EvalSummary, Evaluator};
use crate::guards::LeakGuard;
use crate::ledger::{Ledger, Row, Status};
use crate::meta::{MetaContext, Proposal};
use crate::workspace::Workspace;

/// Hears about the run, for the status lines and the progress bar.
pub trait Reporter: Send + Sync {
    /// One status line: a phase starting, a decision.
    fn line(&self, msg: &str);
    /// The observer of evaluation jobs.
    fn job_observer(&self) -> Arc<dyn JobObserver>;
    /// The meta-agent made a step.
    fn meta_step(&self, _experiment: u32, _calls: u64, _tokens: u64) {}
}

/// What the loop needs besides the workspace.
pub struct Options {
    pub task_model: ModelConfig,
    pub meta_model: ModelConfig,
    pub env: EnvSource,
    pub backend: Arc<dyn Backend>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptimizeError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    #[error("evaluation of {job} failed: {message}")]
    Eval { job: String, message: String },
    #[error("the meta-agent's model cannot be used: {0}")]
    MetaUnavailable(String),
    #[error("interrupted; run `autoagent optimize` again to resume")]
    Cancelled,
}

/// Why the loop stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    MaxIterations(u32),
    Hours(f64),
    Budget(f64),
    StopFile,
}

/// Where an unfinished experiment was when the process died.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    experiment: u32,
    /// `meta` or `evaluate`.
    phase: String,
    commit: Option<String>,
    description: String,
    rationale: String,
    /// Meta-agent spend of this experiment so far (sessions killed midway included).
    meta_cost_usd: Option<f64>,
    started_unix: u64,
}

fn add_cost(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        _ => None,
    }
}

struct Log(Mutex<Option<std::fs::File>>);

impl Log {
    fn line(&self, msg: &str) {
        if let Ok(mut f) = self.0.lock()
            && let Some(f) = f.as_mut()
        {
            let _ = writeln!(
                f,
                "{} {msg}",
                chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
            );
        }
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Ctx<'a> {
    ws: &'a Workspace,
    opts: &'a Options,
    reporter: &'a dyn Reporter,
    log: Log,
    evaluator: Arc<Evaluator>,
    train: BTreeSet<String>,
    holdout: BTreeSet<String>,
    tasks: BTreeMap<String, Task>,
    guard: LeakGuard,
    cancel: CancellationToken,
}

impl Ctx<'_> {
    fn say(&self, msg: &str) {
        self.log.line(msg);
        self.reporter.line(msg);
    }

    fn state_path(&self) -> PathBuf {
        self.ws.state_dir().join("state.json")
    }

    fn load_state(&self) -> Option<State> {
        serde_json::from_str(&std::fs::read_to_string(self.state_path()).ok()?).ok()
    }

    fn save_state(&self, s: &State) {
        let tmp = self.ws.state_dir().join("state.json.tmp");
        if std::fs::write(&tmp, serde_json::to_vec_pretty(s).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, self.state_path());
        }
    }

    fn clear_state(&self) {
        let _ = std::fs::remove_file(self.state_path());
    }

    async fn evaluate(
        &self,
        job: &str,
        commit: &str,
        tasks: &BTreeSet<String>,
    ) -> Result<EvalSummary, OptimizeError> {
        let attempts = self.ws.config.eval.attempts;
        self.say(&format!(
            "{job}: evaluating {commit} on {} task(s) × {attempts}",
            tasks.len()
        ));
        self.evaluator
            .evaluate(
                job,
                &self.ws.harness_dir(),
                commit,
                tasks,
                attempts,
                self.cancel.clone(),
            )
            .await
            .map_err(|message| {
                if self.cancel.is_cancelled() {
                    OptimizeError::Cancelled
                } else {
                    OptimizeError::Eval {
                        job: job.to_owned(),
                        message,
                    }
                }
            })
    }

    fn size(&self) -> u64 {
        Harness::load(&self.ws.harness_dir())
            .map(|h| crate::size::measure(&h).total())
            .unwrap_or(0)
    }
}

/// Runs the loop until a limit, a `STOP` file or `cancel`.
pub async fn optimize(
    ws: &Workspace,
    opts: &Options,
    reporter: &dyn Reporter,
    cancel: CancellationToken,
) -> Result<StopReason, OptimizeError> {
    let started = Instant::now();
    std::fs::create_dir_all(ws.state_dir())
        .map_err(|e| OptimizeError::Setup(format!("creating {}: {e}", ws.state_dir().display())))?;
    std::fs::create_dir_all(ws.jobs_dir())
        .map_err(|e| OptimizeError::Setup(format!("creating {}: {e}", ws.jobs_dir().display())))?;
    let log = Log(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ws.state_dir().join("optimize.log"))
            .ok(),
    ));
    let git = ws.git();
    if !git.is_repo().await {
        git.init().await?;
    }
    let dataset =
        Dataset::load(&ws.tasks_dir()).map_err(|e| OptimizeError::Setup(e.to_string()))?;
    for bad in &dataset.invalid {
        log.line(&format!("invalid task, left out: {bad}"));
        reporter.line(&format!("warning: invalid task left out: {bad}"));
    }
    if dataset.tasks.is_empty() {
        return Err(OptimizeError::Setup(format!(
            "no valid task in {}",
            ws.tasks_dir().display()
        )));
    }
    let names: Vec<String> = dataset.tasks.iter().map(|t| t.name.clone()).collect();
    let holdout = crate::split::holdout(&names, &ws.config.optimize.holdout);
    let train: BTreeSet<String> = names
        .iter()
        .filter(|n| !holdout.contains(*n))
        .cloned()
        .collect();
    if train.is_empty() {
        return Err(OptimizeError::Setup(
            "the holdout leaves no train task".into(),
        ));
    }
    check_settings(ws, &train, &holdout)?;
    let evaluator = Arc::new(Evaluator {
        backend: opts.backend.clone(),
        model: opts.task_model.clone(),
        env: opts.env.clone(),
        tasks_dir: ws.tasks_dir(),
        jobs_dir: ws.jobs_dir(),
        concurrency: ws.config.eval.concurrency,
        max_retries: ws.config.eval.max_retries,
        timeout_multiplier: ws.config.eval.timeout_multiplier,
        observer: reporter.job_observer(),
    });
    let ctx = Ctx {
        ws,
        opts,
        reporter,
        log,
        evaluator,
        guard: LeakGuard::new(&dataset.tasks),
        tasks: dataset
            .tasks
            .iter()
            .filter(|t| train.contains(&t.name))
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        train,
        holdout,
        cancel,
    };
    ctx.say(&format!(
        "{} train task(s), {} holdout task(s)",
        ctx.train.len(),
        ctx.holdout.len()
    ));
    let mut ledger = Ledger::load(&ws.ledger_path())?;

    if ledger.rows.is_empty() {
        baseline(&ctx, &mut ledger).await?;
    }
    loop {
        if let Some(reason) = stop_reason(&ctx, &ledger, started) {
            ctx.say(&format!("stopping: {reason:?}"));
            return Ok(reason);
        }
        if ctx.cancel.is_cancelled() {
            return Err(OptimizeError::Cancelled);
        }
        experiment(&ctx, &mut ledger).await?;
    }
}

/// What the ledger's scores are comparable under: the train and holdout task sets and k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    train: BTreeSet<String>,
    holdout: BTreeSet<String>,
    attempts: u32,
}

/// The keep rule compares pass counts with the incumbent's stored total: that only means
/// something on the same tasks and attempts. A run that would change them is refused.
fn check_settings(
    ws: &Workspace,
    train: &BTreeSet<String>,
    holdout: &BTreeSet<String>,
) -> Result<(), OptimizeError> {
    let path = ws.state_dir().join("settings.json");
    let now = Settings {
        train: train.clone(),
        holdout: holdout.clone(),
        attempts: ws.config.eval.attempts,
    };
    match std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Settings>(&t).ok())
    {
        Some(before) if before != now => {
            let mut what = Vec::new();
            if before.attempts != now.attempts {
                what.push(format!(
                    "attempts per task (k) was {}, now {}",
                    before.attempts, now.attempts
                ));
            }
            if before.train != now.train {
                what.push(format!(
                    "the train tasks were {:?}, now {:?}",
                    before.train, now.train
                ));
            }
            if before.holdout != now.holdout {
                what.push(format!(
                    "the holdout tasks were {:?}, now {:?}",
                    before.holdout, now.holdout
                ));
            }
            Err(OptimizeError::Setup(format!(
                "the ledger's scores were measured under other settings: {}. Use the same tasks, --holdout and -k as before, or start a new workspace (deleting {} accepts scores that do not compare)",
                what.join("; "),
                path.display()
            )))
        }
        Some(_) => Ok(()),
        None => std::fs::write(&path, serde_json::to_vec_pretty(&now).unwrap_or_default())
            .map_err(|e| OptimizeError::Setup(format!("writing {}: {e}", path.display()))),
    }
}

fn stop_reason(ctx: &Ctx<'_>, ledger: &Ledger, started: Instant) -> Option<StopReason> {
    let o = &ctx.ws.config.optimize;
    if ctx.ws.stop_file().exists() {
        return Some(StopReason::StopFile);
    }
    let done = ledger.rows.len().saturating_sub(1) as u32;
    if let Some(max) = o.max_iterations
        && done >= max
    {
        return Some(StopReason::MaxIterations(max));
    }
    if let Some(h) = o.hours
        && started.elapsed().as_secs_f64() >= h * 3600.0
    {
        return Some(StopReason::Hours(h));
    }
    if let Some(b) = o.budget_usd
        && ledger.spent_usd() >= b
    {
        return Some(StopReason::Budget(b));
    }
    None
}

async fn baseline(ctx: &Ctx<'_>, ledger: &mut Ledger) -> Result<(), OptimizeError> {
    let git = ctx.ws.git();
    let t0 = Instant::now();
    // Edits made by hand before the first run are the baseline.
    git.commit_all("baseline harness").await?;
    if let Err(e) = Harness::load(&ctx.ws.harness_dir()) {
        return Err(OptimizeError::Setup(format!(
            "the baseline harness does not validate:\n{e}"
        )));
    }
    let head = git.head().await?;
    let short = git.short(&head).await?;
    ctx.say("exp-0000: baseline");
    let train = ctx.evaluate("exp-0000", &head, &ctx.train).await?;
    let holdout = if ctx.holdout.is_empty() {
        None
    } else {
        Some(
            ctx.evaluate("exp-0000-holdout", &head, &ctx.holdout)
                .await?,
        )
    };
    let task_cost = add_cost(
        train.cost_usd,
        holdout
            .as_ref()
            .and_then(|h| h.cost_usd)
            .or(holdout.is_none().then_some(0.0)),
    );
    let row = Row {
        commit: short,
        avg_score: train.avg_score,
        passed: train.passed,
        trials: train.trials,
        task_scores: train.task_scores.clone(),
        cost_usd: task_cost,
        status: Status::Keep,
        description: "baseline".into(),
        holdout_score: holdout.map(|h| h.avg_score),
        harness_size: ctx.size(),
        meta_cost_usd: Some(0.0),
        task_cost_usd: task_cost,
        duration_s: t0.elapsed().as_secs_f64(),
        job_dir: "jobs/exp-0000".into(),
    };
    ctx.say(&format!(
        "exp-0000: baseline {}/{} passed (score {:.3})",
        row.passed, row.trials, row.avg_score
    ));
    ledger.append(row)?;
    Ok(())
}

/// Whether a holdout score fell by more than noise: more than two standard errors of the
/// difference of two scores measured on `n` trials each (a smoothed estimate of the earlier
/// score keeps the error above zero at 0 and 1).
pub fn holdout_fell(before: f64, now: f64, n: u32) -> bool {
    if n == 0 {
        return false;
    }
    let n = f64::from(n);
    let p = (before * n + 0.5) / (n + 1.0);
    let se_diff = (2.0 * p * (1.0 - p) / n).sqrt();
    before - now > 2.0 * se_diff
}

/// The task-model spend of experiment `n`'s spot checks, read from their job folders: it is on
/// disk as soon as a trial ends, so a kill loses none of it. `None` when a price is unknown.
fn spot_cost(jobs_dir: &std::path::Path, n: u32) -> Option<f64> {
    let prefix = format!("exp-{n:04}-spot-");
    let mut total = Some(0.0);
    for job in std::fs::read_dir(jobs_dir).into_iter().flatten().flatten() {
        if !job.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        for trial in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let Some(r) = std::fs::read_to_string(trial.path().join("result.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<autoagent_harbor::TrialResult>(&t).ok())
            else {
                continue;
            };
            if let Some(a) = r.agent_result {
                total = add_cost(total, a.cost_usd);
            }
        }
    }
    total
}

/// Keeps the meta-agent's spend in the state file as it goes, so a kill loses none of it.
struct MetaRecorder<'a> {
    ctx: &'a Ctx<'a>,
    state: Mutex<State>,
    carried: Option<f64>,
    path: PathBuf,
    over_budget: tokio::sync::Notify,
    max_tokens: u64,
}

impl RunObserver for MetaRecorder<'_> {
    fn updated(&self, t: &Trajectory, totals: &Totals) {
        let _ = t.write(&self.path);
        if let Ok(mut s) = self.state.lock() {
            s.meta_cost_usd = add_cost(
                self.carried,
                totals.cost_usd.or((totals.calls == 0).then_some(0.0)),
            );
            self.ctx.save_state(&s);
            self.ctx.reporter.meta_step(
                s.experiment,
                totals.calls,
                totals.prompt_tokens() + totals.usage.output_tokens,
            );
        }
        if totals.prompt_tokens() + totals.usage.output_tokens > self.max_tokens {
            self.over_budget.notify_one();
        }
    }
}

enum MetaResult {
    Proposal(Proposal),
    /// The session ended without `finish`, or ran out of its budget: recorded as a crash.
    Crash(String),
}

async fn meta_session(
    ctx: &Ctx<'_>,
    n: u32,
    state: &mut State,
) -> Result<MetaResult, OptimizeError> {
    let ws = ctx.ws;
    let program = crate::meta::with_steering(
        std::fs::read_to_string(ws.program_path()).unwrap_or_default(),
        &ws.state_dir(),
    );
    let incumbent_job = Ledger::load(&ws.ledger_path())?
        .incumbent()
        .map(|r| ws.root.join(&r.job_dir));
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mctx = Arc::new(MetaContext {
            harness_dir: ws.harness_dir(),
            jobs_dir: ws.jobs_dir(),
            ledger_path: ws.ledger_path(),
            train: ctx.tasks.clone(),
            holdout: ctx.holdout.clone(),
            evaluator: ctx.evaluator.clone(),
            experiment: n,
            spot_attempts: ws.config.optimize.spot_check_attempts,
            spot_checks: Mutex::new(0),
            proposal: Mutex::new(None),
            cancel: ctx.cancel.clone(),
        });
        let first = crate::meta::first_message(&mctx, incumbent_job.as_deref());
        let harness = crate::meta::meta_harness(
            &ws.harness_dir(),
            &program,
            ws.config.optimize.meta_max_turns,
        );
        let mut model_cfg = ctx.opts.meta_model.clone();
        // `{n}` in a scripted meta model names one script per experiment (tests that resume).
        model_cfg.model = model_cfg.model.replace("{n}", &n.to_string());
        let model = build_model(&model_cfg, &ctx.opts.env)
            .map_err(|e| OptimizeError::Setup(format!("meta model: {e}")))?;
        let local = LocalBackend::with_isolation(Isolation::None);
        let sandbox = local
            .start(&EnvironmentSpec {
                name: "meta".into(),
                workdir: Some(ws.harness_dir().display().to_string()),
                ..EnvironmentSpec::default()
            })
            .await
            .map_err(|e| OptimizeError::Setup(e.to_string()))?;
        let meta_dir = ws.state_dir().join("meta");
        let _ = std::fs::create_dir_all(&meta_dir);
        let recorder = MetaRecorder {
            ctx,
            state: Mutex::new(state.clone()),
            carried: state.meta_cost_usd,
            path: meta_dir.join(format!("exp-{n:04}.json")),
            over_budget: tokio::sync::Notify::new(),
            max_tokens: ws.config.optimize.meta_max_tokens,
        };
        let run = Run {
            harness: &harness,
            model,
            models: BTreeMap::new(),
            sandbox: sandbox.as_ref(),
            observer: &recorder,
        };
        let tools = crate::meta::tools(mctx.clone());
        let result = tokio::select! {
            r = run.run_with_host_tools(&first, &tools) => Some(r),
            () = recorder.over_budget.notified() => None,
            () = ctx.cancel.cancelled() => {
                // A spot check may have been running: its containers go too.
                ctx.opts.backend.destroy_all().await;
                let _ = sandbox.destroy().await;
                return Err(OptimizeError::Cancelled);
            }
        };
        if result.is_none() {
            ctx.opts.backend.destroy_all().await;
        }
        let _ = sandbox.destroy().await;
        *state = recorder
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| state.clone());
        ctx.save_state(state);
        let proposal = mctx.proposal.lock().ok().and_then(|p| p.clone());
        return Ok(match result {
            None => MetaResult::Crash(format!(
                "meta-agent exceeded its token budget ({})",
                ws.config.optimize.meta_max_tokens
            )),
            Some(Ok(out)) => match (out.end, proposal) {
                (EndReason::Finished, Some(p)) => MetaResult::Proposal(p),
                (EndReason::MaxTurns, _) => MetaResult::Crash(format!(
                    "meta-agent used its {} turns without finishing",
                    ws.config.optimize.meta_max_turns
                )),
                (EndReason::Finished, None) => {
                    MetaResult::Crash("meta-agent stopped without calling finish".into())
                }
            },
            Some(Err(RunError::Model(e))) if e.is_infrastructure() && attempts < 3 => {
                ctx.say(&format!(
                    "exp-{n:04}: meta-agent model unavailable ({e}); retrying the session"
                ));
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(30 * attempts)) => {}
                    () = ctx.cancel.cancelled() => return Err(OptimizeError::Cancelled),
                }
                ctx.ws
                    .git()
                    .reset_hard(&incumbent_commit(ctx).await?)
                    .await?;
                continue;
            }
            Some(Err(RunError::Model(e)))
                if e.is_infrastructure()
                    || matches!(
                        e.kind(),
                        ErrorKind::Auth
                            | ErrorKind::NotFound
                            | ErrorKind::QuotaExhausted
                            | ErrorKind::Config
                    ) =>
            {
                // A provider that is down, a bad key, no credit, an unknown model: every further
                // session would fail the same way, so the run stops (and resumes later).
                return Err(OptimizeError::MetaUnavailable(e.to_string()));
            }
            Some(Err(e)) => MetaResult::Crash(format!("meta-agent session failed: {e}")),
        });
    }
}

async fn incumbent_commit(ctx: &Ctx<'_>) -> Result<String, OptimizeError> {
    let l = Ledger::load(&ctx.ws.ledger_path())?;
    let c = l
        .incumbent()
        .map(|r| r.commit.clone())
        .ok_or_else(|| OptimizeError::Setup("no kept experiment in the ledger".into()))?;
    Ok(ctx
        .ws
        .git()
        .run(&["rev-parse", &c])
        .await?
        .trim()
        .to_owned())
}

async fn experiment(ctx: &Ctx<'_>, ledger: &mut Ledger) -> Result<(), OptimizeError> {
    let git = ctx.ws.git();
    let n = ledger.last_experiment().unwrap_or(0) + 1;
    let job = format!("exp-{n:04}");
    let incumbent = ledger
        .incumbent()
        .cloned()
        .ok_or_else(|| OptimizeError::Setup("no kept experiment in the ledger".into()))?;
    let inc_full = incumbent_commit(ctx).await?;
    let t0 = Instant::now();
    let resumed = ctx.load_state().filter(|s| s.experiment == n);
    let mut state = resumed.clone().unwrap_or_else(|| State {
        experiment: n,
        phase: "meta".into(),
        started_unix: now_unix(),
        meta_cost_usd: Some(0.0),
        ..State::default()
    });
    let elapsed_before = now_unix().saturating_sub(state.started_unix) as f64;

    let crash_row = |description: String, commit: String, state: &State| Row {
        commit,
        avg_score: 0.0,
        passed: 0,
        trials: 0,
        task_scores: Vec::new(),
        cost_usd: add_cost(state.meta_cost_usd, spot_cost(&ctx.ws.jobs_dir(), n)),
        status: Status::Crash,
        description,
        holdout_score: None,
        harness_size: 0,
        meta_cost_usd: state.meta_cost_usd,
        task_cost_usd: spot_cost(&ctx.ws.jobs_dir(), n),
        duration_s: elapsed_before + t0.elapsed().as_secs_f64(),
        job_dir: format!("jobs/{job}"),
    };

    let commit = match (&resumed, &state.commit) {
        (Some(s), Some(c)) if s.phase == "evaluate" => {
            ctx.say(&format!("{job}: resuming the evaluation of {c}"));
            // Bring the working tree back to the commit under evaluation.
            if git.head().await? != *c || !git.is_clean().await? {
                git.reset_hard(c).await?;
            }
            c.clone()
        }
        _ => {
            if resumed.is_some() {
                ctx.say(&format!(
                    "{job}: the previous meta-agent session was interrupted; starting a fresh one"
                ));
            }
            git.reset_hard(&inc_full).await?;
            state.phase = "meta".into();
            ctx.save_state(&state);
            ctx.say(&format!("{job}: meta-agent thinking"));
            let proposal = match meta_session(ctx, n, &mut state).await? {
                MetaResult::Proposal(p) => p,
                MetaResult::Crash(why) => {
                    ctx.say(&format!("{job}: crash: {why}"));
                    let c = keep_readable(ctx, n, &format!("{job} (crash): {why}")).await?;
                    git.reset_hard(&inc_full).await?;
                    ledger.append(crash_row(why, c, &state))?;
                    ctx.clear_state();
                    return Ok(());
                }
            };
            state.description = proposal.description.clone();
            state.rationale = proposal.rationale.clone();
            // Guard 1: the harness must validate.
            if let Err(e) = Harness::load(&ctx.ws.harness_dir()) {
                let why = format!(
                    "invalid harness: {}: {}",
                    proposal.description,
                    e.problems
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                ctx.say(&format!("{job}: crash: {why}"));
                let c = keep_readable(
                    ctx,
                    n,
                    &format!("{job} (invalid): {}", proposal.description),
                )
                .await?;
                git.reset_hard(&inc_full).await?;
                ledger.append(crash_row(why, c, &state))?;
                ctx.clear_state();
                return Ok(());
            }
            // Guard 2: no task-specific literals in what the change adds.
            let diff = git.diff_worktree(&inc_full).await?;
            let hits = ctx.guard.scan_diff(&diff);
            if diff.trim().is_empty() || !hits.is_empty() {
                let why = if diff.trim().is_empty() {
                    format!("no change to the harness: {}", proposal.description)
                } else {
                    let list: Vec<String> = hits
                        .iter()
                        .map(|h| format!("{:?} ({})", h.literal, h.source))
                        .collect();
                    format!(
                        "leak guard: the change contains task-specific text {}: {}",
                        list.join(", "),
                        proposal.description
                    )
                };
                ctx.say(&format!("{job}: discard: {why}"));
                let c = keep_readable(ctx, n, &format!("{job} (guard): {}", proposal.description))
                    .await?;
                git.reset_hard(&inc_full).await?;
                let mut row = crash_row(why, c, &state);
                row.status = Status::Discard;
                row.harness_size = incumbent.harness_size;
                ledger.append(row)?;
                ctx.clear_state();
                return Ok(());
            }
            let full = git
                .commit_all(&format!(
                    "{job}: {}\n\n{}",
                    proposal.description, proposal.rationale
                ))
                .await?
                .ok_or_else(|| {
                    OptimizeError::Setup("nothing to commit after a non-empty diff".into())
                })?;
            state.phase = "evaluate".into();
            state.commit = Some(full.clone());
            ctx.save_state(&state);
            full
        }
    };

    let size = ctx.size();
    let eval = ctx.evaluate(&job, &commit, &ctx.train).await?;
    // The original's rule, on the incumbent's stored total.
    let mut keep = eval.passed > incumbent.passed
        || (eval.passed == incumbent.passed && size < incumbent.harness_size);
    let mut holdout_score = None;
    let mut task_cost = add_cost(eval.cost_usd, spot_cost(&ctx.ws.jobs_dir(), n));
    if keep && !ctx.holdout.is_empty() {
        let h = ctx
            .evaluate(&format!("{job}-holdout"), &commit, &ctx.holdout)
            .await?;
        holdout_score = Some(h.avg_score);
        task_cost = add_cost(task_cost, h.cost_usd);
        // A train gain that costs the unseen tasks more than noise is overfitting.
        if let Some(before) = incumbent.holdout_score
            && holdout_fell(before, h.avg_score, h.trials)
        {
            keep = false;
            state.description = format!(
                "{} [holdout fell from {before:.3} to {:.3}, beyond noise]",
                state.description, h.avg_score
            );
        }
    }
    let short = git.short(&commit).await?;
    let status = if keep { Status::Keep } else { Status::Discard };
    if !keep {
        git.update_ref(&format!("refs/autoagent/discarded/{n}"), &commit)
            .await?;
        git.reset_hard(&inc_full).await?;
    }
    ctx.say(&format!(
        "{job}: {status}: {}/{} passed (incumbent {}/{}), size {size} (incumbent {}): {}",
        eval.passed,
        eval.trials,
        incumbent.passed,
        incumbent.trials,
        incumbent.harness_size,
        state.description
    ));
    ledger.append(Row {
        commit: short,
        avg_score: eval.avg_score,
        passed: eval.passed,
        trials: eval.trials,
        task_scores: eval.task_scores,
        cost_usd: add_cost(task_cost, state.meta_cost_usd),
        status,
        description: state.description.clone(),
        holdout_score,
        harness_size: size,
        meta_cost_usd: state.meta_cost_usd,
        task_cost_usd: task_cost,
        duration_s: elapsed_before + t0.elapsed().as_secs_f64(),
        job_dir: format!("jobs/{job}"),
    })?;
    ctx.clear_state();
    Ok(())
}

/// Commits whatever the working tree holds and keeps it under `refs/autoagent/discarded/N`, so
/// a rejected change stays readable. Returns its short hash, or "" when nothing changed.
async fn keep_readable(ctx: &Ctx<'_>, n: u32, message: &str) -> Result<String, OptimizeError> {
    let git = ctx.ws.git();
    match git.commit_all(message).await? {
        Some(c) => {
            git.update_ref(&format!("refs/autoagent/discarded/{n}"), &c)
                .await?;
            Ok(git.short(&c).await?)
        }
        None => Ok(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::holdout_fell;

    #[test]
    fn holdout_noise() {
        // 30 trials: 0.9 → 0.8 is within noise, 0.9 → 0.6 is not.
        assert!(!holdout_fell(0.9, 0.8, 30));
        assert!(holdout_fell(0.9, 0.6, 30));
        // A rise or no change never counts.
        assert!(!holdout_fell(0.5, 0.7, 30));
        assert!(!holdout_fell(1.0, 1.0, 6));
        // Few trials: one failure of six is noise, everything failing is not.
        assert!(!holdout_fell(1.0, 5.0 / 6.0, 6));
        assert!(holdout_fell(1.0, 0.0, 6));
        assert!(!holdout_fell(1.0, 0.0, 0));
    }
}
