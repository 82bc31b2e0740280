//! The dashboard in a real browser (Debian's chromium, driven through chromedriver) on a
//! workspace written by a real scripted `optimize` run in Docker: the steering note saved from
//! the page reaches the next meta-agent session; the chart's points are the ledger's; an
//! experiment's diff is `git show`; a trial page shows every step of its trajectory; the run page
//! follows a new ledger row without a reload; STOP writes the file. Screenshots of each page are
//! saved under target/ (the path is printed).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoagent_eval::job::{JobObserver, Silent};
use autoagent_llm::{EnvSource, ModelConfig};
use autoagent_optimize::{Ledger, Options, Reporter, Status, Workspace};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::support::serve;

const STEERING: &str = "prefer small generic tools over prompt changes";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

struct Quiet;
impl Reporter for Quiet {
    fn line(&self, _msg: &str) {}
    fn job_observer(&self) -> Arc<dyn JobObserver> {
        Arc::new(Silent)
    }
}

/// chromedriver, or why the test cannot run: a failure in CI, a skip elsewhere.
fn chromedriver_or_skip() -> Option<PathBuf> {
    let found = ["chromedriver", "/usr/bin/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        assert!(
            std::env::var("AUTOAGENT_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "AUTOAGENT_REQUIRE_DOCKER=1 but chromedriver is missing: run scripts/setup-machine.sh (chromium, chromium-driver)"
        );
        eprintln!("skipping: no chromedriver");
    }
    found
}

struct Driver(Child);
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(driver: &Path) -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1300,1500", "--hide-scrollbars"]}),
    );
    let t0 = Instant::now();
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (guard, c),
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(30), "chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Evaluates `expr` in the page until it is truthy; its value.
async fn wait_js(c: &Client, what: &str, expr: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let v = c
            .execute(&format!("return ({expr});"), vec![])
            .await
            .unwrap();
        if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
            return v;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let html = c.source().await.unwrap_or_default();
            panic!(
                "timed out waiting for {what}: {expr}\n{}",
                &html[..html.len().min(4000)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    let p = dir.join(format!("{name}.png"));
    std::fs::write(&p, png).unwrap();
    println!("screenshot: {}", p.display());
}

fn git(harness: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(harness)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn the_dashboard_follows_a_real_run_in_a_browser() {
    let Some(driver) = chromedriver_or_skip() else {
        return;
    };
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("view-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // A workspace with one example task, k = 2.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    autoagent_optimize::init(&root).await.unwrap();
    std::fs::remove_dir_all(root.join("tasks")).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tasks");
    copy_dir(&examples.join("hello-file"), &root.join("tasks/hello-file"));
    std::fs::write(
        root.join("autoagent.toml"),
        "[eval]\nattempts = 2\nconcurrency = 2\nmax_retries = 0\n[optimize]\nbudget_usd = 0.5\n[accept]\npolicy = \"greedy\"\nk = 2\n",
    )
    .unwrap();
    let mut ws = Workspace::open(&root).unwrap();

    let server = serve(&root, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let base = server.base.clone();
    let (_driver, c) = browser(&driver).await;

    // The steering note, saved from the run page before the run.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_js(&c, "the run page", "document.body.dataset.rendered").await;
    c.find(Locator::Id("steering-text"))
        .await
        .unwrap()
        .send_keys(STEERING)
        .await
        .unwrap();
    c.find(Locator::Id("steering-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "the note saved",
        "document.getElementById('steering-status').dataset.saved",
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(root.join(".autoagent/steering.md"))
            .unwrap()
            .trim(),
        STEERING
    );

    // The run: baseline, a keep (its script expects the note in the system prompt), a discard.
    ws.config.optimize.max_iterations = Some(2);
    let opts = Options {
        task_model: ModelConfig {
            model: format!("scripted/{}", fixture("run/task-agent.toml").display()),
            ..ModelConfig::default()
        },
        meta_model: ModelConfig {
            model: format!("scripted/{}/meta-{{n}}.toml", fixture("run").display()),
            ..ModelConfig::default()
        },
        env: EnvSource::from_vars(Vec::<(String, String)>::new()),
        backend: Arc::new(docker),
        no_cache: false,
    };
    let log = || std::fs::read_to_string(root.join(".autoagent/optimize.log")).unwrap_or_default();
    let r = autoagent_optimize::optimize(&ws, &opts, &Quiet, CancellationToken::new()).await;
    assert!(r.is_ok(), "{r:?}\n{}", log());
    let ledger = Ledger::load(&root.join("results.tsv")).unwrap();
    let statuses: Vec<Status> = ledger.rows.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Status::Keep, Status::Keep, Status::Discard],
        "{}",
        log()
    );
    assert!(log().contains("view: steering note set"), "{}", log());

    // The run page followed the run live: three rows, and the chart's points are the ledger's.
    wait_js(
        &c,
        "three ledger rows",
        "document.querySelectorAll('#ledger tbody tr').length === 3",
    )
    .await;
    let points = c
        .execute(
            "return [...document.querySelectorAll('#chart .point')].map(p => [Number(p.dataset.experiment), Number(p.dataset.score), p.dataset.status, p.dataset.commit]);",
            vec![],
        )
        .await
        .unwrap();
    let mut points: Vec<(u64, f64, String, String)> = serde_json::from_value(points).unwrap();
    points.sort_by_key(|p| p.0);
    let expected: Vec<(u64, f64, String, String)> = ledger
        .rows
        .iter()
        .map(|r| {
            (
                u64::from(r.experiment().unwrap().0),
                r.avg_score,
                r.status.to_string(),
                r.commit.clone(),
            )
        })
        .collect();
    assert_eq!(points, expected);
    let phase = wait_js(
        &c,
        "the phase",
        "document.getElementById('phase').textContent",
    )
    .await;
    assert_eq!(phase, json!("no experiment under way"));
    let spend = wait_js(
        &c,
        "the spend",
        "document.getElementById('spend').textContent",
    )
    .await;
    assert_eq!(spend, json!(format!("${:.3} of $0.50", ledger.spent_usd())));
    shot(&c, &shots, "run").await;

    // A new ledger row while the page is open: it shows up without a reload.
    let mut row = ledger.rows[2].clone();
    row.job_dir = "jobs/exp-0003".into();
    row.description = "a row appended while the page is open".into();
    let mut l = Ledger::load(&root.join("results.tsv")).unwrap();
    l.append(row).unwrap();
    wait_js(
        &c,
        "the new row",
        "document.querySelector('#ledger tr[data-experiment=\"3\"]')",
    )
    .await;
    wait_js(
        &c,
        "the new point",
        "document.querySelectorAll('#chart .point').length === 4",
    )
    .await;
    let rendered_before = c
        .execute("window.__same = true; return 1;", vec![])
        .await
        .unwrap();
    assert_eq!(rendered_before, json!(1));

    // Experiments: the kept one's diff and the discarded one's are `git show` of their commits.
    let harness = root.join("harness");
    for (n, name) in [(1u32, "experiment-kept"), (2, "experiment-discarded")] {
        c.goto(&format!("{base}/experiment/{n}")).await.unwrap();
        let diff = wait_js(
            &c,
            "the diff",
            "document.getElementById('diff') && document.getElementById('diff').textContent",
        )
        .await;
        let commit = &ledger.rows[n as usize].commit;
        assert_eq!(
            diff.as_str().unwrap(),
            git(&harness, &["show", "--format=", commit, "--"]),
            "exp {n}"
        );
        let description = wait_js(
            &c,
            "the description",
            "document.getElementById('description').textContent",
        )
        .await;
        assert_eq!(
            description.as_str().unwrap(),
            ledger.rows[n as usize].description
        );
        if n == 1 {
            let rationale = wait_js(
                &c,
                "the rationale",
                "document.getElementById('rationale').textContent",
            )
            .await;
            assert!(
                rationale
                    .as_str()
                    .unwrap()
                    .contains("agents keep asking for a file writer"),
                "{rationale}"
            );
            let cell = wait_js(
                &c,
                "per task",
                "document.querySelector('#per-task tr[data-task=\"hello-file\"]').textContent",
            )
            .await;
            assert_eq!(cell, json!("hello-file2/20/2+2"));
        } else {
            let refs = wait_js(
                &c,
                "the ref",
                "document.body.textContent.includes('refs/autoagent/discarded/2')",
            )
            .await;
            assert_eq!(refs, json!(true));
        }
        shot(&c, &shots, name).await;
    }

    // The meta-agent session's own trajectory.
    c.goto(&format!("{base}/meta/1")).await.unwrap();
    let calls = wait_js(
        &c,
        "meta steps",
        "[...document.querySelectorAll('.tool-call b')].map(b => b.textContent).join(',')",
    )
    .await;
    assert_eq!(
        calls,
        json!("list_trials,write_file,write_file,validate_harness,finish")
    );
    shot(&c, &shots, "meta").await;

    // Tasks: the matrix, attempts per cell, and a click through to a trial.
    c.goto(&format!("{base}/tasks")).await.unwrap();
    let cells = wait_js(&c, "the matrix", "[...document.querySelectorAll('#matrix tr[data-task=\"hello-file\"] td')].map(td => td.querySelector('.frac') ? td.querySelector('.frac').textContent : td.textContent)").await;
    assert_eq!(cells, json!(["0/2", "2/2", "0/2", "0/2"]));
    shot(&c, &shots, "tasks").await;
    let href = wait_js(&c, "a trial link", "document.querySelectorAll('#matrix td[data-column=\"exp-0001\"] a.trial-link')[0].getAttribute('href')").await;
    c.find(Locator::Css(
        "#matrix td[data-column=\"exp-0001\"] a.trial-link",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();

    // The trial: every step of its trajectory, in order, with its tool calls.
    wait_js(
        &c,
        "the trial page",
        "document.querySelectorAll('#trajectory .steps > .step').length",
    )
    .await;
    let href = href.as_str().unwrap().to_owned();
    let parts: Vec<&str> = href.trim_start_matches("/trial/").split('/').collect();
    let traj: Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join("jobs")
                .join(parts[0])
                .join(parts[1])
                .join("agent/trajectory.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let steps = traj["steps"].as_array().unwrap();
    let shown = c
        .execute(
            "return [...document.querySelector('#trajectory .trajectory > .steps').children].filter(e => e.classList.contains('step')).map(s => [Number(s.dataset.stepId), s.querySelector('.message') ? s.querySelector('.message').textContent : '', [...s.querySelectorAll('.tool-call b')].map(b => b.textContent)]);",
            vec![],
        )
        .await
        .unwrap();
    let shown: Vec<(u64, String, Vec<String>)> = serde_json::from_value(shown).unwrap();
    let want: Vec<(u64, String, Vec<String>)> = steps
        .iter()
        .map(|s| {
            (
                s["step_id"].as_u64().unwrap(),
                s["message"].as_str().unwrap_or("").to_owned(),
                s["tool_calls"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|t| t["function_name"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(shown, want);
    let reward = wait_js(
        &c,
        "the reward",
        "document.getElementById('reward').textContent",
    )
    .await;
    assert_eq!(reward, json!("1.000"));
    shot(&c, &shots, "trial").await;

    // STOP, from the run page.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_js(&c, "the run page", "document.body.dataset.rendered").await;
    c.find(Locator::Id("stop"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_js(
        &c,
        "STOP written",
        "document.getElementById('stop').disabled",
    )
    .await;
    assert!(root.join("STOP").is_file());
    assert!(log().contains("view: STOP requested"), "{}", log());

    server.stop().await;

    // A plain jobs dir, as Harbor writes one: the Trial page alone renders nested sub-agents,
    // the verification phase and spilled outputs, and shows no key.
    let jobs = dir.path().join("harbor-jobs");
    handwritten_trial(&jobs.join("job-a/fix-bug__XYZ1234"));
    let plain = serve(&jobs, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    c.goto(&format!("{}/trial/job-a/fix-bug__XYZ1234", plain.base))
        .await
        .unwrap();
    wait_js(
        &c,
        "the trial page",
        "document.querySelectorAll('.step').length",
    )
    .await;
    let top = wait_js(
        &c,
        "top steps",
        "document.querySelector('#trajectory .trajectory > .steps').children.length",
    )
    .await;
    assert_eq!(top, json!(6), "5 steps and the verification divider");
    let nested = wait_js(&c, "the sub-agent", "[...document.querySelectorAll('details.subagent[data-trajectory-id=\"sub-1\"] .step .message')].map(m => m.textContent).join('|')").await;
    assert_eq!(nested, json!("look in src/|found it in src/lib.rs"));
    let divider = wait_js(
        &c,
        "the verification phase",
        "document.querySelector('.phase-divider').textContent",
    )
    .await;
    assert_eq!(divider, json!("Verification phase (2 bonus turns)"));
    let verifying = wait_js(&c, "verifying steps", "[...document.querySelectorAll('#trajectory .trajectory > .steps > .step.verifying')].map(s => s.dataset.stepId).join(',')").await;
    assert_eq!(verifying, json!("4,5"));
    let spilled = wait_js(
        &c,
        "the spill notice",
        "document.querySelector('.notice.spilled').textContent",
    )
    .await;
    assert!(
        spilled.as_str().unwrap().contains("/tmp/spill/1-bash.txt"),
        "{spilled}"
    );
    let html = c.source().await.unwrap();
    assert!(!html.contains(HANDWRITTEN_KEY) && html.contains("[REDACTED]"));
    shot(&c, &shots, "trial-harbor-jobs").await;
    plain.stop().await;
    c.close().await.unwrap();
}

const HANDWRITTEN_KEY: &str = "sk-ant-api03-HandWrittenKey-0123456789";

fn handwritten_trial(trial: &Path) {
    std::fs::create_dir_all(trial.join("agent")).unwrap();
    std::fs::create_dir_all(trial.join("verifier")).unwrap();
    std::fs::write(
        trial.join("result.json"),
        json!({"task_name": "fix-bug", "trial_name": "fix-bug__XYZ1234",
               "verifier_result": {"rewards": {"reward": 0.0}},
               "exception_info": {"exception_type": "AgentTimeoutError", "exception_message": "agent ran out of time",
                                  "exception_traceback": "", "occurred_at": "2026-01-01T00:00:00Z"}})
        .to_string(),
    )
    .unwrap();
    let spill = "head\n[... 9000 characters omitted; the full output (10000 characters) is in /tmp/spill/1-bash.txt: read parts of it with tools such as head, tail, grep or sed ...]\ntail";
    std::fs::write(
        trial.join("agent/trajectory.json"),
        json!({"schema_version": "ATIF-v1.8", "agent": {"name": "harbor-agent", "version": "1"},
            "steps": [
                {"step_id": 1, "source": "user", "message": format!("fix the bug; the key {HANDWRITTEN_KEY} is not yours")},
                {"step_id": 2, "source": "agent", "message": "delegating",
                 "tool_calls": [{"tool_call_id": "c1", "function_name": "explore", "arguments": {"task": "find it"}}],
                 "observation": {"results": [{"source_call_id": "c1", "content": "src/lib.rs",
                                              "subagent_trajectory_ref": [{"trajectory_id": "sub-1"}]}]},
                 "metrics": {"prompt_tokens": 100, "completion_tokens": 5, "cost_usd": 0.001}},
                {"step_id": 3, "source": "agent", "message": "running the tests",
                 "tool_calls": [{"tool_call_id": "c2", "function_name": "bash", "arguments": {"command": "make test"}}],
                 "observation": {"results": [{"source_call_id": "c2", "content": spill}]}},
                {"step_id": 4, "source": "user", "message": "Check your work.", "extra": {"phase": "verification", "bonus_turns": 2}},
                {"step_id": 5, "source": "agent", "message": "checked"}
            ],
            "subagent_trajectories": [{"trajectory_id": "sub-1", "agent": {"name": "explore", "version": "1"},
                "steps": [{"step_id": 1, "source": "user", "message": "look in src/"},
                          {"step_id": 2, "source": "agent", "message": "found it in src/lib.rs"}]}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(trial.join("verifier/test-stdout.txt"), "FAILED test_bug\n").unwrap();
}
