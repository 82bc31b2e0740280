//! The HTTP-backed [`Model`]: wire functions + transport + retries + accounting.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{ErrorKind, LlmError, classify_status};
use crate::governor::{self, Governor};
use crate::model::{Model, ProviderKind};
use crate::price::PriceTable;
use crate::retry::{self, AttemptError, RetryPolicy};
use crate::secret::ApiKey;
use crate::transport::{
    HeaderMap, HeaderName, HeaderValue, HttpRequest, HttpResponse, HttpTransport, StreamingResponse,
};
use crate::types::{ModelRequest, ModelResponse, ReasoningEffort};
use crate::wire::{
    self, ChatDialect, Parsed, SseParser, StreamAssembler, WireError, WireOptions, anthropic,
    openai_chat, openai_responses,
};

const CONTENT_TYPE: &str = "content-type";
const APPLICATION_JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

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
    /// `Some` forces streaming on or off; `None` streams only where the provider requires it.
    pub stream: Option<bool>,
    /// The longest silence allowed between two pieces of a stream.
    pub idle_timeout: Duration,
    /// Requests in flight for this provider and key (`None`: the governor's default).
    pub max_concurrent_requests: Option<u32>,
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
    governor: Arc<Governor>,
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
        let governor = governor::shared(
            provider,
            base_url,
            key.as_ref(),
            settings.max_concurrent_requests,
        );

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
            governor,
        })
    }

    /// The rate governor this model's requests go through (shared with every model of the same
    /// provider endpoint and key).
    pub fn governor(&self) -> &Arc<Governor> {
        &self.governor
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

    fn request_id(&self, headers: &HeaderMap) -> Option<String> {
        let header = match self.api {
            Api::Anthropic => anthropic::HEADER_REQUEST_ID,
            Api::Chat(_) | Api::Responses => openai_chat::HEADER_REQUEST_ID,
        };
        headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// One HTTP round trip, its outcome classified for the retry loop. The governor's permit is
    /// held until the whole answer (the whole stream) has arrived.
    async fn attempt(
        &self,
        body: Bytes,
        stream: bool,
        attempt: u32,
    ) -> Result<(Parsed, Option<String>), AttemptError> {
        let _permit = self.governor.acquire().await;
        let outcome = self.attempt_unpaced(body, stream, attempt).await;
        match &outcome {
            Ok(_) => self.governor.on_success(),
            Err(AttemptError::Retry { error, retry_after })
                if matches!(error.status(), Some(429 | 529)) =>
            {
                // The pool waits as long as this request will before its next attempt.
                self.governor
                    .on_throttled(self.settings.retry.delay(attempt, *retry_after));
            }
            Err(_) => {}
        }
        outcome
    }

    async fn attempt_unpaced(
        &self,
        body: Bytes,
        stream: bool,
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
        let response = if stream {
            self.transport.post_stream(request).await
        } else {
            self.transport
                .post(request)
                .await
                .map(|response| StreamingResponse {
                    status: response.status,
                    headers: response.headers.clone(),
                    body: whole(response.body),
                })
        };
        let response = match response {
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
                return Err(self.connection_error(message, err.timed_out, attempt));
            }
        };
        let request_id = self.request_id(&response.headers);
        self.governor
            .observe_headers(&response.headers, self.settings.retry.max_retry_after);
        tracing::debug!(
            provider,
            attempt,
            status = response.status,
            stream,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            request_id = request_id.as_deref().unwrap_or(""),
            "model call: response"
        );

        let event_stream = response
            .header(CONTENT_TYPE)
            .is_some_and(|t| t.contains(EVENT_STREAM));
        if !(200..300).contains(&response.status) || !event_stream {
            // Error bodies are JSON even for streaming requests, and a server that ignores
            // `"stream": true` answers with a plain body: both are read whole. (A server that
            // streams unasked is read as a stream.)
            let response = match response.collect().await {
                Ok(response) => response,
                Err(err) => {
                    let message = format!("the response body broke off: {}", err.message);
                    return Err(self.connection_error(message, err.timed_out, attempt));
                }
            };
            if !(200..300).contains(&response.status) {
                return Err(self.status_error(&response, request_id, attempt));
            }
            let parsed = match self.api {
                Api::Anthropic => anthropic::parse_response(&response.body),
                Api::Chat(_) => openai_chat::parse_response(&response.body),
                Api::Responses => openai_responses::parse_response(&response.body),
            };
            return self.wire_outcome(parsed, request_id, attempt);
        }

        let parsed = match self.read_stream(response).await {
            Ok(parsed) => parsed,
            Err(StreamBroke { message, timed_out }) => {
                return Err(self.connection_error(message, timed_out, attempt));
            }
        };
        self.wire_outcome(parsed, request_id, attempt)
    }

    /// Reads events until the API's final one, with at most `idle_timeout` between pieces.
    async fn read_stream(
        &self,
        mut response: StreamingResponse,
    ) -> Result<Result<Parsed, WireError>, StreamBroke> {
        let idle = self.settings.idle_timeout;
        let mut assembler: Box<dyn StreamAssembler> = match self.api {
            Api::Anthropic => Box::new(anthropic::Stream::new()),
            Api::Chat(_) => Box::new(openai_chat::Stream::new()),
            Api::Responses => Box::new(openai_responses::Stream::new()),
        };
        let mut parser = SseParser::new();
        'read: loop {
            let chunk = match tokio::time::timeout(idle, response.body.next_chunk()).await {
                Err(_) => {
                    return Err(StreamBroke {
                        message: format!("the stream was idle for {idle:?}"),
                        timed_out: true,
                    });
                }
                Ok(Err(err)) => {
                    return Err(StreamBroke {
                        message: format!("the stream broke off: {}", err.message),
                        timed_out: err.timed_out,
                    });
                }
                Ok(Ok(None)) => {
                    if let Some(event) = parser.finish()
                        && let Err(err) = assembler.event(&event)
                    {
                        return Ok(Err(err));
                    }
                    break 'read;
                }
                Ok(Ok(Some(chunk))) => chunk,
            };
            for event in parser.push(&chunk) {
                if let Err(err) = assembler.event(&event) {
                    return Ok(Err(err));
                }
                if assembler.is_complete() {
                    break 'read;
                }
            }
        }
        Ok(assembler.finish())
    }

    fn connection_error(&self, message: String, timed_out: bool, attempt: u32) -> AttemptError {
        AttemptError::Retry {
            error: self.redact(LlmError::Connection {
                provider: self.provider.as_str().to_owned(),
                url: self.url.clone(),
                message,
                timed_out,
                attempts: attempt,
            }),
            retry_after: None,
        }
    }

    fn status_error(
        &self,
        response: &HttpResponse,
        request_id: Option<String>,
        attempt: u32,
    ) -> AttemptError {
        let info = wire::parse_error_body(&response.body);
        let kind = classify_status(response.status, info.error_type.as_deref(), &info.message);
        // A 5xx classified as our own bad request (see classify_status) fails the same way on
        // every attempt.
        let deterministic = kind == ErrorKind::BadRequest && response.status >= 500;
        let retryable = kind != ErrorKind::ContextOverflow
            && !deterministic
            && retry::should_retry_status(
                response.status,
                info.error_type.as_deref(),
                &response.headers,
            );
        let error = self.redact(LlmError::Http {
            provider: self.provider.as_str().to_owned(),
            url: self.url.clone(),
            status: response.status,
            kind,
            error_type: info.error_type,
            message: info.message,
            request_id,
            attempts: attempt,
        });
        if retryable {
            AttemptError::Retry {
                error,
                retry_after: retry::retry_after(&response.headers, SystemTime::now()),
            }
        } else {
            AttemptError::Fatal(error)
        }
    }

    // The same outcome type as the retry loop's attempts (whose errors carry the whole error).
    #[allow(clippy::result_large_err)]
    fn wire_outcome(
        &self,
        parsed: Result<Parsed, WireError>,
        request_id: Option<String>,
        attempt: u32,
    ) -> Result<(Parsed, Option<String>), AttemptError> {
        let provider = self.provider.as_str();
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
            // A cut stream may hold a truncated answer: never pass it on, try again.
            Err(WireError::Incomplete(message)) => {
                Err(self.connection_error(message, false, attempt))
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

/// The connection under a stream stalled or broke (retried).
struct StreamBroke {
    message: String,
    timed_out: bool,
}

fn whole(body: Bytes) -> Box<dyn crate::transport::ByteStream> {
    struct Whole(Option<Bytes>);
    #[async_trait]
    impl crate::transport::ByteStream for Whole {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, crate::transport::TransportError> {
            Ok(self.0.take())
        }
    }
    Box::new(Whole(Some(body)))
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
        let mut opts = WireOptions {
            model: &self.model,
            max_tokens: req.max_tokens.unwrap_or(self.settings.max_tokens),
            temperature: req.temperature.or(self.settings.temperature),
            reasoning_effort: req.reasoning_effort.or(self.settings.reasoning_effort),
            prompt_caching: self.settings.prompt_caching,
            dialect: match self.api {
                Api::Chat(dialect) => dialect,
                Api::Anthropic | Api::Responses => ChatDialect::OpenAi,
            },
            stream: false,
        };
        opts.stream = self.settings.stream.unwrap_or_else(|| {
            self.api == Api::Anthropic && anthropic::needs_streaming(req, &opts)
        });
        let stream = opts.stream;
        let body = match self.api {
            Api::Anthropic => anthropic::build_request(req, &opts),
            Api::Chat(_) => openai_chat::build_request(req, &opts),
            Api::Responses => openai_responses::build_request(req, &opts),
        }
        .map_err(|err| LlmError::Config(format!("cannot encode the request: {err}")))?;
        let body = Bytes::from(body);

        let ((parsed, request_id), attempts) =
            retry::run(&self.settings.retry, self.provider.as_str(), |attempt| {
                self.attempt(body.clone(), stream, attempt)
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
