//! The `scripted` model: answers with turns read from a file, for tests of everything above
//! this crate. It fails loudly (an [`ErrorKind::Script`](crate::ErrorKind::Script) error) when
//! the script runs out or a request does not meet a turn's expectations.
//!
//! ```toml
//! model = "scripted-demo"          # optional: the model id reported in responses
//!
//! [[turns]]
//! text = "I'll list the files."
//! reasoning = "The user wants a listing."
//! tool_calls = [{ name = "bash", arguments = { command = "ls /app" } }]
//! expect = { system_contains = "terminal agent", tools_include = ["bash"] }
//!
//! [[turns]]
//! agent = "checker"                # consumed only by requests with agent = "checker"
//! text = "Looks right."
//!
//! [[turns]]
//! text = "Done."
//! usage = { input_tokens = 1200, output_tokens = 40 }
//! cost_usd = 0.004
//! expect = { last_tool_result_contains = "main.py", last_tool_result_is_error = false }
//! ```
//!
//! JSON (`.json` files) has the same shape: `{"turns": [{"text": "…", "tool_calls": […]}]}`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorKind, LlmError};
use crate::model::{Model, ProviderKind};
use crate::types::{
    ContentBlock, Message, ModelRequest, ModelResponse, Reasoning, Role, StopReason, ToolCall,
    Usage,
};

/// Model id reported when the script names none.
const DEFAULT_SCRIPT_MODEL: &str = "scripted";
/// How much of the seen text an expectation failure quotes.
const MAX_QUOTE: usize = 300;

/// A parsed script: load once, share with [`Arc`], and give every conversation its own
/// [`ScriptedModel`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The model id reported in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(alias = "turn")]
    pub turns: Vec<ScriptTurn>,
}

/// One scripted assistant turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptTurn {
    /// Only requests from this agent ([`ModelRequest::agent`]) consume the turn. Untagged turns
    /// serve the main agent, and sub-agents that have no tagged turns of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ScriptToolCall>,
    /// Defaults to `tool_use` when the turn has tool calls, `end_turn` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The call's cost; absent means unknown (`None`), as for any unpriced model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Instead of answering, fail with an error of this kind (to test error handling above),
    /// e.g. `fail = "infrastructure"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<ErrorKind>,
    /// Checks on the incoming request.
    #[serde(default, skip_serializing_if = "Expect::is_empty")]
    pub expect: Expect,
}

/// A scripted tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptToolCall {
    /// Defaults to `call_<turn>_<n>` (1-based turn in the file, 0-based call in the turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Expectations on the request that a turn answers. All given checks must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The system prompt contains this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_contains: Option<String>,
    /// The text of the last user message that has text contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_user_contains: Option<String>,
    /// The last tool result in the conversation contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool_result_contains: Option<String>,
    /// The last tool result in the conversation has this error flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tool_result_is_error: Option<bool>,
    /// These tools are offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_include: Vec<String>,
    /// These tools are not offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools_exclude: Vec<String>,
    /// The conversation has exactly this many messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_len: Option<usize>,
}

impl Expect {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// The first expectation that `req` does not meet, described as "expected …, saw …".
    fn violation(&self, req: &ModelRequest) -> Option<String> {
        if let Some(needle) = &self.system_contains {
            let system = req.system.as_deref().unwrap_or("");
            if !system.contains(needle.as_str()) {
                return Some(format!(
                    "expected the system prompt to contain {needle:?}, saw {}",
                    quote(system)
                ));
            }
        }
        if let Some(needle) = &self.last_user_contains {
            let last_user = req
                .messages
                .iter()
                .rev()
                .filter(|m| m.role == Role::User)
                .map(Message::text)
                .find(|text| !text.is_empty())
                .unwrap_or_default();
            if !last_user.contains(needle.as_str()) {
                return Some(format!(
                    "expected the last user text to contain {needle:?}, saw {}",
                    quote(&last_user)
                ));
            }
        }
        let last_result = req
            .messages
            .iter()
            .rev()
            .find_map(|m| m.tool_results_iter().last());
        if let Some(needle) = &self.last_tool_result_contains {
            match last_result {
                Some(result) if result.content.contains(needle.as_str()) => {}
                Some(result) => {
                    return Some(format!(
                        "expected the last tool result to contain {needle:?}, saw {}",
                        quote(&result.content)
                    ));
                }
                None => {
                    return Some(format!(
                        "expected the last tool result to contain {needle:?}, saw no tool result"
                    ));
                }
            }
        }
        if let Some(is_error) = self.last_tool_result_is_error {
            match last_result {
                Some(result) if result.is_error == is_error => {}
                Some(result) => {
                    return Some(format!(
                        "expected the last tool result to have is_error = {is_error}, saw \
                         is_error = {} with {}",
                        result.is_error,
                        quote(&result.content)
                    ));
                }
                None => {
                    return Some(format!(
                        "expected a last tool result with is_error = {is_error}, saw no tool result"
                    ));
                }
            }
        }
        let offered: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        if let Some(missing) = self
            .tools_include
            .iter()
            .find(|t| !offered.contains(&t.as_str()))
        {
            return Some(format!(
                "expected tool {missing:?} to be offered, saw tools {offered:?}"
            ));
        }
        if let Some(present) = self
            .tools_exclude
            .iter()
            .find(|t| offered.contains(&t.as_str()))
        {
            return Some(format!(
                "expected tool {present:?} not to be offered, saw tools {offered:?}"
            ));
        }
        if let Some(len) = self.messages_len
            && req.messages.len() != len
        {
            return Some(format!(
                "expected {len} messages, saw {}",
                req.messages.len()
            ));
        }
        None
    }
}

fn quote(text: &str) -> String {
    if text.len() <= MAX_QUOTE {
        return format!("{text:?}");
    }
    let mut end = MAX_QUOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &text[..end], text.len())
}

impl Script {
    /// Reads a script: JSON when the file ends in `.json`, TOML otherwise.
    pub fn from_file(path: &Path) -> Result<Self, LlmError> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            LlmError::Config(format!("cannot read script {}: {err}", path.display()))
        })?;
        let script: Script = if path.extension().is_some_and(|ext| ext == "json") {
            serde_json::from_str(&text).map_err(|err| err.to_string())
        } else {
            toml::from_str(&text).map_err(|err| err.to_string())
        }
        .map_err(|err| LlmError::Config(format!("invalid script {}: {err}", path.display())))?;
        if script.turns.is_empty() {
            return Err(LlmError::Config(format!(
                "script {} has no turns",
                path.display()
            )));
        }
        Ok(script)
    }

    /// The indices (into `turns`) that requests from `agent` consume, in order.
    fn queue(&self, agent: Option<&str>) -> Vec<usize> {
        let tagged = |tag: Option<&str>| -> Vec<usize> {
            self.turns
                .iter()
                .enumerate()
                .filter(|(_, turn)| turn.agent.as_deref() == tag)
                .map(|(i, _)| i)
                .collect()
        };
        match agent {
            Some(name) if self.turns.iter().any(|t| t.agent.as_deref() == Some(name)) => {
                tagged(Some(name))
            }
            _ => tagged(None),
        }
    }
}

/// A model that replays a [`Script`]. Each instance has its own cursor: create one per
/// conversation (trial, agent run). Sub-agent calls made through the same instance consume the
/// turns tagged with their agent name, or else the next untagged turns, in order.
#[derive(Debug)]
pub struct ScriptedModel {
    name: String,
    source: String,
    script: Arc<Script>,
    /// Position in each agent's queue ("" is the untagged queue).
    cursors: Mutex<HashMap<String, usize>>,
}

impl ScriptedModel {
    /// A fresh model over a shared script; `source` names it in errors (usually the path).
    pub fn new(script: Arc<Script>, source: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            name: format!("{}/{source}", ProviderKind::Scripted),
            source,
            script,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    /// Loads a script file and starts at its first turn.
    pub fn from_file(path: &Path) -> Result<Self, LlmError> {
        let script = Script::from_file(path)?;
        Ok(Self::new(Arc::new(script), path.display().to_string()))
    }

    /// The script this model replays.
    pub fn script(&self) -> &Arc<Script> {
        &self.script
    }

    /// Turns not consumed yet, over all agents.
    pub fn remaining(&self) -> usize {
        let cursors = self.lock_cursors();
        let used: usize = cursors.values().sum();
        self.script.turns.len().saturating_sub(used)
    }

    /// Fails when turns are left: a test should usually consume its whole script.
    pub fn finish(&self) -> Result<(), LlmError> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(LlmError::Script(format!(
                "script {}: {left} of {} turns were never requested",
                self.source,
                self.script.turns.len()
            ))),
        }
    }

    fn lock_cursors(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // A panic while holding the lock cannot leave the map inconsistent (one integer write).
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the next turn for the request's agent.
    fn next_turn(&self, req: &ModelRequest) -> Result<(usize, usize), LlmError> {
        let queue = self.script.queue(req.agent.as_deref());
        let key = match req.agent.as_deref() {
            Some(name)
                if self
                    .script
                    .turns
                    .iter()
                    .any(|t| t.agent.as_deref() == Some(name)) =>
            {
                name.to_owned()
            }
            _ => String::new(),
        };
        let mut cursors = self.lock_cursors();
        let position = cursors.entry(key.clone()).or_insert(0);
        let Some(&index) = queue.get(*position) else {
            let who = if key.is_empty() {
                "the main agent".to_owned()
            } else {
                format!("agent {key:?}")
            };
            return Err(LlmError::Script(format!(
                "script {} ran out: request #{} from {who}, but the script has only {} turn(s) \
                 for it (last user text: {})",
                self.source,
                *position + 1,
                queue.len(),
                quote(
                    &req.messages
                        .iter()
                        .rev()
                        .find(|m| m.role == Role::User)
                        .map(Message::text)
                        .unwrap_or_default()
                )
            )));
        };
        *position += 1;
        Ok((index, *position))
    }
}

#[async_trait]
impl Model for ScriptedModel {
    async fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, LlmError> {
        let started = Instant::now();
        let (index, call) = self.next_turn(req)?;
        let turn = &self.script.turns[index];
        let turn_no = index + 1;
        let at = match &turn.agent {
            Some(agent) => format!("turn {turn_no} (agent {agent:?}, call {call})"),
            None => format!("turn {turn_no} (call {call})"),
        };
        if let Some(problem) = turn.expect.violation(req) {
            return Err(LlmError::Script(format!(
                "script {}, {at}: {problem}",
                self.source
            )));
        }
        if let Some(kind) = turn.fail {
            return Err(LlmError::Failed {
                provider: ProviderKind::Scripted.as_str().to_owned(),
                kind,
                code: kind.as_str().to_owned(),
                message: format!("scripted failure at {at}"),
                request_id: None,
                attempts: 1,
            });
        }

        let mut content = Vec::new();
        if let Some(reasoning) = &turn.reasoning {
            content.push(ContentBlock::Reasoning(Reasoning {
                text: reasoning.clone(),
                ..Reasoning::default()
            }));
        }
        if let Some(text) = &turn.text {
            content.push(ContentBlock::text(text.clone()));
        }
        for (n, call) in turn.tool_calls.iter().enumerate() {
            content.push(ContentBlock::ToolCall(ToolCall::new(
                call.id
                    .clone()
                    .unwrap_or_else(|| format!("call_{turn_no}_{n}")),
                call.name.clone(),
                call.arguments.clone(),
            )));
        }
        let stop_reason = turn
            .stop_reason
            .clone()
            .unwrap_or(if turn.tool_calls.is_empty() {
                StopReason::EndTurn
            } else {
                StopReason::ToolUse
            });
        Ok(ModelResponse {
            message: Message {
                role: Role::Assistant,
                content,
            },
            stop_reason,
            usage: turn.usage.unwrap_or_default(),
            cost_usd: turn.cost_usd,
            model: self
                .script
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_SCRIPT_MODEL.to_owned()),
            latency: started.elapsed(),
            request_id: None,
            response_id: Some(format!("scripted-{turn_no}")),
            attempts: 1,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> ProviderKind {
        ProviderKind::Scripted
    }
}
