//! Retries, backoff, retry-after and the typing of final errors.

use std::time::{Duration, Instant};

use autoagent_llm::{ErrorKind, LlmError, ModelConfig, RetryPolicy, build_model};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{config, env, fast_retry, fixture, json_response, model, plain_request};

const ANTHROPIC: &str = "anthropic/claude-sonnet-4-5";
const OPENAI: &str = "openai/gpt-4.1";

/// Mounts `first` for the next `times` requests, then `then` for every later one.
async fn failing_then(
    server: &MockServer,
    first: ResponseTemplate,
    times: u64,
    then: ResponseTemplate,
) {
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(times)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .respond_with(then)
        .mount(server)
        .await;
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

fn anthropic_ok() -> ResponseTemplate {
    json_response(200, fixture("anthropic/text.json"))
}

#[tokio::test]
async fn rate_limit_429_with_retry_after_then_success() {
    let server = MockServer::start().await;
    let limited = json_response(429, fixture("anthropic/error_429.json"))
        .insert_header("retry-after-ms", "80")
        .insert_header("anthropic-ratelimit-input-tokens-remaining", "0");
    failing_then(&server, limited, 1, anthropic_ok()).await;
    let mut cfg = config(ANTHROPIC, &server.uri());
    cfg.retry.max_retry_after = Duration::from_secs(1);
    let started = Instant::now();
    let response = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
    // The server's wait was honoured, not the 1 ms backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.attempts, 2);
    assert_eq!(response.text(), "pong");
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn retry_after_seconds_is_capped_by_policy() {
    let server = MockServer::start().await;
    let limited =
        json_response(429, fixture("anthropic/error_429.json")).insert_header("retry-after", "17");
    failing_then(&server, limited, 1, anthropic_ok()).await;
    let started = Instant::now();
    let response = model(ANTHROPIC, &server)
        .complete(&plain_request())
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.attempts, 2);
    // max_retry_after is 50 ms in the test policy.
    assert!(
        elapsed >= Duration::from_millis(50) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn overloaded_529_then_success() {
    let server = MockServer::start().await;
    failing_then(
        &server,
        json_response(529, fixture("anthropic/error_529.json")),
        1,
        anthropic_ok(),
    )
    .await;
    let response = model(ANTHROPIC, &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.attempts, 2);
}

#[tokio::test]
async fn server_error_500_twice_then_success() {
    for model_name in [ANTHROPIC, OPENAI] {
        let server = MockServer::start().await;
        let (error, ok) = if model_name == ANTHROPIC {
            (
                fixture("anthropic/error_500.json"),
                fixture("anthropic/text.json"),
            )
        } else {
            (
                fixture("openai_chat/error_500.json"),
                fixture("openai_chat/text.json"),
            )
        };
        failing_then(
            &server,
            json_response(500, error),
            2,
            json_response(200, ok),
        )
        .await;
        let response = model(model_name, &server)
            .complete(&plain_request())
            .await
            .unwrap();
        assert_eq!(response.attempts, 3, "{model_name}");
        assert_eq!(requests(&server).await, 3);
    }
}

#[tokio::test]
async fn final_503_after_retry_budget_is_infrastructure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            json_response(
                503,
                r#"{"type":"error","error":{"type":"api_error","message":"Service Unavailable"}}"#
                    .into(),
            )
            .insert_header("request-id", "req_503"),
        )
        .mount(&server)
        .await;
    let mut cfg = config(ANTHROPIC, &server.uri());
    cfg.retry = fast_retry(3);
    let err = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert!(err.is_infrastructure());
    assert_eq!(err.status(), Some(503));
    assert!(matches!(err, LlmError::Http { attempts: 3, .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("anthropic")
            && shown.contains("503")
            && shown.contains("Service Unavailable"),
        "{shown}"
    );
    assert!(
        shown.contains("after 3 attempts") && shown.contains("req_503"),
        "{shown}"
    );
    assert_eq!(requests(&server).await, 3);
}

async fn single_failure(model_name: &str, status: u16, body: String) -> (LlmError, usize) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(status, body))
        .mount(&server)
        .await;
    let err = model(model_name, &server)
        .complete(&plain_request())
        .await
        .unwrap_err();
    (err, requests(&server).await)
}

#[tokio::test]
async fn bad_request_400_is_not_retried() {
    let (err, sent) = single_failure(ANTHROPIC, 400, fixture("anthropic/error_400.json")).await;
    assert_eq!(err.kind(), ErrorKind::BadRequest);
    assert!(!err.is_infrastructure());
    assert_eq!(sent, 1);
    assert!(
        err.to_string().contains("Input should be an object"),
        "{err}"
    );
}

#[tokio::test]
async fn context_overflow_is_typed_for_both_providers() {
    let (err, sent) =
        single_failure(ANTHROPIC, 400, fixture("anthropic/error_400_too_long.json")).await;
    assert_eq!((err.kind(), sent), (ErrorKind::ContextOverflow, 1));
    let (err, sent) =
        single_failure(OPENAI, 400, fixture("openai_chat/error_400_context.json")).await;
    assert_eq!((err.kind(), sent), (ErrorKind::ContextOverflow, 1));
}

#[tokio::test]
async fn auth_and_not_found_are_not_retried() {
    let (err, sent) = single_failure(ANTHROPIC, 401, fixture("anthropic/error_401.json")).await;
    assert_eq!((err.kind(), sent), (ErrorKind::Auth, 1));
    let (err, sent) = single_failure(ANTHROPIC, 404, fixture("anthropic/error_404.json")).await;
    assert_eq!((err.kind(), sent), (ErrorKind::NotFound, 1));
    assert!(err.to_string().contains("claude-nonexistent-9"));
    let (err, sent) =
        single_failure(OPENAI, 403, r#"{"error":{"message":"forbidden"}}"#.into()).await;
    assert_eq!((err.kind(), sent), (ErrorKind::Auth, 1));
}

#[tokio::test]
async fn openai_insufficient_quota_is_not_retried_but_rate_limit_is() {
    let (err, sent) =
        single_failure(OPENAI, 429, fixture("openai_chat/error_429_quota.json")).await;
    assert_eq!((err.kind(), sent), (ErrorKind::QuotaExhausted, 1));

    let server = MockServer::start().await;
    failing_then(
        &server,
        json_response(429, fixture("openai_chat/error_429_rate.json"))
            .insert_header("retry-after", "0"),
        2,
        json_response(200, fixture("openai_chat/text.json")),
    )
    .await;
    let response = model(OPENAI, &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.attempts, 3);
}

#[tokio::test]
async fn malformed_json_is_typed_and_not_retried() {
    for (model_name, body) in [
        (
            ANTHROPIC,
            r#"{"id":"msg_1","content":[{"type":"text","text":"trunc"#,
        ),
        (OPENAI, "<html>502 Bad Gateway</html>"),
        ("openai-responses/gpt-5", r#"{"output": 7}"#),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(&server)
            .await;
        let err = model(model_name, &server)
            .complete(&plain_request())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Malformed, "{model_name}: {err}");
        assert!(err.is_infrastructure());
        assert_eq!(requests(&server).await, 1);
    }
}

#[tokio::test]
async fn responses_failed_status_is_retried_by_code() {
    let server = MockServer::start().await;
    failing_then(
        &server,
        json_response(200, fixture("openai_responses/failed.json")),
        1,
        json_response(200, fixture("openai_responses/text.json")),
    )
    .await;
    let response = model("openai-responses/gpt-5", &server)
        .complete(&plain_request())
        .await
        .unwrap();
    assert_eq!(response.attempts, 2);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(
            200,
            r#"{"status":"failed","error":{"code":"context_length_exceeded","message":"too long"}}"#.into(),
        ))
        .mount(&server)
        .await;
    let err = model("openai-responses/gpt-5", &server)
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ContextOverflow);
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn connection_refused_is_retried_then_infrastructure() {
    // Bind and drop a listener to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let cfg = ModelConfig {
        retry: fast_retry(3),
        ..config(ANTHROPIC, &url)
    };
    let err = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    let LlmError::Connection {
        attempts,
        timed_out,
        url: err_url,
        ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!((*attempts, *timed_out), (3, false));
    assert!(err_url.starts_with(&url));
    assert!(err.to_string().contains(&url), "{err}");
}

#[tokio::test]
async fn request_timeout_is_retried_then_infrastructure() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(anthropic_ok().set_delay(Duration::from_millis(500)))
        .mount(&server)
        .await;
    let cfg = ModelConfig {
        timeout: Duration::from_millis(50),
        retry: fast_retry(2),
        ..config(ANTHROPIC, &server.uri())
    };
    let err = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Connection {
                timed_out: true,
                attempts: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_infrastructure());
}

#[tokio::test]
async fn should_retry_header_overrides_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            json_response(503, fixture("anthropic/error_500.json"))
                .insert_header("x-should-retry", "false"),
        )
        .mount(&server)
        .await;
    let err = model(ANTHROPIC, &server)
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn no_retry_policy_makes_one_attempt() {
    let server = MockServer::start().await;
    failing_then(
        &server,
        json_response(529, fixture("anthropic/error_529.json")),
        1,
        anthropic_ok(),
    )
    .await;
    let cfg = ModelConfig {
        retry: RetryPolicy::none(),
        ..config(ANTHROPIC, &server.uri())
    };
    let err = build_model(&cfg, &env())
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(529));
    assert_eq!(requests(&server).await, 1);
}
