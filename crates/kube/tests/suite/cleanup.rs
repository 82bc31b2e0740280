//! Pods that do not start are deleted; Ctrl-C and resume sweeps; what is left of a pod.

use std::time::{Duration, Instant};

use autoagent_kube::{KubeOptions, KubernetesBackend};
use autoagent_sandbox::{Backend, Liveness, SandboxError};
use pretty_assertions::assert_eq;

use super::support::{JOB, JOB_LABEL, spec, world};

#[tokio::test]
async fn a_pod_stuck_in_image_pull_backoff_fails_the_start_and_is_deleted() {
    let w = world().await;
    w.fake.pod_statuses(&["pending", "imagepullbackoff"]);
    let mut s = spec("backoff");
    s.docker_image = Some("registry.invalid/nope:1".into());
    s.start_timeout = Some(Duration::from_millis(400));
    let t0 = Instant::now();
    let e = w.backend.start(&s).await.err().expect("the pod never runs");
    let log = w.fake.log();
    let text = e.to_string();
    assert!(
        matches!(&e, SandboxError::StartTimeoutWaiting { after, .. } if *after == Duration::from_millis(400)),
        "a start timeout (Harbor's EnvironmentStartTimeoutError), with the reason\n{e:?}\n{log}"
    );
    assert!(
        text.contains("ImagePullBackOff: Back-off pulling image \"registry.invalid/nope:1\""),
        "the error says why: {text}\n{log}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded by the start timeout"
    );
    let reqs = w.fake.requests();
    let deleted: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.rsplit('/').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        deleted,
        ["pods", "networkpolicies"],
        "pod and policy deleted\n{log}"
    );
    assert!(
        w.fake.pods().is_empty() && w.fake.policies().is_empty(),
        "{log}"
    );
    w.backend.destroy_all().await;
    assert_eq!(
        w.fake.requests().len(),
        reqs.len(),
        "nothing left for Ctrl-C\n{}",
        w.fake.log()
    );
}

#[tokio::test]
async fn a_refused_policy_deletes_the_pod_and_names_the_policy() {
    let w = world().await;
    w.fake.forbid_policies();
    let e = w
        .backend
        .start(&spec("rbac"))
        .await
        .err()
        .expect("no policy, no start");
    let log = w.fake.log();
    let text = e.to_string();
    assert!(
        text.contains("network policy")
            && text.contains("forbidden")
            && text.contains("Forbidden, 403"),
        "{text}\n{log}"
    );
    assert!(
        w.fake.pods().is_empty(),
        "the pod is not left without its policy\n{log}"
    );
}

#[tokio::test]
async fn remove_labelled_lists_by_selector_and_deletes_each() {
    let w = world().await;
    let a1 = w.backend.start(&spec("a")).await.unwrap();
    let a2 = w.backend.start(&spec("a")).await.unwrap();
    let mut other = spec("b");
    other.labels.insert(JOB_LABEL.into(), "another-job".into());
    let b = w.backend.start(&other).await.unwrap();
    // The killed process's pods are swept by a new one, as `eval` does on resume.
    let resumed = w.another_backend().await;
    let before = w.fake.requests().len();
    let n = resumed.remove_labelled(JOB_LABEL, JOB).await;
    let log = w.fake.log();
    assert_eq!(n, 2, "{log}");
    let tail = w.fake.requests()[before..].to_vec();
    assert_eq!(tail[0].method, "GET", "{log}");
    assert_eq!(
        tail[0].path, "/api/v1/namespaces/autoagent-test/pods",
        "{log}"
    );
    assert_eq!(
        tail[0].query_values("labelSelector"),
        [format!("{JOB_LABEL}={JOB}")],
        "{log}"
    );
    let mut deleted: Vec<String> = tail
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .map(|r| r.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    deleted.sort();
    let mut wanted = vec![a1.id().to_owned(), a2.id().to_owned()];
    wanted.sort();
    assert_eq!(deleted, wanted, "{log}");
    assert_eq!(
        w.fake.pods(),
        [b.id().to_owned()],
        "the other job's pod stays\n{log}"
    );
    assert_eq!(
        w.fake.policies(),
        [b.id().to_owned()],
        "and its policy\n{log}"
    );
    assert_eq!(
        resumed.remove_labelled(JOB_LABEL, JOB).await,
        0,
        "{}",
        w.fake.log()
    );
}

#[tokio::test]
async fn destroy_all_deletes_this_backends_live_pods_only() {
    let w = world().await;
    let other = w.another_backend().await;
    let theirs = other.start(&spec("theirs")).await.unwrap();
    let one = w.backend.start(&spec("one")).await.unwrap();
    let two = w.backend.start(&spec("two")).await.unwrap();
    one.destroy().await.unwrap();
    w.backend.destroy_all().await;
    let log = w.fake.log();
    assert_eq!(w.fake.pods(), [theirs.id().to_owned()], "{log}");
    let deletes = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with(two.id()))
        .count();
    assert_eq!(deletes, 2, "pod and policy of the live one\n{log}");
}

#[tokio::test]
async fn liveness_reads_the_pod() {
    let w = world().await;
    let sb = w.backend.start(&spec("alive")).await.unwrap();
    assert_eq!(sb.liveness().await, Liveness::Running, "{}", w.fake.log());
    w.fake.set_status(sb.id(), "oomkilled");
    assert_eq!(
        sb.liveness().await,
        Liveness::Stopped {
            exit_code: Some(137),
            oom_killed: true
        },
        "{}",
        w.fake.log()
    );
    w.fake.vanish(sb.id());
    assert_eq!(sb.liveness().await, Liveness::Gone);
    w.fake.stop();
    let l = sb.liveness().await;
    assert!(matches!(l, Liveness::Unreachable(_)), "{l:?}");
}

#[tokio::test]
async fn an_api_server_that_is_not_there_is_unreachable() {
    let w = world().await;
    let sb = w.backend.start(&spec("cut")).await.unwrap();
    w.fake.stop();
    let e = sb
        .exec(autoagent_sandbox::ExecRequest::new("true"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SandboxError::Unreachable { host, .. } if *host == w.fake.url()),
        "{e:?}"
    );
    let e = KubernetesBackend::with_config(
        autoagent_kube::kube::Config::new(w.fake.url().parse().unwrap()),
        KubeOptions::default(),
    )
    .await
    .err()
    .expect("nothing answers");
    assert!(matches!(e, SandboxError::Unreachable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_dockerfile_task_without_a_registry_is_refused_before_any_pod() {
    let w = world().await;
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), "FROM debian:bookworm-slim\n").unwrap();
    let mut s = spec("built");
    s.docker_image = None;
    s.build_context = Some(ctx.path().to_path_buf());
    let before = w.fake.requests().len();
    let e = w
        .backend
        .start(&s)
        .await
        .err()
        .expect("no registry to push to");
    assert!(
        matches!(&e, SandboxError::Unsupported(m) if m.contains("[sandbox.kubernetes] registry")),
        "{e:?}"
    );
    assert_eq!(w.fake.requests().len(), before, "{}", w.fake.log());
    assert_eq!(w.backend.image_id(&s).await, None);

    let with_registry =
        super::support::world_with(|o| o.registry = Some("registry.local:5000/team/".into())).await;
    let id = with_registry.backend.image_id(&s).await.unwrap();
    let tag = autoagent_sandbox::docker::DockerBackend::image_tag(ctx.path()).unwrap();
    assert_eq!(id, format!("registry.local:5000/team/{tag}"));
    s.docker_image = Some(
        "debian@sha256:e5865e6858dacc255bead044a7f2d0ad8c362433cfaa5acefb670c1edf54dfef".into(),
    );
    assert_eq!(
        with_registry.backend.image_id(&s).await,
        s.docker_image,
        "a digest names the image"
    );
    s.docker_image = Some("debian:bookworm-slim".into());
    assert_eq!(
        with_registry.backend.image_id(&s).await,
        None,
        "a tag can move"
    );
}
