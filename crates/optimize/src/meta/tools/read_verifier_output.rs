use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_harbor::{TrialDir, TrialResult};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, arg_str, spec};
use crate::meta::context::{MetaContext, tail_lines};

pub(super) struct ReadVerifierOutput;

#[async_trait]
impl MetaTool for ReadVerifierOutput {
    fn spec(&self) -> ToolSpec {
        spec(
            "read_verifier_output",
            "The verifier's output (tests/test.sh stdout and stderr) and rewards of a trial.",
            json!({"trial": {"type": "string"}}),
            &["trial"],
        )
    }

    async fn call(&self, ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let dir = ctx.trial_dir(arg_str(args, "trial")?)?;
        let trial = TrialDir::new(&dir);
        let out = trial
            .read_test_stdout()
            .unwrap_or_else(|_| "(no verifier output)".into());
        let r: Option<TrialResult> = trial.read_result().ok();
        let rewards = r
            .as_ref()
            .and_then(|r| r.rewards())
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .unwrap_or_else(|| "none".into());
        Ok(ToolOutput::ok(format!(
            "rewards: {rewards}\n{}",
            tail_lines(&out, 200)
        )))
    }
}
