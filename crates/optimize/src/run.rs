//! The loop (DESIGN §5): baseline; then per experiment a meta-agent session → guards → commit →
//! evaluation → a [`Decision`] → a ledger row. It stops only at an experiment boundary, on its
//! limits or a `STOP` file, and resumes after a kill from the ledger, the harness history, the
//! job folders and `.autoagent/state.json`.
//!
//! This file sequences; the decision is in [`crate::decision`], what survives a kill in
//! [`crate::state`], the session in [`crate::meta`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use autoagent_agent::{Harness, RunError};
use autoagent_eval::job::JobObserver;
use autoagent_harbor::Dataset;
use autoagent_llm::{EnvSource, ErrorKind, ModelConfig, build_model};
use autoagent_sandbox::Backend;
use tokio_util::sync::CancellationToken;

use crate::accept::{self, Arm, Incumbent, Policy};
use crate::budget::{Limits, Shape};
use crate::decision::{self, Decision};
use crate::evaluate::{EvalSummary, Evaluator};
use crate::experiment::{ExperimentId, JobKind};
use crate::guards::LeakGuard;
use crate::history::History;
use crate::ledger::{Ledger, Row, Status};
use crate::meta::{MetaContext, Proposal, Session, SessionEnd};
use crate::split::TaskSplit;
use crate::state::{LookTargets, Phase, PinnedSettings, State, StateFile};
use crate::workspace::Workspace;

/// Hears about the run, for the status lines and the progress bar.
pub trait Reporter: Send + Sync {
    /// One status line: a phase starting, a decision.
    fn line(&self, msg: &str);
    /// The observer of evaluation jobs.
    fn job_observer(&self) -> Arc<dyn JobObserver>;
    /// The meta-agent made a step.
    fn meta_step(&self, _experiment: ExperimentId, _calls: u64, _tokens: u64) {}
}

/// What the loop needs besides the workspace.
pub struct Options {
    pub task_model: ModelConfig,
    pub meta_model: ModelConfig,
    pub env: EnvSource,
    pub backend: Arc<dyn Backend>,
    /// `--no-cache`: run every trial even when the workspace's trial cache
    /// (`Workspace::cache_dir`) holds the same measurement; nothing is reused or stored.
    pub no_cache: bool,
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

/// An unknown cost makes the sum unknown (the one rule, in harbor).
pub(crate) use autoagent_harbor::cost::add as add_cost;

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

struct Ctx<'a> {
    ws: &'a Workspace,
    opts: &'a Options,
    reporter: &'a dyn Reporter,
    log: Log,
    evaluator: Arc<Evaluator>,
    split: TaskSplit,
    guard: LeakGuard,
    states: StateFile,
    cancel: CancellationToken,
    policy: Policy,
    limits: Limits,
    started: Instant,
}

impl Ctx<'_> {
    fn train_names(&self) -> Vec<String> {
        self.split.train.name_set().into_iter().collect()
    }

    fn shape(&self) -> Shape {
        Shape {
            train_tasks: self.split.train.len(),
            holdout_tasks: self.split.holdout.len(),
            holdout_attempts: self.ws.config.eval.attempts,
        }
    }

    /// The tree of `commit`, written once under `.autoagent/trees/`: the incumbent's attempts run
    /// from there while the working tree holds the candidate.
    async fn tree_dir(&self, commit: &str) -> Result<std::path::PathBuf, OptimizeError> {
        let dir = self.ws.state_dir().join("trees").join(commit);
        if dir.is_dir() {
            return Ok(dir);
        }
        let tmp = self
            .ws
            .state_dir()
            .join("trees")
            .join(format!("{commit}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        self.ws.git().export(commit, &tmp).await?;
        std::fs::rename(&tmp, &dir)
            .map_err(|e| OptimizeError::Setup(format!("writing {}: {e}", dir.display())))?;
        Ok(dir)
    }

    /// Brings job `job` of `commit`'s tree (at `dir`) to `targets`; `first_attempt` as in
    /// [`Evaluator::evaluate_to`].
    async fn evaluate_to(
        &self,
        job: &str,
        dir: &std::path::Path,
        commit: &str,
        targets: &BTreeMap<String, u32>,
        first_attempt: BTreeMap<String, u32>,
    ) -> Result<EvalSummary, OptimizeError> {
        self.evaluator
            .evaluate_to(
                job,
                dir,
                commit,
                &self.split.train.name_set(),
                targets,
                first_attempt,
                self.cancel.clone(),
            )
            .await
            .map_err(|message| self.eval_error(job, message))
    }

    fn eval_error(&self, job: &str, message: String) -> OptimizeError {
        if self.cancel.is_cancelled() {
            OptimizeError::Cancelled
        } else {
            OptimizeError::Eval {
                job: job.to_owned(),
                message,
            }
        }
    }

    fn say(&self, msg: &str) {
        self.log.line(msg);
        self.reporter.line(msg);
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
            .map_err(|message| self.eval_error(job, message))
    }

    /// The holdout evaluation of `commit`, when there is a holdout.
    async fn evaluate_holdout(
        &self,
        id: ExperimentId,
        commit: &str,
    ) -> Result<Option<EvalSummary>, OptimizeError> {
        if self.split.holdout.is_empty() {
            return Ok(None);
        }
        let job = id.job(JobKind::Holdout);
        Ok(Some(
            self.evaluate(&job, commit, &self.split.holdout).await?,
        ))
    }

    fn size(&self) -> u64 {
        Harness::load(&self.ws.harness_dir())
            .map(|h| crate::size::measure(&h).total())
            .unwrap_or(0)
    }

    /// The full hash of the incumbent (the last kept row's commit).
    async fn incumbent_commit(&self) -> Result<String, OptimizeError> {
        let l = Ledger::load(&self.ws.ledger_path())?;
        let c = l
            .incumbent()
            .map(|r| r.commit.clone())
            .ok_or_else(|| OptimizeError::Setup("no kept experiment in the ledger".into()))?;
        Ok(self
            .ws
            .git()
            .run(&["rev-parse", &c])
            .await?
            .trim()
            .to_owned())
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
    for dir in [ws.state_dir(), ws.jobs_dir()] {
        std::fs::create_dir_all(&dir)
            .map_err(|e| OptimizeError::Setup(format!("creating {}: {e}", dir.display())))?;
    }
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
    sweep_unfinished_jobs(ws, opts.backend.as_ref(), &log).await;
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
    let split = TaskSplit::new(&dataset.tasks, &ws.config.optimize.holdout);
    if split.train.is_empty() {
        return Err(OptimizeError::Setup(
            "the holdout leaves no train task".into(),
        ));
    }
    let policy = Policy::new(&ws.config.accept).map_err(|e| {
        OptimizeError::Setup(format!("{}: {e}", ws.root.join("autoagent.toml").display()))
    })?;
    PinnedSettings {
        train: split.train.name_set(),
        holdout: split.holdout.clone(),
        attempts: ws.config.eval.attempts,
        greedy_k: policy.greedy_k(),
    }
    .check_or_pin(&ws.state_dir())
    .map_err(OptimizeError::Setup)?;
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
        cache: if opts.no_cache {
            None
        } else {
            Some(Arc::new(
                autoagent_eval::TrialCache::open(&ws.cache_dir())
                    .map_err(|e| OptimizeError::Setup(e.to_string()))?,
            ))
        },
    });
    let ctx = Ctx {
        ws,
        opts,
        reporter,
        log,
        evaluator,
        guard: LeakGuard::new(&dataset.tasks),
        split,
        states: StateFile::new(&ws.state_dir()),
        cancel,
        limits: Limits {
            budget_usd: ws.config.optimize.budget_usd,
            hours: ws.config.optimize.hours,
        },
        policy,
        started,
    };
    ctx.say(&format!(
        "{} train task(s), {} holdout task(s); acceptance: {}",
        ctx.split.train.len(),
        ctx.split.holdout.len(),
        ctx.policy.label()
    ));
    let mut ledger = Ledger::load(&ws.ledger_path())?;

    if ledger.rows.is_empty() {
        baseline(&ctx, &mut ledger).await?;
    }
    loop {
        if let Some(reason) = stop_reason(&ctx, &ledger) {
            ctx.say(&format!("stopping: {reason:?}"));
            return Ok(reason);
        }
        if ctx.cancel.is_cancelled() {
            return Err(OptimizeError::Cancelled);
        }
        experiment(&ctx, &mut ledger).await?;
    }
}

/// A killed run leaves the sandboxes of its unfinished jobs behind. A resumed job sweeps its
/// own, but some jobs are never resumed (a spot check: the next session starts a new one), so
/// every unfinished job's containers go when the loop starts.
async fn sweep_unfinished_jobs(ws: &Workspace, backend: &dyn Backend, log: &Log) {
    for e in std::fs::read_dir(ws.jobs_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(r) = autoagent_harbor::JobDir::new(e.path()).read_result() else {
            continue;
        };
        if r.finished_at.is_some() {
            continue;
        }
        let n = backend
            .remove_labelled(autoagent_eval::job::JOB_LABEL, &r.id)
            .await;
        if n > 0 {
            log.line(&format!(
                "removed {n} sandbox(es) left by the interrupted job {}",
                e.file_name().to_string_lossy()
            ));
        }
    }
}

/// Whether to stop before the next experiment: a `STOP` file, the iteration limit, or a
/// forecast that says the next experiment cannot finish within the budget or the hours.
fn stop_reason(ctx: &Ctx<'_>, ledger: &Ledger) -> Option<StopReason> {
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
    let history = History::load(&ctx.ws.jobs_dir());
    let f = crate::budget::forecast(ledger, &history, &ctx.policy, ctx.shape());
    let spent = ledger.spent_usd();
    let elapsed = ctx.started.elapsed().as_secs_f64();
    let tokens = (
        history.tokens(),
        crate::budget::meta_tokens(&ctx.ws.state_dir().join("meta")),
    );
    ctx.say(&crate::budget::status_line(
        spent,
        tokens,
        elapsed,
        &f,
        &ctx.limits,
    ));
    match ctx.limits.check(spent, f.usd, elapsed, f.seconds) {
        Ok(()) => None,
        Err(why) => {
            ctx.say(&format!("not starting another experiment: {why}"));
            Some(match why {
                crate::budget::OverLimit::Budget { budget, .. } => StopReason::Budget(budget),
                crate::budget::OverLimit::Hours { hours, .. } => StopReason::Hours(hours),
            })
        }
    }
}

async fn baseline(ctx: &Ctx<'_>, ledger: &mut Ledger) -> Result<(), OptimizeError> {
    let git = ctx.ws.git();
    let t0 = Instant::now();
    let id = ExperimentId::BASELINE;
    // Edits made by hand before the first run are the baseline.
    git.commit_all("baseline harness").await?;
    if let Err(e) = Harness::load(&ctx.ws.harness_dir()) {
        return Err(OptimizeError::Setup(format!(
            "the baseline harness does not validate:\n{e}"
        )));
    }
    let head = git.head().await?;
    let short = git.short(&head).await?;
    ctx.say(&format!("{id}: baseline"));
    let targets: BTreeMap<String, u32> = ctx
        .policy
        .baseline(&ctx.train_names())
        .into_iter()
        .map(|r| (r.task, r.attempts))
        .collect();
    let train = ctx
        .evaluate_to(
            &id.job(JobKind::Train),
            &ctx.ws.harness_dir(),
            &head,
            &targets,
            BTreeMap::new(),
        )
        .await?;
    let holdout = ctx.evaluate_holdout(id, &head).await?;
    let task_cost = add_cost(
        train.cost_usd,
        holdout.as_ref().map_or(Some(0.0), |h| h.cost_usd),
    );
    let row = Row {
        commit: short,
        avg_score: train.avg_score,
        passed: train.passed,
        trials: train.trials,
        task_scores: train.task_scores.clone(),
        cost_usd: task_cost,
        status: Status::Keep,
        description: match crate::evaluate::suspect_note(&train.suspect) {
            Some(note) => format!("baseline [{note}]"),
            None => "baseline".into(),
        },
        holdout_score: holdout.map(|h| h.avg_score),
        harness_size: ctx.size(),
        meta_cost_usd: Some(0.0),
        task_cost_usd: task_cost,
        duration_s: t0.elapsed().as_secs_f64(),
        job_dir: id.ledger_job_dir(),
        policy: ctx.policy.label(),
        looks: 1,
        attempts: ran_by(ctx, id),
    };
    ctx.say(&format!(
        "{id}: baseline {}/{} passed (score {:.3})",
        row.passed, row.trials, row.avg_score
    ));
    ledger.append(row)?;
    Ok(())
}

/// The task-model spend of one job's trials, read from its folder: it is on disk as soon as a
/// trial ends, so a kill loses none of it. `None` when a price is unknown.
fn job_cost(dir: &std::path::Path) -> Option<f64> {
    autoagent_harbor::cost::sum(
        autoagent_harbor::JobDir::new(dir)
            .trial_results()
            .into_iter()
            .filter_map(|r| r.agent_result)
            .map(|a| a.cost_usd),
    )
}

/// The task-model spend of an experiment's spot checks. `None` when a price is unknown.
fn spot_cost(jobs_dir: &std::path::Path, id: ExperimentId) -> Option<f64> {
    let is_spot = |name: &str| matches!(ExperimentId::parse_job(name), Some((i, JobKind::Spot(_))) if i == id);
    autoagent_harbor::cost::sum(
        std::fs::read_dir(jobs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|job| is_spot(&job.file_name().to_string_lossy()))
            .map(|job| job_cost(&job.path())),
    )
}

/// A meta-agent session for experiment `id`, tried again (from the incumbent) when its
/// provider is briefly down; a provider that stays down, or refuses the key or the model,
/// stops the run instead of filling the ledger with crashes.
async fn meta_session(
    ctx: &Ctx<'_>,
    id: ExperimentId,
    state: &mut State,
) -> Result<Result<Proposal, String>, OptimizeError> {
    let ws = ctx.ws;
    let program = crate::meta::with_steering(
        std::fs::read_to_string(ws.program_path()).unwrap_or_default(),
        &ws.state_dir(),
    );
    let incumbent_job = Ledger::load(&ws.ledger_path())?
        .incumbent()
        .map(|r| ws.root.join(&r.job_dir));
    let meta_dir = ws.state_dir().join("meta");
    let _ = std::fs::create_dir_all(&meta_dir);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let context = Arc::new(MetaContext {
            harness_dir: ws.harness_dir(),
            jobs_dir: ws.jobs_dir(),
            ledger_path: ws.ledger_path(),
            train: ctx.split.train.clone(),
            evaluator: ctx.evaluator.clone(),
            experiment: id,
            spot_attempts: ws.config.optimize.spot_check_attempts,
            flaky_prior: ws.config.accept.flaky_prior,
            cancel: ctx.cancel.clone(),
        });
        let mut model_cfg = ctx.opts.meta_model.clone();
        // `{n}` in a scripted meta model names one script per experiment (tests that resume).
        model_cfg.model = model_cfg.model.replace("{n}", &id.0.to_string());
        let model = build_model(&model_cfg, &ctx.opts.env)
            .map_err(|e| OptimizeError::Setup(format!("meta model: {e}")))?;
        let session = Session {
            first_message: crate::meta::first_message(&context, incumbent_job.as_deref()),
            context,
            harness: crate::meta::meta_harness(
                &ws.harness_dir(),
                &program,
                ws.config.optimize.meta_max_turns,
            ),
            model,
            max_tokens: ws.config.optimize.meta_max_tokens,
            trajectory_path: meta_dir.join(format!("{id}.json")),
            states: &ctx.states,
            reporter: ctx.reporter,
            backend: ctx.opts.backend.as_ref(),
            cancel: ctx.cancel.clone(),
        };
        match session.run(state).await {
            SessionEnd::Proposal(p) => return Ok(Ok(p)),
            SessionEnd::Crash(why) => return Ok(Err(why)),
            SessionEnd::Cancelled => return Err(OptimizeError::Cancelled),
            SessionEnd::Failed(RunError::Model(e)) if e.is_infrastructure() && attempt < 3 => {
                ctx.say(&format!(
                    "{id}: meta-agent model unavailable ({e}); retrying the session"
                ));
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(30 * u64::from(attempt))) => {}
                    () = ctx.cancel.cancelled() => return Err(OptimizeError::Cancelled),
                }
                ws.git().reset_hard(&ctx.incumbent_commit().await?).await?;
            }
            SessionEnd::Failed(RunError::Model(e))
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
            SessionEnd::Failed(e) => return Ok(Err(format!("meta-agent session failed: {e}"))),
        }
    }
}

/// A change that is not evaluated: a crashed session, a harness that does not validate, a diff
/// the guards refuse. All take the same path: the tree is kept readable under a ref, the branch
/// goes back to the incumbent, a row is written.
struct Rejection {
    status: Status,
    /// The commit message's tag: `crash`, `invalid`, `guard`.
    label: &'static str,
    /// What the commit message says after the tag.
    title: String,
    /// The ledger's description.
    why: String,
    harness_size: u64,
}

/// What the proposal phase produced.
enum Proposed {
    Commit { commit: String },
    Rejected(Rejection),
}

/// The meta-agent session and the guards, up to the commit under evaluation.
async fn propose(
    ctx: &Ctx<'_>,
    id: ExperimentId,
    incumbent: &Row,
    inc_full: &str,
    state: &mut State,
) -> Result<Proposed, OptimizeError> {
    let git = ctx.ws.git();
    git.reset_hard(inc_full).await?;
    state.phase = Phase::Meta;
    ctx.states.save(state);
    ctx.say(&format!("{id}: meta-agent thinking"));
    let proposal = match meta_session(ctx, id, state).await? {
        Ok(p) => p,
        Err(why) => {
            return Ok(Proposed::Rejected(Rejection {
                status: Status::Crash,
                label: "crash",
                title: why.clone(),
                why,
                harness_size: 0,
            }));
        }
    };
    state.description.clone_from(&proposal.description);
    state.rationale.clone_from(&proposal.rationale);
    // Guard 1: the harness must validate.
    if let Err(e) = Harness::load(&ctx.ws.harness_dir()) {
        let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
        return Ok(Proposed::Rejected(Rejection {
            status: Status::Crash,
            label: "invalid",
            title: proposal.description.clone(),
            why: format!(
                "invalid harness: {}: {}",
                proposal.description,
                problems.join("; ")
            ),
            harness_size: 0,
        }));
    }
    // Guard 2: a change, and no task-specific literals in what it adds.
    let diff = git.diff_worktree(inc_full).await?;
    let hits = ctx.guard.scan_diff(&diff);
    let refused = if diff.trim().is_empty() {
        Some(format!(
            "no change to the harness: {}",
            proposal.description
        ))
    } else if !hits.is_empty() {
        let list: Vec<String> = hits
            .iter()
            .map(|h| format!("{:?} ({})", h.literal, h.source))
            .collect();
        Some(format!(
            "leak guard: the change contains task-specific text {}: {}",
            list.join(", "),
            proposal.description
        ))
    } else {
        None
    };
    if let Some(why) = refused {
        return Ok(Proposed::Rejected(Rejection {
            status: Status::Discard,
            label: "guard",
            title: proposal.description.clone(),
            why,
            harness_size: incumbent.harness_size,
        }));
    }
    let commit = git
        .commit_all(&format!(
            "{id}: {}\n\n{}",
            proposal.description, proposal.rationale
        ))
        .await?
        .ok_or_else(|| OptimizeError::Setup("nothing to commit after a non-empty diff".into()))?;
    state.phase = Phase::Evaluate;
    state.commit = Some(commit.clone());
    ctx.states.save(state);
    Ok(Proposed::Commit { commit })
}

async fn experiment(ctx: &Ctx<'_>, ledger: &mut Ledger) -> Result<(), OptimizeError> {
    let git = ctx.ws.git();
    let id = ledger.last_experiment().unwrap_or_default().next();
    let incumbent = ledger
        .incumbent()
        .cloned()
        .ok_or_else(|| OptimizeError::Setup("no kept experiment in the ledger".into()))?;
    let inc_full = ctx.incumbent_commit().await?;
    let t0 = Instant::now();
    let resumed = ctx.states.load(id);
    let mut state = resumed.clone().unwrap_or_else(|| State::new(id));
    let elapsed_before = state.elapsed_s();
    let duration_s = || elapsed_before + t0.elapsed().as_secs_f64();

    let commit = match (&resumed, &state.commit) {
        (Some(s), Some(c)) if s.phase == Phase::Evaluate => {
            ctx.say(&format!("{id}: resuming the evaluation of {c}"));
            // Bring the working tree back to the commit under evaluation.
            if git.head().await? != *c || !git.is_clean().await? {
                git.reset_hard(c).await?;
            }
            c.clone()
        }
        _ => {
            if resumed.is_some() {
                ctx.say(&format!(
                    "{id}: the previous meta-agent session was interrupted; starting a fresh one"
                ));
            }
            match propose(ctx, id, &incumbent, &inc_full, &mut state).await? {
                Proposed::Commit { commit } => commit,
                Proposed::Rejected(r) => {
                    ctx.say(&format!("{id}: {}: {}", r.status, r.why));
                    let c =
                        keep_readable(ctx, id, &format!("{id} ({}): {}", r.label, r.title)).await?;
                    git.reset_hard(&inc_full).await?;
                    let spot = spot_cost(&ctx.ws.jobs_dir(), id);
                    ledger.append(Row {
                        commit: c,
                        avg_score: 0.0,
                        passed: 0,
                        trials: 0,
                        task_scores: Vec::new(),
                        cost_usd: add_cost(state.meta_cost_usd, spot),
                        status: r.status,
                        description: r.why,
                        holdout_score: None,
                        harness_size: r.harness_size,
                        meta_cost_usd: state.meta_cost_usd,
                        task_cost_usd: spot,
                        duration_s: duration_s(),
                        job_dir: id.ledger_job_dir(),
                        policy: String::new(),
                        looks: 0,
                        attempts: ran_by(ctx, id),
                    })?;
                    ctx.states.clear();
                    return Ok(());
                }
            }
        }
    };

    let size = ctx.size();
    let inc = IncumbentRef {
        experiment: incumbent.experiment().unwrap_or(ExperimentId::BASELINE),
        commit: inc_full.clone(),
        size: incumbent.harness_size,
    };
    let compared = compare(ctx, id, &mut state, &commit, size, &inc, ledger).await?;
    let cand = compared.candidate;
    let spent_before_holdout = spent_now(ctx, ledger, &state, id);
    let mut task_cost = add_cost(
        cost_of(
            &ctx.ws.jobs_dir(),
            id,
            &[JobKind::Train, JobKind::Incumbent],
        ),
        spot_cost(&ctx.ws.jobs_dir(), id),
    );
    let mut decision = compared.decision;
    let mut holdout_score = None;
    if decision.is_keep() && !ctx.split.holdout.is_empty() {
        // The holdout is part of a keep: when it cannot be paid, neither is the keep.
        let per_trial = History::load(&ctx.ws.jobs_dir()).trial_cost(None);
        let trials = ctx.split.holdout.len() as f64 * f64::from(ctx.ws.config.eval.attempts);
        if let Err(why) = ctx.limits.check(
            spent_before_holdout,
            per_trial.map(|c| c * trials),
            ctx.started.elapsed().as_secs_f64(),
            0.0,
        ) {
            decision = Decision::Discard {
                reason: format!(
                    "{}; the holdout evaluation cannot be paid: {why}",
                    decision.reason()
                ),
            };
        } else if let Some(h) = ctx.evaluate_holdout(id, &commit).await? {
            holdout_score = Some(h.avg_score);
            task_cost = add_cost(task_cost, h.cost_usd);
            // A train gain that costs the unseen tasks more than noise is overfitting.
            decision =
                decision::holdout_guard(decision, incumbent.holdout_score, h.avg_score, h.trials);
        }
        if !decision.is_keep() {
            state.description = format!("{} [{}]", state.description, decision.reason());
        }
    } else if compared.undecided {
        state.description = format!("{} [{}]", state.description, decision.reason());
    }
    // The policy decided with every suspect trial counted as a failure (history.rs): a pass
    // that came from tampering with the verifier never makes a keep. The ledger says which.
    if let Some(note) = crate::evaluate::suspect_note(&cand.suspect) {
        state.description = format!("{} [{note}]", state.description);
    }
    let short = git.short(&commit).await?;
    let status = match &decision {
        Decision::Keep { .. } => Status::Keep,
        Decision::Discard { .. } => {
            git.update_ref(&discarded_ref(id), &commit).await?;
            git.reset_hard(&inc_full).await?;
            Status::Discard
        }
    };
    let tasks = ctx.train_names();
    let total = cand.tallies.total(&tasks);
    let ran = ran_by(ctx, id);
    ctx.say(&format!(
        "{id}: {status} after {} look(s), {ran} trial(s): {}/{} passed, size {size} (incumbent {}): {}",
        compared.looks,
        total.passes,
        total.attempts,
        incumbent.harness_size,
        state.description
    ));
    ledger.append(Row {
        commit: short,
        avg_score: if total.attempts == 0 {
            0.0
        } else {
            cand.reward_sum / f64::from(total.attempts)
        },
        passed: total.passes,
        trials: total.attempts,
        task_scores: tasks
            .iter()
            .map(|t| (t, cand.tallies.get(t)))
            .filter(|(_, x)| x.attempts > 0)
            .map(|(t, x)| (t.clone(), x.passes, x.attempts))
            .collect(),
        cost_usd: add_cost(task_cost, state.meta_cost_usd),
        status,
        description: state.description.clone(),
        holdout_score,
        harness_size: size,
        meta_cost_usd: state.meta_cost_usd,
        task_cost_usd: task_cost,
        duration_s: duration_s(),
        job_dir: id.ledger_job_dir(),
        policy: ctx.policy.label(),
        looks: compared.looks,
        attempts: ran,
    })?;
    ctx.states.clear();
    Ok(())
}

/// The incumbent a comparison runs against.
struct IncumbentRef {
    /// The experiment that made it the incumbent (the baseline's is 0).
    experiment: ExperimentId,
    /// Its full commit hash.
    commit: String,
    size: u64,
}

/// A comparison's outcome.
struct Compared {
    decision: Decision,
    /// The comparison was cut short (budget, no request) rather than decided.
    undecided: bool,
    candidate: crate::history::JobAttempts,
    looks: u32,
}

/// Trials experiment `id` ran, all its jobs together (cache hits excluded).
fn ran_by(ctx: &Ctx<'_>, id: ExperimentId) -> u64 {
    let holdout = ctx.ws.jobs_dir().join(id.job(JobKind::Holdout));
    History::load(&ctx.ws.jobs_dir()).ran_by(id) + crate::history::JobAttempts::read(&holdout).ran
}

/// Task-model spend of experiment `id`'s jobs of the given kinds, read from their trials.
fn cost_of(jobs_dir: &std::path::Path, id: ExperimentId, kinds: &[JobKind]) -> Option<f64> {
    autoagent_harbor::cost::sum(
        kinds
            .iter()
            .map(|kind| job_cost(&jobs_dir.join(id.job(*kind)))),
    )
}

/// Spend of the run so far, this unfinished experiment's included (unknown prices count 0).
fn spent_now(ctx: &Ctx<'_>, ledger: &Ledger, state: &State, id: ExperimentId) -> f64 {
    let task = add_cost(
        cost_of(
            &ctx.ws.jobs_dir(),
            id,
            &[JobKind::Train, JobKind::Incumbent, JobKind::Holdout],
        ),
        spot_cost(&ctx.ws.jobs_dir(), id),
    );
    ledger.spent_usd() + task.unwrap_or(0.0) + state.meta_cost_usd.unwrap_or(0.0)
}

/// The comparison of the candidate (`commit`, checked out in the working tree) with the
/// incumbent, look by look: the policy names each look's attempts, the look runs, the policy
/// decides again from what the job folders hold. Each look's targets are saved before it runs,
/// so a kill anywhere resumes the same look, and no trial is run or counted twice.
async fn compare(
    ctx: &Ctx<'_>,
    id: ExperimentId,
    state: &mut State,
    commit: &str,
    size: u64,
    inc: &IncumbentRef,
    ledger: &Ledger,
) -> Result<Compared, OptimizeError> {
    let tasks = ctx.train_names();
    let prior = ctx.ws.config.accept.flaky_prior;
    loop {
        let history = History::load(&ctx.ws.jobs_dir());
        let candidate = history.job(id, JobKind::Train);
        let inc_job = history.job(id, JobKind::Incumbent);
        let targets = match state.look.take() {
            Some(t) => t,
            None => {
                let (accepted, since) = history.incumbent(inc.experiment, &inc.commit);
                let incumbent = Incumbent {
                    accepted: &accepted,
                    accepted_is_baseline: inc.experiment == ExperimentId::BASELINE,
                    since: &since,
                };
                let flakiness = history.flakiness(prior);
                let actx = accept::Context {
                    tasks: &tasks,
                    flakiness: &flakiness,
                    incumbent_size: inc.size,
                    candidate_size: size,
                    seed: u64::from(id.0),
                };
                let answer = if state.looks == 0 {
                    accept::Decision::RunMore(ctx.policy.first_look(&actx, &incumbent))
                } else {
                    ctx.policy
                        .decide(&actx, &incumbent, &candidate.tallies, state.looks)
                };
                let requests = match answer {
                    accept::Decision::RunMore(r) if !r.is_empty() => r,
                    accept::Decision::RunMore(_) => {
                        return Ok(Compared {
                            decision: Decision::Discard {
                                reason: "the policy asked for nothing more and decided nothing"
                                    .into(),
                            },
                            candidate,
                            looks: state.looks,
                            undecided: true,
                        });
                    }
                    d => {
                        return Ok(Compared {
                            decision: Decision::from_accept(d).unwrap_or(Decision::Discard {
                                reason: String::new(),
                            }),
                            candidate,
                            looks: state.looks,
                            undecided: false,
                        });
                    }
                };
                let mut t = LookTargets::default();
                for r in requests {
                    let (map, have) = match r.arm {
                        Arm::Candidate => (&mut t.candidate, candidate.finished(&r.task)),
                        Arm::Incumbent => (&mut t.incumbent, inc_job.finished(&r.task)),
                    };
                    let e = map.entry(r.task.clone()).or_insert(have);
                    *e += r.attempts;
                }
                t
            }
        };
        // The look must fit in what is left: its new trials at their tasks' cost so far.
        let mut look_cost = Some(0.0);
        let mut new_trials = 0u64;
        for (map, have) in [
            (&targets.candidate, &candidate),
            (&targets.incumbent, &inc_job),
        ] {
            for (task, n) in map {
                let add = n.saturating_sub(have.finished(task));
                new_trials += u64::from(add);
                look_cost = add_cost(
                    look_cost,
                    history.trial_cost(Some(task)).map(|c| c * f64::from(add)),
                );
            }
        }
        if let Err(why) = ctx.limits.check(
            spent_now(ctx, ledger, state, id),
            look_cost,
            ctx.started.elapsed().as_secs_f64(),
            0.0,
        ) {
            return Ok(Compared {
                decision: Decision::Discard {
                    reason: format!(
                        "undecided after {} look(s): the next look ({new_trials} trials) cannot be paid: {why}",
                        state.looks
                    ),
                },
                candidate,
                looks: state.looks,
                undecided: true,
            });
        }
        state.look = Some(targets.clone());
        ctx.states.save(state);
        ctx.say(&format!(
            "{id}: look {}: {} candidate and {} incumbent trial(s) ({})",
            state.looks + 1,
            targets
                .candidate
                .iter()
                .map(|(t, n)| n.saturating_sub(candidate.finished(t)))
                .sum::<u32>(),
            targets
                .incumbent
                .iter()
                .map(|(t, n)| n.saturating_sub(inc_job.finished(t)))
                .sum::<u32>(),
            ctx.policy.label()
        ));
        if !targets.candidate.is_empty() {
            ctx.evaluate_to(
                &id.job(JobKind::Train),
                &ctx.ws.harness_dir(),
                commit,
                &targets.candidate,
                BTreeMap::new(),
            )
            .await?;
        }
        if !targets.incumbent.is_empty() {
            let dir = ctx.tree_dir(&inc.commit).await?;
            ctx.evaluate_to(
                &id.job(JobKind::Incumbent),
                &dir,
                &inc.commit,
                &targets.incumbent,
                history.attempts_of(&inc.commit, (id, JobKind::Incumbent)),
            )
            .await?;
        }
        state.looks += 1;
        state.look = None;
        ctx.states.save(state);
    }
}

/// Where a rejected change of experiment `id` stays readable.
pub fn discarded_ref(id: ExperimentId) -> String {
    format!("refs/autoagent/discarded/{}", id.0)
}

/// Commits whatever the working tree holds and keeps it under [`discarded_ref`], so a rejected
/// change stays readable. Returns its short hash, or "" when nothing changed.
async fn keep_readable(
    ctx: &Ctx<'_>,
    id: ExperimentId,
    message: &str,
) -> Result<String, OptimizeError> {
    let git = ctx.ws.git();
    match git.commit_all(message).await? {
        Some(c) => {
            git.update_ref(&discarded_ref(id), &c).await?;
            Ok(git.short(&c).await?)
        }
        None => Ok(String::new()),
    }
}
