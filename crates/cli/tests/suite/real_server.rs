//! Against a real OpenAI-compatible server: llama.cpp's `llama-server` with SmolLM2-135M-Instruct,
//! both installed by `scripts/setup-machine.sh`. Asserts the pipeline (requests accepted, tool
//! calls parsed and run, trajectories valid ATIF, ledger rows written, costs unknown rather than
//! 0), never the score: a 135M model solves nothing.
//!
//! The model gets a chat template (`fixtures/llama/chatml-tools.jinja`) whose tool-call format
//! is a fenced JSON block: llama.cpp derives its tool-call grammar and trigger from the template,
//! and SmolLM2 opens nearly every answer with a code fence, so greedy decoding (`--temp 0`) gives
//! real, server-parsed tool calls in every run.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{autoagent, docker_or_skip, examples};

const MODEL: &str = "openai-compatible/smollm2";
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The installed server and model, or `None` (a skip) on a machine without them; in CI
/// (AUTOAGENT_REQUIRE_DOCKER=1) their absence fails.
fn installed_or_skip() -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("AUTOAGENT_LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/autoagent/llama"));
    let server = dir.join("bin/llama-server");
    let model = dir.join("models").join(MODEL_FILE);
    if server.is_file() && model.is_file() {
        return Some((server, model));
    }
    assert!(
        std::env::var("AUTOAGENT_REQUIRE_DOCKER").as_deref() != Ok("1"),
        "AUTOAGENT_REQUIRE_DOCKER=1 but {} or {} is missing: run scripts/setup-machine.sh",
        server.display(),
        model.display()
    );
    eprintln!("skipping: no llama-server in {}", dir.display());
    None
}

/// A running llama-server, killed (by pid) when dropped.
struct LlamaServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl LlamaServer {
    fn start(server: &Path, model: &Path, log: PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(server)
            .args(["-m", model.to_str().unwrap()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--jinja")
            .args([
                "--chat-template-file",
                fixture("llama/chatml-tools.jinja").to_str().unwrap(),
            ])
            // Greedy decoding: the same answers every run. 6144 tokens per slot: the meta-agent's
            // first prompt is about 4,900 tokens, and since a request's `max_tokens` overrides
            // `--n-predict`, the context is what bounds how long an answer can ramble (its 8192
            // would take minutes on two cores).
            .args(["--temp", "0", "--seed", "1", "--n-predict", "96"])
            .args(["--ctx-size", "12288", "--parallel", "2", "--threads", "2"])
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        let server = Self { child, port, log };
        let started = Instant::now();
        while !server.healthy() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "llama-server did not come up:\n{}",
                server.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example harness with fewer turns: a 135M model never decides it is done, and every
/// turn costs about a second.
fn short_harness(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/harness");
    let dst = dir.join("harness");
    copy_dir(&src, &dst);
    let toml = dst.join("harness.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("max_turns = 30"), "{text}");
    std::fs::write(&toml, text.replace("max_turns = 30", "max_turns = 2")).unwrap();
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// The ATIF rules harbor enforces that a model's output could break (atif.md §3).
fn assert_valid_atif(t: &Value, what: &str) {
    let steps = t["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no steps"));
    assert!(!steps.is_empty(), "{what}: empty steps");
    assert!(
        t["agent"]["name"].is_string() && t["agent"]["version"].is_string(),
        "{what}"
    );
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["step_id"], i as u64 + 1, "{what}: step ids");
        assert!(
            step.get("message").is_some(),
            "{what}: step {i} has no message"
        );
        let source = step["source"].as_str().unwrap();
        assert!(
            ["system", "user", "agent"].contains(&source),
            "{what}: {source}"
        );
        if source != "agent" {
            for field in ["model_name", "tool_calls", "metrics", "reasoning_content"] {
                assert!(
                    step.get(field).is_none_or(Value::is_null),
                    "{what}: {field} on {source}"
                );
            }
        }
        let ids: Vec<&str> = step["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|c| c["tool_call_id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        for result in step["observation"]["results"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = result["source_call_id"].as_str().unwrap();
            assert!(ids.contains(&id), "{what}: dangling source_call_id {id}");
        }
        // Unknown cost is null, never a made-up 0.
        if let Some(cost) = step["metrics"].get("cost_usd") {
            assert!(cost.is_null(), "{what}: cost {cost} for an unpriced model");
        }
    }
}

/// The agent steps that called a tool and got a result back.
fn executed_tool_calls(t: &Value) -> usize {
    t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["tool_calls"].as_array().is_some_and(|c| !c.is_empty())
                && s["observation"]["results"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
        })
        .count()
}

fn trajectories_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            trajectories_under(&path, out);
        } else if path.file_name().is_some_and(|n| n == "trajectory.json") {
            out.push(path);
        }
    }
}

fn one_task_dataset(root: &Path) -> PathBuf {
    let tasks = root.join("tasks");
    copy_dir(&examples().join("hello-file"), &tasks.join("hello-file"));
    tasks
}

#[test]
fn the_whole_pipeline_against_llama_server() {
    let Some((server_bin, model)) = installed_or_skip() else {
        return;
    };
    if !docker_or_skip() {
        return;
    }
    let suite_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = LlamaServer::start(&server_bin, &model, dir.path().join("llama-server.log"));
    let url = server.base_url();
    let started_in = suite_started.elapsed();

    // 1. models check: a real request accepted and answered; no price, so the cost is unknown.
    let run = autoagent(
        &["models", "check", "--model", MODEL, "--base-url", &url],
        dir.path(),
    );
    assert!(
        run.out.status.success(),
        "{}\n{}",
        run.context(),
        server.log_tail()
    );
    assert!(
        run.stdout().contains("cost:      unknown"),
        "{}",
        run.context()
    );

    // 2. autoagent run: the model's tool call is parsed by the server and really executes.
    let harness = short_harness(dir.path());
    let h = harness.to_str().unwrap();
    let run = autoagent(
        &[
            "run",
            "--harness",
            h,
            "--model",
            MODEL,
            "--base-url",
            &url,
            "--workdir",
            "w",
            "Create the file hello.txt containing exactly the line Hello, world!",
        ],
        dir.path(),
    );
    assert!(
        run.out.status.success(),
        "{}\n{}",
        run.context(),
        server.log_tail()
    );
    let path = run
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("trajectory: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("{}", run.context()));
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_valid_atif(&t, "run");
    assert!(executed_tool_calls(&t) >= 1, "no tool call ran: {t:#}");
    let result = &t["steps"][2]["observation"]["results"][0]["content"];
    assert!(result.as_str().unwrap().contains("[exit code"), "{t:#}");
    assert!(run.stderr().contains("cost unknown"), "{}", run.context());

    // 3. autoagent eval -a harness on one example task in Docker: the trial runs to the
    // verifier without an infrastructure error.
    let tasks = one_task_dataset(dir.path());
    let run = autoagent(
        &[
            "eval",
            "-p",
            tasks.to_str().unwrap(),
            "-a",
            "harness",
            "--harness",
            h,
            "--model",
            MODEL,
            "--base-url",
            &url,
            "-o",
            "jobs",
            "--job-name",
            "real",
            "--json",
        ],
        dir.path(),
    );
    assert!(
        run.out.status.success(),
        "{}\n{}",
        run.context(),
        server.log_tail()
    );
    let job: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(job["n_total_trials"], 1, "{job:#}");
    let mut found = Vec::new();
    trajectories_under(&dir.path().join("jobs/real"), &mut found);
    assert_eq!(found.len(), 1, "{found:?}");
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&found[0]).unwrap()).unwrap();
    assert_valid_atif(&t, "eval");
    assert!(
        executed_tool_calls(&t) >= 1,
        "no tool call ran in the trial: {t:#}"
    );
    let trial_dir = found[0]
        .ancestors()
        .find(|p| p.join("result.json").is_file())
        .unwrap();
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(trial_dir.join("result.json")).unwrap())
            .unwrap();
    assert!(result["exception_info"].is_null(), "{result:#}");

    // 4. optimize, one iteration, the same model as task and meta agent, streaming.
    let ws = dir.path().join("ws");
    let run = autoagent(&["init", ws.to_str().unwrap()], dir.path());
    assert!(run.out.status.success(), "{}", run.context());
    std::fs::remove_dir_all(ws.join("tasks")).unwrap();
    copy_dir(&examples().join("hello-file"), &ws.join("tasks/hello-file"));
    let harness_toml = ws.join("harness/harness.toml");
    let text = std::fs::read_to_string(&harness_toml).unwrap();
    std::fs::write(
        &harness_toml,
        text.replace("max_turns = 30", "max_turns = 2"),
    )
    .unwrap();
    let config = ws.join("autoagent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(
            "task = \"anthropic/claude-sonnet-4-5\"",
            &format!("task = \"{MODEL}\"\nbase_url = \"{url}\"\nstream = true"),
        )
        .replace("meta_max_turns = 60", "meta_max_turns = 3");
    assert!(
        text.contains("stream = true") && text.contains("meta_max_turns = 3"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let run = autoagent(
        &[
            "optimize",
            "--workspace",
            ws.to_str().unwrap(),
            "--max-iterations",
            "1",
            "-k",
            "1",
            "-n",
            "1",
            "--sandbox",
            "docker",
        ],
        dir.path(),
    );
    let log = std::fs::read_to_string(ws.join(".autoagent/optimize.log")).unwrap_or_default();
    assert!(
        run.out.status.success(),
        "{}\n{log}\n{}",
        run.context(),
        server.log_tail()
    );
    let ledger = std::fs::read_to_string(ws.join("results.tsv")).unwrap();
    let header: Vec<&str> = ledger.lines().next().unwrap().split('\t').collect();
    let rows: Vec<Vec<&str>> = ledger
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(
        rows.len(),
        2,
        "baseline and one experiment:\n{ledger}\n{log}"
    );
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let unknown = |row: &Vec<&str>, name: &str| row[column(name)].parse::<f64>().is_err();
    // The baseline ran the unpriced task model: its costs are unknown, not 0. (Its meta cost
    // is a true 0: the baseline has no meta session.)
    assert!(
        unknown(&rows[0], "task_cost_usd") && unknown(&rows[0], "cost_usd"),
        "{ledger}"
    );
    // The meta-agent's requests reach the server. A 135M model fills its 6k-token slot within
    // its first turn, so the session may end on the server's context limit: a crash row that
    // names it is the pipeline working (the row is written, the run goes on and stops cleanly).
    let status = rows[1][column("status")];
    assert!(
        ["keep", "discard"].contains(&status)
            || (status == "crash" && rows[1][column("description")].contains("context size")),
        "experiment 1:\n{ledger}\n{log}"
    );
    let mut found = Vec::new();
    trajectories_under(&ws.join("jobs"), &mut found);
    assert!(
        !found.is_empty(),
        "no trial trajectories under {}",
        ws.join("jobs").display()
    );
    for path in &found {
        let t: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_valid_atif(&t, &path.display().to_string());
    }

    eprintln!(
        "real-server suite: {:.1} s in all (server up in {:.1} s)",
        suite_started.elapsed().as_secs_f64(),
        started_in.as_secs_f64()
    );
}
