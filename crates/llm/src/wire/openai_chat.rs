//! OpenAI Chat Completions (`POST {base}/chat/completions`), also spoken by vLLM, llama.cpp and
//! Ollama; plain and streaming.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    ChatDialect, Parsed, SseEvent, StreamAssembler, WireError, WireOptions,
    is_openai_reasoning_model, mark_cut_off_calls, openai_tool_choice_mode,
};
use crate::types::{
    ContentBlock, Message, ModelRequest, Reasoning, Role, StopReason, ToolCall, ToolChoice, Usage,
};

pub const CHAT_COMPLETIONS_PATH: &str = "/chat/completions";
pub const HEADER_AUTHORIZATION: &str = "authorization";
pub const HEADER_REQUEST_ID: &str = "x-request-id";
const FUNCTION: &str = "function";

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Debug, Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Serialize)]
struct StreamOptions {
    /// Without it no usage arrives in a stream.
    include_usage: bool,
}

#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
enum ChatMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: Cow<'a, str>,
    },
    Assistant {
        /// `null` when the turn is only tool calls.
        content: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<WireToolCall<'a>>,
    },
    Tool {
        tool_call_id: &'a str,
        content: &'a str,
    },
}

#[derive(Debug, Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    /// A JSON string, not an object, on this API.
    arguments: String,
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionDef<'a>,
}

#[derive(Debug, Serialize)]
struct FunctionDef<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireToolChoice<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NamedFunction<'a>,
    },
}

#[derive(Debug, Serialize)]
struct NamedFunction<'a> {
    name: &'a str,
}

/// Text blocks joined into one string: local servers handle string content far more reliably
/// than arrays of parts.
fn joined_text(message: &Message) -> Option<Cow<'_, str>> {
    let mut texts = message.content.iter().filter_map(|block| match block {
        ContentBlock::Text { text } if !text.is_empty() => Some(text.as_str()),
        _ => None,
    });
    let first = texts.next()?;
    match texts.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut all = format!("{first}\n\n{second}");
            for text in texts {
                all.push_str("\n\n");
                all.push_str(text);
            }
            Some(Cow::Owned(all))
        }
    }
}

fn push_messages<'a>(out: &mut Vec<ChatMessage<'a>>, message: &'a Message, dialect: ChatDialect) {
    match message.role {
        Role::User => {
            // Tool results become `tool` messages, which must directly follow the assistant
            // turn that made the calls; any text of the same message follows them.
            for result in message.tool_results_iter() {
                out.push(ChatMessage::Tool {
                    tool_call_id: &result.tool_call_id,
                    content: &result.content,
                });
            }
            if let Some(content) = joined_text(message) {
                out.push(ChatMessage::User { content });
            }
        }
        Role::Assistant => {
            // Reasoning is not sent back: the API has no field for it, and servers that emit
            // `reasoning_content` ask clients not to return it.
            let tool_calls: Vec<WireToolCall<'a>> = message
                .tool_calls()
                .map(|call| WireToolCall {
                    id: &call.id,
                    kind: FUNCTION,
                    function: FunctionCall {
                        name: &call.name,
                        arguments: replayed_arguments(call, dialect),
                    },
                })
                .collect();
            let content = joined_text(message);
            if content.is_some() || !tool_calls.is_empty() {
                out.push(ChatMessage::Assistant {
                    content,
                    tool_calls,
                });
            }
        }
    }
}

/// The arguments of a past call as sent back. OpenAI takes the model's own text, even when it
/// is not JSON; llama.cpp parses history arguments to render its chat template and answers
/// HTTP 500 "Failed to parse tool call arguments as JSON" (every retry alike), so compatible
/// servers get `{}` for a call whose arguments did not parse (the tool error that answered it
/// says what was wrong).
fn replayed_arguments(call: &ToolCall, dialect: ChatDialect) -> String {
    match dialect {
        ChatDialect::Compatible if call.arguments_error.is_some() => "{}".to_owned(),
        ChatDialect::OpenAi | ChatDialect::Compatible => call.arguments_json_text(),
    }
}

/// The JSON body of a Chat Completions request.
pub fn build_request(req: &ModelRequest, opts: &WireOptions<'_>) -> Result<Vec<u8>, WireError> {
    let openai = opts.dialect == ChatDialect::OpenAi;
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        // `system` rather than `developer`: OpenAI maps it for reasoning models and local
        // servers know only `system`.
        messages.push(ChatMessage::System { content: system });
    }
    for message in &req.messages {
        push_messages(&mut messages, message, opts.dialect);
    }

    let tools: Vec<Tool<'_>> = req
        .tools
        .iter()
        .map(|tool| Tool {
            kind: FUNCTION,
            function: FunctionDef {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
            },
        })
        .collect();
    let has_tools = !tools.is_empty();
    let tool_choice = has_tools.then(|| match &req.tool_choice {
        ToolChoice::Tool(name) => WireToolChoice::Function {
            kind: FUNCTION,
            function: NamedFunction { name },
        },
        other => WireToolChoice::Mode(openai_tool_choice_mode(other).unwrap_or("auto")),
    });

    let reasoning_model = openai && is_openai_reasoning_model(opts.model);
    let body = Request {
        model: opts.model,
        messages,
        tools,
        tool_choice,
        // OpenAI rejects parallel_tool_calls without tools; local servers vary, so leave it to
        // their default.
        parallel_tool_calls: (openai && has_tools).then_some(true),
        // OpenAI deprecated max_tokens (reasoning models reject it); local servers only know it.
        max_completion_tokens: openai.then_some(opts.max_tokens),
        max_tokens: (!openai).then_some(opts.max_tokens),
        // Reasoning models reject any temperature but the default.
        temperature: opts.temperature.filter(|_| !reasoning_model),
        reasoning_effort: opts.reasoning_effort.map(|effort| effort.as_str()),
        prompt_cache_key: req.cache_key.as_deref().filter(|_| openai),
        stream: opts.stream,
        stream_options: opts.stream.then_some(StreamOptions {
            include_usage: true,
        }),
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
    choices: Option<Vec<Choice>>,
    usage: Option<ResponseUsage>,
    /// Some gateways answer 200 with an error object.
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: Option<ResponseMessage>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseMessage {
    /// A string, `null`, or (some servers) an array of `{"type":"text","text":…}` parts.
    content: Option<Value>,
    /// vLLM, DeepSeek and llama.cpp reasoning.
    reasoning_content: Option<String>,
    /// Ollama and some vLLM versions.
    reasoning: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ResponseToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ResponseToolCall {
    id: Option<String>,
    function: Option<ResponseFunction>,
}

#[derive(Debug, Deserialize)]
struct ResponseFunction {
    name: Option<String>,
    /// A JSON string on OpenAI; an object on some local servers.
    arguments: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct ResponseUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct CompletionDetails {
    reasoning_tokens: Option<u64>,
}

fn content_text(content: Option<Value>) -> String {
    match content {
        Some(Value::String(text)) => text,
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn tool_call(index: usize, call: ResponseToolCall) -> ToolCall {
    let function = call.function.unwrap_or(ResponseFunction {
        name: None,
        arguments: None,
    });
    // Some servers omit ids; the id only has to pair the call with its result.
    let id = call
        .id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("call_{index}"));
    let name = function.name.unwrap_or_default();
    match function.arguments {
        Some(Value::String(raw)) => ToolCall::from_json_text(id, name, &raw),
        Some(Value::Null) | None => ToolCall::from_json_text(id, name, ""),
        Some(value) => ToolCall::new(id, name, value),
    }
}

/// Usage with `prompt_tokens` split: OpenAI counts cached tokens inside `prompt_tokens`.
fn usage(usage: ResponseUsage) -> Usage {
    let cached = usage
        .prompt_tokens_details
        .and_then(|d| d.cached_tokens)
        .unwrap_or(0);
    Usage {
        input_tokens: usage.prompt_tokens.unwrap_or(0).saturating_sub(cached),
        output_tokens: usage.completion_tokens.unwrap_or(0),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: usage
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
    }
}

/// Reads a non-streaming Chat Completions response.
pub fn parse_response(body: &[u8]) -> Result<Parsed, WireError> {
    let response: Response = serde_json::from_slice(body)?;
    let Some(choice) = response.choices.and_then(|c| c.into_iter().next()) else {
        if response.error.is_some() {
            let info = super::parse_error_body(body);
            return Err(WireError::Failed {
                code: info.error_type.unwrap_or_else(|| "error".to_owned()),
                message: info.message,
            });
        }
        return Err(WireError::Malformed(
            "no choices in the response".to_owned(),
        ));
    };
    let message = choice.message.unwrap_or(ResponseMessage {
        content: None,
        reasoning_content: None,
        reasoning: None,
        refusal: None,
        tool_calls: None,
    });
    Ok(convert(
        message,
        choice.finish_reason,
        response.usage,
        response.model,
        response.id,
    ))
}

/// `<think>…</think>` at the start of the text: reasoning of models served without a reasoning
/// parser (Qwen3, DeepSeek-R1 on plain llama.cpp or vLLM), kept apart from the answer.
fn split_think(text: String) -> (Option<String>, String) {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let trimmed = text.trim_start();
    if let Some(rest) = trimmed.strip_prefix(OPEN)
        && let Some((thought, answer)) = rest.split_once(CLOSE)
    {
        return (
            Some(thought.trim().to_owned()),
            answer.trim_start().to_owned(),
        );
    }
    (None, text)
}

fn convert(
    message: ResponseMessage,
    finish_reason: Option<String>,
    usage_field: Option<ResponseUsage>,
    model: Option<String>,
    id: Option<String>,
) -> Parsed {
    let mut content = Vec::new();
    let (think, text) = split_think(content_text(message.content));
    if let Some(text) = message
        .reasoning_content
        .or(message.reasoning)
        .filter(|t| !t.is_empty())
        .or(think.filter(|t| !t.is_empty()))
    {
        content.push(ContentBlock::Reasoning(Reasoning {
            text,
            ..Reasoning::default()
        }));
    }
    let refusal = message.refusal.filter(|r| !r.is_empty());
    if !text.is_empty() {
        content.push(ContentBlock::text(text));
    } else if let Some(refusal) = &refusal {
        content.push(ContentBlock::text(refusal.clone()));
    }
    let calls: Vec<ToolCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, call)| tool_call(index, call))
        .collect();
    let has_tool_calls = !calls.is_empty();
    content.extend(calls.into_iter().map(ContentBlock::ToolCall));

    // Decide "wants tools" from the calls, not finish_reason: some local servers report "stop"
    // alongside tool calls. `length` wins even with calls: the last call is likely cut short.
    let stop_reason = match finish_reason.as_deref() {
        Some("length") => StopReason::MaxTokens,
        _ if has_tool_calls => StopReason::ToolUse,
        _ if refusal.is_some() => StopReason::Refusal,
        Some("stop") | None => StopReason::EndTurn,
        Some("content_filter") => StopReason::ContentFilter,
        Some("tool_calls" | "function_call") => StopReason::ToolUse,
        Some(other) => StopReason::Other(other.to_owned()),
    };

    let mut message = Message {
        role: Role::Assistant,
        content,
    };
    mark_cut_off_calls(&mut message, &stop_reason);
    Parsed {
        message,
        stop_reason,
        usage: usage_field.map(usage),
        model,
        id,
    }
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[derive(Debug, Deserialize)]
struct Chunk {
    id: Option<String>,
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    usage: Option<ResponseUsage>,
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    delta: Option<ChunkDelta>,
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChunkDelta {
    content: Option<Value>,
    reasoning_content: Option<String>,
    reasoning: Option<String>,
    refusal: Option<String>,
    tool_calls: Option<Vec<ChunkToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ChunkToolCall {
    /// Which call a fragment continues; servers that send each call whole may leave it out.
    index: Option<usize>,
    id: Option<String>,
    function: Option<ResponseFunction>,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: String,
    /// Concatenated string fragments.
    arguments: String,
    /// Arguments sent as an object (some local servers) rather than as JSON text.
    object: Option<Value>,
}

/// Assembles a Chat Completions stream: `delta.content` and reasoning pieces concatenated, tool
/// calls accumulated by `index` (id and name in the first fragment, argument text in pieces),
/// usage from the chunk that carries it (a last chunk with `choices: []` on OpenAI, the last
/// content chunk on some servers), complete at `data: [DONE]`.
#[derive(Debug, Default)]
pub struct Stream {
    id: Option<String>,
    model: Option<String>,
    text: String,
    reasoning: String,
    refusal: String,
    calls: Vec<PartialCall>,
    finish_reason: Option<String>,
    usage: Option<ResponseUsage>,
    done: bool,
}

impl Stream {
    pub fn new() -> Self {
        Self::default()
    }
}

const DONE: &str = "[DONE]";

impl StreamAssembler for Stream {
    fn event(&mut self, event: &SseEvent) -> Result<(), WireError> {
        if event.data.trim() == DONE {
            self.done = true;
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(&event.data)?;
        if let Some(error) = chunk.error {
            let info = super::parse_error_body(
                serde_json::json!({ "error": error }).to_string().as_bytes(),
            );
            return Err(WireError::Failed {
                code: info.error_type.unwrap_or_else(|| "error".to_owned()),
                message: info.message,
            });
        }
        if self.id.is_none() {
            self.id = chunk.id;
        }
        if self.model.is_none() {
            self.model = chunk.model;
        }
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        let Some(choice) = chunk.choices.and_then(|c| c.into_iter().next()) else {
            return Ok(());
        };
        if choice.finish_reason.is_some() {
            self.finish_reason = choice.finish_reason;
        }
        let Some(delta) = choice.delta else {
            return Ok(());
        };
        self.text.push_str(&content_text(delta.content));
        if let Some(piece) = delta.reasoning_content.or(delta.reasoning) {
            self.reasoning.push_str(&piece);
        }
        if let Some(piece) = delta.refusal {
            self.refusal.push_str(&piece);
        }
        for fragment in delta.tool_calls.unwrap_or_default() {
            let index = match fragment.index {
                Some(index) => index,
                // A whole call without an index: the next one, unless it continues the last.
                None if fragment.id.is_some() => self.calls.len(),
                None => self.calls.len().saturating_sub(1),
            };
            if self.calls.len() <= index {
                self.calls.resize_with(index + 1, PartialCall::default);
            }
            let call = &mut self.calls[index];
            if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
                call.id = Some(id);
            }
            if let Some(function) = fragment.function {
                if let Some(name) = function.name {
                    call.name.push_str(&name);
                }
                match function.arguments {
                    Some(Value::String(piece)) => call.arguments.push_str(&piece),
                    Some(Value::Null) | None => {}
                    Some(object) => call.object = Some(object),
                }
            }
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<Parsed, WireError> {
        // `[DONE]` is the end; a server that closes right after the finish reason without it
        // has sent the whole answer too (at worst without usage, which is then unknown).
        if !self.done && self.finish_reason.is_none() {
            return Err(WireError::Incomplete(
                "the stream ended before a finish_reason or [DONE]".to_owned(),
            ));
        }
        let tool_calls = self
            .calls
            .into_iter()
            .map(|call| ResponseToolCall {
                id: call.id,
                function: Some(ResponseFunction {
                    name: Some(call.name),
                    arguments: Some(call.object.unwrap_or(Value::String(call.arguments))),
                }),
            })
            .collect();
        let message = ResponseMessage {
            content: Some(Value::String(self.text)),
            reasoning_content: Some(self.reasoning),
            reasoning: None,
            refusal: Some(self.refusal),
            tool_calls: Some(tool_calls),
        };
        Ok(convert(
            message,
            self.finish_reason,
            self.usage,
            self.model,
            self.id,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ReasoningEffort, ToolResult, ToolSpec};
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn opts(dialect: ChatDialect, model: &'static str) -> WireOptions<'static> {
        WireOptions {
            model,
            max_tokens: 1000,
            temperature: Some(0.5),
            reasoning_effort: None,
            prompt_caching: true,
            dialect,
            stream: false,
        }
    }

    fn body(req: &ModelRequest, opts: &WireOptions<'_>) -> Value {
        serde_json::from_slice(&build_request(req, opts).unwrap()).unwrap()
    }

    fn parallel_round_trip() -> ModelRequest {
        ModelRequest {
            system: Some("You are a terminal agent.".into()),
            messages: vec![
                Message::user("List the files in /app."),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::ToolCall(ToolCall::new(
                            "call_1",
                            "bash",
                            json!({"command": "ls"}),
                        )),
                        ContentBlock::ToolCall(ToolCall::new(
                            "call_2",
                            "read_file",
                            json!({"path": "a"}),
                        )),
                    ],
                },
                Message::tool_results([
                    ToolResult::ok("call_1", "a\n"),
                    ToolResult::error("call_2", "Error: no such file"),
                ]),
            ],
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "Run a command.".into(),
                parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}}),
            }],
            cache_key: Some("harness-1".into()),
            ..ModelRequest::default()
        }
    }

    #[test]
    fn openai_dialect_request() {
        let value = body(
            &parallel_round_trip(),
            &opts(ChatDialect::OpenAi, "gpt-4.1"),
        );
        assert_eq!(
            value["messages"],
            json!([
                {"role": "system", "content": "You are a terminal agent."},
                {"role": "user", "content": "List the files in /app."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a\n"},
                {"role": "tool", "tool_call_id": "call_2", "content": "Error: no such file"}
            ])
        );
        assert_eq!(value["max_completion_tokens"], json!(1000));
        assert!(value.get("max_tokens").is_none());
        assert_eq!(value["parallel_tool_calls"], json!(true));
        assert_eq!(value["tool_choice"], json!("auto"));
        assert_eq!(value["prompt_cache_key"], json!("harness-1"));
        assert_eq!(value["temperature"], json!(0.5));
    }

    #[test]
    fn compatible_dialect_request() {
        let value = body(
            &parallel_round_trip(),
            &opts(ChatDialect::Compatible, "qwen3-coder"),
        );
        assert_eq!(value["max_tokens"], json!(1000));
        assert!(value.get("max_completion_tokens").is_none());
        assert!(value.get("parallel_tool_calls").is_none());
        assert!(value.get("prompt_cache_key").is_none());
    }

    #[test]
    fn reasoning_models_get_effort_and_no_temperature() {
        let mut o = opts(ChatDialect::OpenAi, "gpt-5");
        o.reasoning_effort = Some(ReasoningEffort::Low);
        let value = body(&ModelRequest::new("s", "u"), &o);
        assert!(value.get("temperature").is_none());
        assert_eq!(value["reasoning_effort"], json!("low"));
        assert!(value.get("tools").is_none());
        assert!(value.get("tool_choice").is_none());
    }

    #[test]
    fn forced_tool_choice() {
        let mut req = parallel_round_trip();
        req.tool_choice = ToolChoice::Tool("bash".into());
        let value = body(&req, &opts(ChatDialect::OpenAi, "gpt-4.1"));
        assert_eq!(
            value["tool_choice"],
            json!({"type": "function", "function": {"name": "bash"}})
        );
        req.tool_choice = ToolChoice::Required;
        let value = body(&req, &opts(ChatDialect::OpenAi, "gpt-4.1"));
        assert_eq!(value["tool_choice"], json!("required"));
    }

    #[test]
    fn malformed_arguments_are_replayed_verbatim() {
        let req = ModelRequest {
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![ContentBlock::ToolCall(ToolCall::from_json_text(
                    "c", "bash", "{oops",
                ))],
            }],
            ..ModelRequest::default()
        };
        let value = body(&req, &opts(ChatDialect::OpenAi, "gpt-4.1"));
        assert_eq!(
            value["messages"][0]["tool_calls"][0]["function"]["arguments"],
            json!("{oops")
        );
        // llama.cpp rejects unparsable history arguments with a 500 (real answer saved in
        // tests/fixtures/openai_chat/llamacpp_error_500_bad_arguments.json).
        let value = body(&req, &opts(ChatDialect::Compatible, "local"));
        assert_eq!(
            value["messages"][0]["tool_calls"][0]["function"]["arguments"],
            json!("{}")
        );
    }

    #[test]
    fn parses_parallel_tool_calls_and_cached_usage() {
        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_chat/tool_calls.json"
        ))
        .unwrap();
        assert_eq!(parsed.stop_reason, StopReason::ToolUse);
        let calls: Vec<&ToolCall> = parsed.message.tool_calls().collect();
        assert_eq!(
            calls,
            [
                &ToolCall::new("call_abc123", "bash", json!({"command": "ls -la /app"})),
                &ToolCall::new("call_def456", "read_file", json!({"path": "/app/main.py"})),
            ]
        );
        assert_eq!(
            parsed.usage,
            Some(Usage {
                input_tokens: 146,
                output_tokens: 21,
                cache_read_tokens: 2304,
                cache_write_tokens: 0,
                reasoning_tokens: 0
            })
        );
    }

    #[test]
    fn tolerates_local_server_quirks() {
        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_chat/compat_quirks.json"
        ))
        .unwrap();
        // finish_reason "stop" alongside tool calls still means tools.
        assert_eq!(parsed.stop_reason, StopReason::ToolUse);
        assert_eq!(
            parsed.message.content[0],
            ContentBlock::Reasoning(Reasoning {
                text: "The tests live in tests/.".into(),
                ..Reasoning::default()
            })
        );
        assert_eq!(parsed.message.text(), "I will run the tests.");
        let calls: Vec<&ToolCall> = parsed.message.tool_calls().collect();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1].id, "call_1");
        assert!(calls[1].arguments_error.is_some());
        assert_eq!(
            calls[1].arguments,
            json!("{\"path\": \"/tmp/x\", \"content\": \"unterminated")
        );
        assert_eq!(calls[2].arguments, json!({"path": "/app"}));
        assert_eq!(parsed.usage.unwrap().input_tokens, 100);

        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_chat/no_usage.json"
        ))
        .unwrap();
        assert_eq!(parsed.usage, None);
        assert_eq!(parsed.stop_reason, StopReason::MaxTokens);
        assert!(
            matches!(&parsed.message.content[0], ContentBlock::Reasoning(r) if r.text == "short thought")
        );
    }

    #[test]
    fn content_parts_and_refusals() {
        let parts = br#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#;
        assert_eq!(parse_response(parts).unwrap().message.text(), "ab");
        let refusal = br#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#;
        let parsed = parse_response(refusal).unwrap();
        assert_eq!(parsed.stop_reason, StopReason::Refusal);
        assert_eq!(parsed.message.text(), "I can't help with that.");
    }

    #[test]
    fn errors_inside_200_and_empty_choices() {
        let body = br#"{"error":{"message":"upstream overloaded","code":"server_error"}}"#;
        assert_eq!(
            parse_response(body),
            Err(WireError::Failed {
                code: "server_error".into(),
                message: "upstream overloaded".into()
            })
        );
        assert!(matches!(
            parse_response(br#"{"choices":[]}"#),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(b"not json"),
            Err(WireError::Malformed(_))
        ));
    }
}
