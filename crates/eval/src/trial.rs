//! One trial, exactly as Harbor's `Trial.run` (spec §5): environment → agent → artifacts →
//! verifier → teardown, each phase timed, every failure mapped to Harbor's exception type.
//!
//! Whose fault a sandbox failure is depends on when it happens. Before the agent phase
//! (start, healthcheck, agent setup) it is the infrastructure's. Once the agent has run, the
//! sandbox may be broken by what the agent did (`rm -rf /usr`, killing its main process, an
//! OOM kill under the task's own memory limit): a failure is then the infrastructure's only
//! when [`Sandbox::liveness`] says the sandbox is gone or its host does not answer; otherwise
//! the trial carries on to the verifier, whose failure to produce a reward scores it as Harbor
//! does (`RewardFileNotFoundError`, not retried), with what broke in the message.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoagent_harbor::config::{
    ArtifactSpec, CollectHook, MultiStepRewardStrategy, StepConfig, VerifierEnvironmentMode,
};
use autoagent_harbor::exception::ExceptionType;
use autoagent_harbor::fs::read_shared;
use autoagent_harbor::result::{
    AgentInfo, AgentResult, ExceptionInfo, Integrity, Rewards, StepResult, TaskId, TimingInfo,
    TrialResult, VerifierResult,
};
use autoagent_harbor::task::VerifierDefinition;
use autoagent_harbor::{Task, TrialDir};
use autoagent_sandbox::{Backend, EnvironmentSpec, ExecRequest, Mount, Sandbox, SandboxError};
use chrono::Utc;

use crate::agent::{AgentError, TrialAgent, TrialContext};

/// Harbor's default agent setup timeout (`BaseAgent.DEFAULT_SETUP_TIMEOUT_SEC`).
const AGENT_SETUP_TIMEOUT: Duration = Duration::from_secs(360);

/// Everything a trial needs.
#[derive(Clone)]
pub(crate) struct TrialSpec {
    pub task: Arc<Task>,
    pub trial_name: String,
    pub trial_dir: PathBuf,
    /// The dataset name (`None` for a single task).
    pub source: Option<String>,
    pub force_build: bool,
    pub timeout_multiplier: f64,
    pub disable_verification: bool,
    /// Written to `<trial>/config.json` and into `result.json` as `config`.
    pub config: serde_json::Value,
    /// Written to `<trial>/lock.json` ([`crate::lock::trial_lock`]).
    pub lock: serde_json::Value,
    /// Labels for the sandbox (job id), to find leftovers.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The trial's attempt index, recorded in `result.json` when the job uses the cache.
    pub attempt_index: Option<u32>,
}

/// The part of a task's environment spec that names its image: what
/// [`Backend::image_id`] needs for the cache key, and what `start` builds on.
pub(crate) fn image_spec(task: &Task, force_build: bool) -> EnvironmentSpec {
    EnvironmentSpec {
        name: task.name.clone(),
        build_context: task
            .environment_dir()
            .is_dir()
            .then(|| task.environment_dir()),
        docker_image: task.config.environment.docker_image.clone(),
        force_build,
        ..EnvironmentSpec::default()
    }
}

/// A trial-level failure: the exception type and its message.
#[derive(Debug)]
struct Failure {
    kind: ExceptionType,
    message: String,
    detail: String,
}

impl Failure {
    fn new(kind: ExceptionType, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            kind,
            detail: message.clone(),
            message,
        }
    }
}

impl From<SandboxError> for Failure {
    fn from(e: SandboxError) -> Self {
        let kind = match &e {
            SandboxError::StartTimeout(_) | SandboxError::StartTimeoutWaiting { .. } => {
                ExceptionType::EnvironmentStartTimeoutError
            }
            SandboxError::HostLost { .. } => ExceptionType::SandboxHostLostError,
            _ => ExceptionType::RuntimeError,
        };
        Self {
            kind,
            message: e.to_string(),
            detail: format!("{e:?}"),
        }
    }
}

/// The per-trial log (`trial.log`): one timestamped line per event.
struct TrialLog(Mutex<Option<std::fs::File>>);

impl TrialLog {
    fn open(path: &Path) -> Self {
        Self(Mutex::new(std::fs::File::create(path).ok()))
    }
    fn line(&self, msg: &str) {
        if let Ok(mut f) = self.0.lock()
            && let Some(f) = f.as_mut()
        {
            let _ = writeln!(f, "{} {msg}", Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
    }
}

fn scaled(base: Option<f64>, multiplier: f64) -> Option<Duration> {
    base.map(|s| Duration::from_secs_f64((s * multiplier).max(0.0)))
}

fn make_dirs(trial_dir: &TrialDir) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (p, _) in trial_dir.mounts() {
        std::fs::create_dir_all(&p)?;
        // World-writable, so that non-root users in the container can write their logs.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// Runs one trial to the end and writes its `result.json`. Never fails: whatever goes wrong
/// is in `exception_info`. `on_host` hears the host its sandbox went to, once it is up.
pub(crate) async fn run_trial(
    spec: &TrialSpec,
    backend: &dyn Backend,
    agent: &dyn TrialAgent,
    on_host: &(dyn Fn(&str) + Send + Sync),
) -> TrialResult {
    let task = &spec.task;
    let trial_dir = &TrialDir::new(&spec.trial_dir);
    let mut result = TrialResult {
        id: uuid::Uuid::new_v4().to_string(),
        task_name: task.name.clone(),
        trial_name: spec.trial_name.clone(),
        trial_uri: format!("file://{}", trial_dir.path().display()),
        task_id: task.origin.as_ref().map_or_else(
            || TaskId {
                path: task.dir.display().to_string(),
                git_url: None,
                git_commit_id: None,
            },
            |o| TaskId {
                path: o.path.display().to_string(),
                git_url: o.git_url.clone(),
                git_commit_id: o.git_commit_id.clone(),
            },
        ),
        source: spec.source.clone(),
        task_checksum: task.checksum(),
        config: spec.config.clone(),
        agent_info: AgentInfo {
            name: agent.name().to_owned(),
            version: agent.version().to_owned(),
            model_info: agent.model_info(),
        },
        agent_result: None,
        verifier_result: None,
        verifier_environment_mode: Some("shared".to_owned()),
        exception_info: None,
        started_at: Some(Utc::now()),
        finished_at: None,
        environment_setup: None,
        agent_setup: None,
        agent_execution: None,
        verifier: None,
        step_results: None,
        cached_from: None,
        cached_cost_usd: None,
        attempt_index: spec.attempt_index,
        integrity: None,
        integrity_evidence: None,
    };
    let _ = std::fs::create_dir_all(trial_dir.path());
    let log = TrialLog::open(&trial_dir.log_path());
    log.line(&format!(
        "trial {} of task {} ({})",
        spec.trial_name,
        task.name,
        task.dir.display()
    ));
    if let Err(e) = make_dirs(trial_dir) {
        record(
            &mut result,
            Failure::new(
                ExceptionType::RuntimeError,
                format!("creating the trial dirs: {e}"),
            ),
            trial_dir,
            &log,
        );
        return finish(result, trial_dir, &log);
    }
    let _ = std::fs::write(
        trial_dir.config_path(),
        serde_json::to_vec_pretty(&spec.config).unwrap_or_default(),
    );
    let _ = crate::lock::write(trial_dir.path(), &spec.lock);

    let mut sandbox: Option<Box<dyn Sandbox>> = None;
    if let Err(f) = run_phases(
        spec,
        trial_dir,
        backend,
        agent,
        &mut result,
        &mut sandbox,
        &log,
        on_host,
    )
    .await
    {
        record(&mut result, f, trial_dir, &log);
    }
    if let Some(sb) = sandbox {
        // A host lost before the verifier's reward was read leaves no measurement, whatever
        // the phases made of the failing calls (an agent error, a missing reward): the trial
        // is the host's failure. A reward read before the loss stands.
        if let Some(why) = sb.lost()
            && result.verifier_result.is_none()
        {
            let host = sb.host().unwrap_or_default();
            log.line(&format!("host {host} was lost during the trial: {why}"));
            result.exception_info = None;
            record(
                &mut result,
                Failure::new(
                    ExceptionType::SandboxHostLostError,
                    format!("the Docker host {host} stopped answering and was drained ({why})"),
                ),
                trial_dir,
                &log,
            );
        }
        // A multi-step trial collected each step's logs before archiving it.
        if sb.lost().is_none() && !task.config.has_steps() {
            collect_logs(sb.as_ref(), trial_dir, &log).await;
        }
        give_back_logs(sb.as_ref(), trial_dir).await;
        if let Err(e) = sb.destroy().await {
            log.line(&format!("destroying the sandbox: {e}"));
        }
        log.line("sandbox removed");
    }
    if task.config.has_steps() {
        remove_empty_mount_dirs(trial_dir);
    } else if !trial_dir.artifacts_dir().join("manifest.json").exists() {
        // The trial ended before its artifacts were collected (its environment did not
        // start): Harbor's recovery still writes the manifest, with the convention dir failed.
        write_manifest(
            trial_dir,
            &[manifest_entry(
                "/logs/artifacts",
                "logs/artifacts",
                "file",
                "failed",
                &[],
            )],
        );
    }
    finish(result, trial_dir, &log)
}

fn finish(mut result: TrialResult, trial_dir: &TrialDir, log: &TrialLog) -> TrialResult {
    result.finished_at = Some(Utc::now());
    if let Err(e) = trial_dir.write_result(&result) {
        log.line(&format!("writing result.json: {e}"));
    }
    log.line("done");
    result
}

fn record(result: &mut TrialResult, f: Failure, trial_dir: &TrialDir, log: &TrialLog) {
    log.line(&format!("{}: {}", f.kind, f.message));
    // Only the first exception is kept, as in Harbor.
    if result.exception_info.is_some() {
        return;
    }
    let _ = std::fs::write(
        trial_dir.exception_path(),
        format!("{}: {}\n\n{}\n", f.kind, f.message, f.detail),
    );
    result.exception_info = Some(exception_info(f));
}

/// Files written into the bind-mounted log dirs by root in the container are owned by root on
/// the host; hand them back to the user who runs autoagent (as Harbor does before stopping).
async fn give_back_logs(sb: &dyn Sandbox, trial_dir: &TrialDir) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(trial_dir.path()) else {
        return;
    };
    if meta.uid() == 0 {
        return;
    }
    let _ = sb
        .exec(
            ExecRequest::new(format!(
                "chown -R {}:{} /logs/agent /logs/verifier /logs/artifacts 2>/dev/null; true",
                meta.uid(),
                meta.gid()
            ))
            .user(Some("root".into()))
            .timeout(Some(Duration::from_secs(30))),
        )
        .await;
}

#[allow(clippy::too_many_arguments)]
async fn run_phases(
    spec: &TrialSpec,
    trial_dir: &TrialDir,
    backend: &dyn Backend,
    agent: &dyn TrialAgent,
    result: &mut TrialResult,
    sandbox: &mut Option<Box<dyn Sandbox>>,
    log: &TrialLog,
    on_host: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), Failure> {
    let task = &spec.task;
    let cfg = &task.config;
    let m = spec.timeout_multiplier;

    // 1. Environment.
    let mut setup = TimingInfo::start();
    let env_spec = EnvironmentSpec {
        cpus: cfg.environment.cpus,
        memory_mb: cfg.environment.memory_mb,
        // One sandbox serves every step: a step that must not reach the network keeps it off
        // for all (Harbor cannot switch a running Docker sandbox's network either).
        network: cfg.environment.network_mode != autoagent_harbor::config::NetworkMode::NoNetwork
            && cfg.agent.network_mode != Some(autoagent_harbor::config::NetworkMode::NoNetwork)
            && !cfg.step_list().iter().any(|s| {
                s.agent.network_mode == Some(autoagent_harbor::config::NetworkMode::NoNetwork)
            }),
        env: resolved_env(&cfg.environment.env),
        workdir: cfg.environment.workdir.clone(),
        mounts: trial_dir
            .mounts()
            .into_iter()
            .map(|(host, target)| Mount {
                host,
                target: target.to_owned(),
            })
            .collect(),
        labels: spec.labels.clone(),
        start_timeout: scaled(Some(cfg.environment.build_timeout_sec), m),
        ..image_spec(task, spec.force_build)
    };
    log.line(&format!("starting the {} environment", backend.kind()));
    result.environment_setup = Some(setup.clone());
    let started = backend.start(&env_spec).await;
    setup.finish();
    result.environment_setup = Some(setup);
    let sb = started?;
    match sb.host() {
        Some(host) => {
            log.line(&format!("environment {} up on host {host}", sb.id()));
            on_host(&host);
        }
        None => log.line(&format!("environment {} up", sb.id())),
    }
    for note in sb.notes() {
        log.line(&note);
        tracing::warn!("{}: {note}", spec.trial_name);
    }
    let sb: &dyn Sandbox = &**sandbox.insert(sb);

    // Healthcheck, before the agent.
    if let Some(hc) = &cfg.environment.healthcheck {
        healthcheck(sb, hc).await?;
    }

    // 2. Agent setup.
    let user = cfg.agent.user.as_ref().map(ToString::to_string);
    let ctx = TrialContext {
        task: task.clone(),
        trial_name: spec.trial_name.clone(),
        agent_dir: trial_dir.agent_dir(),
        timeout: scaled(cfg.agent.timeout_sec, m),
        user: user.clone(),
        step: None,
    };
    let mut agent_setup = TimingInfo::start();
    let setup_res = tokio::time::timeout(AGENT_SETUP_TIMEOUT, agent.setup(sb, &ctx)).await;
    agent_setup.finish();
    result.agent_setup = Some(agent_setup);
    match setup_res {
        Err(_) => {
            return Err(Failure::new(
                ExceptionType::AgentSetupTimeoutError,
                format!("agent setup timed out after {AGENT_SETUP_TIMEOUT:?}"),
            ));
        }
        Ok(Err(e)) => return Err(agent_failure(&e)),
        Ok(Ok(())) => {}
    }

    let phases = Phases {
        spec,
        trial_dir,
        backend,
        agent,
        log,
        on_host,
    };
    if cfg.has_steps() {
        return phases.steps(ctx, result, sandbox).await;
    }
    let mode = cfg.verifier_mode();
    result.verifier_environment_mode = Some(mode.as_str().to_owned());
    let shared = mode == VerifierEnvironmentMode::Shared;

    // 3. Agent run, watched by the integrity monitor when the verifier shares the sandbox.
    let verifier_env = verifier_env(&cfg.verifier.env, None);
    let run = phases
        .run_agent(sb, &task.instruction, &ctx, shared.then_some(&verifier_env))
        .await?;
    result.agent_execution = Some(run.timing);
    result.agent_result = run.agent_result;
    if let Some(f) = run.failure {
        record(result, f, trial_dir, log);
    }
    if !run.evidence.is_empty() {
        result.integrity = Some(Integrity::Suspect);
        result.integrity_evidence = Some(run.evidence);
    }

    // 4. Artifacts, after the agent and before the verifier.
    collect_artifacts(sb, &cfg.verifier.collect, &cfg.artifacts, trial_dir, log).await;

    // 5. Verifier.
    if spec.disable_verification {
        return Ok(());
    }
    let plan = VerifyPlan {
        tests: vec![task.tests_dir()],
        timeout: Duration::from_secs_f64((cfg.verifier.timeout_sec * m).max(0.0)),
        user: cfg.verifier.user.as_ref().map(ToString::to_string),
        env: verifier_env,
    };
    let mut vt = TimingInfo::start();
    result.verifier = Some(vt.clone());
    let verdict = if shared {
        verify(sb, &plan, trial_dir, run.broken).await
    } else {
        // The agent's sandbox has no further use: it goes before the verifier's starts.
        if let Some(sb) = sandbox.take() {
            release(sb, trial_dir, log).await?;
        }
        let def = task.verifier_definition(None).ok_or_else(|| {
            Failure::new(
                ExceptionType::RuntimeError,
                "the separate verifier's environment did not resolve",
            )
        })?;
        phases
            .separate_verifier(&def, &plan, &cfg.artifacts, None)
            .await
    };
    vt.finish();
    result.verifier = Some(vt);
    let rewards = verdict?;
    log.line(&format!(
        "rewards: {}",
        serde_json::to_string(&rewards).unwrap_or_default()
    ));
    result.verifier_result = Some(VerifierResult {
        rewards: Some(rewards),
    });
    Ok(())
}

/// Hands the log dirs back and removes the agent's sandbox before a separate verifier runs.
/// A sandbox whose host was lost while it lived left no measurement: the artifacts it gave may
/// be cut short, so the trial is the host's failure (`Err`, retried) and nothing is verified.
async fn release(
    sb: Box<dyn Sandbox>,
    trial_dir: &TrialDir,
    log: &TrialLog,
) -> Result<(), Failure> {
    let lost = sb.lost();
    if lost.is_none() {
        collect_logs(sb.as_ref(), trial_dir, log).await;
        give_back_logs(sb.as_ref(), trial_dir).await;
    }
    if let Err(e) = sb.destroy().await {
        log.line(&format!("destroying the sandbox {}: {e}", sb.id()));
    }
    log.line("the agent's sandbox removed");
    match lost {
        None => Ok(()),
        Some(why) => Err(Failure::new(
            ExceptionType::SandboxHostLostError,
            format!(
                "the Docker host {} stopped answering and was drained ({why})",
                sb.host().unwrap_or_default()
            ),
        )),
    }
}

/// For a sandbox whose log dirs are not bind mounts of this machine's (a Kubernetes pod, a
/// Docker host elsewhere): copies `/logs/agent` and `/logs/artifacts` into the trial dir, so
/// every backend leaves the same trial folder. `/logs/verifier` is copied by the verifier.
async fn collect_logs(sb: &dyn Sandbox, trial_dir: &TrialDir, log: &TrialLog) {
    if sb.host_mounts() {
        return;
    }
    for (host, target) in trial_dir.mounts() {
        if target == VERIFIER_LOGS {
            continue;
        }
        if let Err(e) = sb.download(target, &host).await {
            log.line(&format!("collecting {target} from the sandbox: {e}"));
        }
    }
}

/// `/logs/verifier` copied to the trial dir when it is not a bind mount (see [`collect_logs`]).
async fn collect_verifier_logs(sb: &dyn Sandbox, trial_dir: &TrialDir) -> Result<(), SandboxError> {
    if sb.host_mounts() {
        return Ok(());
    }
    sb.download(VERIFIER_LOGS, &trial_dir.verifier_dir()).await
}

const VERIFIER_LOGS: &str = "/logs/verifier";
/// What the verifier runs: `tests/test.sh` (a step's over the task's), copied to `/tests`.
const TEST_SCRIPT: &str = "/tests/test.sh";

/// What one agent run left.
struct AgentRun {
    timing: TimingInfo,
    agent_result: Option<AgentResult>,
    /// A timeout or a non-zero exit, recorded while the trial goes on to the verifier.
    failure: Option<Failure>,
    /// What broke in the sandbox the agent left, for the verifier's message.
    broken: Vec<String>,
    /// The integrity monitor's evidence (empty: nothing of the verifier's ground changed).
    evidence: Vec<String>,
}

/// The trial's fixed parts, shared by its phases.
struct Phases<'a> {
    spec: &'a TrialSpec,
    trial_dir: &'a TrialDir,
    backend: &'a dyn Backend,
    agent: &'a dyn TrialAgent,
    log: &'a TrialLog,
    on_host: &'a (dyn Fn(&str) + Send + Sync),
}

impl Phases<'_> {
    /// Runs the agent under its timeout. A timeout or a non-zero exit is recorded and the trial
    /// goes on to the verifier; so does a sandbox the agent broke (see the module doc);
    /// anything else ends the trial (`Err`). With `watch` (the verifier's env), the integrity
    /// monitor snapshots the verifier's ground before and after.
    async fn run_agent(
        &self,
        sb: &dyn Sandbox,
        instruction: &str,
        ctx: &TrialContext,
        watch: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<AgentRun, Failure> {
        let (trial_dir, log, agent) = (self.trial_dir, self.log, self.agent);
        let ground = match watch {
            Some(env) => {
                let (ground, note) =
                    crate::integrity::before(sb, &ctx.task, &trial_dir.verifier_dir(), env).await;
                if let Some(note) = note {
                    log.line(&note);
                }
                Some(ground)
            }
            None => None,
        };
        let mut timing = TimingInfo::start();
        log.line(&format!(
            "agent {} running{} (timeout {:?})",
            agent.name(),
            ctx.step
                .as_ref()
                .map(|s| format!(" step {s}"))
                .unwrap_or_default(),
            ctx.timeout
        ));
        let partial = Mutex::new(AgentResult::default());
        let run = agent.run(instruction, sb, ctx, &partial);
        let outcome = match ctx.timeout {
            Some(t) => match tokio::time::timeout(t, run).await {
                Ok(r) => r,
                Err(_) => Err(AgentError::Timeout(t)),
            },
            None => run.await,
        };
        timing.finish();
        let mut out = AgentRun {
            timing,
            agent_result: None,
            failure: None,
            broken: Vec::new(),
            evidence: Vec::new(),
        };
        match outcome {
            Ok(r) => out.agent_result = Some(r),
            Err(e) => {
                // What the agent had counted before it stopped is still its result.
                out.agent_result = partial.lock().ok().map(|p| p.clone());
                match &e {
                    AgentError::Sandbox(se) => {
                        let note = blame(sb, se, "during the agent phase").await?;
                        log.line(&format!("the agent's sandbox broke: {note}"));
                        out.broken.push(note);
                    }
                    _ if !e.continues_to_verifier() && ctx.step.is_none() => {
                        return Err(agent_failure(&e));
                    }
                    // Unlike Harbor, a step's infrastructure failure (the model provider down,
                    // say) is not scored as the step's: the trial is retried.
                    _ if e.exception_type().is_infrastructure() => {
                        return Err(agent_failure(&e));
                    }
                    // A step records any agent failure on itself (Harbor's `_run_step_agent`).
                    _ => out.failure = Some(agent_failure(&e)),
                }
            }
        }
        log.line("agent finished");
        collect_logs(sb, trial_dir, log).await;

        // The verifier's ground again, before anything of the verifier runs.
        if let (Some(ground), Some(env)) = (ground, watch) {
            if !sb.host_mounts()
                && let Err(e) = collect_verifier_logs(sb, trial_dir).await
            {
                log.line(&format!("integrity: collecting {VERIFIER_LOGS}: {e}"));
            }
            let now =
                match crate::integrity::after(sb, &ground, &trial_dir.verifier_dir(), env).await {
                    Ok(s) => s,
                    Err(e) => {
                        let note = blame(sb, &e, "checking the verifier's ground").await?;
                        log.line(&format!("integrity: {note}"));
                        crate::integrity::host_only(&trial_dir.verifier_dir())
                    }
                };
            out.evidence = crate::integrity::evidence(&ground, &now);
            for e in &out.evidence {
                log.line(&format!("integrity: suspect: {e}"));
            }
        }
        Ok(out)
    }

    /// Harbor's separate verifier (`_run_separate_verifier`): a fresh sandbox from the
    /// verifier's own environment, with only `/logs/verifier` shared; the collected artifacts
    /// are put back at their source paths (the convention dir at `/logs/artifacts`), the
    /// tests uploaded unless the image brings them, and the verifier run there. The sandbox
    /// is removed afterwards, whatever happened.
    async fn separate_verifier(
        &self,
        def: &VerifierDefinition,
        plan: &VerifyPlan,
        artifacts: &[ArtifactSpec],
        step: Option<&StepConfig>,
    ) -> Result<Rewards, Failure> {
        let key = step.map_or("trial", |s| s.name.as_str());
        let verifier_network = step.and_then(|s| s.verifier.network_mode).or(self
            .spec
            .task
            .config
            .verifier
            .network_mode);
        let (spec, trial_dir, log) = (self.spec, self.trial_dir, self.log);
        let env = &def.config;
        let env_spec = EnvironmentSpec {
            name: format!("{}-verifier", spec.task.name),
            build_context: env
                .docker_image
                .is_none()
                .then(|| def.dir.clone())
                .filter(|d| d.is_dir()),
            docker_image: env.docker_image.clone(),
            force_build: false,
            cpus: env.cpus,
            memory_mb: env.memory_mb,
            network: env.network_mode != autoagent_harbor::config::NetworkMode::NoNetwork
                && verifier_network != Some(autoagent_harbor::config::NetworkMode::NoNetwork),
            env: resolved_env(&env.env),
            workdir: env.workdir.clone(),
            mounts: vec![Mount {
                host: trial_dir.verifier_dir(),
                target: VERIFIER_LOGS.to_owned(),
            }],
            labels: spec.labels.clone(),
            start_timeout: scaled(
                Some(spec.task.config.environment.build_timeout_sec),
                spec.timeout_multiplier,
            ),
        };
        log.line(&format!(
            "starting the separate verifier environment ({key})"
        ));
        let sb = self.backend.start(&env_spec).await.map_err(|e| {
            let mut f = Failure::from(e);
            f.message = format!("starting the separate verifier environment: {}", f.message);
            f
        })?;
        match sb.host() {
            Some(host) => {
                log.line(&format!(
                    "verifier environment {} up on host {host}",
                    sb.id()
                ));
                (self.on_host)(&host);
            }
            None => log.line(&format!("verifier environment {} up", sb.id())),
        }
        let verdict = async {
            let prepare =
                ExecRequest::new(empty_dirs(&[VERIFIER_LOGS], true)).user(Some("root".to_owned()));
            let prepared = sb.exec(prepare).await.map_err(Failure::from)?;
            if prepared.exit_code != Some(0) {
                return Err(Failure::new(
                    ExceptionType::RuntimeError,
                    format!(
                        "emptying {VERIFIER_LOGS} in the verifier environment: {}",
                        prepared.stderr.trim()
                    ),
                ));
            }
            upload_artifacts(sb.as_ref(), artifacts, trial_dir, log).await?;
            let plan = if def.bundled_tests {
                VerifyPlan {
                    tests: Vec::new(),
                    ..plan.clone()
                }
            } else {
                plan.clone()
            };
            verify(sb.as_ref(), &plan, trial_dir, Vec::new()).await
        }
        .await;
        give_back_logs(sb.as_ref(), trial_dir).await;
        if let Err(e) = sb.destroy().await {
            log.line(&format!("destroying the verifier environment: {e}"));
        }
        log.line("verifier environment removed");
        verdict
    }
}

impl Phases<'_> {
    /// A multi-step trial (Harbor's `MultiStepTrial._run`): each step in order in the one
    /// sandbox — its `workdir/` uploaded to the workdir, its `setup.sh` run, its healthcheck,
    /// the agent with the step's instruction, the artifacts, the step's verifier (shared, or
    /// separate) — and the step's `agent/`, `verifier/` and `artifacts/` moved to
    /// `steps/<name>/`. A step that failed without a verifier result, or whose rewards are
    /// below its `min_reward`, ends the trial. The trial's reward is the steps' mean per key
    /// (missing keys count 0, steps without a result are left out) or, with
    /// `multi_step_reward_strategy = "final"`, the last step's.
    ///
    /// A step's failure is the step's (`step_results[i].exception_info`), as in Harbor; only a
    /// failure of the infrastructure fails the trial (and is retried).
    async fn steps(
        &self,
        base: TrialContext,
        result: &mut TrialResult,
        sandbox: &mut Option<Box<dyn Sandbox>>,
    ) -> Result<(), Failure> {
        let (spec, trial_dir, log) = (self.spec, self.trial_dir, self.log);
        let task = &spec.task;
        let cfg = &task.config;
        let m = spec.timeout_multiplier;
        let steps = cfg.step_list();
        result.verifier_environment_mode = None;
        let mut step_results: Vec<StepResult> = Vec::new();
        let mut evidence: Vec<String> = Vec::new();
        // A shared verifier leaves its tests and outputs in the sandbox: the next step's agent
        // must not find them.
        let mut verifier_dirs_used = false;
        for (index, step) in steps.iter().enumerate() {
            let last = index + 1 == steps.len();
            let mut sr = StepResult::new(&step.name);
            log.line(&format!(
                "step {}/{}: {}",
                index + 1,
                steps.len(),
                step.name
            ));
            let Some(sb) = sandbox.as_deref() else {
                return Err(Failure::new(
                    ExceptionType::RuntimeError,
                    format!("step `{}`: the agent's sandbox is gone", step.name),
                ));
            };
            let user = step
                .agent
                .user
                .as_ref()
                .or(cfg.agent.user.as_ref())
                .map(ToString::to_string);
            if !sb.host_mounts() {
                // The last step's agent logs were collected; the next step starts without them.
                let reset = empty_dirs(&["/logs/agent"], true);
                if let Err(e) = sb
                    .exec(ExecRequest::new(reset).user(Some("root".to_owned())))
                    .await
                {
                    log.line(&format!(
                        "emptying /logs/agent: {}",
                        blame(sb, &e, "emptying /logs/agent").await?
                    ));
                }
            }
            if verifier_dirs_used {
                if let Some(note) = reset_verifier_dirs(sb).await? {
                    log.line(&note);
                }
                verifier_dirs_used = false;
            }
            if let Some(f) = self.prepare_step(sb, step, user.clone()).await? {
                log.line(&format!("step {}: {}: {}", step.name, f.kind, f.message));
                sr.exception_info = Some(exception_info(f));
            }
            if sr.exception_info.is_none() {
                let ctx = TrialContext {
                    timeout: scaled(step.agent.timeout_sec.or(cfg.agent.timeout_sec), m),
                    user,
                    step: Some(step.name.clone()),
                    ..base.clone()
                };
                let mode = cfg.step_verifier_mode(step);
                let env = verifier_env(&cfg.verifier.env, Some(&step.verifier.env));
                let shared = mode == VerifierEnvironmentMode::Shared;
                let run = self
                    .run_agent(
                        sb,
                        task.step_instruction(index),
                        &ctx,
                        shared.then_some(&env),
                    )
                    .await?;
                sr.agent_execution = Some(run.timing);
                sr.agent_result = run.agent_result;
                if let Some(f) = run.failure {
                    log.line(&format!("step {}: {}: {}", step.name, f.kind, f.message));
                    sr.exception_info = Some(exception_info(f));
                }
                evidence.extend(
                    run.evidence
                        .into_iter()
                        .map(|e| format!("step {}: {e}", step.name)),
                );
                let mut artifacts = cfg.artifacts.clone();
                artifacts.extend(step.artifacts.iter().cloned());
                let mut hooks = cfg.verifier.collect.clone();
                hooks.extend(step.verifier.collect.iter().cloned());
                collect_artifacts(sb, &hooks, &artifacts, trial_dir, log).await;
                if !spec.disable_verification {
                    let step_tests = task.step_dir(&step.name).join("tests");
                    // The step's tests/ is uploaded after the task's, so its test.sh, when it
                    // has one, is the one at /tests/test.sh.
                    let plan = VerifyPlan {
                        tests: [task.tests_dir(), step_tests.clone()]
                            .into_iter()
                            .filter(|d| d.is_dir())
                            .collect(),
                        timeout: Duration::from_secs_f64((step.verifier.timeout_sec * m).max(0.0)),
                        user: step
                            .verifier
                            .user
                            .as_ref()
                            .or(cfg.verifier.user.as_ref())
                            .map(ToString::to_string),
                        env,
                    };
                    let mut vt = TimingInfo::start();
                    let verdict = if shared {
                        // Harbor's `_reset_shared_step_verifier_dirs`, before each shared
                        // verifier too: what the agent (or the image) left in /tests is gone.
                        let mut broken = run.broken;
                        broken.extend(reset_verifier_dirs(sb).await?);
                        verifier_dirs_used = true;
                        verify(sb, &plan, trial_dir, broken).await
                    } else {
                        if last && let Some(sb) = sandbox.take() {
                            release(sb, trial_dir, log).await?;
                        }
                        match task.verifier_definition(Some(step)) {
                            Some(def) => {
                                self.separate_verifier(&def, &plan, &artifacts, Some(step))
                                    .await
                            }
                            None => Err(Failure::new(
                                ExceptionType::RuntimeError,
                                format!(
                                    "step `{}`: the separate verifier's environment did not resolve",
                                    step.name
                                ),
                            )),
                        }
                    };
                    vt.finish();
                    sr.verifier = Some(vt);
                    match verdict {
                        Ok(rewards) => {
                            log.line(&format!(
                                "step {}: rewards: {}",
                                step.name,
                                serde_json::to_string(&rewards).unwrap_or_default()
                            ));
                            sr.verifier_result = Some(VerifierResult {
                                rewards: Some(rewards),
                            });
                        }
                        Err(f) if f.kind.is_infrastructure() => return Err(f),
                        Err(f) => {
                            log.line(&format!("step {}: {}: {}", step.name, f.kind, f.message));
                            if sr.exception_info.is_none() {
                                sr.exception_info = Some(exception_info(f));
                            }
                        }
                    }
                }
            }
            let stop = if sr.exception_info.is_some() && sr.verifier_result.is_none() {
                Some("it failed".to_owned())
            } else if spec.disable_verification {
                None
            } else {
                step.min_reward.as_ref().and_then(|min| {
                    min.failure(sr.verifier_result.as_ref().map(rewards_f64).as_ref())
                })
            };
            if let Some(sb) = sandbox.as_deref() {
                // What root wrote in the shared dirs goes back to our user before it moves.
                give_back_logs(sb, trial_dir).await;
            }
            archive_step(trial_dir, &step.name, !last && stop.is_none(), log);
            step_results.push(sr);
            if let Some(why) = stop {
                log.line(&format!(
                    "step {}: {why}; the remaining steps are skipped",
                    step.name
                ));
                break;
            }
        }
        result.verifier_result = match cfg.multi_step_reward_strategy {
            Some(MultiStepRewardStrategy::Final) => {
                step_results.last().and_then(|s| s.verifier_result.clone())
            }
            _ => mean_rewards(&step_results),
        };
        // Harbor leaves the trial's agent_result empty for a multi-step trial; the steps'
        // sum is put there so that tokens and cost are counted by whatever reads trials.
        let runs: Vec<&AgentResult> = step_results
            .iter()
            .filter_map(|s| s.agent_result.as_ref())
            .collect();
        if !runs.is_empty() {
            result.agent_result = Some(AgentResult::sum(runs.iter().copied()));
        }
        if !evidence.is_empty() {
            result.integrity = Some(Integrity::Suspect);
            result.integrity_evidence = Some(evidence);
        }
        if let Some(r) = &result.verifier_result {
            log.line(&format!(
                "rewards: {}",
                serde_json::to_string(&r.rewards).unwrap_or_default()
            ));
        }
        result.step_results = Some(step_results);
        Ok(())
    }

    /// A step's preparation (Harbor's `_prepare_step`): its `workdir/` uploaded into the
    /// sandbox's working directory, its `workdir/setup.sh` run there, its healthcheck.
    ///
    /// `Ok(Some(f))` is the step's failure (Harbor records it on the step and stops there): a
    /// `setup.sh` that failed, a healthcheck that did not pass, a sandbox the earlier steps'
    /// agent broke. `Err` is the infrastructure's: the sandbox is gone or its host does not
    /// answer.
    async fn prepare_step(
        &self,
        sb: &dyn Sandbox,
        step: &StepConfig,
        user: Option<String>,
    ) -> Result<Option<Failure>, Failure> {
        let broken = |note: String| Some(Failure::new(ExceptionType::RuntimeError, note));
        let dir = self.spec.task.step_dir(&step.name).join("workdir");
        let pwd = match sb.exec(ExecRequest::new("pwd").user(user.clone())).await {
            Ok(out) => out,
            Err(e) => return Ok(broken(blame(sb, &e, "finding the working dir").await?)),
        };
        let workdir = match pwd.stdout.trim() {
            "" => "/".to_owned(),
            w => w.to_owned(),
        };
        if dir.is_dir()
            && let Err(e) = sb.upload(&dir, &workdir).await
        {
            return Ok(broken(
                blame(
                    sb,
                    &e,
                    &format!("uploading the step's workdir/ to {workdir}"),
                )
                .await?,
            ));
        }
        if dir.join("setup.sh").is_file() {
            let script = format!("{}/setup.sh", workdir.trim_end_matches('/'));
            let run = ExecRequest::new(format!("bash {}", autoagent_sandbox::shell_quote(&script)))
                .user(user);
            let out = match sb.exec(run).await {
                Ok(out) => out,
                Err(e) => return Ok(broken(blame(sb, &e, "running setup.sh").await?)),
            };
            if out.exit_code != Some(0) {
                return Ok(Some(Failure::new(
                    ExceptionType::RuntimeError,
                    format!(
                        "Step '{}' setup.sh exited with code {}: {}",
                        step.name,
                        out.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                        out.stderr.trim()
                    ),
                )));
            }
        }
        if let Some(hc) = &step.healthcheck
            && let Err(f) = healthcheck(sb, hc).await
        {
            // A healthcheck that ran and failed is the step's; one whose exec failed is the
            // step's too unless the sandbox is gone.
            if f.kind == ExceptionType::HealthcheckError || sb.liveness().await.is_present() {
                return Ok(Some(f));
            }
            return Err(f);
        }
        Ok(None)
    }
}

/// Moves the contents of the trial's `agent/`, `verifier/` and `artifacts/` into
/// `steps/<name>/` (Harbor's `_archive_step_outputs`). The dirs themselves stay: they are the
/// sandbox's bind-mount sources (the convention dir `artifacts/logs/artifacts` among them).
///
/// With `more` (another step follows), the convention dir's contents are copied instead: Harbor
/// never empties `/logs/artifacts` between steps.
fn archive_step(trial_dir: &TrialDir, step: &str, more: bool, log: &TrialLog) {
    let to = trial_dir.step_dir(step);
    let keep = trial_dir.artifacts_dir().join("logs/artifacts");
    for (from, name) in [
        (trial_dir.agent_dir(), "agent"),
        (trial_dir.verifier_dir(), "verifier"),
        (trial_dir.artifacts_dir(), "artifacts"),
    ] {
        if let Err(e) = move_contents(&from, &to.join(name), &keep, more) {
            log.line(&format!(
                "moving {} to {}: {e}",
                from.display(),
                to.display()
            ));
        }
    }
}

/// Moves everything inside `from` into `to`, except `keep` (a dir somewhere below `from`) and
/// its parents, which stay in place (only their contents move): with `copy_keep`, `keep`'s
/// contents are copied, not moved. `keep` is the
/// convention dir `/logs/artifacts`, which Harbor never empties between steps, so what the
/// agent left there is collected again by every later step.
fn move_contents(from: &Path, to: &Path, keep: &Path, copy_keep: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src == keep && copy_keep {
            copy_tree(&src, &dst)?;
        } else if keep.starts_with(&src) && entry.file_type()?.is_dir() {
            move_contents(&src, &dst, keep, copy_keep)?;
        } else {
            if dst.exists() {
                if dst.is_dir() {
                    std::fs::remove_dir_all(&dst)?;
                } else {
                    std::fs::remove_file(&dst)?;
                }
            }
            std::fs::rename(&src, &dst)?;
        }
    }
    Ok(())
}

/// Copies a dir's tree (symlinks as symlinks, never followed).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in walkdir::WalkDir::new(from).min_depth(1).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        let dst = to.join(
            entry
                .path()
                .strip_prefix(from)
                .map_err(std::io::Error::other)?,
        );
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dst)?;
        } else if kind.is_symlink() {
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dst)?;
        }
        // Anything else (a FIFO, a socket the agent left) is not copied: opening a FIFO would
        // block until someone writes to it.
    }
    Ok(())
}

/// Removes the trial's `agent/`, `verifier/` and `artifacts/` when nothing is left in them (a
/// multi-step trial moved it all to `steps/`): Harbor's `cleanup_empty_mount_dirs`.
fn remove_empty_mount_dirs(trial_dir: &TrialDir) {
    fn prune(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        let mut empty = true;
        for e in entries.flatten() {
            let p = e.path();
            if !(e.file_type().is_ok_and(|t| t.is_dir()) && prune(&p)) {
                empty = false;
            }
        }
        empty && std::fs::remove_dir(dir).is_ok()
    }
    for d in [
        trial_dir.agent_dir(),
        trial_dir.verifier_dir(),
        trial_dir.artifacts_dir(),
    ] {
        prune(&d);
    }
}

fn rewards_f64(v: &VerifierResult) -> std::collections::BTreeMap<String, f64> {
    v.rewards
        .iter()
        .flatten()
        .filter_map(|(k, n)| Some((k.clone(), n.as_f64()?)))
        .collect()
}

/// Harbor's `_aggregate_step_rewards`: per key, the mean over the steps that have a verifier
/// result, a key a step lacks counting 0.
fn mean_rewards(steps: &[StepResult]) -> Option<VerifierResult> {
    let valid: Vec<std::collections::BTreeMap<String, f64>> = steps
        .iter()
        .filter_map(|s| s.verifier_result.as_ref())
        .map(rewards_f64)
        .collect();
    let keys: std::collections::BTreeSet<&String> = valid.iter().flat_map(|r| r.keys()).collect();
    if keys.is_empty() {
        return None;
    }
    let n = valid.len() as f64;
    let rewards = keys
        .into_iter()
        .filter_map(|k| {
            let mean = valid
                .iter()
                .map(|r| r.get(k).copied().unwrap_or(0.0))
                .sum::<f64>()
                / n;
            Some((k.clone(), serde_json::Number::from_f64(mean)?))
        })
        .collect();
    Some(VerifierResult {
        rewards: Some(rewards),
    })
}

fn exception_info(f: Failure) -> ExceptionInfo {
    ExceptionInfo {
        exception_type: f.kind,
        exception_message: f.message,
        exception_traceback: f.detail,
        occurred_at: Utc::now(),
    }
}

/// Puts the collected artifacts into a separate verifier's sandbox where the agent left them
/// (Harbor's `upload_artifacts`): the convention dir's copy to `/logs/artifacts`, each task
/// artifact to its `source`. An artifact that was not collected is skipped.
async fn upload_artifacts(
    sb: &dyn Sandbox,
    artifacts: &[ArtifactSpec],
    trial_dir: &TrialDir,
    log: &TrialLog,
) -> Result<(), Failure> {
    let mut entries = vec![(
        trial_dir.artifacts_dir().join("logs/artifacts"),
        "/logs/artifacts".to_owned(),
    )];
    for a in artifacts {
        let Some(dest) = artifact_destination(a) else {
            continue;
        };
        entries.push((trial_dir.artifacts_dir().join(dest), a.source().to_owned()));
    }
    for (host, target) in entries {
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.is_dir() {
            let reset = empty_dirs(&[&target], true);
            sb.exec(ExecRequest::new(reset).user(Some("root".to_owned())))
                .await
                .map_err(Failure::from)?;
        } else if !meta.is_file() {
            log.line(&format!(
                "artifact {target}: not a file or directory; not uploaded"
            ));
            continue;
        }
        sb.upload(&host, &target).await.map_err(|e| {
            let mut f = Failure::from(e);
            f.message = format!(
                "uploading the artifact {target} to the verifier: {}",
                f.message
            );
            f
        })?;
    }
    Ok(())
}

/// Harbor's `_reset_shared_step_verifier_dirs`: `/logs/verifier` and `/tests` emptied in the
/// agent's sandbox. `Ok(Some(note))`: it failed in a sandbox that is still there (the agent's
/// doing); `Err`: the sandbox is gone or its host does not answer.
async fn reset_verifier_dirs(sb: &dyn Sandbox) -> Result<Option<String>, Failure> {
    let reset = format!(
        "{} && {}",
        empty_dirs(&[VERIFIER_LOGS], true),
        empty_dirs(&["/tests"], false)
    );
    match sb
        .exec(ExecRequest::new(reset).user(Some("root".to_owned())))
        .await
    {
        Ok(_) => Ok(None),
        Err(e) => blame(sb, &e, "emptying the verifier's dirs")
            .await
            .map(Some),
    }
}

/// A command that leaves each dir existing and empty (Harbor's `empty_dirs`), world-writable
/// with `chmod`. The dir itself stays: it may be a mount point.
fn empty_dirs(dirs: &[&str], chmod: bool) -> String {
    let quoted: Vec<String> = dirs
        .iter()
        .map(|d| autoagent_sandbox::shell_quote(d))
        .collect();
    let list = quoted.join(" ");
    let mut cmd = format!("mkdir -p {list} && find {list} -mindepth 1 -delete");
    if chmod {
        cmd.push_str(&format!(" && chmod 777 {list}"));
    }
    cmd
}

/// An artifact's path under `<trial>/artifacts/`, or `None` when it would leave it.
fn artifact_destination(a: &ArtifactSpec) -> Option<String> {
    let destination = match a {
        ArtifactSpec::Table {
            destination: Some(d),
            ..
        } => d.trim_start_matches('/').to_owned(),
        ArtifactSpec::Table { source, .. } | ArtifactSpec::Path(source) => {
            source.trim_start_matches('/').to_owned()
        }
    };
    (!Path::new(&destination)
        .components()
        .any(|c| c == std::path::Component::ParentDir))
    .then_some(destination)
}

/// Whose fault a sandbox failure after the agent phase started is: the infrastructure's (an
/// `Err`, a `RuntimeError` that is retried) only when the sandbox is gone or its host does not
/// answer; otherwise the agent's, and the returned note says what broke.
async fn blame(sb: &dyn Sandbox, e: &SandboxError, when: &str) -> Result<String, Failure> {
    let live = sb.liveness().await;
    if live.is_present() {
        return Ok(format!("{when}: {e} ({live})"));
    }
    Err(Failure {
        kind: ExceptionType::RuntimeError,
        message: format!("{when}: {e} ({live})"),
        detail: format!("{e:?}\nliveness: {live:?}"),
    })
}

/// The verifier's env: the task's `[verifier] env`, then a step's over it, `${VAR}` templates
/// resolved from the host.
fn verifier_env(
    task_env: &std::collections::BTreeMap<String, String>,
    step_env: Option<&std::collections::BTreeMap<String, String>>,
) -> std::collections::BTreeMap<String, String> {
    let mut env = task_env.clone();
    env.extend(
        step_env
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    resolved_env(&env)
}

/// An env table with its `${VAR}` / `${VAR:-default}` templates resolved from this process's
/// environment (Harbor's `resolve_env_vars`).
fn resolved_env(
    env: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                autoagent_harbor::config::resolve_env_template(v, |n| std::env::var(n).ok()),
            )
        })
        .collect()
}

fn agent_failure(e: &AgentError) -> Failure {
    Failure {
        kind: e.exception_type(),
        message: e.to_string(),
        detail: format!("{e:?}"),
    }
}

async fn healthcheck(
    sb: &dyn Sandbox,
    hc: &autoagent_harbor::config::Healthcheck,
) -> Result<(), Failure> {
    tokio::time::sleep(Duration::from_secs_f64(hc.start_period_sec.max(0.0))).await;
    let mut last = String::new();
    for attempt in 0..=hc.retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs_f64(hc.interval_sec.max(0.0))).await;
        }
        let out = sb
            .exec(
                ExecRequest::new(hc.command.clone())
                    .timeout(Some(Duration::from_secs_f64(hc.timeout_sec))),
            )
            .await?;
        if out.exit_code == Some(0) {
            return Ok(());
        }
        last = format!("exit {:?}: {}", out.exit_code, out.stderr.trim());
    }
    Err(Failure::new(
        ExceptionType::HealthcheckError,
        format!(
            "healthcheck `{}` failed {} times; last: {last}",
            hc.command,
            hc.retries + 1
        ),
    ))
}

/// What a verifier run needs: the dirs copied into `/tests` (in order: a step's tests go over
/// the task's), the time limit, user and env of `/tests/test.sh`.
#[derive(Debug, Clone)]
struct VerifyPlan {
    tests: Vec<PathBuf>,
    timeout: Duration,
    user: Option<String>,
    env: std::collections::BTreeMap<String, String>,
}

/// Harbor's `Verifier.verify`: stale rewards removed, the tests copied to `/tests` after the
/// agent, `(/tests/test.sh) > /logs/verifier/test-stdout.txt 2>&1` under the verifier timeout
/// with its exit code ignored, `/logs/verifier` copied out when it is not a bind mount, then
/// `reward.json` before `reward.txt`.
///
/// It runs in the sandbox the agent left: a step that fails while the sandbox is still there
/// is noted and the next step tried, as Harbor's exec would return a failed command; only a
/// sandbox that is gone or a host that does not answer fails the trial as infrastructure.
/// `broken` holds what already broke during the agent phase; with the notes of the steps it
/// explains a missing reward file.
async fn verify(
    sb: &dyn Sandbox,
    plan: &VerifyPlan,
    trial_dir: &TrialDir,
    mut broken: Vec<String>,
) -> Result<Rewards, Failure> {
    // Harbor removes stale rewards, uploads tests/, then chmods test.sh; the upload touches
    // neither reward file, so one exec after it does both and saves a round trip.
    for f in ["reward.txt", "reward.json"] {
        let _ = std::fs::remove_file(trial_dir.verifier_dir().join(f));
    }
    for dir in &plan.tests {
        if let Err(e) = sb.upload(dir, "/tests").await {
            let note = blame(sb, &e, "uploading tests/ to /tests")
                .await
                .map_err(|f| Failure {
                    kind: ExceptionType::AddTestsDirError,
                    ..f
                })?;
            broken.push(note);
        }
    }
    let script = TEST_SCRIPT;
    let prepare = ExecRequest::new(format!(
        "rm -f -- {VERIFIER_LOGS}/reward.txt {VERIFIER_LOGS}/reward.json; chmod +x {script}"
    ))
    .user(Some("root".to_owned()));
    if let Err(e) = sb.exec(prepare).await {
        broken.push(blame(sb, &e, "preparing the test script").await?);
    }
    let timeout = plan.timeout;
    let run = ExecRequest::new(format!("({script}) > {VERIFIER_LOGS}/test-stdout.txt 2>&1"))
        .user(plan.user.clone())
        .env(plan.env.clone())
        .timeout(Some(timeout));
    match sb.exec(run).await {
        Ok(out) if out.timed_out => {
            return Err(Failure::new(
                ExceptionType::VerifierTimeoutError,
                format!("verifier timed out after {timeout:?}"),
            ));
        }
        // The exit code is ignored, as in Harbor; what the exec itself printed (test.sh's
        // output goes to test-stdout.txt) is bash failing to start, worth a note.
        Ok(out) => {
            let said = format!("{}\n{}", out.stdout.trim(), out.stderr.trim());
            if out.exit_code != Some(0) && !said.trim().is_empty() {
                broken.push(format!(
                    "running {}: exit {}: {}",
                    TEST_SCRIPT,
                    out.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                    autoagent_harbor::text::cut_middle(said.trim(), 400, "…")
                ));
            }
        }
        Err(e) => broken.push(blame(sb, &e, &format!("running {TEST_SCRIPT}")).await?),
    }
    if let Err(e) = collect_verifier_logs(sb, trial_dir).await {
        broken.push(blame(sb, &e, &format!("copying {VERIFIER_LOGS} out")).await?);
    }
    read_rewards(&trial_dir.verifier_dir()).map_err(|mut f| {
        if f.kind == ExceptionType::RewardFileNotFoundError && !broken.is_empty() {
            f.message = format!(
                "{}; the verifier could not run in the sandbox the agent left: {}",
                f.message,
                broken.join("; ")
            );
            f.detail.clone_from(&f.message);
        }
        f
    })
}

/// Reads `reward.json` (first) or `reward.txt` from the host side of `/logs/verifier`.
fn read_rewards(dir: &Path) -> Result<Rewards, Failure> {
    let json = dir.join("reward.json");
    let txt = dir.join("reward.txt");
    if json.is_file() {
        let text = read_shared(&json).map_err(|e| {
            Failure::new(
                ExceptionType::VerifierOutputParseError,
                format!("reading reward.json: {e}"),
            )
        })?;
        if text.trim().is_empty() {
            return Err(Failure::new(
                ExceptionType::RewardFileEmptyError,
                "reward.json is empty",
            ));
        }
        return parse_reward_json(&text);
    }
    if txt.is_file() {
        let text = read_shared(&txt).map_err(|e| {
            Failure::new(
                ExceptionType::VerifierOutputParseError,
                format!("reading reward.txt: {e}"),
            )
        })?;
        if text.trim().is_empty() {
            return Err(Failure::new(
                ExceptionType::RewardFileEmptyError,
                "reward.txt is empty",
            ));
        }
        let v: f64 = text.trim().parse().map_err(|_| {
            Failure::new(
                ExceptionType::VerifierOutputParseError,
                format!("reward.txt: expected a number, found {:?}", text.trim()),
            )
        })?;
        let n = serde_json::Number::from_f64(v).ok_or_else(|| {
            Failure::new(
                ExceptionType::VerifierOutputParseError,
                format!("reward.txt: not finite: {v}"),
            )
        })?;
        return Ok(Rewards::from([("reward".to_owned(), n)]));
    }
    Err(Failure::new(
        ExceptionType::RewardFileNotFoundError,
        format!(
            "no reward file: neither {} nor {} exists",
            json.display(),
            txt.display()
        ),
    ))
}

fn parse_reward_json(text: &str) -> Result<Rewards, Failure> {
    let parse_err = |m: String| {
        Failure::new(
            ExceptionType::VerifierOutputParseError,
            format!("reward.json: {m}"),
        )
    };
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| parse_err(format!("not valid JSON: {e}")))?;
    match v {
        serde_json::Value::Object(map) => {
            let mut out = Rewards::new();
            for (k, v) in map {
                let n = match v {
                    serde_json::Value::Number(n) => n,
                    // Python's isinstance(True, int) accepts booleans; so does Harbor.
                    serde_json::Value::Bool(b) => serde_json::Number::from(u8::from(b)),
                    other => {
                        return Err(parse_err(format!(
                            "value of `{k}` must be a number, found {other}"
                        )));
                    }
                };
                out.insert(k, n);
            }
            Ok(out)
        }
        serde_json::Value::Number(n) => Ok(Rewards::from([("reward".to_owned(), n)])),
        other => Err(parse_err(format!(
            "expected an object of numbers, found {other}"
        ))),
    }
}

/// Runs the collect hooks, downloads the task's `artifacts` into `<trial>/artifacts/`
/// mirroring their paths, and writes `artifacts/manifest.json`. `/logs/artifacts` is
/// bind-mounted (or collected by [`collect_logs`]) and needs no copy here.
async fn collect_artifacts(
    sb: &dyn Sandbox,
    hooks: &[CollectHook],
    artifacts: &[ArtifactSpec],
    trial_dir: &TrialDir,
    log: &TrialLog,
) {
    // `[[verifier.collect]]`: best effort, as in Harbor (a failure is a log line).
    for hook in hooks {
        let req = ExecRequest::new(hook.command.clone())
            .user(hook.user.as_ref().map(ToString::to_string))
            .timeout(Some(Duration::from_secs_f64(hook.timeout_sec.max(0.0))));
        match sb.exec(req).await {
            Ok(out) if out.exit_code == Some(0) => {
                log.line(&format!("collect hook `{}` completed", hook.command));
            }
            Ok(out) => log.line(&format!(
                "collect hook `{}` exited {}{}: {}",
                hook.command,
                out.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                if out.timed_out { " (timed out)" } else { "" },
                autoagent_harbor::text::cut_middle(out.stderr.trim(), 400, "…")
            )),
            Err(e) => log.line(&format!("collect hook `{}` failed: {e}", hook.command)),
        }
    }
    let mut manifest = vec![manifest_entry(
        "/logs/artifacts",
        "logs/artifacts",
        "directory",
        "ok",
        &[],
    )];
    for a in artifacts {
        let source = a.source().to_owned();
        let exclude = match a {
            ArtifactSpec::Table { exclude, .. } => exclude.clone(),
            ArtifactSpec::Path(_) => Vec::new(),
        };
        let Some(destination) = artifact_destination(a) else {
            log.line(&format!(
                "artifact {source}: its destination leaves the trial dir; skipped"
            ));
            manifest.push(manifest_entry(&source, "", "file", "failed", &exclude));
            continue;
        };
        let target = trial_dir.artifacts_dir().join(&destination);
        // An earlier artifact may have left a link on the way (a download keeps links as
        // links): writing through it would leave the trial dir.
        if autoagent_sandbox::tarball::crosses_symlink(
            &trial_dir.artifacts_dir(),
            Path::new(&destination),
        ) {
            log.line(&format!(
                "artifact {source}: a symlink lies on the way to {destination}; skipped"
            ));
            manifest.push(manifest_entry(
                &source,
                &destination,
                "file",
                "failed",
                &exclude,
            ));
            continue;
        }
        // Harbor makes the destination's parent before it knows whether the source exists.
        if let Some(parent) = target.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let probe = sb
            .exec(ExecRequest::new(format!(
                "if [ -d {0} ]; then echo directory; elif [ -e {0} ]; then echo file; else echo missing; fi",
                autoagent_sandbox::shell_quote(&source)
            )))
            .await;
        let kind = probe
            .map(|o| o.stdout.trim().to_owned())
            .unwrap_or_else(|_| "missing".to_owned());
        let status = if kind == "missing" {
            log.line(&format!("artifact {source}: not found in the sandbox"));
            "failed"
        } else {
            match sb.download(&source, &target).await {
                Ok(()) => "ok",
                Err(e) => {
                    log.line(&format!("artifact {source}: {e}"));
                    "failed"
                }
            }
        };
        manifest.push(manifest_entry(
            &source,
            &destination,
            if kind == "directory" {
                "directory"
            } else {
                "file"
            },
            status,
            &exclude,
        ));
    }
    write_manifest(trial_dir, &manifest);
}

/// One entry of `artifacts/manifest.json`, in Harbor 0.25's shape (`destination` relative to
/// the trial dir; `service` null for the agent's sandbox).
fn manifest_entry(
    source: &str,
    destination: &str,
    kind: &str,
    status: &str,
    exclude: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "source": source,
        "destination": if destination.is_empty() {
            "artifacts".to_owned()
        } else {
            format!("artifacts/{destination}")
        },
        "type": kind,
        "status": status,
        "service": null,
        "exclude": exclude,
    })
}

fn write_manifest(trial_dir: &TrialDir, manifest: &[serde_json::Value]) {
    let _ = std::fs::create_dir_all(trial_dir.artifacts_dir());
    let _ = std::fs::write(
        trial_dir.artifacts_dir().join("manifest.json"),
        serde_json::to_string_pretty(manifest).unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reward_files() {
        let d = tempfile::tempdir().unwrap();
        let e = read_rewards(d.path()).unwrap_err();
        assert_eq!(e.kind, ExceptionType::RewardFileNotFoundError);
        std::fs::write(d.path().join("reward.txt"), " 0.5\n").unwrap();
        let r = read_rewards(d.path()).unwrap();
        assert_eq!(r["reward"].as_f64(), Some(0.5));
        std::fs::write(d.path().join("reward.json"), r#"{"a": 3, "b": 0.75}"#).unwrap();
        let r = read_rewards(d.path()).unwrap();
        assert_eq!(r.len(), 2, "reward.json wins over reward.txt");
        assert!(r["a"].is_u64());
        std::fs::write(d.path().join("reward.json"), r#"{"a": "x"}"#).unwrap();
        assert_eq!(
            read_rewards(d.path()).unwrap_err().kind,
            ExceptionType::VerifierOutputParseError
        );
        std::fs::write(d.path().join("reward.json"), "").unwrap();
        assert_eq!(
            read_rewards(d.path()).unwrap_err().kind,
            ExceptionType::RewardFileEmptyError
        );
        std::fs::remove_file(d.path().join("reward.json")).unwrap();
        std::fs::write(d.path().join("reward.txt"), "nan").unwrap();
        assert_eq!(
            read_rewards(d.path()).unwrap_err().kind,
            ExceptionType::VerifierOutputParseError
        );
        std::fs::write(d.path().join("reward.txt"), "one").unwrap();
        assert_eq!(
            read_rewards(d.path()).unwrap_err().kind,
            ExceptionType::VerifierOutputParseError
        );
    }
}
