//! OpenAI Chat Completions and OpenAI-compatible servers against a mock server.

use autoagent_llm::{
    ContentBlock, EnvSource, ModelConfig, Reasoning, StopReason, ToolCall, Usage, build_model,
};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use super::support::{
    KEY, bodies, config, fast_retry, fixture, json_response, model, plain_request, tool_round_trip,
};

async fn server_answering(fixture_name: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(
            json_response(200, fixture(fixture_name)).insert_header("x-request-id", "req_oa_1"),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn plain_text() {
    let server = server_answering("openai_chat/text.json").await;
    let response = model("openai/gpt-4.1", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.text(), "pong");
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.request_id.as_deref(), Some("req_oa_1"));
    assert_eq!(response.model, "gpt-4.1-2025-04-14");
    let cost = response.cost_usd.unwrap();
    assert!(
        (cost - (20.0 * 2.0 + 2.0 * 8.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    insta::assert_json_snapshot!("openai_chat_plain_request", bodies(&server).await[0]);
}

#[tokio::test]
async fn parallel_tool_calls_and_cached_usage() {
    let server = server_answering("openai_chat/tool_calls.json").await;
    let response = model("openai/gpt-4.1", &server)
        .complete(&tool_round_trip())
        .await
        .unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(response.tool_calls().count(), 2);
    // prompt_tokens 2450 includes 2304 cached.
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 146,
            output_tokens: 21,
            cache_read_tokens: 2304,
            cache_write_tokens: 0,
            reasoning_tokens: 0
        }
    );
    let expected = (146.0 * 2.0 + 21.0 * 8.0 + 2304.0 * 0.5) / 1e6;
    assert!((response.cost_usd.unwrap() - expected).abs() < 1e-12);
    insta::assert_json_snapshot!(
        "openai_chat_tool_round_trip_request",
        bodies(&server).await[0]
    );
}

#[tokio::test]
async fn reasoning_model_usage() {
    let server = server_answering("openai_chat/reasoning.json").await;
    let mut cfg = config("openai/gpt-5-mini", &server.uri());
    cfg.temperature = Some(0.7);
    cfg.reasoning_effort = Some(autoagent_llm::ReasoningEffort::Minimal);
    let response = build_model(&cfg, &super::support::env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.usage.reasoning_tokens, 256);
    assert_eq!(response.usage.input_tokens, 476);
    assert!(response.cost_usd.is_some());
    let body = &bodies(&server).await[0];
    assert!(body.get("temperature").is_none(), "{body}");
    assert_eq!(body["reasoning_effort"], json!("minimal"));
}

#[tokio::test]
async fn compatible_server_quirks_without_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(json_response(
            200,
            fixture("openai_chat/compat_quirks.json"),
        ))
        .mount(&server)
        .await;
    let cfg = ModelConfig {
        base_url: Some(format!("{}/v1", server.uri())),
        retry: fast_retry(2),
        ..ModelConfig::new("openai-compatible/qwen3-coder")
    };
    // No key anywhere: local servers need none.
    let model = build_model(&cfg, &EnvSource::from_vars::<&str, &str>([])).unwrap();
    let response = model.complete(&tool_round_trip()).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.message.content[0],
        ContentBlock::Reasoning(Reasoning {
            text: "The tests live in tests/.".into(),
            ..Reasoning::default()
        })
    );
    let calls: Vec<&ToolCall> = response.tool_calls().collect();
    assert_eq!(
        calls[0],
        &ToolCall::new("chatcmpl-tool-1", "bash", json!({"command": "pytest"}))
    );
    // Malformed arguments are kept for the agent to report, not a crash.
    assert!(calls[1].arguments_error.is_some());
    // A local model has no shipped price.
    assert_eq!(response.cost_usd, None);

    let requests = server.received_requests().await.unwrap();
    assert!(requests[0].headers.get("authorization").is_none());
    insta::assert_json_snapshot!(
        "openai_compatible_tool_round_trip_request",
        bodies(&server).await[0]
    );
}

#[tokio::test]
async fn missing_usage_means_unknown_cost() {
    let server = server_answering("openai_chat/no_usage.json").await;
    let response = model("openai/gpt-4.1", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.usage, Usage::default());
    assert_eq!(response.cost_usd, None);
    assert_eq!(response.stop_reason, StopReason::MaxTokens);
}

#[tokio::test]
async fn unknown_model_has_no_cost() {
    let server = server_answering("openai_chat/text.json").await;
    let response = model("openai/gpt-unreleased", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    // The reported model (gpt-4.1-2025-04-14) is priced even though the asked one is not.
    assert!(response.cost_usd.is_some());

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(
            200,
            r#"{"model":"mystery-1","choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#.into(),
        ))
        .mount(&server)
        .await;
    let response = model("openai/mystery-1", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.cost_usd, None);
}
