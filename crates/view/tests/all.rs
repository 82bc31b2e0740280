//! The view crate's integration tests: the dashboard in a real browser (chromium through
//! chromedriver) on a workspace written by a real scripted `optimize` run in Docker, and the
//! server's safety rules over raw HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
