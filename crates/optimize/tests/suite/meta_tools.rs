//! The meta-agent's tools: files only inside harness/, holdout tasks invisible everywhere.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use autoagent_agent::tools::{HostTool, ToolError};
use autoagent_eval::job::Silent;
use autoagent_harbor::Task;
use autoagent_optimize::ExperimentId;
use autoagent_optimize::evaluate::Evaluator;
use autoagent_optimize::meta::{MetaContext, first_message, tools};
use autoagent_optimize::split::TaskSplit;
use autoagent_sandbox::local::{Isolation, LocalBackend};
use autoagent_settings::Holdout;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::support::{examples, scripted};

const SECRET: &str = "HOLDOUT-ONLY-MARKER-93d1";

/// A result.json and trajectory for a trial of `task` in `job`.
fn fake_trial(job: &Path, task: &str, trial: &str, marker: &str) {
    let d = job.join(trial);
    std::fs::create_dir_all(d.join("agent")).unwrap();
    std::fs::create_dir_all(d.join("verifier")).unwrap();
    let r = json!({
        "id": "x", "task_name": task, "trial_name": trial, "trial_uri": "file:///x", "task_id": {"path": "/x"},
        "source": "tasks", "task_checksum": "0", "config": {}, "agent_info": {"name": "harness", "version": "0", "model_info": null},
        "agent_result": null, "verifier_result": {"rewards": {"reward": 0.0}}, "verifier_environment_mode": "shared",
        "exception_info": null, "started_at": null, "finished_at": null, "environment_setup": null, "agent_setup": null,
        "agent_execution": null, "verifier": null, "step_results": null
    });
    std::fs::write(d.join("result.json"), r.to_string()).unwrap();
    let t = json!({"schema_version": "ATIF-v1.8", "agent": {"name": "autoagent", "version": "0"}, "steps": [
        {"step_id": 1, "source": "user", "message": format!("do the task {marker}")},
        {"step_id": 2, "source": "agent", "message": format!("working on {marker}")}
    ]});
    std::fs::write(d.join("agent/trajectory.json"), t.to_string()).unwrap();
    std::fs::write(
        d.join("verifier/test-stdout.txt"),
        format!("verifier says {marker}\n"),
    )
    .unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    tools: Vec<Arc<dyn HostTool>>,
    ctx: Arc<MetaContext>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let harness = root.join("harness");
    super::support::copy_dir(&examples().join("harness"), &harness);
    let jobs = root.join("jobs");
    fake_trial(
        &jobs.join("exp-0000"),
        "hello-file",
        "hello-file__AAAAAAA",
        "train-marker",
    );
    fake_trial(
        &jobs.join("exp-0000-holdout"),
        "workdir",
        "workdir__BBBBBBB",
        SECRET,
    );
    // Even a holdout trial that sits in a train job (it never should) stays invisible.
    fake_trial(
        &jobs.join("exp-0000"),
        "workdir",
        "workdir__CCCCCCC",
        SECRET,
    );
    std::fs::write(
        root.join("results.tsv"),
        "commit\tavg_score\tpassed\ttask_scores\tcost_usd\tstatus\tdescription\tholdout_score\tharness_size\tmeta_cost_usd\ttask_cost_usd\tduration_s\tjob_dir\n\
         abc1234\t0.0\t0/1\thello-file=0/1\t\tkeep\tbaseline\t0.5\t100\t\t\t1.0\tjobs/exp-0000\n",
    )
    .unwrap();
    let evaluator = Arc::new(Evaluator {
        backend: Arc::new(LocalBackend::with_isolation(Isolation::None)),
        model: scripted(Path::new("/nonexistent.toml")),
        env: autoagent_llm::EnvSource::from_vars(Vec::<(String, String)>::new()),
        tasks_dir: examples().join("tasks"),
        jobs_dir: jobs.clone(),
        concurrency: 1,
        max_retries: 0,
        timeout_multiplier: 1.0,
        observer: Arc::new(Silent),
        cache: None,
    });
    // The tools are built from the train side of the split: the holdout task is not in it.
    let tasks = [
        Task::load(&examples().join("tasks/hello-file"), false).unwrap(),
        Task::load(&examples().join("tasks/workdir"), false).unwrap(),
    ];
    let split = TaskSplit::new(&tasks, &Holdout::Tasks(vec!["workdir".to_owned()]));
    assert_eq!(split.holdout, BTreeSet::from(["workdir".to_owned()]));
    let ctx = Arc::new(MetaContext {
        harness_dir: harness,
        jobs_dir: jobs,
        ledger_path: root.join("results.tsv"),
        train: split.train,
        evaluator,
        experiment: ExperimentId(1),
        spot_attempts: 1,
        flaky_prior: 0.3,
        cancel: CancellationToken::new(),
    });
    Fixture {
        _dir: dir,
        root,
        tools: tools(ctx.clone()),
        ctx,
    }
}

impl Fixture {
    async fn call(&self, name: &str, args: Value) -> Result<String, String> {
        let tool = self
            .tools
            .iter()
            .find(|t| t.spec().name == name)
            .unwrap_or_else(|| panic!("no tool {name}"));
        match tool.call(&args).await {
            Ok(o) if !o.is_error => Ok(o.content),
            Ok(o) => Err(o.content),
            Err(ToolError::RespondToModel(m)) => Err(m),
            Err(e) => panic!("fatal: {e}"),
        }
    }
}

#[tokio::test]
async fn file_tools_stay_inside_the_harness() {
    let f = fixture();
    std::fs::write(f.root.join("outside.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(f.root.join("outside.txt"), f.root.join("harness/link.txt"))
        .unwrap();
    std::os::unix::fs::symlink(&f.root, f.root.join("harness/updir")).unwrap();
    let abs = f.root.join("outside.txt").display().to_string();
    for (tool, base) in [
        ("read_file", json!({})),
        ("write_file", json!({"content": "x"})),
        (
            "edit_file",
            json!({"old_string": "secret", "new_string": "gone"}),
        ),
        ("list_files", json!({})),
    ] {
        for path in [
            "../outside.txt",
            abs.as_str(),
            "link.txt",
            "updir/outside.txt",
            "prompts/../../outside.txt",
            ".git/config",
        ] {
            let mut args = base.clone();
            args["path"] = json!(path);
            let r = f.call(tool, args).await;
            assert!(
                matches!(&r, Err(m) if m.starts_with("refused")),
                "{tool}({path}) was not refused: {r:?}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(f.root.join("outside.txt")).unwrap(),
        "secret"
    );
    // Inside, they work.
    assert!(
        f.call(
            "write_file",
            json!({"path": "prompts/new.md", "content": "hello"})
        )
        .await
        .is_ok()
    );
    assert_eq!(
        f.call("read_file", json!({"path": "prompts/new.md"}))
            .await
            .unwrap(),
        "hello"
    );
    assert!(
        f.call(
            "edit_file",
            json!({"path": "prompts/new.md", "old_string": "hello", "new_string": "bye"})
        )
        .await
        .is_ok()
    );
    let files = f.call("list_files", json!({})).await.unwrap();
    assert!(
        files.contains("prompts/new.md") && files.contains("harness.toml"),
        "{files}"
    );
    assert!(
        f.call("validate_harness", json!({}))
            .await
            .unwrap()
            .starts_with("valid; size")
    );
}

#[tokio::test]
async fn no_tool_shows_a_holdout_task() {
    let f = fixture();
    let holdout_trials = ["workdir__BBBBBBB", "workdir__CCCCCCC"];
    let mut seen = Vec::new();
    seen.push(f.call("ledger", json!({})).await);
    seen.push(f.call("task_matrix", json!({})).await);
    for outcome in ["all", "failed", "passed", "errored"] {
        seen.push(
            f.call("list_trials", json!({"experiment": 0, "outcome": outcome}))
                .await,
        );
    }
    seen.push(
        f.call("grep_trajectories", json!({"pattern": SECRET}))
            .await,
    );
    seen.push(
        f.call(
            "grep_trajectories",
            json!({"pattern": "marker", "experiment": 0}),
        )
        .await,
    );
    for t in holdout_trials {
        let r = f.call("read_trajectory", json!({"trial": t})).await;
        assert_eq!(
            r,
            Err(format!("no trial named `{t}` (list_trials shows them)")),
            "same as a trial that does not exist"
        );
        seen.push(r);
        let r = f.call("read_verifier_output", json!({"trial": t})).await;
        assert!(r.is_err(), "{r:?}");
        seen.push(r);
    }
    let r = f.call("read_task", json!({"task": "workdir"})).await;
    assert_eq!(r, Err("no train task named `workdir`".to_owned()));
    let r = f
        .call("spot_check", json!({"tasks": ["hello-file", "workdir"]}))
        .await;
    assert_eq!(r, Err("no train task named `workdir`".to_owned()));
    seen.push(Ok(first_message(
        &f.ctx,
        Some(&f.root.join("jobs/exp-0000")),
    )));
    for s in &seen {
        let text = match s {
            Ok(t) | Err(t) => t,
        };
        for phrase in [
            format!("working on {SECRET}"),
            format!("do the task {SECRET}"),
            format!("verifier says {SECRET}"),
        ] {
            assert!(!text.contains(&phrase), "holdout content leaked: {text}");
        }
        if let Ok(text) = s {
            assert!(
                !text.contains("workdir__"),
                "a holdout trial was listed: {text}"
            );
        }
    }
    // The train side is visible.
    assert!(
        f.call("read_trajectory", json!({"trial": "hello-file__AAAAAAA"}))
            .await
            .unwrap()
            .contains("train-marker")
    );
    assert!(
        f.call("list_trials", json!({"experiment": 0}))
            .await
            .unwrap()
            .contains("hello-file__AAAAAAA")
    );
    assert!(
        f.call("read_task", json!({"task": "hello-file"}))
            .await
            .unwrap()
            .contains("Hello, world!")
    );
}

/// Every tool, every string argument set to every name or path a holdout task or trial goes by:
/// each answer is the answer for a name that does not exist (the same length, so even a byte
/// count cannot tell them apart), and none carries holdout content.
#[tokio::test]
async fn no_tool_tells_a_holdout_name_or_path_from_a_missing_one() {
    let f = fixture();
    let jobs = f.root.join("jobs");
    // (a name or path of holdout material, one of the same length that names nothing)
    let probes: Vec<(String, String)> = vec![
        ("workdir".into(), "nowork1".into()),
        ("workdir__BBBBBBB".into(), "nowork1__ZZZZZZZ".into()),
        ("workdir__CCCCCCC".into(), "nowork1__YYYYYYY".into()),
        (
            "exp-0000-holdout/workdir__BBBBBBB".into(),
            "exp-0000-nothing/nowork1__ZZZZZZZ".into(),
        ),
        (
            "../exp-0000-holdout/workdir__BBBBBBB".into(),
            "../exp-0000-nothing/nowork1__ZZZZZZZ".into(),
        ),
        (
            "../jobs/exp-0000-holdout/workdir__BBBBBBB/agent/trajectory.json".into(),
            "../jobs/exp-0000-nothing/nowork1__ZZZZZZZ/agent/trajectory.json".into(),
        ),
        (
            jobs.join("exp-0000-holdout/workdir__BBBBBBB/verifier/test-stdout.txt")
                .display()
                .to_string(),
            jobs.join("exp-0000-nothing/nowork1__ZZZZZZZ/verifier/test-stdout.txt")
                .display()
                .to_string(),
        ),
    ];
    let names: Vec<String> = f.tools.iter().map(|t| t.spec().name).collect();
    assert_eq!(names.len(), 14, "{names:?}");
    for tool in &f.tools {
        let spec = tool.spec();
        // Spot checks and finish with a holdout name are covered by the refusals above; writing
        // files named after probes is harmless but would make the two runs differ in state.
        if ["write_file", "edit_file", "finish"].contains(&spec.name.as_str()) {
            continue;
        }
        let props = spec.parameters["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (holdout, missing) in &probes {
            let args = |value: &str| {
                let mut a = serde_json::Map::new();
                for (k, p) in &props {
                    let v = match p["type"].as_str() {
                        Some("string") if p.get("enum").is_some() => p["enum"][0].clone(),
                        Some("string") => json!(value),
                        Some("integer") => json!(0),
                        Some("array") => json!([value]),
                        Some("boolean") => json!(false),
                        _ => Value::Null,
                    };
                    a.insert(k.clone(), v);
                }
                Value::Object(a)
            };
            let seen = f.call(&spec.name, args(holdout)).await;
            let missing_answer = f.call(&spec.name, args(missing)).await;
            let as_missing = match &seen {
                Ok(t) => Ok(t.replace(holdout.as_str(), missing)),
                Err(t) => Err(t.replace(holdout.as_str(), missing)),
            };
            assert_eq!(
                as_missing, missing_answer,
                "{}({holdout}) answers unlike a missing name",
                spec.name
            );
            let text = match &seen {
                Ok(t) | Err(t) => t,
            };
            assert!(
                !text.contains(SECRET),
                "{}({holdout}) leaked: {text}",
                spec.name
            );
        }
    }
}

/// A suspect trial is a failure to the meta-agent too, whatever its reward: the failure digest
/// and `list_trials` show it with the integrity flag and its evidence.
#[tokio::test]
async fn a_suspect_trial_is_flagged_in_the_digest_and_the_listing() {
    let f = fixture();
    let p = f.root.join("jobs/exp-0000/hello-file__AAAAAAA/result.json");
    let mut r: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    r["verifier_result"] = json!({"rewards": {"reward": 1.0}});
    r["integrity"] = json!("suspect");
    r["integrity_evidence"] = json!(["wrote /logs/verifier/reward.txt"]);
    std::fs::write(&p, r.to_string()).unwrap();
    let digest = first_message(&f.ctx, Some(&f.root.join("jobs/exp-0000")));
    let at = digest
        .find("### hello-file__AAAAAAA (task hello-file): reward 1, error -")
        .unwrap_or_else(|| panic!("not in the failure digest:\n{digest}"));
    assert!(
        digest[at..].contains(
            "INTEGRITY: SUSPECT, counted as a failure whatever its reward: the agent touched what the verifier reads or runs (wrote /logs/verifier/reward.txt)"
        ),
        "{digest}"
    );
    let listed = f
        .call("list_trials", json!({"experiment": 0, "outcome": "failed"}))
        .await
        .unwrap();
    assert!(
        listed.contains(
            "hello-file__AAAAAAA\ttask=hello-file\treward=1\terror=-\tintegrity=suspect (wrote /logs/verifier/reward.txt)"
        ),
        "{listed}"
    );
}
