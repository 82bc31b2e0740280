//! The client's own overhead per call, against a zero-latency local HTTP server.
//!
//! Run: `cargo bench -p autoagent-llm --bench overhead` (prints figures; not a timed test).
//!
//! Measures, for the same request body and the same canned Anthropic response:
//! (a) `Model::complete` through our client (request building, HTTP, parsing, accounting);
//! (b) a bare reqwest POST of the pre-built body, reading the response bytes;
//! (c) the wire functions alone (build + parse), no HTTP;
//! (d) `Model::complete` with streaming on, the server answering with the SSE form of the
//!     same turn (`stream_tool_use.sse`: thinking, text, two tool calls in 21 events);
//! (e) the SSE framing and stream assembly alone, no HTTP.
//! (a) − (b) is what the crate adds on top of the HTTP round trip; (d) − (a) is what streaming
//! costs per request against the plain path, measured in the same run.

use std::time::{Duration, Instant};

use autoagent_llm::wire::{ChatDialect, WireOptions, anthropic, parse_stream};
use autoagent_llm::{
    ContentBlock, EnvSource, Message, ModelConfig, ModelRequest, RetryPolicy, Role, ToolCall,
    ToolResult, ToolSpec, build_model,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const CALLS: usize = 2000;
const WARMUP: usize = 200;
const RESPONSE: &str = include_str!("../tests/fixtures/anthropic/tool_use.json");
const STREAM: &str = include_str!("../tests/fixtures/anthropic/stream_tool_use.sse");

/// A minimal HTTP/1.1 keep-alive server answering every POST with the canned response at once:
/// the SSE form when the request asked for a stream.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms per call.
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut reader = BufReader::new(read);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nrequest-id: req_bench\r\ncontent-length: {}\r\n\r\n{RESPONSE}",
                RESPONSE.len()
            );
            let streamed = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nrequest-id: req_bench\r\ncontent-length: {}\r\n\r\n{STREAM}",
                STREAM.len()
            );
            let mut line = String::new();
            loop {
                let mut content_length = 0usize;
                loop {
                    line.clear();
                    match reader.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        content_length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; content_length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                let wants_stream = body.windows(13).any(|w| w == b"\"stream\":true");
                let reply = if wants_stream { &streamed } else { &answer };
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A realistic mid-run request: a 2 KB system prompt, 6 tools, 5 tool round trips.
fn request() -> ModelRequest {
    let tools = ["bash", "read_file", "write_file", "edit_file", "list_dir", "finish"]
        .iter()
        .map(|name| ToolSpec {
            name: (*name).to_owned(),
            description: format!("The {name} tool: does what its name says, inside the sandbox."),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"}, "command": {"type": "string"}}, "required": ["path"]}),
        })
        .collect();
    let mut messages = vec![Message::user(
        "Fix the failing test in /app and make sure all tests pass.",
    )];
    for i in 0..5 {
        let id = format!("toolu_{i}");
        messages.push(Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::text(format!("Step {i}: running the tests.")),
                ContentBlock::ToolCall(ToolCall::new(
                    id.clone(),
                    "bash",
                    json!({"command": "pytest -q"}),
                )),
            ],
        });
        messages.push(Message::tool_results([ToolResult::ok(
            id,
            "F.. 1 failed, 2 passed\n".repeat(20),
        )]));
    }
    ModelRequest {
        system: Some("You are a careful terminal agent. ".repeat(60)),
        messages,
        tools,
        ..ModelRequest::default()
    }
}

fn summarize(label: &str, mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64 * 1e6;
    let median = samples[samples.len() / 2].as_secs_f64() * 1e6;
    let p99 = samples[samples.len() * 99 / 100].as_secs_f64() * 1e6;
    println!("{label:<44} mean {mean:>8.1} µs   median {median:>8.1} µs   p99 {p99:>8.1} µs");
    mean
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(serve(listener));

        let key = "sk-bench-not-a-real-key-000000";
        let cfg = ModelConfig {
            base_url: Some(url.clone()),
            retry: RetryPolicy::none(),
            ..ModelConfig::new("anthropic/claude-sonnet-4-5")
        };
        let model = build_model(&cfg, &EnvSource::from_vars([("ANTHROPIC_API_KEY", key)]))?;
        let req = request();
        let opts = WireOptions {
            model: "claude-sonnet-4-5",
            max_tokens: cfg.max_tokens,
            temperature: None,
            reasoning_effort: None,
            prompt_caching: true,
            dialect: ChatDialect::OpenAi,
            stream: false,
        };
        let body = anthropic::build_request(&req, &opts)?;
        println!(
            "request body {} bytes, response body {} bytes, {CALLS} calls after {WARMUP} warm-up calls\n",
            body.len(),
            RESPONSE.len()
        );

        // (a) through our client
        for _ in 0..WARMUP {
            model.complete(&req).await?;
        }
        let mut ours = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let response = model.complete(&req).await?;
            ours.push(started.elapsed());
            assert_eq!(response.usage.cache_read_tokens, 2816);
        }

        // (b) bare reqwest, same body and headers
        let client = reqwest::Client::builder().build()?;
        let endpoint = format!("{url}/v1/messages");
        let body = bytes::Bytes::from(body);
        let post = || {
            client
                .post(&endpoint)
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
        };
        for _ in 0..WARMUP {
            post().await?.bytes().await?;
        }
        let mut bare = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let bytes = post().await?.bytes().await?;
            bare.push(started.elapsed());
            assert_eq!(bytes.len(), RESPONSE.len());
        }

        // (c) wire functions only
        let mut wire = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let built = anthropic::build_request(&req, &opts)?;
            let parsed = anthropic::parse_response(RESPONSE.as_bytes())?;
            wire.push(started.elapsed());
            assert!(!built.is_empty() && parsed.usage.is_some());
        }

        // (d) through our client, streaming
        let streaming_cfg = ModelConfig {
            stream: Some(true),
            ..cfg.clone()
        };
        let streaming = build_model(
            &streaming_cfg,
            &EnvSource::from_vars([("ANTHROPIC_API_KEY", key)]),
        )?;
        for _ in 0..WARMUP {
            streaming.complete(&req).await?;
        }
        let mut streamed = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let response = streaming.complete(&req).await?;
            streamed.push(started.elapsed());
            assert_eq!(response.usage.cache_read_tokens, 2816);
            assert_eq!(response.tool_calls().count(), 2);
        }

        // (e) SSE framing + assembly only
        let mut assembly = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let started = Instant::now();
            let parsed = parse_stream(Box::new(anthropic::Stream::new()), STREAM.as_bytes())?;
            assembly.push(started.elapsed());
            assert!(parsed.usage.is_some());
        }

        let a = summarize("(a) Model::complete via autoagent-llm", ours);
        let b = summarize("(b) bare reqwest POST of the same body", bare);
        summarize("(c) wire build + parse only (no HTTP)", wire);
        let d = summarize("(d) Model::complete, streaming (SSE)", streamed);
        summarize("(e) SSE framing + assembly only (no HTTP)", assembly);
        println!("\nclient overhead beyond the HTTP round trip: {:.1} µs per call (a − b)", a - b);
        println!(
            "streaming overhead against the plain path: {:.1} µs per call (d − a, {} vs {} response bytes)",
            d - a,
            STREAM.len(),
            RESPONSE.len()
        );
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
