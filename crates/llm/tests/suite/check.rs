//! `models check`: the report on success and the advice on each common failure.

use autoagent_llm::{EnvSource, ErrorKind, ModelConfig, check, explain};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

use super::support::{KEY, env, fixture, json_response};

async fn serve(status: u16, body: String) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(status, body).insert_header("request-id", "req_check"))
        .mount(&server)
        .await;
    server
}

fn cfg(model: &str, url: &str) -> ModelConfig {
    ModelConfig {
        base_url: Some(url.to_owned()),
        ..ModelConfig::new(model)
    }
}

#[tokio::test]
async fn success_prints_answer_latency_tokens_and_cost() {
    let server = serve(200, fixture("anthropic/text.json")).await;
    let report = check(&cfg("anthropic/claude-sonnet-4-5", &server.uri()), &env())
        .await
        .unwrap();
    assert_eq!(report.answer, "pong");
    assert_eq!(report.usage.input_tokens, 12);
    assert!(report.cost_usd.is_some());
    let text = report.to_string();
    for needle in [
        "anthropic/claude-sonnet-4-5",
        "\"pong\"",
        "latency:",
        "12 in, 4 out",
        "cost:      $0.000096",
        "req_check",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    let sent = server.received_requests().await.unwrap();
    assert!(String::from_utf8_lossy(&sent[0].body).contains(autoagent_llm::check::CHECK_PROMPT));
}

#[tokio::test]
async fn unknown_price_is_reported_as_unknown() {
    let server = serve(200, fixture("openai_chat/text.json")).await;
    let report = check(
        &cfg("openai-compatible/qwen3-coder", &server.uri()),
        &EnvSource::from_vars::<&str, &str>([]),
    )
    .await
    .unwrap();
    assert_eq!(report.cost_usd, None);
    assert!(report.to_string().contains("cost:      unknown"));
}

#[tokio::test]
async fn failures_explain_what_to_fix() {
    // Missing key.
    let err = check(
        &ModelConfig::new("anthropic/claude-sonnet-4-5"),
        &EnvSource::from_vars::<&str, &str>([]),
    )
    .await
    .unwrap_err();
    assert!(
        explain(&err).contains("ANTHROPIC_API_KEY"),
        "{}",
        explain(&err)
    );

    // Wrong base URL: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = check(&cfg("openai/gpt-5", &url), &env()).await.unwrap_err();
    let text = explain(&err);
    assert!(text.contains(&url) && text.contains("--base-url"), "{text}");

    // 401.
    let server = serve(401, fixture("anthropic/error_401.json")).await;
    let err = check(&cfg("anthropic/claude-sonnet-4-5", &server.uri()), &env())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth);
    let text = explain(&err);
    assert!(
        text.contains("401") && text.contains("ANTHROPIC_API_KEY"),
        "{text}"
    );
    assert!(!text.contains(KEY));

    // 404 model.
    let server = serve(404, fixture("anthropic/error_404.json")).await;
    let err = check(
        &cfg("anthropic/claude-nonexistent-9", &server.uri()),
        &env(),
    )
    .await
    .unwrap_err();
    let text = explain(&err);
    assert!(
        text.contains("404") && text.contains("model name"),
        "{text}"
    );

    // A server that is not this API.
    let server = serve(200, "<html>hello</html>".into()).await;
    let err = check(&cfg("openai/gpt-5", &server.uri()), &env())
        .await
        .unwrap_err();
    assert!(explain(&err).contains("base URL"), "{}", explain(&err));
}
