//! The optimization loop: a meta-agent proposes one harness change per experiment; code decides
//! whether to keep it from the evaluation; everything is recorded so a killed run resumes.

pub mod accept;
pub mod budget;
pub mod decision;
pub mod evaluate;
pub mod experiment;
pub mod git;
pub mod guards;
pub mod history;
pub mod ledger;
pub mod meta;
pub mod run;
pub mod size;
pub mod split;
pub mod state;
pub mod workspace;

pub use decision::Decision;
pub use experiment::ExperimentId;
pub use ledger::{Ledger, Row, Status};
pub use run::{OptimizeError, Options, Reporter, StopReason, optimize};
pub use workspace::{Workspace, init};
