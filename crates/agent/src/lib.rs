//! The task-agent runtime: the harness format and its validation, the tools (built-in, script,
//! sub-agent), the turn loop with its verification phase, progressive disclosure of long
//! outputs and context compaction, recorded as ATIF trajectories (`autoagent_harbor::atif`).
//!
//! It knows nothing of evaluation: give it a harness, a model, a sandbox and an instruction.

pub mod harness;
pub mod runtime;
pub mod tools;

pub use harness::{Harness, HarnessError, Problem};
pub use runtime::{EndReason, NoObserver, Run, RunError, RunObserver, RunOutcome, Totals};
