//! Provider-neutral conversation types: what every agent sends and receives.
//!
//! These types are serialised into trajectories and script files, so their serde shape is part of
//! the public contract: adding optional fields is fine, renaming is not.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Who wrote a message. The system prompt is not a message: it lives in [`ModelRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The user, or the runtime speaking for tools: tool results travel in user messages.
    User,
    /// The model.
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

impl Message {
    /// A user message holding one text block.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// An assistant message holding one text block.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            content: vec![ContentBlock::text(text)],
        }
    }

    /// A user message answering tool calls, one block per result.
    pub fn tool_results(results: impl IntoIterator<Item = ToolResult>) -> Self {
        Self {
            role: Role::User,
            content: results.into_iter().map(ContentBlock::ToolResult).collect(),
        }
    }

    /// The text blocks joined with newlines (reasoning and tool blocks are left out).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for block in &self.content {
            if let ContentBlock::Text { text } = block {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(text);
            }
        }
        out
    }

    /// The tool calls of this message, in order.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.content.iter().filter_map(|block| match block {
            ContentBlock::ToolCall(call) => Some(call),
            _ => None,
        })
    }

    /// The tool results of this message, in order.
    pub fn tool_results_iter(&self) -> impl Iterator<Item = &ToolResult> {
        self.content.iter().filter_map(|block| match block {
            ContentBlock::ToolResult(result) => Some(result),
            _ => None,
        })
    }
}

/// A piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    /// Model reasoning. Kept so that it can be replayed to the provider that produced it.
    Reasoning(Reasoning),
    ToolCall(ToolCall),
    ToolResult(ToolResult),
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// Reasoning ("thinking") produced by the model.
///
/// Only the provider that produced a reasoning block can take it back: an Anthropic block is
/// replayed when it has a `signature` (or `redacted` data), a Responses item when it has
/// `encrypted_content`. Other reasoning is dropped from requests (it is still in the trajectory).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// The visible reasoning text (Anthropic `thinking`, Responses reasoning text, or the
    /// `reasoning_content` of OpenAI-compatible servers). Empty when the provider hides it.
    #[serde(default)]
    pub text: String,
    /// Responses API reasoning summaries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<String>,
    /// Anthropic thinking signature, required to replay the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Anthropic `redacted_thinking` data (opaque, encrypted by the provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// Responses API reasoning item id (`rs_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Responses API `encrypted_content`, required to replay the item when `store` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
}

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Provider call id (`toolu_…` for Anthropic, `call_…` for OpenAI); echoed in the result.
    pub id: String,
    pub name: String,
    /// Parsed arguments, normally an object. When the model sent text that is not JSON, this is
    /// `Value::String(raw text)` and [`ToolCall::arguments_error`] says why.
    pub arguments: Value,
    /// Set when the model's argument text did not parse as JSON. The agent should answer with a
    /// tool error rather than run the tool; replaying the call sends the raw text back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments_error: Option<String>,
}

impl ToolCall {
    pub fn new(id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments,
            arguments_error: None,
        }
    }

    /// Builds a call from the JSON text of OpenAI-style `arguments`, keeping malformed text.
    ///
    /// An empty string means "no arguments" (several servers send it for parameterless tools).
    pub fn from_json_text(id: impl Into<String>, name: impl Into<String>, raw: &str) -> Self {
        let (arguments, arguments_error) = if raw.trim().is_empty() {
            (Value::Object(serde_json::Map::new()), None)
        } else {
            match serde_json::from_str::<Value>(raw) {
                Ok(value) => (value, None),
                Err(err) => (
                    Value::String(raw.to_owned()),
                    Some(format!("arguments are not valid JSON: {err}")),
                ),
            }
        };
        Self {
            id: id.into(),
            name: name.into(),
            arguments,
            arguments_error,
        }
    }

    /// The arguments as JSON text for OpenAI-style wires: the raw text when it did not parse.
    pub fn arguments_json_text(&self) -> String {
        match (&self.arguments_error, &self.arguments) {
            (Some(_), Value::String(raw)) => raw.clone(),
            _ => self.arguments.to_string(),
        }
    }
}

/// The runtime's answer to a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The [`ToolCall::id`] this answers.
    pub tool_call_id: String,
    pub content: String,
    /// The tool failed. Anthropic receives `is_error: true`; OpenAI wires have no such flag, so
    /// the content alone must say what went wrong.
    #[serde(default)]
    pub is_error: bool,
}

impl ToolResult {
    pub fn ok(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: tool_call_id.into(),
            content: content.into(),
            is_error: true,
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON schema of the arguments object. `{"type":"object"}` for a tool without parameters.
    pub parameters: Value,
}

/// Whether and which tool the model must call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// The model must call some tool.
    Required,
    /// The model must not call tools.
    None,
    /// The model must call this tool.
    Tool(String),
}

/// How hard a reasoning model should think.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    Minimal,
    Low,
    Medium,
    High,
}

impl ReasoningEffort {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// Anthropic has a thinking token budget instead of an effort level.
    pub fn anthropic_budget_tokens(self) -> u32 {
        match self {
            // 1024 is the API's minimum budget.
            Self::Minimal => 1024,
            Self::Low => 4096,
            Self::Medium => 10_000,
            Self::High => 32_000,
        }
    }
}

/// One call to a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The system prompt (`None` or empty: no system prompt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub tool_choice: ToolChoice,
    /// Output token limit; `None` uses the model's configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// `None` uses the model's configured default (and, failing that, the provider's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// `None` uses the model's configured default; with neither, reasoning is not requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// OpenAI `prompt_cache_key`: requests sharing a key are routed to the same cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// Which agent is calling (`None`: the main agent; `Some("checker")`: a sub-agent).
    /// Providers ignore it; the scripted model uses it to pick turns tagged for that agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

impl ModelRequest {
    /// A request with a system prompt and one user message.
    pub fn new(system: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            system: Some(system.into()),
            messages: vec![Message::user(user)],
            ..Self::default()
        }
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// The turn is complete.
    EndTurn,
    /// The model wants tool results.
    ToolUse,
    /// The output token limit cut the turn short.
    MaxTokens,
    StopSequence,
    /// Anthropic paused a long server-side turn: send the assistant content back to continue.
    PauseTurn,
    Refusal,
    /// The conversation no longer fits the model's context window.
    ContextWindowExceeded,
    ContentFilter,
    /// A reason this crate does not know, verbatim.
    Other(String),
}

impl StopReason {
    pub fn as_str(&self) -> &str {
        match self {
            Self::EndTurn => "end_turn",
            Self::ToolUse => "tool_use",
            Self::MaxTokens => "max_tokens",
            Self::StopSequence => "stop_sequence",
            Self::PauseTurn => "pause_turn",
            Self::Refusal => "refusal",
            Self::ContextWindowExceeded => "context_window_exceeded",
            Self::ContentFilter => "content_filter",
            Self::Other(other) => other,
        }
    }

    /// Parses our own names (as written by [`StopReason::as_str`]); anything else is `Other`.
    pub fn parse(s: &str) -> Self {
        match s {
            "end_turn" => Self::EndTurn,
            "tool_use" => Self::ToolUse,
            "max_tokens" => Self::MaxTokens,
            "stop_sequence" => Self::StopSequence,
            "pause_turn" => Self::PauseTurn,
            "refusal" => Self::Refusal,
            "context_window_exceeded" => Self::ContextWindowExceeded,
            "content_filter" => Self::ContentFilter,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// A plain string on disk ("end_turn"), so script files and trajectories stay readable.
impl Serialize for StopReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Ok(Self::parse(&s))
    }
}

/// Token counts of one call, normalised across providers.
///
/// `input_tokens` **excludes** cached tokens on every provider (Anthropic reports it that way;
/// OpenAI's `prompt_tokens` includes `cached_tokens`, which we subtract). The whole prompt is
/// `input_tokens + cache_read_tokens + cache_write_tokens`. `output_tokens` includes reasoning
/// tokens; `reasoning_tokens` only says how many of them were reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_tokens: u64,
    #[serde(default)]
    pub cache_write_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
}

impl Usage {
    /// Every prompt token, cached or not.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens + self.cache_read_tokens + self.cache_write_tokens
    }

    /// Adds another call's usage to this one.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_tokens += other.cache_read_tokens;
        self.cache_write_tokens += other.cache_write_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
    }
}

/// What a model call returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    /// The assistant turn: text, reasoning and tool calls, in the provider's order.
    pub message: Message,
    pub stop_reason: StopReason,
    pub usage: Usage,
    /// Cost in USD; `None` when the model has no known price (never a made-up 0).
    pub cost_usd: Option<f64>,
    /// The model id the provider reports (often dated, e.g. `claude-sonnet-4-5-20250929`).
    pub model: String,
    /// Wall time of the whole call, retries and backoff included.
    #[serde(with = "duration_ms")]
    pub latency: Duration,
    /// The provider's request id header (`request-id`, `x-request-id`), for support tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The id in the response body (`msg_…`, `chatcmpl-…`, `resp_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_id: Option<String>,
    /// HTTP attempts made (1 when nothing was retried).
    pub attempts: u32,
}

impl ModelResponse {
    /// The assistant's text.
    pub fn text(&self) -> String {
        self.message.text()
    }

    /// The assistant's tool calls.
    pub fn tool_calls(&self) -> impl Iterator<Item = &ToolCall> {
        self.message.tool_calls()
    }
}

/// Serialises a duration as integer milliseconds.
pub(crate) mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serialises a duration as (fractional) seconds, the unit people write in config files.
pub(crate) mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_call_keeps_malformed_arguments() {
        let call = ToolCall::from_json_text("c1", "bash", "{\"command\": \"ls");
        assert_eq!(call.arguments, Value::String("{\"command\": \"ls".into()));
        assert!(call.arguments_error.is_some());
        assert_eq!(call.arguments_json_text(), "{\"command\": \"ls");

        let empty = ToolCall::from_json_text("c2", "finish", "");
        assert_eq!(empty.arguments, json!({}));
        assert!(empty.arguments_error.is_none());
    }

    #[test]
    fn stop_reason_round_trips_as_a_string() {
        for reason in [
            StopReason::EndTurn,
            StopReason::ToolUse,
            StopReason::Other("weird".into()),
        ] {
            let text = serde_json::to_string(&reason).unwrap();
            assert_eq!(serde_json::from_str::<StopReason>(&text).unwrap(), reason);
        }
        assert_eq!(
            serde_json::to_value(StopReason::MaxTokens).unwrap(),
            json!("max_tokens")
        );
    }

    #[test]
    fn message_serde_shape_is_stable() {
        let message = Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Reasoning(Reasoning {
                    text: "hmm".into(),
                    signature: Some("sig".into()),
                    ..Reasoning::default()
                }),
                ContentBlock::text("hi"),
                ContentBlock::ToolCall(ToolCall::new("t1", "bash", json!({"command": "ls"}))),
            ],
        };
        let value = serde_json::to_value(&message).unwrap();
        assert_eq!(
            value,
            json!({"role": "assistant", "content": [
                {"type": "reasoning", "text": "hmm", "signature": "sig"},
                {"type": "text", "text": "hi"},
                {"type": "tool_call", "id": "t1", "name": "bash", "arguments": {"command": "ls"}}
            ]})
        );
        assert_eq!(serde_json::from_value::<Message>(value).unwrap(), message);
    }
}
