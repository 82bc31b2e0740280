//! The optimization loop: a meta-agent proposes one harness change per experiment; code decides
//! whether to keep it from the evaluation; everything is recorded so a killed run resumes.

pub mod accept;
pub mod config;
pub mod evaluate;
pub mod git;
pub mod guards;
pub mod ledger;
pub mod meta;
pub mod report;
pub mod run;
pub mod size;
pub mod split;
pub mod workspace;

pub use config::WorkspaceConfig;
pub use ledger::{Ledger, Row, Status};
pub use run::{OptimizeError, Options, Reporter, StopReason, optimize};
pub use workspace::{Workspace, init};
