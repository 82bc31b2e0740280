use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, spec};
use crate::meta::context::{MetaContext, read_trajectory_file};
use crate::meta::prompt::render_steps;

pub(super) struct ReadTrajectory;

#[async_trait]
impl MetaTool for ReadTrajectory {
    fn spec(&self) -> ToolSpec {
        spec(
            "read_trajectory",
            "Steps of a trial's trajectory: messages, tool calls and outputs.",
            json!({"trial": {"type": "string"}, "start_step": {"type": "integer"}, "end_step": {"type": "integer"}}),
            &["trial"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
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
}
