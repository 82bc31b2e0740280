//! The local backend: commands run on this machine.
//!
//! With bubblewrap (`bwrap`) installed, each exec runs in a fresh mount namespace whose root
//! is an empty tmpfs with the host's system dirs bound read-only, a private writable dir bound
//! at every path the sandbox owns (the workdir, `/tmp`, `/tests`, `/solution`, whatever is
//! uploaded to a new top-level path) and the trial's log dirs bound at `/logs/*`; no network
//! and a private pid namespace. Files written in one exec are there in the next, because the
//! private dirs persist on the host for the sandbox's life.
//!
//! Without bubblewrap, commands run as plain processes in a temp dir, with a warning that
//! nothing is isolated. Plain mode cannot make absolute paths such as `/logs/verifier` exist,
//! so it only serves specs with no mounts and a host `workdir` (`autoagent run --workdir`).
//!
//! A task's `environment/Dockerfile` cannot be built here: `WORKDIR` and `ENV` are applied,
//! and any other instruction (`RUN`, `COPY`, …) is reported in [`Sandbox::notes`] and skipped:
//! the task runs against the host's tools, which is what `--sandbox local` asks for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::{
    Backend, EnvironmentSpec, ExecOutput, ExecRequest, Result, Sandbox, SandboxError, push_capped,
};

/// Host dirs bound read-only into a bubblewrap sandbox (when they exist and are not symlinks;
/// symlinks such as `/bin -> usr/bin` are recreated as symlinks).
/// `/home` and `/root` are left out: they hold people's keys and `.env` files.
const SYSTEM_DIRS: &[&str] = &[
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt", "var", "srv",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Bubblewrap,
    None,
}

pub struct LocalBackend {
    isolation: Isolation,
    live: Mutex<Vec<PathBuf>>,
}

impl LocalBackend {
    /// Uses bubblewrap when `bwrap` runs here, else plain processes (with a warning).
    pub async fn detect() -> Self {
        let ok = Command::new("bwrap")
            .args([
                "--ro-bind",
                "/",
                "/",
                "--unshare-net",
                "--die-with-parent",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !ok {
            tracing::warn!(
                "bubblewrap (bwrap) is not available: the local sandbox runs plain processes, NOT isolated"
            );
        }
        Self::with_isolation(if ok {
            Isolation::Bubblewrap
        } else {
            Isolation::None
        })
    }

    pub fn with_isolation(isolation: Isolation) -> Self {
        Self {
            isolation,
            live: Mutex::new(Vec::new()),
        }
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }
}

/// What a Dockerfile asks for that the local backend can apply.
#[derive(Debug, Default, PartialEq)]
struct DockerfileFacts {
    workdir: Option<String>,
    env: BTreeMap<String, String>,
    skipped: Vec<String>,
}

fn read_dockerfile(text: &str) -> DockerfileFacts {
    let mut facts = DockerfileFacts::default();
    // Join continuation lines first.
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match instr.to_ascii_uppercase().as_str() {
            "WORKDIR" => {
                let w = rest.trim_matches('"').to_owned();
                facts.workdir = Some(match &facts.workdir {
                    Some(prev) if !w.starts_with('/') => {
                        format!("{}/{w}", prev.trim_end_matches('/'))
                    }
                    _ => w,
                });
            }
            "ENV" => {
                if rest.contains('=') {
                    for word in shell_words::split(rest).unwrap_or_default() {
                        if let Some((k, v)) = word.split_once('=') {
                            facts.env.insert(k.to_owned(), v.to_owned());
                        }
                    }
                } else if let Some((k, v)) = rest.split_once(char::is_whitespace) {
                    facts.env.insert(k.to_owned(), v.trim().to_owned());
                }
            }
            "FROM" | "LABEL" | "ARG" | "CMD" | "ENTRYPOINT" | "EXPOSE" | "MAINTAINER" | "SHELL"
            | "STOPSIGNAL" | "HEALTHCHECK" | "USER" | "VOLUME" => {}
            other => facts.skipped.push(format!("{other} {rest}")),
        }
    }
    facts
}

#[async_trait]
impl Backend for LocalBackend {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn start(&self, spec: &EnvironmentSpec) -> Result<Box<dyn Sandbox>> {
        let mut notes = Vec::new();
        let mut env = BTreeMap::new();
        let mut workdir = spec.workdir.clone();
        if let Some(ctx) = &spec.build_context {
            if crate::docker::compose::compose_file(ctx).is_some() {
                return Err(SandboxError::Unsupported(
                    "this task has environment/docker-compose.yaml (sidecar services), which the local sandbox cannot run; use --sandbox docker".to_owned(),
                ));
            }
            if let Ok(text) = std::fs::read_to_string(ctx.join("Dockerfile")) {
                let facts = read_dockerfile(&text);
                env.extend(facts.env);
                if workdir.is_none() {
                    workdir = facts.workdir;
                }
                if !facts.skipped.is_empty() {
                    notes.push(format!(
                        "local sandbox: environment/Dockerfile not applied except WORKDIR/ENV; skipped: {}",
                        facts.skipped.join(" | ")
                    ));
                }
            }
        }
        if spec.docker_image.is_some() {
            notes.push(
                "local sandbox: [environment].docker_image ignored; the host's tools are used"
                    .to_owned(),
            );
        }
        env.extend(spec.env.clone());
        let root = tempfile::Builder::new()
            .prefix("autoagent-local-")
            .tempdir()
            .map_err(|e| SandboxError::io("creating the sandbox dir", e))?
            .keep();
        let sandbox = match self.isolation {
            Isolation::Bubblewrap => {
                let workdir = workdir.unwrap_or_else(|| "/app".to_owned());
                let mut binds: Vec<(String, PathBuf)> = spec
                    .mounts
                    .iter()
                    .map(|m| (m.target.clone(), m.host.clone()))
                    .collect();
                for dir in [workdir.as_str(), "/tmp"] {
                    // A dir the caller mounts (`run --workdir`) is used as is.
                    if !binds.iter().any(|(t, _)| t == dir) {
                        let host = private_dir(&root, dir)?;
                        binds.push((dir.to_owned(), host));
                    }
                }
                LocalSandbox {
                    root: root.clone(),
                    isolation: Isolation::Bubblewrap,
                    workdir,
                    env,
                    binds: Mutex::new(binds),
                    notes,
                }
            }
            Isolation::None => {
                // Only identity mounts can be honoured without a mount namespace.
                if spec.mounts.iter().any(|m| m.host != Path::new(&m.target)) {
                    let _ = std::fs::remove_dir_all(&root);
                    return Err(SandboxError::Unsupported(
                        "the local sandbox without bubblewrap cannot provide /logs/*, /tests and the other absolute paths a Harbor task uses: install bubblewrap (apt-get install bubblewrap) or use --sandbox docker".to_owned(),
                    ));
                }
                let workdir = match workdir {
                    Some(w) => w,
                    None => root.join("work").display().to_string(),
                };
                std::fs::create_dir_all(&workdir)
                    .map_err(|e| SandboxError::io(format!("creating {workdir}"), e))?;
                notes.push("local sandbox without bubblewrap: commands run as plain processes, NOT isolated".to_owned());
                LocalSandbox {
                    root: root.clone(),
                    isolation: Isolation::None,
                    workdir,
                    env,
                    binds: Mutex::new(Vec::new()),
                    notes,
                }
            }
        };
        if let Ok(mut live) = self.live.lock() {
            live.push(root);
        }
        Ok(Box::new(sandbox))
    }

    async fn destroy_all(&self) {
        let roots: Vec<PathBuf> = self
            .live
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for r in roots {
            let _ = std::fs::remove_dir_all(r);
        }
    }
}

/// The host dir backing sandbox path `path`.
fn private_dir(root: &Path, path: &str) -> Result<PathBuf> {
    let host = root.join("fs").join(path.trim_start_matches('/'));
    std::fs::create_dir_all(&host)
        .map_err(|e| SandboxError::io(format!("creating {}", host.display()), e))?;
    Ok(host)
}

pub struct LocalSandbox {
    root: PathBuf,
    isolation: Isolation,
    workdir: String,
    env: BTreeMap<String, String>,
    /// Sandbox path → host dir, for bubblewrap. Grows when files are uploaded to a new top-level dir.
    binds: Mutex<Vec<(String, PathBuf)>>,
    notes: Vec<String>,
}

impl LocalSandbox {
    /// The host path behind a sandbox path, creating a new private top-level dir when the path
    /// is under none of the binds and its top-level dir does not exist on the host.
    fn host_path(&self, path: &str) -> Result<PathBuf> {
        if self.isolation == Isolation::None {
            let p = Path::new(path);
            return Ok(if p.is_absolute() {
                p.to_path_buf()
            } else {
                Path::new(&self.workdir).join(p)
            });
        }
        if Path::new(path)
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(SandboxError::Transfer(format!(
                "local sandbox: {path}: paths with `..` are refused"
            )));
        }
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{path}", self.workdir)
        };
        let mut binds = self
            .binds
            .lock()
            .map_err(|_| SandboxError::Transfer("lock poisoned".to_owned()))?;
        let best = binds
            .iter()
            .filter(|(target, _)| {
                path == *target || path.starts_with(&format!("{}/", target.trim_end_matches('/')))
            })
            .max_by_key(|(target, _)| target.len());
        if let Some((target, host)) = best {
            let rest = path[target.len()..].trim_start_matches('/');
            let full = if rest.is_empty() {
                host.clone()
            } else {
                host.join(rest)
            };
            return confine(host, full, &path);
        }
        let top = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if top.is_empty() || Path::new("/").join(&top).exists() {
            return Err(SandboxError::Transfer(format!(
                "local sandbox: {path} is on the read-only host filesystem; only the workdir, /tmp, /logs and new top-level dirs are writable"
            )));
        }
        let host = private_dir(&self.root, &format!("/{top}"))?;
        binds.push((format!("/{top}"), host.clone()));
        let rest = path.trim_start_matches('/')[top.len()..].trim_start_matches('/');
        Ok(if rest.is_empty() {
            host
        } else {
            host.join(rest)
        })
    }

    fn command(&self, req: &ExecRequest) -> Result<Command> {
        let cwd = req.cwd.clone().unwrap_or_else(|| self.workdir.clone());
        let mut cmd;
        match self.isolation {
            Isolation::Bubblewrap => {
                cmd = Command::new("bwrap");
                cmd.args(["--tmpfs", "/"]);
                let binds = self
                    .binds
                    .lock()
                    .map_err(|_| SandboxError::Exec("lock poisoned".to_owned()))?;
                // Writable targets that do not exist on the host cannot be created inside a
                // read-only bind: the dirs on their way are rebuilt from tmpfs instead.
                let missing: Vec<PathBuf> = binds
                    .iter()
                    .map(|(t, _)| PathBuf::from(t))
                    .filter(|t| !t.exists())
                    .collect();
                for d in SYSTEM_DIRS {
                    bind_read_only(&mut cmd, &Path::new("/").join(d), &missing);
                }
                cmd.args([
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--unshare-all",
                    "--die-with-parent",
                    "--new-session",
                ]);
                let mut sorted: Vec<_> = binds.iter().collect();
                // Parents before children, so nested binds stack correctly.
                sorted.sort_by_key(|(t, _)| t.len());
                for (target, host) in sorted {
                    cmd.arg("--bind").arg(host).arg(target);
                }
                cmd.arg("--chdir").arg(&cwd);
                cmd.args(["bash", "-c", &req.command]);
                cmd.env_clear();
                cmd.env(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                );
                cmd.env("HOME", "/tmp");
            }
            Isolation::None => {
                cmd = Command::new("bash");
                cmd.args(["-c", &req.command]);
                cmd.current_dir(&cwd);
                // Not isolated, but at least the process's secrets (API keys) stay out.
                cmd.env_clear();
                cmd.env(
                    "PATH",
                    std::env::var("PATH")
                        .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned()),
                );
                cmd.env("HOME", &cwd);
            }
        }
        for (k, v) in self.env.iter().chain(req.env.iter()) {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.process_group(0);
        Ok(cmd)
    }
}

#[async_trait]
impl Sandbox for LocalSandbox {
    fn id(&self) -> &str {
        self.root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("local")
    }

    fn workdir(&self) -> Option<&str> {
        Some(&self.workdir)
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        if self.isolation == Isolation::Bubblewrap {
            // bwrap's --chdir needs the dir to exist in the sandbox.
            let cwd = req.cwd.clone().unwrap_or_else(|| self.workdir.clone());
            if let Ok(host) = self.host_path(&cwd) {
                let _ = std::fs::create_dir_all(host);
            }
        }
        let mut child = self
            .command(&req)?
            .spawn()
            .map_err(|e| SandboxError::Exec(format!("spawning the command: {e}")))?;
        let pid = child.id();
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let limit = req.output_limit.unwrap_or(crate::DEFAULT_OUTPUT_LIMIT);
        let mut truncated = false;
        let run = async {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let mut ob = vec![0u8; 64 * 1024];
            let mut eb = vec![0u8; 64 * 1024];
            let (mut o_done, mut e_done) = (out_pipe.is_none(), err_pipe.is_none());
            while !(o_done && e_done) {
                tokio::select! {
                    n = async { match out_pipe.as_mut() { Some(p) => p.read(&mut ob).await, None => Ok(0) } }, if !o_done => {
                        match n { Ok(0) | Err(_) => o_done = true, Ok(n) => push_capped(&mut stdout, &ob[..n], limit, &mut truncated) }
                    }
                    n = async { match err_pipe.as_mut() { Some(p) => p.read(&mut eb).await, None => Ok(0) } }, if !e_done => {
                        match n { Ok(0) | Err(_) => e_done = true, Ok(n) => push_capped(&mut stderr, &eb[..n], limit, &mut truncated) }
                    }
                }
            }
            let status = child.wait().await;
            (stdout, stderr, status)
        };
        let res = match req.timeout {
            Some(t) => tokio::time::timeout(t, run).await.ok(),
            None => Some(run.await),
        };
        match res {
            Some((stdout, stderr, status)) => {
                let status = status.map_err(|e| SandboxError::Exec(e.to_string()))?;
                Ok(ExecOutput {
                    exit_code: status.code().map(i64::from).or(Some(-1)),
                    stdout: String::from_utf8_lossy(&stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                    timed_out: false,
                    truncated,
                })
            }
            None => {
                if let Some(pid) = pid {
                    // The whole process group: the command and everything it started.
                    let _ = std::process::Command::new("kill")
                        .args(["-9", "--", &format!("-{pid}")])
                        .status();
                }
                Ok(ExecOutput {
                    exit_code: None,
                    timed_out: true,
                    ..ExecOutput::default()
                })
            }
        }
    }

    async fn upload(&self, host: &Path, dest: &str) -> Result<()> {
        let target = self.host_path(dest)?;
        copy_tree(host, &target)
    }

    async fn write_file(&self, dest: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let target = self.host_path(dest)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| SandboxError::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&target, bytes)
            .map_err(|e| SandboxError::io(format!("writing {dest}"), e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
        Ok(())
    }

    async fn download(&self, src: &str, host_dest: &Path) -> Result<()> {
        let source = self.host_path(src)?;
        copy_tree(&source, host_dest)
    }

    async fn destroy(&self) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.root);
        Ok(())
    }
}

/// Checks that `full` stays inside `base` on the host once symlinks are resolved: the sandboxed
/// agent can plant symlinks in its writable dirs, and host-side copies must not follow them out.
fn confine(base: &Path, full: PathBuf, shown: &str) -> Result<PathBuf> {
    let refuse = || {
        SandboxError::Transfer(format!(
            "local sandbox: {shown} resolves outside the sandbox (a symlink)"
        ))
    };
    let root = base.canonicalize().map_err(|_| refuse())?;
    let mut probe = full.clone();
    loop {
        if std::fs::symlink_metadata(&probe).is_ok() {
            let real = probe.canonicalize().map_err(|_| refuse())?;
            if !real.starts_with(&root) {
                return Err(refuse());
            }
            break;
        }
        if !probe.pop() {
            return Err(refuse());
        }
    }
    Ok(full)
}

/// Binds host dir `host` read-only at the same path, except that a dir lying on the way to one
/// of `missing` (writable targets absent on the host) becomes a tmpfs whose children are bound
/// one by one, so that bwrap can create the target in it.
fn bind_read_only(cmd: &mut Command, host: &Path, missing: &[PathBuf]) {
    let Ok(meta) = std::fs::symlink_metadata(host) else {
        return;
    };
    if meta.file_type().is_symlink() {
        if let Ok(t) = std::fs::read_link(host) {
            cmd.arg("--symlink").arg(t).arg(host);
        }
        return;
    }
    if !meta.is_dir() {
        cmd.arg("--ro-bind").arg(host).arg(host);
        return;
    }
    if !missing.iter().any(|m| m.starts_with(host) && m != host) {
        cmd.arg("--ro-bind").arg(host).arg(host);
        return;
    }
    cmd.arg("--tmpfs").arg(host);
    if let Ok(rd) = std::fs::read_dir(host) {
        for e in rd.flatten() {
            bind_read_only(cmd, &e.path(), missing);
        }
    }
}

/// Copies a file to `dest`, or a directory's contents into `dest`.
fn copy_tree(src: &Path, dest: &Path) -> Result<()> {
    let meta = std::fs::metadata(src)
        .map_err(|e| SandboxError::io(format!("reading {}", src.display()), e))?;
    if !meta.is_dir() {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| SandboxError::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::copy(src, dest)
            .map_err(|e| SandboxError::io(format!("copying {}", src.display()), e))?;
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(src)
        .into_iter()
        .filter_map(std::result::Result::ok)
    {
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let target = dest.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| SandboxError::io(format!("creating {}", target.display()), e))?;
        } else if entry.file_type().is_file() {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| SandboxError::io(format!("copying {}", entry.path().display()), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_facts() {
        let f = read_dockerfile(
            "FROM x\nWORKDIR /app\nENV A=1 B=\"two words\"\nENV C 3\nRUN apt-get install \\\n  -y curl\nWORKDIR sub\n",
        );
        assert_eq!(f.workdir.as_deref(), Some("/app/sub"));
        assert_eq!(f.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(f.env.get("B").map(String::as_str), Some("two words"));
        assert_eq!(f.env.get("C").map(String::as_str), Some("3"));
        assert_eq!(f.skipped.len(), 1);
        assert!(f.skipped[0].starts_with("RUN apt-get install"));
    }
}
