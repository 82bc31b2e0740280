//! `autoagent init` → `optimize` → SIGKILL at the worst moments → `optimize` again: nothing
//! lost, nothing run or counted twice, and what the trial cache holds reused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{autoagent, bin, docker_or_skip, examples};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn optimize_args(ws: &Path) -> Vec<String> {
    vec![
        "optimize".into(),
        "--workspace".into(),
        ws.display().to_string(),
        "--model".into(),
        format!("scripted/{}", fixture("kill/task-agent.toml").display()),
        "--meta-model".into(),
        format!("scripted/{}/meta-{{n}}.toml", fixture("kill").display()),
        "--max-iterations".into(),
        "1".into(),
        "-k".into(),
        "2".into(),
        // The rules of the kill points below are greedy's; `sequential` is killed look by look
        // in the optimize crate's tests.
        "--accept".into(),
        "greedy".into(),
        "-n".into(),
        "1".into(),
        "--sandbox".into(),
        "docker".into(),
    ]
}

fn spawn(ws: &Path) -> Child {
    Command::new(bin())
        .args(optimize_args(ws))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn finished_trials(job: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(job)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("result.json")).ok())
        .map(|t| {
            let r: serde_json::Value = serde_json::from_str(&t).unwrap();
            (
                r["trial_name"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn wait_for(what: &str, ws: &Path, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "timed out waiting for {what}\n{}",
            std::fs::read_to_string(ws.join(".autoagent/optimize.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill(mut c: Child) {
    c.kill().unwrap(); // SIGKILL
    c.wait().unwrap();
}

#[test]
fn killed_during_a_meta_session_and_an_evaluation_then_resumed() {
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let run = autoagent(&["init", ws.to_str().unwrap()], dir.path());
    assert!(run.out.status.success(), "{}", run.context());
    assert!(
        run.stdout().contains("autoagent optimize"),
        "{}",
        run.context()
    );
    std::fs::remove_dir_all(ws.join("tasks")).unwrap();
    let src = examples().join("hello-file");
    for sub in ["", "environment", "tests", "solution"] {
        std::fs::create_dir_all(ws.join("tasks/hello-file").join(sub)).unwrap();
        for f in std::fs::read_dir(src.join(sub))
            .unwrap()
            .flatten()
            .filter(|f| f.path().is_file())
        {
            std::fs::copy(
                f.path(),
                ws.join("tasks/hello-file").join(sub).join(f.file_name()),
            )
            .unwrap();
        }
    }

    // 1. Killed during the meta-agent session (while its spot check runs).
    let c = spawn(&ws);
    wait_for("the spot check", &ws, || {
        ws.join("jobs/exp-0001-spot-1").is_dir()
    });
    kill(c);
    let baseline = finished_trials(&ws.join("jobs/exp-0000"));
    assert_eq!(baseline.len(), 2);
    let state = std::fs::read_to_string(ws.join(".autoagent/state.json")).unwrap();
    assert!(state.contains("\"phase\": \"meta\""), "{state}");

    // 2. Resumed, then killed during the evaluation, with one trial of two finished.
    let c = spawn(&ws);
    wait_for("one evaluated trial", &ws, || {
        finished_trials(&ws.join("jobs/exp-0001")).len() == 1
    });
    kill(c);
    let before = finished_trials(&ws.join("jobs/exp-0001"));
    let state = std::fs::read_to_string(ws.join(".autoagent/state.json")).unwrap();
    assert!(state.contains("\"phase\": \"evaluate\""), "{state}");

    // 3. Resumed to the end.
    let args: Vec<String> = optimize_args(&ws);
    let run = autoagent(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    let log = std::fs::read_to_string(ws.join(".autoagent/optimize.log")).unwrap_or_default();
    assert!(run.out.status.success(), "{}\n{log}", run.context());
    assert!(log.contains("exp-0001: resuming the evaluation"), "{log}");

    let ledger = std::fs::read_to_string(ws.join("results.tsv")).unwrap();
    let rows: Vec<Vec<&str>> = ledger
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{ledger}");
    assert_eq!(
        (rows[0][2], rows[0][5], rows[0][6]),
        ("0/2", "keep", "baseline"),
        "{ledger}"
    );
    assert_eq!(
        (rows[1][2], rows[1][5], rows[1][6]),
        ("2/2", "keep", "add a solve tool"),
        "{ledger}"
    );
    assert_eq!(rows[1][12], "jobs/exp-0001");
    // The baseline was not rerun; the trial finished before the kill was kept, not rerun.
    assert_eq!(finished_trials(&ws.join("jobs/exp-0000")), baseline);
    let after = finished_trials(&ws.join("jobs/exp-0001"));
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.contains(&before[0]), "{before:?} → {after:?}");
    // The resumed session's spot check of the same tree served the evaluation's first attempt
    // from the trial cache: one trial of the two was not paid again.
    let cached: Vec<String> = std::fs::read_dir(ws.join("jobs/exp-0001"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("result.json")).ok())
        .filter_map(|t| {
            let r: serde_json::Value = serde_json::from_str(&t).unwrap();
            r["cached_from"].as_str().map(str::to_owned)
        })
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].contains("exp-0001-spot-"), "{cached:?}");
    let ran: usize = ["exp-0001", "exp-0001-spot-1", "exp-0001-spot-2"]
        .iter()
        .map(|j| finished_trials(&ws.join("jobs").join(j)).len())
        .sum::<usize>()
        - cached.len();
    assert_eq!(
        rows[1][15],
        ran.to_string(),
        "the ledger's attempts count the trials that ran, not the cached one\n{ledger}"
    );
    let dirs = std::fs::read_dir(ws.join("jobs/exp-0001"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .count();
    assert_eq!(dirs, 2, "no half-done trial dir is left");
    // One commit per kept experiment, a clean tree, no pending state.
    let git = |args: &[&str]| {
        String::from_utf8_lossy(
            &Command::new("git")
                .arg("-C")
                .arg(ws.join("harness"))
                .args(args)
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_owned()
    };
    assert_eq!(
        git(&["log", "--format=%s", "main"]),
        "exp-0001: add a solve tool\nbaseline harness"
    );
    assert_eq!(git(&["status", "--porcelain"]), "");
    assert!(!ws.join(".autoagent/state.json").exists());
    // The spot check killed in step 1 is never resumed (the next session starts its own): its
    // sandbox went when the loop started again. (A kill before the job wrote its result.json
    // came before any sandbox of it: the job's id, which labels them, is written first.)
    if let Ok(text) = std::fs::read_to_string(ws.join("jobs/exp-0001-spot-1/result.json")) {
        let spot: serde_json::Value = serde_json::from_str(&text).unwrap();
        let left = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!(
                "label=autoagent.job={}",
                spot["id"].as_str().unwrap()
            ))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&left.stdout).trim(),
            "",
            "a container of the killed spot check is left\n{log}"
        );
    }
    // The meta-agent's spend: the interrupted session's recorded steps plus the full one.
    let meta: f64 = rows[1][9].parse().unwrap();
    assert!((0.039..0.051).contains(&meta), "meta cost {meta}\n{ledger}");

    // The report: the table, the plots (the PNG at the asked size) and report.md.
    let run = autoagent(
        &[
            "report",
            "--workspace",
            ws.to_str().unwrap(),
            "--width",
            "800",
            "--height",
            "400",
        ],
        dir.path(),
    );
    assert!(run.out.status.success(), "{}", run.context());
    assert!(
        run.stdout().contains("add a solve tool"),
        "{}",
        run.context()
    );
    let png = std::fs::read(ws.join("progress.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (800, 400));
    let svg = std::fs::read_to_string(ws.join("progress.svg")).unwrap();
    assert_eq!(
        svg.matches("data-experiment=").count(),
        2,
        "one marker per ledger row"
    );
    let md = std::fs::read_to_string(ws.join("report.md")).unwrap();
    assert!(
        md.contains("+description = \"Write text to a file.\""),
        "the kept change's diff\n{md}"
    );
}

/// The `(id, task)` of every finished trial under `jobs/`, every job together.
fn all_finished_trials(ws: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(ws.join("jobs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|e| {
            let job = e.file_name().to_string_lossy().into_owned();
            finished_trials(&e.path())
                .into_iter()
                .map(move |(task, id)| (format!("{job}/{task}"), id))
        })
        .collect();
    v.sort();
    v
}

fn state_json(ws: &Path) -> serde_json::Value {
    std::fs::read_to_string(ws.join(".autoagent/state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

#[test]
fn sequential_killed_at_every_look_then_resumed_loses_and_double_counts_nothing() {
    use autoagent_test_support::coin;
    if !docker_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    let run = autoagent(&["init", ws.to_str().unwrap()], dir.path());
    assert!(run.out.status.success(), "{}", run.context());
    std::fs::remove_dir_all(ws.join("tasks")).unwrap();
    coin::write_tasks(&ws.join("tasks"), &coin::PROBABILITIES, "kill-e");
    coin::write_baseline_prompt(&ws.join("harness"));
    let fixtures = coin::fixture_dir();
    let args: Vec<String> = vec![
        "optimize".into(),
        "--workspace".into(),
        ws.display().to_string(),
        "--model".into(),
        format!("scripted/{}", fixtures.join("task-agent.toml").display()),
        "--meta-model".into(),
        format!("scripted/{}/meta-{{n}}.toml", fixtures.display()),
        "--max-iterations".into(),
        "2".into(),
        "--accept".into(),
        "sequential".into(),
        "-n".into(),
        "2".into(),
        "--sandbox".into(),
        "docker".into(),
    ];
    let spawn = || {
        Command::new(bin())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let log = || std::fs::read_to_string(ws.join(".autoagent/optimize.log")).unwrap_or_default();

    // Killed in the middle of each look of experiment 1, one after the other: once a look is
    // in progress and a trial more than before has finished.
    let mut kills = Vec::new();
    for look in 0..3u64 {
        let c = spawn();
        let before = all_finished_trials(&ws).len();
        let t0 = Instant::now();
        let mut reached = false;
        while t0.elapsed() < Duration::from_secs(180) {
            let s = state_json(&ws);
            let in_look = s["phase"] == "evaluate"
                && s["experiment"] == 1
                && s["looks"].as_u64() == Some(look)
                && s.get("look").is_some();
            if in_look && all_finished_trials(&ws).len() > before {
                reached = true;
                break;
            }
            if std::fs::read_to_string(ws.join("results.tsv"))
                .unwrap_or_default()
                .lines()
                .count()
                > 2
            {
                break; // experiment 1 decided before this look
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(c);
        if !reached {
            break;
        }
        kills.push((look, all_finished_trials(&ws)));
    }
    eprintln!(
        "killed in look(s) {:?}",
        kills.iter().map(|(l, _)| l + 1).collect::<Vec<_>>()
    );
    assert!(
        kills.len() >= 2,
        "fewer than two looks were killed\n{}",
        log()
    );

    // Resumed to the end.
    let run = autoagent(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        dir.path(),
    );
    assert!(run.out.status.success(), "{}\n{}", run.context(), log());
    let after = all_finished_trials(&ws);
    for (look, seen) in &kills {
        for t in seen {
            assert!(
                after.contains(t),
                "trial {t:?} finished before the kill in look {look} is gone\n{}",
                log()
            );
        }
    }
    let l = autoagent_optimize::Ledger::load(&ws.join("results.tsv")).unwrap();
    assert_eq!(l.rows.len(), 3, "{}", log());
    // Each row's attempts are its experiment's trials on disk (none run twice, none counted
    // twice), and its passes/trials are its candidate job's.
    for (n, row) in l.rows.iter().enumerate() {
        let prefix = format!("exp-{n:04}");
        let on_disk = after
            .iter()
            .filter(|(job, _)| {
                job.starts_with(&format!("{prefix}/")) || job.starts_with(&format!("{prefix}-"))
            })
            .count() as u64;
        assert_eq!(row.attempts, on_disk, "row {n}\n{}", log());
        let candidate = finished_trials(&ws.join("jobs").join(&prefix)).len() as u32;
        assert_eq!(row.trials, candidate, "row {n}\n{}", log());
        assert!(
            row.looks >= 1 && row.policy.starts_with("sequential"),
            "{row:?}"
        );
    }
    let mut ids: Vec<&String> = after.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), after.len(), "a trial id appears twice");
    assert!(!ws.join(".autoagent/state.json").exists());
    assert!(
        log().contains("exp-0001: resuming the evaluation"),
        "{}",
        log()
    );
}
