//! The Kubernetes backend's integration tests, against a fake API server on 127.0.0.1 that
//! replays API exchanges written by hand in the wire format (`suite::fake`), and one
//! live-cluster test that runs only with `AUTOAGENT_KUBE_LIVE=1` (`suite::live_cluster`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod suite;
