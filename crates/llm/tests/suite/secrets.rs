//! The API key never appears in an error, a log line or debug output, on success or failure.

use std::io::Write;
use std::sync::{Arc, Mutex};

use autoagent_llm::{EnvSource, ModelConfig, build_model};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

use super::support::{KEY, config, env, fast_retry, fixture, json_response, model, plain_request};

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_key_never_leaks() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Current-thread test runtime: everything below runs on this thread and is captured.
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary hit the same log call sites at the same time, on threads
    // without a subscriber; a call site registered in that race can cache "never interested".
    tracing::callsite::rebuild_interest_cache();
    let mut seen = Vec::<String>::new();

    // Success, Anthropic and OpenAI.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(200, fixture("anthropic/text.json")))
        .mount(&server)
        .await;
    let anthropic = model("anthropic/claude-sonnet-4-5", &server);
    let response = anthropic.complete(&plain_request()).await.unwrap();
    seen.push(format!("{response:?} {anthropic:?}"));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(200, fixture("openai_chat/text.json")))
        .mount(&server)
        .await;
    let openai = model("openai/gpt-4.1", &server);
    let response = openai.complete(&plain_request()).await.unwrap();
    seen.push(format!("{response:?} {openai:?}"));

    // 401 whose body echoes the key, on both providers.
    let echo = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}}}"#
    );
    for model_name in [
        "openai/gpt-4.1",
        "anthropic/claude-sonnet-4-5",
        "openai-responses/gpt-5",
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(json_response(401, echo.clone()))
            .mount(&server)
            .await;
        let err = model(model_name, &server)
            .complete(&plain_request())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("[REDACTED]"), "{err}");
        seen.push(format!("{err} {err:?}"));
    }

    // 500s echoing the key until the retries run out (each retry logs a warning).
    tracing::callsite::rebuild_interest_cache();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(json_response(
            500,
            format!(
                r#"{{"type":"error","error":{{"type":"api_error","message":"boom for {KEY}"}}}}"#
            ),
        ))
        .mount(&server)
        .await;
    let err = model("anthropic/claude-sonnet-4-5", &server)
        .complete(&plain_request())
        .await
        .unwrap_err();
    seen.push(format!("{err} {err:?}"));

    // Connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ModelConfig {
        retry: fast_retry(2),
        ..config("openai/gpt-4.1", &format!("http://127.0.0.1:{port}/v1"))
    };
    let refused = build_model(&cfg, &env()).unwrap();
    let err = refused.complete(&plain_request()).await.unwrap_err();
    seen.push(format!("{err} {err:?} {refused:?} {cfg:?}"));

    // Debug of the environment, from variables and from a .env file.
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(&dotenv, format!("ANTHROPIC_API_KEY={KEY}\n")).unwrap();
    let from_file = EnvSource::process_with_dotenv(&dotenv).unwrap();
    assert_eq!(from_file.get("ANTHROPIC_API_KEY").as_deref(), Some(KEY));
    seen.push(format!("{:?} {from_file:?}", env()));

    // A key with a character HTTP headers cannot carry: the error must not quote it.
    let bad_key = format!("{KEY}\n");
    let err = build_model(
        &config("openai/gpt-4.1", "http://127.0.0.1:9"),
        &EnvSource::from_vars([("OPENAI_API_KEY", bad_key.as_str())]),
    );
    if let Err(err) = err {
        seen.push(format!("{err} {err:?}"));
    }

    let logs = logs.text();
    assert!(logs.contains("retrying"), "the capture works: {logs}");
    assert!(logs.contains("model call"), "{logs}");
    for text in seen.iter().chain([&logs]) {
        assert!(!text.contains(KEY), "key leaked in: {text}");
    }
}
