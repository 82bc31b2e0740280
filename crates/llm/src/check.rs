//! `autoagent models check`: one tiny request that proves a model is reachable and priced.

use std::fmt;
use std::time::Duration;

use crate::config::{ModelConfig, build_model};
use crate::env::{EnvSource, vars};
use crate::error::{ErrorKind, LlmError};
use crate::model::{Model, ProviderKind};
use crate::retry::RetryPolicy;
use crate::types::{ModelRequest, StopReason, Usage};

/// The prompt of the check; short, so that it costs a fraction of a cent.
pub const CHECK_PROMPT: &str = "Reply with the single word: pong";
/// Room for a reasoning model to think briefly before answering.
const CHECK_MAX_TOKENS: u32 = 1024;

/// What a successful check saw.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// `provider/model` as configured.
    pub name: String,
    pub provider: ProviderKind,
    pub endpoint: Option<String>,
    /// The model id the provider reported.
    pub reported_model: String,
    pub answer: String,
    pub stop_reason: StopReason,
    pub latency: Duration,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub request_id: Option<String>,
    pub attempts: u32,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model:     {} ({})", self.name, self.reported_model)?;
        if let Some(endpoint) = &self.endpoint {
            writeln!(f, "endpoint:  {endpoint}")?;
        }
        writeln!(
            f,
            "answer:    {:?} (stop: {})",
            self.answer.trim(),
            self.stop_reason
        )?;
        let retries = if self.attempts > 1 {
            format!(" over {} attempts", self.attempts)
        } else {
            String::new()
        };
        writeln!(f, "latency:   {} ms{retries}", self.latency.as_millis())?;
        let u = &self.usage;
        writeln!(
            f,
            "tokens:    {} in, {} out, {} cache read, {} cache write{}",
            u.input_tokens,
            u.output_tokens,
            u.cache_read_tokens,
            u.cache_write_tokens,
            if u.reasoning_tokens > 0 {
                format!(" ({} reasoning)", u.reasoning_tokens)
            } else {
                String::new()
            }
        )?;
        match self.cost_usd {
            Some(cost) => writeln!(f, "cost:      ${cost:.6}")?,
            None => writeln!(
                f,
                "cost:      unknown (no price for this model; add one under prices)"
            )?,
        }
        if let Some(id) = &self.request_id {
            writeln!(f, "request:   {id}")?;
        }
        Ok(())
    }
}

/// Sends the check request to an already built model.
pub async fn check_model(model: &dyn Model) -> Result<CheckReport, LlmError> {
    let request = ModelRequest {
        max_tokens: Some(CHECK_MAX_TOKENS),
        ..ModelRequest::new("You are a connectivity check.", CHECK_PROMPT)
    };
    let response = model.complete(&request).await?;
    Ok(CheckReport {
        name: model.name().to_owned(),
        provider: model.provider(),
        endpoint: model.endpoint().map(str::to_owned),
        reported_model: response.model.clone(),
        answer: response.text(),
        stop_reason: response.stop_reason.clone(),
        latency: response.latency,
        usage: response.usage,
        cost_usd: response.cost_usd,
        request_id: response.request_id.clone(),
        attempts: response.attempts,
    })
}

/// Builds the model of `cfg` and checks it. Retries are cut to one so that a wrong base URL or
/// a dead server is reported in seconds, not minutes.
pub async fn check(cfg: &ModelConfig, env: &EnvSource) -> Result<CheckReport, LlmError> {
    let mut cfg = cfg.clone();
    cfg.retry = RetryPolicy {
        max_attempts: cfg.retry.max_attempts.min(2),
        max_retry_after: cfg.retry.max_retry_after.min(Duration::from_secs(5)),
        ..cfg.retry
    };
    let model = build_model(&cfg, env)?;
    check_model(model.as_ref()).await
}

/// The error with advice on what to fix, for people.
pub fn explain(err: &LlmError) -> String {
    let key_var = |provider: &str| {
        if provider == ProviderKind::Anthropic.as_str() {
            vars::ANTHROPIC_API_KEY
        } else {
            vars::OPENAI_API_KEY
        }
    };
    let base_var = |provider: &str| {
        if provider == ProviderKind::Anthropic.as_str() {
            vars::ANTHROPIC_BASE_URL
        } else {
            vars::OPENAI_BASE_URL
        }
    };
    let hint = match err {
        LlmError::MissingKey { .. } | LlmError::Config(_) | LlmError::Script(_) => None,
        LlmError::Connection { provider, url, .. } => Some(format!(
            "nothing answered at {url}: is the server up, and is the base URL right? \
             Change it with --base-url or {}.",
            base_var(provider)
        )),
        LlmError::Malformed { url, .. } => Some(format!(
            "the server at {url} does not answer like this provider's API; check the base URL \
             (OpenAI-compatible servers usually end in /v1)."
        )),
        LlmError::Http { provider, .. } | LlmError::Failed { provider, .. } => match err.kind() {
            ErrorKind::Auth => Some(format!(
                "the provider rejected the API key: check {}.",
                key_var(provider)
            )),
            ErrorKind::NotFound => Some(
                "no such model or endpoint: check the model name after the provider/ prefix, \
                 and the base URL."
                    .to_owned(),
            ),
            ErrorKind::QuotaExhausted => {
                Some("the account is out of credit or quota; add credit and retry.".to_owned())
            }
            ErrorKind::Infrastructure => {
                Some("the provider is unavailable or rate limiting; try again later.".to_owned())
            }
            ErrorKind::BadRequest
            | ErrorKind::ContextOverflow
            | ErrorKind::Malformed
            | ErrorKind::Config
            | ErrorKind::Script => None,
        },
    };
    match hint {
        Some(hint) => format!("{err}\n  hint: {hint}"),
        None => err.to_string(),
    }
}
