//! Built-in and script tools against a real sandbox, and tool failures that must reach the
//! model as error results without ending the run.

use std::time::Instant;

use autoagent_agent::EndReason;
use serde_json::json;

use super::support::{content, is_error, with_sandbox};

#[tokio::test]
async fn file_tools_read_write_edit_and_list() {
    with_sandbox("file-tools", |env| async move {
        let r = env
            .run("tools", "file_tools.toml", "Exercise the file tools.")
            .await;
        assert_eq!(r.outcome.end, EndReason::Finished);
        assert_eq!(r.outcome.answer, "files done");

        let ok = |id: &str| {
            let res = r.result_of(id);
            assert!(!is_error(res), "{id} failed: {res}");
            content(res).to_owned()
        };
        assert_eq!(
            ok("write_notes"),
            "wrote 28 bytes to /app/nested/deep/dir/notes.txt"
        );
        assert_eq!(ok("read_range"), "beta\ngamma");

        // Ambiguous old_string: an error result naming the count, the file left untouched.
        let ambiguous = r.result_of("edit_ambiguous");
        assert!(is_error(ambiguous), "{ambiguous}");
        assert_eq!(
            content(ambiguous),
            "`old_string` occurs 2 times in /app/nested/deep/dir/notes.txt: include more \
             context to make it unique, or set replace_all"
        );
        assert_eq!(
            ok("edit_unique"),
            "replaced 1 occurrence(s) in /app/nested/deep/dir/notes.txt"
        );
        assert_eq!(
            ok("edit_all"),
            "replaced 2 occurrence(s) in /app/nested/deep/dir/notes.txt"
        );
        assert_eq!(ok("chmod_script"), "755\n[exit code 0]");
        assert_eq!(ok("edit_script"), "replaced 1 occurrence(s) in /app/bin/run.sh");
        // The edit kept the file executable.
        assert_eq!(ok("run_script"), "755\nedited script runs\n[exit code 0]");

        let listing = ok("list_nested");
        assert!(listing.contains(" notes.txt\n"), "{listing}");
        assert!(listing.contains(" 28 "), "size of notes.txt: {listing}");
        let missing = r.result_of("list_missing");
        assert!(is_error(missing), "{missing}");
        assert!(
            content(missing).starts_with("cannot list /app/no/such/dir: "),
            "{missing}"
        );
        assert_eq!(ok("read_all"), "alpha\nBETA\nGAMMA\ndelta\nBETA\n");
        assert_eq!(ok("read_from"), "delta\nBETA");

        // The sandbox agrees, and the edits left no temporary files behind.
        let out = env
            .sh("cat /app/nested/deep/dir/notes.txt; stat -c '%a %n' /app/bin/run.sh; find /app -name '*autoagent-edit*'")
            .await;
        assert_eq!(
            out.stdout,
            "alpha\nBETA\nGAMMA\ndelta\nBETA\n755 /app/bin/run.sh\n"
        );
        // 10 main turns, the last one `finish`.
        assert_eq!(r.agent_steps().len(), 10);
        assert_eq!(r.steps().last().unwrap()["tool_calls"][0]["function_name"], "finish");
    })
    .await;
}

#[tokio::test]
async fn bad_calls_and_timeouts_are_error_results() {
    with_sandbox("tool-errors", |env| async move {
        let started = Instant::now();
        let r = env
            .run("tools", "tool_errors.toml", "Make mistakes.")
            .await;
        let elapsed = started.elapsed();
        assert_eq!(r.outcome.end, EndReason::Finished);
        assert_eq!(r.outcome.answer, "I give up.");

        let err = |id: &str| {
            let res = r.result_of(id);
            assert!(is_error(res), "{id} should be an error result: {res}");
            content(res).to_owned()
        };
        let unknown = err("bad_unknown");
        assert!(
            unknown.starts_with("unknown tool `teleport`; the tools are: bash, read_file, write_file, edit_file, list_dir, finish, echo_args, fail_loudly"),
            "{unknown}"
        );
        let bad_json = err("bad_json");
        assert!(
            bad_json.starts_with("the arguments of `bash` are not valid JSON (arguments are not valid JSON: "),
            "{bad_json}"
        );
        assert!(bad_json.ends_with("); send a JSON object"), "{bad_json}");
        assert_eq!(err("bad_string"), "missing string argument `command`");
        assert_eq!(err("bad_type"), "missing string argument `command`");
        assert_eq!(err("bad_exit"), "[stderr]\noops\n[exit code 7]");
        assert_eq!(err("bad_edit"), "`old_string` must not be empty");
        assert_eq!(
            err("bad_path"),
            "cannot read /nope/missing.txt: cat: /nope/missing.txt: No such file or directory"
        );

        // Arguments that are not an object are kept in the trajectory under `_raw`.
        let calls = &r.step(3)["tool_calls"];
        assert_eq!(calls[1]["arguments"], json!({"_raw": "{\"command\": \"echo hi"}));
        assert_eq!(calls[2]["arguments"], json!({"_raw": "echo not an object"}));
        assert_eq!(calls[3]["arguments"], json!({"command": 42}));

        // The hanging command was killed after its 1 s, and nothing of it is left.
        assert_eq!(
            err("slow"),
            "[killed: timed out]\nthe command was killed after 1 s"
        );
        assert_eq!(
            content(r.result_of("ps")),
            "0\n[exit code 0]",
            "a `sleep 30` survived its timeout"
        );
        assert!(
            elapsed.as_secs() < 25,
            "the run took {elapsed:?}: the timeout did not cut `sleep 30`"
        );
    })
    .await;
}

#[tokio::test]
async fn script_tools_get_json_on_stdin_and_fail_with_is_error() {
    with_sandbox("script-tools", |env| async move {
        let r = env
            .run("tools", "script_tools.toml", "Use the custom tools.")
            .await;
        assert_eq!(r.outcome.end, EndReason::Finished);

        let echo = r.result_of("echo");
        assert!(!is_error(echo), "{echo}");
        let text = content(echo);
        let args_line = text
            .lines()
            .find_map(|l| l.strip_prefix("ARGS "))
            .unwrap_or_else(|| panic!("no ARGS line in {text:?}"));
        let received: serde_json::Value = serde_json::from_str(args_line).unwrap();
        assert_eq!(
            received,
            json!({
                "message": "héllo \"quoted\" $HOME `id` \\ end\nsecond line",
                "n": 3,
                "nested": {"list": [1, 2], "flag": true}
            }),
            "the script received other arguments: {text}"
        );
        assert!(text.ends_with("ARGV []\n[exit code 0]"), "{text}");

        let fail = r.result_of("fail");
        assert!(is_error(fail), "a non-zero exit is an error result: {fail}");
        assert_eq!(
            content(fail),
            "partial output\n[stderr]\nfail_loudly: bad input\n[exit code 3]"
        );
        // The scripts were uploaded beside each other.
        let ls = env.sh("ls /tmp/autoagent-tools").await;
        assert_eq!(
            ls.stdout,
            "echo_args.py\necho_args.toml\nfail_loudly.sh\nfail_loudly.toml\n"
        );
    })
    .await;
}

#[tokio::test]
async fn edit_file_refuses_files_it_cannot_read_whole() {
    with_sandbox("edit-big-file", |env| async move {
        let r = env
            .run("tools", "edit_big_file.toml", "Edit a big file.")
            .await;
        let res = r.result_of("edit_big");
        assert!(is_error(res), "{res}");
        assert!(
            content(res).starts_with("/app/big.txt is larger than edit_file can read"),
            "{res}"
        );
        // The file is whole and unchanged.
        let out = env
            .sh("wc -c < /app/big.txt; head -n 1 /app/big.txt; tail -n 1 /app/big.txt")
            .await;
        assert_eq!(out.stdout, "9437209\nMARKER-START\nMARKER-END\n");
    })
    .await;
}
