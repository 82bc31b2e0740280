//! The HTTP layer: one POST, no knowledge of any provider.
//!
//! A trait so that tests, recorders or other HTTP stacks can stand in for reqwest.

use std::error::Error as _;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
pub use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::LlmError;

/// A POST with a JSON body. Auth headers must be marked sensitive
/// ([`HeaderValue::set_sensitive`]) so that `Debug` does not print them.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub url: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub timeout: Duration,
}

/// Any HTTP answer, success or not.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// A header's value as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// No HTTP answer arrived.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub message: String,
    pub timed_out: bool,
}

/// A response body read piece by piece (server-sent events).
#[async_trait]
pub trait ByteStream: Send {
    /// The next piece of the body; `None` once the server closed it.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, TransportError>;
}

/// An answer whose body is still arriving.
pub struct StreamingResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Box<dyn ByteStream>,
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl StreamingResponse {
    /// A header's value as text, when present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the rest of the body (error bodies are small JSON documents).
    pub async fn collect(mut self) -> Result<HttpResponse, TransportError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.body.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status: self.status,
            headers: self.headers,
            body: Bytes::from(body),
        })
    }
}

/// A body that is already complete: one chunk, then the end.
struct WholeBody(Option<Bytes>);

#[async_trait]
impl ByteStream for WholeBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        Ok(self.0.take())
    }
}

#[async_trait]
pub trait HttpTransport: Send + Sync + fmt::Debug {
    async fn post(&self, request: HttpRequest) -> Result<HttpResponse, TransportError>;

    /// A POST whose answer is read as it arrives. `request.timeout` bounds the wait for the
    /// response headers only: a stream lasts as long as its events keep coming (the caller
    /// enforces an idle timeout between pieces).
    ///
    /// The default reads the whole answer with [`HttpTransport::post`], so a transport that
    /// cannot stream still serves streaming requests.
    async fn post_stream(&self, request: HttpRequest) -> Result<StreamingResponse, TransportError> {
        let response = self.post(request).await?;
        Ok(StreamingResponse {
            status: response.status,
            headers: response.headers,
            body: Box::new(WholeBody(Some(response.body))),
        })
    }
}

/// The production transport: one pooled reqwest client shared by every model in the process,
/// so hundreds of concurrent trials reuse connections and TLS sessions.
#[derive(Debug, Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
}

/// How long to wait for a TCP + TLS connection before calling the provider unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl ReqwestTransport {
    /// The process-wide transport (built on first use).
    pub fn shared() -> Result<Arc<Self>, LlmError> {
        static SHARED: OnceLock<Result<Arc<ReqwestTransport>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::new().map(Arc::new).map_err(|err| err.to_string()))
            .clone()
            .map_err(LlmError::Config)
    }

    pub fn new() -> Result<Self, LlmError> {
        // reqwest is built without a bundled crypto provider (aws-lc is slow to build); ring is
        // ours. Another crate may have installed a provider already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| {
                LlmError::Config(format!("cannot build the HTTP client: {}", chain(&err)))
            })?;
        Ok(Self { client })
    }
}

#[async_trait]
impl HttpTransport for ReqwestTransport {
    async fn post(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let to_error = |err: reqwest::Error| TransportError {
            timed_out: err.is_timeout(),
            message: chain(&err),
        };
        let response = self
            .client
            .post(&request.url)
            .headers(request.headers)
            .timeout(request.timeout)
            .body(request.body)
            .send()
            .await
            .map_err(to_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(to_error)?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    async fn post_stream(&self, request: HttpRequest) -> Result<StreamingResponse, TransportError> {
        let to_error = |err: reqwest::Error| TransportError {
            timed_out: err.is_timeout(),
            message: chain(&err),
        };
        // No reqwest timeout here: it would cover the whole body, and a long generation streams
        // for longer than any sensible request timeout.
        let send = self
            .client
            .post(&request.url)
            .headers(request.headers)
            .body(request.body)
            .send();
        let response = match tokio::time::timeout(request.timeout, send).await {
            Ok(response) => response.map_err(to_error)?,
            Err(_) => {
                return Err(TransportError {
                    message: format!("no response headers within {:?}", request.timeout),
                    timed_out: true,
                });
            }
        };
        Ok(StreamingResponse {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: Box::new(ReqwestBody(response)),
        })
    }
}

struct ReqwestBody(reqwest::Response);

#[async_trait]
impl ByteStream for ReqwestBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        self.0.chunk().await.map_err(|err| TransportError {
            timed_out: err.is_timeout(),
            message: chain(&err),
        })
    }
}

/// An error and its causes on one line: reqwest's own message ("error sending request for url")
/// says nothing about why, the cause ("Connection refused") does.
fn chain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
