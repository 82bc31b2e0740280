//! `write_file`: a file of the sandbox replaced whole, its directories created.

use serde_json::{Value, json};

use super::{Builtin, ToolContext, ToolError, ToolOutput, str_arg};

pub(crate) struct WriteFile;

#[async_trait::async_trait]
impl Builtin for WriteFile {
    fn name(&self) -> &'static str {
        "write_file"
    }
    fn description(&self) -> &'static str {
        "Write a file (creating its directories), replacing any content."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {
            "path": {"type": "string"},
            "content": {"type": "string"}
        }, "required": ["path", "content"]})
    }
    async fn call(&self, args: &Value, ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {
        let path = ctx.resolve(str_arg(args, "path")?);
        let content = str_arg(args, "content")?;
        ctx.sandbox
            .write_file(&path, content.as_bytes(), 0o644)
            .await?;
        Ok(ToolOutput::ok(format!(
            "wrote {} bytes to {path}",
            content.len()
        )))
    }
}
