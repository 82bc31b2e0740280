//! Commands in a pod through the `pods/exec` subresource: a websocket whose binary frames
//! start with a channel byte (0 stdin, 1 stdout, 2 stderr, 3 the final `Status`; with
//! `v5.channel.k8s.io` also 255, "this channel is closed"). kube negotiates the subprotocol,
//! v5 first.
//!
//! The subresource takes only a command: no user, env or cwd. [`wrap`] turns an
//! [`ExecRequest`] into an `sh -c` script that applies them, and marks the command's
//! processes so a timed-out exec can be killed with all its children through a second exec
//! (closing the websocket does not stop the command on every runtime).

use std::time::Duration;

use autoagent_sandbox::{ExecRequest, SandboxError, push_capped, shell_quote};
use futures_util::FutureExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::Errors;
use crate::spec::CONTAINER;

const V4: &str = "v4.channel.k8s.io";
const V5: &str = "v5.channel.k8s.io";

/// The env var that marks an exec's processes, as in the Docker backend.
pub const EXEC_MARK: &str = "AUTOAGENT_EXEC";

/// How long the kill exec after a timeout may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// The in-memory pipe between kube's websocket task and our readers: large enough that a
/// chatty command is not throttled to kube's 1 KiB default.
const PIPE_BYTES: usize = 64 * 1024;

/// The `sh -c` script for `req`: `cd` to its cwd, switch to its user, set its env and the
/// mark, then `bash -c` its command.
///
/// A user other than the container's is reached with `runuser -u USER [-g GROUP]` when the
/// image has it (util-linux, needs the container to run as root), else `su -s /bin/sh`
/// (BusyBox has it; it asks for no password only as root); with neither the exec fails with
/// exit code 126 and says why. The env is applied after the switch, so `su`/`runuser` cannot
/// reset it.
pub fn wrap(req: &ExecRequest, mark: &str) -> String {
    let mut script = String::new();
    if let Some(cwd) = &req.cwd {
        script.push_str(&format!("cd {} || exit 1\n", shell_quote(cwd)));
    }
    let mut argv = vec![
        "env".to_owned(),
        shell_quote(&format!("{EXEC_MARK}={mark}")),
    ];
    argv.extend(
        req.env
            .iter()
            .map(|(k, v)| shell_quote(&format!("{k}={v}"))),
    );
    argv.extend([
        "bash".to_owned(),
        "-c".to_owned(),
        shell_quote(&req.command),
    ]);
    script.push_str(&format!("set -- {}\n", argv.join(" ")));
    if let Some(user) = &req.user {
        let (u, g) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let group = g.map_or(String::new(), |g| format!(" -g {}", shell_quote(g)));
        script.push_str(&format!(
            "u={u}\n\
             if [ \"$u\" != \"$(id -un 2>/dev/null)\" ] && [ \"$u\" != \"$(id -u)\" ]; then\n\
             if command -v runuser >/dev/null 2>&1; then set -- runuser -u \"$u\"{group} -- \"$@\"\n\
             elif command -v su >/dev/null 2>&1; then set -- su -s /bin/sh -c 'exec \"$0\" \"$@\"' -- \"$u\" \"$@\"\n\
             else echo \"cannot run as $u: the image has neither runuser nor su\" >&2; exit 126\n\
             fi\n\
             fi\n",
            u = shell_quote(u),
        ));
    }
    script.push_str("exec \"$@\"");
    script
}

/// The script that kills every process of the exec marked `mark`.
pub fn kill_script(mark: &str) -> String {
    format!(
        "for p in /proc/[0-9]*; do if grep -qz '^{EXEC_MARK}={mark}$' \"$p/environ\" 2>/dev/null; then kill -9 \"${{p#/proc/}}\" 2>/dev/null; fi; done; true"
    )
}

/// The exit code in an exec's final `Status`: `Success` is 0; a `Failure` with reason
/// `NonZeroExitCode` carries the code as the message of its `ExitCode` cause. Any other
/// failure (the command could not start, the container is gone) is an error with the
/// server's message.
pub fn exit_code(status: &Status) -> Result<i64, String> {
    match status.status.as_deref() {
        Some("Success") => Ok(0),
        _ if status.reason.as_deref() == Some("NonZeroExitCode") => status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "non-zero exit without an ExitCode cause: {}",
                    status.message.as_deref().unwrap_or("")
                )
            }),
        _ => Err(format!(
            "{}{}",
            status
                .reason
                .as_deref()
                .map_or(String::new(), |r| format!("{r}: ")),
            status
                .message
                .as_deref()
                .unwrap_or("the exec failed without a message")
        )),
    }
}

/// One exec: an `sh -c` script, its stdin, how much output to keep, how long it may run.
pub(crate) struct Call {
    pub script: String,
    pub stdin: Option<Vec<u8>>,
    pub limit: usize,
    pub timeout: Option<Duration>,
    /// The [`EXEC_MARK`] value the script sets: on timeout (or when the caller drops the
    /// future) the processes carrying it are killed. `None`: nothing to kill (our own
    /// `tar` and kill execs).
    pub mark: Option<String>,
}

/// What one exec returned.
#[derive(Debug, Default)]
pub(crate) struct Raw {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
    /// `None`: timed out (and killed).
    pub exit_code: Option<i64>,
}

/// Runs `call` in the pod's container. `map_err` turns kube's errors into ours (a failure at
/// the connection is the backend's `Unreachable`); a stream that breaks before the exit status
/// is `Unreachable` too, one the server ends without a status an exec error.
pub(crate) async fn run(
    pods: &Api<Pod>,
    pod: &str,
    call: Call,
    errors: &Errors,
    map_err: &(dyn Fn(kube::Error) -> SandboxError + Sync),
) -> Result<Raw, SandboxError> {
    let params = AttachParams::default()
        .container(CONTAINER)
        .stdin(call.stdin.is_some())
        .stdout(true)
        .stderr(true)
        .max_stdin_buf_size(PIPE_BYTES)
        .max_stdout_buf_size(PIPE_BYTES)
        .max_stderr_buf_size(PIPE_BYTES);
    let command = ["sh".to_owned(), "-c".to_owned(), call.script];
    // Armed before the request: a command that started is killed even if the caller gives up
    // while the websocket is being opened.
    let mut guard = KillOnDrop {
        pods: call.mark.as_ref().map(|_| pods.clone()),
        pod: pod.to_owned(),
        mark: call.mark.clone().unwrap_or_default(),
    };
    let mut attached = match pods.exec(pod, command, &params).await {
        Ok(a) => a,
        Err(e) => {
            // Refused (the pod is gone, the API said no): nothing started, nothing to kill.
            guard.pods = None;
            return Err(map_err(e));
        }
    };
    let status = attached.take_status();
    let out = attached.stdout();
    let err = attached.stderr();
    let writer = attached.stdin();
    let mut raw = Raw::default();
    let (mut t_out, mut t_err) = (false, false);
    let stdin = call.stdin;
    let had_stdin = stdin.is_some();
    // kube's websocket task ends the stdout/stderr pipes when the stream ends well, but not
    // when it fails (a reset connection): then only the status sender is dropped. So the
    // status (or its absence) is what says the stream is over, and the readers stop waiting
    // for an end-of-file then.
    let (over_tx, over) = tokio::sync::watch::channel(false);
    let collect = async {
        let mut feed_over = over.clone();
        let feed = async {
            if let (Some(mut w), Some(bytes)) = (writer, stdin) {
                let write = async {
                    w.write_all(&bytes).await?;
                    // The shutdown is what ends stdin: kube then sends v5's close signal for
                    // channel 0 (to a v4 server it can only close the whole socket).
                    w.shutdown().await
                };
                tokio::select! {
                    r = write => r?,
                    // The command ended without reading all of its stdin.
                    _ = feed_over.wait_for(|o| *o) => {}
                }
            }
            Ok::<_, std::io::Error>(())
        };
        let status = async {
            let s = match status {
                Some(s) => s.await,
                None => None,
            };
            let _ = over_tx.send(true);
            s
        };
        let (fed, (), (), status) = tokio::join!(
            feed,
            drain(out, &mut raw.stdout, call.limit, &mut t_out, over.clone()),
            drain(err, &mut raw.stderr, call.limit, &mut t_err, over.clone()),
            status,
        );
        fed.map_err(|e| SandboxError::Exec(format!("writing the command's stdin: {e}")))?;
        Ok::<_, SandboxError>(status)
    };
    let finished = match call.timeout {
        Some(t) => tokio::time::timeout(t, collect).await.ok(),
        None => Some(collect.await),
    };
    guard.pods = None;
    raw.truncated = t_out || t_err;
    let Some(finished) = finished else {
        // Timed out: stop reading, then kill what the command left running.
        attached.abort();
        if let Some(mark) = &call.mark {
            kill(pods, pod, mark).await;
        }
        return Ok(raw);
    };
    let status = finished?;
    let joined = attached.join().await;
    let Some(status) = status else {
        return Err(match joined {
            Err(e) => errors.unreachable(format!("the exec stream of pod {pod} broke: {e}")),
            Ok(()) if had_stdin => SandboxError::Transfer(format!(
                "the server closed the exec stream of pod {pod} without an exit status: a server that speaks only {V4} cannot be told that stdin ended (Kubernetes 1.30 and later speak {V5})"
            )),
            Ok(()) => SandboxError::Exec(format!(
                "the server closed the exec stream of pod {pod} without an exit status"
            )),
        });
    };
    raw.exit_code = Some(exit_code(&status).map_err(SandboxError::Exec)?);
    Ok(raw)
}

/// Reads `r` until its end or until the stream is `over`, keeping at most `limit` bytes (the
/// rest is read and dropped, so the websocket task is never blocked on a full pipe). Once the
/// stream is over, all its output is already in the pipe: it is read without waiting.
async fn drain(
    r: Option<impl AsyncRead + Unpin>,
    buf: &mut Vec<u8>,
    limit: usize,
    truncated: &mut bool,
    mut over: tokio::sync::watch::Receiver<bool>,
) {
    let Some(mut r) = r else { return };
    let mut chunk = vec![0u8; PIPE_BYTES];
    loop {
        tokio::select! {
            biased;
            read = r.read(&mut chunk) => match read {
                // A read error means kube's task ended; its error comes out of `join`.
                Ok(0) | Err(_) => return,
                Ok(n) => push_capped(buf, &chunk[..n], limit, truncated),
            },
            _ = over.wait_for(|o| *o) => break,
        }
    }
    while let Some(Ok(n)) = r.read(&mut chunk).now_or_never() {
        if n == 0 {
            break;
        }
        push_capped(buf, &chunk[..n], limit, truncated);
    }
}

/// Kills the processes marked `mark`, bounded by [`KILL_TIMEOUT`]; failures are logged (the
/// pod is deleted at the end of the trial anyway).
pub(crate) async fn kill(pods: &Api<Pod>, pod: &str, mark: &str) {
    let params = AttachParams::default().container(CONTAINER);
    let command = ["sh".to_owned(), "-c".to_owned(), kill_script(mark)];
    let run = async {
        let mut attached = pods
            .exec(pod, command, &params)
            .await
            .map_err(|e| e.to_string())?;
        // Wait for the exit status before closing: `join` ends stdin, which a v4 server can
        // only be told by closing the socket.
        if let Some(status) = attached.take_status() {
            status.await;
        }
        attached.join().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(KILL_TIMEOUT, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("killing a timed-out exec in pod {pod}: {e}"),
        Err(_) => {
            tracing::warn!("killing a timed-out exec in pod {pod}: no answer in {KILL_TIMEOUT:?}")
        }
    }
}

/// Kills an exec's processes when its future is dropped before the command ended (the
/// caller's own timeout, Ctrl-C).
struct KillOnDrop {
    pods: Option<Api<Pod>>,
    pod: String,
    mark: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let (Some(pods), Ok(handle)) = (self.pods.take(), tokio::runtime::Handle::try_current())
        {
            let pod = std::mem::take(&mut self.pod);
            let mark = std::mem::take(&mut self.mark);
            handle.spawn(async move { kill(&pods, &pod, &mark).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn status(json: &str) -> Status {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn exit_codes_from_status_objects() {
        assert_eq!(
            exit_code(&status(r#"{"metadata":{},"status":"Success"}"#)),
            Ok(0)
        );
        let failed = r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(&status(failed)), Ok(3));
        let internal = r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: container is not running","reason":"InternalError","code":500}"#;
        let e = exit_code(&status(internal)).unwrap_err();
        assert!(
            e.contains("InternalError") && e.contains("not running"),
            "{e}"
        );
    }

    #[test]
    fn wrapper_applies_cwd_env_user_and_mark() {
        let req = ExecRequest::new("echo \"$A\" > out")
            .cwd(Some("/work dir".into()))
            .env(BTreeMap::from([("A".into(), "it's".into())]))
            .user(Some("agent:staff".into()));
        let s = wrap(&req, "m1");
        assert!(s.starts_with("cd '/work dir' || exit 1\n"), "{s}");
        assert!(
            s.contains(r#"set -- env AUTOAGENT_EXEC=m1 'A=it'\''s' bash -c 'echo "$A" > out'"#),
            "{s}"
        );
        assert!(s.contains(r#"runuser -u "$u" -g staff -- "$@""#), "{s}");
        assert!(s.contains("u=agent\n"), "{s}");
        assert!(s.ends_with("exec \"$@\""), "{s}");
        let plain = wrap(&ExecRequest::new("true"), "m2");
        assert_eq!(
            plain,
            "set -- env AUTOAGENT_EXEC=m2 bash -c true\nexec \"$@\""
        );
    }

    /// The wrapper runs under a real `sh` here: cwd, env and quoting survive, and the mark is
    /// in the command's environment.
    #[test]
    fn wrapper_runs_under_sh() {
        let dir = tempfile::tempdir().unwrap();
        let req = ExecRequest::new("pwd; echo \"$A|$AUTOAGENT_EXEC\"; exit 4")
            .cwd(Some(dir.path().display().to_string()))
            .env(BTreeMap::from([("A".into(), "x 'y' $z".into())]));
        let out = std::process::Command::new("sh")
            .args(["-c", &wrap(&req, "mk")])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4));
        let text = String::from_utf8_lossy(&out.stdout);
        let dir = dir.path().canonicalize().unwrap();
        assert_eq!(text, format!("{}\nx 'y' $z|mk\n", dir.display()));
    }
}
