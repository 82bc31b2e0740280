use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, spec};
use crate::meta::context::MetaContext;

pub(super) struct ReadTask;

#[async_trait]
impl MetaTool for ReadTask {
    fn spec(&self) -> ToolSpec {
        spec(
            "read_task",
            "A train task's instruction.",
            json!({"task": {"type": "string"}}),
            &["task"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let t = ctx.task(arg_str(args, "task")?)?;
        Ok(ToolOutput::ok(t.instruction.clone()))
    }
}
