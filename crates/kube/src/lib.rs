//! The Kubernetes sandbox backend: one pod per trial, in a namespace of the user's choice.
//!
//! A trial's environment is a pod of one container (`main`) that only sleeps; commands run in
//! it through the `pods/exec` subresource ([`exec`]), files move as tar streams through exec.
//! The image is the task's `docker_image`, or its `environment/Dockerfile` built by the local
//! Docker daemon and pushed to the registry named in `[sandbox.kubernetes] registry`. Unless
//! the task allows the network, a deny-all NetworkPolicy owned by the pod isolates it.
//!
//! No scheduling happens here: the caller's concurrency limit (a semaphore) decides how many
//! pods exist at once, and the cluster decides where they run.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use autoagent_sandbox::docker::DockerBackend;
use autoagent_sandbox::{Backend, EnvironmentSpec, Result, Sandbox, SandboxError};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use tokio::time::Instant;

pub mod exec;
mod sandbox;
pub mod spec;

pub use kube;
pub use sandbox::KubeSandbox;

/// How long a start may take when the task gives no `build_timeout_sec`: image pulls on a
/// fresh node are slow, but a pod that is not running after this is not going to be.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(600);

/// How long [`Sandbox::liveness`] waits for the API server.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// Waiting reasons of a container that retrying will not cure: the start fails at once
/// instead of waiting out the timeout. `ImagePullBackOff`, `ErrImagePull` and
/// `ContainerCreating` are not here: a registry or node can recover from them.
const FATAL_WAITING: &[&str] = &[
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Reasons a pod fails for the cluster's sake, not its own: such a pod is
/// [`Liveness::Gone`](autoagent_sandbox::Liveness::Gone), like a container removed from
/// outside.
const EVICTED: &[&str] = &[
    "Evicted",
    "Preempting",
    "NodeLost",
    "NodeShutdown",
    "Shutdown",
    "Terminated",
];

/// Where and how the backend runs pods (`[sandbox.kubernetes]`).
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The namespace pods go in; `None`: the kube config context's namespace, else `default`.
    pub namespace: Option<String>,
    /// Where images built from a task's Dockerfile are pushed (`registry.example.com/team`);
    /// the cluster must be able to pull from it. `None`: only tasks with a `docker_image` run.
    pub registry: Option<String>,
    /// A context of the kubeconfig; `None`: its current context.
    pub context: Option<String>,
    /// A kubeconfig file to read instead of the usual places (`$KUBECONFIG`,
    /// `~/.kube/config`, then the in-cluster service account).
    pub kubeconfig: Option<PathBuf>,
    /// The start timeout when the spec has none.
    pub start_timeout: Duration,
    /// How often a starting pod is polled.
    pub poll_interval: Duration,
}

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            registry: None,
            context: None,
            kubeconfig: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Turns kube's errors into [`SandboxError`]s that name the API server.
#[derive(Debug, Clone)]
pub(crate) struct Errors {
    /// The API server's URL.
    pub host: String,
}

impl Errors {
    pub fn unreachable(&self, message: impl Into<String>) -> SandboxError {
        SandboxError::Unreachable {
            host: self.host.clone(),
            message: message.into(),
        }
    }

    /// A failure at the connection (refused, reset, TLS, timed out) is
    /// [`SandboxError::Unreachable`]; the API's own answer keeps its message and goes to
    /// `other`.
    pub fn map(&self, e: kube::Error, other: impl FnOnce(String) -> SandboxError) -> SandboxError {
        match e {
            kube::Error::HyperError(_) | kube::Error::Service(_) => self.unreachable(e.to_string()),
            kube::Error::Api(s) => other(api_message(&s)),
            e => other(e.to_string()),
        }
    }
}

/// An API `Status` as one line: `pods "x" not found (NotFound, 404)`.
fn api_message(s: &kube::core::Status) -> String {
    format!("{} ({}, {})", s.message, s.reason, s.code)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// The Kubernetes backend. Cloning shares the client and the set of live pods.
#[derive(Clone)]
pub struct KubernetesBackend {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pods: Api<Pod>,
    pub policies: Api<NetworkPolicy>,
    pub errors: Errors,
    namespace: String,
    registry: Option<String>,
    /// This backend's [`spec::BACKEND_LABEL`] value.
    id: String,
    start_timeout: Duration,
    poll_interval: Duration,
    /// The Docker daemon that builds and pushes images, connected on first need.
    docker: tokio::sync::OnceCell<DockerBackend>,
    /// One cell per pushed image: each is built and pushed once per backend, and concurrent
    /// trials of one task wait for the same push.
    pushed: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<()>>>>,
    /// Pods started and not yet deleted (for Ctrl-C), with whether each has a policy.
    live: Mutex<HashMap<String, bool>>,
}

impl Inner {
    /// Deletes a pod at once (grace 0) and its NetworkPolicy; either being gone already is
    /// success.
    pub async fn delete(&self, name: &str, policy: bool) -> Result<()> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::background()
        };
        let pod = match self.pods.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.errors.map(e, |m| {
                SandboxError::Backend(format!("deleting pod {name}: {m}"))
            })),
        };
        let policy = if policy {
            match self.policies.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(self.errors.map(e, |m| {
                    SandboxError::Backend(format!("deleting network policy {name}: {m}"))
                })),
            }
        } else {
            Ok(())
        };
        if pod.is_ok()
            && let Ok(mut live) = self.live.lock()
        {
            live.remove(name);
        }
        pod.and(policy)
    }
}

impl KubernetesBackend {
    /// Connects with the kube config from the usual places (`options.kubeconfig`, else
    /// `$KUBECONFIG`, `~/.kube/config`, else the in-cluster service account), using
    /// `options.context` when given, and checks that the API server answers.
    pub async fn connect(options: KubeOptions) -> Result<Self> {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        let file_options = KubeConfigOptions {
            context: options.context.clone(),
            ..Default::default()
        };
        let config = match (&options.kubeconfig, &options.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    SandboxError::Backend(format!("reading kubeconfig {}: {e}", path.display()))
                })?;
                kube::Config::from_custom_kubeconfig(file, &file_options)
                    .await
                    .map_err(|e| {
                        SandboxError::Backend(format!("kubeconfig {}: {e}", path.display()))
                    })?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&file_options)
                .await
                .map_err(|e| SandboxError::Backend(format!("kube config: {e}")))?,
            (None, None) => kube::Config::infer()
                .await
                .map_err(|e| SandboxError::Backend(format!("no kube config found: {e}")))?,
        };
        Self::with_config(config, options).await
    }

    /// Connects with a given client configuration (`kube::Config::new(url)` for a test
    /// server) and checks that the API server answers (`GET /version`).
    pub async fn with_config(config: kube::Config, options: KubeOptions) -> Result<Self> {
        let host = config.cluster_url.to_string();
        let errors = Errors {
            host: host.trim_end_matches('/').to_owned(),
        };
        let namespace = options
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| errors.map(e, |m| SandboxError::Backend(format!("kube client: {m}"))))?;
        client.apiserver_version().await.map_err(|e| {
            errors.map(e, |m| {
                SandboxError::Backend(format!("the API server at {} refuses: {m}", errors.host))
            })
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                pods: Api::namespaced(client.clone(), &namespace),
                policies: Api::namespaced(client, &namespace),
                errors,
                namespace,
                registry: options.registry.map(|r| r.trim_end_matches('/').to_owned()),
                id: uuid::Uuid::new_v4().simple().to_string(),
                start_timeout: options.start_timeout,
                poll_interval: options.poll_interval,
                docker: tokio::sync::OnceCell::new(),
                pushed: Mutex::new(HashMap::new()),
                live: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The namespace pods go in.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The API server's URL.
    pub fn host(&self) -> &str {
        &self.inner.errors.host
    }

    /// This backend's id, the value of [`spec::BACKEND_LABEL`] on its pods.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The image a pod for `spec` runs: the prebuilt `docker_image` unless `force_build`
    /// with a Dockerfile; else the Dockerfile built by the local Docker daemon (its
    /// content-hashed tag) and pushed as `<registry>/autoagent-env:<hash>`.
    async fn image(&self, spec: &EnvironmentSpec) -> Result<String> {
        let context = spec.build_context.as_deref();
        if context.is_some_and(|c| autoagent_sandbox::docker::compose::compose_file(c).is_some()) {
            return Err(SandboxError::Unsupported(format!(
                "{}: tasks with environment/docker-compose.yaml cannot run on Kubernetes",
                spec.name
            )));
        }
        let dockerfile = context.filter(|c| c.join("Dockerfile").is_file());
        if let Some(image) = &spec.docker_image
            && (!spec.force_build || dockerfile.is_none())
        {
            return Ok(image.clone());
        }
        let Some(dockerfile) = dockerfile else {
            return Err(SandboxError::Build {
                image: spec.name.clone(),
                message: "environment/Dockerfile not found and no [environment].docker_image set"
                    .to_owned(),
            });
        };
        let Some(registry) = &self.inner.registry else {
            return Err(SandboxError::Unsupported(format!(
                "{}: the task's image is built from environment/Dockerfile, and a cluster can only pull built images from a registry: set [sandbox.kubernetes] registry in autoagent.toml (or give the task a docker_image)",
                spec.name
            )));
        };
        let remote = format!("{registry}/{}", DockerBackend::image_tag(dockerfile)?);
        let cell = {
            let mut pushed = self
                .inner
                .pushed
                .lock()
                .map_err(|_| SandboxError::Backend("push lock poisoned".to_owned()))?;
            pushed.entry(remote.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let docker = self
                .inner
                .docker
                .get_or_try_init(DockerBackend::connect)
                .await?;
            let local = docker.ensure_image(spec).await?;
            docker.push(&local, &remote).await
        })
        .await?;
        Ok(remote)
    }

    /// Creates the pod (and its policy) and waits until it runs, or `deadline`.
    async fn create_and_wait(
        &self,
        name: &str,
        spec: &EnvironmentSpec,
        image: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<KubeSandbox> {
        let inner = &self.inner;
        let labels = spec::pod_labels(spec, name, &inner.id);
        let pod = spec::pod(name, image, spec, labels.clone());
        let created = inner
            .pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| {
                inner.errors.map(e, |m| {
                    SandboxError::Start(format!("creating pod {name} from {image}: {m}"))
                })
            })?;
        // The policy needs the pod's uid for its owner reference, so it comes second. Nothing
        // of the task's runs before `start` returns, so no command sees the pod unguarded.
        if !spec.network {
            let uid = created.metadata.uid.unwrap_or_default();
            if let Ok(mut live) = inner.live.lock() {
                live.insert(name.to_owned(), true);
            }
            inner
                .policies
                .create(
                    &PostParams::default(),
                    &spec::deny_all_policy(name, &uid, &labels),
                )
                .await
                .map_err(|e| {
                    inner.errors.map(e, |m| {
                        SandboxError::Start(format!(
                            "creating the deny-all network policy of pod {name}: {m}"
                        ))
                    })
                })?;
        }
        let mut why: String;
        loop {
            let pod = inner.pods.get(name).await.map_err(|e| {
                inner.errors.map(e, |m| {
                    SandboxError::Start(format!("reading pod {name}: {m}"))
                })
            })?;
            match pod_state(&pod) {
                PodState::Running => break,
                PodState::Waiting(w) => why = w,
                PodState::Failed(w) => {
                    return Err(SandboxError::Start(format!(
                        "pod {name} failed to start: {w}"
                    )));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SandboxError::StartTimeoutWaiting {
                    after: timeout,
                    why: format!("pod {name} is not running: {why}"),
                });
            }
            tokio::time::sleep((deadline - now).min(inner.poll_interval)).await;
        }
        Ok(KubeSandbox::new(
            inner.clone(),
            name.to_owned(),
            spec.workdir.clone(),
            !spec.network,
        ))
    }
}

/// Where a starting pod is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PodState {
    Running,
    /// Not yet; why (the container's waiting reason, the scheduler's message).
    Waiting(String),
    /// It will not run; why.
    Failed(String),
}

/// `reason: message`, or whichever of the two is there.
fn reason_message(reason: Option<&str>, message: Option<&str>) -> String {
    match (reason, message) {
        (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
        (Some(r), _) => r.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => String::new(),
    }
}

pub(crate) fn pod_state(pod: &Pod) -> PodState {
    if pod.metadata.deletion_timestamp.is_some() {
        return PodState::Failed("it is being deleted".to_owned());
    }
    let status = pod.status.as_ref();
    let main = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == spec::CONTAINER));
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    match phase {
        "Running" => PodState::Running,
        "Succeeded" | "Failed" => {
            let mut why = format!("phase {phase}");
            let pod_why = reason_message(
                status.and_then(|s| s.reason.as_deref()),
                status.and_then(|s| s.message.as_deref()),
            );
            if !pod_why.is_empty() {
                why.push_str(&format!(", {pod_why}"));
            }
            if let Some(t) = main
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.as_ref())
            {
                why.push_str(&format!(
                    ", container exited {} ({})",
                    t.exit_code,
                    reason_message(t.reason.as_deref(), t.message.as_deref())
                ));
            }
            PodState::Failed(why)
        }
        _ => {
            if let Some(w) = main
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
            {
                let why = reason_message(w.reason.as_deref(), w.message.as_deref());
                return if w
                    .reason
                    .as_deref()
                    .is_some_and(|r| FATAL_WAITING.contains(&r))
                {
                    PodState::Failed(why)
                } else {
                    PodState::Waiting(why)
                };
            }
            let unscheduled = status.and_then(|s| s.conditions.as_ref()).and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")
            });
            match unscheduled {
                Some(c) => {
                    PodState::Waiting(reason_message(c.reason.as_deref(), c.message.as_deref()))
                }
                None => PodState::Waiting(format!("phase {phase}")),
            }
        }
    }
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    /// Image, pod, policy, then polls until the pod runs; the whole start is bounded by the
    /// spec's `start_timeout` (else [`KubeOptions::start_timeout`]). A pod that does not get
    /// to run is deleted before the error returns.
    async fn start(&self, spec: &EnvironmentSpec) -> Result<Box<dyn Sandbox>> {
        let timeout = spec.start_timeout.unwrap_or(self.inner.start_timeout);
        let deadline = Instant::now() + timeout;
        let image = match tokio::time::timeout_at(deadline, self.image(spec)).await {
            Ok(image) => image?,
            Err(_) => return Err(SandboxError::StartTimeout(timeout)),
        };
        let name = spec::pod_name(&spec.name);
        // Registered before the create request: a Ctrl-C while it is in flight still finds it.
        if let Ok(mut live) = self.inner.live.lock() {
            live.insert(name.clone(), false);
        }
        match self
            .create_and_wait(&name, spec, &image, deadline, timeout)
            .await
        {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => {
                if let Err(d) = self.inner.delete(&name, !spec.network).await {
                    tracing::warn!("removing pod {name} after a failed start: {d}");
                }
                Err(e)
            }
        }
    }

    async fn destroy_all(&self) {
        let pods: Vec<(String, bool)> = self
            .inner
            .live
            .lock()
            .map(|l| l.iter().map(|(n, p)| (n.clone(), *p)).collect())
            .unwrap_or_default();
        let deletions = pods.iter().map(|(name, policy)| async move {
            if let Err(e) = self.inner.delete(name, *policy).await {
                tracing::warn!("removing pod {name}: {e}");
            }
        });
        futures_util::future::join_all(deletions).await;
    }

    /// Lists the namespace's pods by `key=value` (both made valid label parts the way
    /// `start` makes them) and deletes each, with its policy.
    async fn remove_labelled(&self, key: &str, value: &str) -> usize {
        let selector = format!("{}={}", spec::label_key(key), spec::label_value(value));
        let found = match self
            .inner
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(l) => l.items,
            Err(e) => {
                tracing::warn!("listing pods labelled {selector}: {e}");
                return 0;
            }
        };
        let names: HashSet<String> = found.into_iter().filter_map(|p| p.metadata.name).collect();
        let deletions = names.iter().map(|name| async move {
            match self.inner.delete(name, true).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("removing pod {name}: {e}");
                    false
                }
            }
        });
        futures_util::future::join_all(deletions)
            .await
            .into_iter()
            .filter(|ok| *ok)
            .count()
    }

    /// A built image's pushed name (content-hashed, so it names the build); a prebuilt
    /// `docker_image` only when pinned by digest (`@sha256:`), since a tag can move and the
    /// cluster's pull is not known here.
    async fn image_id(&self, spec: &EnvironmentSpec) -> Option<String> {
        let context = spec.build_context.as_deref();
        let dockerfile = context.filter(|c| c.join("Dockerfile").is_file());
        if let Some(image) = &spec.docker_image
            && (!spec.force_build || dockerfile.is_none())
        {
            return image.contains("@sha256:").then(|| image.clone());
        }
        let registry = self.inner.registry.as_ref()?;
        let tag = DockerBackend::image_tag(dockerfile?).ok()?;
        Some(format!("{registry}/{tag}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pod_states() {
        let running = pod(serde_json::json!({"status": {"phase": "Running"}}));
        assert_eq!(pod_state(&running), PodState::Running);
        let backoff = pod(
            serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [{
                "name": "main", "image": "nope:1", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"nope:1\""}}
            }]}}),
        );
        assert_eq!(
            pod_state(&backoff),
            PodState::Waiting("ImagePullBackOff: Back-off pulling image \"nope:1\"".to_owned())
        );
        let invalid = pod(
            serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "InvalidImageName"}}
            }]}}),
        );
        assert!(matches!(pod_state(&invalid), PodState::Failed(w) if w == "InvalidImageName"));
        let unschedulable = pod(
            serde_json::json!({"status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu."
            }]}}),
        );
        assert_eq!(
            pod_state(&unschedulable),
            PodState::Waiting(
                "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.".to_owned()
            )
        );
        let failed = pod(
            serde_json::json!({"status": {"phase": "Failed", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
            }]}}),
        );
        let PodState::Failed(w) = pod_state(&failed) else {
            panic!("{:?}", pod_state(&failed))
        };
        assert!(w.contains("exited 137") && w.contains("OOMKilled"), "{w}");
    }
}
