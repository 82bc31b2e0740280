//! `autoagent cache list` and `autoagent cache prune` on a workspace's trial cache, filled
//! through the eval crate's API with finished trials.

use std::path::Path;

use autoagent_eval::{CacheKey, TrialCache};
use autoagent_harbor::{TrialDir, TrialResult};

use super::support::autoagent;

fn trial(task: &str, name: &str, cost: Option<f64>, reward: f64) -> TrialResult {
    serde_json::from_value(serde_json::json!({
        "id": name, "task_name": task, "trial_name": name, "trial_uri": "file:///x",
        "task_id": {"path": format!("tasks/{task}")}, "source": "tasks", "task_checksum": "0",
        "config": {}, "agent_info": {"name": "harness", "version": "1", "model_info": null},
        "agent_result": {"n_input_tokens": 1200, "n_cache_tokens": 0, "n_output_tokens": 300,
            "cost_usd": cost, "model_usage": null, "rollout_details": null, "metadata": null},
        "verifier_result": {"rewards": {"reward": reward}},
        "verifier_environment_mode": "shared", "exception_info": null,
        "started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:01:00Z",
        "environment_setup": null, "agent_setup": null, "agent_execution": null,
        "verifier": null, "step_results": null
    }))
    .unwrap()
}

/// Writes a finished trial dir under `jobs/` and stores it.
fn store(cache: &TrialCache, ws: &Path, key: &CacheKey, result: &TrialResult) {
    let dir = ws.join("jobs/exp-1").join(&result.trial_name);
    std::fs::create_dir_all(dir.join("agent")).unwrap();
    std::fs::create_dir_all(dir.join("verifier")).unwrap();
    std::fs::write(dir.join("agent/trajectory.json"), "{\"steps\": []}\n").unwrap();
    std::fs::write(dir.join("verifier/reward.txt"), "1\n").unwrap();
    TrialDir::new(&dir).write_result(result).unwrap();
    assert!(cache.store(key, &dir, result).unwrap());
}

fn list(ws: &Path) -> String {
    let run = autoagent(&["cache", "list", "--workspace", ws.to_str().unwrap()], ws);
    assert!(run.out.status.success(), "{}", run.context());
    run.stdout()
}

#[test]
fn list_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let run = autoagent(&["init", ws.to_str().unwrap()], dir.path());
    assert!(run.out.status.success(), "{}", run.context());
    // A workspace whose cache does not exist yet: empty, and nothing created.
    assert!(list(&ws).ends_with(": empty\n"), "{}", list(&ws));
    assert!(!ws.join(".autoagent/cache").exists());

    let cache = TrialCache::open(&ws.join(".autoagent/cache")).unwrap();
    let key = |attempt: u32, harness: &str| CacheKey {
        harness_tree: harness.to_owned(),
        model_key: "anthropic/claude-sonnet-4-5 base_url= temperature=0".to_owned(),
        task_name: "hello-file".to_owned(),
        task_checksum: "6c1f".to_owned(),
        image_id: "docker:autoagent-env:0123456789abcdef".to_owned(),
        attempt,
    };
    let a = "3b7e9f00c2d14a6b8e5f7a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e";
    let b = "9d0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d";
    store(
        &cache,
        &ws,
        &key(0, a),
        &trial("hello-file", "hello-file__AAAAAAA", Some(0.0123), 1.0),
    );
    store(
        &cache,
        &ws,
        &key(1, a),
        &trial("hello-file", "hello-file__BBBBBBB", None, 0.0),
    );
    store(
        &cache,
        &ws,
        &key(0, b),
        &trial("hello-file", "hello-file__CCCCCCC", Some(0.5), 1.0),
    );
    // What a crash or a hand edit leaves: an entry without its entry.json.
    std::fs::create_dir_all(ws.join(".autoagent/cache/entries/0000half/trial")).unwrap();

    let ws_str = ws.display().to_string();
    let filters = vec![
        (ws_str.as_str(), "[WS]"),
        (r"\d+(\.\d)? (B|KiB|MiB)\b", "[SIZE]"),
        (r"\b\d+[smhd]\b", "[AGE]"),
    ];
    let listed = list(&ws);
    insta::with_settings!({ filters => filters.clone() }, {
        insta::assert_snapshot!("cache_list", listed);
    });

    // Prune without flags: only what is not an entry.
    let run = autoagent(&["cache", "prune", "--workspace", &ws_str], &ws);
    assert!(run.out.status.success(), "{}", run.context());
    assert!(
        run.stdout()
            .starts_with("removed 0 entries and 1 unusable dir(s)"),
        "{}",
        run.context()
    );
    assert!(run.stdout().contains("kept 3 entries"), "{}", run.context());
    let run = autoagent(
        &[
            "cache",
            "prune",
            "--older-than",
            "7d",
            "--workspace",
            &ws_str,
        ],
        &ws,
    );
    assert!(run.stdout().contains("kept 3 entries"), "{}", run.context());
    let run = autoagent(
        &[
            "cache",
            "prune",
            "--older-than",
            "7",
            "--workspace",
            &ws_str,
        ],
        &ws,
    );
    assert!(!run.out.status.success(), "{}", run.context());
    assert!(run.stderr().contains("add a unit"), "{}", run.context());
    let run = autoagent(&["cache", "prune", "--all", "--workspace", &ws_str], &ws);
    assert!(
        run.stdout().starts_with("removed 3 entries"),
        "{}",
        run.context()
    );
    insta::with_settings!({ filters => filters }, {
        insta::assert_snapshot!("cache_list_after_prune", list(&ws));
    });
}
