use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, spec};
use crate::meta::context::MetaContext;

pub(super) struct Ledger;

#[async_trait]
impl MetaTool for Ledger {
    fn spec(&self) -> ToolSpec {
        spec(
            "ledger",
            "The ledger (results.tsv): one row per experiment with its score, status and description.",
            json!({"last": {"type": "integer", "description": "Only the last N rows (default 30)."}}),
            &[],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let l = crate::ledger::Ledger::load(&ctx.ledger_path)
            .map_err(|e| ToolError::RespondToModel(e.to_string()))?;
        let last = args.get("last").and_then(Value::as_u64).unwrap_or(30) as usize;
        let mut s = crate::ledger::HEADER.join("\t");
        for r in &l.rows[l.rows.len().saturating_sub(last)..] {
            s.push('\n');
            s.push_str(&r.to_tsv());
        }
        Ok(ToolOutput::ok(s))
    }
}
