//! A fake API server, a kubeconfig pointing at it, and a backend connected through that file.

use std::collections::BTreeMap;
use std::time::Duration;

use autoagent_kube::{KubeOptions, KubernetesBackend};
use autoagent_sandbox::EnvironmentSpec;

use super::fake::FakeApi;

/// The namespace of the kubeconfig's context: the backend must use it when none is given.
pub const NS: &str = "autoagent-test";
/// The bearer token of the kubeconfig's user: every request must carry it.
pub const TOKEN: &str = "fake-token-5f2c9e";
/// The job label the trials carry, as the eval crate sets it.
pub const JOB_LABEL: &str = "autoagent.job";
pub const JOB: &str = "8c1e4f7a-0b1d-4c55-9f0e-2a1b3c4d5e6f";

pub struct World {
    pub fake: FakeApi,
    pub backend: KubernetesBackend,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Another backend on the same server (a second process, or a resumed one).
    pub async fn another_backend(&self) -> KubernetesBackend {
        KubernetesBackend::connect(options(&self.dir))
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", self.fake.log()))
    }
}

fn options(dir: &tempfile::TempDir) -> KubeOptions {
    KubeOptions {
        kubeconfig: Some(dir.path().join("kubeconfig")),
        poll_interval: Duration::from_millis(20),
        ..KubeOptions::default()
    }
}

pub async fn world() -> World {
    world_with(|_| {}).await
}

/// A fake server and a backend connected through a kubeconfig file naming it (context
/// `fake`, namespace [`NS`], token [`TOKEN`]); `tweak` changes the options first.
pub async fn world_with(tweak: impl FnOnce(&mut KubeOptions)) -> World {
    connected(FakeApi::start().await, tweak).await
}

/// The same over TLS: the kubeconfig carries the test CA as `certificate-authority-data`.
pub async fn world_tls() -> World {
    connected(FakeApi::start_tls().await, |_| {}).await
}

async fn connected(fake: FakeApi, tweak: impl FnOnce(&mut KubeOptions)) -> World {
    use base64::Engine as _;
    let ca = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls-ca.pem"),
    )
    .unwrap();
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: other
  cluster:
    server: http://127.0.0.1:9
- name: fake
  cluster:
    server: {url}
    certificate-authority-data: {ca}
contexts:
- name: other
  context:
    cluster: other
    user: fake
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: {NS}
current-context: fake
users:
- name: fake
  user:
    token: {TOKEN}
",
        url = fake.url()
    );
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    let mut opts = options(&dir);
    tweak(&mut opts);
    let backend = KubernetesBackend::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", fake.log()));
    World { fake, backend, dir }
}

/// A task with a prebuilt image, limits, a workdir, a log mount and the job label.
pub fn spec(name: &str) -> EnvironmentSpec {
    EnvironmentSpec {
        name: name.to_owned(),
        docker_image: Some("debian:bookworm-slim".to_owned()),
        cpus: Some(1.0),
        memory_mb: Some(2048),
        workdir: Some("/app".to_owned()),
        env: BTreeMap::from([("TASK_ENV".to_owned(), "1".to_owned())]),
        mounts: vec![autoagent_sandbox::Mount {
            host: "/tmp/unused-by-kubernetes".into(),
            target: "/logs/agent".to_owned(),
        }],
        labels: BTreeMap::from([(JOB_LABEL.to_owned(), JOB.to_owned())]),
        start_timeout: Some(Duration::from_secs(10)),
        ..EnvironmentSpec::default()
    }
}
