//! One trial's pod as a [`Sandbox`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use autoagent_sandbox::{
    DEFAULT_OUTPUT_LIMIT, ExecOutput, ExecRequest, Liveness, Result, Sandbox, SandboxError,
    shell_quote, tarball,
};

use crate::exec::{self, Call};
use crate::{EVICTED, Inner, LIVENESS_TIMEOUT, is_not_found, spec};

/// A running pod. Dropping it does not delete the pod: [`Sandbox::destroy`] does, and the
/// backend's `destroy_all` deletes every pod not destroyed yet.
pub struct KubeSandbox {
    backend: Arc<Inner>,
    name: String,
    workdir: Option<String>,
    has_policy: bool,
    destroyed: AtomicBool,
}

impl KubeSandbox {
    pub(crate) fn new(
        backend: Arc<Inner>,
        name: String,
        workdir: Option<String>,
        has_policy: bool,
    ) -> Self {
        Self {
            backend,
            name,
            workdir,
            has_policy,
            destroyed: AtomicBool::new(false),
        }
    }

    /// The pod's name.
    pub fn pod_name(&self) -> &str {
        &self.name
    }

    /// A relative path is taken from the workdir, as the Docker backend does.
    fn absolute(&self, path: &str) -> Result<String> {
        autoagent_sandbox::absolute_path(self.workdir.as_deref(), path)
    }

    /// Unpacks a tar archive (entries named from `/`) in the pod. `-o`: files belong to the
    /// user running tar, not to the uid they had on this machine (GNU and BusyBox tar alike).
    async fn untar(&self, what: &str, tar: Vec<u8>) -> Result<()> {
        let call = Call {
            script: "tar -x -o -f - -C /".to_owned(),
            stdin: Some(tar),
            limit: 64 * 1024,
            timeout: None,
            mark: None,
        };
        let raw = self.run(call, &format!("upload to {what}")).await?;
        if raw.exit_code != Some(0) {
            return Err(SandboxError::Transfer(format!(
                "upload to {what}: tar exited {:?}: {}",
                raw.exit_code,
                String::from_utf8_lossy(&raw.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Runs one of our own execs (`tar`); failures are transfer errors that start with `what`.
    async fn run(&self, call: Call, what: &str) -> Result<exec::Raw> {
        let errors = &self.backend.errors;
        let map =
            |e: kube::Error| errors.map(e, |m| SandboxError::Transfer(format!("{what}: {m}")));
        exec::run(&self.backend.pods, &self.name, call, errors, &map).await
    }
}

#[async_trait]
impl Sandbox for KubeSandbox {
    fn id(&self) -> &str {
        &self.name
    }

    fn workdir(&self) -> Option<&str> {
        self.workdir.as_deref()
    }

    fn host(&self) -> Option<String> {
        Some(self.backend.errors.host.clone())
    }

    /// Mount targets are `emptyDir` volumes in the pod, not this machine's directories.
    fn host_mounts(&self) -> bool {
        false
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        let mark = uuid::Uuid::new_v4().simple().to_string();
        let call = Call {
            script: exec::wrap(&req, &mark),
            stdin: None,
            limit: req.output_limit.unwrap_or(DEFAULT_OUTPUT_LIMIT),
            timeout: req.timeout,
            mark: Some(mark),
        };
        let errors = &self.backend.errors;
        let map = |e: kube::Error| errors.map(e, SandboxError::Exec);
        let raw = exec::run(&self.backend.pods, &self.name, call, errors, &map).await?;
        Ok(ExecOutput {
            exit_code: raw.exit_code,
            stdout: String::from_utf8_lossy(&raw.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&raw.stderr).into_owned(),
            timed_out: raw.exit_code.is_none(),
            truncated: raw.truncated,
        })
    }

    async fn upload(&self, host: &Path, dest: &str) -> Result<()> {
        let dest = self.absolute(dest)?;
        let (host_path, at) = (host.to_path_buf(), dest.clone());
        let tar = tokio::task::spawn_blocking(move || tarball::pack_at(&host_path, &at))
            .await
            .map_err(|e| SandboxError::Transfer(format!("upload to {dest}: {e}")))??;
        self.untar(&dest, tar).await
    }

    async fn write_file(&self, dest: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let dest = self.absolute(dest)?;
        let tar = tarball::pack_bytes(dest.trim_start_matches('/'), bytes, mode)?;
        self.untar(&dest, tar).await
    }

    async fn download(&self, src: &str, host_dest: &Path) -> Result<()> {
        let src = self.absolute(src)?;
        let trimmed = src.trim_end_matches('/');
        let (parent, base) = match trimmed.rsplit_once('/') {
            Some(("", base)) => ("/", base),
            Some((parent, base)) => (parent, base),
            None => ("/", trimmed),
        };
        if base.is_empty() {
            return Err(SandboxError::Transfer(
                "download of / is not supported".to_owned(),
            ));
        }
        let call = Call {
            script: format!(
                "tar -c -f - -C {} {}",
                shell_quote(parent),
                shell_quote(base)
            ),
            stdin: None,
            // The archive is the whole answer: it is never cut.
            limit: usize::MAX,
            timeout: None,
            mark: None,
        };
        let raw = self.run(call, &format!("download {src}")).await?;
        if raw.exit_code != Some(0) {
            return Err(SandboxError::Transfer(format!(
                "download {src}: tar exited {:?}: {}",
                raw.exit_code,
                String::from_utf8_lossy(&raw.stderr).trim()
            )));
        }
        let dest = host_dest.to_path_buf();
        let archive = raw.stdout;
        tokio::task::spawn_blocking(move || tarball::unpack_download(&archive, &dest))
            .await
            .map_err(|e| SandboxError::Transfer(format!("download {src}: {e}")))?
    }

    async fn destroy(&self) -> Result<()> {
        if self.destroyed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.backend.delete(&self.name, self.has_policy).await?;
        self.destroyed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Reads the pod: 404 or being deleted or evicted is gone; `Running` runs; `Succeeded`
    /// or `Failed` stopped, with the main container's exit code and whether it was
    /// `OOMKilled`. No answer is unreachable.
    async fn liveness(&self) -> Liveness {
        let got = tokio::time::timeout(LIVENESS_TIMEOUT, self.backend.pods.get(&self.name)).await;
        let pod = match got {
            Err(_) => {
                return Liveness::Unreachable(format!(
                    "reading the pod timed out after {LIVENESS_TIMEOUT:?}"
                ));
            }
            Ok(Err(e)) if is_not_found(&e) => return Liveness::Gone,
            Ok(Err(e)) => {
                return Liveness::Unreachable(match e {
                    kube::Error::Api(s) => {
                        format!("the API server refuses to read the pod: {}", s.message)
                    }
                    e => e.to_string(),
                });
            }
            Ok(Ok(pod)) => pod,
        };
        if pod.metadata.deletion_timestamp.is_some() {
            return Liveness::Gone;
        }
        let status = pod.status.unwrap_or_default();
        if status
            .reason
            .as_deref()
            .is_some_and(|r| EVICTED.contains(&r))
        {
            return Liveness::Gone;
        }
        match status.phase.as_deref() {
            Some("Running") => Liveness::Running,
            Some("Succeeded" | "Failed") => {
                let main = status
                    .container_statuses
                    .unwrap_or_default()
                    .into_iter()
                    .find(|c| c.name == spec::CONTAINER);
                let terminated = main.and_then(|c| {
                    c.state
                        .and_then(|s| s.terminated)
                        .or_else(|| c.last_state.and_then(|s| s.terminated))
                });
                Liveness::Stopped {
                    exit_code: terminated.as_ref().map(|t| i64::from(t.exit_code)),
                    oom_killed: terminated
                        .as_ref()
                        .is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")),
                }
            }
            _ => Liveness::Unknown,
        }
    }
}
