//! `autoagent eval`: the table a person sees, `--json`, and kill-then-resume.

use std::path::Path;
use std::time::{Duration, Instant};

use super::support::{autoagent, bin, docker_or_skip, examples, filters};

#[test]
fn oracle_table() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    let run = autoagent(
        &[
            "eval",
            "-p",
            ex.to_str().unwrap(),
            "-a",
            "oracle",
            "-n",
            "4",
            "-o",
            "jobs",
            "--job-name",
            "t",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("oracle_table", run.stdout());
    });
}

#[test]
fn nop_table_and_json() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    let run = autoagent(
        &[
            "eval",
            "-p",
            ex.to_str().unwrap(),
            "-a",
            "nop",
            "-x",
            "broken-build",
            "-o",
            "jobs",
            "--job-name",
            "n",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("nop_table", run.stdout());
    });
    // --json prints the job's result.json, and resuming a finished job runs nothing new.
    let run = autoagent(
        &[
            "eval",
            "-p",
            ex.to_str().unwrap(),
            "-a",
            "nop",
            "-x",
            "broken-build",
            "-o",
            "jobs",
            "--job-name",
            "n",
            "--json",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    let v: serde_json::Value =
        serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    assert_eq!(
        v["stats"]["evals"]["nop__tasks"]["metrics"][0]["reward"],
        0.0,
        "{}",
        run.context()
    );
    assert_eq!(v["n_total_trials"], 6);
}

#[test]
fn suspect_trials_are_marked_in_the_table() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let task = examples().join("hello-file");
    let harness = autoagent_test_support::examples_dir().join("harness");
    // In the temp dir, so that the model's name (part of the evals key) is filtered.
    let script = dir.path().join("write-reward.toml");
    std::fs::copy(
        autoagent_test_support::fixture!("integrity/write-reward.toml"),
        &script,
    )
    .unwrap();
    let model = format!("scripted/{}", script.display());
    let run = autoagent(
        &[
            "eval",
            "-p",
            task.to_str().unwrap(),
            "-a",
            "harness",
            "--harness",
            harness.to_str().unwrap(),
            "--model",
            &model,
            "-o",
            "jobs",
            "--job-name",
            "s",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("suspect_table", run.stdout());
    });
}

#[test]
fn bad_path_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = autoagent(
        &["eval", "-p", "no/such/dir", "--sandbox", "local"],
        dir.path(),
    );
    assert!(!run.out.status.success());
    assert!(
        run.stderr().contains("no/such/dir") && run.stderr().contains("no such directory"),
        "{}",
        run.context()
    );
}

/// Four tasks that take about two seconds each.
fn slow_dataset(root: &Path) {
    let src = examples().join("hello-file");
    for i in 0..4 {
        let t = root.join(format!("slow-{i}"));
        for sub in ["environment", "tests", "solution"] {
            std::fs::create_dir_all(t.join(sub)).unwrap();
            for f in std::fs::read_dir(src.join(sub)).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), t.join(sub).join(f.file_name())).unwrap();
            }
        }
        std::fs::copy(src.join("task.toml"), t.join("task.toml")).unwrap();
        std::fs::copy(src.join("instruction.md"), t.join("instruction.md")).unwrap();
        std::fs::write(
            t.join("solution/solve.sh"),
            "#!/bin/bash\nsleep 2\necho \"Hello, world!\" > /app/hello.txt\n",
        )
        .unwrap();
    }
}

fn finished(job: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(job).into_iter().flatten().flatten() {
        if let Ok(t) = std::fs::read_to_string(e.path().join("result.json")) {
            let r: serde_json::Value = serde_json::from_str(&t).unwrap();
            v.push((
                r["trial_name"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            ));
        }
    }
    v.sort();
    v
}

#[test]
fn killed_job_resumes_only_unfinished_trials() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    slow_dataset(&tasks);
    let job = dir.path().join("jobs/kr");
    let mut child = std::process::Command::new(bin())
        .args([
            "eval",
            "-p",
            tasks.to_str().unwrap(),
            "-n",
            "1",
            "-o",
            "jobs",
            "--job-name",
            "kr",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while finished(&job).len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no progress: {:?}",
            finished(&job)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind runs.
    child.wait().unwrap();
    let before = finished(&job);
    assert!(before.len() >= 2 && before.len() < 4, "{before:?}");
    let job_id = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(job.join("result.json")).unwrap(),
    )
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let run = autoagent(
        &[
            "eval",
            "-p",
            tasks.to_str().unwrap(),
            "-n",
            "2",
            "-o",
            "jobs",
            "--job-name",
            "kr",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    let after = finished(&job);
    assert_eq!(after.len(), 4, "{}", run.context());
    for t in &before {
        assert!(
            after.contains(t),
            "finished trial {t:?} was rerun or lost\n{}",
            run.context()
        );
    }
    // Every trial dir is a finished trial: the half-done one was removed and rerun.
    let dirs = std::fs::read_dir(&job)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(dirs, 4);
    assert!(run.stdout().contains("mean 1.000"), "{}", run.context());
    // The container of the trial that was running when killed is gone.
    let ps = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=autoagent.job={job_id}"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "",
        "containers left behind"
    );
}

#[test]
fn ctrl_c_removes_running_containers() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks");
    slow_dataset(&tasks);
    let job = dir.path().join("jobs/cc");
    let child = std::process::Command::new(bin())
        .args([
            "eval",
            "-p",
            tasks.to_str().unwrap(),
            "-n",
            "2",
            "-o",
            "jobs",
            "--job-name",
            "cc",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // Wait until trials are running (their containers exist), then interrupt.
    let running = || {
        std::fs::read_dir(&job)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("trial.log").is_file())
            .count()
    };
    while running() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no trial started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("resume with --job-name cc"), "{stderr}");
    let job_id = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(job.join("result.json")).unwrap(),
    )
    .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ps = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=autoagent.job={job_id}"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ps.stdout).trim(),
        "",
        "containers left after Ctrl-C"
    );
}
