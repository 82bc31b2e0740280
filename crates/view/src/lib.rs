//! autoagent-view: `autoagent view`, a live web dashboard of a run. An HTTP server that reads
//! the workspace's files only (the ledger, `.autoagent/`, the harness's git history, `jobs/`),
//! so it runs beside a live `optimize` without locks, and after it. Pages: Run, Experiment,
//! Tasks, Trial; they refresh when the files change (server-sent events). Two controls write
//! to the workspace: STOP (the `STOP` file) and the steering note (`.autoagent/steering.md`),
//! both recorded in `.autoagent/optimize.log`.
//!
//! Safety: loopback by default; any other address requires a token the server generates;
//! names in URLs are resolved inside the workspace (`..`, absolute paths and symlinks refused);
//! every answer goes through the [`redact::Redactor`]; the controls accept POST only, with a
//! JSON body and no foreign `Origin`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use autoagent_report::model::Source;
use tokio_util::sync::CancellationToken;

mod assets;
pub mod redact;
mod routes;

pub use autoagent_report::model::{Kind, STEERING_FILE, STOP_FILE};

/// The default port.
pub const DEFAULT_PORT: u16 = 8765;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Source(#[from] autoagent_report::model::ModelError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ViewOptions {
    /// A workspace, or a plain jobs dir.
    pub root: PathBuf,
    pub host: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
}

/// What the handlers share.
pub(crate) struct AppState {
    pub source: Source,
    pub redactor: redact::Redactor,
    /// Required on every request when the server listens beyond loopback.
    pub token: Option<String>,
    pub loopback: bool,
    pub port: u16,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    pub addr: SocketAddr,
    pub kind: Kind,
    /// The token a non-loopback server requires (`?token=…` once, then a cookie).
    pub token: Option<String>,
}

fn new_token() -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

impl Server {
    /// Opens the folder and binds the address. A non-loopback host gets a fresh token.
    pub async fn bind(opts: &ViewOptions) -> Result<Self, ViewError> {
        let source = Source::open(&opts.root)?;
        let addr = SocketAddr::new(opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ViewError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ViewError::Bind { addr, source })?;
        let loopback = opts.host.is_loopback();
        let token = (!loopback).then(new_token);
        let state = Arc::new(AppState {
            redactor: redact::Redactor::from_env(&source.root),
            source,
            token: token.clone(),
            loopback,
            port: addr.port(),
        });
        Ok(Self {
            kind: state.source.kind,
            listener,
            state,
            addr,
            token,
        })
    }

    /// The address to open: loopback for a server on all interfaces, with the token.
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            match self.addr {
                SocketAddr::V4(_) => "127.0.0.1".to_owned(),
                SocketAddr::V6(_) => "[::1]".to_owned(),
            }
        } else {
            match self.addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            }
        };
        match &self.token {
            Some(t) => format!("http://{host}:{}/?token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.state.source.root
    }

    /// Serves until `cancel`.
    pub async fn serve(self, cancel: CancellationToken) -> Result<(), ViewError> {
        let app = routes::router(self.state.clone(), cancel.clone());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
            .map_err(ViewError::Serve)
    }
}
