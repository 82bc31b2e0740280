//! Start, use, destroy: what the backend sends for a pod's life, and the kubeconfig it reads.

use autoagent_kube::spec::KEEPALIVE;
use autoagent_sandbox::{Backend, ExecRequest};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::fake::Reply;
use super::support::{JOB, NS, TOKEN, spec, world};

#[tokio::test]
async fn start_waits_for_running_then_exec_and_destroy_delete_pod_and_policy() {
    let w = world().await;
    w.fake.pod_statuses(&["pending", "pending", "running"]);
    w.fake
        .on_exec("echo hello", Reply::transcript("exec-v5-hello.json"));
    let sb = w
        .backend
        .start(&spec("hello-world"))
        .await
        .unwrap_or_else(|e| panic!("start: {e}\n{}", w.fake.log()));
    let pod = sb.id().to_owned();
    let log = w.fake.log();
    assert!(pod.starts_with("autoagent-hello-world-"), "{pod}");
    assert!(
        !sb.host_mounts(),
        "log dirs are emptyDir volumes, not bind mounts"
    );
    assert_eq!(sb.host().as_deref(), Some(w.fake.url().as_str()));

    let reqs = w.fake.requests();
    let line = |r: &super::fake::Seen| format!("{} {}", r.method, r.path);
    let lines: Vec<String> = reqs.iter().map(line).collect();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let policies = format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies");
    assert_eq!(
        lines,
        [
            "GET /version".to_owned(),
            format!("POST {pods}"),
            format!("POST {policies}"),
            format!("GET {pods}/{pod}"),
            format!("GET {pods}/{pod}"),
            format!("GET {pods}/{pod}"),
        ],
        "a create, a policy, then reads until Running (pending twice)\n{log}"
    );
    assert!(
        reqs.iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "the kubeconfig user's token goes with every request\n{log}"
    );

    let body = reqs[1].body.clone().unwrap();
    assert_eq!(
        body["metadata"]["labels"],
        json!({
            "autoagent.backend": w.backend.id(),
            "autoagent.job": JOB,
            "autoagent.pod": pod,
            "autoagent.sandbox": "hello-world"
        }),
        "{log}"
    );
    assert_eq!(
        body["spec"],
        json!({
            "automountServiceAccountToken": false,
            "containers": [{
                "command": ["sh", "-c", KEEPALIVE],
                "env": [{"name": "TASK_ENV", "value": "1"}],
                "image": "debian:bookworm-slim",
                "name": "main",
                "resources": {
                    "limits": {"cpu": "1000m", "memory": "2048Mi"},
                    "requests": {"cpu": "1000m", "memory": "2048Mi"}
                },
                "volumeMounts": [{"mountPath": "/logs/agent", "name": "mount-0"}],
                "workingDir": "/app"
            }],
            "enableServiceLinks": false,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "volumes": [{"emptyDir": {}, "name": "mount-0"}]
        }),
        "{log}"
    );
    let created_uid = w.fake.pod(&pod).unwrap()["metadata"]["uid"].clone();
    let policy = reqs[2].body.clone().unwrap();
    assert_eq!(
        policy["spec"],
        json!({"podSelector": {"matchLabels": {"autoagent.pod": pod}}, "policyTypes": ["Ingress", "Egress"]}),
        "deny-all: both policy types, no rules\n{log}"
    );
    assert_eq!(
        policy["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": created_uid}]),
        "owned by the pod (the uid the create answered), so the cluster collects it\n{log}"
    );

    let out = sb.exec(ExecRequest::new("echo hello")).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str(), out.timed_out),
        (Some(0), "hello\n", false)
    );

    let before = w.fake.requests().len();
    sb.destroy().await.unwrap();
    let log = w.fake.log();
    let tail: Vec<_> = w.fake.requests()[before..].to_vec();
    let lines: Vec<String> = tail.iter().map(line).collect();
    assert_eq!(
        lines,
        [
            format!("DELETE {pods}/{pod}"),
            format!("DELETE {policies}/{pod}")
        ],
        "{log}"
    );
    assert_eq!(
        tail[0].body.as_ref().map(|b| (
            b["gracePeriodSeconds"].clone(),
            b["propagationPolicy"].clone()
        )),
        Some((json!(0), json!("Background"))),
        "deleted at once\n{log}"
    );
    assert!(
        w.fake.pods().is_empty() && w.fake.policies().is_empty(),
        "{log}"
    );

    sb.destroy().await.unwrap();
    assert_eq!(
        w.fake.requests().len(),
        before + 2,
        "a second destroy sends nothing\n{}",
        w.fake.log()
    );
    w.backend.destroy_all().await;
    assert_eq!(
        w.fake.requests().len(),
        before + 2,
        "a destroyed pod is no longer the backend's to delete\n{}",
        w.fake.log()
    );
}

#[tokio::test]
async fn a_task_with_network_gets_no_policy() {
    let w = world().await;
    let mut s = spec("net");
    s.network = true;
    let sb = w.backend.start(&s).await.unwrap();
    let log = w.fake.log();
    assert!(
        !w.fake
            .requests()
            .iter()
            .any(|r| r.path.contains("networkpolicies")),
        "{log}"
    );
    sb.destroy().await.unwrap();
    assert!(
        !w.fake
            .requests()
            .iter()
            .any(|r| r.path.contains("networkpolicies")),
        "no policy to delete either\n{}",
        w.fake.log()
    );
    assert!(w.fake.pods().is_empty());
}

#[tokio::test]
async fn options_override_the_kubeconfig_namespace_and_context() {
    let w = super::support::world_with(|o| o.namespace = Some("elsewhere".into())).await;
    assert_eq!(w.backend.namespace(), "elsewhere");
    let sb = w.backend.start(&spec("ns")).await.unwrap();
    let log = w.fake.log();
    assert!(
        w.fake
            .requests()
            .iter()
            .skip(1)
            .all(|r| r.path.contains("/namespaces/elsewhere/")),
        "{log}"
    );
    sb.destroy().await.unwrap();

    // The kubeconfig's other context points at a closed port: choosing it reaches nothing.
    let dir = &w.dir;
    let e = autoagent_kube::KubernetesBackend::connect(autoagent_kube::KubeOptions {
        kubeconfig: Some(dir.path().join("kubeconfig")),
        context: Some("other".into()),
        ..Default::default()
    })
    .await
    .err()
    .expect("the other context's server is not there");
    assert!(
        matches!(e, autoagent_sandbox::SandboxError::Unreachable { ref host, .. } if host == "http://127.0.0.1:9"),
        "{e:?}"
    );
}

/// Real API servers are reached over TLS, with the cluster's CA from the kubeconfig: the
/// same life over https, the exec websocket included.
#[tokio::test]
async fn the_same_over_tls_with_the_kubeconfigs_ca() {
    let w = super::support::world_tls().await;
    assert!(w.fake.url().starts_with("https://127.0.0.1:"));
    w.fake
        .on_exec("echo hello", Reply::transcript("exec-v5-hello.json"));
    let sb = w
        .backend
        .start(&spec("tls"))
        .await
        .unwrap_or_else(|e| panic!("start: {e}\n{}", w.fake.log()));
    let out = sb.exec(ExecRequest::new("echo hello")).await.unwrap();
    assert_eq!(
        (out.exit_code, out.stdout.as_str()),
        (Some(0), "hello\n"),
        "{}",
        w.fake.log()
    );
    sb.write_file("/tls.txt", b"over tls", 0o644).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(w.fake.fs().join("tls.txt")).unwrap(),
        "over tls"
    );
    sb.destroy().await.unwrap();
    assert!(w.fake.pods().is_empty(), "{}", w.fake.log());
}
