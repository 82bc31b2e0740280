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

use autoagent_harbor::exception::ExceptionType;
use autoagent_harbor::fs::read_shared;
use autoagent_harbor::result::{
    AgentInfo, AgentResult, ExceptionInfo, Integrity, Rewards, TaskId, TimingInfo, TrialResult,
    VerifierResult,
};
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
        verifier_environment_mode: "shared".to_owned(),
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
        give_back_logs(sb.as_ref(), trial_dir).await;
        if let Err(e) = sb.destroy().await {
            log.line(&format!("destroying the sandbox: {e}"));
        }
        log.line("sandbox removed");
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
    result.exception_info = Some(ExceptionInfo {
        exception_type: f.kind,
        exception_message: f.message,
        exception_traceback: f.detail,
        occurred_at: Utc::now(),
    });
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
    let host_env = |k: &str| std::env::var(k).ok();

    // 1. Environment.
    let mut setup = TimingInfo::start();
    let env_spec = EnvironmentSpec {
        cpus: cfg.environment.cpus,
        memory_mb: cfg.environment.memory_mb,
        network: cfg.environment.network_mode != autoagent_harbor::config::NetworkMode::NoNetwork
            && cfg.agent.network_mode != Some(autoagent_harbor::config::NetworkMode::NoNetwork),
        env: cfg
            .environment
            .env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    autoagent_harbor::config::resolve_env_template(v, host_env),
                )
            })
            .collect(),
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

    // The verifier's ground as the agent finds it (integrity.rs).
    let verifier_env = verifier_env(task);
    let (ground, note) =
        crate::integrity::before(sb, task, &trial_dir.verifier_dir(), &verifier_env).await;
    if let Some(note) = note {
        log.line(&note);
    }

    // 3. Agent run, under the agent timeout. A timeout or a non-zero exit is recorded and the
    // trial goes on to the verifier; so does a sandbox the agent broke (see the module doc);
    // anything else ends it here.
    let mut exec = TimingInfo::start();
    result.agent_execution = Some(exec.clone());
    log.line(&format!(
        "agent {} running (timeout {:?})",
        agent.name(),
        ctx.timeout
    ));
    let partial = Mutex::new(AgentResult::default());
    let run = agent.run(&task.instruction, sb, &ctx, &partial);
    let outcome = match ctx.timeout {
        Some(t) => match tokio::time::timeout(t, run).await {
            Ok(r) => r,
            Err(_) => Err(AgentError::Timeout(t)),
        },
        None => run.await,
    };
    exec.finish();
    result.agent_execution = Some(exec);
    // What broke in the sandbox the agent left, for the verifier's message.
    let mut broken: Vec<String> = Vec::new();
    match outcome {
        Ok(agent_result) => result.agent_result = Some(agent_result),
        Err(e) => {
            // What the agent had counted before it stopped is still its result.
            result.agent_result = partial.lock().ok().map(|p| p.clone());
            match &e {
                AgentError::Sandbox(se) => {
                    let note = blame(sb, se, "during the agent phase").await?;
                    log.line(&format!("the agent's sandbox broke: {note}"));
                    broken.push(note);
                }
                _ if !e.continues_to_verifier() => return Err(agent_failure(&e)),
                _ => record(result, agent_failure(&e), trial_dir, log),
            }
        }
    }
    log.line("agent finished");

    // The verifier's ground again, before anything of the verifier runs.
    let now = match crate::integrity::after(sb, &ground, &trial_dir.verifier_dir(), &verifier_env)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let note = blame(sb, &e, "checking the verifier's ground").await?;
            log.line(&format!("integrity: {note}"));
            crate::integrity::host_only(&trial_dir.verifier_dir())
        }
    };
    let evidence = crate::integrity::evidence(&ground, &now);
    if !evidence.is_empty() {
        for e in &evidence {
            log.line(&format!("integrity: suspect: {e}"));
        }
        result.integrity = Some(Integrity::Suspect);
        result.integrity_evidence = Some(evidence);
    }

    // 4. Artifacts, after the agent and before the verifier.
    collect_artifacts(sb, task, trial_dir, log).await;

    // 5. Verifier.
    if !spec.disable_verification {
        let mut vt = TimingInfo::start();
        result.verifier = Some(vt.clone());
        let verdict = verify(sb, task, trial_dir, m, &verifier_env, broken).await;
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
    }
    Ok(())
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

/// The verifier's env, `${VAR}` templates resolved from the host.
fn verifier_env(task: &Task) -> std::collections::BTreeMap<String, String> {
    task.config
        .verifier
        .env
        .iter()
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

/// Harbor's `Verifier.verify`: stale rewards removed, `/tests` copied in after the agent,
/// `(/tests/test.sh) > /logs/verifier/test-stdout.txt 2>&1` under the verifier timeout with its
/// exit code ignored, then `reward.json` before `reward.txt`.
///
/// It runs in the sandbox the agent left: a step that fails while the sandbox is still there
/// is noted and the next step tried, as Harbor's exec would return a failed command; only a
/// sandbox that is gone or a host that does not answer fails the trial as infrastructure.
/// `broken` holds what already broke during the agent phase; with the notes of the steps it
/// explains a missing reward file.
async fn verify(
    sb: &dyn Sandbox,
    task: &Task,
    trial_dir: &TrialDir,
    multiplier: f64,
    env: &std::collections::BTreeMap<String, String>,
    mut broken: Vec<String>,
) -> Result<Rewards, Failure> {
    let cfg = &task.config.verifier;
    // Harbor removes stale rewards, uploads tests/, then chmods test.sh; the upload touches
    // neither reward file, so one exec after it does both and saves a round trip.
    for f in ["reward.txt", "reward.json"] {
        let _ = std::fs::remove_file(trial_dir.verifier_dir().join(f));
    }
    if let Err(e) = sb.upload(&task.tests_dir(), "/tests").await {
        let note = blame(sb, &e, "uploading tests/ to /tests")
            .await
            .map_err(|f| Failure {
                kind: ExceptionType::AddTestsDirError,
                ..f
            })?;
        broken.push(note);
    }
    let prepare = ExecRequest::new(
        "rm -f -- /logs/verifier/reward.txt /logs/verifier/reward.json; chmod +x /tests/test.sh",
    )
    .user(Some("root".to_owned()));
    if let Err(e) = sb.exec(prepare).await {
        broken.push(blame(sb, &e, "preparing /tests/test.sh").await?);
    }
    let timeout = Duration::from_secs_f64((cfg.timeout_sec * multiplier).max(0.0));
    let run = ExecRequest::new("(/tests/test.sh) > /logs/verifier/test-stdout.txt 2>&1")
        .user(cfg.user.as_ref().map(ToString::to_string))
        .env(env.clone())
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
                    "running /tests/test.sh: exit {}: {}",
                    out.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                    autoagent_harbor::text::cut_middle(said.trim(), 400, "…")
                ));
            }
        }
        Err(e) => broken.push(blame(sb, &e, "running /tests/test.sh").await?),
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

/// Downloads the task's `artifacts` into `<trial>/artifacts/` mirroring their paths, and writes
/// `artifacts/manifest.json`. `/logs/artifacts` is bind-mounted and needs no copy.
async fn collect_artifacts(sb: &dyn Sandbox, task: &Task, trial_dir: &TrialDir, log: &TrialLog) {
    let mut manifest = vec![serde_json::json!({
        "source": "/logs/artifacts",
        "destination": "logs/artifacts",
        "type": "directory",
        "status": "ok",
        "service": "main",
        "exclude": [],
    })];
    for a in &task.config.artifacts {
        let source = a.source().to_owned();
        let (destination, exclude) = match a {
            autoagent_harbor::config::ArtifactSpec::Table {
                destination: Some(d),
                exclude,
                ..
            } => (d.trim_start_matches('/').to_owned(), exclude.clone()),
            autoagent_harbor::config::ArtifactSpec::Table { exclude, .. } => {
                (source.trim_start_matches('/').to_owned(), exclude.clone())
            }
            autoagent_harbor::config::ArtifactSpec::Path(_) => {
                (source.trim_start_matches('/').to_owned(), Vec::new())
            }
        };
        if std::path::Path::new(&destination)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            log.line(&format!(
                "artifact {source}: destination {destination:?} leaves the trial dir; skipped"
            ));
            manifest.push(serde_json::json!({"source": source, "destination": destination, "type": "file", "status": "error: destination leaves the trial dir", "service": "main", "exclude": exclude}));
            continue;
        }
        let target = trial_dir.artifacts_dir().join(&destination);
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
            "not_found".to_owned()
        } else {
            match sb.download(&source, &target).await {
                Ok(()) => "ok".to_owned(),
                Err(e) => {
                    log.line(&format!("artifact {source}: {e}"));
                    format!("error: {e}")
                }
            }
        };
        manifest.push(serde_json::json!({
            "source": source,
            "destination": destination,
            "type": if kind == "directory" { "directory" } else { "file" },
            "status": status,
            "service": "main",
            "exclude": exclude,
        }));
    }
    let _ = std::fs::write(
        trial_dir.artifacts_dir().join("manifest.json"),
        serde_json::Value::Array(manifest).to_string(),
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
