//! The report crate's integration tests: the report of a ledger whose commits are real commits
//! of a harness repository, and the dashboard's data model read from a workspace's files.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
