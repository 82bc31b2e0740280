//! `read_file`: a text file of the sandbox, whole or a range of lines.

use serde_json::{Value, json};

use super::{Builtin, ToolContext, ToolError, ToolOutput, read_whole, str_arg};

pub(crate) struct ReadFile;

#[async_trait::async_trait]
impl Builtin for ReadFile {
    fn name(&self) -> &'static str {
        "read_file"
    }
    fn description(&self) -> &'static str {
        "Read a text file. Optionally a range of lines (1-based, inclusive)."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {
            "path": {"type": "string"},
            "start_line": {"type": "integer"},
            "end_line": {"type": "integer"}
        }, "required": ["path"]})
    }
    async fn call(&self, args: &Value, ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {
        let path = ctx.resolve(str_arg(args, "path")?);
        // Cut output would look like the whole file: say so, so the model reads parts.
        let text = read_whole(
            ctx,
            &path,
            self.name(),
            "read parts of it with bash (head, tail, sed -n, grep)",
        )
        .await?;
        let start = args.get("start_line").and_then(Value::as_u64);
        let end = args.get("end_line").and_then(Value::as_u64);
        if start.is_none() && end.is_none() {
            return Ok(ToolOutput::ok(text));
        }
        let from = start.unwrap_or(1).max(1) as usize;
        let to = end.map(|e| e as usize).unwrap_or(usize::MAX);
        let lines: Vec<&str> = text
            .lines()
            .skip(from - 1)
            .take(to.saturating_sub(from - 1))
            .collect();
        Ok(ToolOutput::ok(lines.join("\n")))
    }
}
