//! `-a harness`: the task agent of `autoagent-agent` as a trial's agent. The loop runs in this
//! process; its tools run in the trial's sandbox (the original's "fixed adapter boundary").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use autoagent_agent::{Harness, Run, RunError, RunObserver, Totals};
use autoagent_harbor::Trajectory;
use autoagent_harbor::exception::ExceptionType;
use autoagent_harbor::result::{AgentResult, ModelInfo};
use autoagent_llm::{EnvSource, ErrorKind, LlmError, ModelConfig, build_model};
use autoagent_sandbox::Sandbox;
use serde_json::json;

use crate::agent::{AgentError, TrialAgent, TrialContext};

pub struct HarnessAgent {
    harness: Arc<Harness>,
    model: ModelConfig,
    env: EnvSource,
}

impl HarnessAgent {
    /// `model` is the resolved model config (`--model` over the harness's `agent.model`).
    pub fn new(harness: Arc<Harness>, model: ModelConfig, env: EnvSource) -> Self {
        Self {
            harness,
            model,
            env,
        }
    }
}

/// Keeps `trajectory.json` and the trial's running counts current after every step, so a run
/// cut by the agent timeout still leaves both behind.
struct Recorder<'a> {
    path: std::path::PathBuf,
    partial: &'a Mutex<AgentResult>,
}

impl RunObserver for Recorder<'_> {
    fn updated(&self, trajectory: &Trajectory, totals: &Totals) {
        if let Err(e) = trajectory.write(&self.path) {
            tracing::warn!("writing {}: {e}", self.path.display());
        }
        if let Ok(mut p) = self.partial.lock() {
            *p = agent_result(totals, None);
        }
    }
}

fn agent_result(totals: &Totals, metadata: Option<serde_json::Value>) -> AgentResult {
    AgentResult {
        n_input_tokens: Some(totals.prompt_tokens()),
        n_cache_tokens: Some(totals.usage.cache_read_tokens),
        n_output_tokens: Some(totals.usage.output_tokens),
        cost_usd: totals.cost_usd,
        model_usage: None,
        rollout_details: None,
        metadata,
    }
}

/// Maps a model failure to Harbor's exception names; provider outages are infrastructure.
fn model_error(e: &LlmError) -> AgentError {
    let kind = match e.kind() {
        ErrorKind::Infrastructure | ErrorKind::Malformed => {
            return AgentError::ProviderUnavailable(e.to_string());
        }
        ErrorKind::Auth => ExceptionType::AgentAuthenticationError,
        ErrorKind::NotFound => ExceptionType::ModelNotFoundError,
        ErrorKind::QuotaExhausted => ExceptionType::ApiUsageLimitError,
        ErrorKind::ContextOverflow => ExceptionType::ContextLengthExceededError,
        // The provider refused what the harness asked for (e.g. max_tokens above the model's
        // limit): the harness's doing, scored like any failure of the agent.
        ErrorKind::BadRequest | ErrorKind::Config => ExceptionType::ModelRequestError,
        // A test's script went wrong: loud, never a score.
        ErrorKind::Script => ExceptionType::ScriptedModelError,
    };
    AgentError::Model {
        kind,
        message: e.to_string(),
    }
}

#[async_trait]
impl TrialAgent for HarnessAgent {
    fn name(&self) -> &str {
        "harness"
    }
    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }
    fn model_info(&self) -> Option<ModelInfo> {
        let (provider, name) = self.model.model.split_once('/')?;
        Some(ModelInfo {
            name: name.to_owned(),
            provider: Some(provider.to_owned()),
        })
    }

    async fn run(
        &self,
        instruction: &str,
        env: &dyn Sandbox,
        ctx: &TrialContext,
        partial: &Mutex<AgentResult>,
    ) -> Result<AgentResult, AgentError> {
        // A fresh model per trial: a scripted model starts its script over.
        let model = build_model(&self.model, &self.env).map_err(|e| model_error(&e))?;
        let mut models = BTreeMap::new();
        for sub in &self.harness.config.subagents {
            if let Some(m) = &sub.model {
                let cfg = ModelConfig {
                    model: m.clone(),
                    ..self.model.clone()
                };
                models.insert(
                    sub.name.clone(),
                    build_model(&cfg, &self.env).map_err(|e| model_error(&e))?,
                );
            }
        }
        let recorder = Recorder {
            path: ctx.agent_dir.join("trajectory.json"),
            partial,
        };
        let run = Run {
            harness: &self.harness,
            model,
            models,
            sandbox: Some(env),
            observer: &recorder,
        };
        match run.run(instruction).await {
            Ok(out) => {
                let meta = json!({
                    "end": match out.end { autoagent_agent::EndReason::Finished => "finished", autoagent_agent::EndReason::MaxTurns => "max_turns" },
                    "answer": out.answer,
                    "llm_calls": out.totals.calls,
                    "harness": self.harness.dir.display().to_string(),
                });
                Ok(agent_result(&out.totals, Some(meta)))
            }
            Err(RunError::Model(e)) => Err(model_error(&e)),
            Err(RunError::Sandbox(e)) => Err(AgentError::Sandbox(e)),
        }
    }
}
