//! Streaming (server-sent events) for all three APIs: pure assembly of fixtures split at every
//! point, and whole calls against servers that stream, cut the stream, or fall silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use autoagent_llm::wire::{
    Parsed, StreamAssembler, WireError, anthropic, openai_chat, openai_responses, parse_stream,
};
use autoagent_llm::{
    ContentBlock, ErrorKind, Model, ModelConfig, ModelRequest, Reasoning, StopReason, ToolCall,
    Usage, build_model,
};
use pretty_assertions::assert_eq;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{bodies, config, env, fixture, plain_request, tool_round_trip};

const ANTHROPIC: &str = "anthropic/claude-sonnet-4-5";
const OPENAI: &str = "openai/gpt-4.1";
const RESPONSES: &str = "openai-responses/gpt-5";

#[derive(Clone, Copy)]
enum Api {
    Anthropic,
    Chat,
    Responses,
}

fn assembler(api: Api) -> Box<dyn StreamAssembler> {
    match api {
        Api::Anthropic => Box::new(anthropic::Stream::new()),
        Api::Chat => Box::new(openai_chat::Stream::new()),
        Api::Responses => Box::new(openai_responses::Stream::new()),
    }
}

/// Feeds `body` in three pieces split at `i` and `j`, the way a network delivers it.
fn assemble_split(api: Api, body: &[u8], i: usize, j: usize) -> Result<Parsed, WireError> {
    let mut parser = autoagent_llm::wire::SseParser::new();
    let mut assembler = assembler(api);
    let mut events = parser.push(&body[..i]);
    events.extend(parser.push(&body[i..j]));
    events.extend(parser.push(&body[j..]));
    events.extend(parser.finish());
    for event in &events {
        assembler.event(event)?;
        if assembler.is_complete() {
            break;
        }
    }
    assembler.finish()
}

/// The same turn whatever the split (every single split point, and a grid of double splits).
fn assemble_every_way(api: Api, name: &str) -> Parsed {
    let body = fixture(name);
    let body = body.as_bytes();
    let whole = parse_stream(assembler(api), body).unwrap();
    let step = (body.len() / 40).max(1);
    for i in 0..=body.len() {
        assert_eq!(
            assemble_split(api, body, i, i).unwrap(),
            whole,
            "{name} split at {i}"
        );
    }
    for i in (0..=body.len()).step_by(step) {
        for j in (i..=body.len()).step_by(step) {
            assert_eq!(
                assemble_split(api, body, i, j).unwrap(),
                whole,
                "{name} split at {i} and {j}"
            );
        }
    }
    whole
}

#[test]
fn anthropic_stream_with_thinking_text_and_tool_calls_in_pieces() {
    let parsed = assemble_every_way(Api::Anthropic, "anthropic/stream_tool_use.sse");
    assert_eq!(
        parsed.message.content,
        vec![
            ContentBlock::Reasoning(Reasoning {
                text: "The file is main.py.".into(),
                signature: Some("EqQBCgIYAhIM1gbcDa9GJwZA2b3h".into()),
                ..Reasoning::default()
            }),
            ContentBlock::text("Let me look."),
            ContentBlock::ToolCall(ToolCall::new(
                "toolu_01Bz",
                "read_file",
                json!({"path": "/app/main.py"})
            )),
            ContentBlock::ToolCall(ToolCall::new(
                "toolu_02Cx",
                "bash",
                json!({"command": "ls -la"})
            )),
        ]
    );
    assert_eq!(parsed.stop_reason, StopReason::ToolUse);
    // Input and cache counts from message_start, output from the final message_delta.
    assert_eq!(
        parsed.usage,
        Some(Usage {
            input_tokens: 312,
            output_tokens: 61,
            cache_read_tokens: 2816,
            cache_write_tokens: 120,
            reasoning_tokens: 0,
        })
    );
    assert_eq!(parsed.id.as_deref(), Some("msg_01S"));
    assert_eq!(parsed.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
}

#[test]
fn chat_stream_with_parallel_calls_interleaved_and_usage_last() {
    let parsed = assemble_every_way(Api::Chat, "openai_chat/stream_tool_calls.sse");
    assert_eq!(
        parsed.message.content,
        vec![
            ContentBlock::text("Checking both."),
            ContentBlock::ToolCall(ToolCall::new(
                "call_abc123",
                "bash",
                json!({"command": "ls -la /app"})
            )),
            ContentBlock::ToolCall(ToolCall::new(
                "call_def456",
                "read_file",
                json!({"path": "/app/main.py"})
            )),
        ]
    );
    assert_eq!(parsed.stop_reason, StopReason::ToolUse);
    // prompt_tokens includes the cached ones on this API.
    assert_eq!(
        parsed.usage,
        Some(Usage {
            input_tokens: 146,
            output_tokens: 21,
            cache_read_tokens: 2304,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
        })
    );
}

#[test]
fn responses_stream_from_finished_items_and_the_completed_event() {
    let parsed = assemble_every_way(Api::Responses, "openai_responses/stream_function_call.sse");
    assert_eq!(
        parsed.message.content,
        vec![
            ContentBlock::Reasoning(Reasoning {
                summary: vec!["Need the listing.".into()],
                id: Some("rs_1".into()),
                encrypted_content: Some("gAAAAenc".into()),
                ..Reasoning::default()
            }),
            ContentBlock::text("Listing now."),
            ContentBlock::ToolCall(ToolCall::new(
                "call_1",
                "bash",
                json!({"command": "ls -la /app"})
            )),
        ]
    );
    assert_eq!(parsed.stop_reason, StopReason::ToolUse);
    assert_eq!(
        parsed.usage,
        Some(Usage {
            input_tokens: 330,
            output_tokens: 140,
            cache_read_tokens: 2560,
            cache_write_tokens: 0,
            reasoning_tokens: 64,
        })
    );
}

#[test]
fn text_streams_of_every_api() {
    for (api, name) in [
        (Api::Anthropic, "anthropic/stream_text.sse"),
        (Api::Chat, "openai_chat/stream_text.sse"),
        (Api::Responses, "openai_responses/stream_text.sse"),
    ] {
        let parsed = assemble_every_way(api, name);
        assert_eq!(parsed.message.text(), "pong", "{name}");
        assert_eq!(parsed.stop_reason, StopReason::EndTurn, "{name}");
        let usage = parsed.usage.unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (20, 3), "{name}");
    }
}

#[test]
fn a_stream_cut_before_its_final_event_is_incomplete_never_a_short_answer() {
    for (api, name) in [
        (Api::Anthropic, "anthropic/stream_cut.sse"),
        (Api::Chat, "openai_chat/stream_cut.sse"),
        (Api::Responses, "openai_responses/stream_cut.sse"),
        // Cut inside the tool-call fixtures too, anywhere before the end.
        (Api::Anthropic, "anthropic/stream_tool_use.sse"),
        (Api::Chat, "openai_chat/stream_tool_calls.sse"),
        (Api::Responses, "openai_responses/stream_function_call.sse"),
    ] {
        let body = fixture(name);
        let end = if name.contains("cut") {
            body.len()
        } else {
            // Half way, at an event boundary: before any finish reason or final event.
            body[..body.len() / 2].rfind("\n\n").unwrap()
        };
        let result = parse_stream(assembler(api), &body.as_bytes()[..end]);
        assert!(
            matches!(result, Err(WireError::Incomplete(_))),
            "{name}: {result:?}"
        );
    }
}

#[test]
fn errors_inside_a_stream_carry_the_provider_code() {
    let result = parse_stream(
        assembler(Api::Anthropic),
        fixture("anthropic/stream_overloaded.sse").as_bytes(),
    );
    assert_eq!(
        result,
        Err(WireError::Failed {
            code: "overloaded_error".into(),
            message: "Overloaded".into()
        })
    );
    let result = parse_stream(
        assembler(Api::Responses),
        fixture("openai_responses/stream_failed.sse").as_bytes(),
    );
    assert!(
        matches!(&result, Err(WireError::Failed { code, .. }) if code == "server_error"),
        "{result:?}"
    );
}

#[test]
fn finish_reason_length_in_the_middle_of_a_tool_call_is_max_tokens() {
    let parsed = parse_stream(
        assembler(Api::Chat),
        fixture("openai_chat/stream_length_mid_call.sse").as_bytes(),
    )
    .unwrap();
    assert_eq!(parsed.stop_reason, StopReason::MaxTokens);
    let call = parsed.message.tool_calls().next().unwrap();
    let error = call.arguments_error.as_deref().unwrap();
    assert!(error.contains("output token limit"), "{error}");
    // The raw text is kept so that replaying the turn sends what the model wrote.
    assert!(call.arguments.as_str().unwrap().starts_with("{\"command\""));
}

// ---------------------------------------------------------------------------------------------
// Whole calls

fn sse(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

fn streaming(model: &str, base_url: &str) -> ModelConfig {
    ModelConfig {
        stream: Some(true),
        ..config(model, base_url)
    }
}

#[tokio::test]
async fn streamed_calls_of_every_api_match_their_fixtures() {
    for (model, name) in [
        (ANTHROPIC, "anthropic/stream_tool_use.sse"),
        (OPENAI, "openai_chat/stream_tool_calls.sse"),
        (RESPONSES, "openai_responses/stream_function_call.sse"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(sse(fixture(name)))
            .mount(&server)
            .await;
        let response = build_model(&streaming(model, &server.uri()), &env())
            .unwrap()
            .complete(&tool_round_trip())
            .await
            .unwrap();
        assert_eq!(response.stop_reason, StopReason::ToolUse, "{model}");
        assert!(response.tool_calls().count() >= 1, "{model}");
        assert!(
            response.cost_usd.is_some(),
            "{model}: known model, known cost"
        );
        let body = &bodies(&server).await[0];
        assert_eq!(body["stream"], true, "{model}");
        if model == OPENAI {
            // Without it no usage arrives in the stream.
            assert_eq!(body["stream_options"], json!({"include_usage": true}));
        }
    }
}

#[tokio::test]
async fn a_cut_stream_is_retried_for_every_api() {
    for (model, cut, full) in [
        (
            ANTHROPIC,
            "anthropic/stream_cut.sse",
            "anthropic/stream_text.sse",
        ),
        (
            OPENAI,
            "openai_chat/stream_cut.sse",
            "openai_chat/stream_text.sse",
        ),
        (
            RESPONSES,
            "openai_responses/stream_cut.sse",
            "openai_responses/stream_text.sse",
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(sse(fixture(cut)))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(sse(fixture(full)))
            .mount(&server)
            .await;
        let response = build_model(&streaming(model, &server.uri()), &env())
            .unwrap()
            .complete(&plain_request())
            .await
            .unwrap();
        assert_eq!(response.text(), "pong", "{model}");
        // The cut attempt, then the whole one; under load the pooled connection the cut stream
        // left behind may be found closed once more, which is retried like any dropped
        // connection.
        assert!(
            (2..=3).contains(&response.attempts),
            "{model}: {} attempts",
            response.attempts
        );
    }
}

#[tokio::test]
async fn a_cut_stream_past_the_retries_is_an_infrastructure_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(fixture("openai_chat/stream_cut.sse")))
        .mount(&server)
        .await;
    let err = build_model(&streaming(OPENAI, &server.uri()), &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure, "{err}");
    assert!(err.to_string().contains("[DONE]"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn an_overloaded_event_mid_stream_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(fixture("anthropic/stream_overloaded.sse")))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(sse(fixture("anthropic/stream_text.sse")))
        .mount(&server)
        .await;
    let response = build_model(&streaming(ANTHROPIC, &server.uri()), &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!((response.text().as_str(), response.attempts), ("pong", 2));
}

#[tokio::test]
async fn anthropic_streams_by_itself_when_max_tokens_is_large() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(sse(fixture("anthropic/stream_text.sse")))
        .mount(&server)
        .await;
    let large = anthropic::STREAM_ABOVE_MAX_TOKENS + 1;
    let cfg = ModelConfig {
        max_tokens: large,
        ..config(ANTHROPIC, &server.uri())
    };
    assert_eq!(cfg.stream, None, "the default decides by max_tokens");
    let model = build_model(&cfg, &env()).unwrap();
    let response = model.complete(&plain_request()).await.unwrap();
    assert_eq!(response.text(), "pong");
    let small = ModelRequest {
        max_tokens: Some(1024),
        ..plain_request()
    };
    // A small request of the same model goes out plain (and the SSE answer still parses, as a
    // server that streams regardless would send it).
    model.complete(&small).await.unwrap();
    let sent = bodies(&server).await;
    assert_eq!(sent[0]["stream"], true);
    assert_eq!(sent[0]["max_tokens"], large);
    assert_eq!(sent[1]["stream"], false);

    // `stream = false` is obeyed even for a large max_tokens; OpenAI never streams by default.
    let plain = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture("anthropic/text.json"), "application/json"),
        )
        .mount(&plain)
        .await;
    let cfg = ModelConfig {
        max_tokens: large,
        stream: Some(false),
        ..config(ANTHROPIC, &plain.uri())
    };
    build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(bodies(&plain).await[0]["stream"], false);
}

#[tokio::test]
async fn a_server_that_ignores_stream_true_is_read_as_a_plain_answer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture("openai_chat/text.json"), "application/json"),
        )
        .mount(&server)
        .await;
    let response = build_model(&streaming(OPENAI, &server.uri()), &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!((response.text().as_str(), response.attempts), ("pong", 1));
}

/// A raw HTTP/1.1 server: connection `n` gets `plans[n]` (the last plan repeats). Each plan
/// sends a chunked SSE response: the given events, then either the end of the body, a pause
/// longer than any idle timeout, or an abrupt close.
#[derive(Clone)]
enum Ending {
    Complete,
    Stall,
    Drop,
}

async fn raw_server(plans: Vec<(String, Ending)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (body, ending) = plans[n.min(plans.len() - 1)].clone();
            tokio::spawn(async move {
                // Read the request head and its body (content-length) before answering.
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(read) = socket.read(&mut buf).await else {
                        return;
                    };
                    if read == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..read]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                for event in body.split_inclusive("\n\n") {
                    let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                    let _ = socket.write_all(chunk.as_bytes()).await;
                    let _ = socket.flush().await;
                }
                match ending {
                    Ending::Complete => {
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                    }
                    Ending::Stall => tokio::time::sleep(Duration::from_secs(30)).await,
                    Ending::Drop => {}
                }
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn an_idle_stream_times_out_and_is_retried() {
    let full = fixture("openai_chat/stream_text.sse");
    let first_half = fixture("openai_chat/stream_cut.sse");
    let (url, connections) =
        raw_server(vec![(first_half, Ending::Stall), (full, Ending::Complete)]).await;
    let cfg = ModelConfig {
        idle_timeout: Duration::from_millis(300),
        ..streaming(OPENAI, &url)
    };
    let response = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!((response.text().as_str(), response.attempts), ("pong", 2));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_idle_stream_past_the_retries_says_it_was_idle() {
    let (url, _) = raw_server(vec![(fixture("anthropic/stream_cut.sse"), Ending::Stall)]).await;
    let cfg = ModelConfig {
        idle_timeout: Duration::from_millis(200),
        ..streaming(ANTHROPIC, &url)
    };
    let err = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert!(err.is_infrastructure(), "{err}");
    assert!(err.to_string().contains("idle for 200ms"), "{err}");
}

#[tokio::test]
async fn a_connection_dropped_mid_stream_is_retried() {
    let (url, connections) = raw_server(vec![
        (fixture("anthropic/stream_cut.sse"), Ending::Drop),
        (fixture("anthropic/stream_text.sse"), Ending::Complete),
    ])
    .await;
    let model: Arc<dyn Model> = build_model(&streaming(ANTHROPIC, &url), &env()).unwrap();
    let response = model.complete(&plain_request()).await.unwrap();
    assert_eq!((response.text().as_str(), response.attempts), ("pong", 2));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

/// Real llama.cpp answers (llama-server with SmolLM2-135M, saved from the real-server suite's
/// setup): the plain and the streamed form of the same greedy turn agree.
#[test]
fn real_llama_cpp_answers_plain_and_streamed_agree() {
    let plain =
        openai_chat::parse_response(fixture("openai_chat/llamacpp_tool_call.json").as_bytes())
            .unwrap();
    let streamed = parse_stream(
        assembler(Api::Chat),
        fixture("openai_chat/llamacpp_stream_tool_call.sse").as_bytes(),
    )
    .unwrap();
    for parsed in [&plain, &streamed] {
        // finish_reason "length" alongside complete calls: reported as such.
        assert_eq!(parsed.stop_reason, StopReason::MaxTokens);
        let calls: Vec<&ToolCall> = parsed.message.tool_calls().collect();
        assert!(!calls.is_empty());
        for call in &calls {
            assert_eq!(call.name, "bash");
            // Ids are 32 random characters, not call_…: kept as they are.
            assert_eq!(call.id.len(), 32, "{}", call.id);
            assert!(call.arguments.is_object() || call.arguments_error.is_some());
        }
        // Usage arrives in a last chunk with `choices: []` (and llama.cpp's own `timings`).
        let usage = parsed.usage.unwrap();
        assert!(usage.output_tokens > 0 && usage.input_tokens + usage.cache_read_tokens > 0);
    }
    let names = |p: &Parsed| -> Vec<(String, serde_json::Value)> {
        p.message
            .tool_calls()
            .map(|c| (c.name.clone(), c.arguments.clone()))
            .collect()
    };
    assert_eq!(names(&plain), names(&streamed));
}

/// llama.cpp's 500 for history arguments it cannot parse is deterministic: one attempt, a
/// bad-request error, not minutes of retries.
#[tokio::test]
async fn llama_cpp_bad_arguments_500_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_raw(
            fixture("openai_chat/llamacpp_error_500_bad_arguments.json"),
            "application/json",
        ))
        .mount(&server)
        .await;
    let err = build_model(&config("openai-compatible/local", &server.uri()), &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}
