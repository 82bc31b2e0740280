//! Typed errors, classified so that callers can tell "the provider is down" from "our bug".

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of failure an [`LlmError`] is, which decides what a caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The provider could not serve us: unreachable, timing out, overloaded or rate limiting
    /// past the retry budget, or 5xx. Not the agent's fault: an eval records an infra error.
    Infrastructure,
    /// 200 OK with a body we cannot read. Usually a gateway or a broken local server; also
    /// counted as infrastructure.
    Malformed,
    /// The provider rejected the request (400, 422, other 4xx): a bug on our side.
    BadRequest,
    /// The conversation (or the request body) is too large for the model: compact and retry.
    ContextOverflow,
    /// 401/403, or no key configured.
    Auth,
    /// 404: usually a wrong model name or base URL.
    NotFound,
    /// Out of credit (OpenAI `insufficient_quota`, Anthropic 402): retrying will not help.
    QuotaExhausted,
    /// Invalid model string or configuration.
    Config,
    /// The scripted model ran out of turns or an expectation failed: a test went wrong.
    Script,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Infrastructure => "infrastructure",
            Self::Malformed => "malformed",
            Self::BadRequest => "bad_request",
            Self::ContextOverflow => "context_overflow",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Config => "config",
            Self::Script => "script",
        }
    }

    /// The provider side failed; the task or agent did nothing wrong.
    pub fn is_infrastructure(self) -> bool {
        match self {
            Self::Infrastructure | Self::Malformed => true,
            Self::BadRequest
            | Self::ContextOverflow
            | Self::Auth
            | Self::NotFound
            | Self::QuotaExhausted
            | Self::Config
            | Self::Script => false,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any failure of a model call.
///
/// No variant ever holds an API key: clients redact the key from every string they put here,
/// including text echoed back by the provider.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error status (after retries, when the status is retryable).
    #[error(
        "{provider}: HTTP {status}{} from {url}: {message}{}",
        fmt_type(error_type.as_deref()),
        fmt_tail(request_id.as_deref(), *attempts)
    )]
    Http {
        provider: String,
        url: String,
        status: u16,
        kind: ErrorKind,
        /// The provider's error type or code (`rate_limit_error`, `insufficient_quota`, …).
        error_type: Option<String>,
        /// The provider's error message (or the start of the body when it has none).
        message: String,
        request_id: Option<String>,
        attempts: u32,
    },
    /// No HTTP answer: connection refused, DNS, TLS, reset, or the request timed out.
    #[error(
        "{provider}: cannot reach {url}: {message}{}",
        fmt_tail(None, *attempts)
    )]
    Connection {
        provider: String,
        url: String,
        message: String,
        timed_out: bool,
        attempts: u32,
    },
    /// The provider answered 200 but reported a failure in the body (Responses `status: failed`).
    #[error(
        "{provider}: the response failed ({code}): {message}{}",
        fmt_tail(request_id.as_deref(), *attempts)
    )]
    Failed {
        provider: String,
        kind: ErrorKind,
        code: String,
        message: String,
        request_id: Option<String>,
        attempts: u32,
    },
    /// The provider answered 200 with a body we cannot read.
    #[error("{provider}: malformed response from {url}: {message}{}", fmt_tail(request_id.as_deref(), 1))]
    Malformed {
        provider: String,
        url: String,
        message: String,
        request_id: Option<String>,
    },
    /// No API key was found.
    #[error("{provider}: no API key: set {env_var} in the environment or in a .env file")]
    MissingKey { provider: String, env_var: String },
    /// The model string or configuration is invalid.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// The scripted model could not answer (script exhausted, expectation failed).
    #[error("scripted model: {0}")]
    Script(String),
}

fn fmt_type(error_type: Option<&str>) -> String {
    error_type.map(|t| format!(" {t}")).unwrap_or_default()
}

fn fmt_tail(request_id: Option<&str>, attempts: u32) -> String {
    let mut parts = Vec::new();
    if let Some(id) = request_id {
        parts.push(format!("request id {id}"));
    }
    if attempts > 1 {
        parts.push(format!("after {attempts} attempts"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

impl LlmError {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Http { kind, .. } | Self::Failed { kind, .. } => *kind,
            Self::Connection { .. } => ErrorKind::Infrastructure,
            Self::Malformed { .. } => ErrorKind::Malformed,
            Self::MissingKey { .. } => ErrorKind::Auth,
            Self::Config(_) => ErrorKind::Config,
            Self::Script(_) => ErrorKind::Script,
        }
    }

    /// The provider side failed (down, unreachable, overloaded past retries, unreadable answer):
    /// an evaluation should record an infrastructure error, not a task failure.
    pub fn is_infrastructure(&self) -> bool {
        self.kind().is_infrastructure()
    }

    /// The HTTP status, when the provider answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            Self::Connection { .. }
            | Self::Failed { .. }
            | Self::Malformed { .. }
            | Self::MissingKey { .. }
            | Self::Config(_)
            | Self::Script(_) => None,
        }
    }

    /// Records how many attempts were made before giving up.
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            Self::Http { attempts, .. }
            | Self::Connection { attempts, .. }
            | Self::Failed { attempts, .. } => *attempts = n,
            Self::Malformed { .. }
            | Self::MissingKey { .. }
            | Self::Config(_)
            | Self::Script(_) => {}
        }
        self
    }

    /// Replaces every occurrence of `secret` in the error's text, for providers that echo a key.
    pub(crate) fn redact(mut self, secret: &str) -> Self {
        let fields: Vec<&mut String> = match &mut self {
            Self::Http {
                url,
                message,
                error_type,
                request_id,
                ..
            } => [
                Some(url),
                Some(message),
                error_type.as_mut(),
                request_id.as_mut(),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Self::Connection { url, message, .. } => vec![url, message],
            Self::Failed {
                code,
                message,
                request_id,
                ..
            } => [Some(code), Some(message), request_id.as_mut()]
                .into_iter()
                .flatten()
                .collect(),
            Self::Malformed {
                url,
                message,
                request_id,
                ..
            } => [Some(url), Some(message), request_id.as_mut()]
                .into_iter()
                .flatten()
                .collect(),
            Self::MissingKey { .. } => Vec::new(),
            Self::Config(message) | Self::Script(message) => vec![message],
        };
        for field in fields {
            redact_in_place(field, secret);
        }
        self
    }
}

/// Placeholder written where a secret was.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces `secret` in `text`. Secrets shorter than 8 characters are not searched for: they
/// would match ordinary words, and no provider issues keys that short.
pub(crate) fn redact_in_place(text: &mut String, secret: &str) {
    if secret.len() >= 8 && text.contains(secret) {
        *text = text.replace(secret, REDACTED);
    }
}

/// Classifies an HTTP error status, given the provider's error type/code and message.
///
/// The status decides, except where a provider reuses a status for two meanings: 429 is a rate
/// limit (infrastructure, retried) unless the code says the quota is gone, and 400 is our bug
/// unless the message says the prompt is too long for the context window.
pub fn classify_status(status: u16, error_type: Option<&str>, message: &str) -> ErrorKind {
    if is_context_overflow(error_type, message) {
        return ErrorKind::ContextOverflow;
    }
    // llama.cpp answers 500 when the history holds tool-call arguments it cannot parse: the
    // same request fails the same way every time, so it is our bug, not an outage.
    if message
        .to_ascii_lowercase()
        .contains("failed to parse tool call arguments")
    {
        return ErrorKind::BadRequest;
    }
    match status {
        401 | 403 => ErrorKind::Auth,
        402 => ErrorKind::QuotaExhausted,
        404 => ErrorKind::NotFound,
        // Cloudflare's 32 MB request limit on Anthropic: the conversation must shrink.
        413 => ErrorKind::ContextOverflow,
        429 if is_quota_code(error_type) => ErrorKind::QuotaExhausted,
        408 | 409 | 429 => ErrorKind::Infrastructure,
        s if s >= 500 => ErrorKind::Infrastructure,
        _ => ErrorKind::BadRequest,
    }
}

/// OpenAI's "out of credit" code. It shares status 429 with rate limits but never clears by
/// waiting, so it must not be retried.
pub(crate) fn is_quota_code(error_type: Option<&str>) -> bool {
    matches!(error_type, Some("insufficient_quota" | "billing_error"))
}

/// Recognises context-window errors across providers and local servers.
fn is_context_overflow(error_type: Option<&str>, message: &str) -> bool {
    if matches!(
        error_type,
        Some("context_length_exceeded" | "exceed_context_size_error" | "request_too_large")
    ) {
        return true;
    }
    let lower = message.to_ascii_lowercase();
    [
        // Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"
        "prompt is too long",
        // OpenAI and vLLM: "This model's maximum context length is 128000 tokens…"
        "maximum context length",
        // llama.cpp: "the request exceeds the available context size"
        "exceeds the available context size",
        "context_length_exceeded",
        "context window",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(
            classify_status(400, Some("invalid_request_error"), "bad"),
            ErrorKind::BadRequest
        );
        assert_eq!(classify_status(422, None, "bad"), ErrorKind::BadRequest);
        assert_eq!(classify_status(401, None, ""), ErrorKind::Auth);
        assert_eq!(classify_status(403, None, ""), ErrorKind::Auth);
        assert_eq!(classify_status(404, None, ""), ErrorKind::NotFound);
        assert_eq!(
            classify_status(429, Some("rate_limit_exceeded"), ""),
            ErrorKind::Infrastructure
        );
        assert_eq!(
            classify_status(429, Some("insufficient_quota"), ""),
            ErrorKind::QuotaExhausted
        );
        assert_eq!(
            classify_status(529, Some("overloaded_error"), ""),
            ErrorKind::Infrastructure
        );
        assert_eq!(classify_status(503, None, ""), ErrorKind::Infrastructure);
        assert_eq!(classify_status(413, None, ""), ErrorKind::ContextOverflow);
        // llama.cpp's answer to history arguments it cannot parse (a real response, saved in
        // tests/fixtures/openai_chat/llamacpp_error_500_bad_arguments.json).
        assert_eq!(
            classify_status(
                500,
                Some("server_error"),
                "Failed to parse tool call arguments as JSON: [json.exception.parse_error.101]"
            ),
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn context_overflow_is_recognised_per_provider() {
        assert_eq!(
            classify_status(
                400,
                Some("invalid_request_error"),
                "prompt is too long: 210000 tokens > 200000 maximum"
            ),
            ErrorKind::ContextOverflow
        );
        assert_eq!(
            classify_status(400, Some("context_length_exceeded"), "whatever"),
            ErrorKind::ContextOverflow
        );
        assert_eq!(
            classify_status(
                400,
                None,
                "This model's maximum context length is 32768 tokens."
            ),
            ErrorKind::ContextOverflow
        );
        assert_eq!(
            classify_status(
                400,
                Some("exceed_context_size_error"),
                "the request exceeds the available context size"
            ),
            ErrorKind::ContextOverflow
        );
    }

    #[test]
    fn redaction_reaches_every_text_field() {
        let secret = "sk-test-SECRET-123456";
        let err = LlmError::Http {
            provider: "openai".into(),
            url: format!("http://x/{secret}"),
            status: 401,
            kind: ErrorKind::Auth,
            error_type: Some(secret.into()),
            message: format!("Incorrect API key provided: {secret}."),
            request_id: None,
            attempts: 1,
        }
        .redact(secret);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains(REDACTED));
    }

    #[test]
    fn display_names_provider_status_and_message() {
        let err = LlmError::Http {
            provider: "anthropic".into(),
            url: "http://127.0.0.1:1/v1/messages".into(),
            status: 503,
            kind: ErrorKind::Infrastructure,
            error_type: Some("api_error".into()),
            message: "down".into(),
            request_id: Some("req_1".into()),
            attempts: 3,
        };
        assert_eq!(
            err.to_string(),
            "anthropic: HTTP 503 api_error from http://127.0.0.1:1/v1/messages: down (request id req_1, after 3 attempts)"
        );
        assert!(err.is_infrastructure());
    }
}
