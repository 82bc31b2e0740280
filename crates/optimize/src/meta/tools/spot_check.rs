use std::collections::BTreeSet;
use std::fmt::Write as _;

use async_trait::async_trait;
use autoagent_agent::Harness;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, outcome_columns, spec};
use crate::experiment::JobKind;
use crate::meta::context::MetaContext;

pub(super) struct SpotCheck;

#[async_trait]
impl MetaTool for SpotCheck {
    fn spec(&self) -> ToolSpec {
        spec(
            "spot_check",
            "Run the working-tree harness on a few train tasks now and report the results (costs model calls; use sparingly).",
            json!({"tasks": {"type": "array", "items": {"type": "string"}}, "attempts": {"type": "integer"}}),
            &["tasks"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let names: BTreeSet<String> = args
            .get("tasks")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return Err(ToolError::RespondToModel(
                "give at least one train task in `tasks`".into(),
            ));
        }
        for n in &names {
            ctx.task(n)?;
        }
        if let Err(e) = Harness::load(&ctx.harness_dir) {
            return Err(ToolError::RespondToModel(format!(
                "the harness does not validate:\n{e}"
            )));
        }
        // A fresh job each time, also across sessions: a resumed experiment must not pick up an
        // older spot check of another working tree.
        let k = (1..)
            .find(|k| {
                !ctx.jobs_dir
                    .join(ctx.experiment.job(JobKind::Spot(*k)))
                    .exists()
            })
            .unwrap_or(1);
        let attempts = args
            .get("attempts")
            .and_then(Value::as_u64)
            .map(|a| a.clamp(1, 5) as u32)
            .unwrap_or(ctx.spot_attempts);
        let job = ctx.experiment.job(JobKind::Spot(k));
        let s = ctx
            .evaluator
            .evaluate(
                &job,
                &ctx.harness_dir,
                &format!("working-tree-{k}"),
                &names,
                attempts,
                ctx.cancel.clone(),
            )
            .await
            .map_err(|e| ToolError::RespondToModel(format!("spot check failed: {e}")))?;
        let mut out = format!(
            "spot check {job}: {}/{} trials passed\n",
            s.passed, s.trials
        );
        for (t, p, n) in &s.task_scores {
            let _ = writeln!(out, "{t}: {p}/{n}");
        }
        for t in ctx.trials_of(&s.job_dir) {
            let _ = writeln!(out, "{}\t{}", t.trial_name, outcome_columns(&t));
        }
        Ok(ToolOutput::ok(out))
    }
}
