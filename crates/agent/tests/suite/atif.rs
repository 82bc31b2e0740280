//! The ATIF validator of `support` itself: it accepts harbor's example and rejects each rule's
//! violation, so that "every trajectory validates" in the other tests means something.

use serde_json::{Value, json};

use super::support::{assert_valid_atif, atif_problems, fixture};

fn example() -> Value {
    let text = std::fs::read_to_string(fixture("atif-example.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A small trajectory with a tool call, its observation and an embedded sub-agent.
fn with_subagent() -> Value {
    json!({
        "schema_version": "ATIF-v1.8",
        "trajectory_id": "root",
        "agent": {"name": "autoagent", "version": "0.1.0"},
        "steps": [
            {"step_id": 1, "source": "system", "message": "sys"},
            {"step_id": 2, "source": "user", "message": "do it"},
            {"step_id": 3, "source": "agent", "message": "", "timestamp": "2026-01-02T03:04:05.678Z",
             "tool_calls": [{"tool_call_id": "c1", "function_name": "helper", "arguments": {"task": "x"}}],
             "observation": {"results": [{"source_call_id": "c1", "content": "ok",
                 "subagent_trajectory_ref": [{"trajectory_id": "sub-1"}]}]},
             "metrics": {"prompt_tokens": 10, "completion_tokens": 2},
             "llm_call_count": 1}
        ],
        "final_metrics": {"total_steps": 3},
        "subagent_trajectories": [{
            "schema_version": "ATIF-v1.8",
            "trajectory_id": "sub-1",
            "agent": {"name": "autoagent/helper", "version": "0.1.0"},
            "steps": [{"step_id": 1, "source": "user", "message": "x"}]
        }]
    })
}

fn rejected(doc: &Value, needle: &str) {
    let problems = atif_problems(doc);
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a problem containing {needle:?}, got {problems:#?}"
    );
}

#[test]
fn valid_documents_pass() {
    assert_valid_atif(&example());
    assert_valid_atif(&with_subagent());
}

#[test]
fn a_trajectory_built_with_the_crate_types_passes() {
    use autoagent_harbor::atif::{AgentInfo, Source, Step, Trajectory};
    let mut t = Trajectory::new(AgentInfo {
        name: "autoagent".into(),
        version: "0.1.0".into(),
        ..AgentInfo::default()
    });
    t.push(Step::new(Source::System, "sys"));
    t.push(Step::new(Source::User, "hi"));
    t.push(Step::new(Source::Agent, "hello"));
    assert_valid_atif(&serde_json::to_value(&t).unwrap());
}

#[test]
fn each_rule_is_enforced() {
    let mut d = with_subagent();
    d["steps"][2]["step_id"] = json!(4);
    rejected(&d, "trajectory.steps[2].step_id: expected 3");

    let mut d = with_subagent();
    d["steps"][1]["metrics"] = json!({"prompt_tokens": 1});
    rejected(&d, "trajectory.steps[1].metrics: only agent steps");

    let mut d = with_subagent();
    d["steps"][0]["model_name"] = json!("m");
    rejected(&d, "steps[0].model_name: only agent steps");

    let mut d = with_subagent();
    d["steps"][2]["llm_call_count"] = json!(0);
    rejected(&d, "metrics: not allowed with llm_call_count 0");

    let mut d = with_subagent();
    d["steps"][2]["observation"]["results"][0]["source_call_id"] = json!("nope");
    rejected(
        &d,
        "source_call_id: \"nope\" is not a tool_call_id of this step",
    );

    let mut d = with_subagent();
    d["subagent_trajectories"][0]["trajectory_id"] = Value::Null;
    rejected(
        &d,
        "subagent_trajectories[0].trajectory_id: missing or null",
    );

    let mut d = with_subagent();
    let sub = d["subagent_trajectories"][0].clone();
    d["subagent_trajectories"].as_array_mut().unwrap().push(sub);
    rejected(&d, "\"sub-1\" is not unique");

    let mut d = with_subagent();
    d["steps"][2]["observation"]["results"][0]["subagent_trajectory_ref"][0]["trajectory_id"] =
        json!("sub-2");
    rejected(&d, "\"sub-2\" matches no embedded subagent trajectory");

    let mut d = with_subagent();
    d["steps"][2]["observation"]["results"][0]["subagent_trajectory_ref"] = json!([{}]);
    rejected(&d, "needs a trajectory_id or a trajectory_path");

    // Field shapes and unknown keys come from the JSON Schema.
    let mut d = with_subagent();
    d["surprise"] = json!(1);
    rejected(&d, "schema:");
    let mut d = with_subagent();
    d["steps"][2]["tool_calls"][0]["weird"] = json!(true);
    rejected(&d, "schema: at /steps/2/tool_calls/0");
    let mut d = with_subagent();
    d["subagent_trajectories"][0]["steps"][0]["unknown"] = json!(true);
    rejected(&d, "schema: at /subagent_trajectories/0/steps/0");
    let mut d = with_subagent();
    d["schema_version"] = json!("ATIF-v2.0");
    rejected(&d, "schema: at /schema_version");
    let mut d = with_subagent();
    d["steps"][1].as_object_mut().unwrap().remove("message");
    rejected(&d, "schema: at /steps/1");
    let mut d = with_subagent();
    d["steps"] = json!([]);
    rejected(&d, "trajectory.steps: empty");

    // What our writer promises on top.
    let mut d = with_subagent();
    d["steps"][2]["timestamp"] = json!("yesterday");
    rejected(&d, "timestamp: \"yesterday\" is not ISO 8601");
    let mut d = with_subagent();
    d["final_metrics"]["total_steps"] = json!(9);
    rejected(&d, "total_steps: 9 but 3 steps");
}
