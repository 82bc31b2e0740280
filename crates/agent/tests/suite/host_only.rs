//! A run without a sandbox: a host-only session (the meta-agent's kind) gets its host tools,
//! `finish` and nothing that would need a sandbox; a harness that needs one is refused up front.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use autoagent_agent::tools::{HostTool, ToolError, ToolOutput};
use autoagent_agent::{EndReason, NoObserver, Run, RunError};
use autoagent_llm::{ScriptedModel, ToolSpec};
use serde_json::{Value, json};

use super::support::{assert_valid_atif, fixture, harness};

struct CountChars;

#[async_trait]
impl HostTool for CountChars {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "count_chars".into(),
            description: "Count the characters of a text.".into(),
            parameters: json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        }
    }
    async fn call(&self, args: &Value) -> Result<ToolOutput, ToolError> {
        let text = args["text"].as_str().unwrap_or_default();
        Ok(ToolOutput::ok(format!(
            "{} characters",
            text.chars().count()
        )))
    }
}

#[tokio::test]
async fn a_host_only_session_runs_its_host_tools_without_a_sandbox() {
    let h = harness("host_only");
    let model = Arc::new(ScriptedModel::from_file(&fixture("scripts/host_only.toml")).unwrap());
    let run = Run {
        harness: &h,
        model: model.clone(),
        models: BTreeMap::new(),
        sandbox: None,
        observer: &NoObserver,
    };
    let host: Vec<Arc<dyn HostTool>> = vec![Arc::new(CountChars)];
    let out = run.run_with_host_tools("Count.", &host).await.unwrap();
    model.finish().unwrap();
    assert_eq!(out.end, EndReason::Finished);
    assert_eq!(out.answer, "counted");
    assert_valid_atif(&serde_json::to_value(&out.trajectory).unwrap());
}

#[tokio::test]
async fn a_harness_with_sandbox_tools_is_refused_without_a_sandbox() {
    let h = harness("max_turns");
    let model = Arc::new(ScriptedModel::from_file(&fixture("scripts/max_turns.toml")).unwrap());
    let run = Run {
        harness: &h,
        model: model.clone(),
        models: BTreeMap::new(),
        sandbox: None,
        observer: &NoObserver,
    };
    match run.run("Do it.").await {
        Err(RunError::Sandbox(e)) => {
            assert!(e.to_string().contains("bash"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(model.remaining(), 3, "no model call was made");
}
