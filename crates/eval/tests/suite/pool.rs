//! The pool of Docker hosts with two real daemons (the machine's, and the second one
//! `scripts/second-dockerd.sh` runs): a job spread over both scores as on one; a host that is
//! cut off or hangs mid-job is drained and its trials rerun on the other, never scored; a
//! resume after SIGKILL sweeps both hosts.
//!
//! A host is lost through a unix-socket proxy in front of the second daemon, which the test
//! cuts (every connection closed, the socket gone) or freezes (connections held, nothing
//! forwarded): the shared daemon itself stays up for the other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use autoagent_eval::job::{JOB_LABEL, JobConfig, JobOutcome, Silent};
use autoagent_eval::{AgentError, JobObserver, OracleAgent, TrialAgent, TrialContext, run_job};
use autoagent_harbor::result::AgentResult;
use autoagent_sandbox::docker::{DockerBackend, DockerHost};
use autoagent_sandbox::pool::{HostSpec, PoolBackend, PoolOptions};
use autoagent_sandbox::{Backend, ExecRequest, Sandbox};
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::support::{config, dump};

/// Four example tasks with different rewards (1, 0.5, a multi-metric dict, 1 with a workdir).
const TASKS: &[&str] = &["hello-file", "partial-credit", "multi-metric", "workdir"];

/// 4 tasks × 2 attempts, 4 at once: with two hosts of 2 slots each, both are busy.
fn pool_config(jobs: &Path, name: &str) -> JobConfig {
    let mut cfg = config(jobs, name, "oracle");
    cfg.include = TASKS.iter().map(|t| (*t).to_owned()).collect();
    cfg.n_attempts = 2;
    cfg.n_concurrent = 4;
    cfg
}

/// Quick health checks, so that a frozen host is drained within a few seconds.
fn options() -> PoolOptions {
    PoolOptions {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_secs(1),
        failed_pings: 2,
        connect_timeout: Duration::from_secs(2),
        cleanup_timeout: Duration::from_secs(1),
        max_rejoin_wait: Duration::from_secs(1),
    }
}

fn spec(host: &DockerHost) -> HostSpec {
    HostSpec {
        host: host.clone(),
        slots: None,
    }
}

/// The machine's daemon and the second one, or `None` (skip; a failure under
/// `AUTOAGENT_REQUIRE_DOCKER=1`).
async fn daemons() -> Option<(DockerBackend, DockerBackend)> {
    let main = autoagent_test_support::docker_backend().await?;
    let second = autoagent_test_support::second_docker_backend().await?;
    Some((main, second))
}

/// Each task's rewards, sorted: what two runs of the same job must agree on.
fn rewards(o: &JobOutcome) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &o.trials {
        let r = serde_json::to_string(&t.rewards()).unwrap();
        out.entry(t.task_name.clone()).or_default().push(r);
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

async fn run_with(
    cfg: &JobConfig,
    backend: Arc<dyn Backend>,
    agent: Arc<dyn TrialAgent>,
    observer: Arc<dyn JobObserver>,
) -> JobOutcome {
    run_job(cfg, backend, agent, observer, CancellationToken::new())
        .await
        .unwrap()
}

/// The same job on the machine's daemon alone: the rewards a pool must reproduce.
async fn one_host_rewards(jobs: &Path, main: DockerBackend) -> BTreeMap<String, Vec<String>> {
    let o = run_with(
        &pool_config(jobs, "one-host"),
        Arc::new(main),
        Arc::new(OracleAgent),
        Arc::new(Silent),
    )
    .await;
    let d = dump(&o.job_dir);
    assert_eq!(o.trials.len(), 8, "{d}");
    assert!(o.trials.iter().all(|t| t.exception_info.is_none()), "{d}");
    rewards(&o)
}

/// Where each trial's sandbox went, in order (a rerun trial lists each host).
#[derive(Default)]
struct Placements(Mutex<BTreeMap<String, Vec<String>>>);

impl Placements {
    fn get(&self) -> BTreeMap<String, Vec<String>> {
        self.0.lock().unwrap().clone()
    }
}

impl JobObserver for Placements {
    fn trial_host(&self, trial: &str, host: &str) {
        self.0
            .lock()
            .unwrap()
            .entry(trial.to_owned())
            .or_default()
            .push(host.to_owned());
    }
}

fn job_log(o: &JobOutcome) -> String {
    std::fs::read_to_string(o.job_dir.join("job.log")).unwrap()
}

#[tokio::test]
async fn a_job_spreads_over_two_hosts_with_the_rewards_of_one() {
    let Some((main, second)) = daemons().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let baseline = one_host_rewards(jobs.path(), main.clone()).await;

    let pool = PoolBackend::connect(vec![spec(main.host()), spec(second.host())], options())
        .await
        .unwrap();
    let placements = Arc::new(Placements::default());
    let o = run_with(
        &pool_config(jobs.path(), "pool"),
        Arc::new(pool.clone()),
        Arc::new(OracleAgent),
        placements.clone(),
    )
    .await;
    let d = dump(&o.job_dir);
    assert_eq!(o.trials.len(), 8, "{d}");
    assert!(o.trials.iter().all(|t| t.exception_info.is_none()), "{d}");
    assert_eq!(rewards(&o), baseline, "{d}");
    assert_eq!(o.result.stats.n_retries, 0, "{d}");

    let placements = placements.get();
    let used: BTreeSet<&str> = placements.values().flatten().map(String::as_str).collect();
    let main_url = main.host().url();
    let second_url = second.host().url();
    assert_eq!(
        used,
        BTreeSet::from([main_url.as_str(), second_url.as_str()]),
        "{placements:?}"
    );
    let log = job_log(&o);
    for t in &o.trials {
        let host = &placements[&t.trial_name][0];
        assert!(
            log.contains(&format!("trial {} finished on host {host}:", t.trial_name)),
            "job.log names each trial's host\n{log}"
        );
    }
    for h in pool.status() {
        assert_eq!((h.drained, h.running), (None, 0), "{}", h.host);
        assert_eq!(h.slots, 2, "the CPU count of {}", h.host);
    }
}

/// A unix socket in front of a daemon's: forwards until it is cut (the socket removed, every
/// connection closed: a daemon that died) or frozen (connections accepted and held, nothing
/// forwarded: a daemon that hangs).
struct Proxy {
    path: PathBuf,
    stop: CancellationToken,
    freeze: CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

impl Proxy {
    fn start(target: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut proxy = Self::start_at(dir.path().join("proxy.sock"), target);
        proxy._dir = Some(dir);
        proxy
    }

    /// A proxy on `path`: a cut one's socket, to bring its host back.
    fn start_at(path: PathBuf, target: PathBuf) -> Self {
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let (stop, freeze) = (CancellationToken::new(), CancellationToken::new());
        let (s, f) = (stop.clone(), freeze.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = s.cancelled() => return,
                };
                let Ok((mut down, _)) = accepted else {
                    continue;
                };
                let (s, f, target) = (s.clone(), f.clone(), target.clone());
                tokio::spawn(async move {
                    if f.is_cancelled() {
                        s.cancelled().await;
                        return;
                    }
                    let Ok(mut up) = tokio::net::UnixStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        () = s.cancelled() => {}
                        // Held open, both ends, until the proxy stops.
                        () = f.cancelled() => s.cancelled().await,
                    }
                });
            }
        });
        Self {
            path,
            stop,
            freeze,
            _dir: None,
        }
    }

    fn host(&self) -> DockerHost {
        DockerHost::Unix(self.path.clone())
    }

    fn cut(&self) {
        // The socket first, so that no new connection gets in while the old ones close.
        let _ = std::fs::remove_file(&self.path);
        self.stop.cancel();
    }

    fn freeze(&self) {
        self.freeze.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The oracle, except on the first trial that reaches the agent on the victim host: there a
/// command runs (`sleep 30`) and the host is lost under it half a second in.
struct Saboteur {
    victim: String,
    proxy: Arc<Proxy>,
    freeze: bool,
    struck: AtomicBool,
}

#[async_trait]
impl TrialAgent for Saboteur {
    fn name(&self) -> &str {
        "oracle"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    async fn run(
        &self,
        instruction: &str,
        env: &dyn Sandbox,
        ctx: &TrialContext,
        partial: &Mutex<AgentResult>,
    ) -> Result<AgentResult, AgentError> {
        if env.host().as_deref() == Some(self.victim.as_str())
            && !self.struck.swap(true, Ordering::SeqCst)
        {
            let strike = async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if self.freeze {
                    self.proxy.freeze();
                } else {
                    self.proxy.cut();
                }
            };
            let (out, ()) = tokio::join!(env.exec(ExecRequest::new("sleep 30")), strike);
            out?;
            return Err(AgentError::Fatal(
                "the command outlived the host it ran on".to_owned(),
            ));
        }
        OracleAgent.run(instruction, env, ctx, partial).await
    }
}

/// A job over the machine's daemon and the proxied second one, with the proxy cut or frozen
/// mid-job: the lost host's trials are rerun on the other (outside `max_retries`, which is 0
/// here), none is scored for the loss, and the rewards are the one-host run's.
async fn lose_a_host_mid_job(freeze: bool, name: &str) {
    let Some((main, second)) = daemons().await else {
        return;
    };
    let DockerHost::Unix(target) = second.host().clone() else {
        panic!(
            "the second daemon {} is not on a unix socket",
            second.host()
        );
    };
    let jobs = tempfile::tempdir().unwrap();
    let baseline = one_host_rewards(jobs.path(), main.clone()).await;

    let proxy = Arc::new(Proxy::start(target));
    let victim = proxy.host().url();
    let pool = PoolBackend::connect(vec![spec(main.host()), spec(&proxy.host())], options())
        .await
        .unwrap();
    let saboteur = Arc::new(Saboteur {
        victim: victim.clone(),
        proxy: proxy.clone(),
        freeze,
        struck: AtomicBool::new(false),
    });
    let placements = Arc::new(Placements::default());
    let mut cfg = pool_config(jobs.path(), name);
    cfg.max_retries = 0;
    let started = std::time::Instant::now();
    let o = run_with(
        &cfg,
        Arc::new(pool.clone()),
        saboteur.clone(),
        placements.clone(),
    )
    .await;
    let took = started.elapsed();
    let d = dump(&o.job_dir);
    let status = pool.status();
    let lost = status.iter().find(|h| h.host == proxy.host()).unwrap();
    assert!(lost.drained.is_some(), "{status:?}\n{d}");
    let behind_proxy = |id: &str| labelled(second.host(), id);
    assert!(
        behind_proxy(&o.result.id) >= 1,
        "the victim's container stays on the lost host while it is away\n{d}"
    );
    if freeze {
        // What the lost host's trials left on the daemon behind the proxy, removed directly.
        second.remove_labelled(JOB_LABEL, &o.result.id).await;
    } else {
        // The host comes back: the pool takes it again, once it removed what it left there.
        let DockerHost::Unix(target) = second.host().clone() else {
            unreachable!()
        };
        let _back = Proxy::start_at(proxy.path.clone(), target);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while pool.status().iter().any(|h| h.drained.is_some()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the host did not rejoin: {:?}",
                pool.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            behind_proxy(&o.result.id),
            0,
            "rejoining removed the lost trials' containers"
        );
    }

    assert!(
        saboteur.struck.load(Ordering::SeqCst),
        "no trial reached the agent on {victim}\n{d}"
    );
    assert_eq!(o.trials.len(), 8, "{d}");
    for t in &o.trials {
        assert_eq!(
            t.exception_type(),
            None,
            "{} kept the loss of its host\n{d}",
            t.trial_name
        );
    }
    assert_eq!(rewards(&o), baseline, "{d}");
    assert!(o.result.stats.n_retries >= 1, "{d}");

    let main_url = main.host().url();
    let placements = placements.get();
    let moved: Vec<_> = placements.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(!moved.is_empty(), "no trial was rerun: {placements:?}\n{d}");
    for (trial, hosts) in &moved {
        assert_eq!(
            (hosts[0].as_str(), hosts[hosts.len() - 1].as_str()),
            (victim.as_str(), main_url.as_str()),
            "{trial} was rerun on the other host: {hosts:?}"
        );
    }
    let log = job_log(&o);
    assert!(
        log.contains(&format!(
            "SandboxHostLostError on host {victim}; rerun on another host"
        )),
        "{log}"
    );
    // A frozen host is found by its health pings (~1 s each, 2 in a row), not by a timeout
    // of the trial's own (the command would have slept 30 s).
    assert!(took < Duration::from_secs(60), "the job took {took:?}");
}

/// The cut host also comes back, and rejoins.
#[tokio::test]
async fn a_host_cut_off_mid_job_is_drained_and_its_trials_rerun_elsewhere() {
    lose_a_host_mid_job(false, "cut").await;
}

#[tokio::test]
async fn a_host_that_hangs_mid_job_is_drained_by_its_health_pings() {
    lose_a_host_mid_job(true, "frozen").await;
}

/// The job `sigkill_child` runs and the parent resumes: 4 trials of hello-file at once, 2 on
/// each host.
fn sigkill_config(jobs: &Path) -> JobConfig {
    let mut cfg = config(jobs, "sigkill", "oracle");
    cfg.include = vec!["hello-file".into()];
    cfg.n_attempts = 4;
    cfg.n_concurrent = 4;
    cfg
}

/// Holds every trial in its sandbox (a command that sleeps), until the process is killed.
struct Sleeper;

#[async_trait]
impl TrialAgent for Sleeper {
    fn name(&self) -> &str {
        "oracle"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    async fn run(
        &self,
        _instruction: &str,
        env: &dyn Sandbox,
        _ctx: &TrialContext,
        _partial: &Mutex<AgentResult>,
    ) -> Result<AgentResult, AgentError> {
        env.exec(ExecRequest::new("sleep 600")).await?;
        Ok(AgentResult::default())
    }
}

/// Names the jobs dir of the child process.
const CHILD_JOBS: &str = "AUTOAGENT_POOL_SIGKILL_JOBS";

/// Not a test of its own: the process `resume_after_sigkill_sweeps_both_hosts` starts (this
/// test binary, filtered to this test) and kills with SIGKILL. Without its variable it does
/// nothing.
#[tokio::test]
#[ignore = "the child process of resume_after_sigkill_sweeps_both_hosts"]
async fn sigkill_child() {
    let Ok(jobs) = std::env::var(CHILD_JOBS) else {
        return;
    };
    let (main, second) = daemons().await.unwrap();
    let pool = PoolBackend::connect(vec![spec(main.host()), spec(second.host())], options())
        .await
        .unwrap();
    run_with(
        &sigkill_config(Path::new(&jobs)),
        Arc::new(pool),
        Arc::new(Sleeper),
        Arc::new(Silent),
    )
    .await;
}

/// The containers labelled with the job's id on a host.
fn labelled(host: &DockerHost, job_id: &str) -> usize {
    let out = std::process::Command::new("docker")
        .args(["-H", &host.url(), "ps", "-aq", "--filter"])
        .arg(format!("label={JOB_LABEL}={job_id}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Kills the child on the way out, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn resume_after_sigkill_sweeps_both_hosts() {
    let Some((main, second)) = daemons().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let child_log = jobs.path().join("child.log");
    let log_file = std::fs::File::create(&child_log).unwrap();
    let mut child = Child(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "suite::pool::sigkill_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_JOBS, jobs.path())
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap(),
    );
    let result_path = jobs.path().join("sigkill/result.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // Wait until the job has sandboxes on both hosts.
    let job_id = loop {
        let id = std::fs::read_to_string(&result_path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        if let Some(id) = id
            && labelled(main.host(), &id) > 0
            && labelled(second.host(), &id) > 0
        {
            break id;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "the child ended ({status}) before it had sandboxes on both hosts:\n{}",
                std::fs::read_to_string(&child_log).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sandboxes on both hosts within 120 s:\n{}",
            std::fs::read_to_string(&child_log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // SIGKILL: nothing of the child's runs on, nothing is cleaned up.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let before = (
        labelled(main.host(), &job_id),
        labelled(second.host(), &job_id),
    );
    assert!(before.0 > 0 && before.1 > 0, "{before:?}");

    let pool = PoolBackend::connect(vec![spec(main.host()), spec(second.host())], options())
        .await
        .unwrap();
    let o = run_with(
        &sigkill_config(jobs.path()),
        Arc::new(pool),
        Arc::new(OracleAgent),
        Arc::new(Silent),
    )
    .await;
    let d = dump(&o.job_dir);
    assert_eq!(o.result.id, job_id, "the resumed job keeps its id\n{d}");
    assert_eq!(
        (
            labelled(main.host(), &job_id),
            labelled(second.host(), &job_id)
        ),
        (0, 0),
        "the killed run's containers are gone from both hosts\n{d}"
    );
    let log = job_log(&o);
    assert!(
        log.contains(&format!(
            "removed {} sandbox(es) left by the interrupted run",
            before.0 + before.1
        )),
        "the sweep removed what was on both hosts ({before:?})\n{log}"
    );
    assert_eq!(o.trials.len(), 4, "{d}");
    for t in &o.trials {
        assert_eq!(t.reward(), Some(1.0), "{d}");
    }
}
