//! A model wrapper for tests, on top of the scripted model: records every request (to assert
//! on, and to print when a test fails).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use autoagent_llm::{
    ContentBlock, LlmError, Model, ModelRequest, ModelResponse, ProviderKind, ScriptedModel,
    ToolCall,
};
use serde_json::Value;

/// Wraps the scripted model: records every request, and turns a scripted tool call whose
/// arguments are `{ __raw_json = "TEXT" }` into a call whose arguments are the raw (possibly
/// malformed) JSON text, as an OpenAI-style wire delivers it.
#[derive(Debug)]
pub struct Recorder {
    inner: Arc<ScriptedModel>,
    requests: Mutex<Vec<ModelRequest>>,
}

impl Recorder {
    pub fn new(inner: Arc<ScriptedModel>) -> Self {
        Self {
            inner,
            requests: Mutex::default(),
        }
    }

    pub fn requests(&self) -> Vec<ModelRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One paragraph per request: agent, tools, messages (text and tool results, clipped).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, req) in self.requests().iter().enumerate() {
            let tools: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
            let _ = writeln!(
                out,
                "request #{} agent={:?} tools={tools:?} messages={}",
                i + 1,
                req.agent,
                req.messages.len()
            );
            for (j, m) in req.messages.iter().enumerate() {
                for block in &m.content {
                    let line = match block {
                        ContentBlock::Text { text } => format!("text {text:?}"),
                        ContentBlock::ToolCall(c) => {
                            format!("tool_call {} {}({})", c.id, c.name, c.arguments)
                        }
                        ContentBlock::ToolResult(r) => format!(
                            "tool_result {} is_error={} {:?}",
                            r.tool_call_id,
                            r.is_error,
                            clip_short(&r.content)
                        ),
                        ContentBlock::Reasoning(r) => format!("reasoning {:?}", r.text),
                    };
                    let _ = writeln!(out, "  [{j}] {:?}: {}", m.role, clip_short(&line));
                }
            }
        }
        out
    }
}

fn clip_short(s: &str) -> String {
    match autoagent_harbor::text::head_tail(s, 600) {
        None => s.to_owned(),
        Some(cut) => format!("{}[…]{}", cut.head, cut.tail),
    }
}

#[async_trait]
impl Model for Recorder {
    async fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, LlmError> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(req.clone());
        let mut resp = self.inner.complete(req).await?;
        for block in &mut resp.message.content {
            if let ContentBlock::ToolCall(call) = block
                && let Some(raw) = call.arguments.get("__raw_json").and_then(Value::as_str)
            {
                *call = ToolCall::from_json_text(call.id.clone(), call.name.clone(), raw);
            }
        }
        Ok(resp)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn provider(&self) -> ProviderKind {
        ProviderKind::Scripted
    }
}
