//! No API key lands in any file of a job, however the run ends: success, a provider error
//! mid-run, an agent timeout mid-call.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{bin, docker_or_skip, examples};

const KEY: &str = "sk-ant-api03-SECRETKEYVALUE-do-not-leak-7f3a9c";

fn tool_use() -> serde_json::Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "Writing the file."},
                    {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "echo 'Hello, world!' > /app/hello.txt"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 120, "output_tokens": 30}})
}

fn done() -> serde_json::Value {
    json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "Done."}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 200, "output_tokens": 5, "cache_read_input_tokens": 100}})
}

/// Every file under `dir` whose bytes contain the key.
fn files_with_key(dir: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    for e in walk(dir) {
        if std::fs::read(&e).is_ok_and(|b| b.windows(KEY.len()).any(|w| w == KEY.as_bytes())) {
            hits.push(e.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

async fn eval(
    task: &str,
    server: &MockServer,
    dir: &Path,
    job: &str,
) -> (String, std::process::Output) {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/harness");
    let task = examples().join(task);
    let args = vec![
        "eval".to_owned(),
        "-p".into(),
        task.display().to_string(),
        "-a".into(),
        "harness".into(),
        "--harness".into(),
        harness.display().to_string(),
        "--model".into(),
        "anthropic/claude-test".into(),
        "--base-url".into(),
        server.uri(),
        "-o".into(),
        "jobs".into(),
        "--job-name".into(),
        job.into(),
    ];
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(&args)
        .current_dir(dir)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("AUTOAGENT_LOG", "trace");
    let out = cmd.output().await.unwrap();
    (format!("autoagent {}", args.join(" ")), out)
}

fn check(dir: &Path, job: &str, cmd: &str, out: &std::process::Output) -> serde_json::Value {
    let context = format!(
        "{cmd}\nstatus {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{context}");
    let hits = files_with_key(&dir.join("jobs").join(job));
    assert!(hits.is_empty(), "the key is in {hits:?}\n{context}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(KEY)
            && !String::from_utf8_lossy(&out.stderr).contains(KEY),
        "{context}"
    );
    let trial = walk(&dir.join("jobs").join(job))
        .into_iter()
        .find(|p| {
            p.ends_with("result.json") && p.parent().unwrap().parent().unwrap().ends_with(job)
        })
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(trial).unwrap()).unwrap()
}

#[tokio::test]
async fn the_key_is_in_no_job_file_however_the_run_ends() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // 1. Success: a tool call, then the answer.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tool_use()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done()))
        .mount(&server)
        .await;
    let (cmd, out) = eval("hello-file", &server, dir.path(), "ok").await;
    let r = check(dir.path(), "ok", &cmd, &out);
    assert_eq!(r["verifier_result"]["rewards"]["reward"], 1.0, "{r:#}");
    assert_eq!(r["agent_result"]["n_input_tokens"], 420, "{r:#}");
    assert_eq!(r["agent_result"]["n_cache_tokens"], 100, "{r:#}");
    let sent = &server.received_requests().await.unwrap()[0];
    assert_eq!(
        sent.headers.get("x-api-key").map(|v| v.to_str().unwrap()),
        Some(KEY),
        "the key does reach the provider"
    );

    // 2. The provider rejects the key mid-run, echoing it back.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tool_use()))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST")).and(path("/v1/messages"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"type": "error", "error": {"type": "authentication_error", "message": format!("invalid x-api-key {KEY}")}})))
        .mount(&server).await;
    let (cmd, out) = eval("hello-file", &server, dir.path(), "rejected").await;
    let r = check(dir.path(), "rejected", &cmd, &out);
    assert_eq!(
        r["exception_info"]["exception_type"], "AgentAuthenticationError",
        "{r:#}"
    );

    // 3. The agent times out while waiting for the model (the task allows 3 s).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(tool_use())
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let (cmd, out) = eval("agent-timeout", &server, dir.path(), "timeout").await;
    let r = check(dir.path(), "timeout", &cmd, &out);
    assert_eq!(
        r["exception_info"]["exception_type"], "AgentTimeoutError",
        "{r:#}"
    );
}
