//! Jobs and trials: run an agent on Harbor tasks in sandboxes, verify, score, write Harbor's
//! job and trial folders, retry infrastructure failures, resume killed jobs,
//! reuse measured trials from a content-addressed cache.

pub mod agent;
pub mod cache;
mod harness_agent;
mod integrity;
pub mod job;
pub mod lock;
pub mod registry;
mod trial;

pub use agent::{AgentError, NopAgent, OracleAgent, TrialAgent, TrialContext};
pub use cache::{CacheError, CacheKey, TrialCache, tree_hash};
pub use harness_agent::HarnessAgent;
pub use job::{JobCache, JobConfig, JobObserver, JobOutcome, run_job};
