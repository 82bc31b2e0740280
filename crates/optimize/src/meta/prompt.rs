//! What a meta-agent session starts from: its instructions, the harness it runs with (host
//! tools only), and the first message (the harness, the ledger, a digest of failures).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use autoagent_agent::Harness;
use autoagent_agent::harness::{AgentSection, HarnessToml};
use autoagent_harbor::atif::Source;
use autoagent_harbor::{Trajectory, TrialDir, TrialResult};

use super::context::{MetaContext, list_files, read_trajectory_file, tail_lines, truncate};
use crate::evaluate::passed;
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

/// A condensed view of trajectory steps for the meta-agent.
pub fn render_steps(t: &Trajectory, from: u64, to: u64, max_chars: usize) -> String {
    let mut s = String::new();
    for step in t
        .steps
        .iter()
        .filter(|s| s.step_id >= from && s.step_id <= to)
    {
        let src = match step.source {
            Source::System => "system",
            Source::User => "user",
            Source::Agent => "agent",
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

/// Each train task's class from every attempt so far (stable-fail, flaky, stable-pass): where a
/// change can show, and where one run of a task says little.
fn stability_digest(ctx: &MetaContext) -> String {
    let model = crate::history::History::load(&ctx.jobs_dir).flakiness(ctx.flaky_prior);
    let mut by_class: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for name in ctx.train.name_set() {
        let t = model.task(&name);
        if t.attempts == 0 {
            continue;
        }
        by_class
            .entry(t.class.as_str())
            .or_default()
            .push(format!("{name} ({}/{})", t.passes, t.attempts));
    }
    if by_class.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Task stability (passes/attempts over every harness tried)\nA flaky task passes sometimes: one trial of it says little, and the loop gives it more attempts. Stable-fail tasks are where a change can gain.\n",
    );
    for class in ["stable-fail", "flaky", "stable-pass"] {
        if let Some(v) = by_class.get(class) {
            let _ = writeln!(s, "- {class}: {}", v.join(", "));
        }
    }
    s
}

/// The session's first message: the current harness, the last ledger rows, and a digest of the
/// incumbent's failed train trials.
pub fn first_message(ctx: &MetaContext, incumbent_job: Option<&Path>) -> String {
    let mut s = format!(
        "# Experiment {}\n\n## The current harness (harness/)\n",
        ctx.experiment.0
    );
    let mut files = Vec::new();
    list_files(&ctx.harness_dir, &ctx.harness_dir, &mut files);
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
    s.push_str(&stability_digest(ctx));
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
        if t.is_suspect() {
            let _ = writeln!(
                s,
                "INTEGRITY: SUSPECT, counted as a failure whatever its reward: the agent touched what the verifier reads or runs ({}). A harness that gets there by tampering with the verifier is never kept.",
                t.integrity_evidence().join("; ")
            );
        }
        let dir = job.join(&t.trial_name);
        if let Ok(traj) = read_trajectory_file(&dir) {
            let n = traj.steps.len() as u64;
            s.push_str(&render_steps(&traj, n.saturating_sub(2), n, 800));
        }
        let out = TrialDir::new(&dir).read_test_stdout().unwrap_or_default();
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
