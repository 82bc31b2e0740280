//! The Docker backend against a real daemon.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use autoagent_sandbox::docker::DockerBackend;
use autoagent_sandbox::{Backend, EnvironmentSpec, ExecRequest, Liveness, Mount, SandboxError};

const BASE: &str = "autoagent/debian:bookworm";

fn context(dockerfile: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("Dockerfile"), dockerfile).unwrap();
    d
}

fn spec(ctx: &std::path::Path) -> EnvironmentSpec {
    EnvironmentSpec {
        name: "sandbox-test".into(),
        build_context: Some(ctx.to_path_buf()),
        ..EnvironmentSpec::default()
    }
}

async fn container_exists(b: &DockerBackend, id: &str) -> bool {
    b.client()
        .inspect_container(
            id,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .is_ok()
}

#[tokio::test]
async fn exec_env_user_cwd_and_files_round_trip() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let ctx = context(&format!(
        "FROM {BASE}\nWORKDIR /app\nRUN useradd -m worker\n"
    ));
    let logs = tempfile::tempdir().unwrap();
    let mut s = spec(ctx.path());
    s.env = BTreeMap::from([("FROM_ENV".into(), "env-value".into())]);
    s.mounts = vec![Mount {
        host: logs.path().to_path_buf(),
        target: "/logs/agent".into(),
    }];
    let sb = b.start(&s).await.unwrap();

    let out = sb
        .exec(
            ExecRequest::new("pwd; echo $FROM_ENV $EXTRA; id -un; echo err >&2; exit 3")
                .env(BTreeMap::from([("EXTRA".into(), "extra".into())])),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(3), "{out:?}");
    assert_eq!(out.stdout, "/app\nenv-value extra\nroot\n");
    assert_eq!(out.stderr, "err\n");

    let out = sb
        .exec(
            ExecRequest::new("pwd; id -un")
                .user(Some("worker".into()))
                .cwd(Some("/tmp".into())),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "/tmp\nworker\n");

    // A bind-mounted log dir is shared with the host.
    sb.exec(ExecRequest::new("echo hi > /logs/agent/x.txt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(logs.path().join("x.txt")).unwrap(),
        "hi\n"
    );

    // Upload a dir and a file, download them back.
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/a.txt"), "A").unwrap();
    std::fs::write(src.path().join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    sb.upload(src.path(), "/opt/up").await.unwrap();
    let out = sb
        .exec(ExecRequest::new("cat /opt/up/sub/a.txt; sh /opt/up/run.sh"))
        .await
        .unwrap();
    assert_eq!(out.stdout, "Aran\n");
    sb.write_file("/deep/new/dir/f.txt", b"written", 0o600)
        .await
        .unwrap();
    let out = sb
        .exec(ExecRequest::new(
            "cat /deep/new/dir/f.txt; stat -c %a /deep/new/dir/f.txt",
        ))
        .await
        .unwrap();
    assert_eq!(out.stdout, "written600\n");
    let back = tempfile::tempdir().unwrap();
    sb.download("/opt/up", &back.path().join("up"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(back.path().join("up/sub/a.txt")).unwrap(),
        "A"
    );
    sb.download("/deep/new/dir/f.txt", &back.path().join("f.txt"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(back.path().join("f.txt")).unwrap(),
        "written"
    );

    let id = sb.id().to_owned();
    sb.destroy().await.unwrap();
    sb.destroy().await.unwrap();
    assert!(
        !container_exists(&b, &id).await,
        "container {id} still exists after destroy"
    );
}

#[tokio::test]
async fn timeout_kills_the_command_and_its_children() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let ctx = context(&format!("FROM {BASE}\n"));
    let sb = b.start(&spec(ctx.path())).await.unwrap();
    let t0 = Instant::now();
    let out = sb
        .exec(
            ExecRequest::new("sleep 300 & sleep 301; echo never")
                .timeout(Some(Duration::from_millis(800))),
        )
        .await
        .unwrap();
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, None);
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Neither sleep survives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ps = sb.exec(ExecRequest::new("ls /proc | grep -E '^[0-9]+$' | while read p; do cat /proc/$p/cmdline 2>/dev/null | tr '\\0' ' '; echo; done | grep -c '^sleep 30' || true")).await.unwrap();
    assert_eq!(ps.stdout.trim(), "0", "processes left: {ps:?}");
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn no_network_and_limits_are_applied() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let ctx = context(&format!("FROM {BASE}\n"));
    let mut s = spec(ctx.path());
    s.memory_mb = Some(256);
    s.cpus = Some(0.5);
    s.network = false;
    let sb = b.start(&s).await.unwrap();
    let info = b
        .client()
        .inspect_container(
            sb.id(),
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let hc = info.host_config.unwrap();
    assert_eq!(hc.memory, Some(256 * 1024 * 1024));
    assert_eq!(hc.nano_cpus, Some(500_000_000));
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    assert_eq!(hc.init, Some(true));
    // Only loopback inside.
    let out = sb
        .exec(ExecRequest::new("ls /sys/class/net"))
        .await
        .unwrap();
    assert_eq!(out.stdout.trim(), "lo");
    sb.destroy().await.unwrap();
}

#[tokio::test]
async fn liveness_tells_a_broken_sandbox_from_a_gone_one() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let ctx = context(&format!("FROM {BASE}\n"));
    let mut s = spec(ctx.path());
    s.memory_mb = Some(128);
    let sb = b.start(&s).await.unwrap();
    assert_eq!(sb.liveness().await, Liveness::Running);
    // A command over the memory limit is OOM-killed; the sandbox runs on.
    let out = sb
        .exec(ExecRequest::new(
            "python3 -c 'x = bytearray(512 * 1024 * 1024); print(len(x))'",
        ))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(137), "{out:?}");
    assert_eq!(sb.liveness().await, Liveness::Running);
    // Killing every process but init stops the container; it is still there.
    let _ = sb.exec(ExecRequest::new("kill -9 -1")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut live = sb.liveness().await;
    while live == Liveness::Running && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        live = sb.liveness().await;
    }
    // Docker's flag says an OOM kill happened in the container, not that it stopped it.
    assert!(
        matches!(
            live,
            Liveness::Stopped {
                exit_code: Some(137),
                oom_killed: true
            }
        ),
        "{live:?}"
    );
    assert!(live.is_present());
    let e = sb.exec(ExecRequest::new("true")).await.unwrap_err();
    assert!(matches!(e, SandboxError::Exec(_)), "{e:?}");
    sb.destroy().await.unwrap();
    assert_eq!(sb.liveness().await, Liveness::Gone);
    assert!(!Liveness::Gone.is_present());
}

#[tokio::test]
async fn images_are_cached_by_content_and_build_errors_are_typed() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let marker = uuid_like();
    let ctx = context(&format!("FROM {BASE}\nRUN echo {marker} > /marker\n"));
    let s = spec(ctx.path());
    let tag = DockerBackend::image_tag(ctx.path()).unwrap();
    let first = b.ensure_image(&s).await.unwrap();
    assert_eq!(first, tag);
    let created = b.client().inspect_image(&tag).await.unwrap().id;
    // Same content: reused, not rebuilt.
    assert_eq!(b.ensure_image(&s).await.unwrap(), tag);
    assert_eq!(b.client().inspect_image(&tag).await.unwrap().id, created);
    // A prebuilt docker_image wins over the Dockerfile unless force_build.
    let mut pre = s.clone();
    pre.docker_image = Some(BASE.into());
    assert_eq!(b.ensure_image(&pre).await.unwrap(), BASE);
    pre.force_build = true;
    assert_eq!(b.ensure_image(&pre).await.unwrap(), tag);

    let bad = context(&format!(
        "FROM {BASE}\nRUN echo failing-step-{marker} && exit 4\n"
    ));
    let err = b.ensure_image(&spec(bad.path())).await.unwrap_err();
    match err {
        SandboxError::Build { message, .. } => {
            assert!(message.contains("non-zero code: 4"), "{message}");
            assert!(
                message.contains(&format!("failing-step-{marker}")),
                "the build log tail is kept: {message}"
            );
        }
        other => panic!("expected a build error, got {other:?}"),
    }
    let _ = b
        .client()
        .remove_image(
            &tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test]
async fn concurrent_builds_of_one_image_are_serialized() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let marker = uuid_like();
    let ctx = context(&format!("FROM {BASE}\nRUN echo {marker} > /m && sleep 1\n"));
    let s = spec(ctx.path());
    let (a, c) = tokio::join!(b.ensure_image(&s), b.ensure_image(&s));
    assert_eq!(a.unwrap(), c.unwrap());
    let tag = DockerBackend::image_tag(ctx.path()).unwrap();
    let _ = b
        .client()
        .remove_image(
            &tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test]
async fn destroy_all_removes_live_containers() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let ctx = context(&format!("FROM {BASE}\n"));
    let s1 = b.start(&spec(ctx.path())).await.unwrap();
    let s2 = b.start(&spec(ctx.path())).await.unwrap();
    let ids = [s1.id().to_owned(), s2.id().to_owned()];
    b.destroy_all().await;
    for id in ids {
        assert!(
            !container_exists(&b, &id).await,
            "{id} survived destroy_all"
        );
    }
}

#[tokio::test]
async fn compose_tasks_need_docker_compose() {
    let Some(b) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let ctx = context(&format!("FROM {BASE}\n"));
    std::fs::write(
        ctx.path().join("docker-compose.yaml"),
        "services:\n  main:\n    environment:\n      FROM_COMPOSE: \"yes\"\n",
    )
    .unwrap();
    let res = b.start(&spec(ctx.path())).await;
    match autoagent_sandbox::docker::compose::compose_version().await {
        Err(_) => match res {
            Err(SandboxError::ComposeMissing(_)) => {
                let msg = res.err().map(|e| e.to_string()).unwrap_or_default();
                assert!(msg.contains("docker compose"), "{msg}");
            }
            Err(other) => panic!("expected ComposeMissing, got {other:?}"),
            Ok(_) => panic!("a compose task started without docker compose"),
        },
        Ok(_) => {
            let sb = res.unwrap();
            let out = sb
                .exec(ExecRequest::new("echo $FROM_COMPOSE"))
                .await
                .unwrap();
            assert_eq!(out.stdout, "yes\n");
            sb.destroy().await.unwrap();
        }
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
