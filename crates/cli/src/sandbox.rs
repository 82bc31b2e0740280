//! Choosing the sandbox backend: `docker` when a daemon answers, else `local`.

use std::sync::Arc;

use anyhow::Context as _;
use autoagent_sandbox::Backend;
use autoagent_sandbox::docker::DockerBackend;
use autoagent_sandbox::local::{Isolation, LocalBackend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxKind {
    Docker,
    Local,
}

impl SandboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Local => "local",
        }
    }

    /// A resolved `sandbox` setting (already checked to be one of the two).
    pub fn from_config(s: Option<&str>) -> Option<Self> {
        match s {
            Some("docker") => Some(Self::Docker),
            Some("local") => Some(Self::Local),
            _ => None,
        }
    }
}

/// Connects the chosen backend; with no choice, Docker when a daemon answers, else local.
pub async fn backend(kind: Option<SandboxKind>) -> anyhow::Result<Arc<dyn Backend>> {
    match kind {
        Some(SandboxKind::Docker) => {
            let d = DockerBackend::connect()
                .await
                .context("--sandbox docker: no Docker daemon answers (is dockerd running? is DOCKER_HOST right?)")?;
            Ok(Arc::new(d))
        }
        Some(SandboxKind::Local) => Ok(Arc::new(local().await)),
        None => match DockerBackend::connect().await {
            Ok(d) => Ok(Arc::new(d)),
            Err(e) => {
                eprintln!("note: no Docker daemon answers ({e}); using the local sandbox");
                Ok(Arc::new(local().await))
            }
        },
    }
}

async fn local() -> LocalBackend {
    let b = LocalBackend::detect().await;
    if b.isolation() == Isolation::None {
        eprintln!("warning: bubblewrap is not installed: the local sandbox is NOT isolated");
    }
    b
}
