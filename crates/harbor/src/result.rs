//! Trial and job `result.json`, with Harbor's field names (`models/trial/result.py`,
//! `models/job/result.py`), and the job metrics of spec §8.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::exception::ExceptionType;

/// Reward values keep their JSON type: `3` stays an integer, `1.0` a float.
pub type Rewards = BTreeMap<String, serde_json::Number>;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingInfo {
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TimingInfo {
    pub fn start() -> Self {
        Self {
            started_at: Some(Utc::now()),
            finished_at: None,
        }
    }
    pub fn finish(&mut self) {
        self.finished_at = Some(Utc::now());
    }
    pub fn seconds(&self) -> Option<f64> {
        Some((self.finished_at? - self.started_at?).as_seconds_f64())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: String,
    pub version: String,
    pub model_info: Option<ModelInfo>,
}

/// Harbor's `AgentContext`: what the agent reports about its run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    pub n_input_tokens: Option<u64>,
    pub n_cache_tokens: Option<u64>,
    pub n_output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub model_usage: Option<serde_json::Value>,
    pub rollout_details: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifierResult {
    pub rewards: Option<Rewards>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub exception_type: ExceptionType,
    pub exception_message: String,
    pub exception_traceback: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskId {
    pub path: String,
    /// A registry task's repository and commit (Harbor's `GitTaskId`); absent for local tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit_id: Option<String>,
}

/// One trial's `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub id: String,
    pub task_name: String,
    pub trial_name: String,
    pub trial_uri: String,
    pub task_id: TaskId,
    pub source: Option<String>,
    pub task_checksum: String,
    pub config: serde_json::Value,
    pub agent_info: AgentInfo,
    pub agent_result: Option<AgentResult>,
    pub verifier_result: Option<VerifierResult>,
    /// `shared` or `separate`; `null` for a multi-step trial (Harbor resolves it per step and
    /// does not record it).
    pub verifier_environment_mode: Option<String>,
    pub exception_info: Option<ExceptionInfo>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub environment_setup: Option<TimingInfo>,
    pub agent_setup: Option<TimingInfo>,
    pub agent_execution: Option<TimingInfo>,
    pub verifier: Option<TimingInfo>,
    /// One entry per step that ran, for a multi-step trial; `null` otherwise.
    pub step_results: Option<Vec<StepResult>>,
    /// Not Harbor's: set on a trial restored from autoagent's trial cache, to the trial dir
    /// whose measurement it copies. Absent (and not written) for a trial that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_from: Option<String>,
    /// Not Harbor's: what the original run of a cached trial cost (`agent_result.cost_usd` of
    /// the copy is 0: a hit is not paid again). Absent when the trial ran, or when the
    /// original cost was unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_cost_usd: Option<f64>,
    /// Not Harbor's: the trial's attempt index within its task, recorded only by jobs that use
    /// the trial cache (it is part of the cache key). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_index: Option<u32>,
    /// Not Harbor's: [`Integrity::Suspect`] when, during the agent phase, the agent touched
    /// what the verifier reads or runs (its log dir, `/tests`, the interpreters and test
    /// runners on PATH, copies of the task's tests). Absent for a trial with no such action,
    /// so a normal `result.json` keeps Harbor's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
    /// Not Harbor's: what made the trial suspect, one line per action (the path and what
    /// changed). Absent when `integrity` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity_evidence: Option<Vec<String>>,
}

/// One step of a multi-step trial (Harbor's `StepResult`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub step_name: String,
    #[serde(default)]
    pub agent_result: Option<AgentResult>,
    #[serde(default)]
    pub verifier_result: Option<VerifierResult>,
    #[serde(default)]
    pub exception_info: Option<ExceptionInfo>,
    #[serde(default)]
    pub agent_execution: Option<TimingInfo>,
    #[serde(default)]
    pub verifier: Option<TimingInfo>,
}

impl StepResult {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            step_name: name.into(),
            agent_result: None,
            verifier_result: None,
            exception_info: None,
            agent_execution: None,
            verifier: None,
        }
    }
}

impl AgentResult {
    /// The sum of several runs' counts (the steps of a multi-step trial): a count is known
    /// when every run knows it.
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a AgentResult> + Clone) -> AgentResult {
        fn add<T: std::ops::Add<Output = T> + Copy>(
            values: impl Iterator<Item = Option<T>>,
        ) -> Option<T> {
            let mut total: Option<T> = None;
            for v in values {
                let v = v?;
                total = Some(total.map_or(v, |t| t + v));
            }
            total
        }
        AgentResult {
            n_input_tokens: add(parts.clone().into_iter().map(|a| a.n_input_tokens)),
            n_cache_tokens: add(parts.clone().into_iter().map(|a| a.n_cache_tokens)),
            n_output_tokens: add(parts.clone().into_iter().map(|a| a.n_output_tokens)),
            cost_usd: add(parts.into_iter().map(|a| a.cost_usd)),
            model_usage: None,
            rollout_details: None,
            metadata: None,
        }
    }
}

/// The verifier-integrity verdict of a trial (`"integrity"` in `result.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Integrity {
    /// The agent touched the verifier's ground: its reward may not measure the task.
    Suspect,
}

impl TrialResult {
    /// The trial's rewards, when the verifier produced them.
    pub fn rewards(&self) -> Option<&Rewards> {
        self.verifier_result.as_ref()?.rewards.as_ref()
    }
    /// The single reward value when there is exactly one key (the usual `reward`).
    pub fn reward(&self) -> Option<f64> {
        let r = self.rewards()?;
        if r.len() == 1 {
            r.values().next()?.as_f64()
        } else {
            r.get("reward").and_then(serde_json::Number::as_f64)
        }
    }
    /// The trial's exception type, when it has one.
    pub fn exception(&self) -> Option<&ExceptionType> {
        self.exception_info.as_ref().map(|e| &e.exception_type)
    }
    /// Its Harbor name.
    pub fn exception_type(&self) -> Option<&str> {
        self.exception().map(ExceptionType::as_str)
    }
    /// Whether the trial failed for a reason of the infrastructure (never read as a score).
    pub fn is_infrastructure_error(&self) -> bool {
        self.exception()
            .is_some_and(ExceptionType::is_infrastructure)
    }
    /// Whether the trial was restored from the trial cache instead of run.
    pub fn is_cached(&self) -> bool {
        self.cached_from.is_some()
    }
    /// Whether the agent touched what the verifier reads or runs ([`Integrity::Suspect`]).
    pub fn is_suspect(&self) -> bool {
        self.integrity == Some(Integrity::Suspect)
    }
    /// What made the trial suspect (empty when it is not).
    pub fn integrity_evidence(&self) -> &[String] {
        self.integrity_evidence.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalStats {
    pub n_trials: u64,
    pub n_errors: u64,
    pub metrics: Vec<BTreeMap<String, f64>>,
    pub pass_at_k: BTreeMap<String, f64>,
    pub reward_stats: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    pub exception_stats: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStats {
    pub n_completed_trials: u64,
    pub n_errored_trials: u64,
    pub n_running_trials: u64,
    pub n_pending_trials: u64,
    pub n_cancelled_trials: u64,
    pub n_retries: u64,
    pub evals: BTreeMap<String, EvalStats>,
    pub n_input_tokens: Option<u64>,
    pub n_cache_tokens: Option<u64>,
    pub n_output_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// Not Harbor's: how many of the completed trials were restored from the trial cache.
    /// Omitted when none were, so a job without the cache writes Harbor's shape.
    #[serde(default, skip_serializing_if = "is_none_or_zero")]
    pub n_cached_trials: Option<u64>,
}

fn is_none_or_zero(n: &Option<u64>) -> bool {
    n.is_none_or(|n| n == 0)
}

/// The job's `result.json` (without `trial_results`, as Harbor writes it).
/// Job-level timestamps are naive local time, as Harbor's `datetime.now()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    pub id: String,
    pub started_at: NaiveDateTime,
    pub updated_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub n_total_trials: u64,
    pub stats: JobStats,
}

/// The evals key: `agent[__model]__dataset`, the dataset being `adhoc` for a single task.
pub fn evals_key(agent: &str, model: Option<&str>, source: Option<&str>) -> String {
    let dataset = source.unwrap_or("adhoc");
    match model {
        Some(m) => format!("{agent}__{m}__{dataset}"),
        None => format!("{agent}__{dataset}"),
    }
}

/// Python's `str()` of a reward value, used as the `reward_stats` key ("1.0", "0.5", "3").
pub fn python_number_str(n: &serde_json::Number) -> String {
    if n.is_f64() {
        let v = n.as_f64().unwrap_or(f64::NAN);
        if v.fract() == 0.0 && v.abs() < 1e16 {
            format!("{v:.1}")
        } else {
            format!("{v}")
        }
    } else {
        n.to_string()
    }
}

/// Harbor's `mean` metric over one entry per trial (`None` = no verifier result).
/// With at most one reward key each trial's only value counts (None as 0), giving `{"mean": x}`;
/// with several keys, the mean per key (missing or None as 0).
pub fn mean_metric(rewards: &[Option<&Rewards>]) -> BTreeMap<String, f64> {
    let mut keys: Vec<&String> = rewards.iter().flatten().flat_map(|r| r.keys()).collect();
    keys.sort();
    keys.dedup();
    let n = rewards.len().max(1) as f64;
    let mut out = BTreeMap::new();
    if keys.len() <= 1 {
        let sum: f64 = rewards
            .iter()
            .map(|r| {
                r.and_then(|r| r.values().next())
                    .and_then(serde_json::Number::as_f64)
                    .unwrap_or(0.0)
            })
            .sum();
        out.insert(
            "mean".to_owned(),
            if rewards.is_empty() { 0.0 } else { sum / n },
        );
    } else {
        for k in keys {
            let sum: f64 = rewards
                .iter()
                .map(|r| {
                    r.and_then(|r| r.get(k))
                        .and_then(serde_json::Number::as_f64)
                        .unwrap_or(0.0)
                })
                .sum();
            out.insert(k.clone(), sum / n);
        }
    }
    out
}

/// Harbor's pass@k (§8): only when every trial has a single reward of exactly 0 or 1
/// (None counts as 0). `per_task` holds, per task, the 0/1 outcomes of its trials.
/// Returns an empty map when pass@k does not apply.
pub fn pass_at_k(rewards: &[(String, Option<&Rewards>)]) -> BTreeMap<String, f64> {
    let mut per_task: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (task, r) in rewards {
        let value = match r {
            None => 0.0,
            Some(r) if r.len() == 1 => match r.values().next().and_then(serde_json::Number::as_f64)
            {
                Some(v) => v,
                None => return BTreeMap::new(),
            },
            Some(_) => return BTreeMap::new(),
        };
        if value != 0.0 && value != 1.0 {
            return BTreeMap::new();
        }
        let e = per_task.entry(task.as_str()).or_default();
        e.0 += 1;
        if value == 1.0 {
            e.1 += 1;
        }
    }
    let Some(n) = per_task.values().map(|(n, _)| *n).min() else {
        return BTreeMap::new();
    };
    let mut ks: Vec<u64> = Vec::new();
    let mut k = 2;
    while k <= n {
        ks.push(k);
        k *= 2;
    }
    let mut k = 5;
    while k <= n {
        ks.push(k);
        k += 5;
    }
    ks.sort_unstable();
    ks.dedup();
    let mut out = BTreeMap::new();
    for k in ks {
        let total: f64 = per_task
            .values()
            .map(|&(tn, c)| pass_at_k_estimator(tn, c, k))
            .sum();
        out.insert(k.to_string(), total / per_task.len() as f64);
    }
    out
}

/// The unbiased estimator `1 − Π_{i<k} (n−c−i)/(n−i)`.
pub fn pass_at_k_estimator(n: u64, c: u64, k: u64) -> f64 {
    if n.saturating_sub(c) < k {
        return 1.0;
    }
    let mut prod = 1.0;
    for i in 0..k {
        prod *= (n - c - i) as f64 / (n - i) as f64;
    }
    1.0 - prod
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn r(v: serde_json::Value) -> Rewards {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn mean_counts_none_as_zero() {
        // The measured Harbor case: 1, 1, 0.5, 0 (timeout), None (no reward file) → 0.5.
        let a = r(serde_json::json!({"reward": 1.0}));
        let b = r(serde_json::json!({"reward": 1}));
        let c = r(serde_json::json!({"reward": 0.5}));
        let d = r(serde_json::json!({"reward": 0.0}));
        let m = mean_metric(&[Some(&a), Some(&b), Some(&c), Some(&d), None]);
        assert_eq!(m, BTreeMap::from([("mean".to_owned(), 0.5)]));
    }

    #[test]
    fn mean_with_several_keys_is_per_key() {
        let a = r(serde_json::json!({"tests_passed": 3, "accuracy": 0.75}));
        let m = mean_metric(&[Some(&a), None]);
        assert_eq!(m["tests_passed"], 1.5);
        assert_eq!(m["accuracy"], 0.375);
    }

    #[test]
    fn pass_at_k_all_ones_with_three_attempts() {
        let one = r(serde_json::json!({"reward": 1.0}));
        let rows: Vec<_> = ["a", "a", "a", "b", "b", "b"]
            .iter()
            .map(|t| (t.to_string(), Some(&one)))
            .collect();
        assert_eq!(pass_at_k(&rows), BTreeMap::from([("2".to_owned(), 1.0)]));
    }

    #[test]
    fn pass_at_k_estimator_matches_closed_form() {
        // n=3, c=1, k=2: 1 - (2/3)(1/2) = 2/3.
        assert!((pass_at_k_estimator(3, 1, 2) - 2.0 / 3.0).abs() < 1e-12);
        let half = r(serde_json::json!({"reward": 0.5}));
        assert!(pass_at_k(&[("a".into(), Some(&half)), ("a".into(), Some(&half))]).is_empty());
    }

    #[test]
    fn integrity_keys_are_written_only_for_a_suspect_trial() {
        let plain = serde_json::json!({
            "id": "x", "task_name": "t", "trial_name": "t__1", "trial_uri": "file:///t",
            "task_id": {"path": "/t"}, "source": null, "task_checksum": "c", "config": {},
            "agent_info": {"name": "a", "version": "1", "model_info": null},
            "agent_result": null, "verifier_result": null, "verifier_environment_mode": "shared",
            "exception_info": null, "started_at": null, "finished_at": null,
            "environment_setup": null, "agent_setup": null, "agent_execution": null,
            "verifier": null, "step_results": null
        });
        let mut t: TrialResult = serde_json::from_value(plain.clone()).unwrap();
        assert!(!t.is_suspect());
        assert!(t.integrity_evidence().is_empty());
        assert_eq!(serde_json::to_value(&t).unwrap(), plain, "Harbor's shape");
        t.integrity = Some(Integrity::Suspect);
        t.integrity_evidence = Some(vec!["wrote /logs/verifier/reward.txt".into()]);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["integrity"], "suspect");
        assert_eq!(
            v["integrity_evidence"],
            serde_json::json!(["wrote /logs/verifier/reward.txt"])
        );
        let back: TrialResult = serde_json::from_value(v).unwrap();
        assert!(back.is_suspect());
        assert_eq!(
            back.integrity_evidence(),
            ["wrote /logs/verifier/reward.txt"]
        );
    }

    #[test]
    fn python_str_of_rewards() {
        let v: serde_json::Value = serde_json::json!([1.0, 0.5, 3, 1e-3]);
        let s: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| python_number_str(x.as_number().unwrap()))
            .collect();
        assert_eq!(s, ["1.0", "0.5", "3", "0.001"]);
    }
}
