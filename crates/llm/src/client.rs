//! The HTTP-backed [`Model`]: wire functions + transport + retries + accounting.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{ErrorKind, LlmError, classify_status};
use crate::model::{Model, ProviderKind};
use crate::price::PriceTable;
use crate::retry::{self, AttemptError, RetryPolicy};
use crate::secret::ApiKey;
use crate::transport::{
    HeaderMap, HeaderName, HeaderValue, HttpRequest, HttpResponse, HttpTransport,
};
use crate::types::{ModelRequest, ModelResponse, ReasoningEffort};
use crate::wire::{
    self, ChatDialect, Parsed, WireError, WireOptions, anthropic, openai_chat, openai_responses,
};

const CONTENT_TYPE: &str = "content-type";
const APPLICATION_JSON: &str = "application/json";

/// Which request/response format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Anthropic,
    Chat(ChatDialect),
    Responses,
}

/// Per-model defaults that a request may override.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub reasoning_effort: Option<ReasoningEffort>,
    pub prompt_caching: bool,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

/// A model served over HTTP by one of the supported APIs.
pub struct HttpModel {
    name: String,
    provider: ProviderKind,
    api: Api,
    model: String,
    base_url: String,
    url: String,
    headers: HeaderMap,
    /// Kept only to scrub it from error text the provider might echo.
    key: Option<ApiKey>,
    settings: Settings,
    prices: PriceTable,
    transport: Arc<dyn HttpTransport>,
}

impl fmt::Debug for HttpModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpModel")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "[REDACTED]"))
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn join_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

impl HttpModel {
    pub(crate) fn new(
        provider: ProviderKind,
        model: &str,
        base_url: &str,
        key: Option<ApiKey>,
        settings: Settings,
        prices: PriceTable,
        transport: Arc<dyn HttpTransport>,
    ) -> Result<Self, LlmError> {
        let (api, url) = match provider {
            ProviderKind::Anthropic => {
                // The SDKs' base excludes /v1; accept it with /v1 too rather than double it.
                let base = base_url.trim_end_matches('/');
                let base = base.strip_suffix("/v1").unwrap_or(base);
                (Api::Anthropic, join_url(base, anthropic::MESSAGES_PATH))
            }
            ProviderKind::OpenAi => (
                Api::Chat(ChatDialect::OpenAi),
                join_url(base_url, openai_chat::CHAT_COMPLETIONS_PATH),
            ),
            ProviderKind::OpenAiCompatible => (
                Api::Chat(ChatDialect::Compatible),
                join_url(base_url, openai_chat::CHAT_COMPLETIONS_PATH),
            ),
            ProviderKind::OpenAiResponses => (
                Api::Responses,
                join_url(base_url, openai_responses::RESPONSES_PATH),
            ),
            ProviderKind::Scripted => {
                return Err(LlmError::Config(
                    "the scripted model is not served over HTTP".to_owned(),
                ));
            }
        };

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(APPLICATION_JSON));
        if api == Api::Anthropic {
            headers.insert(
                anthropic::HEADER_VERSION,
                HeaderValue::from_static(anthropic::API_VERSION),
            );
        }
        if let Some(key) = &key {
            let (name, value) = match api {
                Api::Anthropic => (anthropic::HEADER_API_KEY, key.expose().to_owned()),
                Api::Chat(_) | Api::Responses => (
                    openai_chat::HEADER_AUTHORIZATION,
                    format!("Bearer {}", key.expose()),
                ),
            };
            // The error must not quote the value: it is the key.
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                LlmError::Config(format!(
                    "{provider}: the API key contains characters that cannot go in an HTTP header"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }

        Ok(Self {
            name: format!("{provider}/{model}"),
            provider,
            api,
            model: model.to_owned(),
            base_url: base_url.to_owned(),
            url,
            headers,
            key,
            settings,
            prices,
            transport,
        })
    }

    /// The URL requests are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn redact(&self, error: LlmError) -> LlmError {
        match &self.key {
            Some(key) => error.redact(key.expose()),
            None => error,
        }
    }

    fn request_id(&self, response: &HttpResponse) -> Option<String> {
        let header = match self.api {
            Api::Anthropic => anthropic::HEADER_REQUEST_ID,
            Api::Chat(_) | Api::Responses => openai_chat::HEADER_REQUEST_ID,
        };
        response.header(header).map(str::to_owned)
    }

    /// One HTTP round trip, its outcome classified for the retry loop.
    async fn attempt(
        &self,
        body: Bytes,
        attempt: u32,
    ) -> Result<(Parsed, Option<String>), AttemptError> {
        let provider = self.provider.as_str();
        let started = Instant::now();
        let request = HttpRequest {
            url: self.url.clone(),
            headers: self.headers.clone(),
            body,
            timeout: self.settings.timeout,
        };
        let response = match self.transport.post(request).await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(provider, attempt, error = %err.message, "model call: no response");
                let message = if err.timed_out {
                    format!(
                        "timed out after {:?}: {}",
                        self.settings.timeout, err.message
                    )
                } else {
                    err.message
                };
                return Err(AttemptError::Retry {
                    error: self.redact(LlmError::Connection {
                        provider: provider.to_owned(),
                        url: self.url.clone(),
                        message,
                        timed_out: err.timed_out,
                        attempts: attempt,
                    }),
                    retry_after: None,
                });
            }
        };
        let request_id = self.request_id(&response);
        tracing::debug!(
            provider,
            attempt,
            status = response.status,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            request_id = request_id.as_deref().unwrap_or(""),
            "model call: response"
        );

        if !(200..300).contains(&response.status) {
            let info = wire::parse_error_body(&response.body);
            let kind = classify_status(response.status, info.error_type.as_deref(), &info.message);
            let retryable = kind != ErrorKind::ContextOverflow
                && retry::should_retry_status(
                    response.status,
                    info.error_type.as_deref(),
                    &response.headers,
                );
            let error = self.redact(LlmError::Http {
                provider: provider.to_owned(),
                url: self.url.clone(),
                status: response.status,
                kind,
                error_type: info.error_type,
                message: info.message,
                request_id,
                attempts: attempt,
            });
            return Err(if retryable {
                AttemptError::Retry {
                    error,
                    retry_after: retry::retry_after(&response.headers, SystemTime::now()),
                }
            } else {
                AttemptError::Fatal(error)
            });
        }

        let parsed = match self.api {
            Api::Anthropic => anthropic::parse_response(&response.body),
            Api::Chat(_) => openai_chat::parse_response(&response.body),
            Api::Responses => openai_responses::parse_response(&response.body),
        };
        match parsed {
            Ok(parsed) => Ok((parsed, request_id)),
            Err(WireError::Malformed(message)) => {
                Err(AttemptError::Fatal(self.redact(LlmError::Malformed {
                    provider: provider.to_owned(),
                    url: self.url.clone(),
                    message,
                    request_id,
                })))
            }
            Err(WireError::Failed { code, message }) => {
                let kind = classify_failed_code(&code, &message);
                let error = self.redact(LlmError::Failed {
                    provider: provider.to_owned(),
                    kind,
                    code,
                    message,
                    request_id,
                    attempts: attempt,
                });
                Err(if kind == ErrorKind::Infrastructure {
                    AttemptError::Retry {
                        error,
                        retry_after: None,
                    }
                } else {
                    AttemptError::Fatal(error)
                })
            }
        }
    }
}

/// Failures reported inside a 200 response (Responses `status: failed`, gateway error bodies):
/// rate limits and server errors are worth retrying, the rest is final.
fn classify_failed_code(code: &str, message: &str) -> ErrorKind {
    match code {
        "rate_limit_exceeded"
        | "server_error"
        | "server_is_overloaded"
        | "overloaded_error"
        | "api_error"
        | "slow_down" => ErrorKind::Infrastructure,
        "insufficient_quota" => ErrorKind::QuotaExhausted,
        _ => match classify_status(400, Some(code), message) {
            ErrorKind::ContextOverflow => ErrorKind::ContextOverflow,
            _ => ErrorKind::BadRequest,
        },
    }
}

#[async_trait]
impl Model for HttpModel {
    async fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, LlmError> {
        let started = Instant::now();
        let opts = WireOptions {
            model: &self.model,
            max_tokens: req.max_tokens.unwrap_or(self.settings.max_tokens),
            temperature: req.temperature.or(self.settings.temperature),
            reasoning_effort: req.reasoning_effort.or(self.settings.reasoning_effort),
            prompt_caching: self.settings.prompt_caching,
            dialect: match self.api {
                Api::Chat(dialect) => dialect,
                Api::Anthropic | Api::Responses => ChatDialect::OpenAi,
            },
        };
        let body = match self.api {
            Api::Anthropic => anthropic::build_request(req, &opts),
            Api::Chat(_) => openai_chat::build_request(req, &opts),
            Api::Responses => openai_responses::build_request(req, &opts),
        }
        .map_err(|err| LlmError::Config(format!("cannot encode the request: {err}")))?;
        let body = Bytes::from(body);

        let ((parsed, request_id), attempts) =
            retry::run(&self.settings.retry, self.provider.as_str(), |attempt| {
                self.attempt(body.clone(), attempt)
            })
            .await
            .map_err(|err| self.redact(err))?;

        let reported_model = parsed.model.unwrap_or_else(|| self.model.clone());
        // Without usage the cost is unknown, not zero.
        let cost_usd = parsed.usage.as_ref().and_then(|usage| {
            self.prices.cost(
                self.provider.as_str(),
                &[&self.model, &reported_model],
                usage,
            )
        });
        Ok(ModelResponse {
            message: parsed.message,
            stop_reason: parsed.stop_reason,
            usage: parsed.usage.unwrap_or_default(),
            cost_usd,
            model: reported_model,
            latency: started.elapsed(),
            request_id,
            response_id: parsed.id,
            attempts,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> ProviderKind {
        self.provider
    }

    fn endpoint(&self) -> Option<&str> {
        Some(&self.base_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_codes() {
        assert_eq!(
            classify_failed_code("rate_limit_exceeded", ""),
            ErrorKind::Infrastructure
        );
        assert_eq!(
            classify_failed_code("server_error", ""),
            ErrorKind::Infrastructure
        );
        assert_eq!(
            classify_failed_code("context_length_exceeded", ""),
            ErrorKind::ContextOverflow
        );
        assert_eq!(
            classify_failed_code("insufficient_quota", ""),
            ErrorKind::QuotaExhausted
        );
        assert_eq!(
            classify_failed_code("invalid_prompt", ""),
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn anthropic_base_with_or_without_v1() {
        assert_eq!(
            join_url("https://api.anthropic.com/", "/v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
    }
}
