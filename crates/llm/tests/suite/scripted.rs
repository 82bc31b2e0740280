//! The scripted model: replay, expectations, exhaustion, sub-agents, concurrency.

use std::sync::Arc;

use autoagent_llm::{
    ErrorKind, Message, Model, ModelConfig, ModelRequest, ProviderKind, Script, ScriptedModel,
    StopReason, ToolResult, build_model,
};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::support::{env, fixture_path, tools};

fn start() -> ModelRequest {
    ModelRequest {
        tools: tools(),
        ..ModelRequest::new("You are a terminal agent.", "List the files in /app.")
    }
}

#[tokio::test]
async fn replays_a_toml_script_with_expectations_and_sub_agents() {
    let path = fixture_path("scripts/agent.toml");
    let model = ScriptedModel::from_file(&path).unwrap();
    assert_eq!(model.provider(), ProviderKind::Scripted);
    let mut req = start();

    let r1 = model.complete(&req).await.unwrap();
    assert_eq!(r1.stop_reason, StopReason::ToolUse);
    assert_eq!(r1.model, "scripted-demo");
    assert_eq!(r1.usage.cache_read_tokens, 50);
    assert_eq!(r1.cost_usd, Some(0.001));
    let call = r1.tool_calls().next().unwrap().clone();
    assert_eq!(call.id, "call_1_0");
    assert_eq!(call.arguments, json!({"command": "ls /app"}));
    req.messages.push(r1.message);
    req.messages.push(Message::tool_results([ToolResult::ok(
        call.id,
        "main.py\n",
    )]));

    let r2 = model.complete(&req).await.unwrap();
    let ids: Vec<&str> = r2.tool_calls().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["read-1", "call_2_1"]);
    assert_eq!(r2.cost_usd, None);

    // A sub-agent call consumes the turn tagged for it, whatever its position.
    let checker = ModelRequest {
        agent: Some("checker".into()),
        ..ModelRequest::new("You check work.", "Check the output.")
    };
    assert_eq!(
        model.complete(&checker).await.unwrap().text(),
        "The output matches the task."
    );

    req.messages.push(r2.message);
    req.messages.push(Message::tool_results([
        ToolResult::ok("read-1", "print('hello')"),
        ToolResult::error("call_2_1", "Error: cat failed"),
    ]));
    let r4 = model.complete(&req).await.unwrap();
    assert_eq!(r4.stop_reason, StopReason::EndTurn);
    assert_eq!(model.remaining(), 0);
    model.finish().unwrap();

    // The script is used up: the next call fails loudly, as a script error.
    let err = model.complete(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Script);
    assert!(!err.is_infrastructure());
    let text = err.to_string();
    assert!(
        text.contains("ran out") && text.contains("request #4"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_expectation_names_the_turn_and_what_was_seen() {
    let model = ScriptedModel::from_file(&fixture_path("scripts/agent.toml")).unwrap();
    let req = ModelRequest {
        tools: tools(),
        ..ModelRequest::new("You are a poet.", "List the files in /app.")
    };
    let err = model.complete(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Script);
    let text = err.to_string();
    assert!(text.contains("turn 1"), "{text}");
    assert!(
        text.contains("\"terminal agent\"") && text.contains("You are a poet."),
        "{text}"
    );

    let model = ScriptedModel::from_file(&fixture_path("scripts/agent.toml")).unwrap();
    let mut req = start();
    let r1 = model.complete(&req).await.unwrap();
    req.messages.push(r1.message);
    req.messages.push(Message::tool_results([ToolResult::error(
        "call_1_0",
        "ls: denied",
    )]));
    let err = model.complete(&req).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("turn 2") && text.contains("\"main.py\"") && text.contains("ls: denied"),
        "{text}"
    );

    assert!(model.finish().is_err());
}

#[tokio::test]
async fn json_scripts_and_the_model_string() {
    let cfg = ModelConfig::new(format!(
        "scripted/{}",
        fixture_path("scripts/agent.json").display()
    ));
    let model = build_model(&cfg, &env()).unwrap();
    assert!(model.name().starts_with("scripted/"));
    let mut req = ModelRequest {
        tools: tools(),
        ..ModelRequest::new("sys", "go")
    };
    let r1 = model.complete(&req).await.unwrap();
    req.messages.push(r1.message);
    req.messages
        .push(Message::tool_results([ToolResult::ok("call_1_0", "hi\n")]));
    assert_eq!(model.complete(&req).await.unwrap().text(), "All done.");

    // build_model gives each caller a fresh cursor.
    let again = build_model(&cfg, &env()).unwrap();
    assert_eq!(
        again
            .complete(&ModelRequest {
                tools: tools(),
                ..ModelRequest::new("s", "u")
            })
            .await
            .unwrap()
            .text(),
        "Calling the tool."
    );
}

#[tokio::test]
async fn scripted_failures_have_the_requested_kind() {
    let model = ScriptedModel::from_file(&fixture_path("scripts/infra.toml")).unwrap();
    let err = model.complete(&start()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Infrastructure);
    assert_eq!(model.complete(&start()).await.unwrap().text(), "Recovered.");
}

#[tokio::test]
async fn concurrent_conversations_have_their_own_cursors() {
    let script = Arc::new(Script::from_file(&fixture_path("scripts/agent.json")).unwrap());
    let mut handles = Vec::new();
    for trial in 0..16 {
        let model = ScriptedModel::new(script.clone(), format!("trial-{trial}"));
        handles.push(tokio::spawn(async move {
            let mut req = ModelRequest {
                tools: tools(),
                ..ModelRequest::new("sys", "go")
            };
            let r1 = model.complete(&req).await.unwrap();
            req.messages.push(r1.message);
            req.messages
                .push(Message::tool_results([ToolResult::ok("call_1_0", "hi")]));
            model.complete(&req).await.unwrap().text()
        }));
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap(), "All done.");
    }
}

#[test]
fn invalid_scripts_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[[turns]]\ntxet = \"hi\"\n").unwrap();
    let err = Script::from_file(&typo).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("txet"), "{err}");

    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "turns = []\n").unwrap();
    assert!(
        Script::from_file(&empty)
            .unwrap_err()
            .to_string()
            .contains("no turns")
    );

    let missing = Script::from_file(&dir.path().join("nope.toml")).unwrap_err();
    assert!(missing.to_string().contains("nope.toml"));
}
