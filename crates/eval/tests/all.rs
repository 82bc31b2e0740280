//! The eval crate's integration tests: real Harbor tasks in real Docker (and bubblewrap).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
