//! The turn loop: model call → tool calls in the sandbox → results back, until the agent is
//! done or out of turns; then, when the harness asks for it, a verification phase of bonus
//! turns. Long tool outputs spill to files; a long context is compacted. Every step is recorded
//! in an ATIF trajectory.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use autoagent_harbor::atif::{
    AgentInfo, FinalMetrics, Metrics, Observation, ObservationResult, Source, Step, SubagentRef,
    ToolCall, Trajectory,
};
use autoagent_llm::{
    ContentBlock, LlmError, Message, Model, ModelRequest, ReasoningEffort, Role, StopReason,
    ToolResult, ToolSpec, Usage,
};
use autoagent_sandbox::{ExecRequest, Sandbox, SandboxError};
use serde_json::{Map, Value, json};

use crate::harness::Harness;
use crate::tools::{self, HostTool, TOOLS_DIR, ToolContext, ToolError};

pub(crate) const AGENT_NAME: &str = "autoagent";

/// The prompt of a compaction call.
const COMPACT_PROMPT: &str = "The conversation is getting long and older turns will be removed. \
Write a summary that lets you continue the task without them: what has been done (commands run, \
files created or changed, with paths), what was learned (facts, errors and their causes), what \
remains to do, and any plan in progress. Be specific and complete; do not call tools.";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The model failed after its retries (see [`LlmError::is_infrastructure`]).
    #[error("model: {0}")]
    Model(Box<LlmError>),
    /// The sandbox failed: infrastructure.
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
}

impl From<LlmError> for RunError {
    fn from(e: LlmError) -> Self {
        Self::Model(Box::new(e))
    }
}

type LoopResult = Result<(String, EndReason, Trajectory), RunError>;
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Tokens and dollars of a run, sub-agents included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub usage: Usage,
    /// `None` as soon as one call had an unknown price: an unknown cost is never 0.
    pub cost_usd: Option<f64>,
    pub calls: u64,
}

impl Totals {
    fn add(&mut self, usage: &Usage, cost: Option<f64>) {
        self.cost_usd = if self.calls == 0 {
            cost
        } else {
            autoagent_harbor::cost::add(self.cost_usd, cost)
        };
        self.usage.add(usage);
        self.calls += 1;
    }

    /// Prompt tokens as ATIF and Harbor count them: cached ones included.
    pub fn prompt_tokens(&self) -> u64 {
        self.usage.input_tokens + self.usage.cache_read_tokens + self.usage.cache_write_tokens
    }
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The agent said it was done (and, with verification on, said so again).
    Finished,
    /// The turn budget ran out.
    MaxTurns,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub answer: String,
    pub end: EndReason,
    pub trajectory: Trajectory,
    pub totals: Totals,
}

/// Hears about the run as it goes (to keep `trajectory.json` and the trial's counts current).
pub trait RunObserver: Send + Sync {
    fn updated(&self, _trajectory: &Trajectory, _totals: &Totals) {}
}

/// An observer that hears nothing.
pub struct NoObserver;
impl RunObserver for NoObserver {}

/// What one run needs.
pub struct Run<'a> {
    pub harness: &'a Harness,
    /// The main agent's model; sub-agents use it too unless `models` has theirs.
    pub model: Arc<dyn Model>,
    /// Models by sub-agent name, for sub-agents with their own `model`.
    pub models: BTreeMap<String, Arc<dyn Model>>,
    /// Where the harness's tools run. `None` for a host-only session (the meta-agent's): then
    /// the agents may use only host tools, `finish` and sub-agents.
    pub sandbox: Option<&'a dyn Sandbox>,
    pub observer: &'a dyn RunObserver,
}

/// One agent's loop settings: the main agent or a sub-agent.
struct AgentRole<'a> {
    /// `None` for the main agent; the sub-agent's name otherwise (it tags model requests, so a
    /// scripted model can answer each agent from its own turns).
    name: Option<String>,
    system: &'a str,
    tools: Vec<ToolSpec>,
    max_turns: u32,
    verify: Option<(&'a str, u32)>,
}

struct State<'h> {
    host: &'h [Arc<dyn HostTool>],
    totals: Totals,
    /// Sub-agent trajectories, all embedded in the root one.
    subagents: Vec<Trajectory>,
    spill_count: u64,
}

impl Run<'_> {
    /// Runs the harness on one instruction.
    pub async fn run(&self, instruction: &str) -> Result<RunOutcome, RunError> {
        self.run_with_host_tools(instruction, &[]).await
    }

    /// [`Run::run`], with tools that run in this process offered to the main agent too.
    pub async fn run_with_host_tools(
        &self,
        instruction: &str,
        host: &[Arc<dyn HostTool>],
    ) -> Result<RunOutcome, RunError> {
        let h = self.harness;
        let workdir = match self.sandbox {
            Some(sandbox) => {
                if !h.script_tools.is_empty() {
                    sandbox.upload(&h.dir.join("tools"), TOOLS_DIR).await?;
                }
                match sandbox.workdir() {
                    Some(w) => w.to_owned(),
                    None => {
                        let out = sandbox.exec(ExecRequest::new("pwd")).await?;
                        out.stdout.trim().to_owned()
                    }
                }
            }
            None => {
                let needs: Vec<&str> = sandbox_tools(h);
                if !needs.is_empty() {
                    return Err(RunError::Sandbox(SandboxError::Unsupported(format!(
                        "the harness uses tools that run in a sandbox ({}), and this run has none",
                        needs.join(", ")
                    ))));
                }
                String::new()
            }
        };
        let mut tools = self.tool_specs(&h.config.agent.tools);
        tools.extend(host.iter().map(|t| t.spec()));
        let role = AgentRole {
            name: None,
            system: &h.system_prompt,
            tools,
            max_turns: h.config.agent.max_turns,
            verify: h
                .verify_prompt
                .as_deref()
                .map(|p| (p, h.config.verify.bonus_turns)),
        };
        let mut state = State {
            host,
            totals: Totals::default(),
            subagents: Vec::new(),
            spill_count: 0,
        };
        let (answer, end, mut trajectory) = self
            .agent_loop(&role, &h.first_message(instruction), &workdir, &mut state)
            .await?;
        trajectory.subagent_trajectories = std::mem::take(&mut state.subagents);
        finalize(&mut trajectory, &state.totals);
        self.observer.updated(&trajectory, &state.totals);
        Ok(RunOutcome {
            answer,
            end,
            trajectory,
            totals: state.totals,
        })
    }

    /// The specs offered to an agent: its listed tools, plus (for the main agent) every custom
    /// tool and every sub-agent.
    fn tool_specs(&self, listed: &[String]) -> Vec<ToolSpec> {
        let h = self.harness;
        let mut names: Vec<String> = listed.to_vec();
        for n in h
            .script_tools
            .keys()
            .chain(h.config.subagents.iter().map(|s| &s.name))
        {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names.iter().filter_map(|n| self.spec(n)).collect()
    }

    fn spec(&self, name: &str) -> Option<ToolSpec> {
        let h = self.harness;
        if let Some(s) = tools::builtin_spec(name) {
            return Some(s);
        }
        if let Some(t) = h.script_tools.get(name) {
            return Some(tools::script_spec(t));
        }
        h.subagent(name).map(|s| ToolSpec {
            name: s.name.clone(),
            description: s.description.clone(),
            parameters: json!({"type": "object", "properties": {
                "task": {"type": "string", "description": "What the sub-agent should do, with every detail it needs: it sees nothing else."}
            }, "required": ["task"]}),
        })
    }

    fn model_for(&self, role: &AgentRole<'_>) -> Arc<dyn Model> {
        role.name
            .as_ref()
            .and_then(|n| self.models.get(n))
            .cloned()
            .unwrap_or_else(|| self.model.clone())
    }

    fn request(
        &self,
        role: &AgentRole<'_>,
        messages: Vec<Message>,
        tools: Vec<ToolSpec>,
    ) -> ModelRequest {
        let a = &self.harness.config.agent;
        ModelRequest {
            system: Some(role.system.to_owned()),
            messages,
            tools,
            max_tokens: a.max_tokens,
            temperature: a.temperature,
            reasoning_effort: a.reasoning_effort.as_deref().and_then(parse_effort),
            agent: role.name.clone(),
            ..ModelRequest::default()
        }
    }

    /// One agent's loop. Boxed because sub-agents recurse into it.
    fn agent_loop<'s>(
        &'s self,
        role: &'s AgentRole<'s>,
        first: &'s str,
        workdir: &'s str,
        state: &'s mut State<'_>,
    ) -> BoxFuture<'s, LoopResult> {
        Box::pin(async move {
            let model = self.model_for(role);
            let mut traj = Trajectory::new(AgentInfo {
                name: match &role.name {
                    Some(n) => format!("{AGENT_NAME}/{n}"),
                    None => AGENT_NAME.to_owned(),
                },
                version: env!("CARGO_PKG_VERSION").to_owned(),
                model_name: Some(model.name().to_owned()),
                tool_definitions: Some(role.tools.iter().map(openai_function).collect()),
                extra: None,
            });
            traj.push(Step::new(Source::System, role.system));
            traj.push(Step::new(Source::User, first));
            let mut messages = vec![Message::user(first)];
            let mut budget = role.max_turns;
            let mut turns = 0u32;
            let mut verifying = false;
            let mut last_prompt_tokens = 0u64;
            let mut answer: Option<String> = None;
            let end = loop {
                if turns >= budget {
                    break EndReason::MaxTurns;
                }
                let limit = self.harness.config.context.compact_at_tokens;
                if last_prompt_tokens > limit {
                    self.compact(role, &model, first, &mut messages, &mut traj, state)
                        .await?;
                }
                // The conversation is lent to the request and taken back: copying it every
                // turn made each turn cost O(conversation) in allocations.
                let mut req = self.request(role, std::mem::take(&mut messages), role.tools.clone());
                let resp = model.complete(&req).await;
                messages = std::mem::take(&mut req.messages);
                let resp = resp?;
                turns += 1;
                state.totals.add(&resp.usage, resp.cost_usd);
                last_prompt_tokens = resp.usage.input_tokens
                    + resp.usage.cache_read_tokens
                    + resp.usage.cache_write_tokens
                    + resp.usage.output_tokens;
                let text = resp.message.text();
                let mut step = Step::new(Source::Agent, text.clone());
                step.model_name = Some(resp.model.clone());
                step.llm_call_count = Some(1);
                let reasoning: Vec<String> = resp
                    .message
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        ContentBlock::Reasoning(r) if !r.text.is_empty() => Some(r.text.clone()),
                        ContentBlock::Reasoning(r) if !r.summary.is_empty() => {
                            Some(r.summary.join("\n"))
                        }
                        _ => None,
                    })
                    .collect();
                if !reasoning.is_empty() {
                    step.reasoning_content = Some(reasoning.join("\n"));
                }
                step.metrics = Some(Metrics {
                    prompt_tokens: Some(
                        resp.usage.input_tokens
                            + resp.usage.cache_read_tokens
                            + resp.usage.cache_write_tokens,
                    ),
                    completion_tokens: Some(resp.usage.output_tokens),
                    cached_tokens: Some(resp.usage.cache_read_tokens),
                    cost_usd: resp.cost_usd,
                    extra: None,
                });
                let calls: Vec<autoagent_llm::ToolCall> = resp.tool_calls().cloned().collect();
                messages.push(resp.message.clone());
                let mut done = calls.is_empty();
                let mut finished_now = false;
                if !calls.is_empty() {
                    step.tool_calls = Some(
                        calls
                            .iter()
                            .map(|c| ToolCall {
                                tool_call_id: c.id.clone(),
                                function_name: c.name.clone(),
                                arguments: if c.arguments.is_object() {
                                    c.arguments.clone()
                                } else {
                                    json!({ "_raw": c.arguments })
                                },
                                extra: None,
                            })
                            .collect(),
                    );
                    let mut results = Vec::new();
                    let mut observed = Vec::new();
                    for call in &calls {
                        let (result, obs, finished) =
                            self.call_tool(role, call, workdir, state).await?;
                        if let Some(a) = finished {
                            finished_now = true;
                            answer = Some(a);
                            done = true;
                        }
                        results.push(result);
                        observed.push(obs);
                    }
                    step.observation = Some(Observation { results: observed });
                    messages.push(Message::tool_results(results));
                } else if resp.stop_reason == StopReason::MaxTokens {
                    // Cut off mid-answer: not a decision to stop.
                    done = false;
                    messages.push(Message::user("Your reply was cut off at the output token limit. Continue, in smaller pieces."));
                }
                traj.push(step);
                if role.name.is_none() {
                    self.observer.updated(&traj, &state.totals);
                }
                if done {
                    // The latest word counts: `finish`'s answer this turn, else this turn's text
                    // (after verification, the verified summary rather than the first one).
                    if !finished_now && !text.is_empty() {
                        answer = Some(text);
                    }
                    match role.verify {
                        Some((prompt, bonus)) if !verifying => {
                            verifying = true;
                            budget = turns + bonus;
                            append_user_text(&mut messages, prompt);
                            let mut s = Step::new(Source::User, prompt);
                            s.extra = Some(extra(
                                json!({"phase": "verification", "bonus_turns": bonus}),
                            ));
                            traj.push(s);
                            continue;
                        }
                        _ => break EndReason::Finished,
                    }
                }
            };
            Ok((answer.unwrap_or_default(), end, traj))
        })
    }

    /// Runs one tool call and returns its result for the model, its observation for the
    /// trajectory, and the final answer when the call was `finish`.
    async fn call_tool(
        &self,
        role: &AgentRole<'_>,
        call: &autoagent_llm::ToolCall,
        workdir: &str,
        state: &mut State<'_>,
    ) -> Result<(ToolResult, ObservationResult, Option<String>), RunError> {
        let h = self.harness;
        let offered = role.tools.iter().any(|t| t.name == call.name);
        let mut finished = None;
        let mut sub_ref = None;
        let outcome: Result<tools::ToolOutput, ToolError> = if let Some(err) = &call.arguments_error
        {
            Err(ToolError::RespondToModel(format!(
                "the arguments of `{}` are not valid JSON ({err}); send a JSON object",
                call.name
            )))
        } else if !offered {
            Err(ToolError::RespondToModel(format!(
                "unknown tool `{}`; the tools are: {}",
                call.name,
                role.tools
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        } else if let Some(host) = state.host.iter().find(|t| t.spec().name == call.name) {
            let out = host.call(&call.arguments).await;
            if let Ok(o) = &out
                && let Some(a) = &o.finish
            {
                finished = Some(a.clone());
            }
            out
        } else if call.name == tools::finish::NAME {
            let out = tools::finish::answer(&call.arguments);
            finished.clone_from(&out.finish);
            Ok(out)
        } else if let Some(sub) = h.subagent(&call.name) {
            match call.arguments.get("task").and_then(Value::as_str) {
                None => Err(ToolError::RespondToModel(
                    "missing string argument `task`".into(),
                )),
                Some(task) => {
                    let sub_role = AgentRole {
                        name: Some(sub.name.clone()),
                        system: h
                            .subagent_prompts
                            .get(&sub.name)
                            .map(String::as_str)
                            .unwrap_or_default(),
                        tools: sub.tools.iter().filter_map(|t| self.spec(t)).collect(),
                        max_turns: sub.max_turns,
                        verify: None,
                    };
                    let (answer, end, sub_traj) =
                        self.agent_loop(&sub_role, task, workdir, state).await?;
                    sub_ref = sub_traj.trajectory_id.clone();
                    let mut sub_traj = sub_traj;
                    finalize_steps(&mut sub_traj);
                    state.subagents.push(sub_traj);
                    let mut content = answer;
                    if end == EndReason::MaxTurns {
                        content.push_str(&format!(
                            "\n[the sub-agent `{}` stopped at its limit of {} turns]",
                            sub.name, sub.max_turns
                        ));
                    }
                    Ok(tools::ToolOutput::ok(content))
                }
            }
        } else if let Some(sandbox) = self.sandbox {
            let ctx = ToolContext {
                sandbox,
                workdir,
                harness: h,
            };
            match h.script_tools.get(&call.name) {
                Some(t) => tools::run_script(t, &call.arguments, &ctx).await,
                None => tools::run_builtin(&call.name, &call.arguments, &ctx).await,
            }
        } else {
            // Refused up front in `run_with_host_tools`; kept as an answer, never a panic.
            Err(ToolError::RespondToModel(format!(
                "`{}` needs a sandbox, and this session has none",
                call.name
            )))
        };
        let (content, is_error) = match outcome {
            Ok(o) => (o.content, o.is_error),
            Err(ToolError::RespondToModel(m)) => (m, true),
            Err(ToolError::Fatal(e)) => return Err(RunError::Sandbox(e)),
        };
        state.spill_count += 1;
        let path = format!(
            "{}/{}-{}.txt",
            h.config.context.spill_dir.trim_end_matches('/'),
            state.spill_count,
            sanitize(&call.name)
        );
        let limit = h.config.context.max_tool_output_chars;
        let spilled = match self.sandbox {
            Some(sandbox) => tools::spill(content, limit, &path, sandbox).await,
            // Nowhere to keep the whole output: the model gets its head and tail.
            None => Ok(autoagent_harbor::text::cut_middle(
                &content,
                limit,
                "[... output cut: this session has no sandbox to keep it whole ...]",
            )
            .into_owned()),
        };
        let content = match spilled {
            Ok(c) => c,
            Err(ToolError::Fatal(e)) => return Err(RunError::Sandbox(e)),
            Err(ToolError::RespondToModel(m)) => m,
        };
        let obs = ObservationResult {
            source_call_id: Some(call.id.clone()),
            content: Some(content.clone()),
            subagent_trajectory_ref: sub_ref.map(|id| {
                vec![SubagentRef {
                    trajectory_id: id,
                    session_id: None,
                }]
            }),
            extra: is_error.then(|| extra(json!({"is_error": true}))),
        };
        let result = if is_error {
            ToolResult::error(&call.id, content)
        } else {
            ToolResult::ok(&call.id, content)
        };
        Ok((result, obs, finished))
    }

    /// Replaces older turns by a summary written by the model, keeping the first message (the
    /// instruction) and the most recent turns. Returns false when there was nothing to compact.
    async fn compact(
        &self,
        role: &AgentRole<'_>,
        model: &Arc<dyn Model>,
        first: &str,
        messages: &mut Vec<Message>,
        traj: &mut Trajectory,
        state: &mut State<'_>,
    ) -> Result<bool, RunError> {
        let keep = self.harness.config.context.keep_recent_turns.max(1);
        let assistant_idx: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == Role::Assistant)
            .map(|(i, _)| i)
            .collect();
        if assistant_idx.len() <= keep {
            return Ok(false);
        }
        let split = assistant_idx[assistant_idx.len() - keep];
        // The history goes as a plain transcript in one message: a request that carries tool
        // calls and results must also declare tools on some APIs (Anthropic answers 400), and
        // the summary must not call any.
        let ask = vec![Message::user(format!(
            "{}\n\n{COMPACT_PROMPT}",
            transcript(messages)
        ))];
        let resp = model.complete(&self.request(role, ask, Vec::new())).await?;
        state.totals.add(&resp.usage, resp.cost_usd);
        let summary = resp.message.text();
        let replaced = split;
        let mut compacted = vec![Message::user(format!(
            "{first}\n\n[Earlier turns were compacted. Summary of the work so far:]\n{summary}"
        ))];
        compacted.extend(messages.drain(split..));
        *messages = compacted;
        let mut step = Step::new(
            Source::System,
            format!("Context compacted: {replaced} earlier messages were replaced by a summary."),
        );
        step.extra = Some(extra(json!({
            "context_management": {"type": "compaction", "boundary": "replace"},
            "replaced_messages": replaced,
            "kept_messages": messages.len() - 1,
            "summary": summary,
            "summary_call": {
                "prompt_tokens": resp.usage.input_tokens + resp.usage.cache_read_tokens + resp.usage.cache_write_tokens,
                "completion_tokens": resp.usage.output_tokens,
                "cost_usd": resp.cost_usd,
            },
        })));
        traj.push(step);
        Ok(true)
    }
}

/// The conversation as text, for the summary call: each tool output cut to a few thousand
/// characters (the summary needs what happened, not every byte).
fn transcript(messages: &[Message]) -> String {
    const MAX: usize = 3000;
    let cut = |s: &str| autoagent_harbor::text::cut_middle(s, MAX, "[...]").into_owned();
    let mut out = String::from("<conversation so far>\n");
    for m in messages {
        let who = match m.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        for b in &m.content {
            match b {
                ContentBlock::Text { text } => out.push_str(&format!("[{who}] {}\n", cut(text))),
                ContentBlock::ToolCall(c) => out.push_str(&format!(
                    "[{who} calls {}] {}\n",
                    c.name,
                    cut(&c.arguments_json_text())
                )),
                ContentBlock::ToolResult(r) => out.push_str(&format!(
                    "[tool result{}] {}\n",
                    if r.is_error { ", error" } else { "" },
                    cut(&r.content)
                )),
                ContentBlock::Reasoning(_) => {}
            }
        }
    }
    out.push_str("</conversation so far>");
    out
}

fn append_user_text(messages: &mut Vec<Message>, text: &str) {
    match messages.last_mut() {
        Some(m) if m.role == Role::User => m.content.push(ContentBlock::text(text)),
        _ => messages.push(Message::user(text)),
    }
}

fn parse_effort(s: &str) -> Option<ReasoningEffort> {
    serde_json::from_value(Value::String(s.to_owned())).ok()
}

fn extra(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The OpenAI function-calling form of a tool, as ATIF's `tool_definitions` expects.
/// The tools of the harness (main agent and sub-agents) that run in the sandbox.
fn sandbox_tools(h: &Harness) -> Vec<&str> {
    let mut names: Vec<&str> = h
        .config
        .agent
        .tools
        .iter()
        .chain(h.config.subagents.iter().flat_map(|s| s.tools.iter()))
        .map(String::as_str)
        .filter(|n| *n != tools::finish::NAME && h.subagent(n).is_none())
        .chain(h.script_tools.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn openai_function(t: &ToolSpec) -> Value {
    json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})
}

fn finalize_steps(t: &mut Trajectory) {
    let mut fm = FinalMetrics {
        total_steps: Some(t.steps.len() as u64),
        ..FinalMetrics::default()
    };
    let (mut p, mut c, mut k) = (0, 0, 0);
    for m in t.steps.iter().filter_map(|s| s.metrics.as_ref()) {
        p += m.prompt_tokens.unwrap_or(0);
        c += m.completion_tokens.unwrap_or(0);
        k += m.cached_tokens.unwrap_or(0);
    }
    fm.total_prompt_tokens = Some(p);
    fm.total_completion_tokens = Some(c);
    fm.total_cached_tokens = Some(k);
    fm.total_cost_usd = autoagent_harbor::cost::sum(
        t.steps
            .iter()
            .filter_map(|s| s.metrics.as_ref())
            .map(|m| m.cost_usd),
    );
    t.final_metrics = Some(fm);
}

/// Final metrics of the root trajectory: every call, sub-agents and compactions included.
fn finalize(t: &mut Trajectory, totals: &Totals) {
    t.final_metrics = Some(FinalMetrics {
        total_prompt_tokens: Some(totals.prompt_tokens()),
        total_completion_tokens: Some(totals.usage.output_tokens),
        total_cached_tokens: Some(totals.usage.cache_read_tokens),
        total_cost_usd: totals.cost_usd,
        total_steps: Some(t.steps.len() as u64),
        extra: Some(extra(json!({"llm_calls": totals.calls}))),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_cost_is_never_zero() {
        let mut t = Totals::default();
        t.add(&Usage::default(), Some(0.5));
        assert_eq!(t.cost_usd, Some(0.5));
        t.add(&Usage::default(), None);
        assert_eq!(t.cost_usd, None);
        t.add(&Usage::default(), Some(1.0));
        assert_eq!(t.cost_usd, None);
    }
}
