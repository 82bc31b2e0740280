//! The formats autoagent shares with Harbor: task directories and `task.toml`, datasets,
//! and trial/job `result.json`. Pure data and parsing; no sandboxes, no LLMs.

pub mod config;
pub mod result;
pub mod task;

pub use config::TaskConfig;
pub use result::{JobResult, TrialResult};
pub use task::{Dataset, InvalidTask, Task, TaskError};
