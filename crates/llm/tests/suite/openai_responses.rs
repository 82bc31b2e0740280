//! OpenAI Responses against a mock server, with the call/output pairing invariant checked on
//! every request (as codex's mock does).

use std::collections::BTreeSet;

use autoagent_llm::{ContentBlock, Message, ModelRequest, StopReason, ToolResult};
use pretty_assertions::assert_eq;
use serde_json::Value;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use super::support::{KEY, bodies, fixture, json_response, model, plain_request, tool_round_trip};

async fn server_answering(fixture_name: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/responses"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(json_response(200, fixture(fixture_name)))
        .mount(&server)
        .await;
    server
}

/// Every function_call_output answers a function_call of the same input and vice versa.
fn assert_calls_paired(body: &Value) {
    let items = body["input"].as_array().cloned().unwrap_or_default();
    let ids = |kind: &str| -> BTreeSet<String> {
        items
            .iter()
            .filter(|item| item["type"] == kind)
            .map(|item| item["call_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(ids("function_call"), ids("function_call_output"), "{body}");
}

#[tokio::test]
async fn plain_text() {
    let server = server_answering("openai_responses/text.json").await;
    let response = model("openai-responses/gpt-5", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.message, Message::assistant("pong"));
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(response.usage.input_tokens, 20);
    assert!(response.cost_usd.is_some());
    insta::assert_json_snapshot!("openai_responses_plain_request", bodies(&server).await[0]);
}

#[tokio::test]
async fn function_calls_reasoning_and_replay() {
    let server = server_answering("openai_responses/function_calls.json").await;
    let model = model("openai-responses/gpt-5", &server);
    let mut request: ModelRequest = tool_round_trip();
    let response = model.complete(&request).await.unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(response.tool_calls().count(), 2);
    assert_eq!(response.usage.cache_read_tokens, 2560);
    assert_eq!(response.usage.input_tokens, 330);
    assert_eq!(response.usage.reasoning_tokens, 64);
    let expected = (330.0 * 1.25 + 140.0 * 10.0 + 2560.0 * 0.125) / 1e6;
    assert!((response.cost_usd.unwrap() - expected).abs() < 1e-12);

    // Replay the turn with its encrypted reasoning and answer both calls.
    let results: Vec<ToolResult> = response
        .tool_calls()
        .map(|call| ToolResult::ok(call.id.clone(), "ok"))
        .collect();
    request.messages.push(response.message.clone());
    request.messages.push(Message::tool_results(results));
    model.complete(&request).await.unwrap();

    let sent = bodies(&server).await;
    for body in &sent {
        assert_calls_paired(body);
    }
    insta::assert_json_snapshot!("openai_responses_replay_request", sent[1]);
}

#[tokio::test]
async fn reasoning_summaries_are_kept() {
    let server = server_answering("openai_responses/reasoning_summary.json").await;
    let response = model("openai-responses/gpt-5", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    let ContentBlock::Reasoning(reasoning) = &response.message.content[0] else {
        panic!("{response:?}");
    };
    assert_eq!(
        reasoning.summary,
        [
            "**Planning** I should check the tests first.",
            "Then fix the bug."
        ]
    );
    assert_eq!(
        reasoning.encrypted_content.as_deref(),
        Some("gAAAAABencrypted==")
    );
    assert_eq!(response.usage.reasoning_tokens, 448);
}
