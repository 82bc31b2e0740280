use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, spec};
use crate::meta::context::MetaContext;

pub(super) struct ReadFile;

#[async_trait]
impl MetaTool for ReadFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "read_file",
            "Read a file of the harness (path relative to harness/).",
            json!({"path": {"type": "string"}}),
            &["path"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let p = ctx.harness_path(arg_str(args, "path")?)?;
        std::fs::read_to_string(&p)
            .map(ToolOutput::ok)
            .map_err(|e| ToolError::RespondToModel(format!("cannot read: {e}")))
    }
}
