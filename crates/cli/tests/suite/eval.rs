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
    assert_eq!(v["n_total_trials"], 9);
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
/// Four copies of hello-file whose solution first sleeps `secs`.
fn slow_dataset(root: &Path, secs: u32) {
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
            format!("#!/bin/bash\nsleep {secs}\necho \"Hello, world!\" > /app/hello.txt\n"),
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
    slow_dataset(&tasks, 2);
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
    // Long enough that the job cannot finish before the signal, however loaded the machine.
    slow_dataset(&tasks, 30);
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

/// The second Docker daemon answers (`scripts/second-dockerd.sh start`); in CI its absence fails.
fn second_daemon_or_skip() -> Option<String> {
    let url = std::env::var(autoagent_test_support::docker::DOCKER_HOST2)
        .unwrap_or_else(|_| autoagent_test_support::docker::SECOND_DOCKER_HOST.to_owned());
    let ok = std::process::Command::new("docker")
        .args(["-H", &url, "info"])
        .output()
        .is_ok_and(|o| o.status.success());
    autoagent_test_support::require(
        ok,
        "a second Docker daemon",
        &format!("`docker -H {url} info` fails"),
    )
    .then_some(url)
}

/// `[sandbox].docker_hosts` spreads a job over both daemons; `--docker-host` replaces the
/// list, and a host that does not answer is left out with a warning.
#[test]
fn docker_hosts_from_the_file_and_the_flags() {
    if !docker_or_skip() {
        return;
    }
    let Some(second) = second_daemon_or_skip() else {
        return;
    };
    let main = "unix:///var/run/docker.sock";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("autoagent.toml"),
        format!(
            "[sandbox]\ndocker_hosts = [{{ url = \"{main}\", slots = 1 }}, {{ url = \"{second}\", slots = 1 }}]\n"
        ),
    )
    .unwrap();
    let ex = examples();
    let args = |job: &str| {
        vec![
            "eval".to_owned(),
            "-p".to_owned(),
            ex.display().to_string(),
            "-i".to_owned(),
            "hello-file".to_owned(),
            "-k".to_owned(),
            "4".to_owned(),
            "-n".to_owned(),
            "2".to_owned(),
            "--job-name".to_owned(),
            job.to_owned(),
        ]
    };
    let a = args("file");
    let run = autoagent(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    let err = run.stderr();
    for h in [main, second.as_str()] {
        assert!(
            err.contains(&format!("docker host {h}: 1 slot(s)")),
            "{}",
            run.context()
        );
    }
    let log = std::fs::read_to_string(dir.path().join("jobs/file/job.log")).unwrap();
    for h in [main, second.as_str()] {
        assert!(log.contains(&format!("on host {h}")), "{log}");
    }
    assert!(
        run.stdout().contains("scored 4, infrastructure errors 0"),
        "{}",
        run.context()
    );

    let gone = format!("unix://{}/gone.sock", dir.path().display());
    let mut a = args("flags");
    a.extend([
        "--docker-host".to_owned(),
        gone.clone(),
        "--docker-host".to_owned(),
        main.to_owned(),
    ]);
    let run = autoagent(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    assert!(
        run.stderr().contains(&format!(
            "warning: docker host {gone} is left out until it answers"
        )),
        "{}",
        run.context()
    );
    let log = std::fs::read_to_string(dir.path().join("jobs/flags/job.log")).unwrap();
    assert_eq!(
        log.matches(&format!("on host {main}")).count(),
        8,
        "started and finished, 4 trials\n{log}"
    );
    assert!(
        !log.contains(&second),
        "the flags replace the file's list\n{log}"
    );
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn a_registry_dataset_is_cloned_at_its_commit_cached_verified_and_run_like_a_local_one() {
    use super::support::autoagent_env;
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A repository of tasks, published as a bare repository reached by a file:// URL.
    let src = dir.path().join("src");
    autoagent_test_support::copy_dir(
        &examples().join("hello-file"),
        &src.join("tasks/hello-file"),
    );
    git_in(
        dir.path(),
        &["init", "-q", "-b", "main", src.to_str().unwrap()],
    );
    git_in(&src, &["add", "-A"]);
    git_in(&src, &["commit", "-q", "-m", "tasks"]);
    let commit = git_in(&src, &["rev-parse", "HEAD"]);
    // A later commit breaks the task: the dataset pins the good one.
    std::fs::write(
        src.join("tasks/hello-file/tests/test.sh"),
        "#!/bin/bash\nexit 3\n",
    )
    .unwrap();
    git_in(&src, &["commit", "-q", "-am", "broken"]);
    let bare = dir.path().join("tasks.git");
    git_in(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            src.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let registry = dir.path().join("registry.json");
    std::fs::write(
        &registry,
        serde_json::json!([{
            "name": "demo", "version": "1.0", "description": "one task",
            "tasks": [{"name": "hello-file", "git_url": url, "git_commit_id": commit,
                       "path": "tasks/hello-file"}]
        }])
        .to_string(),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let eval = |job: &str| {
        autoagent_env(
            &[
                "eval",
                "-d",
                "demo@1.0",
                "--registry",
                registry.to_str().unwrap(),
                "-a",
                "oracle",
                "-o",
                "jobs",
                "--job-name",
                job,
                "--json",
            ],
            dir.path(),
            &[("AUTOAGENT_CACHE_DIR", &cache)],
        )
    };
    let trial = |job: &str| -> serde_json::Value {
        let job_dir = dir.path().join("jobs").join(job);
        let t = std::fs::read_dir(&job_dir)
            .unwrap()
            .flatten()
            .find(|e| e.path().join("result.json").is_file())
            .unwrap();
        serde_json::from_str(&std::fs::read_to_string(t.path().join("result.json")).unwrap())
            .unwrap()
    };

    let run = eval("first");
    assert!(run.out.status.success(), "{}", run.context());
    let r = trial("first");
    assert_eq!(r["verifier_result"]["rewards"]["reward"], 1.0, "{r}");
    assert_eq!(r["source"], "demo");
    assert_eq!(r["task_id"]["git_url"], url.as_str());
    assert_eq!(r["task_id"]["git_commit_id"], commit.as_str());
    assert_eq!(r["task_id"]["path"], "tasks/hello-file");
    // Harbor's own dirhash of the example task (the harbor crate's conformance values).
    assert_eq!(
        r["task_checksum"],
        "9451541c55e1ac477842eaaae41a7e87fc23ba36ff1839f5550e6e13eadf5ed8"
    );
    let lock: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("jobs/first/lock.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(lock["schema_version"], 3);
    let task = &lock["trials"][0]["task"];
    assert_eq!(task["type"], "git", "{lock}");
    assert_eq!(
        task["digest"],
        "sha256:cf7c83b0016c75792bff28e8e27550c9918e273a454f9eeaa66fc296b2c0b46d"
    );
    let trial_dir = dir
        .path()
        .join("jobs/first")
        .join(r["trial_name"].as_str().unwrap());
    assert!(trial_dir.join("lock.json").is_file());

    // Verified: a cached file changed by hand is noticed, and the task fetched again.
    let cached_test = std::fs::read_dir(cache.join("tasks"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("task/tests/test.sh"))
        .find(|p| p.is_file())
        .unwrap();
    std::fs::write(
        &cached_test,
        "#!/bin/bash\necho 0 > /logs/verifier/reward.txt\n",
    )
    .unwrap();
    let run = eval("second");
    assert!(run.out.status.success(), "{}", run.context());
    assert_eq!(trial("second")["verifier_result"]["rewards"]["reward"], 1.0);

    // Reused: with the repository gone, the cache alone runs the dataset.
    std::fs::remove_dir_all(&bare).unwrap();
    let run = eval("third");
    assert!(run.out.status.success(), "{}", run.context());
    assert_eq!(trial("third")["verifier_result"]["rewards"]["reward"], 1.0);

    // Errors name what is wrong.
    let run = autoagent_env(
        &[
            "eval",
            "-d",
            "demo@9",
            "--registry",
            registry.to_str().unwrap(),
        ],
        dir.path(),
        &[("AUTOAGENT_CACHE_DIR", &cache)],
    );
    assert!(!run.out.status.success());
    assert!(
        run.stderr().contains("no dataset `demo` at version `9`")
            && run.stderr().contains("demo@1.0"),
        "{}",
        run.context()
    );
}
