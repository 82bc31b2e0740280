//! `edit_file`: an exact string replaced in a file of the sandbox (see [`super::replace_exact`]).

use std::time::Duration;

use autoagent_sandbox::shell_quote;
use serde_json::{Value, json};

use super::{
    Builtin, EMPTY_OLD_STRING, ToolContext, ToolError, ToolOutput, read_whole, replace_exact,
    str_arg,
};

pub(crate) struct EditFile;

#[async_trait::async_trait]
impl Builtin for EditFile {
    fn name(&self) -> &'static str {
        "edit_file"
    }
    fn description(&self) -> &'static str {
        "Replace an exact string in a file. `old_string` must occur exactly once unless `replace_all` is true."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {
            "path": {"type": "string"},
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
            "replace_all": {"type": "boolean"}
        }, "required": ["path", "old_string", "new_string"]})
    }
    async fn call(&self, args: &Value, ctx: &ToolContext<'_>) -> Result<ToolOutput, ToolError> {
        let path = ctx.resolve(str_arg(args, "path")?);
        let old = str_arg(args, "old_string")?;
        let new = str_arg(args, "new_string")?;
        let all = args
            .get("replace_all")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // Checked before the file is read: no round trip for a call that cannot succeed.
        if old.is_empty() {
            return Err(ToolError::RespondToModel(EMPTY_OLD_STRING.into()));
        }
        // A cut read would be written back cut: refuse rather than lose the rest.
        let text = read_whole(ctx, &path, self.name(), "edit it with bash (sed, python…)").await?;
        let (updated, n) =
            replace_exact(&text, old, new, all, &path).map_err(ToolError::RespondToModel)?;
        // Written beside it and copied over, so the file keeps its mode and owner.
        let tmp = format!("{path}.autoagent-edit");
        ctx.sandbox
            .write_file(&tmp, updated.as_bytes(), 0o644)
            .await?;
        let mv = ctx
            .exec(
                format!(
                    "cat -- {t} > {p} && rm -f -- {t}",
                    t = shell_quote(&tmp),
                    p = shell_quote(&path)
                ),
                Duration::from_secs(60),
            )
            .await?;
        if mv.exit_code != Some(0) {
            return Err(ToolError::RespondToModel(format!(
                "cannot write {path}: {}",
                mv.stderr.trim()
            )));
        }
        Ok(ToolOutput::ok(format!(
            "replaced {n} occurrence(s) in {path}"
        )))
    }
}
