//! `list_dir`: `ls -la` of a directory of the sandbox.

use std::time::Duration;

use autoagent_sandbox::shell_quote;
use serde_json::{Value, json};

use super::{Builtin, ToolContext, ToolError, ToolOutput, str_arg};

pub(crate) struct ListDir;

#[async_trait::async_trait]
impl Builtin for ListDir {
    fn name(&self) -> &'static str {
        "list_dir"
    }
    fn description(&self) -> &'static str {
        "List a directory (names, sizes, types)."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    }
    async fn call(&self, args: &Value, ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {
        let path = ctx.resolve(str_arg(args, "path")?);
        let out = ctx
            .exec(
                format!("ls -la -- {}", shell_quote(&path)),
                Duration::from_secs(60),
            )
            .await?;
        if out.exit_code != Some(0) {
            return Err(ToolError::RespondToModel(format!(
                "cannot list {path}: {}",
                out.stderr.trim()
            )));
        }
        Ok(ToolOutput::ok(out.stdout))
    }
}
