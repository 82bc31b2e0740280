//! Sixteen trials at once against a server that rate-limits every third request: the shared
//! governor paces the whole pool, every trial finishes, none is scored as failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::support::{autoagent, docker_or_skip, examples};

/// What the server saw: arrival times and whether each request was refused.
#[derive(Default)]
struct Log {
    arrivals: Vec<(Instant, bool)>,
}

/// A Chat Completions server: every third request gets 429 with `retry-after: 1`; otherwise the
/// first turn of a conversation is a bash call that solves hello-file, the second says done.
struct Limited {
    log: Arc<Mutex<Log>>,
}

impl Respond for Limited {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut log = self.log.lock().unwrap();
        let n = log.arrivals.len() + 1;
        let limited = n.is_multiple_of(3);
        log.arrivals.push((Instant::now(), limited));
        drop(log);
        if limited {
            return ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let answered = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "tool");
        let message = if answered {
            json!({"role": "assistant", "content": "Done."})
        } else {
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{n}"), "type": "function",
                "function": {"name": "bash", "arguments": "{\"command\":\"echo 'Hello, world!' > /app/hello.txt\"}"}
            }]})
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": "limited",
            "choices": [{"index": 0, "message": message, "finish_reason": if answered { "stop" } else { "tool_calls" }}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
        }))
    }
}

#[test]
fn sixteen_trials_share_one_rate_governor() {
    if !docker_or_skip() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let log = Arc::new(Mutex::new(Log::default()));
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(Limited {
                log: Arc::clone(&log),
            })
            .mount(&server)
            .await;
        server
    });
    let dir = tempfile::tempdir().unwrap();
    let harness = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/harness");
    let tasks = examples().join("hello-file");
    let url = format!("{}/v1", server.uri());
    let run = autoagent(
        &[
            "eval",
            "-p",
            tasks.to_str().unwrap(),
            "-a",
            "harness",
            "--harness",
            harness.to_str().unwrap(),
            "--model",
            "openai-compatible/limited",
            "--base-url",
            &url,
            "-n",
            "16",
            "-k",
            "16",
            "-o",
            "jobs",
            "--job-name",
            "limited",
            "--json",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    let job: Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(job["n_total_trials"], 16, "{job:#}");

    // Every trial ran to its verifier and passed: none was failed by the 429s.
    let mut rewards = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("jobs/limited"))
        .unwrap()
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(entry.path().join("result.json")) else {
            continue;
        };
        let r: Value = serde_json::from_str(&text).unwrap();
        assert!(r["exception_info"].is_null(), "{r:#}");
        rewards.push(r["verifier_result"]["rewards"]["reward"].as_f64());
    }
    assert_eq!(rewards, vec![Some(1.0); 16]);

    let log = log.lock().unwrap();
    let total = log.arrivals.len();
    let refused = log.arrivals.iter().filter(|(_, limited)| *limited).count();
    // Each trial needs exactly two answers (the call, then "Done."): 32 successes. With every
    // third request refused, N - floor(N/3) = 32 gives N = 47 or 48. More would mean requests
    // were lost or repeated; the retry budget (8 attempts) is never the limit here.
    assert_eq!(total - refused, 32, "{total} requests, {refused} refused");
    assert!(
        (47..=48).contains(&total),
        "{total} requests for 32 answers"
    );

    // The whole pool pauses on a 429, not just the refused request: no new request arrives
    // between 0.3 s and 0.7 s after any refusal (retry-after: 1), allowing for requests
    // already on their way when the 429 was answered.
    for (at, _) in log.arrivals.iter().filter(|(_, limited)| *limited) {
        let during: Vec<Duration> = log
            .arrivals
            .iter()
            .filter_map(|(t, _)| t.checked_duration_since(*at))
            .filter(|d| *d > Duration::from_millis(300) && *d < Duration::from_millis(700))
            .collect();
        assert!(during.is_empty(), "requests during a pause: {during:?}");
    }
    drop(server);
}
