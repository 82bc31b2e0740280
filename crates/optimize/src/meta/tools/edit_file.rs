use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, refuse_symlink, spec};
use crate::meta::context::MetaContext;

pub(super) struct EditFile;

#[async_trait]
impl MetaTool for EditFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "edit_file",
            "Replace an exact string in a harness file; it must occur once unless replace_all.",
            json!({"path": {"type": "string"}, "old_string": {"type": "string"}, "new_string": {"type": "string"}, "replace_all": {"type": "boolean"}}),
            &["path", "old_string", "new_string"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let rel = arg_str(args, "path")?;
        let p = ctx.harness_path(rel)?;
        refuse_symlink(&p, rel)?;
        let old = arg_str(args, "old_string")?;
        let new = arg_str(args, "new_string")?;
        let all = args
            .get("replace_all")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| ToolError::RespondToModel(format!("cannot read: {e}")))?;
        let (updated, _) = autoagent_agent::tools::replace_exact(&text, old, new, all, rel)
            .map_err(ToolError::RespondToModel)?;
        std::fs::write(&p, updated)
            .map_err(|e| ToolError::RespondToModel(format!("cannot write: {e}")))?;
        Ok(ToolOutput::ok(format!("edited {rel}")))
    }
}
