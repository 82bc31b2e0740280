use async_trait::async_trait;
use autoagent_agent::Harness;
use autoagent_agent::tools::{ToolError, ToolOutput};
use autoagent_llm::ToolSpec;
use serde_json::{Value, json};

use super::{MetaTool, spec};
use crate::meta::context::MetaContext;

pub(super) struct ValidateHarness;

#[async_trait]
impl MetaTool for ValidateHarness {
    fn spec(&self) -> ToolSpec {
        spec(
            "validate_harness",
            "Check the working-tree harness: every problem with its file and field, or its size when valid.",
            json!({}),
            &[],
        )
    }

    async fn call(&self, ctx: &MetaContext, _args: &Value) -> Result<ToolOutput, ToolError> {
        Ok(match Harness::load(&ctx.harness_dir) {
            Ok(h) => ToolOutput::ok(format!("valid; size {}", crate::size::measure(&h).total())),
            Err(e) => ToolOutput::error(e.to_string()),
        })
    }
}
