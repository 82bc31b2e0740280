//! Model configuration and the constructor that turns a `provider/model` string into a [`Model`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{HttpModel, Settings};
use crate::env::{EnvSource, vars};
use crate::error::LlmError;
use crate::model::{Model, ProviderKind};
use crate::price::{Price, PriceTable};
use crate::retry::RetryPolicy;
use crate::scripted::ScriptedModel;
use crate::secret::ApiKey;
use crate::transport::{HttpTransport, ReqwestTransport};
use crate::types::{ReasoningEffort, duration_secs};

/// The model used when nothing else is configured.
pub const DEFAULT_MODEL: &str = "anthropic/claude-sonnet-4-5";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// How to reach and call one model. Deserialises from a `[model]` table of `autoagent.toml`;
/// every field but `model` has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// `provider/model`: `anthropic/claude-sonnet-4-5`, `openai/gpt-5`,
    /// `openai-responses/gpt-5`, `openai-compatible/qwen3-coder`, `scripted/path/to/script.toml`.
    pub model: String,
    /// Overrides the provider's base URL (and `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL`), e.g. to
    /// route through a gateway. Required for `openai-compatible` unless `OPENAI_BASE_URL` is set.
    pub base_url: Option<String>,
    /// The environment variable holding the key, when not the provider's usual one.
    pub api_key_env: Option<String>,
    /// Output token limit for requests that do not set one.
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Timeout of one HTTP attempt (a long thinking turn can take minutes). For a streaming
    /// request it bounds the wait for the response headers; the stream itself lasts as long as
    /// events keep coming within `idle_timeout`.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// Stream the answer (server-sent events): `true` or `false` for every request; unset
    /// streams only where the provider requires it (Anthropic with a `max_tokens` above
    /// [`crate::wire::anthropic::STREAM_ABOVE_MAX_TOKENS`]).
    pub stream: Option<bool>,
    /// The longest silence between two pieces of a stream before the attempt is abandoned and
    /// retried.
    #[serde(with = "duration_secs")]
    pub idle_timeout: Duration,
    /// Requests in flight at once for this provider endpoint and key, across every trial and
    /// the meta-agent of the process (see [`crate::governor`]). Unset:
    /// [`crate::governor::DEFAULT_MAX_CONCURRENT`]; models sharing a key use the lowest cap any
    /// of them sets.
    pub max_concurrent_requests: Option<u32>,
    pub retry: RetryPolicy,
    /// Anthropic `cache_control` breakpoints on the system prompt, tools and recent turns.
    pub prompt_caching: bool,
    /// Extra or overriding prices, keyed by `model` or `provider/model`.
    pub prices: HashMap<String, Price>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.to_owned(),
            base_url: None,
            api_key_env: None,
            max_tokens: 8192,
            temperature: None,
            reasoning_effort: None,
            timeout: Duration::from_secs(600),
            stream: None,
            // Anthropic pings every few seconds; local servers are silent while they read a
            // long prompt, which on a CPU can take a minute or two.
            idle_timeout: Duration::from_secs(180),
            max_concurrent_requests: None,
            retry: RetryPolicy::default(),
            prompt_caching: true,
            prices: HashMap::new(),
        }
    }
}

impl ModelConfig {
    /// Defaults for the given `provider/model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }
}

/// Splits `provider/model`. For `scripted`, the rest is a file path and may contain `/`.
pub fn parse_model_name(name: &str) -> Result<(ProviderKind, &str), LlmError> {
    let Some((provider, model)) = name.split_once('/') else {
        return Err(LlmError::Config(format!(
            "model {name:?} must be written provider/model, e.g. {DEFAULT_MODEL}, openai/gpt-5, \
             openai-responses/gpt-5, openai-compatible/qwen3-coder or scripted/path/to/script.toml"
        )));
    };
    let provider: ProviderKind = provider.parse()?;
    if model.trim().is_empty() {
        return Err(LlmError::Config(format!(
            "model {name:?} has no model id after the provider"
        )));
    }
    Ok((provider, model))
}

/// Builds the model named by `cfg.model`, with keys and base URLs from `env`.
pub fn build_model(cfg: &ModelConfig, env: &EnvSource) -> Result<Arc<dyn Model>, LlmError> {
    let (provider, _) = parse_model_name(&cfg.model)?;
    if provider == ProviderKind::Scripted {
        return build_model_with(cfg, env, None);
    }
    let transport: Arc<dyn HttpTransport> = ReqwestTransport::shared()?;
    build_model_with(cfg, env, Some(transport))
}

/// [`build_model`] with a given HTTP transport (for recording or fake transports); `None` uses
/// the shared reqwest one.
///
/// Each call makes a new model. For `scripted/…` that means a fresh cursor at the start of the
/// script: build one model per trial or agent run.
pub fn build_model_with(
    cfg: &ModelConfig,
    env: &EnvSource,
    transport: Option<Arc<dyn HttpTransport>>,
) -> Result<Arc<dyn Model>, LlmError> {
    let (provider, model) = parse_model_name(&cfg.model)?;
    if provider == ProviderKind::Scripted {
        return Ok(Arc::new(ScriptedModel::from_file(Path::new(model))?));
    }

    let (base_url_env, default_base_url) = match provider {
        ProviderKind::Anthropic => (vars::ANTHROPIC_BASE_URL, Some(DEFAULT_ANTHROPIC_BASE_URL)),
        ProviderKind::OpenAi | ProviderKind::OpenAiResponses => {
            (vars::OPENAI_BASE_URL, Some(DEFAULT_OPENAI_BASE_URL))
        }
        // A compatible server has no default address.
        ProviderKind::OpenAiCompatible | ProviderKind::Scripted => (vars::OPENAI_BASE_URL, None),
    };
    let base_url = cfg
        .base_url
        .clone()
        .filter(|url| !url.trim().is_empty())
        .or_else(|| env.get(base_url_env))
        .or_else(|| default_base_url.map(str::to_owned))
        .ok_or_else(|| {
            LlmError::Config(format!(
                "{} needs a base URL: pass --base-url, set base_url in the model config, or set \
                 {base_url_env} (e.g. http://localhost:11434/v1 for Ollama, \
                 http://localhost:8000/v1 for vLLM)",
                cfg.model
            ))
        })?;
    let base_url = base_url.trim().to_owned();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(LlmError::Config(format!(
            "base URL {base_url:?} of {} must start with http:// or https://",
            cfg.model
        )));
    }

    let key_env = cfg.api_key_env.clone().unwrap_or_else(|| {
        match provider {
            ProviderKind::Anthropic => vars::ANTHROPIC_API_KEY,
            _ => vars::OPENAI_API_KEY,
        }
        .to_owned()
    });
    let key = env.get(&key_env).map(|key| ApiKey::new(key.trim()));
    // Local servers usually need no key; a key variable named explicitly must exist.
    let key_required = provider != ProviderKind::OpenAiCompatible || cfg.api_key_env.is_some();
    if key.is_none() && key_required {
        return Err(LlmError::MissingKey {
            provider: provider.as_str().to_owned(),
            env_var: key_env,
        });
    }

    let prices = if provider == ProviderKind::OpenAiCompatible {
        // A local model's name says nothing about its price; only the user's table applies.
        PriceTable::user_only(cfg.prices.clone())
    } else {
        PriceTable::new(cfg.prices.clone())
    };
    let settings = Settings {
        max_tokens: cfg.max_tokens,
        temperature: cfg.temperature,
        reasoning_effort: cfg.reasoning_effort,
        prompt_caching: cfg.prompt_caching,
        timeout: cfg.timeout,
        retry: cfg.retry.clone(),
        stream: cfg.stream,
        idle_timeout: cfg.idle_timeout,
        max_concurrent_requests: cfg.max_concurrent_requests,
    };
    let transport = match transport {
        Some(transport) => transport,
        None => ReqwestTransport::shared()?,
    };
    Ok(Arc::new(HttpModel::new(
        provider, model, &base_url, key, settings, prices, transport,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn model_names() {
        assert_eq!(
            parse_model_name("anthropic/claude-sonnet-4-5").unwrap(),
            (ProviderKind::Anthropic, "claude-sonnet-4-5")
        );
        assert_eq!(
            parse_model_name("scripted/tests/fixtures/x.toml").unwrap(),
            (ProviderKind::Scripted, "tests/fixtures/x.toml")
        );
        assert_eq!(
            parse_model_name("openai-compatible/org/model-7b").unwrap(),
            (ProviderKind::OpenAiCompatible, "org/model-7b")
        );
        assert_eq!(
            parse_model_name("gpt-5").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            parse_model_name("gemini/x").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(
            parse_model_name("openai/").unwrap_err().kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let cfg: ModelConfig = toml::from_str(
            r#"
            model = "openai-compatible/qwen3-coder"
            base_url = "http://localhost:8000/v1"
            timeout = 30
            [retry]
            max_attempts = 3
            [prices."openai-compatible/qwen3-coder"]
            input = 0.1
            output = 0.2
            "#,
        )
        .unwrap();
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        assert_eq!(cfg.retry.max_attempts, 3);
        assert_eq!(cfg.retry.base_delay, RetryPolicy::default().base_delay);
        assert!(cfg.prompt_caching);
        assert_eq!(cfg.max_tokens, 8192);
        assert_eq!(cfg.prices.len(), 1);
    }
}
