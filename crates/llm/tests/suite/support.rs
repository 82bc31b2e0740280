//! Helpers shared by the suite: fixtures, fast retry policies, models pointed at a mock server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use autoagent_llm::{
    ContentBlock, EnvSource, Message, Model, ModelConfig, ModelRequest, RetryPolicy, Role,
    ToolCall, ToolResult, ToolSpec, build_model,
};
use serde_json::{Value, json};
use wiremock::{MockServer, Request};

/// A distinctive fake key: any occurrence of it in output is a leak.
pub const KEY: &str = "sk-test-AUTOAGENT-LEAKCHECK-9f8e7d6c5b4a";

pub fn fixture_path(rel: &str) -> PathBuf {
    autoagent_test_support::fixture!(rel)
}

pub fn fixture(rel: &str) -> String {
    std::fs::read_to_string(fixture_path(rel)).unwrap_or_else(|e| panic!("fixture {rel}: {e}"))
}

/// Retries in milliseconds so that the suite stays fast.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(50),
    }
}

pub fn env() -> EnvSource {
    EnvSource::from_vars([("ANTHROPIC_API_KEY", KEY), ("OPENAI_API_KEY", KEY)])
}

pub fn config(model: &str, base_url: &str) -> ModelConfig {
    ModelConfig {
        base_url: Some(base_url.to_owned()),
        max_tokens: 1024,
        retry: fast_retry(4),
        timeout: Duration::from_secs(5),
        ..ModelConfig::new(model)
    }
}

pub fn model(model: &str, server: &MockServer) -> Arc<dyn Model> {
    build_model(&config(model, &server.uri()), &env()).unwrap()
}

pub fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "read_file".into(),
            description: "Read a file from the sandbox.".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}),
        },
        ToolSpec {
            name: "bash".into(),
            description: "Run a shell command in the sandbox.".into(),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        },
    ]
}

pub fn plain_request() -> ModelRequest {
    ModelRequest::new("You are a terminal agent.", "Say hello.")
}

/// A conversation with a parallel tool round trip, a tool error, and a follow-up user turn.
pub fn tool_round_trip() -> ModelRequest {
    ModelRequest {
        system: Some("You are a terminal agent.".into()),
        messages: vec![
            Message::user("List the files in /app and read main.py."),
            Message {
                role: Role::Assistant,
                content: vec![
                    ContentBlock::text("I'll list them and read the file."),
                    ContentBlock::ToolCall(ToolCall::new(
                        "call_ls_1",
                        "bash",
                        json!({"command": "ls -la /app"}),
                    )),
                    ContentBlock::ToolCall(ToolCall::new(
                        "call_read_2",
                        "read_file",
                        json!({"path": "/app/main.py"}),
                    )),
                ],
            },
            Message::tool_results([
                ToolResult::ok("call_ls_1", "total 8\n-rw-r--r-- 1 root root 12 main.py\n"),
                ToolResult::error("call_read_2", "Error: permission denied"),
            ]),
            Message::assistant("The file is not readable."),
            Message::user("Try with sudo."),
        ],
        tools: tools(),
        ..ModelRequest::default()
    }
}

pub fn body_json(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// The bodies of every request the server received.
pub async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(body_json)
        .collect()
}

pub fn json_response(status: u16, body: String) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(status).set_body_raw(body, "application/json")
}
