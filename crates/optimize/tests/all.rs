//! The optimize crate's integration tests: the loop in real Docker with scripted models, the
//! meta-agent's tools.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
