//! The same life against a real cluster (kind, k3s, any): `#[ignore]`d, so a plain `cargo test`
//! reports it as ignored, not passed; run with `--include-ignored` and `AUTOAGENT_KUBE_LIVE=1`. It uses the kube config from the usual places (`KUBECONFIG`,
//! `~/.kube/config`), the namespace `AUTOAGENT_KUBE_NAMESPACE` (default `default`) and the
//! image `AUTOAGENT_KUBE_IMAGE` (default `debian:bookworm-slim`: it needs `sh`, `bash`, `tar`,
//! `grep`). See the crate's README for the commands.

use std::collections::BTreeMap;
use std::time::Duration;

use autoagent_kube::kube;
use autoagent_kube::{KubeOptions, KubernetesBackend};
use autoagent_sandbox::{Backend, EnvironmentSpec, ExecRequest, Liveness};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use pretty_assertions::assert_eq;

const LIVE: &str = "AUTOAGENT_KUBE_LIVE";

async fn backend() -> KubernetesBackend {
    // Asked for by name (`--include-ignored`) without the variable: a mistake, not a pass.
    assert_eq!(
        std::env::var(LIVE).as_deref(),
        Ok("1"),
        "set {LIVE}=1 (and KUBECONFIG) to run this test against a live cluster"
    );
    let namespace = std::env::var("AUTOAGENT_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    KubernetesBackend::connect(KubeOptions {
        namespace: Some(namespace),
        ..KubeOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{LIVE}=1 but the cluster does not answer: {e}"))
}

fn spec(job: &str) -> EnvironmentSpec {
    EnvironmentSpec {
        name: "live-check".into(),
        docker_image: Some(
            std::env::var("AUTOAGENT_KUBE_IMAGE").unwrap_or_else(|_| "debian:bookworm-slim".into()),
        ),
        cpus: Some(0.25),
        memory_mb: Some(256),
        workdir: Some("/root".into()),
        env: BTreeMap::from([("TASK_ENV".into(), "from-spec".into())]),
        mounts: vec![autoagent_sandbox::Mount {
            host: "/unused".into(),
            target: "/logs/agent".into(),
        }],
        labels: BTreeMap::from([("autoagent.job".into(), job.into())]),
        start_timeout: Some(Duration::from_secs(300)),
        ..EnvironmentSpec::default()
    }
}

#[tokio::test]
#[ignore = "needs a live cluster: AUTOAGENT_KUBE_LIVE=1 cargo test -p autoagent-kube -- --include-ignored live_cluster"]
async fn live_cluster_lifecycle() {
    let b = backend().await;
    let job = uuid::Uuid::new_v4().to_string();
    let sb = b.start(&spec(&job)).await.unwrap();
    let client = kube::Client::try_default().await.unwrap();
    let policies: kube::Api<NetworkPolicy> = kube::Api::namespaced(client, b.namespace());
    assert!(
        policies.get_opt(sb.id()).await.unwrap().is_some(),
        "the deny-all policy exists"
    );

    let out = sb
        .exec(
            ExecRequest::new("echo \"$TASK_ENV $X\"; pwd; echo err >&2; exit 3")
                .env(BTreeMap::from([("X".into(), "from-exec".into())])),
        )
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.stderr.as_str()),
        (Some(3), "from-spec from-exec\n/root\n", "err\n")
    );

    let slow = sb
        .exec(ExecRequest::new("sleep 101; echo never").timeout(Some(Duration::from_secs(2))))
        .await
        .unwrap();
    assert!(slow.timed_out && slow.exit_code.is_none(), "{slow:?}");
    let left = sb
        .exec(ExecRequest::new(
            "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 101' || true",
        ))
        .await
        .unwrap();
    assert_eq!(left.stdout.trim(), "0", "the timed-out command was killed");

    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/a.txt"), "A").unwrap();
    sb.upload(src.path(), "/tests").await.unwrap();
    sb.write_file("/logs/agent/out.txt", b"logged", 0o644)
        .await
        .unwrap();
    let back = tempfile::tempdir().unwrap();
    sb.download("/tests", back.path()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(back.path().join("sub/a.txt")).unwrap(),
        "A"
    );
    sb.download("/logs/agent", back.path()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(back.path().join("out.txt")).unwrap(),
        "logged"
    );

    assert_eq!(sb.liveness().await, Liveness::Running);
    sb.destroy().await.unwrap();
    assert_eq!(sb.liveness().await, Liveness::Gone);

    // A killed run's pods are swept by label.
    let left_behind = b.start(&spec(&job)).await.unwrap();
    let resumed = backend().await;
    assert_eq!(resumed.remove_labelled("autoagent.job", &job).await, 1);
    assert_eq!(left_behind.liveness().await, Liveness::Gone);
}
