//! What the backend sends: pod and NetworkPolicy objects, names and labels. Pure functions, so
//! the shapes are unit-tested without a server.

use std::collections::BTreeMap;

use autoagent_sandbox::EnvironmentSpec;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, Pod, PodSpec, ResourceRequirements, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};

/// Label on every pod: the task's name (as a label value), like the Docker backend's
/// `autoagent.sandbox` container label.
pub const SANDBOX_LABEL: &str = "autoagent.sandbox";

/// Label on every pod: the id of the [`crate::KubernetesBackend`] that started it, so one
/// process's pods can be told from another's in a shared namespace.
pub const BACKEND_LABEL: &str = "autoagent.backend";

/// Label on every pod: its own name. The NetworkPolicy selects the pod by it (a policy selects
/// by labels only, and the other labels are shared by many pods).
pub const POD_LABEL: &str = "autoagent.pod";

/// The one container of a sandbox pod.
pub const CONTAINER: &str = "main";

/// The container's main process: it only keeps the pod alive for execs, and exits at once on
/// SIGTERM (a shell as PID 1 ignores signals it has no trap for, which would make every
/// deletion wait out the grace period). `sleep` runs in the background so the trap fires
/// while `wait` blocks; `sleep infinity` is not in every image's `sleep`.
pub const KEEPALIVE: &str = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done";

/// A pod name: `autoagent-<task>-<8 hex>`, a DNS-1123 label (lowercase alphanumerics and
/// `-`, at most 63 characters, alphanumeric at both ends).
pub fn pod_name(task: &str) -> String {
    let mut base = String::new();
    for c in task.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            base.push(c);
        } else if !base.ends_with('-') {
            base.push('-');
        }
    }
    let base: String = base.trim_matches('-').chars().take(40).collect();
    let base = base.trim_end_matches('-');
    let base = if base.is_empty() { "task" } else { base };
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("autoagent-{base}-{}", &id[..8])
}

/// Whether `v` is a valid label value: empty, or at most 63 of `[A-Za-z0-9._-]` with an
/// alphanumeric at both ends.
fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// `v` as a label value the API accepts: unchanged when it is one, else its valid characters
/// (others become `-`), cut to fit, and 8 hex of its sha256, so two values that differ only in
/// what was cut stay apart. The same value always maps to the same label, which is what lets
/// [`crate::KubernetesBackend`]'s `remove_labelled` find pods by the caller's value.
pub fn label_value(v: &str) -> String {
    if valid_label_value(v) {
        return v.to_owned();
    }
    let cleaned: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let hash: String = Sha256::digest(v.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let head: String = cleaned.chars().take(63 - 9).collect();
    let head = head.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// `k` as a label key: an optional DNS-subdomain prefix and `/`, then a name with the rules of
/// a value (non-empty). Keys this project uses (`autoagent.job`) are valid and unchanged.
pub fn label_key(k: &str) -> String {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name = match label_value(name) {
        n if n.is_empty() => "key".to_owned(),
        n => n,
    };
    match prefix {
        None => name,
        Some(p) => {
            let p: String = p
                .chars()
                .map(|c| {
                    let c = c.to_ascii_lowercase();
                    if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.') {
                        c
                    } else {
                        '-'
                    }
                })
                .take(253)
                .collect();
            let p = p.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if p.is_empty() {
                name
            } else {
                format!("{p}/{name}")
            }
        }
    }
}

/// The pod's labels: the spec's (as valid keys and values), the task, the backend, the pod.
pub fn pod_labels(spec: &EnvironmentSpec, pod: &str, backend_id: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (label_key(k), label_value(v)))
        .collect();
    labels.insert(SANDBOX_LABEL.to_owned(), label_value(&spec.name));
    labels.insert(BACKEND_LABEL.to_owned(), backend_id.to_owned());
    labels.insert(POD_LABEL.to_owned(), pod.to_owned());
    labels
}

/// CPUs as millicores (`1.5` → `1500m`), at least `1m`.
pub fn cpu_quantity(cpus: f64) -> Quantity {
    Quantity(format!("{}m", ((cpus * 1000.0).round() as i64).max(1)))
}

/// Memory in mebibytes (`2048` → `2048Mi`).
pub fn memory_quantity(mb: u64) -> Quantity {
    Quantity(format!("{mb}Mi"))
}

/// The sandbox pod for `spec` running `image`.
///
/// * Requests equal limits (`task.toml`'s `cpus`, `memory_mb`), so the pod is `Guaranteed`:
///   the scheduler reserves what the task asked for, and the kubelet evicts it last.
/// * Each mount target is an `emptyDir` volume (a pod cannot bind this machine's paths); the
///   caller downloads what was written there ([`autoagent_sandbox::Sandbox::host_mounts`]).
/// * `restartPolicy: Never`: a container that dies is a finished sandbox, not one to restart
///   behind the trial's back.
/// * No service account token (the agent gets no credentials to the cluster) and no service
///   links (the cluster's services would otherwise appear as env vars in every exec).
pub fn pod(
    name: &str,
    image: &str,
    spec: &EnvironmentSpec,
    labels: BTreeMap<String, String>,
) -> Pod {
    let mut quantities = BTreeMap::new();
    if let Some(c) = spec.cpus.filter(|c| *c > 0.0) {
        quantities.insert("cpu".to_owned(), cpu_quantity(c));
    }
    if let Some(m) = spec.memory_mb.filter(|m| *m > 0) {
        quantities.insert("memory".to_owned(), memory_quantity(m));
    }
    let resources = (!quantities.is_empty()).then(|| ResourceRequirements {
        limits: Some(quantities.clone()),
        requests: Some(quantities),
        ..Default::default()
    });
    let volumes: Vec<Volume> = spec
        .mounts
        .iter()
        .enumerate()
        .map(|(i, _)| Volume {
            name: format!("mount-{i}"),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        })
        .collect();
    let mounts: Vec<VolumeMount> = spec
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| VolumeMount {
            name: format!("mount-{i}"),
            mount_path: m.target.clone(),
            ..Default::default()
        })
        .collect();
    let env: Vec<EnvVar> = spec
        .env
        .iter()
        .map(|(k, v)| EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: CONTAINER.to_owned(),
                image: Some(image.to_owned()),
                command: Some(vec!["sh".into(), "-c".into(), KEEPALIVE.into()]),
                working_dir: spec.workdir.clone(),
                env: (!env.is_empty()).then_some(env),
                resources,
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                ..Default::default()
            }],
            volumes: (!volumes.is_empty()).then_some(volumes),
            restart_policy: Some("Never".to_owned()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    }
}

/// A deny-all NetworkPolicy for one pod: it selects the pod by [`POD_LABEL`] and lists both
/// policy types with no rules, so no traffic goes in or out (DNS included). It is owned by the
/// pod, so the cluster's garbage collector removes it with the pod even when we cannot.
pub fn deny_all_policy(
    pod: &str,
    pod_uid: &str,
    labels: &BTreeMap<String, String>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(pod.to_owned()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Pod".to_owned(),
                name: pod.to_owned(),
                uid: pod_uid.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(POD_LABEL.to_owned(), pod.to_owned())])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: None,
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoagent_sandbox::Mount;
    use pretty_assertions::assert_eq;

    #[test]
    fn pod_names_are_dns_labels() {
        for task in [
            "Org/My Task",
            "__x",
            "///",
            &"a".repeat(100),
            "ünïcode-tâsk",
        ] {
            let n = pod_name(task);
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(n.starts_with("autoagent-") && !n.ends_with('-'), "{n}");
            assert!(!n.contains("--"), "{n}");
        }
        assert!(pod_name("Org/My Task").starts_with("autoagent-org-my-task-"));
        assert!(pod_name("///").starts_with("autoagent-task-"));
        assert_ne!(pod_name("t"), pod_name("t"));
    }

    #[test]
    fn label_values_are_kept_when_valid_and_made_valid_otherwise() {
        let id = "8c1e4f7a-0b1d-4c55-9f0e-2a1b3c4d5e6f";
        assert_eq!(label_value(id), id);
        assert_eq!(label_value(""), "");
        let odd = label_value("my job: run #1");
        assert!(valid_label_value(&odd), "{odd}");
        assert!(odd.starts_with("my-job--run--1-"), "{odd}");
        let long_a = label_value(&format!("{}a", "x".repeat(80)));
        let long_b = label_value(&format!("{}b", "x".repeat(80)));
        assert!(valid_label_value(&long_a) && valid_label_value(&long_b));
        assert_ne!(long_a, long_b, "values that differ past the cut stay apart");
        assert_eq!(label_value("my job: run #1"), odd, "deterministic");
        assert!(valid_label_value(&label_value("///")));
        assert_eq!(label_key("autoagent.job"), "autoagent.job");
        assert_eq!(label_key("Example.COM/some key"), {
            let name = label_value("some key");
            format!("example.com/{name}")
        });
    }

    #[test]
    fn pod_spec_carries_limits_volumes_env_and_keepalive() {
        let spec = EnvironmentSpec {
            name: "hello".into(),
            cpus: Some(1.5),
            memory_mb: Some(2048),
            workdir: Some("/app".into()),
            env: BTreeMap::from([("A".into(), "1".into())]),
            mounts: vec![Mount {
                host: "/tmp/x".into(),
                target: "/logs/agent".into(),
            }],
            labels: BTreeMap::from([("autoagent.job".into(), "j1".into())]),
            ..Default::default()
        };
        let labels = pod_labels(&spec, "autoagent-hello-1", "b1");
        let p = pod("autoagent-hello-1", "debian:bookworm", &spec, labels);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "autoagent-hello-1",
                    "labels": {
                        "autoagent.backend": "b1",
                        "autoagent.job": "j1",
                        "autoagent.pod": "autoagent-hello-1",
                        "autoagent.sandbox": "hello"
                    }
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{
                        "command": ["sh", "-c", KEEPALIVE],
                        "env": [{"name": "A", "value": "1"}],
                        "image": "debian:bookworm",
                        "name": "main",
                        "resources": {
                            "limits": {"cpu": "1500m", "memory": "2048Mi"},
                            "requests": {"cpu": "1500m", "memory": "2048Mi"}
                        },
                        "volumeMounts": [{"mountPath": "/logs/agent", "name": "mount-0"}],
                        "workingDir": "/app"
                    }],
                    "enableServiceLinks": false,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 0,
                    "volumes": [{"emptyDir": {}, "name": "mount-0"}]
                }
            })
        );
    }

    #[test]
    fn policy_denies_both_ways_and_is_owned_by_the_pod() {
        let p = deny_all_policy("autoagent-t-1", "uid-1", &BTreeMap::new());
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        assert_eq!(
            v["spec"]["podSelector"],
            serde_json::json!({"matchLabels": {"autoagent.pod": "autoagent-t-1"}})
        );
        assert!(v["spec"].get("ingress").is_none() && v["spec"].get("egress").is_none());
        assert_eq!(
            v["metadata"]["ownerReferences"],
            serde_json::json!([{"apiVersion": "v1", "kind": "Pod", "name": "autoagent-t-1", "uid": "uid-1"}])
        );
    }
}
