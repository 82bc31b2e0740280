use std::fmt::Write as _;

use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, spec};
use crate::meta::context::MetaContext;

pub(super) struct TaskMatrix;

#[async_trait]
impl MetaTool for TaskMatrix {
    fn spec(&self) -> ToolSpec {
        spec(
            "task_matrix",
            "Per train task, the passing trials of every experiment: which tasks fail always, which are flaky.",
            json!({}),
            &[],
        )
    }

    async fn call(&self, ctx: &MetaContext, _args: &Value) -> Result<ToolOutput, ToolError> {
        let l = crate::ledger::Ledger::load(&ctx.ledger_path)
            .map_err(|e| ToolError::RespondToModel(e.to_string()))?;
        let mut s = String::from("task");
        for r in &l.rows {
            let _ = write!(s, "\t{}({})", r.experiment().unwrap_or_default(), r.status);
        }
        for task in ctx.train.names() {
            let _ = write!(s, "\n{task}");
            for r in &l.rows {
                match r.task_scores.iter().find(|(t, _, _)| t == task) {
                    Some((_, p, n)) => {
                        let _ = write!(s, "\t{p}/{n}");
                    }
                    None => s.push_str("\t-"),
                }
            }
        }
        Ok(ToolOutput::ok(s))
    }
}
