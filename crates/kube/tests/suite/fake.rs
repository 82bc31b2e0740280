//! A fake Kubernetes API server on 127.0.0.1: the tests' counterpart of a cluster.
//!
//! It answers in the API's wire format from bodies in `tests/fixtures/`, written by hand in that
//! format (not captured from a live server): a pod as created, as read while pending, running,
//! in ImagePullBackOff, OOM-killed; a NetworkPolicy as created; `Status` objects for 404, 403
//! and deletions; `/version`. The identity of the pod asked about (name, namespace, uid,
//! labels, spec) is put in. Pods and policies live in
//! an in-memory table, so what is created is listed, and what is deleted is 404 afterwards.
//!
//! `pods/exec` is upgraded to a websocket with the subprotocol negotiated from the client's
//! offer (`v5.channel.k8s.io` when the fake speaks it, else `v4`), and replays a transcript of
//! channel frames (1 stdout, 2 stderr, 3 the final `Status`) chosen by the command. Two
//! stateful replies stand in for `tar`: the archive read from stdin (channel 0, ended by v5's
//! close frame `[255, 0]`) is unpacked into a temp dir, and `tar -c` is answered with an
//! archive of that dir.
//!
//! Every request is recorded (method, path, query, body, headers that matter, and for execs
//! the command, the negotiated subprotocol, the stdin received and whether the client hung up)
//! so tests assert on what the backend sent; [`FakeApi::log`] prints it for failure messages.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

pub const V4: &str = "v4.channel.k8s.io";
pub const V5: &str = "v5.channel.k8s.io";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// One websocket frame: its channel byte and payload.
#[derive(Debug, Clone)]
pub struct Frame {
    pub channel: u8,
    pub data: Vec<u8>,
}

/// What an exec answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// These frames, then a normal close.
    Frames(Vec<Frame>),
    /// These frames, then nothing until the client hangs up (a command that runs on).
    Hang(Vec<Frame>),
    /// `tar -x`: unpack stdin into the fake's file system, then exit 0.
    TarIn,
    /// `tar -c -f - -C DIR NAME`: an archive of the fake's `DIR/NAME` on stdout.
    TarOut,
    /// These frames, then the TCP connection dropped without a close frame (a proxy or an
    /// API server that went away mid-stream).
    Reset(Vec<Frame>),
}

/// The frames a server opens an exec with: one empty frame per channel it writes.
fn opening() -> Vec<Frame> {
    [1, 2, 3]
        .into_iter()
        .map(|channel| Frame {
            channel,
            data: Vec::new(),
        })
        .collect()
}

/// The `Status` JSON the exec's error channel carries, field order as the API server's Go
/// encoder writes it.
pub fn status_json(code: i64, command: &str) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_owned();
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{command}], exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
    })
    .to_string()
}

impl Reply {
    /// A transcript from `tests/fixtures/` (`{"frames": [{"channel", "data"}]}`).
    pub fn transcript(name: &str) -> Self {
        let v = fixture(name);
        let frames = v["frames"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: no frames"))
            .iter()
            .map(|f| Frame {
                channel: u8::try_from(f["channel"].as_u64().unwrap()).unwrap(),
                data: f["data"].as_str().unwrap().as_bytes().to_vec(),
            })
            .collect();
        Self::Frames(frames)
    }

    /// A command that printed `stdout` and `stderr` and exited `code`, framed like the
    /// transcripts.
    pub fn exit(code: i64, stdout: &[u8], stderr: &[u8]) -> Self {
        let mut frames = opening();
        // Large output comes in frames of at most 32 KiB, as the kubelet's copy buffer does.
        for (channel, data) in [(1u8, stdout), (2u8, stderr)] {
            frames.extend(data.chunks(32 * 1024).map(|c| Frame {
                channel,
                data: c.to_vec(),
            }));
        }
        frames.push(Frame {
            channel: 3,
            data: status_json(code, "sh -c ...").into_bytes(),
        });
        Self::Frames(frames)
    }

    /// A command that printed `stdout` and then runs until it is killed.
    pub fn hang(stdout: &[u8]) -> Self {
        let mut frames = opening();
        frames.push(Frame {
            channel: 1,
            data: stdout.to_vec(),
        });
        Self::Hang(frames)
    }
}

/// An exec as the fake saw it.
#[derive(Debug, Clone, Default)]
pub struct ExecSeen {
    /// The `command` query values, in order.
    pub command: Vec<String>,
    /// What the client offered in `Sec-WebSocket-Protocol`.
    pub offered: String,
    /// What the fake chose.
    pub protocol: String,
    /// Bytes received on channel 0.
    pub stdin: Vec<u8>,
    /// The client sent v5's close frame for stdin.
    pub stdin_closed: bool,
    /// The client hung up before the fake ended the stream.
    pub client_hung_up: bool,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Decoded `(key, value)` pairs of the query string, in order.
    pub query: Vec<(String, String)>,
    pub body: Option<Value>,
    pub authorization: Option<String>,
    pub exec: Option<ExecSeen>,
}

impl Seen {
    pub fn query_values(&self, key: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The exec's `sh -c` script.
    pub fn script(&self) -> &str {
        self.exec
            .as_ref()
            .and_then(|e| e.command.get(2))
            .map_or("", String::as_str)
    }
}

struct PodEntry {
    object: Value,
    /// Status fixtures still to serve on reads; the last one stays.
    statuses: VecDeque<String>,
}

struct State {
    requests: Vec<Seen>,
    pods: BTreeMap<(String, String), PodEntry>,
    policies: BTreeMap<(String, String), Value>,
    /// Status fixtures new pods go through (`pending`, `running`, `imagepullbackoff`,
    /// `oomkilled`).
    statuses: Vec<String>,
    rules: Vec<(String, Reply)>,
    protocols: Vec<&'static str>,
    forbid_policies: bool,
    version: u64,
    /// Connections and websockets, aborted by [`FakeApi::stop`].
    tasks: Vec<AbortHandle>,
}

/// The fake API server. Dropping it stops it.
pub struct FakeApi {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
    fs: tempfile::TempDir,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

impl FakeApi {
    /// Listens on a free loopback port in plain HTTP; speaks v5 and v4; new pods are pending
    /// once, then running.
    pub async fn start() -> Self {
        Self::listen(None).await
    }

    /// The same over TLS, with the certificate in `tests/fixtures/tls-server.pem` (for
    /// 127.0.0.1, signed by `tls-ca.pem`, a CA made for these tests only), as real API servers
    /// are reached.
    pub async fn start_tls() -> Self {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let chain = vec![CertificateDer::from_pem_file(dir.join("tls-server.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("tls-server-key.pem")).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Self::listen(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn listen(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fs = tempfile::tempdir().unwrap();
        let is_tls = tls.is_some();
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            pods: BTreeMap::new(),
            policies: BTreeMap::new(),
            statuses: vec!["pending".into(), "running".into()],
            rules: Vec::new(),
            protocols: vec![V5, V4],
            forbid_policies: false,
            version: 41873,
            tasks: Vec::new(),
        }));
        let shared = state.clone();
        let root = fs.path().to_path_buf();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                let root = root.clone();
                let tls = tls.clone();
                let conn = tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(state.clone(), root.clone(), req)
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => {
                            http.serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return;
                            };
                            http.serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await
                        }
                    };
                });
                shared.lock().unwrap().tasks.push(conn.abort_handle());
            }
        })
        .abort_handle();
        Self {
            addr,
            tls: is_tls,
            state,
            accept,
            fs,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops answering: the listener and every open connection are closed, so the next
    /// request is refused (an API server that went away).
    pub fn stop(&self) {
        self.accept.abort();
        for t in self.state.lock().unwrap().tasks.drain(..) {
            t.abort();
        }
    }

    /// The status fixtures that pods created from now on go through, in order.
    pub fn pod_statuses(&self, statuses: &[&str]) {
        self.state.lock().unwrap().statuses = statuses.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Sets what reads of an existing pod return from now on.
    pub fn set_status(&self, pod: &str, status: &str) {
        let mut st = self.state.lock().unwrap();
        let entry = st
            .pods
            .iter_mut()
            .find(|((_, n), _)| n == pod)
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("no pod {pod}"));
        entry.statuses = VecDeque::from([status.to_owned()]);
    }

    /// Removes a pod behind the backend's back (deleted by someone else).
    pub fn vanish(&self, pod: &str) {
        self.state.lock().unwrap().pods.retain(|(_, n), _| n != pod);
    }

    /// The subprotocols the fake speaks, in its order of preference.
    pub fn speak(&self, protocols: &[&'static str]) {
        self.state.lock().unwrap().protocols = protocols.to_vec();
    }

    /// Refuses NetworkPolicy creation with a 403 (RBAC without the permission).
    pub fn forbid_policies(&self) {
        self.state.lock().unwrap().forbid_policies = true;
    }

    /// Execs whose command line contains `needle` get `reply` (the first rule that matches).
    pub fn on_exec(&self, needle: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .rules
            .push((needle.to_owned(), reply));
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn execs(&self) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.exec.is_some())
            .collect()
    }

    /// Names of the pods that exist.
    pub fn pods(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.pods.keys().map(|(_, n)| n.clone()).collect()
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        let st = self.state.lock().unwrap();
        st.pods
            .iter()
            .find(|((_, n), _)| n == name)
            .map(|(_, e)| e.object.clone())
    }

    /// Names of the NetworkPolicies that exist.
    pub fn policies(&self) -> Vec<String> {
        let st = self.state.lock().unwrap();
        st.policies.keys().map(|(_, n)| n.clone()).collect()
    }

    /// The fake pod's file system (one for all pods): what `tar -x` unpacked, what `tar -c`
    /// archives.
    pub fn fs(&self) -> &Path {
        self.fs.path()
    }

    /// Every request, one per line, for failure messages.
    pub fn log(&self) -> String {
        let mut out = String::from("requests the fake API server saw:\n");
        for r in self.requests() {
            let query: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            out.push_str(&format!("  {} {} {}", r.method, r.path, query.join("&")));
            if let Some(b) = &r.body {
                out.push_str(&format!("\n    body: {b}"));
            }
            if let Some(e) = &r.exec {
                out.push_str(&format!(
                    "\n    exec: protocol {} (offered {:?}), {} stdin bytes, stdin closed {}, client hung up {}",
                    e.protocol,
                    e.offered,
                    e.stdin.len(),
                    e.stdin_closed,
                    e.client_hung_up
                ));
            }
            out.push('\n');
        }
        out
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
fn parse_query(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

type Resp = Response<Full<Bytes>>;

fn respond(code: StatusCode, body: &Value) -> Resp {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn not_found(kind: &str, name: &str) -> Resp {
    let mut s = fixture("status-not-found.json");
    s["message"] = json!(format!("{kind} \"{name}\" not found"));
    s["details"] = json!({"name": name, "kind": kind});
    if kind == "networkpolicies" {
        s["details"]["group"] = json!("networking.k8s.io");
        s["message"] = json!(format!(
            "networkpolicies.networking.k8s.io \"{name}\" not found"
        ));
    }
    respond(StatusCode::NOT_FOUND, &s)
}

/// A pod fixture with the stored pod's identity and spec put in.
fn pod_as(fixture_name: &str, stored: &Value) -> Value {
    let mut v = fixture(&format!("pod-{fixture_name}.json"));
    for key in ["name", "namespace", "uid", "labels", "creationTimestamp"] {
        v["metadata"][key] = stored["metadata"][key].clone();
    }
    let node = v["spec"]["nodeName"].clone();
    v["spec"] = stored["spec"].clone();
    if !node.is_null() {
        v["spec"]["nodeName"] = node;
    }
    let image = stored["spec"]["containers"][0]["image"].clone();
    if let Some(cs) = v["status"]["containerStatuses"].as_array_mut() {
        for c in cs {
            c["image"] = image.clone();
        }
    }
    v
}

fn matches_selector(labels: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        labels[k.trim_end_matches('=')].as_str() == Some(v.trim_start_matches('='))
    })
}

async fn handle(
    state: Arc<Mutex<State>>,
    root: PathBuf,
    mut req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let segments: Vec<String> = path.split('/').skip(1).map(str::to_owned).collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();

    if let ["api", "v1", "namespaces", ns, "pods", name, "exec"] = seg.as_slice() {
        let offered = req
            .headers()
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let key = req
            .headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default();
        let command: Vec<String> = query
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect();
        let mut st = state.lock().unwrap();
        let protocol = offered
            .split(',')
            .map(str::trim)
            .find(|p| st.protocols.contains(p))
            .map(str::to_owned);
        let seen = Seen {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: None,
            authorization,
            exec: Some(ExecSeen {
                command: command.clone(),
                offered,
                protocol: protocol.clone().unwrap_or_default(),
                ..Default::default()
            }),
        };
        st.requests.push(seen);
        let index = st.requests.len() - 1;
        if !st
            .pods
            .contains_key(&((*ns).to_owned(), (*name).to_owned()))
        {
            return Ok(not_found("pods", name));
        }
        let Some(protocol) = protocol else {
            return Ok(respond(
                StatusCode::BAD_REQUEST,
                &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no supported subprotocol","reason":"BadRequest","code":400}),
            ));
        };
        let line = command.join(" ");
        let reply = st
            .rules
            .iter()
            .find(|(needle, _)| line.contains(needle.as_str()))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| {
                if line.contains("tar -x") {
                    Reply::TarIn
                } else if line.contains("tar -c") {
                    Reply::TarOut
                } else {
                    Reply::exit(0, b"", b"")
                }
            });
        let upgrade = hyper::upgrade::on(&mut req);
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            serve_exec(ws, &shared, index, &command, reply, &root).await;
        });
        st.tasks.push(task.abort_handle());
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }

    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    let mut st = state.lock().unwrap();
    st.requests.push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: body.clone(),
        authorization,
        exec: None,
    });
    st.version += 1;
    let rv = st.version.to_string();
    let resp = match (&method, seg.as_slice()) {
        (&Method::GET, ["version"]) => respond(StatusCode::OK, &fixture("version.json")),
        (&Method::POST, ["api", "v1", "namespaces", ns, "pods"]) => {
            let body = body.unwrap_or_default();
            let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
            let mut v = fixture("pod-created.json");
            v["metadata"]["name"] = json!(name);
            v["metadata"]["namespace"] = json!(ns);
            v["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            v["metadata"]["resourceVersion"] = json!(rv);
            v["metadata"]["labels"] = body["metadata"]["labels"].clone();
            // The server echoes the spec with its defaults filled in.
            let defaults = v["spec"].clone();
            let mut spec = body["spec"].clone();
            for key in [
                "dnsPolicy",
                "securityContext",
                "schedulerName",
                "tolerations",
                "priority",
                "preemptionPolicy",
            ] {
                spec[key] = defaults[key].clone();
            }
            if let Some(cs) = spec["containers"].as_array_mut() {
                for c in cs {
                    c["terminationMessagePath"] = json!("/dev/termination-log");
                    c["terminationMessagePolicy"] = json!("File");
                    c["imagePullPolicy"] = json!("IfNotPresent");
                }
            }
            v["spec"] = spec;
            let key = ((*ns).to_owned(), name);
            if st.pods.contains_key(&key) {
                respond(
                    StatusCode::CONFLICT,
                    &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":format!("pods \"{}\" already exists", key.1),"reason":"AlreadyExists","details":{"name":key.1,"kind":"pods"},"code":409}),
                )
            } else {
                let statuses = st.statuses.iter().cloned().collect();
                st.pods.insert(
                    key,
                    PodEntry {
                        object: v.clone(),
                        statuses,
                    },
                );
                respond(StatusCode::CREATED, &v)
            }
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = query
                .iter()
                .find(|(k, _)| k == "labelSelector")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut list = fixture("pod-list.json");
            list["metadata"]["resourceVersion"] = json!(rv);
            list["items"] = st
                .pods
                .iter()
                .filter(|((n, _), e)| {
                    n == ns && matches_selector(&e.object["metadata"]["labels"], &selector)
                })
                .map(|(_, e)| {
                    let mut item = pod_as("running", &e.object);
                    // List items carry no kind or apiVersion of their own.
                    item.as_object_mut().unwrap().remove("kind");
                    item.as_object_mut().unwrap().remove("apiVersion");
                    item
                })
                .collect();
            respond(StatusCode::OK, &list)
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.get_mut(&((*ns).to_owned(), (*name).to_owned())) {
                None => not_found("pods", name),
                Some(entry) => {
                    let status = if entry.statuses.len() > 1 {
                        entry.statuses.pop_front().unwrap()
                    } else {
                        entry
                            .statuses
                            .front()
                            .cloned()
                            .unwrap_or_else(|| "running".into())
                    };
                    let mut v = pod_as(&status, &entry.object);
                    v["metadata"]["resourceVersion"] = json!(rv);
                    respond(StatusCode::OK, &v)
                }
            }
        }
        (&Method::DELETE, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.remove(&((*ns).to_owned(), (*name).to_owned())) {
                None => not_found("pods", name),
                Some(entry) => {
                    // A deletion answers with the object, marked for deletion.
                    let mut v = pod_as("running", &entry.object);
                    v["metadata"]["resourceVersion"] = json!(rv);
                    v["metadata"]["deletionTimestamp"] = json!("2025-06-02T09:16:02Z");
                    v["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                    respond(StatusCode::OK, &v)
                }
            }
        }
        (
            &Method::POST,
            [
                "apis",
                "networking.k8s.io",
                "v1",
                "namespaces",
                ns,
                "networkpolicies",
            ],
        ) => {
            if st.forbid_policies {
                respond(
                    StatusCode::FORBIDDEN,
                    &fixture("status-networkpolicy-forbidden.json"),
                )
            } else {
                let body = body.unwrap_or_default();
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_owned();
                let mut v = fixture("networkpolicy-created.json");
                v["metadata"]["name"] = json!(name);
                v["metadata"]["namespace"] = json!(ns);
                v["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                v["metadata"]["resourceVersion"] = json!(rv);
                v["metadata"]["labels"] = body["metadata"]["labels"].clone();
                v["metadata"]["ownerReferences"] = body["metadata"]["ownerReferences"].clone();
                v["spec"] = body["spec"].clone();
                st.policies.insert(((*ns).to_owned(), name), v.clone());
                respond(StatusCode::CREATED, &v)
            }
        }
        (
            &Method::DELETE,
            [
                "apis",
                "networking.k8s.io",
                "v1",
                "namespaces",
                ns,
                "networkpolicies",
                name,
            ],
        ) => match st.policies.remove(&((*ns).to_owned(), (*name).to_owned())) {
            None => not_found("networkpolicies", name),
            Some(p) => {
                let mut s = fixture("status-networkpolicy-deleted.json");
                s["details"]["name"] = json!(name);
                s["details"]["uid"] = p["metadata"]["uid"].clone();
                respond(StatusCode::OK, &s)
            }
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}),
        ),
    };
    Ok(resp)
}

fn frame(f: &Frame) -> Message {
    let mut data = Vec::with_capacity(f.data.len() + 1);
    data.push(f.channel);
    data.extend_from_slice(&f.data);
    Message::binary(data)
}

async fn serve_exec<S>(
    mut ws: WebSocketStream<S>,
    state: &Mutex<State>,
    index: usize,
    command: &[String],
    reply: Reply,
    root: &Path,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let record = |f: &dyn Fn(&mut ExecSeen)| {
        if let Some(e) = state.lock().unwrap().requests[index].exec.as_mut() {
            f(e);
        }
    };
    match reply {
        Reply::Frames(frames) => {
            for f in &frames {
                if ws.send(frame(f)).await.is_err() {
                    return;
                }
            }
            let _ = ws.close(None).await;
            // Drain until the client's close answer, so it sees a clean end.
            while let Some(Ok(_)) = ws.next().await {}
        }
        Reply::Reset(frames) => {
            for f in &frames {
                if ws.send(frame(f)).await.is_err() {
                    return;
                }
            }
            // Dropping the stream closes the socket with no close frame.
        }
        Reply::Hang(frames) => {
            for f in &frames {
                if ws.send(frame(f)).await.is_err() {
                    return;
                }
            }
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
            record(&|e| e.client_hung_up = true);
        }
        Reply::TarIn => {
            for f in &opening() {
                let _ = ws.send(frame(f)).await;
            }
            let mut stdin = Vec::new();
            let mut closed = false;
            let mut hung_up = false;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) if b.first() == Some(&0) => {
                        stdin.extend_from_slice(&b[1..]);
                    }
                    Some(Ok(Message::Binary(b))) if b.as_ref() == [255, 0] => {
                        closed = true;
                        break;
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        hung_up = true;
                        break;
                    }
                    Some(Ok(_)) => {}
                }
            }
            record(&|e| {
                e.stdin.clone_from(&stdin);
                e.stdin_closed = closed;
                e.client_hung_up = hung_up;
            });
            let unpacked = tar::Archive::new(stdin.as_slice()).unpack(root);
            if hung_up {
                // Complete the close handshake the client started (v4's only end of stdin):
                // tungstenite sends the queued close reply on the next read.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            let (code, err) = match unpacked {
                Ok(()) => (0, String::new()),
                Err(e) => (2, format!("tar: {e}\n")),
            };
            let mut frames = Vec::new();
            if !err.is_empty() {
                frames.push(Frame {
                    channel: 2,
                    data: err.into_bytes(),
                });
            }
            frames.push(Frame {
                channel: 3,
                data: status_json(code, &command.join(" ")).into_bytes(),
            });
            for f in &frames {
                let _ = ws.send(frame(f)).await;
            }
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
        Reply::TarOut => {
            let args: Vec<String> =
                shell_words::split(command.get(2).map_or("", String::as_str)).unwrap_or_default();
            let (dir, name) = match args.as_slice() {
                [.., c, dir, name] if c == "-C" => (dir.clone(), name.clone()),
                _ => (String::new(), String::new()),
            };
            let src = root.join(dir.trim_start_matches('/')).join(&name);
            let mut out_frames = opening();
            let code = if src.exists() {
                let mut b = tar::Builder::new(Vec::new());
                if src.is_dir() {
                    b.append_dir_all(&name, &src).unwrap();
                } else {
                    b.append_path_with_name(&src, &name).unwrap();
                }
                let archive = b.into_inner().unwrap();
                out_frames.extend(archive.chunks(32 * 1024).map(|c| Frame {
                    channel: 1,
                    data: c.to_vec(),
                }));
                0
            } else {
                out_frames.push(Frame {
                    channel: 2,
                    data: format!("tar: {name}: Cannot stat: No such file or directory\ntar: Exiting with failure status due to previous errors\n").into_bytes(),
                });
                2
            };
            out_frames.push(Frame {
                channel: 3,
                data: status_json(code, &command.join(" ")).into_bytes(),
            });
            for f in &out_frames {
                if ws.send(frame(f)).await.is_err() {
                    return;
                }
            }
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
    }
}
