//! `lock.json`: what a job and each of its trials resolved to (Harbor's `JobLock` schema 3 and
//! `TrialLock` schema 2), so a run can be replayed on the same inputs: each task's content
//! digest (Harbor's, bit for bit), its origin (local dir, or git repository and commit), the
//! agent and its settings, the environment and verifier settings, the retry policy.

use std::collections::BTreeMap;
use std::path::Path;

use autoagent_harbor::Task;
use serde_json::{Value, json};

use crate::job::JobConfig;

/// Harbor's default `exclude_exceptions`: task outcomes, never retried.
const EXCLUDED: &[&str] = &[
    "AgentTimeoutError",
    "VerifierTimeoutError",
    "RewardFileNotFoundError",
    "RewardFileEmptyError",
    "VerifierOutputParseError",
    "ApiUsageLimitError",
    "AgentSafetyRefusalError",
    "AgentAuthenticationError",
    "ModelNotFoundError",
    "UnsupportedModelParametersError",
];

/// Each task's lock digest (`sha256:` + Harbor's content hash), by task name: hashed once per
/// job, not once per trial.
pub fn task_digests<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> BTreeMap<String, String> {
    tasks
        .into_iter()
        .map(|t| {
            (
                t.name.clone(),
                format!(
                    "sha256:{}",
                    autoagent_harbor::dirhash::content_digest(&t.dir)
                ),
            )
        })
        .collect()
}

/// One trial's lock; `digest` is the task's entry of [`task_digests`].
pub fn trial_lock(config: &JobConfig, task: &Task, source: Option<&str>, digest: &str) -> Value {
    let (kind, path, git_url, commit) = match &task.origin {
        Some(o) if o.git_url.is_some() => (
            "git",
            o.path.display().to_string(),
            o.git_url.clone(),
            o.git_commit_id.clone(),
        ),
        _ => ("local", task.dir.display().to_string(), None, None),
    };
    json!({
        "schema_version": 2,
        "task": {
            "name": task.name,
            "version": null,
            "type": kind,
            "digest": digest,
            "source": source,
            "path": path,
            "git_url": git_url,
            "git_commit_id": commit,
        },
        "install_only": false,
        "timeout_multiplier": config.timeout_multiplier,
        "agent": {
            "name": config.agent,
            "model_name": config.model,
            "kwargs": config.agent_kwargs,
        },
        "environment": {
            "type": config.sandbox,
            "force_build": config.force_build,
            "delete": true,
        },
        "verifier": {
            "disable": config.disable_verification,
            "environment_mode": "shared",
        },
    })
}

/// The job's lock: one trial lock per planned trial (finished, resumed or to run).
pub fn job_lock(
    config: &JobConfig,
    trials: &[&Task],
    source: Option<&str>,
    digests: &BTreeMap<String, String>,
) -> Value {
    json!({
        "schema_version": 3,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "harbor": { "version": null, "git_commit_hash": null, "is_editable": null },
        "autoagent": { "version": env!("CARGO_PKG_VERSION") },
        "n_concurrent_trials": config.n_concurrent,
        "retry": {
            "max_retries": config.max_retries,
            "include_exceptions": null,
            "exclude_exceptions": EXCLUDED,
        },
        "trials": trials
            .iter()
            .map(|t| {
                let digest = digests.get(&t.name).map_or("", String::as_str);
                trial_lock(config, t, source, digest)
            })
            .collect::<Vec<_>>(),
    })
}

/// Writes `value` as `dir/lock.json` (atomically: a temp file, then a rename).
pub fn write(dir: &Path, value: &Value) -> std::io::Result<()> {
    let tmp = dir.join("lock.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value).unwrap_or_default())?;
    std::fs::rename(tmp, dir.join("lock.json"))
}
