//! Where a Docker daemon listens: a `DOCKER_HOST`-style URL (`unix://`, `tcp://`, `ssh://`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use crate::{Result, SandboxError};

/// The daemon's socket when nothing else is said (Docker's own default).
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A Docker daemon's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DockerHost {
    /// `unix:///path/to/docker.sock`: a daemon on this machine.
    Unix(PathBuf),
    /// `tcp://host:port` (plain HTTP; no TLS): a daemon that listens on a port.
    Tcp { host: String, port: u16 },
    /// `ssh://[user@]host[:port]`: the remote daemon's default socket, reached through an `ssh`
    /// tunnel (the `ssh` binary, its config and agent, as the docker CLI uses them).
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostUrlError {
    #[error("{url:?}: expected unix:///path, tcp://host:port or ssh://[user@]host[:port]")]
    Scheme { url: String },
    #[error("{url:?}: {message}")]
    Invalid { url: String, message: String },
}

impl DockerHost {
    /// What the docker CLI would use: `$DOCKER_HOST`, else the default socket.
    pub fn from_env() -> std::result::Result<Self, HostUrlError> {
        match std::env::var("DOCKER_HOST") {
            Ok(url) if !url.trim().is_empty() => url.parse(),
            _ => Ok(Self::Unix(PathBuf::from(DEFAULT_SOCKET))),
        }
    }

    /// The URL, in the form it was parsed from (`unix:///a.sock`, `tcp://h:2375`, `ssh://u@h`).
    pub fn url(&self) -> String {
        self.to_string()
    }

    /// A short name for progress lines: a socket's file name, `host:port`, `user@host`.
    pub fn label(&self) -> String {
        match self {
            Self::Unix(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string()),
            Self::Tcp { host, port } => format!("{host}:{port}"),
            Self::Ssh { user, host, .. } => match user {
                Some(u) => format!("{u}@{host}"),
                None => host.clone(),
            },
        }
    }

    /// Whether bind mounts of this machine's paths reach the daemon's containers (a daemon on
    /// this machine). A remote daemon sees its own file system at those paths.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp { host, .. } => matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1"),
            Self::Ssh { .. } => false,
        }
    }
}

impl FromStr for DockerHost {
    type Err = HostUrlError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let url = s.trim();
        let invalid = |message: &str| HostUrlError::Invalid {
            url: url.to_owned(),
            message: message.to_owned(),
        };
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "a unix socket needs an absolute path: unix:///path",
                ));
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("tcp://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = split_port(rest).map_err(|m| invalid(&m))?;
            let port = port.ok_or_else(|| invalid("tcp:// needs a port: tcp://host:2375"))?;
            return Ok(Self::Tcp { host, port });
        }
        if let Some(rest) = url.strip_prefix("ssh://") {
            let rest = rest.trim_end_matches('/');
            if rest.contains('/') {
                return Err(invalid(
                    "ssh:// takes no path: the remote daemon's default socket is used",
                ));
            }
            let (user, hostport) = match rest.rsplit_once('@') {
                Some((u, h)) if !u.is_empty() => (Some(u.to_owned()), h),
                Some(_) => return Err(invalid("empty user before @")),
                None => (None, rest),
            };
            let (host, port) = split_port(hostport).map_err(|m| invalid(&m))?;
            return Ok(Self::Ssh { user, host, port });
        }
        if url.starts_with("https://") || url.starts_with("http://") {
            return Err(invalid(
                "HTTP(S) URLs are not supported: use tcp://host:port for a plain port, or ssh:// for a remote daemon",
            ));
        }
        Err(HostUrlError::Scheme {
            url: url.to_owned(),
        })
    }
}

/// `host[:port]`, with `[v6]:port` for IPv6 literals.
fn split_port(s: &str) -> std::result::Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed [ in an IPv6 address".to_owned())?;
        match after.strip_prefix(':') {
            Some(p) => (h.to_owned(), Some(p)),
            None if after.is_empty() => (h.to_owned(), None),
            None => return Err(format!("unexpected {after:?} after the address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err("no host name".to_owned());
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("bad port {p:?}"))
        })
        .transpose()?;
    Ok((host, port))
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        match self {
            Self::Unix(path) => write!(f, "unix://{}", path.display()),
            Self::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
            Self::Ssh { user, host, port } => {
                f.write_str("ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                f.write_str(&bracket(host))?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// An `ssh -L` forward of the remote daemon's socket to a socket in a private temp dir. The
/// Engine API client then talks to the local end as to any unix socket; the `ssh` process is
/// killed when the backend that owns the tunnel is dropped.
pub(crate) struct SshTunnel {
    _child: tokio::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl SshTunnel {
    pub(crate) async fn open(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        url: &str,
    ) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("autoagent-ssh-")
            .tempdir()
            .map_err(|e| SandboxError::io("creating a temp dir for the ssh tunnel", e))?;
        let socket = dir.path().join("docker.sock");
        let target = match user {
            Some(u) => format!("{u}@{host}"),
            None => host.to_owned(),
        };
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args([
            "-nNT",
            "-o",
            "BatchMode=yes",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .args([
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
        ])
        .arg("-L")
        .arg(format!("{}:{DEFAULT_SOCKET}", socket.display()));
        if let Some(p) = port {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.arg("--")
            .arg(&target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| SandboxError::Unreachable {
            host: url.to_owned(),
            message: format!("cannot run `ssh`: {e}"),
        })?;
        // ssh has no "ready" signal with -N: the local socket appears once the forward is set.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !socket_ready(&socket) {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt as _;
                    let _ = e.read_to_string(&mut err).await;
                }
                return Err(SandboxError::Unreachable {
                    host: url.to_owned(),
                    message: format!("ssh exited ({status}): {}", err.trim()),
                });
            }
            if tokio::time::Instant::now() > deadline {
                return Err(SandboxError::Unreachable {
                    host: url.to_owned(),
                    message: "the ssh tunnel did not come up within 20 s".to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            _child: child,
            socket,
            _dir: dir,
        })
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

fn socket_ready(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_back() {
        for url in [
            "unix:///var/run/docker.sock",
            "unix:///run/autoagent-dockerd2.sock",
            "tcp://build-2.example:2375",
            "tcp://[::1]:2375",
            "ssh://me@build-1",
            "ssh://build-1:2222",
            "ssh://me@[fe80::1]:22",
        ] {
            let h: DockerHost = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(h.url(), url);
        }
        assert_eq!(
            "ssh://me@build-1:2222".parse::<DockerHost>().unwrap(),
            DockerHost::Ssh {
                user: Some("me".into()),
                host: "build-1".into(),
                port: Some(2222)
            }
        );
        assert_eq!(
            "unix:///run/x/docker.sock"
                .parse::<DockerHost>()
                .unwrap()
                .label(),
            "docker.sock"
        );
        assert!("unix:///a.sock".parse::<DockerHost>().unwrap().is_local());
        assert!(!"ssh://h".parse::<DockerHost>().unwrap().is_local());
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let err = |u: &str| u.parse::<DockerHost>().unwrap_err().to_string();
        assert!(err("/var/run/docker.sock").contains("expected unix:///path"));
        assert!(err("unix://relative.sock").contains("absolute path"));
        assert!(err("tcp://host").contains("needs a port"));
        assert!(err("tcp://host:99999").contains("bad port"));
        assert!(err("ssh://h/var/run/docker.sock").contains("takes no path"));
        assert!(err("https://h:2376").contains("not supported"));
        assert!(err("tcp://:2375").contains("no host"));
    }
}
