//! Tasks with `environment/docker-compose.yaml`: sidecars and overrides of service `main`,
//! run through the `docker compose` v2 CLI as Harbor does. The `main` image is still built by
//! us (content-hashed, cached); compose merges our generated base file with the task's file,
//! and execs then go straight to the `main` container over the Engine API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::process::Command;

use super::{DockerBackend, DockerSandbox, sanitize};
use crate::{EnvironmentSpec, Result, SandboxError};

/// The task's compose overlay, when it has one.
pub fn compose_file(context: &Path) -> Option<PathBuf> {
    [
        "docker-compose.yaml",
        "docker-compose.yml",
        "compose.yaml",
        "compose.yml",
    ]
    .iter()
    .map(|f| context.join(f))
    .find(|p| p.is_file())
}

/// Whether `docker compose` (v2) answers, and its version line.
pub async fn compose_version() -> std::result::Result<String, String> {
    let out = Command::new("docker")
        .args(["compose", "version", "--short"])
        .stdin(Stdio::null())
        .output();
    match tokio::time::timeout(Duration::from_secs(20), out).await {
        Ok(Ok(o)) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Ok(Ok(o)) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Ok(Err(e)) => Err(format!("cannot run `docker`: {e}")),
        Err(_) => Err("`docker compose version` did not answer within 20 s".to_owned()),
    }
}

/// Runs `docker compose ARGS` against `host` (its `DOCKER_HOST`; `None`: the CLI's own).
async fn compose(host: Option<&str>, args: &[String], timeout: Duration) -> Result<String> {
    let mut cmd = Command::new("docker");
    if let Some(h) = host {
        cmd.env("DOCKER_HOST", h);
    }
    cmd.arg("compose")
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| SandboxError::StartTimeout(timeout))?
        .map_err(|e| SandboxError::Start(format!("cannot run `docker compose`: {e}")))?;
    if !out.status.success() {
        return Err(SandboxError::Start(format!(
            "`docker compose {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) async fn start(
    backend: &DockerBackend,
    spec: &EnvironmentSpec,
) -> Result<DockerSandbox> {
    compose_version()
        .await
        .map_err(SandboxError::ComposeMissing)?;
    let Some(context) = spec.build_context.as_deref() else {
        return Err(SandboxError::Start(
            "compose task without an environment/ dir".to_owned(),
        ));
    };
    let Some(task_file) = compose_file(context) else {
        return Err(SandboxError::Start("compose file disappeared".to_owned()));
    };
    let image = backend.ensure_image(spec).await?;
    let project = format!(
        "autoagent-{}-{}",
        sanitize(&spec.name),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    // As for a single container: bind mounts only where the daemon sees this machine's paths.
    let (bind_mounts, volumes) = backend.inner.binds(spec);
    let mut main = serde_json::json!({
        "image": image,
        "command": ["sh", "-c", "sleep infinity"],
        "init": true,
        "environment": spec.env,
        "volumes": volumes,
        "labels": { super::LABEL: spec.name.clone() },
    });
    // The caller's labels (the job id) too, so a resumed job finds what a killed one left.
    for (k, v) in &spec.labels {
        main["labels"][k] = v.clone().into();
    }
    if let Some(w) = &spec.workdir {
        main["working_dir"] = w.clone().into();
    }
    if !spec.network {
        main["network_mode"] = "none".into();
    }
    if let Some(c) = spec.cpus {
        main["cpus"] = c.into();
    }
    if let Some(m) = spec.memory_mb {
        main["mem_limit"] = format!("{m}m").into();
    }
    // YAML is a superset of JSON, so the generated base file is plain JSON.
    let base = serde_json::json!({ "services": { "main": main } });
    let dir = tempfile::Builder::new()
        .prefix("autoagent-compose-")
        .tempdir()
        .map_err(|e| SandboxError::io("creating a temp dir", e))?;
    let base_path = dir.path().join("base.json");
    std::fs::write(&base_path, base.to_string())
        .map_err(|e| SandboxError::io(format!("writing {}", base_path.display()), e))?;
    let timeout = spec.start_timeout.unwrap_or(Duration::from_secs(600));
    let files = vec![
        "-p".to_owned(),
        project.clone(),
        "--project-directory".to_owned(),
        context.display().to_string(),
        "-f".to_owned(),
        base_path.display().to_string(),
        "-f".to_owned(),
        task_file.display().to_string(),
    ];
    if let Ok(mut live) = backend.inner.live_projects.lock() {
        live.insert(project.clone());
    }
    let mut up = files.clone();
    up.extend(["up", "--detach", "--wait"].map(String::from));
    let host = backend.inner.cli_host.as_deref();
    if let Err(e) = compose(host, &up, timeout).await {
        down(host, &project).await;
        return Err(e);
    }
    let mut ps = files.clone();
    ps.extend(["ps", "-q", "main"].map(String::from));
    let id = match compose(host, &ps, Duration::from_secs(30)).await {
        Ok(out) => out.trim().to_owned(),
        Err(e) => {
            down(host, &project).await;
            return Err(e);
        }
    };
    if id.is_empty() {
        down(host, &project).await;
        return Err(SandboxError::Start(
            "compose started no `main` container".to_owned(),
        ));
    }
    let sandbox = DockerSandbox {
        docker: backend.docker.clone(),
        backend: backend.inner.clone(),
        container_id: id,
        name: project.clone(),
        workdir: spec.workdir.clone(),
        env: spec.env.clone(),
        destroyed: AtomicBool::new(false),
        compose_project: Some(project.clone()),
        host_mounts: bind_mounts,
    };
    if !bind_mounts && let Err(e) = sandbox.make_mount_dirs(spec).await {
        down(host, &project).await;
        return Err(e);
    }
    Ok(sandbox)
}

/// Brings a project down at once (`-t 0`: nothing to wait for), removing its volumes.
pub(crate) async fn down(host: Option<&str>, project: &str) {
    let args: Vec<String> = [
        "-p",
        project,
        "down",
        "--volumes",
        "--remove-orphans",
        "-t",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Err(e) = compose(host, &args, Duration::from_secs(120)).await {
        tracing::warn!("bringing compose project {project} down: {e}");
    }
}
