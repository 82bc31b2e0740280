//! Anthropic Messages API (`POST /v1/messages`), plain and streaming.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Parsed, SseEvent, StreamAssembler, WireError, WireOptions, mark_cut_off_calls};
use crate::types::{
    ContentBlock, Message, ModelRequest, Reasoning, Role, StopReason, ToolCall, ToolChoice, Usage,
};

pub const MESSAGES_PATH: &str = "/v1/messages";
pub const HEADER_API_KEY: &str = "x-api-key";
pub const HEADER_VERSION: &str = "anthropic-version";
pub const API_VERSION: &str = "2023-06-01";
pub const HEADER_REQUEST_ID: &str = "request-id";

const ROLE_USER: &str = "user";
const ROLE_ASSISTANT: &str = "assistant";
const CACHE_EPHEMERAL: &str = "ephemeral";
const THINKING_ENABLED: &str = "enabled";
/// How many of the latest user messages get a cache breakpoint. With the system prompt and the
/// tools that makes 4, the API's maximum.
const CACHED_USER_MESSAGES: usize = 2;

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Debug, Serialize)]
struct Request<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemBlock<'a>>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking>,
    stream: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: CacheControl = CacheControl {
    kind: CACHE_EPHEMERAL,
};

#[derive(Debug, Serialize)]
struct SystemBlock<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: Cow<'a, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireToolChoice<'a> {
    Auto,
    Any,
    None,
    Tool { name: &'a str },
}

#[derive(Debug, Serialize)]
struct Thinking {
    #[serde(rename = "type")]
    kind: &'static str,
    budget_tokens: u32,
}

#[derive(Debug, Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Cow<'a, Value>,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
}

impl Block<'_> {
    /// Marks the block as a cache breakpoint; returns false for blocks that cannot carry one
    /// here (user messages only hold text and tool results).
    fn set_cache_control(&mut self) -> bool {
        match self {
            Block::Text { cache_control, .. } | Block::ToolResult { cache_control, .. } => {
                *cache_control = Some(EPHEMERAL);
                true
            }
            Block::Thinking { .. } | Block::RedactedThinking { .. } | Block::ToolUse { .. } => {
                false
            }
        }
    }
}

/// `tool_use.input` must be an object: replaying `null` (or any non-object, e.g. the raw text of
/// a call whose arguments did not parse) gets HTTP 400 "Input should be an object"
/// (goose issue #9287).
fn tool_input(arguments: &Value) -> Cow<'_, Value> {
    if arguments.is_object() {
        Cow::Borrowed(arguments)
    } else {
        Cow::Owned(Value::Object(Map::new()))
    }
}

/// A tool without parameters still needs `{"type":"object"}`.
fn input_schema(parameters: &Value) -> Cow<'_, Value> {
    if parameters.is_object() {
        Cow::Borrowed(parameters)
    } else {
        let mut schema = Map::new();
        schema.insert("type".to_owned(), Value::String("object".to_owned()));
        Cow::Owned(Value::Object(schema))
    }
}

fn assistant_blocks(message: &Message) -> Vec<Block<'_>> {
    let mut blocks = Vec::with_capacity(message.content.len());
    for block in &message.content {
        match block {
            ContentBlock::Text { text } if !text.is_empty() => blocks.push(Block::Text {
                text,
                cache_control: None,
            }),
            // Thinking goes back unchanged, signature included, or the API rejects the turn.
            // Reasoning from other providers has no signature and cannot be replayed.
            ContentBlock::Reasoning(Reasoning {
                redacted: Some(data),
                ..
            }) => blocks.push(Block::RedactedThinking { data }),
            ContentBlock::Reasoning(Reasoning {
                text,
                signature: Some(signature),
                ..
            }) => blocks.push(Block::Thinking {
                thinking: text,
                signature,
            }),
            ContentBlock::ToolCall(call) => blocks.push(Block::ToolUse {
                id: &call.id,
                name: &call.name,
                input: tool_input(&call.arguments),
            }),
            ContentBlock::Text { .. }
            | ContentBlock::Reasoning(_)
            | ContentBlock::ToolResult(_) => {}
        }
    }
    blocks
}

fn user_blocks(message: &Message) -> Vec<Block<'_>> {
    // tool_result blocks must come first in the user message that answers a tool_use.
    let results = message.tool_results_iter().map(|result| Block::ToolResult {
        tool_use_id: &result.tool_call_id,
        content: &result.content,
        is_error: result.is_error,
        cache_control: None,
    });
    let texts = message.content.iter().filter_map(|block| match block {
        // The API rejects empty text blocks.
        ContentBlock::Text { text } if !text.is_empty() => Some(Block::Text {
            text,
            cache_control: None,
        }),
        _ => None,
    });
    results.chain(texts).collect()
}

/// Above this many output tokens a request streams unless the model's config says otherwise.
///
/// Anthropic refuses a non-streaming request whose `max_tokens` implies more than about ten
/// minutes of generation ("Streaming is strongly recommended for operations that may take longer
/// than 10 minutes"); its SDKs estimate an hour per 128,000 tokens, which refuses anything above
/// 21,333. 16,384 stays clear of that estimate with a margin for slower models.
pub const STREAM_ABOVE_MAX_TOKENS: u32 = 16_384;

/// Whether a request must stream to be accepted (see [`STREAM_ABOVE_MAX_TOKENS`]).
pub fn needs_streaming(req: &ModelRequest, opts: &WireOptions<'_>) -> bool {
    let budget = thinking_budget(req, opts);
    effective_max_tokens(budget, opts) > STREAM_ABOVE_MAX_TOKENS
}

/// Extended thinking: the API rejects it when the tool choice forces a tool.
fn thinking_budget(req: &ModelRequest, opts: &WireOptions<'_>) -> Option<u32> {
    let forced_tool = matches!(req.tool_choice, ToolChoice::Required | ToolChoice::Tool(_));
    opts.reasoning_effort
        .filter(|_| !forced_tool)
        .map(|effort| effort.anthropic_budget_tokens())
}

/// `max_tokens` as sent: thinking requires `budget_tokens < max_tokens`, so a budget at or above
/// the limit raises it by the budget.
fn effective_max_tokens(budget: Option<u32>, opts: &WireOptions<'_>) -> u32 {
    match budget {
        Some(budget) if budget >= opts.max_tokens => budget + opts.max_tokens,
        _ => opts.max_tokens,
    }
}

/// The JSON body of a Messages request.
///
/// Prompt caching (on by default) follows goose's policy: a breakpoint on the system block, on
/// the last tool (all tool definitions are cached as one prefix), and on the last block of the
/// last two user messages, so each call reads the prefix the previous call wrote.
pub fn build_request(req: &ModelRequest, opts: &WireOptions<'_>) -> Result<Vec<u8>, WireError> {
    let caching = opts.prompt_caching;
    let system = match req.system.as_deref() {
        Some(text) if !text.is_empty() => vec![SystemBlock {
            kind: "text",
            text,
            cache_control: caching.then_some(EPHEMERAL),
        }],
        _ => Vec::new(),
    };

    let mut tools: Vec<Tool<'_>> = req
        .tools
        .iter()
        .map(|tool| Tool {
            name: &tool.name,
            description: &tool.description,
            input_schema: input_schema(&tool.parameters),
            cache_control: None,
        })
        .collect();
    if caching && let Some(last) = tools.last_mut() {
        last.cache_control = Some(EPHEMERAL);
    }

    let mut messages: Vec<WireMessage<'_>> = req
        .messages
        .iter()
        .map(|message| match message.role {
            Role::User => WireMessage {
                role: ROLE_USER,
                content: user_blocks(message),
            },
            Role::Assistant => WireMessage {
                role: ROLE_ASSISTANT,
                content: assistant_blocks(message),
            },
        })
        // A message left empty (only non-replayable reasoning, or empty text) is rejected.
        .filter(|message| !message.content.is_empty())
        .collect();
    if caching {
        messages
            .iter_mut()
            .rev()
            .filter(|message| message.role == ROLE_USER)
            .take(CACHED_USER_MESSAGES)
            .for_each(|message| {
                if let Some(last) = message.content.last_mut() {
                    last.set_cache_control();
                }
            });
    }

    let tool_choice = if tools.is_empty() {
        None
    } else {
        Some(match &req.tool_choice {
            ToolChoice::Auto => WireToolChoice::Auto,
            ToolChoice::Required => WireToolChoice::Any,
            ToolChoice::None => WireToolChoice::None,
            ToolChoice::Tool(name) => WireToolChoice::Tool { name },
        })
    };

    // Extended thinking: the API rejects it when the tool choice forces a tool, requires
    // budget_tokens < max_tokens, and allows no temperature but the default.
    let thinking = thinking_budget(req, opts).map(|budget_tokens| Thinking {
        kind: THINKING_ENABLED,
        budget_tokens,
    });
    let max_tokens = effective_max_tokens(thinking.as_ref().map(|t| t.budget_tokens), opts);
    let temperature = if thinking.is_some() {
        None
    } else {
        opts.temperature
    };

    let body = Request {
        model: opts.model,
        max_tokens,
        system,
        messages,
        tools,
        tool_choice,
        temperature,
        thinking,
        stream: opts.stream,
    };
    Ok(serde_json::to_vec(&body)?)
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Debug, Deserialize)]
struct Response {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    content: Option<Vec<ResponseBlock>>,
    stop_reason: Option<String>,
    usage: Option<ResponseUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        #[serde(default)]
        text: Option<String>,
    },
    Thinking {
        #[serde(default)]
        thinking: Option<String>,
        #[serde(default)]
        signature: Option<String>,
    },
    RedactedThinking {
        #[serde(default)]
        data: Option<String>,
    },
    ToolUse {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        input: Option<Value>,
    },
    /// Server tool blocks, citations and types newer than this code.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct ResponseUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

fn stop_reason(reason: Option<&str>, has_tool_calls: bool) -> StopReason {
    match reason {
        Some("end_turn") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens") => StopReason::MaxTokens,
        Some("stop_sequence") => StopReason::StopSequence,
        Some("pause_turn") => StopReason::PauseTurn,
        Some("refusal") => StopReason::Refusal,
        Some("model_context_window_exceeded") => StopReason::ContextWindowExceeded,
        Some(other) => StopReason::Other(other.to_owned()),
        None if has_tool_calls => StopReason::ToolUse,
        None => StopReason::EndTurn,
    }
}

/// Reads a non-streaming Messages response.
pub fn parse_response(body: &[u8]) -> Result<Parsed, WireError> {
    convert(serde_json::from_slice(body)?)
}

fn convert(response: Response) -> Result<Parsed, WireError> {
    let mut content = Vec::new();
    for block in response.content.unwrap_or_default() {
        match block {
            ResponseBlock::Text { text } => {
                content.push(ContentBlock::text(text.unwrap_or_default()));
            }
            ResponseBlock::Thinking {
                thinking,
                signature,
            } => content.push(ContentBlock::Reasoning(Reasoning {
                text: thinking.unwrap_or_default(),
                signature,
                ..Reasoning::default()
            })),
            ResponseBlock::RedactedThinking { data } => {
                content.push(ContentBlock::Reasoning(Reasoning {
                    redacted: Some(data.unwrap_or_default()),
                    ..Reasoning::default()
                }));
            }
            ResponseBlock::ToolUse { id, name, input } => {
                content.push(ContentBlock::ToolCall(ToolCall::new(
                    id.unwrap_or_default(),
                    name.unwrap_or_default(),
                    match input {
                        Some(Value::Null) | None => Value::Object(Map::new()),
                        Some(value) => value,
                    },
                )));
            }
            ResponseBlock::Unknown => {}
        }
    }
    let has_tool_calls = content
        .iter()
        .any(|block| matches!(block, ContentBlock::ToolCall(_)));
    // input_tokens already excludes cached tokens on this API.
    let usage = response.usage.map(|usage| Usage {
        input_tokens: usage.input_tokens.unwrap_or(0),
        output_tokens: usage.output_tokens.unwrap_or(0),
        cache_read_tokens: usage.cache_read_input_tokens.unwrap_or(0),
        cache_write_tokens: usage.cache_creation_input_tokens.unwrap_or(0),
        reasoning_tokens: 0,
    });
    Ok(Parsed {
        message: Message {
            role: Role::Assistant,
            content,
        },
        stop_reason: stop_reason(response.stop_reason.as_deref(), has_tool_calls),
        usage,
        model: response.model,
        id: response.id,
    })
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: Option<MessageDeltaBody>,
        #[serde(default)]
        usage: Option<ResponseUsage>,
    },
    MessageStop {},
    Error {
        #[serde(default)]
        error: Option<StreamError>,
    },
    /// `ping` and event types newer than this code.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct StartMessage {
    id: Option<String>,
    model: Option<String>,
    usage: Option<ResponseUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta {
    #[serde(rename = "text_delta")]
    Text {
        #[serde(default)]
        text: String,
    },
    #[serde(rename = "thinking_delta")]
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    #[serde(rename = "signature_delta")]
    Signature {
        #[serde(default)]
        signature: String,
    },
    #[serde(rename = "input_json_delta")]
    InputJson {
        #[serde(default)]
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDeltaBody {
    stop_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

/// A content block being streamed.
#[derive(Debug)]
enum Partial {
    /// Text and thinking blocks: the start block, with deltas appended to its field.
    Block(Value),
    ToolUse {
        id: String,
        name: String,
        /// `input` of the start block (normally `{}`), used when no JSON delta arrives.
        input: Option<Value>,
        json: String,
    },
}

/// Assembles a Messages stream: `message_start`, content blocks by `index` (tool input JSON in
/// `input_json_delta` pieces, parsed once complete), `message_delta` (stop reason, cumulative
/// usage), `message_stop`.
#[derive(Debug, Default)]
pub struct Stream {
    id: Option<String>,
    model: Option<String>,
    usage: Option<ResponseUsage>,
    blocks: Vec<Option<Partial>>,
    stop_reason: Option<String>,
    done: bool,
}

impl Stream {
    pub fn new() -> Self {
        Self::default()
    }

    fn block(&mut self, index: usize) -> Result<&mut Partial, WireError> {
        self.blocks
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or_else(|| WireError::Malformed(format!("delta for unknown content block {index}")))
    }
}

/// `message_delta.usage` is cumulative: fields present replace those of `message_start`.
fn merge_usage(into: &mut Option<ResponseUsage>, delta: ResponseUsage) {
    let Some(base) = into else {
        *into = Some(delta);
        return;
    };
    base.input_tokens = delta.input_tokens.or(base.input_tokens);
    base.output_tokens = delta.output_tokens.or(base.output_tokens);
    base.cache_creation_input_tokens = delta
        .cache_creation_input_tokens
        .or(base.cache_creation_input_tokens);
    base.cache_read_input_tokens = delta
        .cache_read_input_tokens
        .or(base.cache_read_input_tokens);
}

fn append(block: &mut Value, field: &str, piece: &str) {
    if let Value::Object(map) = block {
        match map.get_mut(field) {
            Some(Value::String(text)) => text.push_str(piece),
            _ => {
                map.insert(field.to_owned(), Value::String(piece.to_owned()));
            }
        }
    }
}

impl StreamAssembler for Stream {
    fn event(&mut self, event: &SseEvent) -> Result<(), WireError> {
        let parsed: StreamEvent = serde_json::from_str(&event.data)?;
        match parsed {
            StreamEvent::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.usage = message.usage;
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let partial =
                    if content_block.get("type").and_then(Value::as_str) == Some("tool_use") {
                        let text = |name: &str| {
                            content_block
                                .get(name)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned()
                        };
                        Partial::ToolUse {
                            id: text("id"),
                            name: text("name"),
                            input: content_block.get("input").cloned(),
                            json: String::new(),
                        }
                    } else {
                        Partial::Block(content_block)
                    };
                if self.blocks.len() <= index {
                    self.blocks.resize_with(index + 1, || None);
                }
                self.blocks[index] = Some(partial);
            }
            StreamEvent::ContentBlockDelta { index, delta } => {
                let block = self.block(index)?;
                match (block, delta) {
                    (Partial::Block(block), Delta::Text { text }) => {
                        append(block, "text", &text);
                    }
                    (Partial::Block(block), Delta::Thinking { thinking }) => {
                        append(block, "thinking", &thinking);
                    }
                    (Partial::Block(block), Delta::Signature { signature }) => {
                        append(block, "signature", &signature);
                    }
                    (Partial::ToolUse { json, .. }, Delta::InputJson { partial_json }) => {
                        json.push_str(&partial_json);
                    }
                    // A delta that does not fit its block (or a newer delta type) adds nothing
                    // this code could use.
                    _ => {}
                }
            }
            StreamEvent::ContentBlockStop {} | StreamEvent::Other => {}
            StreamEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(usage) = usage {
                    merge_usage(&mut self.usage, usage);
                }
            }
            StreamEvent::MessageStop {} => self.done = true,
            StreamEvent::Error { error } => {
                let error = error.unwrap_or(StreamError {
                    kind: None,
                    message: None,
                });
                return Err(WireError::Failed {
                    code: error.kind.unwrap_or_else(|| "error".to_owned()),
                    message: error.message.unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<Parsed, WireError> {
        if !self.done {
            return Err(WireError::Incomplete(
                "the stream ended before message_stop".to_owned(),
            ));
        }
        let mut blocks = Vec::with_capacity(self.blocks.len());
        // Tool calls whose streamed JSON does not parse, by their place among the tool calls.
        let mut broken = Vec::new();
        let mut calls = 0usize;
        for partial in self.blocks.into_iter().flatten() {
            match partial {
                Partial::Block(value) => {
                    blocks.push(serde_json::from_value::<ResponseBlock>(value)?);
                }
                Partial::ToolUse {
                    id,
                    name,
                    input,
                    json,
                } => {
                    let input = if json.trim().is_empty() {
                        input
                    } else {
                        match serde_json::from_str::<Value>(&json) {
                            Ok(value) => Some(value),
                            Err(_) => {
                                broken.push((calls, json));
                                None
                            }
                        }
                    };
                    calls += 1;
                    blocks.push(ResponseBlock::ToolUse {
                        id: Some(id),
                        name: Some(name),
                        input,
                    });
                }
            }
        }
        let mut parsed = convert(Response {
            id: self.id,
            model: self.model,
            content: Some(blocks),
            stop_reason: self.stop_reason,
            usage: self.usage,
        })?;
        if !broken.is_empty() {
            let mut n = 0usize;
            for block in &mut parsed.message.content {
                if let ContentBlock::ToolCall(call) = block {
                    if let Some((_, raw)) = broken.iter().find(|(i, _)| *i == n) {
                        *call = ToolCall::from_json_text(call.id.clone(), call.name.clone(), raw);
                    }
                    n += 1;
                }
            }
        }
        mark_cut_off_calls(&mut parsed.message, &parsed.stop_reason);
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ReasoningEffort, ToolResult, ToolSpec};
    use crate::wire::ChatDialect;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn opts(caching: bool) -> WireOptions<'static> {
        WireOptions {
            model: "claude-sonnet-4-5",
            max_tokens: 4096,
            temperature: None,
            reasoning_effort: None,
            prompt_caching: caching,
            dialect: ChatDialect::OpenAi,
            stream: false,
        }
    }

    fn body(req: &ModelRequest, opts: &WireOptions<'_>) -> Value {
        serde_json::from_slice(&build_request(req, opts).unwrap()).unwrap()
    }

    fn tool(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: format!("The {name} tool."),
            parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        }
    }

    /// The request of llm-wire.md §1.1: a tool round trip with caching.
    #[test]
    fn tool_round_trip_with_cache_breakpoints() {
        let req = ModelRequest {
            system: Some("You are a terminal agent.".into()),
            messages: vec![
                Message::user("List the files in /app."),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::text("I'll list them."),
                        ContentBlock::ToolCall(ToolCall::new(
                            "toolu_01",
                            "bash",
                            json!({"command": "ls -la /app"}),
                        )),
                    ],
                },
                Message::tool_results([ToolResult::ok("toolu_01", "main.py\n")]),
            ],
            tools: vec![tool("read_file"), tool("bash")],
            ..ModelRequest::default()
        };
        let value = body(&req, &opts(true));
        assert_eq!(
            value["system"],
            json!([{"type": "text", "text": "You are a terminal agent.", "cache_control": {"type": "ephemeral"}}])
        );
        assert!(value["tools"][0].get("cache_control").is_none());
        assert_eq!(
            value["tools"][1]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(value["tool_choice"], json!({"type": "auto"}));
        assert_eq!(
            value["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert!(
            value["messages"][1]["content"][1]
                .get("cache_control")
                .is_none()
        );
        assert_eq!(
            value["messages"][2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "toolu_01", "content": "main.py\n", "cache_control": {"type": "ephemeral"}})
        );
        assert_eq!(value["stream"], json!(false));
    }

    #[test]
    fn only_the_last_two_user_messages_are_breakpoints() {
        let req = ModelRequest {
            messages: vec![
                Message::user("one"),
                Message::assistant("a"),
                Message::user("two"),
                Message::assistant("b"),
                Message::user("three"),
            ],
            ..ModelRequest::default()
        };
        let value = body(&req, &opts(true));
        let marked: Vec<bool> = value["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"][0].get("cache_control").is_some())
            .collect();
        assert_eq!(marked, [false, false, true, false, true]);
        assert!(value.get("system").is_none());
        assert!(value.get("tools").is_none());
        assert!(value.get("tool_choice").is_none());
    }

    #[test]
    fn caching_off_adds_no_breakpoints() {
        let req = ModelRequest {
            tools: vec![tool("bash")],
            ..ModelRequest::new("sys", "hi")
        };
        let text = String::from_utf8(build_request(&req, &opts(false)).unwrap()).unwrap();
        assert!(!text.contains("cache_control"), "{text}");
    }

    #[test]
    fn tool_results_come_first_and_keep_is_error() {
        let message = Message {
            role: Role::User,
            content: vec![
                ContentBlock::text("Also, hurry."),
                ContentBlock::ToolResult(ToolResult::error("t1", "Error: exit code 127")),
                ContentBlock::ToolResult(ToolResult::ok("t2", "ok")),
            ],
        };
        let req = ModelRequest {
            messages: vec![message],
            ..ModelRequest::default()
        };
        let value = body(&req, &opts(false));
        assert_eq!(
            value["messages"][0]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "t1", "content": "Error: exit code 127", "is_error": true},
                {"type": "tool_result", "tool_use_id": "t2", "content": "ok"},
                {"type": "text", "text": "Also, hurry."}
            ])
        );
    }

    #[test]
    fn thinking_replays_with_signature_and_foreign_reasoning_is_dropped() {
        let assistant = Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Reasoning(Reasoning {
                    text: "Let me think.".into(),
                    signature: Some("sig==".into()),
                    ..Reasoning::default()
                }),
                ContentBlock::Reasoning(Reasoning {
                    redacted: Some("opaque".into()),
                    ..Reasoning::default()
                }),
                ContentBlock::Reasoning(Reasoning {
                    text: "from another provider".into(),
                    ..Reasoning::default()
                }),
                ContentBlock::ToolCall(ToolCall {
                    id: "t1".into(),
                    name: "bash".into(),
                    arguments: Value::String("{not json".into()),
                    arguments_error: Some("bad".into()),
                }),
            ],
        };
        let req = ModelRequest {
            messages: vec![Message::user("go"), assistant],
            ..ModelRequest::default()
        };
        let value = body(&req, &opts(false));
        assert_eq!(
            value["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "tool_use", "id": "t1", "name": "bash", "input": {}}
            ])
        );
    }

    #[test]
    fn reasoning_effort_enables_thinking_without_temperature() {
        let req = ModelRequest::new("sys", "hi");
        let mut o = opts(false);
        o.reasoning_effort = Some(ReasoningEffort::Medium);
        o.temperature = Some(0.2);
        o.max_tokens = 4096;
        let value = body(&req, &o);
        assert_eq!(
            value["thinking"],
            json!({"type": "enabled", "budget_tokens": 10000})
        );
        assert_eq!(value["max_tokens"], json!(14096));
        assert!(value.get("temperature").is_none());
    }

    #[test]
    fn parses_tool_use_response_with_cache_usage() {
        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/anthropic/tool_use.json"
        ))
        .unwrap();
        assert_eq!(
            parsed,
            Parsed {
                message: Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::text("Let me look at main.py."),
                        ContentBlock::ToolCall(ToolCall::new(
                            "toolu_01Bz",
                            "read_file",
                            json!({"path": "/app/main.py"})
                        )),
                    ],
                },
                stop_reason: StopReason::ToolUse,
                usage: Some(Usage {
                    input_tokens: 312,
                    output_tokens: 61,
                    cache_read_tokens: 2816,
                    cache_write_tokens: 0,
                    reasoning_tokens: 0,
                }),
                model: Some("claude-sonnet-4-5-20250929".into()),
                id: Some("msg_01Aq9w938a90dw8q".into()),
            }
        );
    }

    #[test]
    fn parses_thinking_and_tolerates_unknown_blocks_and_nulls() {
        let body = br#"{"content":[
            {"type":"thinking","thinking":"hmm","signature":"EqQB"},
            {"type":"redacted_thinking","data":"xyz"},
            {"type":"server_tool_use","id":"s1","name":"web_search","input":{}},
            {"type":"tool_use","id":"t1","name":"finish","input":null}
          ],"stop_reason":"model_context_window_exceeded","usage":{"input_tokens":5,"output_tokens":null}}"#;
        let parsed = parse_response(body).unwrap();
        assert_eq!(parsed.stop_reason, StopReason::ContextWindowExceeded);
        assert_eq!(parsed.message.content.len(), 3);
        assert_eq!(
            parsed.message.content[2],
            ContentBlock::ToolCall(ToolCall::new("t1", "finish", json!({})))
        );
        assert_eq!(parsed.usage.unwrap().output_tokens, 0);
        assert!(parse_response(b"{\"content\": [").is_err());
    }
}
