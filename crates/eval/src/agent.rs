//! The agent side of a trial: the [`TrialAgent`] interface (Harbor's `BaseAgent`) and the
//! built-in `oracle` and `nop` agents (`agents/oracle.py`, `agents/nop.py`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use autoagent_harbor::Task;
use autoagent_harbor::exception::ExceptionType;
use autoagent_harbor::result::{AgentResult, ModelInfo};
use autoagent_sandbox::{ExecRequest, Sandbox, SandboxError};

/// What an agent gets besides the instruction and the sandbox.
#[derive(Debug, Clone)]
pub struct TrialContext {
    pub task: std::sync::Arc<Task>,
    pub trial_name: String,
    /// The host side of `/logs/agent` (`<trial>/agent/`).
    pub agent_dir: PathBuf,
    /// The agent phase's effective timeout; `None` is unlimited.
    pub timeout: Option<Duration>,
    /// `[agent].user` (a step's `agent.user` when it sets one).
    pub user: Option<String>,
    /// The step being run, for a multi-step task (its `steps/<name>/` holds its solution).
    pub step: Option<String>,
}

impl TrialContext {
    /// The reference solution's dir: the step's `solution/` when it has one, else the task's.
    pub fn solution_dir(&self) -> PathBuf {
        self.step
            .as_ref()
            .map(|s| self.task.step_dir(s).join("solution"))
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| self.task.solution_dir())
    }
}

/// Why an agent stopped early. Harbor's exception class names are the stable keys.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent ran out of its time (the trial also enforces this from outside).
    #[error("agent timed out after {0:?}")]
    Timeout(Duration),
    /// The agent's process exited non-zero: recorded, and the verifier still runs.
    #[error("agent exited with code {0}")]
    NonZeroExit(i64),
    /// A file the agent needs is missing from the task (oracle without `solve.sh`): aborts.
    #[error("{0}")]
    FileNotFound(String),
    /// The sandbox failed under the agent. Infrastructure (`RuntimeError`) when the sandbox is
    /// gone or its host does not answer; otherwise the agent broke it, and the trial goes on
    /// to the verifier (see the trial's rule in the crate README).
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// The model provider failed after its retries: infrastructure, not the agent's fault.
    #[error("model provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// The model refused the request for a reason that retrying will not fix (a bad key, an
    /// unknown model, no credit, a context too long). `kind` is Harbor's exception name.
    #[error("{message}")]
    Model {
        kind: ExceptionType,
        message: String,
    },
    /// Anything else that ends the run (a bug, a bad configuration).
    #[error("{0}")]
    Fatal(String),
}

impl AgentError {
    /// The exception type written to `exception_info`.
    pub fn exception_type(&self) -> ExceptionType {
        match self {
            Self::Timeout(_) => ExceptionType::AgentTimeoutError,
            Self::NonZeroExit(_) => ExceptionType::NonZeroAgentExitCodeError,
            Self::FileNotFound(_) => ExceptionType::FileNotFoundError,
            Self::Sandbox(_) => ExceptionType::RuntimeError,
            Self::ProviderUnavailable(_) => ExceptionType::ProviderUnavailableError,
            Self::Model { kind, .. } => kind.clone(),
            Self::Fatal(_) => ExceptionType::RuntimeError,
        }
    }
    /// Whether the trial still goes on to the verifier (Harbor: a timeout or a non-zero exit).
    pub fn continues_to_verifier(&self) -> bool {
        matches!(self, Self::NonZeroExit(_) | Self::Timeout(_))
    }
}

#[async_trait]
pub trait TrialAgent: Send + Sync {
    fn name(&self) -> &str;
    fn version(&self) -> &str;
    fn model_info(&self) -> Option<ModelInfo> {
        None
    }
    async fn setup(&self, _env: &dyn Sandbox, _ctx: &TrialContext) -> Result<(), AgentError> {
        Ok(())
    }
    /// Runs the agent. The returned [`AgentResult`] becomes the trial's `agent_result`.
    /// `partial` is where an agent keeps what it has counted so far, so that a run cut by the
    /// timeout still reports its tokens and cost.
    async fn run(
        &self,
        instruction: &str,
        env: &dyn Sandbox,
        ctx: &TrialContext,
        partial: &std::sync::Mutex<AgentResult>,
    ) -> Result<AgentResult, AgentError>;
}

/// Runs the task's reference solution: uploads `solution/` to `/solution`, then
/// `(/solution/solve.sh) > /logs/agent/oracle.txt 2>&1`. A non-zero exit is written to
/// `agent/exit-code.txt` and is not an error, as in Harbor.
pub struct OracleAgent;

#[async_trait]
impl TrialAgent for OracleAgent {
    fn name(&self) -> &str {
        "oracle"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }

    async fn run(
        &self,
        _instruction: &str,
        env: &dyn Sandbox,
        ctx: &TrialContext,
        _partial: &std::sync::Mutex<AgentResult>,
    ) -> Result<AgentResult, AgentError> {
        let solution = ctx.solution_dir();
        if !solution.join("solve.sh").is_file() {
            return Err(AgentError::FileNotFound(format!(
                "task `{}`: solve.sh not found ({})",
                ctx.task.name,
                solution.join("solve.sh").display()
            )));
        }
        env.upload(&solution, "/solution").await?;
        // The upload keeps the file's mode: an executable solve.sh needs no chmod round trip.
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(solution.join("solve.sh"))
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        };
        let chmod = if executable {
            None
        } else {
            Some(
                env.exec(ExecRequest::new("chmod +x /solution/solve.sh").user(Some("root".into())))
                    .await?,
            )
        };
        if let Some(chmod) = chmod.filter(|c| c.exit_code != Some(0)) {
            return Err(AgentError::Fatal(format!(
                "chmod +x /solution/solve.sh failed: {}",
                chmod.stderr.trim()
            )));
        }
        let mut envs =
            BTreeMap::from([("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned())]);
        envs.extend(ctx.task.config.solution.env.clone());
        let out = env
            .exec(
                ExecRequest::new("(/solution/solve.sh) > /logs/agent/oracle.txt 2>&1")
                    .user(ctx.user.clone())
                    .env(envs)
                    .timeout(ctx.timeout),
            )
            .await?;
        if out.timed_out {
            return Err(AgentError::Timeout(ctx.timeout.unwrap_or_default()));
        }
        if let Some(code) = out.exit_code
            && code != 0
        {
            let _ = autoagent_harbor::fs::write_shared(
                &ctx.agent_dir.join("exit-code.txt"),
                code.to_string().as_bytes(),
            );
        }
        Ok(AgentResult::default())
    }
}

/// Does nothing: checks that the tests fail on the untouched environment.
pub struct NopAgent;

#[async_trait]
impl TrialAgent for NopAgent {
    fn name(&self) -> &str {
        "nop"
    }
    fn version(&self) -> &str {
        "1.0.0"
    }
    async fn run(
        &self,
        _instruction: &str,
        _env: &dyn Sandbox,
        _ctx: &TrialContext,
        _partial: &std::sync::Mutex<AgentResult>,
    ) -> Result<AgentResult, AgentError> {
        Ok(AgentResult::default())
    }
}
