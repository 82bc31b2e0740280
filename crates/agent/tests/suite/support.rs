//! Shared helpers: fixtures, one Docker sandbox per test (destroyed even when the test
//! panics), a model that records every request on top of the scripted one, and the ATIF
//! validator that every trajectory of these tests goes through.
//!
//! When a test panics, [`with_sandbox`] prints everything it gathered: for each run, the
//! error if any, every request the model received and the trajectory JSON (tool outputs
//! included), plus the output of the test's own sandbox commands.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use autoagent_agent::{Harness, Run, RunObserver, RunOutcome, Totals};
use autoagent_harbor::Trajectory;
use autoagent_llm::{
    ContentBlock, LlmError, Model, ModelRequest, ModelResponse, ProviderKind, Role, ScriptedModel,
    ToolCall,
};
use autoagent_sandbox::docker::DockerBackend;
use autoagent_sandbox::{Backend, EnvironmentSpec, ExecOutput, ExecRequest, Sandbox};
use futures::FutureExt as _;
use serde_json::Value;

/// The base image of every test sandbox (Debian minbase + bash + python3).
pub const IMAGE: &str = "autoagent/debian:bookworm";
/// The sandbox's workdir (Docker creates it: the image has none).
pub const WORKDIR: &str = "/app";
/// A run that takes longer than this is stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Loads `tests/fixtures/harnesses/NAME`, failing with every problem found.
pub fn harness(name: &str) -> Harness {
    let dir = fixture(&format!("harnesses/{name}"));
    Harness::load(&dir).unwrap_or_else(|e| panic!("fixture harness {name} does not load:\n{e}"))
}

// ---------------------------------------------------------------------------------------------
// The sandbox and the debug log

/// What a test gets: its sandbox and a log printed if the test fails.
#[derive(Clone)]
pub struct Env {
    pub sandbox: Arc<dyn Sandbox>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Env {
    /// Adds a section to what is printed when the test fails.
    pub fn note(&self, title: &str, body: impl AsRef<str>) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.push(format!("===== {title} =====\n{}", body.as_ref()));
    }

    /// Runs a command in the sandbox for the test's own checks (logged).
    pub async fn sh(&self, command: &str) -> ExecOutput {
        let out = self
            .sandbox
            .exec(ExecRequest::new(command).timeout(Some(Duration::from_secs(60))))
            .await
            .unwrap_or_else(|e| panic!("exec {command:?} failed: {e}"));
        self.note(
            &format!("test command: {command}"),
            format!(
                "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                out.exit_code,
                clip(&out.stdout),
                clip(&out.stderr)
            ),
        );
        out
    }

    /// Runs the harness `tests/fixtures/harnesses/HARNESS` with the scripted model
    /// `tests/fixtures/scripts/SCRIPT` on `instruction`, then checks that the run succeeded,
    /// that the script was consumed whole, and that the trajectory is valid ATIF.
    pub async fn run(&self, harness_name: &str, script: &str, instruction: &str) -> Finished {
        let harness = harness(harness_name);
        let script_path = fixture(&format!("scripts/{script}"));
        let scripted = Arc::new(
            ScriptedModel::from_file(&script_path)
                .unwrap_or_else(|e| panic!("script {script}: {e}")),
        );
        let recorder = Arc::new(Recorder::new(scripted.clone()));
        let observer = LastTrajectory::default();
        let run = Run {
            harness: &harness,
            model: recorder.clone(),
            models: BTreeMap::new(),
            sandbox: Some(self.sandbox.as_ref()),
            observer: &observer,
        };
        let label = format!("run {harness_name} + {script}");
        let result = tokio::time::timeout(RUN_TIMEOUT, run.run(instruction)).await;
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                self.note(&format!("{label}: requests"), recorder.describe());
                self.note(
                    &format!("{label}: last trajectory seen by the observer"),
                    observer.last(),
                );
                panic!("{label} failed: {e}");
            }
            Err(_) => {
                self.note(&format!("{label}: requests"), recorder.describe());
                self.note(
                    &format!("{label}: last trajectory seen by the observer"),
                    observer.last(),
                );
                panic!("{label} did not end within {RUN_TIMEOUT:?}");
            }
        };
        let json = serde_json::to_value(&outcome.trajectory).expect("trajectory serialises");
        let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
        self.note(&format!("{label}: requests"), recorder.describe());
        self.note(
            &format!(
                "{label}: outcome (end {:?}, answer {:?}, totals {:?})",
                outcome.end, outcome.answer, outcome.totals
            ),
            &pretty,
        );
        if let Ok(dir) = std::env::var("AUTOAGENT_TEST_TRAJECTORY_DIR") {
            let name = format!(
                "{harness_name}--{}.json",
                script.trim_end_matches(".toml").replace('/', "_")
            );
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(Path::new(&dir).join(name), &pretty);
        }
        if let Err(e) = scripted.finish() {
            panic!("{label}: {e}");
        }
        assert_valid_atif(&json);
        // The typed form and the JSON must say the same (the JSON round-trips).
        let back: Trajectory =
            serde_json::from_value(json.clone()).expect("trajectory deserialises");
        assert_eq!(back, outcome.trajectory, "{label}: trajectory round trip");
        Finished {
            outcome,
            json,
            requests: recorder.requests(),
        }
    }
}

/// Starts a sandbox from [`IMAGE`] with workdir [`WORKDIR`], runs the test body, prints the
/// log when the body panics, and destroys the sandbox in every case. Without Docker it skips
/// (or fails, with `AUTOAGENT_REQUIRE_DOCKER=1`).
pub async fn with_sandbox<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(backend) = DockerBackend::for_tests().await else {
        return;
    };
    let spec = EnvironmentSpec {
        name: format!("agent-test-{name}"),
        docker_image: Some(IMAGE.into()),
        workdir: Some(WORKDIR.into()),
        labels: BTreeMap::from([("autoagent.test".to_owned(), "agent".to_owned())]),
        start_timeout: Some(Duration::from_secs(120)),
        ..EnvironmentSpec::default()
    };
    let sandbox: Arc<dyn Sandbox> = match backend.start(&spec).await {
        Ok(s) => Arc::from(s),
        Err(e) => panic!("cannot start a sandbox from {IMAGE}: {e}"),
    };
    let env = Env {
        sandbox: sandbox.clone(),
        log: Arc::default(),
    };
    let result = AssertUnwindSafe(body(env.clone())).catch_unwind().await;
    if result.is_err() {
        let log = env.log.lock().unwrap_or_else(|p| p.into_inner());
        eprintln!(
            "\n########## debug output of test {name} (sandbox {}) ##########\n{}\n",
            sandbox.id(),
            log.join("\n\n")
        );
    }
    if let Err(e) = sandbox.destroy().await {
        eprintln!("destroying sandbox {}: {e}", sandbox.id());
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Long outputs are cut in the debug log (head and tail).
fn clip(s: &str) -> String {
    const MAX: usize = 4000;
    if s.chars().count() <= MAX {
        return s.to_owned();
    }
    let head: String = s.chars().take(MAX / 2).collect();
    let tail: String = s
        .chars()
        .skip(s.chars().count() - MAX / 2)
        .collect::<String>();
    format!("{head}\n[... clipped for the log ...]\n{tail}")
}

/// Keeps the last trajectory the run reported (to show when the run fails midway).
#[derive(Default)]
struct LastTrajectory(Mutex<String>);

impl LastTrajectory {
    fn last(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl RunObserver for LastTrajectory {
    fn updated(&self, trajectory: &Trajectory, _totals: &Totals) {
        let json = serde_json::to_string_pretty(trajectory).unwrap_or_default();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = json;
    }
}

// ---------------------------------------------------------------------------------------------
// The recording model

/// Wraps the scripted model: records every request, and turns a scripted tool call whose
/// arguments are `{ __raw_json = "TEXT" }` into a call whose arguments are the raw (possibly
/// malformed) JSON text, as an OpenAI-style wire delivers it.
#[derive(Debug)]
pub struct Recorder {
    inner: Arc<ScriptedModel>,
    requests: Mutex<Vec<ModelRequest>>,
}

impl Recorder {
    pub fn new(inner: Arc<ScriptedModel>) -> Self {
        Self {
            inner,
            requests: Mutex::default(),
        }
    }

    pub fn requests(&self) -> Vec<ModelRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One paragraph per request: agent, tools, messages (text and tool results, clipped).
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, req) in self.requests().iter().enumerate() {
            let tools: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
            let _ = writeln!(
                out,
                "request #{} agent={:?} tools={tools:?} messages={}",
                i + 1,
                req.agent,
                req.messages.len()
            );
            for (j, m) in req.messages.iter().enumerate() {
                for block in &m.content {
                    let line = match block {
                        ContentBlock::Text { text } => format!("text {text:?}"),
                        ContentBlock::ToolCall(c) => {
                            format!("tool_call {} {}({})", c.id, c.name, c.arguments)
                        }
                        ContentBlock::ToolResult(r) => format!(
                            "tool_result {} is_error={} {:?}",
                            r.tool_call_id,
                            r.is_error,
                            clip_short(&r.content)
                        ),
                        ContentBlock::Reasoning(r) => format!("reasoning {:?}", r.text),
                    };
                    let _ = writeln!(out, "  [{j}] {:?}: {}", m.role, clip_short(&line));
                }
            }
        }
        out
    }
}

fn clip_short(s: &str) -> String {
    if s.chars().count() <= 600 {
        return s.to_owned();
    }
    let head: String = s.chars().take(300).collect();
    let tail: String = s.chars().skip(s.chars().count() - 300).collect();
    format!("{head}[…]{tail}")
}

#[async_trait]
impl Model for Recorder {
    async fn complete(&self, req: &ModelRequest) -> Result<ModelResponse, LlmError> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(req.clone());
        let mut resp = self.inner.complete(req).await?;
        for block in &mut resp.message.content {
            if let ContentBlock::ToolCall(call) = block
                && let Some(raw) = call.arguments.get("__raw_json").and_then(Value::as_str)
            {
                *call = ToolCall::from_json_text(call.id.clone(), call.name.clone(), raw);
            }
        }
        Ok(resp)
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn provider(&self) -> ProviderKind {
        ProviderKind::Scripted
    }
}

// ---------------------------------------------------------------------------------------------
// A finished run and accessors

pub struct Finished {
    pub outcome: RunOutcome,
    /// The trajectory as written to `trajectory.json`.
    pub json: Value,
    /// Every request the model received, in order (sub-agents' and compactions' included).
    pub requests: Vec<ModelRequest>,
}

impl Finished {
    pub fn steps(&self) -> &Vec<Value> {
        steps(&self.json)
    }

    /// The step with this id (1-based).
    pub fn step(&self, id: usize) -> &Value {
        step(&self.json, id)
    }

    /// The agent steps, in order.
    pub fn agent_steps(&self) -> Vec<&Value> {
        agent_steps(&self.json)
    }

    /// The observation result of a tool call, found by its id anywhere in the root steps.
    pub fn result_of(&self, call_id: &str) -> &Value {
        result_of(&self.json, call_id)
    }

    /// The last tool result the model received in request number `n` (1-based).
    pub fn last_tool_result_in_request(&self, n: usize) -> (String, bool) {
        let req = &self.requests[n - 1];
        req.messages
            .iter()
            .rev()
            .find_map(|m| m.tool_results_iter().last())
            .map(|r| (r.content.clone(), r.is_error))
            .unwrap_or_else(|| panic!("request #{n} has no tool result"))
    }

    /// The text of the first message of request `n`.
    pub fn first_user_text(&self, n: usize) -> String {
        let m = &self.requests[n - 1].messages[0];
        assert_eq!(m.role, Role::User);
        m.text()
    }
}

pub fn steps(traj: &Value) -> &Vec<Value> {
    traj["steps"].as_array().expect("steps is an array")
}

pub fn step(traj: &Value, id: usize) -> &Value {
    let s = &steps(traj)[id - 1];
    assert_eq!(s["step_id"], id, "step ids are sequential");
    s
}

pub fn agent_steps(traj: &Value) -> Vec<&Value> {
    steps(traj)
        .iter()
        .filter(|s| s["source"] == "agent")
        .collect()
}

pub fn result_of<'a>(traj: &'a Value, call_id: &str) -> &'a Value {
    steps(traj)
        .iter()
        .filter_map(|s| s["observation"]["results"].as_array())
        .flatten()
        .find(|r| r["source_call_id"] == call_id)
        .unwrap_or_else(|| panic!("no observation result for call {call_id:?}"))
}

/// The observation's text (`content` is a string in our trajectories).
pub fn content(result: &Value) -> &str {
    result["content"]
        .as_str()
        .unwrap_or_else(|| panic!("observation content is not a string: {result}"))
}

pub fn is_error(result: &Value) -> bool {
    result["extra"]["is_error"] == true
}

// ---------------------------------------------------------------------------------------------
// ATIF validation

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("atif-v1.8.schema.json"))
            .expect("read the ATIF schema fixture");
        let schema: Value = serde_json::from_str(&text).expect("the ATIF schema is JSON");
        jsonschema::validator_for(&schema).expect("the ATIF schema compiles")
    })
}

/// Every way `doc` breaks ATIF v1.8: the JSON Schema (field shapes, unknown keys) and the
/// cross-field rules of `atif.md` §3, plus what our writer promises on top (v1.8, ISO 8601
/// timestamps, `total_steps` equal to the steps, unique call ids within a step).
pub fn atif_problems(doc: &Value) -> Vec<String> {
    let mut problems: Vec<String> = schema_validator()
        .iter_errors(doc)
        .flat_map(|e| schema_messages(&e))
        .collect();
    let mut embedded = BTreeSet::new();
    let mut refs = Vec::new();
    check_trajectory(doc, "trajectory", &mut problems, &mut embedded, &mut refs);
    for (at, id) in refs {
        if !embedded.contains(&id) {
            problems.push(format!(
                "{at}: subagent_trajectory_ref {id:?} matches no embedded subagent trajectory"
            ));
        }
    }
    problems
}

/// Panics with every problem and the document when `doc` is not valid ATIF.
pub fn assert_valid_atif(doc: &Value) {
    let problems = atif_problems(doc);
    assert!(
        problems.is_empty(),
        "invalid ATIF trajectory:\n  {}\n{}",
        problems.join("\n  "),
        serde_json::to_string_pretty(doc).unwrap_or_default()
    );
}

/// A schema error, described by its innermost causes: for `anyOf` (every optional field is
/// `anyOf [T, null]`), the branch that got furthest into the document says what is wrong.
fn schema_messages(e: &jsonschema::ValidationError<'_>) -> Vec<String> {
    use jsonschema::error::ValidationErrorKind as Kind;
    if let Kind::AnyOf { context } | Kind::OneOfNotValid { context } = e.kind() {
        let depth = |branch: &Vec<jsonschema::ValidationError<'static>>| {
            branch
                .iter()
                .map(|b| b.instance_path().as_str().len())
                .max()
                .unwrap_or(0)
        };
        if let Some(best) = context.iter().max_by_key(|b| depth(b)) {
            let inner: Vec<String> = best.iter().flat_map(|b| schema_messages(b)).collect();
            if !inner.is_empty() {
                return inner;
            }
        }
    }
    vec![format!("schema: at {}: {e}", e.instance_path())]
}

const AGENT_ONLY: &[&str] = &[
    "model_name",
    "reasoning_effort",
    "reasoning_content",
    "tool_calls",
    "metrics",
];

fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

fn check_trajectory(
    t: &Value,
    at: &str,
    problems: &mut Vec<String>,
    embedded: &mut BTreeSet<String>,
    refs: &mut Vec<(String, String)>,
) {
    if t["schema_version"] != "ATIF-v1.8" {
        problems.push(format!(
            "{at}.schema_version: expected \"ATIF-v1.8\", found {}",
            t["schema_version"]
        ));
    }
    let Some(steps) = t["steps"].as_array() else {
        problems.push(format!("{at}.steps: missing"));
        return;
    };
    if steps.is_empty() {
        problems.push(format!("{at}.steps: empty"));
    }
    for (i, s) in steps.iter().enumerate() {
        let here = format!("{at}.steps[{i}]");
        // Rule 1: sequential ids from 1.
        if s["step_id"].as_u64() != Some(i as u64 + 1) {
            problems.push(format!(
                "{here}.step_id: expected {}, found {}",
                i + 1,
                s["step_id"]
            ));
        }
        // Rule 2: agent-only fields.
        if s["source"] != "agent" {
            for key in AGENT_ONLY {
                if present(s, key) {
                    problems.push(format!(
                        "{here}.{key}: only agent steps may have it (source {})",
                        s["source"]
                    ));
                }
            }
        } else if s["llm_call_count"] == 0 {
            // Rule 3.
            for key in ["metrics", "reasoning_content"] {
                if present(s, key) {
                    problems.push(format!("{here}.{key}: not allowed with llm_call_count 0"));
                }
            }
        }
        if let Some(ts) = s["timestamp"].as_str()
            && chrono::DateTime::parse_from_rfc3339(ts).is_err()
        {
            problems.push(format!("{here}.timestamp: {ts:?} is not ISO 8601"));
        }
        // Rule 4: observations answer this step's calls.
        let call_ids: Vec<&str> = s["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|c| c["tool_call_id"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let unique: BTreeSet<&str> = call_ids.iter().copied().collect();
        if unique.len() != call_ids.len() {
            problems.push(format!(
                "{here}.tool_calls: duplicate tool_call_id in {call_ids:?}"
            ));
        }
        for (j, r) in s["observation"]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let rhere = format!("{here}.observation.results[{j}]");
            if let Some(id) = r["source_call_id"].as_str()
                && !unique.contains(id)
            {
                problems.push(format!(
                    "{rhere}.source_call_id: {id:?} is not a tool_call_id of this step ({call_ids:?})"
                ));
            }
            // Rule 6, and collect refs to resolve.
            for (k, rf) in r["subagent_trajectory_ref"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let refhere = format!("{rhere}.subagent_trajectory_ref[{k}]");
                match rf["trajectory_id"].as_str() {
                    Some(id) => refs.push((refhere, id.to_owned())),
                    None if present(rf, "trajectory_path") => {}
                    None => problems.push(format!(
                        "{refhere}: needs a trajectory_id or a trajectory_path"
                    )),
                }
            }
        }
    }
    if let Some(total) = t["final_metrics"]["total_steps"].as_u64()
        && total != steps.len() as u64
        && !present(t, "notes")
    {
        problems.push(format!(
            "{at}.final_metrics.total_steps: {total} but {} steps (and no notes)",
            steps.len()
        ));
    }
    // Rule 5: embedded subagents have unique, non-null ids (checked over the whole tree, so
    // that every reference resolves to exactly one trajectory).
    for (i, sub) in t["subagent_trajectories"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let here = format!("{at}.subagent_trajectories[{i}]");
        match sub["trajectory_id"].as_str() {
            Some(id) => {
                if !embedded.insert(id.to_owned()) {
                    problems.push(format!("{here}.trajectory_id: {id:?} is not unique"));
                }
            }
            None => problems.push(format!("{here}.trajectory_id: missing or null")),
        }
        check_trajectory(sub, &here, problems, embedded, refs);
    }
}
