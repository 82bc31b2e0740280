//! The one integration-test binary of autoagent-agent: the task-agent runtime driven by the
//! scripted model against a real Docker sandbox, with every trajectory checked against ATIF.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
