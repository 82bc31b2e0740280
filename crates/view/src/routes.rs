//! The routes: HTML shells for the pages (the script fills them from the JSON API), the API,
//! the events stream, and the two controls.

// Checks return the error response a handler sends as is; boxing it would only add a step.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use autoagent_report::model::{self, Kind, LOG_FILE, ModelError, STEERING_FILE, STOP_FILE};
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use futures_util::stream::Stream;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::assets;

type Shared = Arc<AppState>;

const TOKEN_COOKIE: &str = "autoagent_view_token";
/// How often the events stream looks at the files.
const POLL: Duration = Duration::from_millis(700);
/// The longest steering note accepted.
const MAX_STEERING: usize = 20_000;

pub(crate) fn router(state: Shared, cancel: CancellationToken) -> Router {
    let pages = Router::new()
        .route("/", get(run_page))
        .route("/experiment/{n}", get(page_handler("experiment")))
        .route("/tasks", get(page_handler("tasks")))
        .route("/trial/{job}/{trial}", get(page_handler("trial")))
        .route("/meta/{n}", get(page_handler("meta")))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/api/run", get(api_run))
        .route("/api/chart.svg", get(api_chart))
        .route("/api/experiment/{n}", get(api_experiment))
        .route("/api/tasks", get(api_tasks))
        .route("/api/job/{job}", get(api_job))
        .route("/api/trial/{job}/{trial}", get(api_trial))
        .route("/api/meta/{n}", get(api_meta))
        .route("/api/log", get(api_log))
        .route("/api/file/{*path}", get(api_file))
        .route("/api/stop", post(api_stop))
        .route("/api/steering", post(api_steering))
        .route(
            "/api/events",
            get(move |s: State<Shared>| events(s, cancel.clone())),
        );
    pages
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// The guard: token, host, and headers on every answer.

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn query_token(req: &Request) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
}

/// Equal in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    // A page of another site must not reach a loopback server through a name that resolves to
    // 127.0.0.1 (DNS rebinding): the Host must be a loopback name.
    if s.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
        if !matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
            return error(
                StatusCode::FORBIDDEN,
                "this server answers loopback names only",
            );
        }
    }
    let mut set_cookie = None;
    if let Some(token) = &s.token {
        let from_query = query_token(&req);
        let from_cookie = cookie_token(req.headers());
        let bearer = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let ok = [&from_query, &from_cookie, &bearer]
            .iter()
            .any(|t| t.as_deref().is_some_and(|t| same(t, token)));
        if !ok {
            return error(
                StatusCode::UNAUTHORIZED,
                "a token is required: open the address `autoagent view` printed",
            );
        }
        if from_query.is_some() {
            set_cookie = Some(format!(
                "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            ));
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

/// The controls accept a JSON body only (a cross-site form cannot send one without asking)
/// and no foreign `Origin`.
fn check_control(s: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a JSON body (Content-Type: application/json)",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let ok = origin
            .strip_prefix("http://")
            .is_some_and(|o| o == host || (s.loopback && o == format!("127.0.0.1:{}", s.port)));
        if !ok {
            return Err(error(
                StatusCode::FORBIDDEN,
                "a request from another origin",
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answers, redacted.

fn json<T: Serialize>(s: &AppState, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            s.redactor.apply(&body),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn model_error(e: &ModelError) -> Response {
    let status = match e {
        ModelError::Refused { .. } => StatusCode::BAD_REQUEST,
        ModelError::NotFound(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &e.to_string())
}

fn parse_experiment(n: &str) -> Result<u32, Response> {
    n.strip_prefix("exp-")
        .unwrap_or(n)
        .parse()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "an experiment is a number"))
}

// ---------------------------------------------------------------------------------------------
// Pages.

async fn run_page(State(s): State<Shared>) -> Response {
    if s.source.kind == Kind::Jobs {
        return Redirect::to("/tasks").into_response();
    }
    assets::page("run").into_response()
}

fn page_handler(
    name: &'static str,
) -> impl Fn() -> std::future::Ready<axum::response::Html<String>> + Clone + Send + 'static {
    move || std::future::ready(assets::page(name))
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        assets::APP_JS,
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        assets::STYLE_CSS,
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The API.

async fn api_run(State(s): State<Shared>) -> Response {
    match model::run_summary(&s.source) {
        Ok(r) => json(&s, &r),
        Err(e) => model_error(&e),
    }
}

/// The report's SVG, the same drawing as `progress.svg`, at the page's size.
async fn api_chart(State(s): State<Shared>) -> Response {
    let ledger = match s.source.ledger() {
        Ok(l) => l,
        Err(e) => return model_error(&e),
    };
    let svg = autoagent_report::svg_string(&autoagent_report::plot_data(&ledger), (1100, 440));
    (
        [(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")],
        s.redactor.apply(&svg),
    )
        .into_response()
}

async fn api_experiment(State(s): State<Shared>, Path(n): Path<String>) -> Response {
    let n = match parse_experiment(&n) {
        Ok(n) => n,
        Err(r) => return r,
    };
    match model::experiment_detail(&s.source, n).await {
        Ok(d) => json(&s, &d),
        Err(e) => model_error(&e),
    }
}

async fn api_tasks(State(s): State<Shared>) -> Response {
    match model::task_matrix(&s.source) {
        Ok(m) => json(&s, &m),
        Err(e) => model_error(&e),
    }
}

async fn api_job(State(s): State<Shared>, Path(job): Path<String>) -> Response {
    match model::job_trials(&s.source, &job) {
        Ok(t) => json(&s, &t),
        Err(e) => model_error(&e),
    }
}

async fn api_trial(
    State(s): State<Shared>,
    Path((job, trial)): Path<(String, String)>,
) -> Response {
    match model::trial_detail(&s.source, &job, &trial) {
        Ok(t) => json(&s, &t),
        Err(e) => model_error(&e),
    }
}

async fn api_meta(State(s): State<Shared>, Path(n): Path<String>) -> Response {
    let n = match parse_experiment(&n) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let path = match model::meta_trajectory_path(&s.source, n) {
        Ok(p) => p,
        Err(e) => return model_error(&e),
    };
    match std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        Some(v) => json(&s, &serde_json::json!({ "experiment": n, "trajectory": v })),
        None => error(StatusCode::NOT_FOUND, "no readable meta-agent trajectory"),
    }
}

async fn api_log(State(s): State<Shared>) -> Response {
    json(
        &s,
        &serde_json::json!({ "log": model::log_tail(&s.source, 20_000) }),
    )
}

/// A file of the workspace as text: `..`, absolute paths, symlinks and `.env` files refused.
async fn api_file(State(s): State<Shared>, Path(path): Path<String>) -> Response {
    if path
        .split('/')
        .any(|c| c.starts_with(".env") || c == ".git")
    {
        return error(StatusCode::FORBIDDEN, "this file is not shown");
    }
    let full = match model::resolve_inside(&s.source.root, &path) {
        Ok(p) => p,
        Err(e) => return model_error(&e),
    };
    if !full.is_file() {
        return error(StatusCode::NOT_FOUND, "not a file");
    }
    match std::fs::read(&full) {
        Ok(bytes) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            s.redactor.apply(&String::from_utf8_lossy(&bytes)),
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Controls.

/// A line in the run's log, as `optimize` writes its own.
fn log_line(s: &AppState, msg: &str) {
    use std::io::Write as _;
    let path = s.source.root.join(LOG_FILE);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let _ = writeln!(
            f,
            "{} {msg}",
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
        );
    }
}

fn workspace_only(s: &AppState) -> Result<(), Response> {
    if s.source.kind == Kind::Workspace {
        Ok(())
    } else {
        Err(error(
            StatusCode::CONFLICT,
            "a jobs dir has no run to stop or steer",
        ))
    }
}

async fn api_stop(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = check_control(&s, &headers).and_then(|()| workspace_only(&s)) {
        return r;
    }
    let path = s.source.root.join(STOP_FILE);
    let text = format!(
        "requested from autoagent view at {}\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S")
    );
    match std::fs::write(&path, text) {
        Ok(()) => {
            log_line(
                &s,
                "view: STOP requested; the run stops at the end of the current experiment",
            );
            json(&s, &serde_json::json!({ "stop": true, "file": STOP_FILE }))
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{STOP_FILE}: {e}"),
        ),
    }
}

#[derive(serde::Deserialize)]
struct Steering {
    text: String,
}

async fn api_steering(State(s): State<Shared>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = check_control(&s, &headers).and_then(|()| workspace_only(&s)) {
        return r;
    }
    let note: Steering = match serde_json::from_str(&body) {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"text\": \"…\"}}: {e}"),
            );
        }
    };
    if note.text.len() > MAX_STEERING {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("a steering note has at most {MAX_STEERING} bytes"),
        );
    }
    let path = s.source.root.join(STEERING_FILE);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = note.text.trim();
    let result = if text.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, format!("{text}\n")).and_then(|()| std::fs::rename(&tmp, &path))
    };
    match result {
        Ok(()) => {
            let first = text.lines().next().unwrap_or("");
            log_line(
                &s,
                &if text.is_empty() {
                    "view: steering note cleared".to_owned()
                } else {
                    format!(
                        "view: steering note set ({} chars) for the next meta-agent session: {}",
                        text.chars().count(),
                        s.redactor.apply(first)
                    )
                },
            );
            json(
                &s,
                &serde_json::json!({ "steering": (!text.is_empty()).then_some(text), "file": STEERING_FILE }),
            )
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("{STEERING_FILE}: {e}"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Live updates.

/// A `change` event whenever the files the pages show change; the stream ends with the server.
async fn events(
    State(s): State<Shared>,
    cancel: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold(
        (s, cancel, None::<String>),
        |(s, cancel, last)| async move {
            loop {
                let src = s.source.clone();
                let fp = tokio::task::spawn_blocking(move || model::fingerprint(&src))
                    .await
                    .unwrap_or_default();
                if last.as_ref() != Some(&fp) {
                    let first = last.is_none();
                    let ev = Event::default()
                        .event(if first { "hello" } else { "change" })
                        .data(fp.len().to_string());
                    return Some((Ok(ev), (s, cancel, Some(fp))));
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = cancel.cancelled() => return None,
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}
