//! The meta-agent's tools: one file a tool, each naming itself once in its spec; this registry
//! binds them to a session's [`MetaContext`].

use std::sync::Arc;

use async_trait::async_trait;
use autoagent_agent::tools::{HostTool, ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::context::MetaContext;

mod edit_file;
mod finish;
mod grep_trajectories;
mod ledger;
mod list_files;
mod list_trials;
mod read_file;
mod read_task;
mod read_trajectory;
mod read_verifier_output;
mod spot_check;
mod task_matrix;
mod validate_harness;
mod write_file;

pub use finish::Proposal;

/// One meta-agent tool: its spec (name, description, JSON schema) and what a call does.
#[async_trait]
trait MetaTool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError>;
}

/// Every tool, in the order the model is shown them.
fn registry() -> Vec<Box<dyn MetaTool>> {
    vec![
        Box::new(ledger::Ledger),
        Box::new(task_matrix::TaskMatrix),
        Box::new(list_trials::ListTrials),
        Box::new(read_trajectory::ReadTrajectory),
        Box::new(grep_trajectories::GrepTrajectories),
        Box::new(read_verifier_output::ReadVerifierOutput),
        Box::new(read_task::ReadTask),
        Box::new(read_file::ReadFile),
        Box::new(write_file::WriteFile),
        Box::new(edit_file::EditFile),
        Box::new(list_files::ListFiles),
        Box::new(validate_harness::ValidateHarness),
        Box::new(spot_check::SpotCheck),
        Box::new(finish::Finish),
    ]
}

/// A tool bound to a session's context, as the agent runtime calls it.
struct Bound {
    tool: Box<dyn MetaTool>,
    ctx: Arc<MetaContext>,
}

#[async_trait]
impl HostTool for Bound {
    fn spec(&self) -> ToolSpec {
        self.tool.spec()
    }
    async fn call(&self, args: &Value) -> Result<ToolOutput, ToolError> {
        self.tool.call(&self.ctx, args).await
    }
}

/// Every meta-agent tool over one context.
pub fn tools(ctx: Arc<MetaContext>) -> Vec<Arc<dyn HostTool>> {
    registry()
        .into_iter()
        .map(|tool| {
            Arc::new(Bound {
                tool,
                ctx: ctx.clone(),
            }) as Arc<dyn HostTool>
        })
        .collect()
}

fn spec(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters: json!({"type": "object", "properties": properties, "required": required}),
    }
}

fn arg_str<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::RespondToModel(format!("missing string argument `{key}`")))
}

fn refuse_symlink(path: &std::path::Path, rel: &str) -> Result<(), ToolError> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(ToolError::RespondToModel(format!(
            "refused: {rel:?} is a symlink"
        )));
    }
    Ok(())
}

/// `reward` and `error` of a trial as the listing tools print them, and the integrity flag
/// of a suspect trial (which the loop counts as a failure whatever its reward).
fn outcome_columns(t: &autoagent_harbor::TrialResult) -> String {
    let mut s = format!(
        "reward={}\terror={}",
        t.reward()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
        t.exception_type().unwrap_or("-")
    );
    if t.is_suspect() {
        s.push_str(&format!(
            "\tintegrity=suspect ({})",
            t.integrity_evidence().join("; ")
        ));
    }
    s
}
