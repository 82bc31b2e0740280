//! Shared test support: runs jobs over the example tasks, and on failure prints everything
//! a person needs to debug (every trial's result.json, trial.log, verifier output, job.log).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use autoagent_eval::job::{JobConfig, JobOutcome, Silent};
use autoagent_eval::{TrialAgent, run_job};
use autoagent_harbor::TrialResult;
use autoagent_sandbox::Backend;
use tokio_util::sync::CancellationToken;

pub fn examples() -> PathBuf {
    autoagent_test_support::examples_dir().join("tasks")
}

pub fn config(jobs_dir: &Path, name: &str, agent: &str) -> JobConfig {
    JobConfig {
        job_name: name.to_owned(),
        jobs_dir: jobs_dir.to_path_buf(),
        path: examples(),
        agent: agent.to_owned(),
        model: None,
        agent_kwargs: Default::default(),
        n_attempts: 1,
        max_retries: 0,
        include: vec![],
        exclude: vec![],
        sandbox: "docker".to_owned(),
        force_build: false,
        timeout_multiplier: 1.0,
        disable_verification: false,
        n_concurrent: 4,
        task_attempts: Default::default(),
        cache: None,
    }
}

pub async fn run(
    config: &JobConfig,
    backend: Arc<dyn Backend>,
    agent: Arc<dyn TrialAgent>,
) -> JobOutcome {
    run_job(
        config,
        backend,
        agent,
        Arc::new(Silent),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// Everything in a job dir worth reading when a test fails.
pub fn dump(job_dir: &Path) -> String {
    autoagent_test_support::dump_dir(job_dir)
}

pub fn by_task<'a>(o: &'a JobOutcome, task: &str) -> &'a TrialResult {
    o.trials
        .iter()
        .find(|t| t.task_name == task)
        .unwrap_or_else(|| panic!("no trial of {task}\n{}", dump(&o.job_dir)))
}

/// `Some(reward)` of the trial's single `reward` key.
pub fn reward(t: &TrialResult) -> Option<f64> {
    t.rewards()
        .and_then(|r| r.get("reward"))
        .and_then(|n| n.as_f64())
}
