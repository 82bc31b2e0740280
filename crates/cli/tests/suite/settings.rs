//! Every command resolves its model the same way: in a workspace set up for an
//! OpenAI-compatible server, `eval -a harness` and `models check` talk to the workspace's
//! `base_url`, with the workspace's prices.

use std::path::Path;

use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use autoagent_test_support::{copy_dir, examples_dir};

use super::support::{bin, docker_or_skip};

/// A workspace for `openai-compatible/test-model` at `url`, priced at $1 / $2 per million tokens.
fn workspace(dir: &Path, url: &str) {
    copy_dir(&examples_dir().join("harness"), &dir.join("harness"));
    copy_dir(
        &examples_dir().join("tasks/hello-file"),
        &dir.join("tasks/hello-file"),
    );
    std::fs::write(
        dir.join("autoagent.toml"),
        format!(
            "[models]\ntask = \"openai-compatible/test-model\"\nbase_url = \"{url}/v1\"\n\
             [models.prices.\"openai-compatible/test-model\"]\ninput = 1.0\noutput = 2.0\n\
             [eval]\ntasks = \"tasks\"\nconcurrency = 1\nmax_retries = 0\n"
        ),
    )
    .unwrap();
}

async fn server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}
        })))
        .mount(&server)
        .await;
    server
}

/// The same command line in the workspace, with nothing from the caller's environment that
/// could name another model or endpoint.
fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("AUTOAGENT_MODEL")
        .env_remove("AUTOAGENT_META_MODEL")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("AUTOAGENT_LOG");
    cmd
}

async fn requests_to_model(server: &MockServer) -> Vec<serde_json::Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn models_check_uses_the_workspace_model_and_url() {
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path(), &server.uri());
    let out = command(dir.path(), &["models", "check"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ctx = format!(
        "status {}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success(), "{ctx}");
    assert!(
        stderr.contains("model openai-compatible/test-model (from autoagent.toml models.task)"),
        "{ctx}"
    );
    assert!(
        stderr.contains(&format!(
            "base URL {}/v1 (from autoagent.toml models.base_url)",
            server.uri()
        )),
        "{ctx}"
    );
    let bodies = requests_to_model(&server).await;
    assert_eq!(bodies.len(), 1, "{ctx}");
    assert_eq!(bodies[0]["model"], "test-model", "{ctx}");
}

#[tokio::test]
async fn eval_with_the_harness_agent_reaches_the_workspace_url_with_its_prices() {
    if !docker_or_skip() {
        return;
    }
    let server = server().await;
    let dir = tempfile::tempdir().unwrap();
    workspace(dir.path(), &server.uri());
    let out = command(
        dir.path(),
        &["eval", "-a", "harness", "-o", "jobs", "--job-name", "j"],
    )
    .output()
    .await
    .unwrap();
    let ctx = format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{ctx}");
    let bodies = requests_to_model(&server).await;
    assert!(
        !bodies.is_empty(),
        "the workspace's server got no request\n{ctx}"
    );
    assert!(bodies.iter().all(|b| b["model"] == "test-model"), "{ctx}");
    let job = dir.path().join("jobs/j");
    let trial = std::fs::read_dir(&job)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("result.json").is_file() && e.file_type().unwrap().is_dir())
        .unwrap_or_else(|| panic!("no trial in {}\n{ctx}", job.display()));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trial.path().join("result.json")).unwrap())
            .unwrap();
    assert_eq!(
        result["config"]["agent"]["model_name"], "openai-compatible/test-model",
        "{result:#}"
    );
    // 100 input and 5 output tokens per call at $1 and $2 per million: the workspace's price.
    let calls = bodies.len() as f64;
    let cost = result["agent_result"]["cost_usd"]
        .as_f64()
        .unwrap_or_else(|| {
            panic!("cost unknown: the workspace's prices were not used\n{result:#}")
        });
    assert!(
        (cost - calls * 0.00011).abs() < 1e-9,
        "{cost} for {calls} call(s)\n{result:#}"
    );
}
