//! The meta-agent: one fresh session per experiment, on the same runtime as the task agent,
//! with tools that read the ledger, results and trajectories of the train tasks, and read and
//! write files inside `harness/` only. It proposes; the loop decides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use autoagent_agent::harness::{AgentSection, HarnessToml};
use autoagent_agent::tools::{HostTool, ToolError, ToolOutput};
use autoagent_agent::{Harness, Trajectory};
use autoagent_harbor::{Task, TrialResult};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::evaluate::{Evaluator, passed};
use crate::ledger::Ledger;

/// The meta-agent's built-in instructions; the user's `program.md` follows them.
pub const META_PROMPT: &str = "You are the meta-agent of autoagent. You improve a task agent's \
harness — its prompts, tools and settings in harness/ — so that it solves more tasks of the kind \
described in the program below. Each session you make ONE focused change; the loop then \
evaluates it on the train tasks (several attempts each) and keeps it only if more trials pass, \
or as many pass and the harness is smaller. You do not decide; the score does.

How to work:
1. Read the failure digest, then dig into failed trials: read_trajectory, read_verifier_output, \
grep_trajectories, list_trials, task_matrix, ledger. Find a failure pattern shared by several \
tasks, and its cause in the harness.
2. Change the harness with read_file / write_file / edit_file / list_files (paths are relative \
to harness/). The harness format: harness.toml ([agent] system_prompt, max_turns, tools = \
built-ins among bash, read_file, write_file, edit_file, list_dir, finish; [verify] enabled, prompt, \
bonus_turns; [context] max_tool_output_chars, compact_at_tokens; [[subagents]] name, description, \
system_prompt, tools, max_turns), prompts/*.md, and custom tools tools/NAME.toml (description, \
script, interpreter, [parameters] JSON schema) with their scripts, which run inside the task's \
sandbox with the JSON arguments on stdin.
3. Run validate_harness. Optionally spot_check a few train tasks with your working-tree harness.
4. Call finish with a one-line description of the change and why it is general.

Rules: never put task-specific content in the harness (task names, expected outputs, file names \
from tests) — a mechanical guard rejects it. Ask: if this exact task disappeared, would this \
still be a worthwhile harness improvement? Prefer removing what does not help.";

/// The steering note a user leaves for the next sessions (from `autoagent view`), in the state
/// dir: read along with `program.md` by every session that starts while it is there.
pub const STEERING_FILE: &str = "steering.md";

/// `program` followed by the steering note in `state_dir`, when there is one.
pub fn with_steering(program: String, state_dir: &Path) -> String {
    match std::fs::read_to_string(state_dir.join(STEERING_FILE)) {
        Ok(note) if !note.trim().is_empty() => format!(
            "{program}\n\n## Steering note (from the user, for this session)\n\n{}\n",
            note.trim()
        ),
        _ => program,
    }
}

/// What a session proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub description: String,
    pub rationale: String,
}

/// Everything the meta-agent's tools may see. Holdout tasks are not in it except as names to
/// refuse.
pub struct MetaContext {
    pub harness_dir: PathBuf,
    pub jobs_dir: PathBuf,
    pub ledger_path: PathBuf,
    /// Train tasks by name.
    pub train: BTreeMap<String, Task>,
    pub holdout: BTreeSet<String>,
    pub evaluator: Arc<Evaluator>,
    pub experiment: u32,
    pub spot_attempts: u32,
    pub spot_checks: Mutex<u32>,
    pub proposal: Mutex<Option<Proposal>>,
    pub cancel: CancellationToken,
}

impl MetaContext {
    fn check_task(&self, task: &str) -> Result<&Task, ToolError> {
        if self.holdout.contains(task) {
            return Err(ToolError::RespondToModel(format!(
                "`{task}` is not a train task"
            )));
        }
        self.train
            .get(task)
            .ok_or_else(|| ToolError::RespondToModel(format!("no train task named `{task}`")))
    }

    /// Train job dirs, newest first (`exp-NNNN` and spot checks; never holdout jobs).
    fn train_jobs(&self) -> Vec<PathBuf> {
        let mut jobs: Vec<PathBuf> = std::fs::read_dir(&self.jobs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.is_dir() && n.starts_with("exp-") && !n.ends_with("-holdout")
            })
            .collect();
        jobs.sort();
        jobs.reverse();
        jobs
    }

    fn trials_of(&self, job: &Path) -> Vec<TrialResult> {
        let mut out: Vec<TrialResult> = std::fs::read_dir(job)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("result.json")).ok())
            .filter_map(|t| serde_json::from_str::<TrialResult>(&t).ok())
            .filter(|t| self.train.contains_key(&t.task_name))
            .collect();
        out.sort_by(|a, b| (&a.task_name, &a.trial_name).cmp(&(&b.task_name, &b.trial_name)));
        out
    }

    /// A trial dir by name, in train jobs only, of a train task.
    fn trial_dir(&self, trial: &str) -> Result<PathBuf, ToolError> {
        if trial.contains('/') || trial.contains("..") {
            return Err(ToolError::RespondToModel(format!(
                "`{trial}` is not a trial name"
            )));
        }
        // A holdout trial gets the same answer as a trial that does not exist.
        for job in self.train_jobs() {
            let d = job.join(trial);
            if let Ok(t) = std::fs::read_to_string(d.join("result.json"))
                && let Ok(r) = serde_json::from_str::<TrialResult>(&t)
                && self.train.contains_key(&r.task_name)
            {
                return Ok(d);
            }
        }
        Err(ToolError::RespondToModel(format!(
            "no trial named `{trial}` (list_trials shows them)"
        )))
    }

    /// `rel` inside harness/, refusing absolute paths, `..`, `.git` and anything that resolves
    /// (through symlinks) outside.
    pub fn harness_path(&self, rel: &str) -> Result<PathBuf, ToolError> {
        let refuse = |why: &str| {
            Err(ToolError::RespondToModel(format!(
                "refused: {rel:?} {why}; paths are relative to harness/ and stay inside it"
            )))
        };
        let p = Path::new(rel);
        if rel.is_empty() {
            return Ok(self.harness_dir.clone());
        }
        if p.is_absolute() {
            return refuse("is absolute");
        }
        for c in p.components() {
            match c {
                Component::ParentDir => return refuse("goes up with `..`"),
                Component::Normal(n) if n == ".git" => return refuse("is inside .git"),
                // Git's own control files would let a change hide from the leak guard.
                Component::Normal(n) if n == ".gitignore" || n == ".gitattributes" => {
                    return refuse("is a git control file");
                }
                Component::Normal(_) | Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return refuse("is absolute"),
            }
        }
        let root = self
            .harness_dir
            .canonicalize()
            .map_err(|e| ToolError::RespondToModel(format!("harness dir: {e}")))?;
        let full = self.harness_dir.join(p);
        // The nearest existing ancestor (the path itself when it exists) must resolve inside.
        let mut probe = full.clone();
        loop {
            if std::fs::symlink_metadata(&probe).is_ok() {
                let real = probe.canonicalize().map_err(|_| {
                    ToolError::RespondToModel(format!("refused: {rel:?} is a broken link"))
                })?;
                if !real.starts_with(&root) {
                    return refuse("resolves outside harness/ (a symlink)");
                }
                break;
            }
            if !probe.pop() {
                return refuse("cannot be resolved");
            }
        }
        Ok(full)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max / 2).collect();
    let tail: String = s.chars().skip(s.chars().count() - max / 2).collect();
    format!("{head}\n[... truncated ...]\n{tail}")
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::RespondToModel(format!("missing string argument `{key}`")))
}

/// A condensed view of trajectory steps for the meta-agent.
pub fn render_steps(t: &Trajectory, from: u64, to: u64, max_chars: usize) -> String {
    let mut s = String::new();
    for step in t
        .steps
        .iter()
        .filter(|s| s.step_id >= from && s.step_id <= to)
    {
        let src = match step.source {
            autoagent_agent::trajectory::Source::System => "system",
            autoagent_agent::trajectory::Source::User => "user",
            autoagent_agent::trajectory::Source::Agent => "agent",
        };
        let _ = writeln!(s, "--- step {} ({src})", step.step_id);
        if !step.message.is_empty() {
            let _ = writeln!(s, "{}", truncate(&step.message, max_chars));
        }
        for c in step.tool_calls.iter().flatten() {
            let _ = writeln!(
                s,
                "> {}({})",
                c.function_name,
                truncate(&c.arguments.to_string(), max_chars)
            );
        }
        for r in step.observation.iter().flat_map(|o| o.results.iter()) {
            let err = r
                .extra
                .as_ref()
                .and_then(|e| e.get("is_error"))
                .is_some_and(|v| v == true);
            let _ = writeln!(
                s,
                "< {}{}",
                if err { "[error] " } else { "" },
                truncate(r.content.as_deref().unwrap_or(""), max_chars)
            );
        }
    }
    s
}

fn read_trajectory_file(dir: &Path) -> Result<Trajectory, ToolError> {
    let p = dir.join("agent/trajectory.json");
    let text = autoagent_sandbox::read_shared(&p).map_err(|_| {
        ToolError::RespondToModel("this trial has no trajectory (the agent did not start)".into())
    })?;
    serde_json::from_str(&text)
        .map_err(|e| ToolError::RespondToModel(format!("unreadable trajectory: {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ledger,
    TaskMatrix,
    ListTrials,
    ReadTrajectory,
    GrepTrajectories,
    ReadVerifierOutput,
    ReadTask,
    ReadFile,
    WriteFile,
    EditFile,
    ListFiles,
    ValidateHarness,
    SpotCheck,
    Finish,
}

const KINDS: &[Kind] = &[
    Kind::Ledger,
    Kind::TaskMatrix,
    Kind::ListTrials,
    Kind::ReadTrajectory,
    Kind::GrepTrajectories,
    Kind::ReadVerifierOutput,
    Kind::ReadTask,
    Kind::ReadFile,
    Kind::WriteFile,
    Kind::EditFile,
    Kind::ListFiles,
    Kind::ValidateHarness,
    Kind::SpotCheck,
    Kind::Finish,
];

/// One meta-agent tool.
pub struct MetaTool {
    kind: Kind,
    ctx: Arc<MetaContext>,
}

/// Every meta-agent tool over one context.
pub fn tools(ctx: Arc<MetaContext>) -> Vec<Arc<dyn HostTool>> {
    KINDS
        .iter()
        .map(|k| {
            Arc::new(MetaTool {
                kind: *k,
                ctx: ctx.clone(),
            }) as Arc<dyn HostTool>
        })
        .collect()
}

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    }
}

#[async_trait]
impl HostTool for MetaTool {
    fn spec(&self) -> ToolSpec {
        let obj = |props: Value, req: &[&str]| json!({"type": "object", "properties": props, "required": req});
        match self.kind {
            Kind::Ledger => spec(
                "ledger",
                "The ledger (results.tsv): one row per experiment with its score, status and description.",
                obj(
                    json!({"last": {"type": "integer", "description": "Only the last N rows (default 30)."}}),
                    &[],
                ),
            ),
            Kind::TaskMatrix => spec(
                "task_matrix",
                "Per train task, the passing trials of every experiment: which tasks fail always, which are flaky.",
                obj(json!({}), &[]),
            ),
            Kind::ListTrials => spec(
                "list_trials",
                "The trials of an experiment's evaluation (train tasks), with reward and error.",
                obj(
                    json!({"experiment": {"type": "integer"}, "outcome": {"type": "string", "enum": ["failed", "passed", "errored", "all"]}}),
                    &["experiment"],
                ),
            ),
            Kind::ReadTrajectory => spec(
                "read_trajectory",
                "Steps of a trial's trajectory: messages, tool calls and outputs.",
                obj(
                    json!({"trial": {"type": "string"}, "start_step": {"type": "integer"}, "end_step": {"type": "integer"}}),
                    &["trial"],
                ),
            ),
            Kind::GrepTrajectories => spec(
                "grep_trajectories",
                "Find a text in the trajectories of an experiment's trials (default: the latest).",
                obj(
                    json!({"pattern": {"type": "string"}, "experiment": {"type": "integer"}, "max_results": {"type": "integer"}}),
                    &["pattern"],
                ),
            ),
            Kind::ReadVerifierOutput => spec(
                "read_verifier_output",
                "The verifier's output (tests/test.sh stdout and stderr) and rewards of a trial.",
                obj(json!({"trial": {"type": "string"}}), &["trial"]),
            ),
            Kind::ReadTask => spec(
                "read_task",
                "A train task's instruction.",
                obj(json!({"task": {"type": "string"}}), &["task"]),
            ),
            Kind::ReadFile => spec(
                "read_file",
                "Read a file of the harness (path relative to harness/).",
                obj(json!({"path": {"type": "string"}}), &["path"]),
            ),
            Kind::WriteFile => spec(
                "write_file",
                "Write a file of the harness (path relative to harness/), creating directories.",
                obj(
                    json!({"path": {"type": "string"}, "content": {"type": "string"}}),
                    &["path", "content"],
                ),
            ),
            Kind::EditFile => spec(
                "edit_file",
                "Replace an exact string in a harness file; it must occur once unless replace_all.",
                obj(
                    json!({"path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}, "replace_all": {"type": "boolean"}}),
                    &["path", "old_string", "new_string"],
                ),
            ),
            Kind::ListFiles => spec(
                "list_files",
                "List the harness's files (or those under a sub-folder).",
                obj(json!({"path": {"type": "string"}}), &[]),
            ),
            Kind::ValidateHarness => spec(
                "validate_harness",
                "Check the working-tree harness: every problem with its file and field, or its size when valid.",
                obj(json!({}), &[]),
            ),
            Kind::SpotCheck => spec(
                "spot_check",
                "Run the working-tree harness on a few train tasks now and report the results (costs model calls; use sparingly).",
                obj(
                    json!({"tasks": {"type": "array", "items": {"type": "string"}}, "attempts": {"type": "integer"}}),
                    &["tasks"],
                ),
            ),
            Kind::Finish => spec(
                "finish",
                "End the session: a one-line description of your change, and why it is general (not tied to particular tasks).",
                obj(
                    json!({"description": {"type": "string"}, "rationale": {"type": "string"}}),
                    &["description", "rationale"],
                ),
            ),
        }
    }

    async fn call(&self, args: &Value) -> Result<ToolOutput, ToolError> {
        let ctx = &self.ctx;
        match self.kind {
            Kind::Ledger => {
                let l = Ledger::load(&ctx.ledger_path)
                    .map_err(|e| ToolError::RespondToModel(e.to_string()))?;
                let last = args.get("last").and_then(Value::as_u64).unwrap_or(30) as usize;
                let mut s = crate::ledger::HEADER.join("\t");
                for r in &l.rows[l.rows.len().saturating_sub(last)..] {
                    s.push('\n');
                    s.push_str(&r.to_tsv());
                }
                Ok(ToolOutput::ok(s))
            }
            Kind::TaskMatrix => {
                let l = Ledger::load(&ctx.ledger_path)
                    .map_err(|e| ToolError::RespondToModel(e.to_string()))?;
                let mut s = String::from("task");
                for r in &l.rows {
                    let _ = write!(s, "\texp-{:04}({})", r.experiment().unwrap_or(0), r.status);
                }
                for task in ctx.train.keys() {
                    let _ = write!(s, "\n{task}");
                    for r in &l.rows {
                        match r.task_scores.iter().find(|(t, _, _)| t == task) {
                            Some((_, p, n)) => {
                                let _ = write!(s, "\t{p}/{n}");
                            }
                            None => s.push_str("\t-"),
                        }
                    }
                }
                Ok(ToolOutput::ok(s))
            }
            Kind::ListTrials => {
                let n = args
                    .get("experiment")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| {
                        ToolError::RespondToModel("missing integer argument `experiment`".into())
                    })?;
                let job = ctx.jobs_dir.join(format!("exp-{n:04}"));
                if !job.is_dir() {
                    return Err(ToolError::RespondToModel(format!(
                        "experiment {n} has no evaluation"
                    )));
                }
                let outcome = args.get("outcome").and_then(Value::as_str).unwrap_or("all");
                let mut s = String::new();
                for t in ctx.trials_of(&job) {
                    let keep = match outcome {
                        "failed" => !passed(&t),
                        "passed" => passed(&t),
                        "errored" => t.exception_info.is_some(),
                        _ => true,
                    };
                    if keep {
                        let _ = writeln!(
                            s,
                            "{}\ttask={}\treward={}\terror={}",
                            t.trial_name,
                            t.task_name,
                            t.reward()
                                .map(|r| r.to_string())
                                .unwrap_or_else(|| "-".into()),
                            t.exception_type().unwrap_or("-")
                        );
                    }
                }
                Ok(ToolOutput::ok(if s.is_empty() {
                    "no such trials".to_owned()
                } else {
                    s
                }))
            }
            Kind::ReadTrajectory => {
                let dir = ctx.trial_dir(arg_str(args, "trial")?)?;
                let t = read_trajectory_file(&dir)?;
                let from = args.get("start_step").and_then(Value::as_u64).unwrap_or(1);
                let to = args
                    .get("end_step")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                Ok(ToolOutput::ok(format!(
                    "{} steps in all\n{}",
                    t.steps.len(),
                    render_steps(&t, from, to, 4000)
                )))
            }
            Kind::GrepTrajectories => {
                let pattern = arg_str(args, "pattern")?;
                let max = args
                    .get("max_results")
                    .and_then(Value::as_u64)
                    .unwrap_or(50) as usize;
                let job = match args.get("experiment").and_then(Value::as_u64) {
                    Some(n) => ctx.jobs_dir.join(format!("exp-{n:04}")),
                    None => ctx
                        .train_jobs()
                        .into_iter()
                        .find(|j| {
                            j.file_name()
                                .is_some_and(|n| !n.to_string_lossy().contains("spot"))
                        })
                        .unwrap_or_default(),
                };
                let mut hits = Vec::new();
                'outer: for t in ctx.trials_of(&job) {
                    let Ok(traj) = read_trajectory_file(&job.join(&t.trial_name)) else {
                        continue;
                    };
                    for step in &traj.steps {
                        let texts =
                            std::iter::once(step.message.clone())
                                .chain(
                                    step.tool_calls
                                        .iter()
                                        .flatten()
                                        .map(|c| c.arguments.to_string()),
                                )
                                .chain(step.observation.iter().flat_map(|o| {
                                    o.results.iter().filter_map(|r| r.content.clone())
                                }));
                        for text in texts {
                            for line in text.lines().filter(|l| l.contains(pattern)) {
                                hits.push(format!(
                                    "{} step {}: {}",
                                    t.trial_name,
                                    step.step_id,
                                    truncate(line.trim(), 300)
                                ));
                                if hits.len() >= max {
                                    break 'outer;
                                }
                            }
                        }
                    }
                }
                Ok(ToolOutput::ok(if hits.is_empty() {
                    format!("no match for {pattern:?}")
                } else {
                    hits.join("\n")
                }))
            }
            Kind::ReadVerifierOutput => {
                let dir = ctx.trial_dir(arg_str(args, "trial")?)?;
                let out = autoagent_sandbox::read_shared(&dir.join("verifier/test-stdout.txt"))
                    .unwrap_or_else(|_| "(no verifier output)".into());
                let r: Option<TrialResult> = std::fs::read_to_string(dir.join("result.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                let rewards = r
                    .as_ref()
                    .and_then(|r| r.rewards())
                    .map(|r| serde_json::to_string(r).unwrap_or_default())
                    .unwrap_or_else(|| "none".into());
                Ok(ToolOutput::ok(format!(
                    "rewards: {rewards}\n{}",
                    tail_lines(&out, 200)
                )))
            }
            Kind::ReadTask => {
                let t = ctx.check_task(arg_str(args, "task")?)?;
                Ok(ToolOutput::ok(t.instruction.clone()))
            }
            Kind::ReadFile => {
                let p = ctx.harness_path(arg_str(args, "path")?)?;
                std::fs::read_to_string(&p)
                    .map(ToolOutput::ok)
                    .map_err(|e| ToolError::RespondToModel(format!("cannot read: {e}")))
            }
            Kind::WriteFile => {
                let rel = arg_str(args, "path")?;
                let p = ctx.harness_path(rel)?;
                let content = arg_str(args, "content")?;
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        ToolError::RespondToModel(format!(
                            "cannot create {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                // Re-checked after the directories exist: a symlinked dir cannot smuggle the write out.
                let p = ctx.harness_path(rel)?;
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(ToolError::RespondToModel(format!(
                        "refused: {rel:?} is a symlink"
                    )));
                }
                std::fs::write(&p, content)
                    .map_err(|e| ToolError::RespondToModel(format!("cannot write: {e}")))?;
                Ok(ToolOutput::ok(format!(
                    "wrote {} bytes to {rel}",
                    content.len()
                )))
            }
            Kind::EditFile => {
                let rel = arg_str(args, "path")?;
                let p = ctx.harness_path(rel)?;
                if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(ToolError::RespondToModel(format!(
                        "refused: {rel:?} is a symlink"
                    )));
                }
                let old = arg_str(args, "old_string")?;
                let new = arg_str(args, "new_string")?;
                let all = args
                    .get("replace_all")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| ToolError::RespondToModel(format!("cannot read: {e}")))?;
                let (updated, _) = autoagent_agent::tools::replace_exact(&text, old, new, all, rel)
                    .map_err(ToolError::RespondToModel)?;
                std::fs::write(&p, updated)
                    .map_err(|e| ToolError::RespondToModel(format!("cannot write: {e}")))?;
                Ok(ToolOutput::ok(format!("edited {rel}")))
            }
            Kind::ListFiles => {
                let rel = args.get("path").and_then(Value::as_str).unwrap_or("");
                let root = ctx.harness_path(rel)?;
                let mut files = Vec::new();
                list(&root, &ctx.harness_dir, &mut files);
                files.sort();
                Ok(ToolOutput::ok(files.join("\n")))
            }
            Kind::ValidateHarness => match Harness::load(&ctx.harness_dir) {
                Ok(h) => Ok(ToolOutput::ok(format!(
                    "valid; size {}",
                    crate::size::measure(&h).total()
                ))),
                Err(e) => Ok(ToolOutput::error(e.to_string())),
            },
            Kind::SpotCheck => {
                let names: Vec<String> = args
                    .get("tasks")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                if names.is_empty() {
                    return Err(ToolError::RespondToModel(
                        "give at least one train task in `tasks`".into(),
                    ));
                }
                for n in &names {
                    ctx.check_task(n)?;
                }
                if let Err(e) = Harness::load(&ctx.harness_dir) {
                    return Err(ToolError::RespondToModel(format!(
                        "the harness does not validate:\n{e}"
                    )));
                }
                let k = {
                    let mut c = ctx
                        .spot_checks
                        .lock()
                        .map_err(|_| ToolError::RespondToModel("busy".into()))?;
                    *c += 1;
                    // A fresh job each time, also across sessions (a resumed experiment must
                    // not pick up an older spot check of another working tree).
                    let mut k = 1;
                    while ctx
                        .jobs_dir
                        .join(format!("exp-{:04}-spot-{k}", ctx.experiment))
                        .exists()
                    {
                        k += 1;
                    }
                    k
                };
                let attempts = args
                    .get("attempts")
                    .and_then(Value::as_u64)
                    .map(|a| a.clamp(1, 5) as u32)
                    .unwrap_or(ctx.spot_attempts);
                let job = format!("exp-{:04}-spot-{k}", ctx.experiment);
                let set: BTreeSet<String> = names.into_iter().collect();
                let s = ctx
                    .evaluator
                    .evaluate(
                        &job,
                        &ctx.harness_dir,
                        &format!("working-tree-{k}"),
                        &set,
                        attempts,
                        ctx.cancel.clone(),
                    )
                    .await
                    .map_err(|e| ToolError::RespondToModel(format!("spot check failed: {e}")))?;
                let mut out = format!(
                    "spot check {job}: {}/{} trials passed\n",
                    s.passed, s.trials
                );
                for (t, p, n) in &s.task_scores {
                    let _ = writeln!(out, "{t}: {p}/{n}");
                }
                for t in ctx.trials_of(&s.job_dir) {
                    let _ = writeln!(
                        out,
                        "{}\treward={}\terror={}",
                        t.trial_name,
                        t.reward()
                            .map(|r| r.to_string())
                            .unwrap_or_else(|| "-".into()),
                        t.exception_type().unwrap_or("-")
                    );
                }
                Ok(ToolOutput::ok(out))
            }
            Kind::Finish => {
                let description = arg_str(args, "description")?.trim().to_owned();
                let rationale = arg_str(args, "rationale")?.trim().to_owned();
                if description.is_empty() {
                    return Err(ToolError::RespondToModel(
                        "`description` must say what changed".into(),
                    ));
                }
                if let Ok(mut p) = ctx.proposal.lock() {
                    *p = Some(Proposal {
                        description: description.clone(),
                        rationale,
                    });
                }
                Ok(ToolOutput {
                    content: "Session finished; the change will be evaluated.".into(),
                    is_error: false,
                    finish: Some(description),
                })
            }
        }
    }
}

fn list(dir: &Path, root: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        if p.is_dir() {
            list(&p, root, out);
        } else {
            out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
        }
    }
}

/// The harness the meta-agent itself runs with: no sandbox tools, only the host tools.
pub fn meta_harness(harness_dir: &Path, program: &str, max_turns: u32) -> Harness {
    Harness {
        dir: harness_dir.to_path_buf(),
        config: HarnessToml {
            agent: AgentSection {
                model: None,
                system_prompt: String::new(),
                instruction_template: None,
                max_turns,
                tools: Vec::new(),
                temperature: None,
                max_tokens: None,
                reasoning_effort: None,
            },
            verify: Default::default(),
            // The tools cut their own output; spilling to a file the meta-agent cannot read
            // (it only reads harness/) would lose it.
            context: autoagent_agent::harness::ContextSection {
                max_tool_output_chars: 1_000_000,
                ..Default::default()
            },
            bash: Default::default(),
            subagents: Vec::new(),
        },
        system_prompt: format!("{META_PROMPT}\n\n# The program (from the user)\n\n{program}"),
        instruction_template: None,
        verify_prompt: None,
        script_tools: BTreeMap::new(),
        subagent_prompts: BTreeMap::new(),
    }
}

/// The session's first message: the current harness, the last ledger rows, and a digest of the
/// incumbent's failed train trials.
pub fn first_message(ctx: &MetaContext, incumbent_job: Option<&Path>) -> String {
    let mut s = format!(
        "# Experiment {}\n\n## The current harness (harness/)\n",
        ctx.experiment
    );
    let mut files = Vec::new();
    list(&ctx.harness_dir, &ctx.harness_dir, &mut files);
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(ctx.harness_dir.join(f)).unwrap_or_default();
        let _ = write!(s, "\n### {f}\n```\n{}\n```\n", truncate(&text, 6000));
    }
    if let Ok(l) = Ledger::load(&ctx.ledger_path) {
        let _ = write!(
            s,
            "\n## The last experiments (results.tsv)\n```\n{}",
            crate::ledger::HEADER.join("\t")
        );
        for r in &l.rows[l.rows.len().saturating_sub(10)..] {
            let _ = write!(s, "\n{}", r.to_tsv());
        }
        s.push_str("\n```\n");
    }
    s.push_str("\n## Failure digest (the current harness's failed train trials)\n");
    let Some(job) = incumbent_job else {
        s.push_str("(no evaluation yet)\n");
        return s;
    };
    let failed: Vec<TrialResult> = ctx
        .trials_of(job)
        .into_iter()
        .filter(|t| !passed(t))
        .collect();
    if failed.is_empty() {
        s.push_str("Every train trial passed. Look for a simplification that keeps the score.\n");
    }
    for t in failed.iter().take(20) {
        let _ = write!(
            s,
            "\n### {} (task {}): reward {}, error {}\n",
            t.trial_name,
            t.task_name,
            t.reward()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            t.exception_type().unwrap_or("-")
        );
        let dir = job.join(&t.trial_name);
        if let Ok(traj) = read_trajectory_file(&dir) {
            let n = traj.steps.len() as u64;
            s.push_str(&render_steps(&traj, n.saturating_sub(2), n, 800));
        }
        let out = autoagent_sandbox::read_shared(&dir.join("verifier/test-stdout.txt"))
            .unwrap_or_default();
        if !out.is_empty() {
            let _ = write!(s, "verifier output (tail):\n{}\n", tail_lines(&out, 15));
        }
    }
    if failed.len() > 20 {
        let _ = writeln!(
            s,
            "\n({} more failed trials: list_trials shows them)",
            failed.len() - 20
        );
    }
    s
}
