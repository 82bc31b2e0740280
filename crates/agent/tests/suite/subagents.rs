//! Sub-agents: their own tools, prompt and turn budget; tagged scripted turns; their
//! trajectories embedded in the parent's and referenced from its observations.

use autoagent_agent::EndReason;
use serde_json::Value;

use super::support::{agent_steps, content, is_error, step, with_sandbox};

#[tokio::test]
async fn subagent_runs_with_its_own_tools_and_budget_and_is_embedded() {
    with_sandbox("subagent", |env| async move {
        let r = env
            .run(
                "subagent",
                "subagent.toml",
                "Create src/main.rs and have it inspected.",
            )
            .await;
        assert_eq!(r.outcome.end, EndReason::Finished);
        assert_eq!(r.outcome.answer, "inspected /app/src");

        // Requests: main, main, sub, sub, main, sub, sub, main; the sub-agent's are tagged.
        let agents: Vec<Option<&str>> = r.requests.iter().map(|q| q.agent.as_deref()).collect();
        let sub = Some("inspector");
        assert_eq!(agents, [None, None, sub, sub, None, sub, sub, None]);
        for q in r.requests.iter().filter(|q| q.agent.is_some()) {
            let tools: Vec<&str> = q.tools.iter().map(|t| t.name.as_str()).collect();
            assert_eq!(tools, ["read_file", "list_dir"]);
            assert!(q.system.as_deref().unwrap().contains("INSPECTOR-4b2d"));
        }

        // Two embedded trajectories, each referenced from the call that ran it.
        let subs = r.json["subagent_trajectories"]
            .as_array()
            .expect("embedded");
        assert_eq!(subs.len(), 2);
        let ids: Vec<&str> = subs
            .iter()
            .map(|s| s["trajectory_id"].as_str().unwrap())
            .collect();
        assert_ne!(ids[0], ids[1]);
        assert_ne!(Some(ids[0]), r.json["trajectory_id"].as_str());
        for (call, id) in ["inspect_1", "inspect_2"].iter().zip(&ids) {
            let res = r.result_of(call);
            assert!(!is_error(res), "{res}");
            assert_eq!(
                res["subagent_trajectory_ref"],
                serde_json::json!([{ "trajectory_id": id }]),
                "{call}"
            );
        }
        assert_eq!(
            content(r.result_of("inspect_1")),
            "REPORT-1: /app/src holds main.rs."
        );
        // The second call ran out of turns without an answer: the parent is told so.
        assert_eq!(
            content(r.result_of("inspect_2")).trim(),
            "[the sub-agent `inspector` stopped at its limit of 2 turns]"
        );

        // Each sub-agent trajectory is a whole one: its system prompt, its task, its turns.
        for (s, (task, calls)) in subs.iter().zip([
            (
                "FIRST: list /app/src and report.",
                vec![vec!["list_dir"], vec![]],
            ),
            (
                "SECOND: read /app/src/main.rs.",
                vec![vec!["read_file"], vec!["list_dir"]],
            ),
        ]) {
            assert_eq!(s["agent"]["name"], "autoagent/inspector");
            let defs: Vec<&str> = s["agent"]["tool_definitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["function"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(defs, ["read_file", "list_dir"]);
            assert_eq!(step(s, 1)["source"], "system");
            assert!(
                step(s, 1)["message"]
                    .as_str()
                    .unwrap()
                    .contains("INSPECTOR-4b2d")
            );
            assert_eq!(step(s, 2)["message"], task);
            let made: Vec<Vec<&str>> = agent_steps(s)
                .iter()
                .map(|st| {
                    st["tool_calls"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .map(|c| c["function_name"].as_str().unwrap())
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(made, calls);
            assert_eq!(
                s["final_metrics"]["total_steps"],
                s["steps"].as_array().unwrap().len()
            );
            assert!(s.get("subagent_trajectories").is_none_or(Value::is_null));
        }
        let listing = content(super::support::result_of(&subs[0], "sub_list"));
        assert!(listing.contains(" main.rs\n"), "{listing}");
        assert_eq!(
            content(super::support::result_of(&subs[1], "sub_read")),
            "fn main() {}\n"
        );

        // The root's totals count every call, the sub-agents' included.
        let fm = &r.json["final_metrics"];
        assert_eq!(
            fm["total_prompt_tokens"],
            100 + 110 + 120 + 130 + 50 + 60 + 50 + 60
        );
        assert_eq!(fm["extra"]["llm_calls"], 8);
        assert!((fm["total_cost_usd"].as_f64().unwrap() - 0.044).abs() < 1e-9);
        let sub_cost = subs[1]["final_metrics"]["total_cost_usd"].as_f64().unwrap();
        assert!((sub_cost - 0.002).abs() < 1e-9);
    })
    .await;
}
