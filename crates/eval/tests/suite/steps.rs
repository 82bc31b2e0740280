//! Multi-step tasks, separate verifier environments, and sandboxes whose log dirs are not bind
//! mounts, run for real in Docker (fixtures in `tests/fixtures/steps/`).

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;

use async_trait::async_trait;
use autoagent_eval::{AgentError, NopAgent, OracleAgent, TrialAgent, TrialContext};
use autoagent_harbor::result::AgentResult;
use autoagent_sandbox::{Backend, ExecRequest, Sandbox};
use pretty_assertions::assert_eq;

use super::support::{by_task, config, dump, run};

/// A step's name, rewards and exception type.
type StepSummary = (String, Vec<(String, f64)>, Option<String>);

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/steps")
}

fn rewards(t: &autoagent_harbor::TrialResult) -> Vec<(String, f64)> {
    t.rewards()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            (
                k.clone(),
                (v.as_f64().unwrap_or(f64::NAN) * 1e4).round() / 1e4,
            )
        })
        .collect()
}

/// Relative paths of every file under `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

/// Writes the reward file itself and the answer nowhere: a separate verifier must not be fooled.
struct WritesItsOwnReward;

#[async_trait]
impl TrialAgent for WritesItsOwnReward {
    fn name(&self) -> &str {
        "writes-its-own-reward"
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
        env.exec(ExecRequest::new(
            "echo 1 > /logs/verifier/reward.txt; mkdir -p /tests; echo 'echo 1 > /logs/verifier/reward.txt' > /tests/test.sh",
        ))
        .await?;
        Ok(AgentResult::default())
    }
}

#[tokio::test]
async fn a_multi_step_task_runs_its_steps_in_one_sandbox_and_scores_their_mean() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "steps-oracle", "oracle");
    cfg.path = fixtures();
    cfg.include = vec!["three-steps".into()];
    let o = run(&cfg, Arc::new(docker), Arc::new(OracleAgent)).await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "three-steps");
    assert_eq!(t.exception_info, None, "{d}");
    let steps = t.step_results.as_ref().unwrap_or_else(|| panic!("{d}"));
    let per_step: Vec<StepSummary> = steps
        .iter()
        .map(|s| {
            (
                s.step_name.clone(),
                s.verifier_result
                    .as_ref()
                    .and_then(|v| v.rewards.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                    .collect(),
                s.exception_info
                    .as_ref()
                    .map(|e| e.exception_type.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(
        per_step,
        vec![
            // The workdir was uploaded and setup.sh ran in it; the task's [verifier] env reached
            // the step's verifier.
            ("create".into(), vec![("reward".into(), 1.0)], None),
            // The step's env came on top of the task's, and the task's tests/ was uploaded
            // beside the step's.
            (
                "append".into(),
                vec![("lines".into(), 2.0), ("reward".into(), 1.0)],
                None
            ),
            // No tests of its own: the task's test.sh verified it, and its agent found /tests
            // empty (the append step's tests were removed before it ran).
            ("count".into(), vec![("reward".into(), 0.5)], None),
        ],
        "{d}"
    );
    // Per key, the mean over the steps; a key a step lacks counts 0.
    assert_eq!(
        rewards(t),
        vec![("lines".into(), 0.6667), ("reward".into(), 0.8333)],
        "{d}"
    );
    // As Harbor: the mode and the trial-level phases are the steps', not the trial's.
    assert_eq!(
        (
            &t.verifier_environment_mode,
            &t.agent_execution,
            &t.verifier
        ),
        (&None, &None, &None),
        "{d}"
    );
    for s in steps {
        assert!(s.agent_execution.is_some() && s.verifier.is_some(), "{s:?}");
    }

    // Each step's outputs moved to steps/<name>/; the mount dirs, emptied, are gone.
    let dir = o.job_dir.join(&t.trial_name);
    let f = files(&dir);
    for want in [
        "steps/create/agent/oracle.txt",
        "steps/create/verifier/reward.txt",
        "steps/create/verifier/test-stdout.txt",
        "steps/create/artifacts/manifest.json",
        "steps/append/verifier/reward.json",
        "steps/count/verifier/reward.txt",
        // /logs/artifacts is never emptied between steps: every later step collects it again.
        "steps/create/artifacts/logs/artifacts/note.txt",
        "steps/count/artifacts/logs/artifacts/note.txt",
        "result.json",
        "config.json",
        "lock.json",
        "trial.log",
    ] {
        assert!(f.contains(&want.to_owned()), "{want} missing from {f:#?}");
    }
    for gone in ["agent", "verifier", "artifacts"] {
        assert!(!dir.join(gone).exists(), "{gone}/ left behind: {f:#?}");
    }
}

#[tokio::test]
async fn a_failed_step_below_its_min_reward_ends_the_trial() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "steps-nop", "nop");
    cfg.path = fixtures();
    cfg.include = vec!["three-steps".into()];
    let o = run(&cfg, Arc::new(docker), Arc::new(NopAgent)).await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "three-steps");
    assert_eq!(t.exception_info, None, "{d}");
    let steps = t.step_results.as_ref().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(
        steps
            .iter()
            .map(|s| s.step_name.as_str())
            .collect::<Vec<_>>(),
        vec!["create"],
        "the create step scored 0 < min_reward 1: the others never ran\n{d}"
    );
    assert_eq!(rewards(t), vec![("reward".into(), 0.0)], "{d}");
    let log = std::fs::read_to_string(o.job_dir.join(&t.trial_name).join("trial.log")).unwrap();
    assert!(
        log.contains("reward=0 below min_reward 1; the remaining steps are skipped"),
        "{log}"
    );
}

#[tokio::test]
async fn a_failed_setup_is_the_steps_failure_not_a_retried_infrastructure_error() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "setup-fails", "nop");
    cfg.path = fixtures();
    cfg.include = vec!["setup-fails".into()];
    cfg.max_retries = 2;
    let o = run(&cfg, Arc::new(docker), Arc::new(NopAgent)).await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "setup-fails");
    assert_eq!(
        (t.exception_info.as_ref(), o.result.stats.n_retries),
        (None, 0),
        "{d}"
    );
    let steps = t.step_results.as_ref().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(steps.len(), 2, "{d}");
    let two = &steps[1];
    let e = two.exception_info.as_ref().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(e.exception_type.as_str(), "RuntimeError", "{d}");
    assert!(
        e.exception_message
            .contains("Step 'two' setup.sh exited with code 3: the fixture it needs is missing"),
        "{}",
        e.exception_message
    );
    assert!(
        two.agent_execution.is_none() && two.verifier_result.is_none(),
        "{d}"
    );
    // The mean leaves out the step without a verifier result.
    assert_eq!(rewards(t), vec![("reward".into(), 1.0)], "{d}");
}

#[tokio::test]
async fn a_separate_verifier_sees_only_the_artifacts_and_cannot_be_fooled_from_the_agent_side() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "separate-oracle", "oracle");
    cfg.path = fixtures();
    cfg.include = vec!["separate".into()];
    let o = run(&cfg, docker.clone(), Arc::new(OracleAgent)).await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "separate");
    assert_eq!(t.exception_info, None, "{d}");
    // The answer reached the verifier's own container as an artifact; the agent's other file
    // did not (the verifier checks both).
    assert_eq!(rewards(t), vec![("reward".into(), 1.0)], "{d}");
    assert_eq!(
        t.verifier_environment_mode.as_deref(),
        Some("separate"),
        "{d}"
    );
    let dir = o.job_dir.join(&t.trial_name);
    assert_eq!(
        std::fs::read_to_string(dir.join("artifacts/app/answer.txt")).unwrap(),
        "42\n"
    );
    let log = std::fs::read_to_string(dir.join("trial.log")).unwrap();
    // The agent's sandbox went before the verifier's started.
    let agent_gone = log.find("the agent's sandbox removed");
    let verifier_up = log.find("starting the separate verifier environment (trial)");
    assert!(
        agent_gone.is_some() && verifier_up.is_some() && agent_gone < verifier_up,
        "{log}"
    );
    assert!(log.contains("verifier environment removed"), "{log}");

    // An agent that plants a reward file and a test script in its own sandbox gains nothing:
    // the verifier's container has neither.
    let mut cfg = config(jobs.path(), "separate-cheat", "writes-its-own-reward");
    cfg.path = fixtures();
    cfg.include = vec!["separate".into()];
    let o = run(&cfg, docker, Arc::new(WritesItsOwnReward)).await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "separate");
    assert_eq!(t.exception_info, None, "{d}");
    assert_eq!(rewards(t), vec![("reward".into(), 0.0)], "{d}");
}

#[tokio::test]
async fn without_host_mounts_the_logs_are_collected_into_the_same_trial_folder() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    // As for a Docker host on another machine: the log dirs exist only inside the container.
    docker.set_bind_mounts(false);
    let backend: Arc<dyn Backend> = Arc::new(docker);
    let jobs = tempfile::tempdir().unwrap();

    // A single-step task, a multi-step one and a separate verifier, as with mounts.
    let mut cfg = config(jobs.path(), "no-mounts-examples", "oracle");
    cfg.include = vec!["hello-file".into(), "multi-metric".into()];
    let o = run(&cfg, backend.clone(), Arc::new(OracleAgent)).await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "hello-file");
    assert_eq!(
        (t.reward(), t.exception_info.is_none()),
        (Some(1.0), true),
        "{d}"
    );
    let f = files(&o.job_dir.join(&t.trial_name));
    for want in [
        "agent/oracle.txt",
        "verifier/reward.txt",
        "verifier/test-stdout.txt",
        "artifacts/manifest.json",
    ] {
        assert!(
            f.contains(&want.to_owned()),
            "{want} missing from {f:#?}\n{d}"
        );
    }
    assert_eq!(by_task(&o, "multi-metric").reward(), Some(1.0), "{d}");

    let mut cfg = config(jobs.path(), "no-mounts-steps", "oracle");
    cfg.path = fixtures();
    cfg.include = vec!["three-steps".into(), "separate".into()];
    let o = run(&cfg, backend, Arc::new(OracleAgent)).await;
    let d = dump(&o.job_dir);
    assert_eq!(
        rewards(by_task(&o, "three-steps")),
        vec![("lines".into(), 0.6667), ("reward".into(), 0.8333)],
        "{d}"
    );
    let steps = by_task(&o, "three-steps");
    let f = files(&o.job_dir.join(&steps.trial_name));
    assert!(
        f.contains(&"steps/create/agent/oracle.txt".to_owned())
            && f.contains(&"steps/append/verifier/test-stdout.txt".to_owned()),
        "{f:#?}"
    );
    assert_eq!(
        rewards(by_task(&o, "separate")),
        vec![("reward".into(), 1.0)],
        "{d}"
    );
}
