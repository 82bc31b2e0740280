//! How runs end: the verification phase and the turn budget.

use autoagent_agent::EndReason;

use super::support::{content, with_sandbox};

#[tokio::test]
async fn verification_phase_gives_bonus_turns_with_the_verify_prompt() {
    with_sandbox("verify", |env| async move {
        let r = env
            .run(
                "verify",
                "verify_confirms.toml",
                "Write work to /app/out.txt.",
            )
            .await;
        assert_eq!(r.outcome.end, EndReason::Finished);
        // The `finish` call during verification gives the final answer.
        assert_eq!(r.outcome.answer, "verified: /app/out.txt holds work");
        assert_eq!(r.requests.len(), 4);

        // sys, user, agent, agent ("Done"), user (verify prompt), agent, agent (finish).
        let sources: Vec<&str> = r
            .steps()
            .iter()
            .map(|s| s["source"].as_str().unwrap())
            .collect();
        assert_eq!(
            sources,
            ["system", "user", "agent", "agent", "user", "agent", "agent"]
        );
        let verify = r.step(5);
        assert_eq!(
            verify["message"],
            "VERIFY-9c1e: check your work once more before you finish.\n"
        );
        assert_eq!(verify["extra"]["phase"], "verification");
        assert_eq!(verify["extra"]["bonus_turns"], 2);
        assert_eq!(content(r.result_of("check")), "work\n[exit code 0]");
    })
    .await;
}

#[tokio::test]
async fn verification_budget_is_turns_at_first_done_plus_bonus() {
    with_sandbox("verify-budget", |env| async move {
        let r = env
            .run("verify", "verify_budget.toml", "Finish at the last turn.")
            .await;
        // max_turns = 3, done at turn 3, bonus_turns = 2: five requests, then the budget ends it.
        assert_eq!(r.requests.len(), 5);
        assert_eq!(r.outcome.end, EndReason::MaxTurns);
        assert_eq!(r.outcome.answer, "first answer");
        assert_eq!(r.agent_steps().len(), 5);
        let verify = r
            .steps()
            .iter()
            .find(|s| s["extra"]["phase"] == "verification")
            .expect("a verification step");
        assert_eq!(verify["source"], "user");
        assert_eq!(verify["step_id"], 6, "right after the `finish` step");
    })
    .await;
}

#[tokio::test]
async fn max_turns_ends_the_run() {
    with_sandbox("max-turns", |env| async move {
        let r = env.run("max_turns", "max_turns.toml", "Never stop.").await;
        assert_eq!(r.outcome.end, EndReason::MaxTurns);
        assert_eq!(r.outcome.answer, "");
        assert_eq!(r.requests.len(), 3, "no request past max_turns = 3");
        assert_eq!(r.agent_steps().len(), 3);
        assert_eq!(content(r.result_of("t3")), "turn 3\n[exit code 0]");
        assert_eq!(r.json["final_metrics"]["total_steps"], 5);
    })
    .await;
}
