//! Jobs and trials: run an agent on Harbor tasks in sandboxes, verify, score, write Harbor's
//! job and trial folders, retry infrastructure failures, resume killed jobs.

pub mod agent;
mod harness_agent;
pub mod job;
mod trial;

pub use agent::{AgentError, NopAgent, OracleAgent, TrialAgent, TrialContext};
pub use harness_agent::HarnessAgent;
pub use job::{JobConfig, JobObserver, JobOutcome, run_job};
