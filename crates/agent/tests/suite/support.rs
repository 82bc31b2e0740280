//! Shared helpers: fixtures, one Docker sandbox per test (destroyed even when the test
//! panics), a model that records every request on top of the scripted one, and the ATIF
//! validator that every trajectory of these tests goes through.
//!
//! When a test panics, [`with_sandbox`] prints everything it gathered: for each run, the
//! error if any, every request the model received and the trajectory JSON (tool outputs
//! included), plus the output of the test's own sandbox commands.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoagent_agent::{Harness, Run, RunObserver, RunOutcome, Totals};
use autoagent_harbor::Trajectory;
use autoagent_llm::{ModelRequest, Role, ScriptedModel};
use autoagent_sandbox::{Backend, EnvironmentSpec, ExecOutput, ExecRequest, Sandbox};
pub use autoagent_test_support::{Recorder, assert_valid_atif, atif_problems};
use futures::FutureExt as _;
use serde_json::Value;

/// The base image of every test sandbox (Debian minbase + bash + python3).
pub const IMAGE: &str = "autoagent/debian:bookworm";
/// The sandbox's workdir (Docker creates it: the image has none).
pub const WORKDIR: &str = "/app";
/// A run that takes longer than this is stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

pub fn fixture(rel: &str) -> PathBuf {
    autoagent_test_support::fixture!(rel)
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
    let Some(backend) = autoagent_test_support::docker_backend().await else {
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
    autoagent_test_support::clip(s, 4000)
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
