//! A pool of Docker hosts behind one [`Backend`]: each new sandbox goes to the host with the
//! most free slots, and a host that stops answering is drained.
//!
//! * Slots: a host's configured count, else its CPU count (`docker info` NCPU). They weigh the
//!   placement; the caller's concurrency (`-n`) stays the limit on trials at once. While some
//!   host has a free slot the one with the most gets the sandbox; once all are full, the one
//!   least loaded for its slots does.
//! * Images: each host builds (or pulls) a task's image the first time it needs it, under the
//!   same content-hashed tag as a single host ([`DockerBackend::image_tag`]).
//! * Draining: a connection error on a start, exec or copy, confirmed by a failed ping, or
//!   [`PoolOptions::failed_pings`] failed health pings in a row (one every
//!   [`PoolOptions::ping_interval`]), drain a host. New sandboxes go elsewhere (a start that
//!   failed that way moves to another host at once, as nothing ran yet); the sandboxes still on
//!   it fail every call with [`SandboxError::HostLost`] and report [`Sandbox::lost`], so the
//!   caller retries their trials on another host and never scores them. A drained host is
//!   pinged on (less and less often while it stays away); once it answers again it rejoins, after the containers this pool left on it are
//!   removed (they carry [`POOL_LABEL`]).
//! * `destroy_all` and `remove_labelled` act on every host that answers.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::docker::{DockerBackend, DockerHost};
use crate::{Backend, EnvironmentSpec, ExecOutput, ExecRequest, Result, Sandbox, SandboxError};

/// Label put on every container a pool starts (its value: the pool's id), so that a host that
/// rejoins can be cleared of the containers of the trials that were lost with it.
pub const POOL_LABEL: &str = "autoagent.pool";

/// One host of a pool, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    pub host: DockerHost,
    /// Trials the host takes before the others are preferred; `None`: its CPU count.
    pub slots: Option<usize>,
}

/// How a pool watches its hosts.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Time between health pings of each host.
    pub ping_interval: Duration,
    /// A ping that takes longer failed.
    pub ping_timeout: Duration,
    /// Failed health pings in a row that drain a host.
    pub failed_pings: u32,
    /// The longest a host may take to connect (an `ssh://` tunnel included).
    pub connect_timeout: Duration,
    /// The longest removing containers on a drained host may take before it is given up.
    pub cleanup_timeout: Duration,
    /// A drained host that does not answer is asked again after a wait that doubles from
    /// `ping_interval` up to this.
    pub max_rejoin_wait: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(2),
            ping_timeout: Duration::from_secs(5),
            failed_pings: 2,
            connect_timeout: Duration::from_secs(30),
            cleanup_timeout: Duration::from_secs(10),
            max_rejoin_wait: Duration::from_secs(60),
        }
    }
}

/// A host's state, as [`PoolBackend::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub host: DockerHost,
    pub slots: usize,
    /// Sandboxes on it now.
    pub running: usize,
    /// Why it is drained, when it is.
    pub drained: Option<String>,
}

#[derive(Clone)]
pub struct PoolBackend {
    pool: Arc<Pool>,
}

struct Pool {
    /// The value of [`POOL_LABEL`] on this pool's containers.
    id: String,
    members: Vec<Arc<Member>>,
    options: PoolOptions,
    /// Held while a host is chosen and its slot taken, so two starts never see the same count.
    pick: Mutex<()>,
}

struct Member {
    host: DockerHost,
    configured_slots: Option<usize>,
    /// Sandboxes placed on the host and not yet released (starts in progress included).
    running: AtomicUsize,
    state: Mutex<MemberState>,
}

struct MemberState {
    /// `None` until the host first answered.
    backend: Option<DockerBackend>,
    slots: usize,
    /// `Some(why)` while drained.
    drained: Option<String>,
    /// Counts the host's lives: a sandbox started in one life is lost once it ends.
    generation: u64,
    /// Cancelled when the current life ends (the host is drained).
    lost: CancellationToken,
    failed_pings: u32,
}

/// What a sandbox on a member holds of the life it was started in.
#[derive(Clone)]
struct Lease {
    backend: DockerBackend,
    generation: u64,
    lost: CancellationToken,
}

impl Member {
    fn url(&self) -> String {
        self.host.url()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemberState> {
        // A panic while the lock was held leaves plain counters behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lease(&self) -> Option<(Lease, usize)> {
        let st = self.state();
        if st.drained.is_some() {
            return None;
        }
        let backend = st.backend.clone()?;
        Some((
            Lease {
                backend,
                generation: st.generation,
                lost: st.lost.clone(),
            },
            st.slots,
        ))
    }

    /// `Some(why)` when the life `generation` is over.
    fn lost_since(&self, generation: u64) -> Option<String> {
        let st = self.state();
        match &st.drained {
            Some(why) if st.generation == generation => Some(why.clone()),
            _ if st.generation != generation => {
                Some("the host was drained while the sandbox ran".to_owned())
            }
            _ => None,
        }
    }

    fn lost_error(&self, generation: u64) -> SandboxError {
        SandboxError::HostLost {
            host: self.url(),
            reason: self
                .lost_since(generation)
                .unwrap_or_else(|| "it stopped answering".to_owned()),
        }
    }

    /// Ends the life `generation`: no new sandboxes, and every sandbox of it hears the loss.
    fn drain(&self, generation: u64, reason: String) {
        let mut st = self.state();
        if st.drained.is_some() || st.generation != generation {
            return;
        }
        tracing::warn!(
            "Docker host {} drained: {reason}; its trials go to the other hosts",
            self.url()
        );
        st.lost.cancel();
        st.drained = Some(reason);
    }

    /// After a connection error in the life `generation`: a ping decides whether the host is
    /// gone (drained) or the error was the request's own.
    async fn confirm(&self, generation: u64, error: &SandboxError, options: &PoolOptions) {
        let backend = {
            let st = self.state();
            if st.generation != generation || st.drained.is_some() {
                return;
            }
            st.backend.clone()
        };
        let Some(backend) = backend else { return };
        if let Err(ping) = backend.ping(options.ping_timeout).await {
            self.drain(generation, format!("{error}; then {ping}"));
        }
    }

    /// One health check: a ping of a host in the pool, or an attempt to bring a drained (or
    /// never reached) host back. False when that attempt failed.
    async fn check(&self, pool: &Pool) -> bool {
        let (backend, generation, drained) = {
            let st = self.state();
            (st.backend.clone(), st.generation, st.drained.is_some())
        };
        match backend {
            Some(backend) if !drained => {
                let failed = backend.ping(pool.options.ping_timeout).await.err();
                let mut st = self.state();
                if st.generation != generation {
                    return true;
                }
                match failed {
                    None => st.failed_pings = 0,
                    Some(e) => {
                        st.failed_pings += 1;
                        if st.failed_pings >= pool.options.failed_pings.max(1) {
                            let reason =
                                format!("{} health pings failed; last: {e}", st.failed_pings);
                            drop(st);
                            self.drain(generation, reason);
                        }
                    }
                }
                true
            }
            _ => self.rejoin(pool).await,
        }
    }

    /// Connects afresh to a drained host; when it answers, removes what this pool left there
    /// (the containers of the trials lost with it) and takes it back. False: it did not answer.
    async fn rejoin(&self, pool: &Pool) -> bool {
        let connected = tokio::time::timeout(
            pool.options.connect_timeout,
            DockerBackend::connect_to(&self.host),
        )
        .await;
        let Ok(Ok(backend)) = connected else {
            return false;
        };
        let removed = tokio::time::timeout(
            pool.options.cleanup_timeout * 6,
            backend.remove_labelled(POOL_LABEL, &pool.id),
        )
        .await
        .unwrap_or(0);
        let mut st = self.state();
        let was_up = st.backend.is_some();
        st.slots = self.configured_slots.or(backend.ncpu()).unwrap_or(1).max(1);
        st.backend = Some(backend);
        st.generation += 1;
        st.lost = CancellationToken::new();
        st.drained = None;
        st.failed_pings = 0;
        if was_up {
            tracing::warn!(
                "Docker host {} answers again: back in the pool ({removed} leftover container(s) removed)",
                self.url()
            );
        } else {
            tracing::warn!("Docker host {} answers now: joined the pool", self.url());
        }
        true
    }
}

/// A taken slot, given back once (on destroy, or when the sandbox is dropped).
struct Slot {
    member: Arc<Member>,
    released: AtomicBool,
}

impl Slot {
    fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            self.member.running.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

impl Pool {
    /// The host for a new sandbox, with its slot taken.
    fn pick(&self) -> Result<(Slot, Lease)> {
        let _guard = self
            .pick
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut up: Vec<(&Arc<Member>, Lease)> = Vec::new();
        let mut loads = Vec::new();
        for m in &self.members {
            if let Some((lease, slots)) = m.lease() {
                loads.push((m.running.load(Ordering::SeqCst), slots));
                up.push((m, lease));
            }
        }
        let Some(i) = choose(&loads) else {
            return Err(SandboxError::AllHostsDrained(self.summary()));
        };
        let (member, lease) = up.swap_remove(i);
        member.running.fetch_add(1, Ordering::SeqCst);
        Ok((
            Slot {
                member: member.clone(),
                released: AtomicBool::new(false),
            },
            lease,
        ))
    }

    /// Every host and why it is out, for the all-drained error.
    fn summary(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let why = m
                    .state()
                    .drained
                    .clone()
                    .unwrap_or_else(|| "not connected".to_owned());
                format!("{} ({why})", m.url())
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Whether some host answered (is in the pool).
    fn any_up(&self) -> bool {
        self.members.iter().any(|m| m.lease().is_some())
    }
}

/// Which of the hosts, given as (running, slots), takes the next sandbox: the most free slots
/// while any host has one, else the lowest load for its slots; ties go to the earlier host.
fn choose(loads: &[(usize, usize)]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &(running, slots)) in loads.iter().enumerate() {
        let better = match best.map(|b| loads[b]) {
            None => true,
            Some((b_running, b_slots)) => {
                let free = slots as isize - running as isize;
                let b_free = b_slots as isize - b_running as isize;
                if free > 0 || b_free > 0 {
                    free > b_free
                } else {
                    running * b_slots < b_running * slots
                }
            }
        };
        if better {
            best = Some(i);
        }
    }
    best
}

/// Checks one host every `ping_interval` until the pool is dropped; a drained host that does
/// not answer is asked less and less often (up to `max_rejoin_wait`). One task per host, so
/// that a host slow to answer never delays the checks of the others.
async fn watch(pool: Weak<Pool>, index: usize) {
    let Some(mut wait) = pool.upgrade().map(|p| p.options.ping_interval) else {
        return;
    };
    loop {
        tokio::time::sleep(wait).await;
        let Some(p) = pool.upgrade() else { return };
        let Some(member) = p.members.get(index).cloned() else {
            return;
        };
        let (interval, longest) = (p.options.ping_interval, p.options.max_rejoin_wait);
        wait = if member.check(&p).await {
            interval
        } else {
            (wait * 2).clamp(interval, longest.max(interval))
        };
    }
}

impl PoolBackend {
    /// Connects to every host (at once). A host that does not answer starts drained and joins
    /// when it does; with none answering, this fails naming each host's error. Must be called
    /// within a Tokio runtime: a task pings the hosts while the pool lives.
    pub async fn connect(hosts: Vec<HostSpec>, options: PoolOptions) -> Result<Self> {
        if hosts.is_empty() {
            return Err(SandboxError::Unsupported(
                "a pool of Docker hosts needs at least one host".to_owned(),
            ));
        }
        let mut seen = HashSet::new();
        for h in &hosts {
            if !seen.insert(h.host.clone()) {
                return Err(SandboxError::Unsupported(format!(
                    "Docker host {} is listed twice",
                    h.host
                )));
            }
        }
        let connected = futures_util::future::join_all(hosts.iter().map(|h| {
            tokio::time::timeout(options.connect_timeout, DockerBackend::connect_to(&h.host))
        }))
        .await;
        let members: Vec<Arc<Member>> = hosts
            .into_iter()
            .zip(connected)
            .map(|(spec, c)| {
                let (backend, drained) = match c {
                    Ok(Ok(b)) => (Some(b), None),
                    Ok(Err(e)) => (None, Some(format!("did not answer at start: {e}"))),
                    Err(_) => (
                        None,
                        Some(format!(
                            "did not answer at start within {:?}",
                            options.connect_timeout
                        )),
                    ),
                };
                let slots = spec
                    .slots
                    .or(backend.as_ref().and_then(DockerBackend::ncpu))
                    .unwrap_or(1)
                    .max(1);
                if let Some(why) = &drained {
                    tracing::warn!("Docker host {}: {why}; it joins once it answers", spec.host);
                }
                Arc::new(Member {
                    host: spec.host,
                    configured_slots: spec.slots,
                    running: AtomicUsize::new(0),
                    state: Mutex::new(MemberState {
                        backend,
                        slots,
                        drained,
                        generation: 0,
                        lost: CancellationToken::new(),
                        failed_pings: 0,
                    }),
                })
            })
            .collect();
        let pool = Arc::new(Pool {
            id: uuid::Uuid::new_v4().simple().to_string(),
            members,
            options,
            pick: Mutex::new(()),
        });
        if !pool.any_up() {
            return Err(SandboxError::AllHostsDrained(pool.summary()));
        }
        for index in 0..pool.members.len() {
            tokio::spawn(watch(Arc::downgrade(&pool), index));
        }
        Ok(Self { pool })
    }

    /// Every host: its slots, sandboxes on it, and whether it is drained.
    pub fn status(&self) -> Vec<HostStatus> {
        self.pool
            .members
            .iter()
            .map(|m| {
                let st = m.state();
                HostStatus {
                    host: m.host.clone(),
                    slots: st.slots,
                    running: m.running.load(Ordering::SeqCst),
                    drained: st.drained.clone(),
                }
            })
            .collect()
    }
}

#[async_trait]
impl Backend for PoolBackend {
    /// `docker`: a pool runs the same images and containers as one host, so jobs and cache
    /// keys do not change with the number of hosts.
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, spec: &EnvironmentSpec) -> Result<Box<dyn Sandbox>> {
        let pool = &self.pool;
        let mut spec = spec.clone();
        spec.labels.insert(POOL_LABEL.to_owned(), pool.id.clone());
        // Each retry follows a drain, so this ends; the bound only guards against a host that
        // rejoins and fails again faster than the loop turns.
        let mut last = None;
        for _ in 0..pool.members.len() * 2 {
            let (slot, lease) = pool.pick()?;
            let member = slot.member.clone();
            let started = tokio::select! {
                r = lease.backend.start(&spec) => r,
                () = lease.lost.cancelled() => Err(member.lost_error(lease.generation)),
            };
            match started {
                Ok(sandbox) => {
                    return Ok(Box::new(PoolSandbox {
                        sandbox,
                        lease,
                        slot,
                        options: pool.options.clone(),
                    }));
                }
                Err(e @ SandboxError::Unreachable { .. }) => {
                    member.confirm(lease.generation, &e, &pool.options).await;
                    if member.lost_since(lease.generation).is_none() {
                        return Err(e);
                    }
                    tracing::warn!(
                        "{}: starting on {} failed ({e}); trying another host",
                        spec.name,
                        member.url()
                    );
                    last = Some(e);
                }
                Err(e @ SandboxError::HostLost { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| SandboxError::AllHostsDrained(pool.summary())))
    }

    /// Every host at once. A host in the pool is given until it is drained (a hung daemon
    /// would hold the caller for the whole request timeout); a drained one `cleanup_timeout`.
    async fn destroy_all(&self) {
        let timeout = self.pool.options.cleanup_timeout;
        let all = self.pool.members.iter().map(|m| async move {
            if let Some((lease, _)) = m.lease() {
                tokio::select! {
                    () = lease.backend.destroy_all() => {}
                    () = lease.lost.cancelled() => {}
                }
            } else {
                let backend = m.state().backend.clone();
                if let Some(b) = backend {
                    let _ = tokio::time::timeout(timeout, b.destroy_all()).await;
                }
            }
        });
        futures_util::future::join_all(all).await;
    }

    async fn remove_labelled(&self, key: &str, value: &str) -> usize {
        let mut removed = 0;
        for m in &self.pool.members {
            let swept = match m.lease() {
                Some((lease, _)) => tokio::select! {
                    n = lease.backend.remove_labelled(key, value) => Some(n),
                    () = lease.lost.cancelled() => None,
                },
                None => None,
            };
            match swept {
                Some(n) => removed += n,
                None => tracing::warn!(
                    "Docker host {} is drained: containers labelled {key}={value} on it are not removed",
                    m.url()
                ),
            }
        }
        removed
    }

    /// The first host in the pool answers: a Dockerfile's tag is the same on every host, and a
    /// prebuilt image's id is the same wherever the same image is.
    async fn image_id(&self, spec: &EnvironmentSpec) -> Option<String> {
        let (lease, _) = self.pool.members.iter().find_map(|m| m.lease())?;
        tokio::select! {
            id = lease.backend.image_id(spec) => id,
            () = lease.lost.cancelled() => None,
        }
    }
}

/// A sandbox on one host of a pool: every call fails with [`SandboxError::HostLost`] once the
/// host is drained, including a call in flight when it is.
struct PoolSandbox {
    sandbox: Box<dyn Sandbox>,
    lease: Lease,
    slot: Slot,
    options: PoolOptions,
}

impl PoolSandbox {
    fn member(&self) -> &Member {
        &self.slot.member
    }

    async fn guarded<T>(&self, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let generation = self.lease.generation;
        if self.member().lost_since(generation).is_some() {
            return Err(self.member().lost_error(generation));
        }
        let r = tokio::select! {
            biased;
            () = self.lease.lost.cancelled() => return Err(self.member().lost_error(generation)),
            r = op => r,
        };
        if let Err(e @ SandboxError::Unreachable { .. }) = &r {
            self.member().confirm(generation, e, &self.options).await;
            if self.member().lost_since(generation).is_some() {
                return Err(self.member().lost_error(generation));
            }
        }
        r
    }
}

#[async_trait]
impl Sandbox for PoolSandbox {
    fn id(&self) -> &str {
        self.sandbox.id()
    }

    fn workdir(&self) -> Option<&str> {
        self.sandbox.workdir()
    }

    fn notes(&self) -> Vec<String> {
        self.sandbox.notes()
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        self.guarded(self.sandbox.exec(req)).await
    }

    async fn upload(&self, host: &Path, dest: &str) -> Result<()> {
        self.guarded(self.sandbox.upload(host, dest)).await
    }

    async fn write_file(&self, dest: &str, bytes: &[u8], mode: u32) -> Result<()> {
        self.guarded(self.sandbox.write_file(dest, bytes, mode))
            .await
    }

    async fn download(&self, src: &str, host_dest: &Path) -> Result<()> {
        self.guarded(self.sandbox.download(src, host_dest)).await
    }

    async fn destroy(&self) -> Result<()> {
        // A host that stopped answering would hold the caller for the whole request timeout:
        // a drained host gets `cleanup_timeout`, and a removal in flight ends with the drain.
        // What is left there is removed when the host rejoins.
        let r = if self.lost().is_some() {
            match tokio::time::timeout(self.options.cleanup_timeout, self.sandbox.destroy()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        } else {
            tokio::select! {
                r = self.sandbox.destroy() => r,
                () = self.lease.lost.cancelled() => Ok(()),
            }
        };
        self.slot.release();
        r
    }

    fn host(&self) -> Option<String> {
        Some(self.member().url())
    }

    fn lost(&self) -> Option<String> {
        self.member().lost_since(self.lease.generation)
    }

    fn host_mounts(&self) -> bool {
        self.sandbox.host_mounts()
    }

    /// A drained host is unreachable whatever its sandbox would say; otherwise the host's own
    /// answer (the failure may be the agent's).
    async fn liveness(&self) -> crate::Liveness {
        if let Some(why) = self.lost() {
            return crate::Liveness::Unreachable(why);
        }
        self.sandbox.liveness().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(url: &str, slots: usize, running: usize, up: bool) -> Arc<Member> {
        Arc::new(Member {
            host: url.parse().unwrap(),
            configured_slots: Some(slots),
            running: AtomicUsize::new(running),
            state: Mutex::new(MemberState {
                backend: None,
                slots,
                drained: (!up).then(|| "gone".to_owned()),
                generation: 0,
                lost: CancellationToken::new(),
                failed_pings: 0,
            }),
        })
    }

    #[test]
    fn lives_end_with_a_drain() {
        let m = member("unix:///a.sock", 2, 0, true);
        assert_eq!(m.lost_since(0), None);
        let token = m.state().lost.clone();
        m.drain(0, "pings failed".into());
        assert!(token.is_cancelled());
        assert_eq!(m.lost_since(0).as_deref(), Some("pings failed"));
        // A second drain of the same life keeps the first reason.
        m.drain(0, "again".into());
        assert_eq!(m.lost_since(0).as_deref(), Some("pings failed"));
        let e = m.lost_error(0).to_string();
        assert!(
            e.contains("unix:///a.sock") && e.contains("pings failed"),
            "{e}"
        );
        // After a rejoin (a new life), the old life's sandboxes stay lost.
        {
            let mut st = m.state();
            st.generation = 1;
            st.drained = None;
        }
        assert!(m.lost_since(0).is_some());
        assert_eq!(m.lost_since(1), None);
    }

    #[test]
    fn placement_prefers_free_slots_then_the_lowest_load() {
        assert_eq!(choose(&[]), None);
        assert_eq!(choose(&[(0, 2), (0, 2)]), Some(0), "ties go to the first");
        assert_eq!(choose(&[(1, 2), (0, 2)]), Some(1));
        assert_eq!(choose(&[(2, 8), (0, 2)]), Some(0), "6 free beat 2 free");
        assert_eq!(choose(&[(2, 2), (1, 2)]), Some(1));
        // Every host full: the lowest running / slots.
        assert_eq!(choose(&[(9, 8), (3, 2)]), Some(0));
        assert_eq!(choose(&[(16, 8), (3, 2)]), Some(1));
        // A sequence of placements over (8, 2) slots fills both in proportion.
        let mut loads = vec![(0, 8), (0, 2)];
        for _ in 0..20 {
            let i = choose(&loads).unwrap();
            loads[i].0 += 1;
        }
        assert_eq!((loads[0].0, loads[1].0), (16, 4));
    }

    #[test]
    fn all_drained_names_every_host() {
        let pool = Pool {
            id: "p".into(),
            members: vec![
                member("unix:///a.sock", 2, 0, false),
                member("unix:///b.sock", 2, 0, false),
            ],
            options: PoolOptions::default(),
            pick: Mutex::new(()),
        };
        let Err(e) = pool.pick() else {
            panic!("a pool of drained hosts picked one")
        };
        let e = e.to_string();
        assert!(
            e.contains("every Docker host of the pool is drained")
                && e.contains("unix:///a.sock (gone)")
                && e.contains("unix:///b.sock (gone)"),
            "{e}"
        );
    }
}
