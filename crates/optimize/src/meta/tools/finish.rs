use async_trait::async_trait;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{MetaTool, arg_str, spec};
use crate::meta::context::MetaContext;

pub(super) struct Finish;

/// What a session proposed: it leaves the session as the run's final answer (the `finish`
/// call's JSON), not through shared state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub description: String,
    pub rationale: String,
}

#[async_trait]
impl MetaTool for Finish {
    fn spec(&self) -> ToolSpec {
        spec(
            "finish",
            "End the session: a one-line description of your change, and why it is general (not tied to particular tasks).",
            json!({"description": {"type": "string"}, "rationale": {"type": "string"}}),
            &["description", "rationale"],
        )
    }

    async fn call(&self, _ctx: &MetaContext, args: &Value) -> Result<ToolOutput, ToolError> {
        let proposal = Proposal {
            description: arg_str(args, "description")?.trim().to_owned(),
            rationale: arg_str(args, "rationale")?.trim().to_owned(),
        };
        if proposal.description.is_empty() {
            return Err(ToolError::RespondToModel(
                "`description` must say what changed".into(),
            ));
        }
        Ok(ToolOutput {
            content: "Session finished; the change will be evaluated.".into(),
            is_error: false,
            finish: Some(serde_json::to_string(&proposal).unwrap_or_default()),
        })
    }
}
