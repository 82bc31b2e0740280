//! Context management against a real sandbox: spill-to-file and compaction.

use super::support::{content, is_error, with_sandbox};

/// What `seq 1 20000` returns through the bash tool, before any spilling.
fn seq_output() -> String {
    let mut s: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    s.push_str("[exit code 0]");
    s
}

#[tokio::test]
async fn long_output_spills_to_a_file_in_the_sandbox() {
    with_sandbox("spill", |env| async move {
        let r = env
            .run("spill", "spill.toml", "Print a long sequence and count it.")
            .await;
        let path = "/tmp/autoagent-tool-output/1-bash.txt";
        let full = seq_output();
        let chars = full.chars().count();
        // max_tool_output_chars = 1000: 500 characters of head and 500 of tail.
        let head: String = full.chars().take(500).collect();
        let tail: String = full.chars().skip(chars - 500).collect();

        // What the model got (request #2) and what the trajectory recorded must be the same.
        let (seen, seen_error) = r.last_tool_result_in_request(2);
        let observed = r.result_of("call_seq");
        assert_eq!(content(observed), seen, "trajectory vs model input");
        assert!(!seen_error && !is_error(observed));
        assert!(seen.starts_with(&head), "head missing: {seen:?}");
        assert!(seen.ends_with(&tail), "tail missing: {seen:?}");
        assert!(seen.ends_with("19999\n20000\n[exit code 0]"), "{seen:?}");
        assert!(
            seen.contains(&format!(
                "[... {} characters omitted; the full output ({chars} characters) is in {path}",
                chars - 1000
            )),
            "{seen:?}"
        );
        assert!(
            seen.chars().count() < 1300,
            "the model got {} characters",
            seen.chars().count()
        );

        // The second turn measured the file in the sandbox: all of it is there.
        let wc = content(r.result_of("call_wc"));
        assert_eq!(wc, format!("20000 {path}\n{}\n[exit code 0]", full.len()));

        // And the test reads it back whole.
        let cat = env.sh(&format!("cat {path}")).await;
        assert_eq!(cat.exit_code, Some(0));
        assert_eq!(cat.stdout.len(), full.len());
        assert!(
            cat.stdout == full,
            "the spilled file differs from the output"
        );
        // The short second output did not spill.
        let ls = env.sh("ls /tmp/autoagent-tool-output").await;
        assert_eq!(ls.stdout, "1-bash.txt\n");

        assert_eq!(r.outcome.answer, "The file has all 20000 lines.");
        let fm = &r.json["final_metrics"];
        assert_eq!(fm["total_prompt_tokens"], 1620);
        assert_eq!(fm["total_completion_tokens"], 45);
        assert!((fm["total_cost_usd"].as_f64().unwrap() - 0.006).abs() < 1e-9);
    })
    .await;
}

#[tokio::test]
async fn compaction_summarises_older_turns_and_keeps_the_instruction() {
    with_sandbox("compaction", |env| async move {
        let instruction = "Count to three in /app/count.txt.";
        let r = env.run("compaction", "compaction.toml", instruction).await;
        let summary = "SUMMARY-7f3a: /app/count.txt holds 1 and 2; next, append 3.";

        // 5 requests: 2 main turns, the compaction call, 2 main turns.
        assert_eq!(r.requests.len(), 5);
        let compaction = &r.requests[2];
        assert!(
            compaction.tools.is_empty(),
            "the compaction call offers no tools: {:?}",
            compaction.tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
        assert_eq!(compaction.agent, None);
        for n in [4, 5] {
            let first = r.first_user_text(n);
            assert!(
                first.starts_with(
                    "Task for the agent under test:\nCount to three in /app/count.txt."
                ),
                "request #{n} lost the instruction: {first:?}"
            );
            assert!(
                first.contains(summary),
                "request #{n} lost the summary: {first:?}"
            );
            assert_eq!(r.requests[n - 1].tools.len(), 1, "bash is offered again");
        }
        // The kept turn is the second one (keep_recent_turns = 1), whole.
        let kept = &r.requests[3].messages[1];
        assert!(kept.tool_calls().any(|c| c.id == "call_two"), "{kept:?}");
        assert!(
            !r.requests[3]
                .messages
                .iter()
                .any(|m| m.tool_calls().any(|c| c.id == "call_one"))
        );

        // The trajectory: sys, user, agent, agent, compaction, agent, agent.
        let sources: Vec<&str> = r
            .steps()
            .iter()
            .map(|s| s["source"].as_str().unwrap())
            .collect();
        assert_eq!(
            sources,
            [
                "system", "user", "agent", "agent", "system", "agent", "agent"
            ]
        );
        let step = r.step(5);
        let extra = &step["extra"];
        assert_eq!(extra["context_management"]["type"], "compaction", "{step}");
        assert_eq!(extra["summary"], summary);
        assert_eq!(extra["replaced_messages"], 3);
        assert_eq!(extra["kept_messages"], 2);
        assert_eq!(extra["summary_call"]["prompt_tokens"], 5100);
        // Older steps stay in the trajectory: compaction only changes what the model sees.
        assert_eq!(r.result_of("call_one")["content"], "[exit code 0]");

        // Totals include the compaction call.
        assert_eq!(r.outcome.totals.calls, 5);
        let fm = &r.json["final_metrics"];
        assert_eq!(fm["total_prompt_tokens"], 200 + 5000 + 5100 + 300 + 400);
        assert_eq!(fm["extra"]["llm_calls"], 5);
        assert_eq!(fm["total_steps"], 7);

        let out = env.sh("cat /app/count.txt").await;
        assert_eq!(out.stdout, "1\n2\n3\n");
    })
    .await;
}
