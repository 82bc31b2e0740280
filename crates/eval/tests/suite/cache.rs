//! The trial cache in real Docker: a trial measured once is copied, not run, by any job with
//! the same key; everything else about the key makes a miss; broken entries are misses; and
//! per-task attempt targets grow a job by only the missing trials.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use autoagent_eval::cache::ENTRY_FILE;
use autoagent_eval::job::{JobConfig, JobOutcome};
use autoagent_eval::{
    AgentError, JobCache, JobObserver, OracleAgent, TrialAgent, TrialCache, TrialContext,
};
use autoagent_harbor::TrialResult;
use autoagent_harbor::result::AgentResult;
use autoagent_sandbox::{Backend, Sandbox};
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::support::{config, dump, reward};

/// What one real run costs, as the agent reports it.
const COST: f64 = 0.25;

/// The oracle, counting its runs and reporting a cost: a run that happens is visible, a hit
/// is not.
struct Counting {
    runs: AtomicUsize,
    /// Fail every run with an infrastructure error instead.
    broken: bool,
}

impl Counting {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            runs: AtomicUsize::new(0),
            broken: false,
        })
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TrialAgent for Counting {
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
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.broken {
            return Err(AgentError::Fatal("the test's infrastructure broke".into()));
        }
        let mut r = OracleAgent.run(instruction, env, ctx, partial).await?;
        r.cost_usd = Some(COST);
        Ok(r)
    }
}

/// Counts what the observer hears.
#[derive(Default)]
struct Heard {
    started: AtomicUsize,
    finished: AtomicUsize,
}

impl JobObserver for Heard {
    fn trial_started(&self, _trial_name: &str, _task: &str) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn trial_finished(&self, _result: &TrialResult) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
}

fn job_cache(cache: &Arc<TrialCache>, harness: &str, model: &str) -> JobCache {
    JobCache {
        cache: cache.clone(),
        harness_tree: harness.to_owned(),
        model_key: model.to_owned(),
        first_attempt: BTreeMap::new(),
    }
}

fn cached_config(jobs: &Path, name: &str, cache: JobCache, tasks: &[&str]) -> JobConfig {
    JobConfig {
        include: tasks.iter().map(|t| (*t).to_owned()).collect(),
        cache: Some(cache),
        ..config(jobs, name, "oracle")
    }
}

async fn run_with(
    cfg: &JobConfig,
    backend: Arc<dyn Backend>,
    agent: Arc<dyn TrialAgent>,
    observer: Arc<dyn JobObserver>,
) -> JobOutcome {
    autoagent_eval::run_job(cfg, backend, agent, observer, CancellationToken::new())
        .await
        .unwrap()
}

async fn run(cfg: &JobConfig, backend: Arc<dyn Backend>, agent: Arc<Counting>) -> JobOutcome {
    run_with(cfg, backend, agent, Arc::new(autoagent_eval::job::Silent)).await
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn spend(o: &JobOutcome) -> f64 {
    o.trials
        .iter()
        .filter_map(|t| t.agent_result.as_ref()?.cost_usd)
        .sum()
}

#[tokio::test]
async fn a_second_job_with_the_same_key_is_copied_from_the_cache() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let cache = Arc::new(TrialCache::open(&jobs.path().join("cache")).unwrap());
    let agent = Counting::new();
    let mut cfg = cached_config(
        jobs.path(),
        "first",
        job_cache(&cache, "tree-1", "model-1"),
        &["hello-file", "partial-credit"],
    );
    cfg.n_attempts = 2;
    let first = run(&cfg, docker.clone(), agent.clone()).await;
    let d = dump(&first.job_dir);
    assert_eq!(first.trials.len(), 4, "{d}");
    assert_eq!(agent.runs(), 4, "{d}");
    assert!(first.trials.iter().all(|t| !t.is_cached()), "{d}");
    assert_eq!(first.result.stats.n_cached_trials, None);
    assert_eq!(spend(&first), 4.0 * COST);
    assert_eq!(cache.list().unwrap().entries.len(), 4, "every trial stored");
    // A job without hits writes Harbor's shape; the attempt index is recorded.
    let job_json = json(&first.job_dir.join("result.json"));
    assert!(
        job_json["stats"].get("n_cached_trials").is_none(),
        "{job_json:#}"
    );
    let t0 = json(
        &first
            .job_dir
            .join(&first.trials[0].trial_name)
            .join("result.json"),
    );
    assert!(t0.get("cached_from").is_none(), "{t0:#}");
    let indices: BTreeSet<(String, u32)> = first
        .trials
        .iter()
        .map(|t| (t.task_name.clone(), t.attempt_index.unwrap()))
        .collect();
    assert_eq!(indices.len(), 4, "two indices per task: {indices:?}");

    // Another job, the same key inputs: nothing runs.
    cfg.job_name = "second".into();
    let heard = Arc::new(Heard::default());
    let second = run_with(&cfg, docker.clone(), agent.clone(), heard.clone()).await;
    let d = dump(&second.job_dir);
    assert_eq!(agent.runs(), 4, "the second job ran nothing\n{d}");
    assert_eq!(second.trials.len(), 4, "{d}");
    assert_eq!(heard.started.load(Ordering::SeqCst), 4, "hits are heard");
    assert_eq!(heard.finished.load(Ordering::SeqCst), 4);
    assert_eq!(second.result.stats.n_cached_trials, Some(4));
    assert_eq!(second.result.stats.n_completed_trials, 4);
    assert_eq!(
        second.result.stats.cost_usd,
        Some(0.0),
        "a hit is not paid again"
    );
    assert_eq!(spend(&second), 0.0);
    let job_json = json(&second.job_dir.join("result.json"));
    assert_eq!(job_json["stats"]["n_cached_trials"], 4, "{job_json:#}");
    for t in &second.trials {
        assert!(t.is_cached(), "{d}");
        assert_eq!(t.cached_cost_usd, Some(COST));
        let original = first
            .trials
            .iter()
            .find(|o| {
                Some(first.job_dir.join(&o.trial_name).display().to_string()) == t.cached_from
            })
            .unwrap_or_else(|| panic!("{:?} is not a first-job trial\n{d}", t.cached_from));
        assert_eq!(original.task_name, t.task_name);
        assert_eq!(
            original.attempt_index, t.attempt_index,
            "same key, same attempt"
        );
        assert_eq!(reward(original), reward(t), "{d}");
        assert_ne!(original.id, t.id);
        // The copy is a trial of the second job, in its place.
        let dir = second.job_dir.join(&t.trial_name);
        let on_disk = json(&dir.join("result.json"));
        assert_eq!(on_disk["trial_name"], t.trial_name.as_str());
        assert_eq!(
            on_disk["trial_uri"],
            format!("file://{}", dir.display()).as_str()
        );
        assert_eq!(on_disk["cached_from"], t.cached_from.as_deref().unwrap());
        assert_eq!(on_disk["agent_result"]["cost_usd"], 0.0);
        assert_eq!(on_disk["config"]["trial_name"], t.trial_name.as_str());
        assert_eq!(
            on_disk["config"]["trials_dir"],
            second.job_dir.display().to_string().as_str()
        );
        assert_eq!(on_disk["config"]["job_id"], second.result.id.as_str());
        assert_eq!(json(&dir.join("config.json")), on_disk["config"]);
        // Everything the trial wrote came along.
        assert!(dir.join("verifier/test-stdout.txt").is_file(), "{d}");
        assert!(dir.join("agent/oracle.txt").is_file(), "{d}");
    }
    // The metrics are the same measurement (the reward stats name trials, which differ).
    let metrics = |o: &JobOutcome| -> Vec<_> {
        o.result
            .stats
            .evals
            .iter()
            .map(|(k, e)| {
                (
                    k.clone(),
                    e.n_trials,
                    e.metrics.clone(),
                    e.pass_at_k.clone(),
                )
            })
            .collect()
    };
    assert_eq!(metrics(&first), metrics(&second));
}

#[tokio::test]
async fn another_harness_model_or_attempt_is_a_miss() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let cache = Arc::new(TrialCache::open(&jobs.path().join("cache")).unwrap());
    let agent = Counting::new();
    let base = job_cache(&cache, "tree-1", "model-1");
    let o = run(
        &cached_config(jobs.path(), "base", base.clone(), &["hello-file"]),
        docker.clone(),
        agent.clone(),
    )
    .await;
    assert_eq!(agent.runs(), 1, "{}", dump(&o.job_dir));

    let other_tree = JobCache {
        harness_tree: "tree-2".into(),
        ..base.clone()
    };
    let other_model = JobCache {
        model_key: "model-2".into(),
        ..base.clone()
    };
    let other_attempt = JobCache {
        first_attempt: BTreeMap::from([("hello-file".to_owned(), 1)]),
        ..base.clone()
    };
    for (i, (what, jc)) in [
        ("harness tree", other_tree),
        ("model key", other_model),
        ("attempt index", other_attempt),
    ]
    .into_iter()
    .enumerate()
    {
        let o = run(
            &cached_config(jobs.path(), &format!("miss-{i}"), jc, &["hello-file"]),
            docker.clone(),
            agent.clone(),
        )
        .await;
        let d = dump(&o.job_dir);
        assert_eq!(agent.runs(), 2 + i, "another {what} ran\n{d}");
        assert!(!o.trials[0].is_cached(), "{d}");
    }
    assert_eq!(o.trials[0].attempt_index, Some(0), "{}", dump(&o.job_dir));

    // Each miss was stored: all of them hit now, the base too.
    let runs = agent.runs();
    let again = run(
        &cached_config(jobs.path(), "again", base, &["hello-file"]),
        docker.clone(),
        agent.clone(),
    )
    .await;
    assert_eq!(agent.runs(), runs, "{}", dump(&again.job_dir));
    assert!(again.trials[0].is_cached());
    assert_eq!(cache.list().unwrap().entries.len(), 4);
}

#[tokio::test]
async fn growing_task_attempts_runs_only_the_missing_trials() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let cache = Arc::new(TrialCache::open(&jobs.path().join("cache")).unwrap());
    let agent = Counting::new();
    let mut cfg = cached_config(
        jobs.path(),
        "growing",
        job_cache(&cache, "tree-1", "model-1"),
        &["hello-file", "partial-credit"],
    );
    // n_attempts is ignored once targets are given; a task absent from them runs none.
    cfg.n_attempts = 5;
    cfg.task_attempts = BTreeMap::from([("hello-file".to_owned(), 1)]);
    let o = run(&cfg, docker.clone(), agent.clone()).await;
    assert_eq!(o.trials.len(), 1, "{}", dump(&o.job_dir));
    assert_eq!(o.trials[0].task_name, "hello-file");
    assert_eq!(agent.runs(), 1);
    let kept = o.trials[0].id.clone();

    // The same job dir, grown targets: only the missing trials run, the job keeps its id.
    cfg.task_attempts = BTreeMap::from([
        ("hello-file".to_owned(), 3),
        ("partial-credit".to_owned(), 1),
    ]);
    let grown = run(&cfg, docker.clone(), agent.clone()).await;
    let d = dump(&grown.job_dir);
    assert_eq!(agent.runs(), 4, "2 + 1 more\n{d}");
    assert_eq!(grown.trials.len(), 4, "{d}");
    assert_eq!(grown.result.id, o.result.id);
    assert_eq!(grown.result.stats.n_completed_trials, 4);
    assert_eq!(grown.result.n_total_trials, 4);
    assert!(grown.trials.iter().any(|t| t.id == kept), "{d}");
    let indices = |o: &JobOutcome, task: &str| -> Vec<u32> {
        let mut v: Vec<u32> = o
            .trials
            .iter()
            .filter(|t| t.task_name == task)
            .map(|t| t.attempt_index.unwrap())
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(indices(&grown, "hello-file"), [0, 1, 2], "{d}");
    assert_eq!(indices(&grown, "partial-credit"), [0], "{d}");

    // Met targets run nothing.
    let same = run(&cfg, docker.clone(), agent.clone()).await;
    assert_eq!(agent.runs(), 4);
    assert_eq!(same.trials.len(), 4);

    // Another job asking for the same attempts is served whole from the cache.
    cfg.job_name = "copy".into();
    let copy = run(&cfg, docker.clone(), agent.clone()).await;
    let d = dump(&copy.job_dir);
    assert_eq!(agent.runs(), 4, "{d}");
    assert_eq!(copy.result.stats.n_cached_trials, Some(4), "{d}");
    assert_eq!(indices(&copy, "hello-file"), [0, 1, 2], "{d}");

    // Without the cache, the targets work the same and nothing is recorded or reused.
    let mut plain = cfg.clone();
    plain.job_name = "plain".into();
    plain.cache = None;
    plain.task_attempts = BTreeMap::from([("partial-credit".to_owned(), 2)]);
    let p = run(&plain, docker, agent.clone()).await;
    assert_eq!(agent.runs(), 6, "{}", dump(&p.job_dir));
    assert!(
        p.trials
            .iter()
            .all(|t| t.attempt_index.is_none() && !t.is_cached())
    );
}

#[tokio::test]
async fn an_infrastructure_failure_is_not_cached() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let cache = Arc::new(TrialCache::open(&jobs.path().join("cache")).unwrap());
    let jc = job_cache(&cache, "tree-1", "model-1");
    let broken = Arc::new(Counting {
        runs: AtomicUsize::new(0),
        broken: true,
    });
    let o = run(
        &cached_config(jobs.path(), "broken", jc.clone(), &["hello-file"]),
        docker.clone(),
        broken.clone(),
    )
    .await;
    let d = dump(&o.job_dir);
    assert!(o.trials[0].is_infrastructure_error(), "{d}");
    let listing = cache.list().unwrap();
    assert!(
        listing.entries.is_empty() && listing.broken.is_empty(),
        "{d}"
    );

    // The same key afterwards: a miss, which runs.
    let agent = Counting::new();
    let o = run(
        &cached_config(jobs.path(), "fixed", jc, &["hello-file"]),
        docker,
        agent.clone(),
    )
    .await;
    assert_eq!(agent.runs(), 1, "{}", dump(&o.job_dir));
    assert!(!o.trials[0].is_cached());
    assert_eq!(cache.list().unwrap().entries.len(), 1);
}

#[tokio::test]
async fn a_half_written_entry_is_a_miss() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let cache_dir = jobs.path().join("cache");
    let cache = Arc::new(TrialCache::open(&cache_dir).unwrap());
    let jc = job_cache(&cache, "tree-1", "model-1");
    let agent = Counting::new();
    let o = run(
        &cached_config(jobs.path(), "first", jc.clone(), &["hello-file"]),
        docker.clone(),
        agent.clone(),
    )
    .await;
    assert_eq!(agent.runs(), 1, "{}", dump(&o.job_dir));
    let listing = cache.list().unwrap();
    assert_eq!(listing.entries.len(), 1);
    let key = listing.entries[0].info.parts.clone();
    let entry = cache_dir.join("entries").join(key.digest());
    assert!(cache.lookup(&key).is_some());

    // A kill mid-write: a temp dir holding a whole copy; and an entry without entry.json.
    autoagent_test_support::copy_dir(&entry, &cache_dir.join("tmp/killed-mid-write"));
    std::fs::remove_file(entry.join(ENTRY_FILE)).unwrap();
    assert!(cache.lookup(&key).is_none());
    let listing = cache.list().unwrap();
    assert!(listing.entries.is_empty());
    assert_eq!(listing.broken.len(), 2, "{:?}", listing.broken);
    assert!(
        listing.broken[0].reason.contains(ENTRY_FILE),
        "{:?}",
        listing.broken
    );

    let o = run(
        &cached_config(jobs.path(), "second", jc.clone(), &["hello-file"]),
        docker.clone(),
        agent.clone(),
    )
    .await;
    assert_eq!(
        agent.runs(),
        2,
        "a broken entry is a miss\n{}",
        dump(&o.job_dir)
    );
    assert!(!o.trials[0].is_cached());
    // The run replaced the broken entry; the temp dir stays until pruned.
    let listing = cache.list().unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.broken.len(), 1, "{:?}", listing.broken);

    // An entry whose trial copy lost its result.json is a miss too.
    std::fs::remove_file(entry.join("trial/result.json")).unwrap();
    let o = run(
        &cached_config(jobs.path(), "third", jc, &["hello-file"]),
        docker,
        agent.clone(),
    )
    .await;
    assert_eq!(agent.runs(), 3, "{}", dump(&o.job_dir));

    let r = cache.prune(None, true).unwrap();
    assert_eq!(r.removed_entries, 1);
    assert_eq!(r.removed_broken, 1);
    let listing = cache.list().unwrap();
    assert!(listing.entries.is_empty() && listing.broken.is_empty());
}
