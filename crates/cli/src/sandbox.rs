//! Choosing the sandbox backend: `docker` when a daemon answers, else `local`; with Docker
//! hosts given (`--docker-host`, `[sandbox].docker_hosts`), those daemons: one host directly,
//! two or more as a pool; `kubernetes` (asked for only) a pod per trial in the cluster of the
//! kube config, as `[sandbox.kubernetes]` says.

use std::sync::Arc;

use anyhow::Context as _;
use autoagent_sandbox::Backend;
use autoagent_sandbox::docker::DockerBackend;
use autoagent_sandbox::local::{Isolation, LocalBackend};
use autoagent_sandbox::pool::{HostSpec, PoolBackend, PoolOptions};
use autoagent_settings::{DockerHostEntry, KubernetesSection};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxKind {
    Docker,
    Local,
    Kubernetes,
}

impl SandboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Local => "local",
            Self::Kubernetes => "kubernetes",
        }
    }

    /// A resolved `sandbox` setting (already checked to be one of the three).
    pub fn from_config(s: Option<&str>) -> Option<Self> {
        match s {
            Some("docker") => Some(Self::Docker),
            Some("local") => Some(Self::Local),
            Some("kubernetes") => Some(Self::Kubernetes),
            _ => None,
        }
    }
}

/// `--docker-host`, on the commands that run trials.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DockerHostArgs {
    /// A Docker daemon to run trials on, `DOCKER_HOST`-style: unix:///path, tcp://host:port,
    /// ssh://[user@]host[:port]; `URL=SLOTS` gives its slots (default: its CPU count).
    /// Repeatable: with two or more, each trial goes to the host with the most free slots and a
    /// host that stops answering is drained. Replaces `[sandbox].docker_hosts` of
    /// ./autoagent.toml.
    #[arg(long = "docker-host", value_name = "URL[=SLOTS]", value_parser = DockerHostEntry::parse_flag)]
    pub docker_hosts: Vec<DockerHostEntry>,
}

/// Connects the chosen backend; with no choice, Docker when a daemon answers, else local.
/// Docker hosts, when given, are the daemons to use.
pub async fn backend(
    kind: Option<SandboxKind>,
    hosts: &[DockerHostEntry],
    kube: &KubernetesSection,
) -> anyhow::Result<Arc<dyn Backend>> {
    if !hosts.is_empty() {
        if let Some(k @ (SandboxKind::Local | SandboxKind::Kubernetes)) = kind {
            anyhow::bail!(
                "Docker hosts are given (--docker-host or [sandbox].docker_hosts) but the sandbox is {}; drop one of them",
                k.as_str()
            );
        }
        return docker_hosts(hosts).await;
    }
    match kind {
        Some(SandboxKind::Kubernetes) => kubernetes(kube).await,
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

async fn docker_hosts(hosts: &[DockerHostEntry]) -> anyhow::Result<Arc<dyn Backend>> {
    let mut specs = Vec::new();
    for h in hosts {
        let host = h
            .check()
            .map_err(|e| anyhow::anyhow!("--docker-host: {e}"))?;
        if !host.is_local() {
            // Its daemon cannot see this machine's paths: the log dirs are copied out instead.
            eprintln!(
                "note: docker host {host} is not on this machine: each trial's log dirs are copied out of its container"
            );
        }
        specs.push(HostSpec {
            host,
            slots: h.slots,
        });
    }
    if let [one] = specs.as_slice() {
        let d = DockerBackend::connect_to(&one.host)
            .await
            .with_context(|| format!("Docker host {}", one.host))?;
        return Ok(Arc::new(d));
    }
    let pool = PoolBackend::connect(specs, PoolOptions::default())
        .await
        .context("the pool of Docker hosts")?;
    for h in pool.status() {
        match &h.drained {
            None => eprintln!("docker host {}: {} slot(s)", h.host, h.slots),
            Some(why) => eprintln!(
                "warning: docker host {} is left out until it answers: {why}",
                h.host
            ),
        }
    }
    Ok(Arc::new(pool))
}

/// The Kubernetes backend, from the kube config in the usual places.
#[cfg(feature = "kubernetes")]
pub async fn kubernetes(kube: &KubernetesSection) -> anyhow::Result<Arc<dyn Backend>> {
    let options = autoagent_kube::KubeOptions {
        namespace: kube.namespace.clone(),
        registry: kube.registry.clone(),
        context: kube.context.clone(),
        ..autoagent_kube::KubeOptions::default()
    };
    let b = autoagent_kube::KubernetesBackend::connect(options)
        .await
        .context("--sandbox kubernetes (the cluster of $KUBECONFIG or ~/.kube/config; [sandbox.kubernetes] in autoagent.toml)")?;
    eprintln!(
        "kubernetes: pods in namespace {} of {}",
        b.namespace(),
        b.host()
    );
    Ok(Arc::new(b))
}

#[cfg(not(feature = "kubernetes"))]
pub async fn kubernetes(_kube: &KubernetesSection) -> anyhow::Result<Arc<dyn Backend>> {
    anyhow::bail!(
        "--sandbox kubernetes: this autoagent was built without the `kubernetes` cargo feature"
    )
}

async fn local() -> LocalBackend {
    let b = LocalBackend::detect().await;
    if b.isolation() == Isolation::None {
        eprintln!("warning: bubblewrap is not installed: the local sandbox is NOT isolated");
    }
    b
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::{Cli, Command};

    fn hosts(argv: &[&str]) -> Result<Vec<(String, Option<usize>)>, String> {
        let cli = Cli::try_parse_from(std::iter::once("autoagent").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        let entries = match cli.command {
            Command::Eval(a) => a.docker_hosts.docker_hosts,
            Command::Optimize(a) => a.docker_hosts.docker_hosts,
            _ => panic!("{argv:?} runs no trials"),
        };
        Ok(entries.into_iter().map(|h| (h.url, h.slots)).collect())
    }

    #[test]
    fn docker_host_flags_repeat_on_eval_and_optimize() {
        for cmd in ["eval", "optimize"] {
            let got = hosts(&[
                cmd,
                "--docker-host",
                "unix:///var/run/docker.sock",
                "--docker-host",
                "ssh://me@build-1=16",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                got,
                [
                    ("unix:///var/run/docker.sock".to_owned(), None),
                    ("ssh://me@build-1".to_owned(), Some(16))
                ]
            );
            let e = hosts(&[cmd, "--docker-host", "/var/run/docker.sock"]).unwrap_err();
            assert!(
                e.contains("--docker-host") && e.contains("unix:///path"),
                "{e}"
            );
            let e = hosts(&[cmd, "--docker-host", "unix:///a.sock=0"]).unwrap_err();
            assert!(e.contains("at least 1"), "{e}");
        }
    }
}
