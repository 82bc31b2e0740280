//! The Docker backend, through the Engine API (bollard).
//!
//! Unlike Harbor, which drives every task through `docker compose` and waits out a 10 s stop
//! on each trial (its PID 1 ignores SIGTERM), plain-Dockerfile tasks here are one
//! `create` + `start` with an init process, execs over the API, and a forced remove.
//! Tasks with `environment/docker-compose.yaml` go through the compose CLI ([`compose`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::{
    Backend, EnvironmentSpec, ExecOutput, ExecRequest, Liveness, Result, Sandbox, SandboxError,
    push_capped, tarball,
};

pub mod compose;
pub mod host;

pub use host::{DockerHost, HostUrlError};

/// Label put on every container we start, so that leftovers can be found.
pub const LABEL: &str = "autoagent.sandbox";

/// How long [`Sandbox::liveness`] waits for the daemon before calling it unreachable.
const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The env var that marks the processes of one exec, so a timed-out exec can be killed
/// with all its children (the Engine API has no way to kill an exec).
const EXEC_MARK: &str = "AUTOAGENT_EXEC";

#[derive(Clone)]
pub struct DockerBackend {
    docker: Docker,
    inner: Arc<Inner>,
}

struct Inner {
    /// The daemon's address, as given (or `$DOCKER_HOST`, or the default socket).
    host: DockerHost,
    /// What `docker compose` gets as `DOCKER_HOST`; `None` leaves the CLI's own environment.
    cli_host: Option<String>,
    /// The daemon's CPU count (`docker info` NCPU), when it said.
    ncpu: Option<usize>,
    /// The `ssh` forward an `ssh://` host is reached through; it lives as long as the backend.
    _tunnel: Option<host::SshTunnel>,
    /// One lock per image tag: builds of the same image are serialized.
    build_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Containers started and not yet removed (for Ctrl-C).
    live: Mutex<HashSet<String>>,
    /// Whether the daemon has a `bridge` network (it has none when run with `--bridge=none`).
    has_bridge: bool,
    /// Compose projects started and not yet removed.
    live_projects: Mutex<HashSet<String>>,
    /// The "no bridge network" warning is given once per backend, not once per trial.
    warned_no_bridge: AtomicBool,
    /// Whether a spec's mounts become bind mounts: only when the daemon sees this machine's
    /// paths (a local socket or loopback port). Otherwise the mount targets are made as plain
    /// dirs in the container and the caller collects them ([`Sandbox::host_mounts`]).
    bind_mounts: AtomicBool,
}

impl Inner {
    fn unreachable(&self, e: &bollard::errors::Error) -> SandboxError {
        SandboxError::Unreachable {
            host: self.host.url(),
            message: e.to_string(),
        }
    }

    /// An Engine API error as ours: a failure at the connection says the daemon may be gone
    /// ([`SandboxError::Unreachable`], which a pool acts on); anything else is `other`'s.
    fn api_err(
        &self,
        e: bollard::errors::Error,
        other: impl FnOnce(String) -> SandboxError,
    ) -> SandboxError {
        if is_connection_error(&e) {
            self.unreachable(&e)
        } else {
            other(e.to_string())
        }
    }
}

/// Whether an Engine API error happened at the connection (refused, reset, cut short, timed
/// out) rather than as the daemon's answer.
fn is_connection_error(e: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        e,
        E::HyperLegacyError { .. }
            | E::HyperResponseError { .. }
            | E::IOError { .. }
            | E::RequestTimeoutError
            | E::SocketNotFoundError(_)
    )
}

/// How long one Engine API request may take to answer (bollard's default; streams such as an
/// exec's output are not limited by it).
const REQUEST_TIMEOUT_SECS: u64 = 120;

impl DockerBackend {
    /// Connects to the daemon the docker CLI would use (`$DOCKER_HOST`, else the default
    /// socket) and checks it answers.
    pub async fn connect() -> Result<Self> {
        let host = DockerHost::from_env().map_err(|e| SandboxError::Daemon(e.to_string()))?;
        Self::open(host, None).await
    }

    /// Connects to the daemon at `host` (`unix://`, `tcp://`, `ssh://`) and checks it answers.
    /// The compose CLI of this backend's compose tasks gets the same host as `DOCKER_HOST`.
    pub async fn connect_to(host: &DockerHost) -> Result<Self> {
        let cli_host = match host {
            DockerHost::Ssh { .. } => None,
            _ => Some(host.url()),
        };
        Self::open(host.clone(), cli_host).await
    }

    async fn open(host: DockerHost, cli_host: Option<String>) -> Result<Self> {
        let url = host.url();
        let unreachable = |e: bollard::errors::Error| SandboxError::Unreachable {
            host: url.clone(),
            message: e.to_string(),
        };
        let (docker, tunnel, cli_host) = match &host {
            DockerHost::Unix(path) => (
                Docker::connect_with_unix(
                    &path.to_string_lossy(),
                    REQUEST_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                )
                .map_err(unreachable)?,
                None,
                cli_host,
            ),
            DockerHost::Tcp { .. } => (
                Docker::connect_with_http(&url, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                    .map_err(unreachable)?,
                None,
                cli_host,
            ),
            DockerHost::Ssh {
                user,
                host: name,
                port,
            } => {
                let tunnel = host::SshTunnel::open(user.as_deref(), name, *port, &url).await?;
                let socket = tunnel.socket().to_string_lossy().into_owned();
                let docker = Docker::connect_with_unix(
                    &socket,
                    REQUEST_TIMEOUT_SECS,
                    bollard::API_DEFAULT_VERSION,
                )
                .map_err(unreachable)?;
                // The compose CLI goes through the same forward as the API client.
                (docker, Some(tunnel), Some(format!("unix://{socket}")))
            }
        };
        let docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        let has_bridge = docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok();
        let ncpu = docker
            .info()
            .await
            .ok()
            .and_then(|i| i.ncpu)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0);
        let local = host.is_local();
        Ok(Self {
            docker,
            inner: Arc::new(Inner {
                host,
                cli_host,
                ncpu,
                _tunnel: tunnel,
                build_locks: Mutex::new(HashMap::new()),
                live: Mutex::new(HashSet::new()),
                has_bridge,
                live_projects: Mutex::new(HashSet::new()),
                warned_no_bridge: AtomicBool::new(false),
                bind_mounts: AtomicBool::new(local),
            }),
        })
    }

    /// Whether a daemon answers, within a second (used to pick the default backend).
    pub async fn available() -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(3), Self::connect()).await,
            Ok(Ok(_))
        )
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Whether a spec's mounts are bind mounts (the default for a local daemon) or dirs made
    /// inside the container and collected by the caller (the default for a remote one, whose
    /// daemon does not see this machine's paths). For a remote host whose daemon does see the
    /// jobs dir at the same path (a shared file system), `true` saves the copies.
    pub fn set_bind_mounts(&self, on: bool) {
        self.inner.bind_mounts.store(on, Ordering::Relaxed);
    }

    /// The daemon's address.
    pub fn host(&self) -> &DockerHost {
        &self.inner.host
    }

    /// The daemon's CPU count (`docker info` NCPU), when it said.
    pub fn ncpu(&self) -> Option<usize> {
        self.inner.ncpu
    }

    /// Whether the daemon answers a ping within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.docker.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.inner.unreachable(&e)),
            Err(_) => Err(SandboxError::Unreachable {
                host: self.inner.host.url(),
                message: format!("no answer to a ping within {timeout:?}"),
            }),
        }
    }

    /// The image tag for a build context: a content hash of every file (path, mode, bytes).
    pub fn image_tag(context: &Path) -> Result<String> {
        let digest = crate::dir_digest(context)?;
        Ok(format!("autoagent-env:{}", &digest[..16]))
    }

    /// Makes sure the spec's image exists and returns its name: the prebuilt `docker_image`
    /// unless `force_build`, else the content-hashed build of `environment/`.
    pub async fn ensure_image(&self, spec: &EnvironmentSpec) -> Result<String> {
        let context = spec
            .build_context
            .as_deref()
            .filter(|c| c.join("Dockerfile").is_file());
        if let Some(image) = &spec.docker_image
            && (!spec.force_build || context.is_none())
        {
            self.ensure_prebuilt(image).await?;
            return Ok(image.clone());
        }
        let Some(context) = context else {
            return Err(SandboxError::Build {
                image: spec.name.clone(),
                message: "environment/Dockerfile not found and no [environment].docker_image set"
                    .to_owned(),
            });
        };
        let tag = Self::image_tag(context)?;
        let lock = {
            let mut locks = self
                .inner
                .build_locks
                .lock()
                .map_err(|_| SandboxError::Start("build lock poisoned".to_owned()))?;
            locks.entry(tag.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if !spec.force_build && self.docker.inspect_image(&tag).await.is_ok() {
            return Ok(tag);
        }
        self.build(context, &tag, &spec.name).await?;
        Ok(tag)
    }

    /// Tags the local image `local` as `remote` (`registry/repo:tag`) and pushes it, for
    /// clusters that pull from a registry (the Kubernetes backend). No credentials are sent:
    /// the registry must take pushes from this daemon as it is configured.
    pub async fn push(&self, local: &str, remote: &str) -> Result<()> {
        let push_err = |message: String| SandboxError::Build {
            image: remote.to_owned(),
            message,
        };
        let (repo, tag) = match remote.rsplit_once(':') {
            // A colon after the last slash separates the tag; one before it is a port.
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (remote, "latest"),
        };
        let opts = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.docker
            .tag_image(local, Some(opts))
            .await
            .map_err(|e| {
                self.inner
                    .api_err(e, |e| push_err(format!("tagging {local}: {e}")))
            })?;
        let opts = bollard::query_parameters::PushImageOptions {
            tag: Some(tag.to_owned()),
            platform: None,
        };
        let mut stream = self.docker.push_image(repo, Some(opts), None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        return Err(push_err(format!(
                            "pushing: {}",
                            detail.message.unwrap_or_default()
                        )));
                    }
                }
                Err(e) => {
                    return Err(self.inner.api_err(e, |e| push_err(format!("pushing: {e}"))));
                }
            }
        }
        Ok(())
    }

    async fn ensure_prebuilt(&self, image: &str) -> Result<()> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let opts = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                return Err(self.inner.api_err(e, |e| SandboxError::Build {
                    image: image.to_owned(),
                    message: format!("image is not present locally and pulling it failed: {e}"),
                }));
            }
        }
        Ok(())
    }

    async fn build(&self, context: &Path, tag: &str, task: &str) -> Result<()> {
        let tar = tarball::pack_context(context)?;
        let labels = HashMap::from([(LABEL.to_owned(), task.to_owned())]);
        // Builds that install packages must reach a registry; with no bridge network on the
        // daemon, only the host network can. Containers themselves never get it.
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .networkmode("host")
            .labels(&labels)
            .build();
        let mut stream = self
            .docker
            .build_image(opts, None, Some(bollard::body_full(tar.into())));
        let mut log: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream {
                        log.push(s);
                    }
                    if let Some(detail) = info.error_detail {
                        let msg = detail.message.unwrap_or_default();
                        return Err(SandboxError::Build {
                            image: tag.to_owned(),
                            message: build_failure(&log, &msg),
                        });
                    }
                }
                Err(e) => {
                    return Err(self.inner.api_err(e, |e| SandboxError::Build {
                        image: tag.to_owned(),
                        message: build_failure(&log, &e),
                    }));
                }
            }
        }
        if self.docker.inspect_image(tag).await.is_err() {
            return Err(SandboxError::Build {
                image: tag.to_owned(),
                message: build_failure(
                    &log,
                    "the daemon reported no error but the image is missing",
                ),
            });
        }
        Ok(())
    }

    async fn create_and_start(
        &self,
        spec: &EnvironmentSpec,
        created: &Mutex<Option<String>>,
    ) -> Result<DockerSandbox> {
        let image = self.ensure_image(spec).await?;
        let name = format!(
            "autoagent-{}-{}",
            sanitize(&spec.name),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
        labels.insert(LABEL.to_owned(), spec.name.clone());
        let network_mode = if spec.network && self.inner.has_bridge {
            None
        } else {
            if spec.network && !self.inner.warned_no_bridge.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "the Docker daemon at {} has no bridge network: tasks that allow network access run without it",
                    self.inner.host
                );
            }
            Some("none".to_owned())
        };
        let (bind_mounts, binds) = self.inner.binds(spec);
        let host_config = HostConfig {
            init: Some(true),
            binds: Some(binds),
            nano_cpus: spec.cpus.map(|c| (c * 1e9) as i64),
            memory: spec.memory_mb.map(|m| (m * 1024 * 1024) as i64),
            network_mode,
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(vec!["sh".into(), "-c".into(), "sleep infinity".into()]),
            working_dir: spec.workdir.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default().name(&name).build();
        let resp = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| {
                self.inner.api_err(e, |e| {
                    SandboxError::Start(format!("creating a container from {image}: {e}"))
                })
            })?;
        let id = resp.id;
        if let Ok(mut c) = created.lock() {
            *c = Some(id.clone());
        }
        if let Ok(mut live) = self.inner.live.lock() {
            live.insert(id.clone());
        }
        self.docker
            .start_container(
                &id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| {
                self.inner.api_err(e, |e| {
                    SandboxError::Start(format!("starting container {name}: {e}"))
                })
            })?;
        let sandbox = DockerSandbox {
            docker: self.docker.clone(),
            backend: self.inner.clone(),
            container_id: id,
            name,
            workdir: spec.workdir.clone(),
            env: spec.env.clone(),
            destroyed: AtomicBool::new(false),
            compose_project: None,
            host_mounts: bind_mounts,
        };
        if !bind_mounts {
            sandbox.make_mount_dirs(spec).await?;
        }
        Ok(sandbox)
    }

    async fn remove(&self, id: &str) {
        remove_container(&self.docker, &self.inner, id).await;
    }
}

fn build_failure(log: &[String], error: &str) -> String {
    let tail: String = log
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(15)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n{tail}", error.trim())
}

/// Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]`.
pub(crate) fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches(['-', '.', '_']).to_owned();
    let s: String = s.chars().take(40).collect();
    if s.is_empty() { "task".to_owned() } else { s }
}

async fn remove_container(docker: &Docker, inner: &Inner, id: &str) {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    if let Err(e) = docker.remove_container(id, Some(opts)).await {
        let gone = matches!(
            &e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        );
        if !gone {
            tracing::warn!("removing container {id}: {e}");
        }
    }
    if let Ok(mut live) = inner.live.lock() {
        live.remove(id);
    }
}

#[async_trait]
impl Backend for DockerBackend {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, spec: &EnvironmentSpec) -> Result<Box<dyn Sandbox>> {
        if spec
            .build_context
            .as_deref()
            .is_some_and(|c| compose::compose_file(c).is_some())
        {
            return compose::start(self, spec)
                .await
                .map(|s| Box::new(s) as Box<dyn Sandbox>);
        }
        let created = Mutex::new(None);
        let started = match spec.start_timeout {
            Some(t) => match tokio::time::timeout(t, self.create_and_start(spec, &created)).await {
                Ok(r) => r,
                Err(_) => Err(SandboxError::StartTimeout(t)),
            },
            None => self.create_and_start(spec, &created).await,
        };
        match started {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => {
                let id = created.lock().ok().and_then(|c| c.clone());
                if let Some(id) = id {
                    self.remove(&id).await;
                }
                Err(e)
            }
        }
    }

    /// A prebuilt `docker_image` (used unless `force_build` with a Dockerfile): its local image
    /// id, `None` while it is not pulled yet. A Dockerfile build: the content-hashed tag
    /// [`DockerBackend::image_tag`], which names the build without running it (a rebuild of
    /// the same context keeps the tag). A compose task: `None`, its services are not one image.
    async fn image_id(&self, spec: &EnvironmentSpec) -> Option<String> {
        let context = spec.build_context.as_deref();
        if context.is_some_and(|c| compose::compose_file(c).is_some()) {
            return None;
        }
        let dockerfile = context.filter(|c| c.join("Dockerfile").is_file());
        if let Some(image) = &spec.docker_image
            && (!spec.force_build || dockerfile.is_none())
        {
            return self.docker.inspect_image(image).await.ok()?.id;
        }
        Self::image_tag(dockerfile?).ok()
    }

    async fn remove_labelled(&self, key: &str, value: &str) -> usize {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{key}={value}")])]);
        let opts = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(found) = self.docker.list_containers(Some(opts)).await else {
            return 0;
        };
        let n = found.len();
        let mut projects = HashSet::new();
        for c in found {
            // A compose task's `main` carries the label: its whole project (sidecars,
            // networks, volumes) goes down with it.
            match c
                .labels
                .as_ref()
                .and_then(|l| l.get("com.docker.compose.project"))
            {
                Some(p) => {
                    projects.insert(p.clone());
                }
                None => {
                    if let Some(id) = &c.id {
                        self.remove(id).await;
                    }
                }
            }
        }
        for p in projects {
            compose::down(self.inner.cli_host.as_deref(), &p).await;
        }
        n
    }

    async fn destroy_all(&self) {
        let ids: Vec<String> = self
            .inner
            .live
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        let removals = ids.iter().map(|id| self.remove(id));
        futures_util::future::join_all(removals).await;
        let projects: Vec<String> = self
            .inner
            .live_projects
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        for p in projects {
            compose::down(self.inner.cli_host.as_deref(), &p).await;
        }
    }
}

pub struct DockerSandbox {
    docker: Docker,
    backend: Arc<Inner>,
    container_id: String,
    name: String,
    workdir: Option<String>,
    env: BTreeMap<String, String>,
    destroyed: AtomicBool,
    /// Set for compose tasks: the project is brought down instead of one container removed.
    compose_project: Option<String>,
    /// The spec's mounts are bind mounts ([`DockerBackend::set_bind_mounts`]).
    host_mounts: bool,
}

impl Inner {
    /// Whether this daemon gets bind mounts, and the spec's mounts as `host:target:rw` binds
    /// (none without them: the targets are then made in the container).
    fn binds(&self, spec: &EnvironmentSpec) -> (bool, Vec<String>) {
        if !self.bind_mounts.load(Ordering::Relaxed) {
            return (false, Vec::new());
        }
        let binds = spec
            .mounts
            .iter()
            .map(|m| format!("{}:{}:rw", m.host.display(), m.target))
            .collect();
        (true, binds)
    }
}

impl DockerSandbox {
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// Without bind mounts, the spec's mount targets are made as world-writable dirs in the
    /// container (the caller copies them out).
    pub(crate) async fn make_mount_dirs(&self, spec: &EnvironmentSpec) -> Result<()> {
        if spec.mounts.is_empty() {
            return Ok(());
        }
        let dirs: Vec<String> = spec
            .mounts
            .iter()
            .map(|m| crate::shell_quote(&m.target))
            .collect();
        let out = self
            .exec(
                ExecRequest::new(format!("mkdir -p {0} && chmod 777 {0}", dirs.join(" ")))
                    .user(Some("root".to_owned())),
            )
            .await?;
        if out.exit_code != Some(0) {
            return Err(SandboxError::Start(format!(
                "making the log dirs in the container: {}",
                out.stderr.trim()
            )));
        }
        Ok(())
    }

    /// Archive paths are absolute; a relative one is taken from the workdir.
    fn absolute(&self, path: &str) -> Result<String> {
        crate::absolute_path(self.workdir.as_deref(), path)
    }

    async fn put_archive(&self, dir: &str, tar: Vec<u8>) -> Result<()> {
        let opts = UploadToContainerOptionsBuilder::default().path(dir).build();
        self.docker
            .upload_to_container(
                &self.container_id,
                Some(opts),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| {
                self.backend.api_err(e, |e| {
                    SandboxError::Transfer(format!("upload to {dir}: {e}"))
                })
            })
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn id(&self) -> &str {
        &self.name
    }

    fn workdir(&self) -> Option<&str> {
        self.workdir.as_deref()
    }

    fn host(&self) -> Option<String> {
        Some(self.backend.host.url())
    }

    fn host_mounts(&self) -> bool {
        self.host_mounts
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        run_exec(
            &self.docker,
            &self.backend,
            &self.container_id,
            &self.env,
            req,
        )
        .await
    }

    async fn upload(&self, host: &Path, dest: &str) -> Result<()> {
        let dest = self.absolute(dest)?;
        let tar = tarball::pack_at(host, &dest)?;
        self.put_archive("/", tar).await
    }

    async fn write_file(&self, dest: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let dest = self.absolute(dest)?;
        let tar = tarball::pack_bytes(dest.trim_start_matches('/'), bytes, mode)?;
        self.put_archive("/", tar).await
    }

    async fn download(&self, src: &str, host_dest: &Path) -> Result<()> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(src)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&self.container_id, Some(opts));
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                self.backend.api_err(e, |e| {
                    SandboxError::Transfer(format!("download {src}: {e}"))
                })
            })?;
            buf.extend_from_slice(&chunk);
        }
        let dest = host_dest.to_path_buf();
        tokio::task::spawn_blocking(move || tarball::unpack_download(&buf, &dest))
            .await
            .map_err(|e| SandboxError::Transfer(format!("download {src}: {e}")))?
    }

    async fn destroy(&self) -> Result<()> {
        if self.destroyed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        match &self.compose_project {
            Some(project) => {
                compose::down(self.backend.cli_host.as_deref(), project).await;
                if let Ok(mut live) = self.backend.live_projects.lock() {
                    live.remove(project);
                }
            }
            None => remove_container(&self.docker, &self.backend, &self.container_id).await,
        }
        Ok(())
    }

    /// Inspects the container (a compose task's `main`); when that fails for another reason
    /// than "no such container", pings the daemon to tell a daemon that is down from one that
    /// refuses.
    async fn liveness(&self) -> Liveness {
        let inspect = tokio::time::timeout(
            LIVENESS_TIMEOUT,
            self.docker.inspect_container(
                &self.container_id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            ),
        )
        .await;
        match inspect {
            Err(_) => Liveness::Unreachable(format!(
                "inspecting the container timed out after {LIVENESS_TIMEOUT:?}"
            )),
            Ok(Ok(c)) => container_liveness(c.state.as_ref()),
            Ok(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            })) => Liveness::Gone,
            Ok(Err(e)) => match tokio::time::timeout(LIVENESS_TIMEOUT, self.docker.ping()).await {
                Ok(Ok(_)) => {
                    Liveness::Unreachable(format!("the daemon refuses to inspect it: {e}"))
                }
                Ok(Err(p)) => Liveness::Unreachable(format!("ping: {p}")),
                Err(_) => {
                    Liveness::Unreachable(format!("ping timed out after {LIVENESS_TIMEOUT:?}"))
                }
            },
        }
    }
}

/// A container's state as a [`Liveness`]: a container being removed, or dead (a removal that
/// failed), is gone; one that ended is stopped, with the OOM kill noted.
fn container_liveness(state: Option<&bollard::models::ContainerState>) -> Liveness {
    use bollard::models::ContainerStateStatusEnum as S;
    let Some(state) = state else {
        return Liveness::Unknown;
    };
    match state.status {
        Some(S::REMOVING | S::DEAD) => Liveness::Gone,
        _ if state.running == Some(true) => Liveness::Running,
        _ => Liveness::Stopped {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed == Some(true),
        },
    }
}

/// Runs `bash -c COMMAND` in a container over the Engine API.
async fn run_exec(
    docker: &Docker,
    inner: &Inner,
    container: &str,
    base_env: &BTreeMap<String, String>,
    req: ExecRequest,
) -> Result<ExecOutput> {
    let mark = uuid::Uuid::new_v4().simple().to_string();
    let mut env: Vec<String> = base_env
        .iter()
        .chain(req.env.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.push(format!("{EXEC_MARK}={mark}"));
    let opts = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec![
            "bash".to_owned(),
            "-c".to_owned(),
            req.command.clone(),
        ]),
        env: Some(env),
        user: req.user.clone(),
        working_dir: req.cwd.clone(),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, opts)
        .await
        .map_err(|e| inner.api_err(e, SandboxError::Exec))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| inner.api_err(e, SandboxError::Exec))?;
    let StartExecResults::Attached { mut output, .. } = started else {
        return Err(SandboxError::Exec("exec did not attach".to_owned()));
    };
    // If the caller stops waiting (its own timeout, Ctrl-C), the command must not live on.
    let mut guard = KillOnDrop {
        docker: Some(docker.clone()),
        container: container.to_owned(),
        mark: mark.clone(),
    };
    let limit = req.output_limit.unwrap_or(crate::DEFAULT_OUTPUT_LIMIT);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut truncated = false;
    let collect = async {
        while let Some(frame) = output.next().await {
            match frame {
                Ok(bollard::container::LogOutput::StdOut { message })
                | Ok(bollard::container::LogOutput::Console { message }) => {
                    push_capped(&mut stdout, &message, limit, &mut truncated)
                }
                Ok(bollard::container::LogOutput::StdErr { message }) => {
                    push_capped(&mut stderr, &message, limit, &mut truncated)
                }
                Ok(bollard::container::LogOutput::StdIn { .. }) => {}
                Err(e) => return Err(inner.api_err(e, SandboxError::Exec)),
            }
        }
        Ok(())
    };
    let timed_out = match req.timeout {
        Some(t) => match tokio::time::timeout(t, collect).await {
            Ok(r) => {
                r?;
                false
            }
            Err(_) => true,
        },
        None => {
            collect.await?;
            false
        }
    };
    guard.docker = None;
    if timed_out {
        kill_marked(docker, container, &mark).await;
        return Ok(ExecOutput {
            exit_code: None,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            timed_out: true,
            truncated,
        });
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| inner.api_err(e, SandboxError::Exec))?;
    Ok(ExecOutput {
        exit_code: inspect.exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        timed_out: false,
        truncated,
    })
}

/// Kills an exec's processes when its future is dropped before the command ended.
struct KillOnDrop {
    docker: Option<Docker>,
    container: String,
    mark: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let (Some(docker), Ok(handle)) =
            (self.docker.take(), tokio::runtime::Handle::try_current())
        {
            let container = std::mem::take(&mut self.container);
            let mark = std::mem::take(&mut self.mark);
            handle.spawn(async move { kill_marked(&docker, &container, &mark).await });
        }
    }
}

/// Kills every process of a timed-out exec: they all carry its mark in their environment.
async fn kill_marked(docker: &Docker, container: &str, mark: &str) {
    let script = format!(
        "for p in /proc/[0-9]*; do if grep -qz '^{EXEC_MARK}={mark}$' \"$p/environ\" 2>/dev/null; then kill -9 \"${{p#/proc/}}\" 2>/dev/null; fi; done; true"
    );
    let opts = CreateExecOptions {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
        user: Some("root".to_owned()),
        ..Default::default()
    };
    let Ok(created) = docker.create_exec(container, opts).await else {
        return;
    };
    if let Ok(StartExecResults::Attached { mut output, .. }) =
        docker.start_exec(&created.id, None).await
    {
        let drain = async { while output.next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(sanitize("Org/My Task"), "org-my-task");
        assert_eq!(sanitize("__x"), "x");
        assert_eq!(sanitize("///"), "task");
    }

    #[test]
    fn image_tag_changes_with_content() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("Dockerfile"), "FROM x\n").unwrap();
        let a = DockerBackend::image_tag(d.path()).unwrap();
        assert_eq!(a, DockerBackend::image_tag(d.path()).unwrap());
        std::fs::write(d.path().join("Dockerfile"), "FROM y\n").unwrap();
        assert_ne!(a, DockerBackend::image_tag(d.path()).unwrap());
        assert!(a.starts_with("autoagent-env:"));
    }
}
