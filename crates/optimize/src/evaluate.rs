//! Evaluating the harness's working tree on a set of tasks: a job under `jobs/`, resumable, with
//! infrastructure failures retried and kept out of the score.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use autoagent_agent::Harness;
use autoagent_eval::job::{JobConfig, JobObserver};
use autoagent_eval::{HarnessAgent, run_job};
use autoagent_harbor::{TrialResult, cost};
use autoagent_llm::{EnvSource, ModelConfig};
use autoagent_sandbox::Backend;
use tokio_util::sync::CancellationToken;

use crate::ledger::TaskScores;

/// A trial passes when its reward reaches 1 and the agent left the verifier's ground alone: a
/// suspect trial (`"integrity": "suspect"`) is a failure whatever its reward, so a gain can
/// never come from an agent that wrote its own reward or replaced the test runner.
pub fn passed(t: &TrialResult) -> bool {
    !t.is_suspect() && t.reward().is_some_and(|r| r >= 1.0 - 1e-9)
}

/// What a trial adds to a score: its reward (none counts 0), 0 for a suspect trial.
pub fn score(t: &TrialResult) -> f64 {
    if t.is_suspect() {
        0.0
    } else {
        t.reward().unwrap_or(0.0)
    }
}

/// "N suspect trial(s) counted as failures: a, b", or `None` without suspect trials.
pub fn suspect_note(trials: &[String]) -> Option<String> {
    (!trials.is_empty()).then(|| {
        format!(
            "{} suspect trial(s) counted as failures: {}",
            trials.len(),
            trials.join(", ")
        )
    })
}

/// What an evaluation produced, infrastructure errors kept apart.
#[derive(Debug, Clone, Default)]
pub struct EvalSummary {
    pub job_dir: PathBuf,
    pub passed: u32,
    /// Trials that count: every finished trial but those that failed for infrastructure reasons.
    pub trials: u32,
    pub avg_score: f64,
    pub task_scores: TaskScores,
    pub cost_usd: Option<f64>,
    pub infra_errors: u32,
    /// Trials the integrity monitor marked suspect (counted as failures above), by name.
    pub suspect: Vec<String>,
}

pub struct Evaluator {
    pub backend: Arc<dyn Backend>,
    pub model: ModelConfig,
    pub env: EnvSource,
    pub tasks_dir: PathBuf,
    pub jobs_dir: PathBuf,
    pub concurrency: usize,
    pub max_retries: u32,
    pub timeout_multiplier: f64,
    pub observer: Arc<dyn JobObserver>,
    /// The workspace's trial cache; `None` with `--no-cache`.
    pub cache: Option<Arc<autoagent_eval::TrialCache>>,
}

/// What of the task model changes a trial's behaviour, as one string of the trial cache's key:
/// the model, its endpoint and sampling (the harness's own settings are in its tree hash), and
/// for a scripted model the script's content.
pub fn model_key(m: &ModelConfig) -> String {
    use sha2::Digest as _;
    let script = m
        .model
        .strip_prefix("scripted/")
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| format!("{:x}", sha2::Sha256::digest(&b)))
        .unwrap_or_default();
    format!(
        "{}|{}|{}|{:?}|{:?}|{script}",
        m.model,
        m.base_url.as_deref().unwrap_or(""),
        m.max_tokens,
        m.temperature,
        m.reasoning_effort
    )
}

/// `*`, `?` and `[` are glob syntax: task names are matched literally.
fn literal_glob(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '*' | '?' | '[' | ']' => format!("[{c}]"),
            c => c.to_string(),
        })
        .collect()
}

impl Evaluator {
    /// Runs (or resumes) job `name` of the harness at `harness_dir` on `tasks`, `attempts` each.
    /// `commit` identifies the harness version, so a resumed job is the same evaluation.
    pub async fn evaluate(
        &self,
        name: &str,
        harness_dir: &Path,
        commit: &str,
        tasks: &BTreeSet<String>,
        attempts: u32,
        cancel: CancellationToken,
    ) -> Result<EvalSummary, String> {
        self.run(
            name,
            harness_dir,
            commit,
            tasks,
            attempts,
            BTreeMap::new(),
            BTreeMap::new(),
            cancel,
        )
        .await
    }

    /// Brings job `name` to `targets` finished trials per task (a task absent from it gets
    /// none), running only what is missing: a comparison's job grows look by look. `tasks` is
    /// every task the job may ever hold (part of the job's identity); the summary covers the
    /// whole job. `first_attempt` is where each task's attempt indices start in this job (the
    /// trial cache's key): the attempts its tree already has in other jobs.
    #[allow(clippy::too_many_arguments)]
    pub async fn evaluate_to(
        &self,
        name: &str,
        harness_dir: &Path,
        commit: &str,
        tasks: &BTreeSet<String>,
        targets: &BTreeMap<String, u32>,
        first_attempt: BTreeMap<String, u32>,
        cancel: CancellationToken,
    ) -> Result<EvalSummary, String> {
        self.run(
            name,
            harness_dir,
            commit,
            tasks,
            0,
            targets.clone(),
            first_attempt,
            cancel,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        name: &str,
        harness_dir: &Path,
        commit: &str,
        tasks: &BTreeSet<String>,
        attempts: u32,
        task_attempts: BTreeMap<String, u32>,
        first_attempt: BTreeMap<String, u32>,
        cancel: CancellationToken,
    ) -> Result<EvalSummary, String> {
        let cache = match &self.cache {
            None => None,
            Some(c) => Some(autoagent_eval::JobCache {
                cache: c.clone(),
                harness_tree: autoagent_eval::tree_hash(harness_dir).map_err(|e| e.to_string())?,
                model_key: model_key(&self.model),
                first_attempt,
            }),
        };
        let harness = Harness::load(harness_dir).map_err(|e| e.to_string())?;
        let agent = Arc::new(HarnessAgent::new(
            Arc::new(harness),
            self.model.clone(),
            self.env.clone(),
        ));
        let config = JobConfig {
            job_name: name.to_owned(),
            jobs_dir: self.jobs_dir.clone(),
            path: self.tasks_dir.clone(),
            agent: "harness".to_owned(),
            model: Some(self.model.model.clone()),
            agent_kwargs: BTreeMap::from([("harness_commit".to_owned(), commit.to_owned())]),
            n_attempts: attempts,
            max_retries: self.max_retries,
            include: tasks.iter().map(|t| literal_glob(t)).collect(),
            exclude: Vec::new(),
            sandbox: self.backend.kind().to_owned(),
            force_build: false,
            timeout_multiplier: self.timeout_multiplier,
            disable_verification: false,
            n_concurrent: self.concurrency,
            task_attempts,
            cache,
        };
        // Infrastructure failures that outlived the trial's own retries: the trial is removed
        // and the job resumed, twice at most, so an outage does not become a score.
        let mut outcome = None;
        // Spend of trials removed for a rerun is still spend.
        let mut removed_cost: Option<f64> = Some(0.0);
        for round in 0..3 {
            let o = run_job(
                &config,
                self.backend.clone(),
                agent.clone(),
                self.observer.clone(),
                cancel.clone(),
            )
            .await
            .map_err(|e| e.to_string())?;
            if o.cancelled {
                return Err("cancelled".to_owned());
            }
            let infra: Vec<&TrialResult> = o
                .trials
                .iter()
                .filter(|t| t.is_infrastructure_error())
                .collect();
            if infra.is_empty() || round == 2 {
                outcome = Some(o);
                break;
            }
            for t in infra {
                if let Some(r) = &t.agent_result {
                    removed_cost = cost::add(removed_cost, r.cost_usd);
                }
                let _ = std::fs::remove_dir_all(o.job_dir.join(&t.trial_name));
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(5 * (round + 1))) => {}
                () = cancel.cancelled() => return Err("cancelled".to_owned()),
            }
        }
        let Some(o) = outcome else {
            return Err("evaluation did not finish".to_owned());
        };
        let mut per_task: BTreeMap<String, (u32, u32)> =
            tasks.iter().map(|t| (t.clone(), (0, 0))).collect();
        let (mut passed_n, mut trials, mut reward_sum, mut infra) = (0u32, 0u32, 0.0, 0u32);
        let mut suspect = Vec::new();
        // Trials whose agent never ran cost nothing; one that ran without a price is unknown.
        let cost = cost::add(
            removed_cost,
            cost::sum(
                o.trials
                    .iter()
                    .filter_map(|t| t.agent_result.as_ref())
                    .map(|r| r.cost_usd),
            ),
        );
        for t in &o.trials {
            if t.is_infrastructure_error() {
                infra += 1;
                continue;
            }
            trials += 1;
            reward_sum += score(t);
            if t.is_suspect() {
                suspect.push(t.trial_name.clone());
            }
            let e = per_task.entry(t.task_name.clone()).or_default();
            e.1 += 1;
            if passed(t) {
                passed_n += 1;
                e.0 += 1;
            }
        }
        // An evaluation that infrastructure failures hollowed out is no measurement: the loop
        // stops (and resumes later) rather than keep or discard on it.
        if trials == 0 || f64::from(infra) > 0.1 * f64::from(trials + infra) {
            let first = o
                .trials
                .iter()
                .find_map(|t| {
                    t.exception_info
                        .as_ref()
                        .filter(|e| e.exception_type.is_infrastructure())
                })
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.exception_type,
                        e.exception_message.lines().next().unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            return Err(format!(
                "{infra} of {} trials failed for infrastructure reasons after retries (first: {first}); fix the cause and run again to resume",
                trials + infra
            ));
        }
        Ok(EvalSummary {
            job_dir: o.job_dir,
            passed: passed_n,
            trials,
            avg_score: if trials == 0 {
                0.0
            } else {
                reward_sum / f64::from(trials)
            },
            task_scores: per_task.into_iter().map(|(t, (p, n))| (t, p, n)).collect(),
            cost_usd: cost,
            infra_errors: infra,
            suspect,
        })
    }
}
