//! `autoagent run` and `autoagent harness check`.

use std::path::Path;

use super::support::{autoagent, docker_or_skip, filters};

fn harness() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/harness")
        .display()
        .to_string()
}

const SCRIPT: &str = r#"
[[turns]]
tool_calls = [{ name = "bash", arguments = { command = "echo hi > out.txt && pwd" } }]
[[turns]]
text = "Wrote out.txt."
expect = { last_tool_result_contains = "[exit code 0]" }
"#;

#[test]
fn run_in_a_host_workdir_and_in_an_image() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.toml"), SCRIPT).unwrap();
    let h = harness();
    let run = autoagent(
        &[
            "run",
            "--harness",
            &h,
            "--model",
            "scripted/s.toml",
            "--workdir",
            "w",
            "write hi to out.txt",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    assert_eq!(run.stdout(), "Wrote out.txt.\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("w/out.txt")).unwrap(),
        "hi\n"
    );
    let path = run
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("trajectory: ").map(str::to_owned))
        .unwrap_or_else(|| panic!("{}", run.context()));
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(t["steps"][1]["message"], "write hi to out.txt");
    assert_eq!(t["steps"].as_array().unwrap().len(), 4);

    if docker_or_skip() {
        let run = autoagent(
            &[
                "run",
                "--harness",
                &h,
                "--model",
                "scripted/s.toml",
                "--image",
                "autoagent/debian:bookworm",
                "write hi",
            ],
            dir.path(),
        );
        assert!(run.out.status.success(), "{}", run.context());
        assert_eq!(run.stdout(), "Wrote out.txt.\n");
    }
    let run = autoagent(
        &[
            "run",
            "--harness",
            &h,
            "--model",
            "scripted/s.toml",
            "write hi",
        ],
        dir.path(),
    );
    assert!(!run.out.status.success());
    assert!(
        run.stderr()
            .contains("--image IMAGE (Docker) or --workdir DIR"),
        "{}",
        run.context()
    );
}

#[test]
fn harness_check_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("h");
    std::fs::create_dir_all(h.join("tools")).unwrap();
    std::fs::write(
        h.join("harness.toml"),
        "[agent]\nsystem_prompt = \"prompts/none.md\"\ntools = [\"bash\", \"teleport\"]\n",
    )
    .unwrap();
    std::fs::write(
        h.join("tools/t.toml"),
        "description = \"d\"\nscript = \"t.py\"\n",
    )
    .unwrap();
    let run = autoagent(&["harness", "check", h.to_str().unwrap()], dir.path());
    assert!(!run.out.status.success());
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("harness_check", run.stderr());
    });
    let run = autoagent(&["harness", "check", &harness()], dir.path());
    assert!(run.out.status.success(), "{}", run.context());
    assert!(run.stdout().contains(": ok"));
}
