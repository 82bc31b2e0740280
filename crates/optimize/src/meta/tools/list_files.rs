use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, spec};
use crate::meta::context::{self, MetaContext};

pub(super) struct ListFiles;

#[async_trait]
impl MetaTool for ListFiles {
    fn spec(&self) -> ToolSpec {
        spec(
            "list_files",
            "List the harness's files (or those under a sub-folder).",
            json!({"path": {"type": "string"}}),
            &[],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let rel = args.get("path").and_then(Value::as_str).unwrap_or("");
        let root = ctx.harness_path(rel)?;
        let mut files = Vec::new();
        context::list_files(&root, &ctx.harness_dir, &mut files);
        files.sort();
        Ok(ToolOutput::ok(files.join("\n")))
    }
}
