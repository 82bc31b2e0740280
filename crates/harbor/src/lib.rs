//! The formats autoagent shares with Harbor: task directories and `task.toml`, datasets,
//! ATIF trajectories, the job and trial directory layout with their `result.json`s, and
//! Harbor's exception types. Pure data and parsing, plus the host-side file helpers that read
//! what a sandbox may have written; no sandboxes, no LLMs.

pub mod atif;
pub mod config;
pub mod cost;
pub mod dirhash;
pub mod exception;
pub mod fs;
pub mod layout;
pub mod registry;
pub mod result;
pub mod task;
pub mod text;

pub use atif::Trajectory;
pub use config::TaskConfig;
pub use exception::ExceptionType;
pub use layout::{JobDir, TrialDir};
pub use result::{JobResult, TrialResult};
pub use task::{Dataset, InvalidTask, Task, TaskError};
