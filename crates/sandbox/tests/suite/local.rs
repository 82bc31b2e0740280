//! The local backend, with bubblewrap (installed by the CI setup) and without.

use std::time::Duration;

use autoagent_sandbox::local::{Isolation, LocalBackend};
use autoagent_sandbox::{Backend, EnvironmentSpec, ExecRequest, Mount, SandboxError};

fn require_bwrap() -> bool {
    let ok = std::process::Command::new("bwrap")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    // CI installs it (scripts/setup-machine.sh).
    autoagent_test_support::require(ok, "bubblewrap", "`bwrap --version` fails")
}

#[tokio::test]
async fn bubblewrap_gives_a_private_writable_workdir_and_log_mounts() {
    if !require_bwrap() {
        return;
    }
    let b = LocalBackend::with_isolation(Isolation::Bubblewrap);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM x\nWORKDIR /app\nENV GREETING=hello\nRUN apt-get install -y curl\n",
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let spec = EnvironmentSpec {
        name: "local".into(),
        build_context: Some(ctx.path().to_path_buf()),
        mounts: vec![Mount {
            host: logs.path().to_path_buf(),
            target: "/logs/verifier".into(),
        }],
        ..EnvironmentSpec::default()
    };
    let sb = b.start(&spec).await.unwrap();
    assert!(
        sb.notes().iter().any(|n| n.contains("RUN apt-get")),
        "{:?}",
        sb.notes()
    );
    let out = sb
        .exec(ExecRequest::new(
            "pwd; echo $GREETING > g.txt; cat g.txt; echo 1 > /logs/verifier/reward.txt",
        ))
        .await
        .unwrap();
    assert_eq!(out.stdout, "/app\nhello\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(logs.path().join("reward.txt")).unwrap(),
        "1\n"
    );
    // Files persist between execs; the host root is read-only; there is no network.
    let out = sb.exec(ExecRequest::new("cat /app/g.txt; touch /usr/x 2>/dev/null || echo ro; ls /sys/class/net 2>/dev/null | wc -l")).await.unwrap();
    assert_eq!(
        out.stdout.lines().take(2).collect::<Vec<_>>(),
        ["hello", "ro"],
        "{out:?}"
    );
    // Upload to a new top-level dir, then run from it.
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("t.sh"), "echo from-tests").unwrap();
    sb.upload(src.path(), "/tests").await.unwrap();
    let out = sb.exec(ExecRequest::new("bash /tests/t.sh")).await.unwrap();
    assert_eq!(out.stdout, "from-tests\n");
    // Writing under the read-only host root is refused with a clear error.
    let err = sb
        .write_file("/usr/share/x.txt", b"x", 0o644)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    // Host-side copies never leave the sandbox: no `..`, no symlink planted by the agent.
    let err = sb
        .write_file("/tmp/../../etc/evil", b"x", 0o644)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("`..`"), "{err}");
    let outside = tempfile::tempdir().unwrap();
    let link = format!("ln -s {} /tmp/escape", outside.path().display());
    assert_eq!(
        sb.exec(ExecRequest::new(link)).await.unwrap().exit_code,
        Some(0)
    );
    let err = sb
        .write_file("/tmp/escape/evil.txt", b"x", 0o644)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("resolves outside the sandbox"),
        "{err}"
    );
    assert!(!outside.path().join("evil.txt").exists());
    let err = sb
        .download(
            "/tmp/escape",
            &tempfile::tempdir().unwrap().path().join("d"),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("resolves outside the sandbox"),
        "{err}"
    );
    // Timeouts kill the whole sandboxed process tree.
    let out = sb
        .exec(ExecRequest::new("sleep 30 & sleep 31").timeout(Some(Duration::from_millis(300))))
        .await
        .unwrap();
    assert!(out.timed_out);
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn plain_processes_refuse_harbor_mounts_but_serve_a_host_workdir() {
    let b = LocalBackend::with_isolation(Isolation::None);
    let logs = tempfile::tempdir().unwrap();
    let spec = EnvironmentSpec {
        name: "plain".into(),
        mounts: vec![Mount {
            host: logs.path().to_path_buf(),
            target: "/logs/verifier".into(),
        }],
        ..EnvironmentSpec::default()
    };
    match b.start(&spec).await {
        Err(SandboxError::Unsupported(msg)) => assert!(msg.contains("bubblewrap"), "{msg}"),
        other => panic!(
            "expected Unsupported, got {:?}",
            other.map(|s| s.id().to_owned())
        ),
    }
    let work = tempfile::tempdir().unwrap();
    let spec = EnvironmentSpec {
        name: "plain".into(),
        workdir: Some(work.path().display().to_string()),
        ..EnvironmentSpec::default()
    };
    let sb = b.start(&spec).await.unwrap();
    assert!(sb.notes().iter().any(|n| n.contains("NOT isolated")));
    sb.exec(ExecRequest::new("echo hi > out.txt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(work.path().join("out.txt")).unwrap(),
        "hi\n"
    );
    sb.destroy().await.unwrap();
}
