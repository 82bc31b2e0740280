//! The `autoagent` binary, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
