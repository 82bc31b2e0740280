use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_harbor::TrialResult;
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
        let out = autoagent_sandbox::read_shared(&dir.join("verifier/test-stdout.txt"))
            .unwrap_or_else(|_| "(no verifier output)".into());
        let r: Option<TrialResult> = std::fs::read_to_string(dir.join("result.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
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
