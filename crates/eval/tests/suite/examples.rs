//! The example tasks, run for real with the oracle and nop agents.

use std::collections::BTreeSet;
use std::sync::Arc;

use autoagent_eval::{NopAgent, OracleAgent};
use autoagent_sandbox::local::{Isolation, LocalBackend};
use pretty_assertions::assert_eq;

use super::support::{by_task, config, dump, reward, run};

/// The top-level keys of Harbor 0.25's trial result.json.
const TRIAL_KEYS: &[&str] = &[
    "agent_execution",
    "agent_info",
    "agent_result",
    "agent_setup",
    "config",
    "environment_setup",
    "exception_info",
    "finished_at",
    "id",
    "source",
    "started_at",
    "step_results",
    "task_checksum",
    "task_id",
    "task_name",
    "trial_name",
    "trial_uri",
    "verifier",
    "verifier_environment_mode",
    "verifier_result",
];

#[tokio::test]
async fn oracle_on_the_examples() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "oracle", "oracle");
    cfg.max_retries = 1;
    let o = run(&cfg, Arc::new(docker), Arc::new(OracleAgent)).await;
    let d = dump(&o.job_dir);

    assert_eq!(reward(by_task(&o, "hello-file")), Some(1.0), "{d}");
    assert_eq!(by_task(&o, "hello-file").exception_info, None, "{d}");
    assert_eq!(
        reward(by_task(&o, "workdir")),
        Some(1.0),
        "the workdir task needs [environment].workdir\n{d}"
    );
    assert_eq!(reward(by_task(&o, "partial-credit")), Some(0.5), "{d}");

    let multi = by_task(&o, "multi-metric");
    let r = multi.rewards().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(r.get("reward").and_then(|v| v.as_f64()), Some(1.0), "{d}");
    assert_eq!(
        r.get("checks_passed").and_then(|v| v.as_u64()),
        Some(2),
        "integers stay integers\n{d}"
    );

    // The agent timed out; the verifier still ran and its reward counts.
    let timeout = by_task(&o, "agent-timeout");
    assert_eq!(timeout.exception_type(), Some("AgentTimeoutError"), "{d}");
    assert_eq!(reward(timeout), Some(0.0), "{d}");
    assert!(timeout.verifier.is_some(), "{d}");
    let agent_secs = timeout
        .agent_execution
        .as_ref()
        .and_then(|t| t.seconds())
        .unwrap();
    assert!(
        (2.9..10.0).contains(&agent_secs),
        "agent phase took {agent_secs}s\n{d}"
    );

    // No reward file: the verifier ran, verifier_result is null.
    let none = by_task(&o, "no-reward");
    assert_eq!(
        none.exception_type(),
        Some("RewardFileNotFoundError"),
        "{d}"
    );
    assert_eq!(none.verifier_result, None, "{d}");

    // The broken Dockerfile is an infrastructure error: retried once, then reported.
    let broken = by_task(&o, "broken-build");
    assert_eq!(broken.exception_type(), Some("RuntimeError"), "{d}");
    let msg = &broken.exception_info.as_ref().unwrap().exception_message;
    assert!(
        msg.contains("building image") && msg.contains("non-zero code: 7"),
        "{msg}"
    );
    assert!(
        broken.agent_execution.is_none() && broken.verifier.is_none(),
        "{d}"
    );
    assert!(broken.is_infrastructure_error(), "{d}");
    assert_eq!(o.result.stats.n_retries, 1, "{d}");

    // The invalid task is listed, named with its file and field, and the rest ran.
    assert_eq!(o.invalid_tasks.len(), 1);
    let bad = o.invalid_tasks[0].to_string();
    assert!(
        bad.contains("invalid-config")
            && bad.contains("task.toml")
            && bad.contains("agent.timeout_sec"),
        "{bad}"
    );
    // Multi-step tasks and a separate verifier (see tests/suite/steps.rs for their details).
    assert_eq!(reward(by_task(&o, "multi-step")), Some(1.0), "{d}");
    assert_eq!(
        by_task(&o, "multi-step")
            .step_results
            .as_ref()
            .map(Vec::len),
        Some(3),
        "{d}"
    );
    assert_eq!(reward(by_task(&o, "multi-step-final")), Some(1.0), "{d}");
    let separate = by_task(&o, "separate-verifier");
    assert_eq!(reward(separate), Some(1.0), "{d}");
    assert_eq!(
        separate.verifier_environment_mode.as_deref(),
        Some("separate"),
        "{d}"
    );
    assert_eq!(o.trials.len(), 10, "{d}");

    // Files of spec §7, with Harbor's names.
    for t in &o.trials {
        let dir = o.job_dir.join(&t.trial_name);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("result.json")).unwrap())
                .unwrap();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, TRIAL_KEYS.iter().copied().collect::<BTreeSet<_>>());
        assert!(dir.join("config.json").is_file() && dir.join("trial.log").is_file());
        assert_eq!(t.source.as_deref(), Some("tasks"));
        assert!(t.trial_name.starts_with(&format!("{}__", t.task_name)));
        assert_eq!(
            dir.join("exception.txt").is_file(),
            t.exception_info.is_some(),
            "{}",
            t.trial_name
        );
        if t.step_results.is_some() {
            assert!(
                dir.join("steps").is_dir() && !dir.join("agent").exists(),
                "{}",
                t.trial_name
            );
        } else if t.task_name != "broken-build" {
            assert!(dir.join("agent/oracle.txt").is_file(), "{}", t.trial_name);
            assert!(
                dir.join("verifier/test-stdout.txt").is_file(),
                "{}",
                t.trial_name
            );
            assert!(
                dir.join("artifacts/manifest.json").is_file(),
                "{}",
                t.trial_name
            );
        }
    }
    let stdout = std::fs::read_to_string(
        o.job_dir
            .join(&none.trial_name)
            .join("verifier/test-stdout.txt"),
    )
    .unwrap();
    assert_eq!(stdout, "verifier ran but wrote no reward\n");
    let hello = by_task(&o, "hello-file");
    assert_eq!(
        std::fs::read_to_string(
            o.job_dir
                .join(&hello.trial_name)
                .join("verifier/reward.txt")
        )
        .unwrap(),
        "1\n"
    );

    // Job result.json: Harbor's metrics (None counts 0; several keys → per-key means).
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.job_dir.join("result.json")).unwrap())
            .unwrap();
    assert!(job.get("trial_results").is_none());
    assert!(job["finished_at"].is_string());
    let ev = &job["stats"]["evals"]["oracle__tasks"];
    assert_eq!(ev["n_trials"], 8, "{ev}");
    assert_eq!(ev["n_errors"], 3, "{ev}");
    assert_eq!(
        ev["metrics"][0]["reward"].as_f64(),
        Some(6.5 / 10.0),
        "{ev}"
    );
    assert_eq!(
        ev["metrics"][0]["checks_passed"].as_f64(),
        Some(2.0 / 10.0),
        "{ev}"
    );
    assert_eq!(
        ev["reward_stats"]["reward"]["1.0"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "{ev}"
    );
    // `final` copies the last step's rewards as they were: an integer stays one (Harbor's
    // reward_stats key "1", not "1.0").
    assert_eq!(
        ev["reward_stats"]["reward"]["1"].as_array().map(Vec::len),
        Some(1),
        "{ev}"
    );
    assert_eq!(
        ev["exception_stats"]["AgentTimeoutError"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{ev}"
    );
    assert_eq!(job["stats"]["n_completed_trials"], 10);
    assert_eq!(job["stats"]["n_retries"], 1);
}

#[tokio::test]
async fn nop_fails_every_example() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "nop", "nop");
    cfg.exclude = vec!["broken-*".into()];
    let o = run(&cfg, Arc::new(docker), Arc::new(NopAgent)).await;
    let d = dump(&o.job_dir);
    for task in [
        "hello-file",
        "partial-credit",
        "agent-timeout",
        "workdir",
        "multi-metric",
        "multi-step",
        "multi-step-final",
        "separate-verifier",
    ] {
        let t = by_task(&o, task);
        assert_eq!(reward(t), Some(0.0), "{task}\n{d}");
        assert_eq!(t.exception_info, None, "{task}\n{d}");
    }
    assert_eq!(
        by_task(&o, "no-reward").exception_type(),
        Some("RewardFileNotFoundError")
    );
    assert!(
        o.trials.iter().all(|t| t.task_name != "broken-build"),
        "-x excludes"
    );
}

#[tokio::test]
async fn pass_at_k_with_three_attempts() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "k3", "oracle");
    cfg.include = vec!["hello-*".into(), "workdir".into()];
    cfg.n_attempts = 3;
    let o = run(&cfg, Arc::new(docker), Arc::new(OracleAgent)).await;
    assert_eq!(o.trials.len(), 6, "{}", dump(&o.job_dir));
    let names: BTreeSet<&str> = o.trials.iter().map(|t| t.trial_name.as_str()).collect();
    assert_eq!(names.len(), 6, "each attempt has its own trial dir");
    let ev = &o.result.stats.evals["oracle__tasks"];
    assert_eq!(ev.pass_at_k.get("2"), Some(&1.0));
    assert_eq!(ev.metrics[0].get("mean"), Some(&1.0));
}

#[tokio::test]
async fn local_bubblewrap_sandbox_runs_harbor_tasks() {
    if std::process::Command::new("bwrap")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("AUTOAGENT_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "CI installs bubblewrap"
        );
        return;
    }
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "local", "oracle");
    cfg.include = vec![
        "hello-file".into(),
        "workdir".into(),
        "agent-timeout".into(),
    ];
    cfg.sandbox = "local".into();
    let o = run(
        &cfg,
        Arc::new(LocalBackend::with_isolation(Isolation::Bubblewrap)),
        Arc::new(OracleAgent),
    )
    .await;
    let d = dump(&o.job_dir);
    assert_eq!(reward(by_task(&o, "hello-file")), Some(1.0), "{d}");
    assert_eq!(reward(by_task(&o, "workdir")), Some(1.0), "{d}");
    assert_eq!(
        by_task(&o, "agent-timeout").exception_type(),
        Some("AgentTimeoutError"),
        "{d}"
    );
    // The skipped Dockerfile step is said in the trial log.
    let log = std::fs::read_to_string(
        o.job_dir
            .join(&by_task(&o, "workdir").trial_name)
            .join("trial.log"),
    )
    .unwrap();
    assert!(log.contains("RUN mkdir -p /srv/project"), "{log}");
}
