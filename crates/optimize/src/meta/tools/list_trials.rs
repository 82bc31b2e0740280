use std::fmt::Write as _;

use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, outcome_columns, spec};
use crate::evaluate::passed;
use crate::experiment::ExperimentId;
use crate::meta::context::MetaContext;

pub(super) struct ListTrials;

#[async_trait]
impl MetaTool for ListTrials {
    fn spec(&self) -> ToolSpec {
        spec(
            "list_trials",
            "The trials of an experiment's evaluation (train tasks), with reward and error.",
            json!({"experiment": {"type": "integer"}, "outcome": {"type": "string", "enum": ["failed", "passed", "errored", "all"]}}),
            &["experiment"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let n = args
            .get("experiment")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| {
                ToolError::RespondToModel("missing integer argument `experiment`".into())
            })?;
        let job = ctx.evaluation(ExperimentId(n)).ok_or_else(|| {
            ToolError::RespondToModel(format!("experiment {n} has no evaluation"))
        })?;
        let outcome = args.get("outcome").and_then(Value::as_str).unwrap_or("all");
        let mut s = String::new();
        for t in ctx.trials_of(&job) {
            let keep = match outcome {
                "failed" => !passed(&t),
                "passed" => passed(&t),
                "errored" => t.exception_info.is_some(),
                _ => true,
            };
            if keep {
                let _ = writeln!(
                    s,
                    "{}\ttask={}\t{}",
                    t.trial_name,
                    t.task_name,
                    outcome_columns(&t)
                );
            }
        }
        Ok(ToolOutput::ok(if s.is_empty() {
            "no such trials".to_owned()
        } else {
            s
        }))
    }
}
