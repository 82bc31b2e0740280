//! The report crate's integration tests: the report of a ledger whose commits are real commits
//! of a harness repository. (The dashboard's data model is tested through the pages, in
//! autoagent-view's browser test.)
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
