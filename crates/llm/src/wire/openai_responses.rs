//! OpenAI Responses API (`POST {base}/responses`), stateless (`store: false`), plain and
//! streaming.
//!
//! The full history is sent every time, with reasoning items carried as `encrypted_content`, so no
//! server-side state can expire under a long run.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Parsed, SseEvent, StreamAssembler, WireError, WireOptions, is_openai_reasoning_model,
    mark_cut_off_calls, openai_tool_choice_mode,
};
use crate::types::{
    ContentBlock, Message, ModelRequest, Reasoning, Role, StopReason, ToolCall, ToolChoice, Usage,
};

pub const RESPONSES_PATH: &str = "/responses";
const FUNCTION: &str = "function";
const ROLE_USER: &str = "user";
const ROLE_ASSISTANT: &str = "assistant";
const INCLUDE_ENCRYPTED_REASONING: &str = "reasoning.encrypted_content";
const SUMMARY_AUTO: &str = "auto";
const STATUS_COMPLETED: &str = "completed";
const STATUS_INCOMPLETE: &str = "incomplete";
const STATUS_FAILED: &str = "failed";

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Debug, Serialize)]
struct Request<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    instructions: Option<&'a str>,
    input: Vec<InputItem<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel_tool_calls: Option<bool>,
    store: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    include: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning: Option<ReasoningParam>,
    max_output_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_cache_key: Option<&'a str>,
    stream: bool,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InputItem<'a> {
    Message {
        role: &'static str,
        content: Vec<InputContent<'a>>,
    },
    Reasoning {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        summary: Vec<SummaryText<'a>>,
        encrypted_content: &'a str,
    },
    FunctionCall {
        call_id: &'a str,
        name: &'a str,
        arguments: String,
    },
    FunctionCallOutput {
        call_id: &'a str,
        output: &'a str,
    },
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum InputContent<'a> {
    InputText { text: &'a str },
    OutputText { text: &'a str },
}

#[derive(Debug, Serialize)]
struct SummaryText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

/// Tool definitions are flat here (no nested `function` object).
#[derive(Debug, Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
    /// Strict mode is the default on this API and rejects ordinary schemas (it needs
    /// `additionalProperties: false` and every property required), so turn it off.
    strict: bool,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireToolChoice<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        name: &'a str,
    },
}

#[derive(Debug, Serialize)]
struct ReasoningParam {
    effort: &'static str,
    summary: &'static str,
}

fn push_items<'a>(out: &mut Vec<InputItem<'a>>, message: &'a Message) {
    let (role, user) = match message.role {
        Role::User => (ROLE_USER, true),
        Role::Assistant => (ROLE_ASSISTANT, false),
    };
    let mut texts = Vec::new();
    let flush = |texts: &mut Vec<InputContent<'a>>, out: &mut Vec<InputItem<'a>>| {
        if !texts.is_empty() {
            out.push(InputItem::Message {
                role,
                content: std::mem::take(texts),
            });
        }
    };
    // Item order matters: a reasoning item must precede the calls it led to.
    for block in &message.content {
        match block {
            ContentBlock::Text { text } if !text.is_empty() => texts.push(if user {
                InputContent::InputText { text }
            } else {
                InputContent::OutputText { text }
            }),
            ContentBlock::Text { .. } => {}
            // Without encrypted content a reasoning item cannot be replayed under store=false
            // (the server has nothing to look it up by), so it is left out.
            ContentBlock::Reasoning(reasoning) => {
                if let Some(encrypted_content) = &reasoning.encrypted_content {
                    flush(&mut texts, out);
                    out.push(InputItem::Reasoning {
                        id: reasoning.id.as_deref(),
                        summary: reasoning
                            .summary
                            .iter()
                            .map(|text| SummaryText {
                                kind: "summary_text",
                                text,
                            })
                            .collect(),
                        encrypted_content,
                    });
                }
            }
            ContentBlock::ToolCall(call) => {
                flush(&mut texts, out);
                out.push(InputItem::FunctionCall {
                    call_id: &call.id,
                    name: &call.name,
                    arguments: call.arguments_json_text(),
                });
            }
            ContentBlock::ToolResult(result) => {
                flush(&mut texts, out);
                out.push(InputItem::FunctionCallOutput {
                    call_id: &result.tool_call_id,
                    output: &result.content,
                });
            }
        }
    }
    flush(&mut texts, out);
}

/// The JSON body of a Responses request.
pub fn build_request(req: &ModelRequest, opts: &WireOptions<'_>) -> Result<Vec<u8>, WireError> {
    let mut input = Vec::with_capacity(req.messages.len());
    for message in &req.messages {
        push_items(&mut input, message);
    }
    let tools: Vec<Tool<'_>> = req
        .tools
        .iter()
        .map(|tool| Tool {
            kind: FUNCTION,
            name: &tool.name,
            description: &tool.description,
            parameters: &tool.parameters,
            strict: false,
        })
        .collect();
    let has_tools = !tools.is_empty();
    let tool_choice = has_tools.then(|| match &req.tool_choice {
        ToolChoice::Tool(name) => WireToolChoice::Function {
            kind: FUNCTION,
            name,
        },
        other => WireToolChoice::Mode(openai_tool_choice_mode(other).unwrap_or("auto")),
    });
    let reasoning_model = is_openai_reasoning_model(opts.model);
    // Reasoning models reason whether asked or not; ask for the encrypted reasoning so that it
    // can be replayed statelessly.
    let include = if reasoning_model || opts.reasoning_effort.is_some() {
        vec![INCLUDE_ENCRYPTED_REASONING]
    } else {
        Vec::new()
    };
    let body = Request {
        model: opts.model,
        instructions: req.system.as_deref().filter(|s| !s.is_empty()),
        input,
        tools,
        tool_choice,
        parallel_tool_calls: has_tools.then_some(true),
        store: false,
        include,
        reasoning: opts.reasoning_effort.map(|effort| ReasoningParam {
            effort: effort.as_str(),
            summary: SUMMARY_AUTO,
        }),
        max_output_tokens: opts.max_tokens,
        temperature: opts.temperature.filter(|_| !reasoning_model),
        prompt_cache_key: req.cache_key.as_deref(),
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
    status: Option<String>,
    #[serde(default)]
    output: Option<Vec<OutputItem>>,
    incomplete_details: Option<IncompleteDetails>,
    error: Option<ResponseError>,
    usage: Option<ResponseUsage>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutputItem {
    Reasoning {
        id: Option<String>,
        #[serde(default)]
        summary: Option<Vec<TextPart>>,
        #[serde(default)]
        content: Option<Vec<TextPart>>,
        encrypted_content: Option<String>,
    },
    Message {
        #[serde(default)]
        content: Option<Vec<MessagePart>>,
    },
    FunctionCall {
        id: Option<String>,
        call_id: Option<String>,
        name: Option<String>,
        arguments: Option<String>,
    },
    /// Built-in tool calls (web search, …) and newer item types.
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct TextPart {
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum MessagePart {
    OutputText {
        text: Option<String>,
    },
    Refusal {
        refusal: Option<String>,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Debug, Deserialize)]
struct IncompleteDetails {
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseError {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ResponseUsage {
    input_tokens: Option<u64>,
    input_tokens_details: Option<InputDetails>,
    output_tokens: Option<u64>,
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Debug, Deserialize)]
struct InputDetails {
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct OutputDetails {
    reasoning_tokens: Option<u64>,
}

fn texts(parts: Option<Vec<TextPart>>) -> Vec<String> {
    parts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|part| part.text)
        .collect()
}

/// Reads a non-streaming Responses response. `status: "failed"` is a [`WireError::Failed`]
/// carrying the provider's code, which decides whether the call is retried.
pub fn parse_response(body: &[u8]) -> Result<Parsed, WireError> {
    convert(serde_json::from_slice(body)?)
}

fn convert(response: Response) -> Result<Parsed, WireError> {
    if response.status.as_deref() == Some(STATUS_FAILED) {
        let error = response.error.unwrap_or(ResponseError {
            code: None,
            message: None,
        });
        return Err(WireError::Failed {
            code: error.code.unwrap_or_else(|| STATUS_FAILED.to_owned()),
            message: error.message.unwrap_or_default(),
        });
    }

    let mut content = Vec::new();
    let mut refused = false;
    for item in response.output.unwrap_or_default() {
        match item {
            OutputItem::Reasoning {
                id,
                summary,
                content: reasoning_text,
                encrypted_content,
            } => content.push(ContentBlock::Reasoning(Reasoning {
                text: texts(reasoning_text).join("\n"),
                summary: texts(summary),
                id,
                encrypted_content,
                ..Reasoning::default()
            })),
            OutputItem::Message { content: parts } => {
                let mut text = String::new();
                for part in parts.unwrap_or_default() {
                    match part {
                        MessagePart::OutputText { text: Some(t) } => text.push_str(&t),
                        MessagePart::Refusal { refusal: Some(r) } => {
                            refused = true;
                            text.push_str(&r);
                        }
                        MessagePart::OutputText { text: None }
                        | MessagePart::Refusal { refusal: None }
                        | MessagePart::Unknown => {}
                    }
                }
                if !text.is_empty() {
                    content.push(ContentBlock::text(text));
                }
            }
            OutputItem::FunctionCall {
                id,
                call_id,
                name,
                arguments,
            } => {
                // Calls pair with outputs by call_id, not by the item id.
                let call_id = call_id.or(id).unwrap_or_default();
                content.push(ContentBlock::ToolCall(ToolCall::from_json_text(
                    call_id,
                    name.unwrap_or_default(),
                    arguments.as_deref().unwrap_or(""),
                )));
            }
            OutputItem::Unknown => {}
        }
    }
    let has_tool_calls = content
        .iter()
        .any(|block| matches!(block, ContentBlock::ToolCall(_)));

    // There is no finish_reason: the turn wants tools when it contains function calls.
    let stop_reason = match response.status.as_deref() {
        Some(STATUS_INCOMPLETE) => match response
            .incomplete_details
            .and_then(|d| d.reason)
            .as_deref()
        {
            Some("max_output_tokens") => StopReason::MaxTokens,
            Some("content_filter") => StopReason::ContentFilter,
            Some(other) => StopReason::Other(other.to_owned()),
            None => StopReason::Other(STATUS_INCOMPLETE.to_owned()),
        },
        _ if has_tool_calls => StopReason::ToolUse,
        _ if refused => StopReason::Refusal,
        Some(STATUS_COMPLETED) | None => StopReason::EndTurn,
        Some(other) => StopReason::Other(other.to_owned()),
    };

    // input_tokens includes cached tokens on this API.
    let usage = response.usage.map(|usage| {
        let cached = usage
            .input_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        Usage {
            input_tokens: usage.input_tokens.unwrap_or(0).saturating_sub(cached),
            output_tokens: usage.output_tokens.unwrap_or(0),
            cache_read_tokens: cached,
            cache_write_tokens: 0,
            reasoning_tokens: usage
                .output_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
        }
    });

    let mut message = Message {
        role: Role::Assistant,
        content,
    };
    mark_cut_off_calls(&mut message, &stop_reason);
    Ok(Parsed {
        message,
        stop_reason,
        usage,
        model: response.model,
        id: response.id,
    })
}

// ---------------------------------------------------------------------------------------------
// Streaming

#[derive(Debug, Deserialize)]
struct StreamEvent {
    #[serde(rename = "type")]
    kind: String,
    /// The whole response object (`response.created`, `.completed`, `.incomplete`, `.failed`).
    response: Option<Value>,
    /// A finished output item (`response.output_item.done`).
    item: Option<Value>,
    output_index: Option<usize>,
    /// The `error` event: `{"type":"error","code":…,"message":…}`.
    code: Option<String>,
    message: Option<String>,
}

/// Assembles a Responses stream from its complete objects: every `response.output_item.done`
/// item, and the final `response.completed` (or `.incomplete`) object for status and usage.
/// Deltas only serve live display, so they are skipped.
#[derive(Debug, Default)]
pub struct Stream {
    /// Finished items with their `output_index` (arrival order when absent).
    items: Vec<(usize, Value)>,
    last: Option<Value>,
    done: bool,
}

impl Stream {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StreamAssembler for Stream {
    fn event(&mut self, event: &SseEvent) -> Result<(), WireError> {
        let parsed: StreamEvent = serde_json::from_str(&event.data)?;
        match parsed.kind.as_str() {
            "response.output_item.done" => {
                if let Some(item) = parsed.item {
                    let index = parsed.output_index.unwrap_or(self.items.len());
                    self.items.push((index, item));
                }
            }
            "response.completed" | "response.incomplete" => {
                self.last = parsed.response;
                self.done = true;
            }
            "response.failed" => {
                // The failure and its code are read as in a plain `status: failed` body.
                if let Some(response) = parsed.response {
                    convert(serde_json::from_value(response)?)?;
                }
                return Err(WireError::Failed {
                    code: STATUS_FAILED.to_owned(),
                    message: "the response failed".to_owned(),
                });
            }
            "error" => {
                return Err(WireError::Failed {
                    code: parsed.code.unwrap_or_else(|| "error".to_owned()),
                    message: parsed.message.unwrap_or_default(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>) -> Result<Parsed, WireError> {
        if !self.done {
            return Err(WireError::Incomplete(
                "the stream ended before response.completed".to_owned(),
            ));
        }
        let mut response = match self.last {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let has_output = response
            .get("output")
            .and_then(Value::as_array)
            .is_some_and(|output| !output.is_empty());
        if !has_output {
            let mut items = self.items;
            items.sort_by_key(|(index, _)| *index);
            response.insert(
                "output".to_owned(),
                Value::Array(items.into_iter().map(|(_, item)| item).collect()),
            );
        }
        convert(serde_json::from_value(Value::Object(response))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{ReasoningEffort, ToolResult, ToolSpec};
    use crate::wire::ChatDialect;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn opts(model: &'static str) -> WireOptions<'static> {
        WireOptions {
            model,
            max_tokens: 2000,
            temperature: Some(0.3),
            reasoning_effort: None,
            prompt_caching: true,
            dialect: ChatDialect::OpenAi,
            stream: false,
        }
    }

    /// The request of llm-wire.md §3.1.
    #[test]
    fn stateless_round_trip_with_encrypted_reasoning() {
        let req = ModelRequest {
            system: Some("You are a terminal agent.".into()),
            messages: vec![
                Message::user("List the files in /app."),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::Reasoning(Reasoning {
                            id: Some("rs_01".into()),
                            encrypted_content: Some("gAAAA...".into()),
                            ..Reasoning::default()
                        }),
                        ContentBlock::Reasoning(Reasoning {
                            text: "not replayable".into(),
                            ..Reasoning::default()
                        }),
                        ContentBlock::ToolCall(ToolCall::new(
                            "call_1",
                            "bash",
                            json!({"command": "ls -la /app"}),
                        )),
                    ],
                },
                Message::tool_results([ToolResult::ok("call_1", "main.py\n")]),
            ],
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "Run a shell command in the sandbox.".into(),
                parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
            }],
            cache_key: Some("harness-rev-abc123".into()),
            ..ModelRequest::default()
        };
        let mut o = opts("gpt-5");
        o.reasoning_effort = Some(ReasoningEffort::Medium);
        let value: Value = serde_json::from_slice(&build_request(&req, &o).unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "model": "gpt-5",
                "instructions": "You are a terminal agent.",
                "input": [
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files in /app."}]},
                    {"type": "reasoning", "id": "rs_01", "summary": [], "encrypted_content": "gAAAA..."},
                    {"type": "function_call", "call_id": "call_1", "name": "bash", "arguments": "{\"command\":\"ls -la /app\"}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "main.py\n"}
                ],
                "tools": [{"type": "function", "name": "bash", "description": "Run a shell command in the sandbox.",
                           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
                           "strict": false}],
                "tool_choice": "auto",
                "parallel_tool_calls": true,
                "store": false,
                "include": ["reasoning.encrypted_content"],
                "reasoning": {"effort": "medium", "summary": "auto"},
                "max_output_tokens": 2000,
                "prompt_cache_key": "harness-rev-abc123",
                "stream": false
            })
        );
    }

    #[test]
    fn ordinary_models_keep_temperature_and_skip_reasoning() {
        let value: Value = serde_json::from_slice(
            &build_request(&ModelRequest::new("s", "u"), &opts("gpt-4.1")).unwrap(),
        )
        .unwrap();
        assert_eq!(value["temperature"], json!(0.3));
        assert!(value.get("include").is_none());
        assert!(value.get("reasoning").is_none());
        assert!(value.get("parallel_tool_calls").is_none());
    }

    #[test]
    fn assistant_text_is_output_text() {
        let req = ModelRequest {
            messages: vec![
                Message::user("hi"),
                Message::assistant("hello"),
                Message::user("bye"),
            ],
            ..ModelRequest::default()
        };
        let value: Value =
            serde_json::from_slice(&build_request(&req, &opts("gpt-4.1")).unwrap()).unwrap();
        assert_eq!(
            value["input"][1],
            json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]})
        );
    }

    #[test]
    fn parses_reasoning_text_and_calls() {
        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_responses/function_calls.json"
        ))
        .unwrap();
        assert_eq!(
            parsed.message.content,
            vec![
                ContentBlock::Reasoning(Reasoning {
                    id: Some("rs_02".into()),
                    encrypted_content: Some("gAAAAABoEnc".into()),
                    ..Reasoning::default()
                }),
                ContentBlock::text("main.py is the only file."),
                ContentBlock::ToolCall(ToolCall::new(
                    "call_2",
                    "read_file",
                    json!({"path": "/app/main.py"})
                )),
                ContentBlock::ToolCall(ToolCall::new(
                    "call_3",
                    "bash",
                    json!({"command": "python /app/main.py"})
                )),
            ]
        );
        assert_eq!(parsed.stop_reason, StopReason::ToolUse);
        assert_eq!(
            parsed.usage,
            Some(Usage {
                input_tokens: 330,
                output_tokens: 140,
                cache_read_tokens: 2560,
                cache_write_tokens: 0,
                reasoning_tokens: 64
            })
        );
    }

    #[test]
    fn summaries_incomplete_and_failed() {
        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_responses/reasoning_summary.json"
        ))
        .unwrap();
        let ContentBlock::Reasoning(reasoning) = &parsed.message.content[0] else {
            panic!("expected reasoning first: {parsed:?}");
        };
        assert_eq!(reasoning.summary.len(), 2);

        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_responses/incomplete.json"
        ))
        .unwrap();
        assert_eq!(parsed.stop_reason, StopReason::MaxTokens);
        assert_eq!(parsed.message.text(), "The answer is");

        assert_eq!(
            parse_response(include_bytes!(
                "../../tests/fixtures/openai_responses/failed.json"
            )),
            Err(WireError::Failed {
                code: "server_error".into(),
                message: "The model failed to generate a response.".into()
            })
        );
        let parsed = parse_response(include_bytes!(
            "../../tests/fixtures/openai_responses/text.json"
        ))
        .unwrap();
        assert_eq!(parsed.usage.unwrap().input_tokens, 20);
    }
}
