//! The sandbox crate's integration tests: real containers, real bubblewrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
