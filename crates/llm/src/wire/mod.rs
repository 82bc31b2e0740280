//! Pure functions between our neutral types and each provider's JSON: no I/O here, so every rule
//! is unit-tested with JSON fixtures.
//!
//! Requests are serialised from borrowed structs (no copy of the conversation); responses are read
//! into tolerant structs (every field optional, unknown block types ignored), because local
//! servers and new API versions add, drop or `null` fields.

pub mod anthropic;
pub mod openai_chat;
pub mod openai_responses;
pub mod sse;

use serde::Deserialize;
use serde_json::Value;

use crate::types::{ContentBlock, Message, ReasoningEffort, StopReason, ToolChoice, Usage};
pub use sse::{SseEvent, SseParser};

/// Request settings resolved from the model's configuration and the request.
#[derive(Debug, Clone, PartialEq)]
pub struct WireOptions<'a> {
    /// The provider's model id (without our `provider/` prefix).
    pub model: &'a str,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Anthropic `cache_control` breakpoints (OpenAI caches automatically).
    pub prompt_caching: bool,
    /// Which Chat Completions dialect to speak.
    pub dialect: ChatDialect,
    /// Ask for server-sent events (`"stream": true`).
    pub stream: bool,
}

/// OpenAI's own API and the servers that imitate it differ in a few request fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatDialect {
    /// api.openai.com: `max_completion_tokens`, `parallel_tool_calls`, `prompt_cache_key`.
    OpenAi,
    /// vLLM, llama.cpp, Ollama: `max_tokens`, and only fields every server accepts.
    Compatible,
}

/// A provider's answer in neutral form.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub message: Message,
    pub stop_reason: StopReason,
    /// `None` when the server sent no usage (some local servers).
    pub usage: Option<Usage>,
    /// The model id the provider reports.
    pub model: Option<String>,
    /// The response's own id.
    pub id: Option<String>,
}

/// Why a 200 response did not yield a turn.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// Not the JSON we expect.
    #[error("{0}")]
    Malformed(String),
    /// The provider reported a failure in the body (Responses `status: "failed"`, or an
    /// OpenAI-compatible gateway answering 200 with an `error` object).
    #[error("{code}: {message}")]
    Failed { code: String, message: String },
    /// A stream ended before its final event: the answer may be cut short, so it is never
    /// passed on (the call is retried).
    #[error("{0}")]
    Incomplete(String),
}

/// Builds one turn from a stream of server-sent events, one implementation per API.
pub trait StreamAssembler: Send {
    /// Takes the next event. A failure the provider reports inside the stream is
    /// [`WireError::Failed`] (its code decides whether the call is retried).
    fn event(&mut self, event: &SseEvent) -> Result<(), WireError>;

    /// The API's final event has arrived; the rest of the body does not matter.
    fn is_complete(&self) -> bool;

    /// The assembled turn, or [`WireError::Incomplete`] when the final event never came.
    fn finish(self: Box<Self>) -> Result<Parsed, WireError>;
}

/// Feeds a whole SSE body through `assembler` (fixtures, benchmarks, and transports that cannot
/// stream).
pub fn parse_stream(
    mut assembler: Box<dyn StreamAssembler>,
    body: &[u8],
) -> Result<Parsed, WireError> {
    let mut parser = SseParser::new();
    for event in parser.push(body).iter().chain(parser.finish().iter()) {
        assembler.event(event)?;
        if assembler.is_complete() {
            break;
        }
    }
    assembler.finish()
}

/// When the output limit cut a tool call short, its arguments are unfinished JSON: say so, so
/// that the model (answered with a tool error) learns why, instead of a bare parse error.
pub(crate) fn mark_cut_off_calls(message: &mut Message, stop_reason: &StopReason) {
    if *stop_reason != StopReason::MaxTokens {
        return;
    }
    for block in &mut message.content {
        if let ContentBlock::ToolCall(call) = block
            && let Some(error) = &mut call.arguments_error
            && !error.starts_with(CUT_OFF)
        {
            *error = format!("{CUT_OFF} ({error})");
        }
    }
}

const CUT_OFF: &str = "the reply hit the output token limit in the middle of this call, so its arguments are incomplete";

impl From<serde_json::Error> for WireError {
    fn from(err: serde_json::Error) -> Self {
        Self::Malformed(err.to_string())
    }
}

/// The provider's error type/code and message, read from any error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// OpenAI's `code` when present (`insufficient_quota`, `context_length_exceeded`), else the
    /// `type` (`rate_limit_error`, `overloaded_error`).
    pub error_type: Option<String>,
    pub message: String,
}

/// Longest piece of a non-JSON error body kept in a message (HTML error pages can be huge).
const MAX_BODY_EXCERPT: usize = 500;

/// Reads an error body of any provider: Anthropic `{"type":"error","error":{"type","message"}}`,
/// OpenAI `{"error":{"message","type","code"}}`, and what local servers send instead
/// (`{"error":"text"}` from Ollama, `{"detail":…}` from FastAPI servers, `{"message":…}`, or
/// plain text).
pub fn parse_error_body(body: &[u8]) -> ErrorInfo {
    #[derive(Deserialize)]
    struct Envelope {
        error: Option<Value>,
        message: Option<Value>,
        detail: Option<Value>,
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        match envelope.error {
            Some(Value::Object(error)) => {
                let field = |name: &str| error.get(name).and_then(Value::as_str).map(str::to_owned);
                return ErrorInfo {
                    error_type: field("code").or_else(|| field("type")),
                    message: error.get("message").map(text).unwrap_or_default(),
                };
            }
            Some(other) => {
                return ErrorInfo {
                    error_type: None,
                    message: text(&other),
                };
            }
            None => {}
        }
        if let Some(message) = envelope.message.or(envelope.detail) {
            return ErrorInfo {
                error_type: None,
                message: text(&message),
            };
        }
    }
    let body = String::from_utf8_lossy(body);
    let trimmed = body.trim();
    let mut end = trimmed.len().min(MAX_BODY_EXCERPT);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    ErrorInfo {
        error_type: None,
        message: if trimmed.is_empty() {
            "(empty body)".to_owned()
        } else {
            trimmed[..end].to_owned()
        },
    }
}

/// Tool choice as OpenAI spells its modes (both Chat and Responses).
fn openai_tool_choice_mode(choice: &ToolChoice) -> Option<&'static str> {
    match choice {
        ToolChoice::Auto => Some("auto"),
        ToolChoice::Required => Some("required"),
        ToolChoice::None => Some("none"),
        ToolChoice::Tool(_) => None,
    }
}

/// OpenAI reasoning models reject `temperature` and think by default. Matched by name because the
/// API has no capability endpoint; unknown names are treated as ordinary models.
pub fn is_openai_reasoning_model(model: &str) -> bool {
    model.starts_with("gpt-5")
        || ["o1", "o3", "o4"]
            .iter()
            .any(|family| model == *family || model.starts_with(&format!("{family}-")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_every_shape() {
        let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#;
        assert_eq!(
            parse_error_body(anthropic),
            ErrorInfo {
                error_type: Some("overloaded_error".into()),
                message: "Overloaded".into()
            }
        );
        let openai = br#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert_eq!(
            parse_error_body(openai).error_type.as_deref(),
            Some("insufficient_quota")
        );
        let openai_tpm = br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            parse_error_body(openai_tpm).error_type.as_deref(),
            Some("rate_limit_exceeded")
        );
        let ollama = br#"{"error":"model \"qwen3\" not found, try pulling it first"}"#;
        assert_eq!(
            parse_error_body(ollama).message,
            "model \"qwen3\" not found, try pulling it first"
        );
        assert_eq!(
            parse_error_body(br#"{"detail":"Not Found"}"#).message,
            "Not Found"
        );
        assert_eq!(
            parse_error_body(b"<html>Bad Gateway</html>").message,
            "<html>Bad Gateway</html>"
        );
        assert_eq!(parse_error_body(b"").message, "(empty body)");
        let long = "é".repeat(600);
        assert!(parse_error_body(long.as_bytes()).message.len() <= MAX_BODY_EXCERPT);
    }

    #[test]
    fn reasoning_models_by_name() {
        for model in ["gpt-5", "gpt-5-mini", "o3", "o4-mini", "o1"] {
            assert!(is_openai_reasoning_model(model), "{model}");
        }
        for model in ["gpt-4.1", "gpt-4o", "omni", "qwen3"] {
            assert!(!is_openai_reasoning_model(model), "{model}");
        }
    }
}
