//! `bash`: a command in the task's sandbox, under the harness's time limit.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Builtin, ToolContext, ToolError, ToolOutput, format_exec, str_arg};

pub(crate) struct Bash;

#[async_trait::async_trait]
impl Builtin for Bash {
    fn name(&self) -> &'static str {
        "bash"
    }
    fn description(&self) -> &'static str {
        "Run a shell command (bash -c) in the task environment and get its stdout, stderr and exit code. \
         Commands do not share state: use absolute paths or `cd DIR && …`."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {
            "command": {"type": "string", "description": "The command line."},
            "timeout_sec": {"type": "number", "description": "Seconds before the command is killed (default and maximum set by the harness)."}
        }, "required": ["command"]})
    }
    async fn call(&self, args: &Value, ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {
        let command = str_arg(args, "command")?;
        let max = ctx.harness.config.bash.timeout_sec;
        let secs = args
            .get("timeout_sec")
            .and_then(Value::as_f64)
            .unwrap_or(max)
            .clamp(1.0, max);
        let out = ctx
            .exec(command.to_owned(), Duration::from_secs_f64(secs))
            .await?;
        let content = format_exec(&out);
        if out.timed_out {
            return Err(ToolError::RespondToModel(format!(
                "{content}\nthe command was killed after {secs} s"
            )));
        }
        Ok(ToolOutput {
            content,
            is_error: out.exit_code != Some(0),
            finish: None,
        })
    }
}
