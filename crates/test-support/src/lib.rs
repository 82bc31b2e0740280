//! What the integration tests of every autoagent crate share (a dev-dependency only, never
//! published): the Docker requirement switch, fixture paths and a workspace builder, dumps of
//! a directory for a failing test, the ATIF validator, and a recording wrapper around the
//! scripted model.
//!
//! Helpers panic with everything a person needs to debug: this crate is for tests only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod atif;
pub mod coin;
pub mod docker;
pub mod dump;
pub mod scripted;
pub mod workspace;

pub use atif::{assert_valid_atif, atif_problems};
pub use docker::{docker_backend, docker_cli_or_skip, require, second_docker_backend};
pub use dump::{clip, dump_dir};
pub use scripted::Recorder;
pub use workspace::{TestWorkspace, copy_dir, copy_tasks, examples_dir};

/// `<the calling crate>/tests/fixtures/REL`.
#[macro_export]
macro_rules! fixture {
    ($rel:expr) => {
        ::std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join($rel)
    };
}
