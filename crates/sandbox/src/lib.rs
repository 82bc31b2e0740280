//! Sandboxes: where a task's environment runs and where agents' commands execute.
//!
//! A [`Backend`] turns an [`EnvironmentSpec`] (built from a task's `environment/` and
//! `[environment]` table) into a live [`Sandbox`]; a sandbox executes commands with a timeout,
//! user, env and cwd, moves files in and out, and is destroyed at the end. Backends:
//! [`docker::DockerBackend`] (the Engine API; compose tasks through the `docker compose` CLI),
//! [`pool::PoolBackend`] (several Docker hosts, each trial on the one with the most free slots,
//! a host that stops answering drained) and [`local::LocalBackend`] (bubblewrap when installed,
//! else a plain process).
//!
//! A [`SandboxError`] says an operation failed, not whose fault it was: before an agent has
//! run, it is the infrastructure's; after, the caller asks [`Sandbox::liveness`] whether the
//! sandbox is still there (the agent may have broken it from inside) or gone (the host's fault).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

pub mod docker;
pub mod local;
pub mod pool;
pub mod tarball;

/// The most bytes of stdout (and, separately, of stderr) an exec keeps in memory.
/// Beyond it the output is cut and [`ExecOutput::truncated`] is set; callers that need
/// more redirect to a file inside the sandbox.
pub const DEFAULT_OUTPUT_LIMIT: usize = 8 * 1024 * 1024;

/// One command to run inside a sandbox, through `bash -c`.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: String,
    pub timeout: Option<Duration>,
    /// A user name or uid (`user`, `uid`, `user:group`); `None` is the sandbox's default user.
    pub user: Option<String>,
    pub env: BTreeMap<String, String>,
    /// The working directory; `None` is the environment's workdir.
    pub cwd: Option<String>,
    /// Overrides [`DEFAULT_OUTPUT_LIMIT`].
    pub output_limit: Option<usize>,
}

impl ExecRequest {
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }
    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }
    pub fn user(mut self, u: Option<String>) -> Self {
        self.user = u;
        self
    }
    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }
    pub fn cwd(mut self, cwd: Option<String>) -> Self {
        self.cwd = cwd;
        self
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the command was killed on timeout.
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// Output was longer than the limit and was cut.
    pub truncated: bool,
}

/// A bind mount from the host into the sandbox (the trial's log dirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub target: String,
}

/// What a backend needs to start a task's environment.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentSpec {
    /// A short name used in image and container names (the task name).
    pub name: String,
    /// `<task>/environment`, the build context, when the task has one.
    pub build_context: Option<PathBuf>,
    /// `[environment].docker_image`, a prebuilt image.
    pub docker_image: Option<String>,
    /// Rebuild even when the image exists or `docker_image` is set.
    pub force_build: bool,
    pub cpus: Option<f64>,
    pub memory_mb: Option<u64>,
    /// Whether the sandbox may reach the network. Off unless the task allows it.
    pub network: bool,
    /// Env for every exec (`[environment].env`, templates already resolved).
    pub env: BTreeMap<String, String>,
    /// `[environment].workdir`: the cwd of every exec; `None` is the image's WORKDIR.
    pub workdir: Option<String>,
    pub mounts: Vec<Mount>,
    /// Labels for the container, so that leftovers can be found and removed.
    pub labels: BTreeMap<String, String>,
    /// Limits the whole start: build, create, start.
    pub start_timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot reach the Docker daemon: {0}")]
    Daemon(String),
    /// A request to a daemon (or a Kubernetes API server) failed at the connection (refused,
    /// reset, timed out): it may be gone. A pool confirms with a ping and drains the host.
    #[error("the host {host} does not answer: {message}")]
    Unreachable { host: String, message: String },
    /// The pool drained the host this sandbox ran on (it stopped answering): nothing the
    /// sandbox did can be trusted any more, and the trial belongs on another host.
    #[error("the Docker host {host} stopped answering and was drained ({reason})")]
    HostLost { host: String, reason: String },
    /// Every host of a pool is drained; no sandbox can start until one answers again.
    #[error("every Docker host of the pool is drained: {0}")]
    AllHostsDrained(String),
    #[error("building image {image} failed: {message}")]
    Build { image: String, message: String },
    #[error("starting the environment timed out after {0:?}")]
    StartTimeout(Duration),
    /// The environment was not ready within the start timeout, and the backend knows what
    /// it was still waiting for (a pod's `ImagePullBackOff`, `Unschedulable`).
    #[error("starting the environment timed out after {after:?}: {why}")]
    StartTimeoutWaiting { after: Duration, why: String },
    /// A failure of the backend's own that is none of the above: its configuration is
    /// missing or wrong (no kube config, an unknown context), or its API refused a cleanup.
    #[error("{0}")]
    Backend(String),
    #[error("starting the environment failed: {0}")]
    Start(String),
    #[error("exec failed: {0}")]
    Exec(String),
    #[error("copying files failed: {0}")]
    Transfer(String),
    #[error(
        "task needs docker compose (environment/docker-compose.yaml) but `docker compose` v2 is not installed: {0}"
    )]
    ComposeMissing(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// What is left of a sandbox, asked after an operation on it failed: whether the failure is
/// the host's (the sandbox is gone, its daemon does not answer) or came from inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// It exists and runs.
    Running,
    /// It exists but its main process ended: killed from inside, or by the OOM killer under
    /// the sandbox's own memory limit. `oom_killed`: an OOM kill happened in the sandbox
    /// (Docker's flag; it does not say which process was killed).
    Stopped {
        exit_code: Option<i64>,
        oom_killed: bool,
    },
    /// It no longer exists (removed from outside).
    Gone,
    /// Its host does not answer, or refuses to say (the reason).
    Unreachable(String),
    /// This backend cannot tell.
    Unknown,
}

impl Liveness {
    /// Whether the sandbox is still there, running or not: a failure inside it is then not the
    /// host's.
    pub fn is_present(&self) -> bool {
        matches!(self, Self::Running | Self::Stopped { .. })
    }
}

impl std::fmt::Display for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Running => f.write_str("the sandbox is running"),
            Self::Stopped {
                exit_code,
                oom_killed,
            } => {
                f.write_str("the sandbox stopped")?;
                if let Some(c) = exit_code {
                    write!(f, " (its main process exited {c})")?;
                }
                if *oom_killed {
                    f.write_str("; the OOM killer ran under its memory limit")?;
                }
                Ok(())
            }
            Self::Gone => f.write_str("the sandbox no longer exists"),
            Self::Unreachable(why) => write!(f, "the sandbox's host does not answer: {why}"),
            Self::Unknown => f.write_str("the sandbox's state is unknown"),
        }
    }
}

/// A running environment.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// A short id for logs (the container id, or the local work dir).
    fn id(&self) -> &str;
    /// The directory commands run in by default (the workdir), when known.
    fn workdir(&self) -> Option<&str>;
    /// Things the caller should tell the user about this sandbox (what could not be applied).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput>;
    /// Copies a host file or directory to `dest` (the directory's contents go *into* `dest`),
    /// creating `dest`'s parents.
    async fn upload(&self, host: &Path, dest: &str) -> Result<()>;
    /// Writes bytes to a file at `dest`, creating its parents.
    async fn write_file(&self, dest: &str, bytes: &[u8], mode: u32) -> Result<()>;
    /// Copies a sandbox file or directory to `host_dest` (a directory's contents go into it).
    async fn download(&self, src: &str, host_dest: &Path) -> Result<()>;
    /// Removes the environment. Idempotent.
    async fn destroy(&self) -> Result<()>;
    /// The daemon this sandbox runs on (a `DOCKER_HOST`-style URL), for logs; `None` for
    /// backends without hosts.
    fn host(&self) -> Option<String> {
        None
    }
    /// `Some(why)` once the host under this sandbox was lost while the sandbox lived (a pool
    /// drained it): what the sandbox reported since may be an artefact of the loss, so the
    /// caller must not read it as a measurement.
    fn lost(&self) -> Option<String> {
        None
    }
    /// Whether [`EnvironmentSpec::mounts`] are bind mounts of this machine's paths, so what the
    /// sandbox writes under a mount's target is on the host at once. `false` (a Kubernetes pod,
    /// a Docker host on another machine): each target is an ordinary directory inside the
    /// sandbox, and the caller collects it with [`Sandbox::download`].
    fn host_mounts(&self) -> bool {
        true
    }
    /// Whether the sandbox still exists and runs, asked when an operation on it failed. The
    /// default is [`Liveness::Unknown`], which callers read as the host's fault.
    async fn liveness(&self) -> Liveness {
        Liveness::Unknown
    }
}

/// Creates sandboxes.
#[async_trait]
pub trait Backend: Send + Sync {
    /// `docker`, `local` or `kubernetes`.
    fn kind(&self) -> &'static str;
    async fn start(&self, spec: &EnvironmentSpec) -> Result<Box<dyn Sandbox>>;
    /// Removes every sandbox this backend started that is still alive (Ctrl-C).
    async fn destroy_all(&self);
    /// Removes sandboxes left behind by a process that was killed, found by one of the
    /// labels given in [`EnvironmentSpec::labels`]. Returns how many were removed.
    async fn remove_labelled(&self, _key: &str, _value: &str) -> usize {
        0
    }
    /// Names the image `start` would run for `spec`, when that is cheap to know without
    /// building or pulling anything (a trial cache keys on it). `None`: not known here.
    async fn image_id(&self, _spec: &EnvironmentSpec) -> Option<String> {
        None
    }
}

/// A sha256 (hex) of a directory's content: every file's relative path, mode and bytes (a
/// symlink's target), in sorted order; `.git` is left out. Names task images and harness
/// versions.
pub fn dir_digest(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    let mut files: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
        .filter_map(std::result::Result::ok)
        .filter(|e| e.file_type().is_file() || e.file_type().is_symlink())
        .map(walkdir::DirEntry::into_path)
        .collect();
    files.sort();
    for f in files {
        let io = |e| SandboxError::io(format!("reading {}", f.display()), e);
        let rel = f.strip_prefix(dir).unwrap_or(&f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        let meta = std::fs::symlink_metadata(&f).map_err(io)?;
        h.update(meta.permissions().mode().to_le_bytes());
        if meta.file_type().is_symlink() {
            h.update(
                std::fs::read_link(&f)
                    .map_err(io)?
                    .to_string_lossy()
                    .as_bytes(),
            );
        } else {
            h.update(std::fs::read(&f).map_err(io)?);
        }
        h.update([0]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A path for a file copy into or out of a sandbox: an absolute one as it is, a relative one
/// taken from the workdir (an error without one).
pub fn absolute_path(workdir: Option<&str>, path: &str) -> Result<String> {
    if path.starts_with('/') {
        return Ok(path.to_owned());
    }
    match workdir {
        Some(w) => Ok(format!("{}/{path}", w.trim_end_matches('/'))),
        None => Err(SandboxError::Transfer(format!(
            "{path}: a relative path needs a workdir; give an absolute path"
        ))),
    }
}

/// `s` quoted for `bash -c`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Appends `bytes` to `buf` while `buf` holds fewer than `limit` bytes, and sets `truncated`
/// when some were dropped. The caller keeps reading after the cap (a stream that is not
/// drained blocks the command); the cut may fall inside a UTF-8 character, which the lossy
/// conversion of [`ExecOutput`] turns into a replacement character.
pub fn push_capped(buf: &mut Vec<u8>, bytes: &[u8], limit: usize, truncated: &mut bool) {
    let room = limit.saturating_sub(buf.len());
    if bytes.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/logs/agent"), "/logs/agent");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
