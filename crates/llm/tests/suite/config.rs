//! Model strings, keys, base URLs and .env files.

use autoagent_llm::{EnvSource, ErrorKind, LlmError, ModelConfig, build_model};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer};

use super::support::{KEY, fast_retry, fixture, json_response, plain_request};

#[test]
fn missing_key_names_the_variable() {
    for (model, var) in [
        ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
        ("openai/gpt-5", "OPENAI_API_KEY"),
        ("openai-responses/gpt-5", "OPENAI_API_KEY"),
    ] {
        let err = build_model(
            &ModelConfig::new(model),
            &EnvSource::from_vars::<&str, &str>([]),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert!(
            matches!(&err, LlmError::MissingKey { env_var, .. } if env_var == var),
            "{err:?}"
        );
        assert!(err.to_string().contains(var), "{err}");
    }
    let cfg = ModelConfig {
        api_key_env: Some("MY_GATEWAY_KEY".into()),
        ..ModelConfig::new("anthropic/claude-sonnet-4-5")
    };
    let err = build_model(&cfg, &EnvSource::from_vars([("ANTHROPIC_API_KEY", KEY)])).unwrap_err();
    assert!(err.to_string().contains("MY_GATEWAY_KEY"), "{err}");
}

#[test]
fn compatible_servers_need_a_base_url() {
    let err = build_model(
        &ModelConfig::new("openai-compatible/qwen3-coder"),
        &EnvSource::from_vars::<&str, &str>([]),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    let text = err.to_string();
    assert!(
        text.contains("base URL")
            && text.contains("--base-url")
            && text.contains("OPENAI_BASE_URL"),
        "{text}"
    );

    let cfg = ModelConfig {
        base_url: Some("localhost:8000".into()),
        ..ModelConfig::new("openai-compatible/qwen3-coder")
    };
    let err = build_model(&cfg, &EnvSource::from_vars::<&str, &str>([])).unwrap_err();
    assert!(err.to_string().contains("http://"), "{err}");
}

async fn anthropic_server(prefix: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{prefix}/v1/messages")))
        .and(header("x-api-key", "sk-from-dotenv-file-000"))
        .respond_with(json_response(200, fixture("anthropic/text.json")))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn base_url_and_key_from_env_and_dotenv() {
    let server = anthropic_server("/gateway").await;
    let dir = tempfile::tempdir().unwrap();
    let dotenv = dir.path().join(".env");
    std::fs::write(
        &dotenv,
        format!(
            "ANTHROPIC_API_KEY=sk-from-dotenv-file-000\nANTHROPIC_BASE_URL={}/gateway\n",
            server.uri()
        ),
    )
    .unwrap();
    let env = EnvSource::process_with_dotenv(&dotenv).unwrap();
    // The test must not depend on the developer's own environment.
    if std::env::var("ANTHROPIC_API_KEY").is_ok() || std::env::var("ANTHROPIC_BASE_URL").is_ok() {
        return;
    }
    let cfg = ModelConfig {
        retry: fast_retry(1),
        ..ModelConfig::new("anthropic/claude-sonnet-4-5")
    };
    let model = build_model(&cfg, &env).unwrap();
    assert_eq!(
        model.endpoint(),
        Some(format!("{}/gateway", server.uri()).as_str())
    );
    model.complete(&plain_request()).await.unwrap();
}

#[tokio::test]
async fn configured_base_url_wins_over_the_environment() {
    let server = anthropic_server("").await;
    let env = EnvSource::from_vars([
        ("ANTHROPIC_API_KEY", "sk-from-dotenv-file-000"),
        ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/wrong"),
    ]);
    let cfg = ModelConfig {
        base_url: Some(server.uri()),
        retry: fast_retry(1),
        ..ModelConfig::new("anthropic/claude-sonnet-4-5")
    };
    build_model(&cfg, &env)
        .unwrap()
        .complete(&plain_request())
        .await
        .unwrap();
}
