//! `finish`: the agent says it is done, with its answer. It needs no sandbox, so the loop
//! calls [`answer`] itself, in host-only sessions too.

use serde_json::{Value, json};

use super::{Builtin, ToolContext, ToolError, ToolOutput};

pub(crate) struct Finish;

/// The tool's name, for the loop that handles it before any sandbox tool.
pub(crate) const NAME: &str = "finish";

/// The result of a `finish` call: the answer (empty when missing) ends the run.
pub(crate) fn answer(args: &Value) -> ToolOutput {
    let answer = args
        .get("answer")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    ToolOutput {
        content: "Finished.".to_owned(),
        is_error: false,
        finish: Some(answer),
    }
}

#[async_trait::async_trait]
impl Builtin for Finish {
    fn name(&self) -> &'static str {
        NAME
    }
    fn description(&self) -> &'static str {
        "Say that the task is done, with a short final answer or summary."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})
    }
    async fn call(&self, args: &Value, _ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {
        Ok(answer(args))
    }
}
