use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, refuse_symlink, spec};
use crate::meta::context::MetaContext;

pub(super) struct WriteFile;

#[async_trait]
impl MetaTool for WriteFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "write_file",
            "Write a file of the harness (path relative to harness/), creating directories.",
            json!({"path": {"type": "string"}, "content": {"type": "string"}}),
            &["path", "content"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let rel = arg_str(args, "path")?;
        let p = ctx.harness_path(rel)?;
        let content = arg_str(args, "content")?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                ToolError::RespondToModel(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // Re-checked after the directories exist: a symlinked dir cannot smuggle the write out.
        let p = ctx.harness_path(rel)?;
        refuse_symlink(&p, rel)?;
        std::fs::write(&p, content)
            .map_err(|e| ToolError::RespondToModel(format!("cannot write: {e}")))?;
        Ok(ToolOutput::ok(format!(
            "wrote {} bytes to {rel}",
            content.len()
        )))
    }
}
