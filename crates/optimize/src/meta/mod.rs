//! The meta-agent: one fresh session per experiment, on the same runtime as the task agent,
//! with host tools that read the ledger, results and trajectories of the train tasks, and read
//! and write files inside `harness/` only. It proposes; the loop decides.
//!
//! * [`context`]: what the tools may see (train tasks only, by type).
//! * [`tools`]: the tools, one file each, behind a registry.
//! * [`prompt`]: the instructions, the session's harness and its first message.
//! * this file: one session, its spend recorded as it goes.

pub mod context;
pub mod prompt;
pub mod tools;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use autoagent_agent::{EndReason, Harness, Run, RunError, RunObserver, Totals};
use autoagent_harbor::Trajectory;
use autoagent_llm::Model;
use autoagent_sandbox::Backend;
use tokio_util::sync::CancellationToken;

pub use context::MetaContext;
pub use prompt::{
    META_PROMPT, STEERING_FILE, first_message, meta_harness, render_steps, with_steering,
};
pub use tools::{Proposal, tools};

use crate::run::{Reporter, add_cost};
use crate::state::{State, StateFile};

/// How a session ended.
pub(crate) enum SessionEnd {
    Proposal(Proposal),
    /// It ended without `finish`, or ran out of turns or tokens: recorded as a crash.
    Crash(String),
    /// The runtime failed (the model's provider, a tool's host): the loop decides what follows.
    Failed(RunError),
    Cancelled,
}

/// Everything one session runs with.
pub(crate) struct Session<'a> {
    pub context: Arc<MetaContext>,
    pub harness: Harness,
    pub first_message: String,
    pub model: Arc<dyn Model>,
    pub max_tokens: u64,
    /// Where the session's trajectory is written as it goes.
    pub trajectory_path: PathBuf,
    pub states: &'a StateFile,
    pub reporter: &'a dyn Reporter,
    /// The task sandboxes' backend: spot-check containers go when the session is cut short.
    pub backend: &'a dyn Backend,
    pub cancel: CancellationToken,
}

/// Keeps the meta-agent's spend in the state file as it goes, so a kill loses none of it.
struct Recorder<'a> {
    states: &'a StateFile,
    reporter: &'a dyn Reporter,
    state: Mutex<State>,
    carried: Option<f64>,
    path: PathBuf,
    over_budget: tokio::sync::Notify,
    max_tokens: u64,
}

impl RunObserver for Recorder<'_> {
    fn updated(&self, t: &Trajectory, totals: &Totals) {
        let _ = t.write(&self.path);
        let tokens = totals.prompt_tokens() + totals.usage.output_tokens;
        if let Ok(mut s) = self.state.lock() {
            s.meta_cost_usd = add_cost(
                self.carried,
                totals.cost_usd.or((totals.calls == 0).then_some(0.0)),
            );
            self.states.save(&s);
            self.reporter.meta_step(s.experiment, totals.calls, tokens);
        }
        if tokens > self.max_tokens {
            self.over_budget.notify_one();
        }
    }
}

impl Session<'_> {
    /// Runs the session; `state` comes back with its spend added.
    pub(crate) async fn run(self, state: &mut State) -> SessionEnd {
        let recorder = Recorder {
            states: self.states,
            reporter: self.reporter,
            state: Mutex::new(state.clone()),
            carried: state.meta_cost_usd,
            path: self.trajectory_path.clone(),
            over_budget: tokio::sync::Notify::new(),
            max_tokens: self.max_tokens,
        };
        let run = Run {
            harness: &self.harness,
            model: self.model.clone(),
            models: Default::default(),
            // Host tools only: the meta-agent's session needs no sandbox.
            sandbox: None,
            observer: &recorder,
        };
        let tools = tools(self.context.clone());
        let result = tokio::select! {
            r = run.run_with_host_tools(&self.first_message, &tools) => Some(r),
            () = recorder.over_budget.notified() => None,
            () = self.cancel.cancelled() => {
                // A spot check may have been running: its containers go too.
                self.backend.destroy_all().await;
                return SessionEnd::Cancelled;
            }
        };
        if result.is_none() {
            self.backend.destroy_all().await;
        }
        if let Ok(s) = recorder.state.lock() {
            state.clone_from(&s);
        }
        self.states.save(state);
        let max_turns = self.harness.config.agent.max_turns;
        match result {
            None => SessionEnd::Crash(format!(
                "meta-agent exceeded its token budget ({})",
                self.max_tokens
            )),
            Some(Ok(out)) => match out.end {
                EndReason::MaxTurns => SessionEnd::Crash(format!(
                    "meta-agent used its {max_turns} turns without finishing"
                )),
                EndReason::Finished => match finished_with(&out.trajectory, &out.answer) {
                    Some(p) => SessionEnd::Proposal(p),
                    None => SessionEnd::Crash("meta-agent stopped without calling finish".into()),
                },
            },
            Some(Err(e)) => SessionEnd::Failed(e),
        }
    }
}

/// The proposal, when the run ended on a `finish` call (its answer is the call's JSON).
fn finished_with(trajectory: &Trajectory, answer: &str) -> Option<Proposal> {
    let called_finish = trajectory
        .steps
        .iter()
        .rev()
        .find(|s| s.tool_calls.is_some())
        .and_then(|s| s.tool_calls.as_ref())
        .is_some_and(|calls| calls.iter().any(|c| c.function_name == "finish"));
    if !called_finish {
        return None;
    }
    serde_json::from_str(answer).ok()
}
