use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, spec};
use crate::experiment::{ExperimentId, JobKind};
use crate::meta::context::{MetaContext, read_trajectory_file, truncate};

pub(super) struct GrepTrajectories;

#[async_trait]
impl MetaTool for GrepTrajectories {
    fn spec(&self) -> ToolSpec {
        spec(
            "grep_trajectories",
            "Find a text in the trajectories of an experiment's trials (default: the latest).",
            json!({"pattern": {"type": "string"}, "experiment": {"type": "integer"}, "max_results": {"type": "integer"}}),
            &["pattern"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let pattern = arg_str(args, "pattern")?;
        let max = args
            .get("max_results")
            .and_then(Value::as_u64)
            .unwrap_or(50) as usize;
        let job = match args
            .get("experiment")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
        {
            Some(n) => ctx.evaluation(ExperimentId(n)),
            None => ctx
                .train_jobs()
                .into_iter()
                .find(|(_, kind, _)| *kind == JobKind::Train)
                .map(|(_, _, p)| p),
        };
        let no_match = format!("no match for {pattern:?}");
        let Some(job) = job else {
            return Ok(ToolOutput::ok(no_match));
        };
        let mut hits = Vec::new();
        'outer: for t in ctx.trials_of(&job) {
            let Ok(traj) = read_trajectory_file(&job.join(&t.trial_name)) else {
                continue;
            };
            for step in &traj.steps {
                let texts = std::iter::once(step.message.clone())
                    .chain(
                        step.tool_calls
                            .iter()
                            .flatten()
                            .map(|c| c.arguments.to_string()),
                    )
                    .chain(
                        step.observation
                            .iter()
                            .flat_map(|o| o.results.iter().filter_map(|r| r.content.clone())),
                    );
                for text in texts {
                    for line in text.lines().filter(|l| l.contains(pattern)) {
                        hits.push(format!(
                            "{} step {}: {}",
                            t.trial_name,
                            step.step_id,
                            truncate(line.trim(), 300)
                        ));
                        if hits.len() >= max {
                            break 'outer;
                        }
                    }
                }
            }
        }
        Ok(ToolOutput::ok(if hits.is_empty() {
            no_match
        } else {
            hits.join("\n")
        }))
    }
}
