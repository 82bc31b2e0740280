//! `-a harness`: the task agent on a real task in Docker, driven by the scripted model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use autoagent_agent::Harness;
use autoagent_eval::HarnessAgent;
use autoagent_llm::{EnvSource, ModelConfig};
use serde_json::Value;

use super::support::{by_task, config, dump, examples, reward, run};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn agent(harness: &str, script: &str) -> Arc<HarnessAgent> {
    let h = Harness::load(&fixture(harness)).unwrap_or_else(|e| panic!("{e}"));
    let cfg = ModelConfig {
        model: format!("scripted/{}", fixture(script).display()),
        ..ModelConfig::default()
    };
    Arc::new(HarnessAgent::new(
        Arc::new(h),
        cfg,
        EnvSource::from_vars(Vec::<(String, String)>::new()),
    ))
}

fn trajectory(job: &Path, trial: &str) -> Value {
    let p = job.join(trial).join("agent/trajectory.json");
    serde_json::from_str(
        &std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", p.display(), dump(job))),
    )
    .unwrap()
}

#[tokio::test]
async fn script_tool_subagent_and_verification_pass_a_real_task() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "harness", "harness");
    cfg.path = examples().join("hello-file");
    cfg.model = Some("scripted".into());
    let o = run(
        &cfg,
        Arc::new(docker),
        agent("harness-e2e", "script-e2e.toml"),
    )
    .await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "hello-file");
    assert_eq!(t.exception_info, None, "{d}");
    assert_eq!(reward(t), Some(1.0), "{d}");
    assert_eq!(t.agent_info.name, "harness");
    let meta = t
        .agent_result
        .as_ref()
        .and_then(|r| r.metadata.clone())
        .unwrap();
    assert_eq!(meta["end"], "finished", "{d}");
    assert_eq!(meta["llm_calls"], 7, "every scripted turn was used\n{d}");

    let traj = trajectory(&o.job_dir, &t.trial_name);
    let steps = traj["steps"].as_array().unwrap();
    assert_eq!(steps[0]["source"], "system");
    assert_eq!(steps[1]["source"], "user");
    // The script tool ran in the sandbox with its JSON arguments.
    let first_obs = &steps[2]["observation"]["results"][0];
    assert!(
        first_obs["content"]
            .as_str()
            .unwrap()
            .contains("wrote 14 bytes"),
        "{traj:#}"
    );
    // The sub-agent's run is embedded and referenced.
    let subs = traj["subagent_trajectories"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{traj:#}");
    assert_eq!(subs[0]["agent"]["name"], "autoagent/checker");
    let sub_id = subs[0]["trajectory_id"].as_str().unwrap();
    let referenced = steps.iter().any(|s| {
        s["observation"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["subagent_trajectory_ref"][0]["trajectory_id"] == sub_id)
    });
    assert!(referenced, "{traj:#}");
    // The verification phase: a user step with the verify prompt, then the bonus turns.
    let verify = steps
        .iter()
        .position(|s| s["source"] == "user" && s["extra"]["phase"] == "verification")
        .unwrap_or_else(|| panic!("{traj:#}"));
    assert!(
        steps[verify + 1]["tool_calls"][0]["arguments"]["command"]
            .as_str()
            .unwrap()
            .contains("VERIFIED")
    );
    assert_eq!(traj["final_metrics"]["total_steps"], steps.len());
}

#[tokio::test]
async fn a_broken_tool_is_an_error_result_and_the_agent_carries_on() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "broken", "harness");
    cfg.path = examples().join("hello-file");
    let o = run(
        &cfg,
        Arc::new(docker),
        agent("harness-broken-tool", "script-broken-tool.toml"),
    )
    .await;
    let d = dump(&o.job_dir);
    let t = by_task(&o, "hello-file");
    assert_eq!(t.exception_info, None, "{d}");
    assert_eq!(reward(t), Some(1.0), "{d}");
    let traj = trajectory(&o.job_dir, &t.trial_name);
    let obs = &traj["steps"][2]["observation"]["results"][0];
    assert_eq!(obs["extra"]["is_error"], true, "{traj:#}");
    assert!(
        obs["content"]
            .as_str()
            .unwrap()
            .contains("RuntimeError: greeting service unavailable"),
        "{traj:#}"
    );
}

#[tokio::test]
async fn a_script_that_goes_wrong_fails_loudly_not_as_a_score() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let jobs = tempfile::tempdir().unwrap();
    let mut cfg = config(jobs.path(), "mismatch", "harness");
    cfg.path = examples().join("hello-file");
    // The e2e script against the broken tool: turn 2's expectation does not hold.
    let o = run(
        &cfg,
        Arc::new(docker),
        agent("harness-broken-tool", "script-e2e.toml"),
    )
    .await;
    let t = by_task(&o, "hello-file");
    let e = t
        .exception_info
        .as_ref()
        .unwrap_or_else(|| panic!("{}", dump(&o.job_dir)));
    assert_eq!(
        e.exception_type,
        autoagent_harbor::ExceptionType::ScriptedModelError
    );
    assert!(t.is_infrastructure_error(), "never scored");
    assert!(
        e.exception_message.contains("turn 2"),
        "{}",
        e.exception_message
    );
    // The trajectory up to the failure is on disk.
    let traj = trajectory(&o.job_dir, &t.trial_name);
    assert!(traj["steps"].as_array().unwrap().len() >= 3);
}
