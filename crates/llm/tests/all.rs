//! The one integration-test binary of autoagent-llm (one binary keeps link time down).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
