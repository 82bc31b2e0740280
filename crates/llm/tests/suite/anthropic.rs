//! Anthropic Messages against a mock server: request shapes (snapshots), parsing, usage, cost.

use autoagent_llm::{
    ContentBlock, Message, ModelRequest, Reasoning, StopReason, ToolCall, ToolResult, Usage,
    build_model,
};
use pretty_assertions::assert_eq;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use super::support::{
    KEY, bodies, config, env, fixture, json_response, model, plain_request, tool_round_trip,
};

async fn server_answering(fixture_name: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("content-type", "application/json"))
        .respond_with(
            json_response(200, fixture(fixture_name)).insert_header("request-id", "req_test_1"),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn plain_text() {
    let server = server_answering("anthropic/text.json").await;
    let model = model("anthropic/claude-sonnet-4-5", &server);
    let response = model.complete(&plain_request()).await.unwrap();
    assert_eq!(response.message, Message::assistant("pong"));
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.model, "claude-sonnet-4-5-20250929");
    assert_eq!(response.request_id.as_deref(), Some("req_test_1"));
    assert_eq!(response.response_id.as_deref(), Some("msg_01Text"));
    assert_eq!(response.attempts, 1);
    assert_eq!(model.name(), "anthropic/claude-sonnet-4-5");
    // 12 in × $3/M + 4 out × $15/M
    let cost = response.cost_usd.unwrap();
    assert!((cost - 0.000_096).abs() < 1e-12, "{cost}");
    insta::assert_json_snapshot!("anthropic_plain_request", bodies(&server).await[0]);
}

#[tokio::test]
async fn parallel_tool_calls_and_cache_breakpoints() {
    let server = server_answering("anthropic/parallel_tool_use.json").await;
    let model = model("anthropic/claude-sonnet-4-5", &server);
    let response = model.complete(&tool_round_trip()).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    let calls: Vec<&ToolCall> = response.tool_calls().collect();
    assert_eq!(
        calls,
        [
            &ToolCall::new("toolu_01A", "read_file", json!({"path": "/app/a.py"})),
            &ToolCall::new("toolu_01B", "read_file", json!({"path": "/app/b.py"})),
            &ToolCall::new("toolu_01C", "bash", json!({"command": "ls /app"})),
        ]
    );
    assert_eq!(response.usage.cache_write_tokens, 3000);
    // The request: system, last tool and last two user messages carry cache_control; tool
    // results come first with is_error kept.
    insta::assert_json_snapshot!(
        "anthropic_tool_round_trip_request",
        bodies(&server).await[0]
    );
}

#[tokio::test]
async fn cache_hit_usage_and_cost() {
    let server = server_answering("anthropic/tool_use.json").await;
    let response = model("anthropic/claude-sonnet-4-5", &server)
        .complete(&tool_round_trip())
        .await
        .unwrap();
    assert_eq!(
        response.usage,
        Usage {
            input_tokens: 312,
            output_tokens: 61,
            cache_read_tokens: 2816,
            cache_write_tokens: 0,
            reasoning_tokens: 0
        }
    );
    // 312×3 + 61×15 + 2816×0.3, per million
    let expected = (312.0 * 3.0 + 61.0 * 15.0 + 2816.0 * 0.3) / 1e6;
    assert!((response.cost_usd.unwrap() - expected).abs() < 1e-12);
}

#[tokio::test]
async fn thinking_blocks_round_trip_with_signatures() {
    let server = server_answering("anthropic/thinking.json").await;
    let model = model("anthropic/claude-sonnet-4-5", &server);
    let mut request = ModelRequest {
        reasoning_effort: Some(autoagent_llm::ReasoningEffort::Low),
        ..tool_round_trip()
    };
    let response = model.complete(&request).await.unwrap();
    assert_eq!(
        response.message.content[..2],
        [
            ContentBlock::Reasoning(Reasoning {
                text: "The user wants the tests run first.".into(),
                signature: Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into()),
                ..Reasoning::default()
            }),
            ContentBlock::Reasoning(Reasoning {
                redacted: Some(
                    "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP".into()
                ),
                ..Reasoning::default()
            }),
        ]
    );
    let cost = response.cost_usd.unwrap();
    let expected = (900.0 * 3.0 + 250.0 * 15.0 + 2816.0 * 0.3 + 1200.0 * 3.75) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost}");

    // Replay: the thinking blocks go back unchanged before the tool_use.
    request.messages.push(response.message.clone());
    request.messages.push(Message::tool_results([ToolResult::ok(
        "toolu_01T",
        "3 passed",
    )]));
    model.complete(&request).await.unwrap();
    let sent = bodies(&server).await;
    insta::assert_json_snapshot!("anthropic_thinking_replay_request", sent[1]);
}

#[tokio::test]
async fn caching_can_be_turned_off() {
    let server = server_answering("anthropic/text.json").await;
    let mut cfg = config("anthropic/claude-sonnet-4-5", &server.uri());
    cfg.prompt_caching = false;
    build_model(&cfg, &env())
        .unwrap()
        .complete(&tool_round_trip())
        .await
        .unwrap();
    let body = bodies(&server).await[0].to_string();
    assert!(!body.contains("cache_control"), "{body}");
}

#[tokio::test]
async fn base_url_with_v1_suffix_is_accepted() {
    let server = server_answering("anthropic/text.json").await;
    let cfg = config(
        "anthropic/claude-sonnet-4-5",
        &format!("{}/v1/", server.uri()),
    );
    let response = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await;
    assert!(response.is_ok(), "{response:?}");
}
