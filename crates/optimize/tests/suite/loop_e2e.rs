//! The loop end to end in real Docker, scripted task and meta models: keep on a higher score,
//! crash on a broken harness, keep when equal and smaller, discard when lower, discard on a leak.

use std::sync::Arc;

use autoagent_optimize::{Status, StopReason, optimize};
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::support::{Lines, dump, fixture, git, ledger, options, workspace};

#[tokio::test]
async fn experiments_are_kept_crashed_and_discarded_by_the_rules() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker = Arc::new(docker);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let mut ws = workspace(&root, &["hello-file"], "").await;
    let meta = format!("{}/meta-{{n}}.toml", fixture("loop").display());
    let opts = options(docker, &fixture("loop/task-agent.toml"), &meta);
    let lines = Lines::default();

    let mut step = |n: u32| {
        ws.config.optimize.max_iterations = Some(n);
        ws.clone()
    };

    // Baseline, then experiment 1: the solve tool raises the score → keep.
    let w = step(1);
    let r = optimize(&w, &opts, &lines, CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(1), "{d}");
    let l = ledger(&root);
    assert_eq!(l.rows.len(), 2, "{d}");
    let (base, e1) = (&l.rows[0], &l.rows[1]);
    assert_eq!(
        (
            base.status,
            base.passed,
            base.trials,
            base.description.as_str()
        ),
        (Status::Keep, 0, 2, "baseline"),
        "{d}"
    );
    assert_eq!(base.task_scores, vec![("hello-file".to_owned(), 0, 2)]);
    assert_eq!(
        base.task_cost_usd.map(|c| (c * 1e6).round()),
        Some(4000.0),
        "2 trials × 2 calls × $0.001\n{d}"
    );
    assert_eq!(
        (e1.status, e1.passed, e1.trials),
        (Status::Keep, 2, 2),
        "{d}"
    );
    assert_eq!(
        e1.description,
        "add a solve tool that writes text to a file"
    );
    assert_eq!(
        e1.meta_cost_usd.map(|c| (c * 1e6).round()),
        Some(40000.0),
        "{d}"
    );
    assert_eq!(
        e1.cost_usd.map(|c| (c * 1e6).round()),
        Some(44000.0),
        "task + meta\n{d}"
    );
    assert!(e1.harness_size > base.harness_size);
    assert_eq!(e1.job_dir, "jobs/exp-0001");
    assert_eq!(
        git(&root, &["log", "--format=%s", "main"]),
        "exp-0001: add a solve tool that writes text to a file\nbaseline harness"
    );
    assert_eq!(git(&root, &["rev-parse", "--short=7", "HEAD"]), e1.commit);
    assert_eq!(git(&root, &["status", "--porcelain"]), "");
    assert!(root.join("harness/tools/solve.py").is_file());
    let inc = e1.commit.clone();

    // Experiment 2: harness.toml broken → crash, reverted, readable under its ref.
    let r = optimize(&step(2), &opts, &lines, CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(2), "{d}");
    let e2 = ledger(&root).rows[2].clone();
    assert_eq!(e2.status, Status::Crash, "{d}");
    assert!(
        e2.description
            .starts_with("invalid harness: restructure the config: harness.toml"),
        "{}",
        e2.description
    );
    assert_eq!((e2.passed, e2.trials), (0, 0));
    assert!(
        !root.join("jobs/exp-0002").exists(),
        "a crash is not evaluated"
    );
    assert_eq!(git(&root, &["rev-parse", "--short=7", "HEAD"]), inc, "{d}");
    assert_eq!(git(&root, &["status", "--porcelain"]), "");
    assert!(
        std::fs::read_to_string(root.join("harness/harness.toml"))
            .unwrap()
            .contains("[agent]\n")
    );
    assert_eq!(
        git(&root, &["show", "refs/autoagent/discarded/2:harness.toml"]),
        "[agent\nsystem_prompt = 3"
    );

    // Experiment 3: same score, smaller harness → keep.
    let r = optimize(&step(3), &opts, &lines, CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(3), "{d}");
    let l = ledger(&root);
    let e3 = &l.rows[3];
    assert_eq!(
        (e3.status, e3.passed, e3.trials),
        (Status::Keep, 2, 2),
        "{d}"
    );
    assert!(e3.harness_size < l.rows[1].harness_size, "{d}");
    assert_eq!(
        git(&root, &["log", "--format=%s", "main"]).lines().count(),
        3,
        "{d}"
    );
    assert_eq!(git(&root, &["rev-parse", "--short=7", "HEAD"]), e3.commit);
    let inc = e3.commit.clone();
    assert!(
        !std::fs::read_to_string(root.join("harness/prompts/system.md"))
            .unwrap()
            .contains("step by step")
    );

    // Experiment 4: the score falls → discard; the working tree goes back to the incumbent.
    let r = optimize(&step(4), &opts, &lines, CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(4), "{d}");
    let e4 = ledger(&root).rows[4].clone();
    assert_eq!(
        (e4.status, e4.passed, e4.trials),
        (Status::Discard, 0, 2),
        "{d}"
    );
    assert_eq!(e4.description, "normalise the case of written text");
    assert_eq!(git(&root, &["rev-parse", "--short=7", "HEAD"]), inc, "{d}");
    assert_eq!(
        git(
            &root,
            &["rev-parse", "--short=7", "refs/autoagent/discarded/4"]
        ),
        e4.commit
    );
    assert!(
        git(
            &root,
            &["show", "refs/autoagent/discarded/4:tools/solve.py"]
        )
        .contains(".upper()")
    );
    assert!(
        !std::fs::read_to_string(root.join("harness/tools/solve.py"))
            .unwrap()
            .contains(".upper()")
    );
    assert_eq!(git(&root, &["status", "--porcelain"]), "");

    // Experiment 5: the expected output in the prompt → the leak guard discards it unevaluated.
    let r = optimize(&step(5), &opts, &lines, CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(5), "{d}");
    let e5 = ledger(&root).rows[5].clone();
    assert_eq!(e5.status, Status::Discard, "{d}");
    assert!(
        e5.description.starts_with("leak guard:")
            && e5
                .description
                .contains("\"Hello, world!\" (task hello-file: "),
        "{}",
        e5.description
    );
    assert!(!root.join("jobs/exp-0005").exists());
    assert!(
        git(
            &root,
            &["show", "refs/autoagent/discarded/5:prompts/system.md"]
        )
        .contains("Hello, world!")
    );
    assert_eq!(git(&root, &["rev-parse", "--short=7", "HEAD"]), inc);
    assert_eq!(git(&root, &["status", "--porcelain"]), "");

    // At its limit, another run does nothing and records nothing.
    let r = optimize(&step(5), &opts, &lines, CancellationToken::new()).await;
    assert_eq!(r.unwrap(), StopReason::MaxIterations(5));
    assert_eq!(ledger(&root).rows.len(), 6);
    // Every experiment's evaluation has exactly k trials.
    for job in ["exp-0000", "exp-0001", "exp-0003", "exp-0004"] {
        let n = std::fs::read_dir(root.join("jobs").join(job))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("result.json").is_file())
            .count();
        assert_eq!(n, 2, "{job}\n{}", dump(&root));
    }
}

#[tokio::test]
async fn a_stop_file_ends_the_run_at_an_experiment_boundary() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let ws = workspace(&root, &["hello-file"], "").await;
    std::fs::write(root.join("STOP"), "").unwrap();
    let meta = format!("{}/meta-{{n}}.toml", fixture("loop").display());
    let opts = options(Arc::new(docker), &fixture("loop/task-agent.toml"), &meta);
    let r = optimize(&ws, &opts, &Lines::default(), CancellationToken::new()).await;
    assert_eq!(r.unwrap(), StopReason::StopFile, "{}", dump(&root));
    // The baseline ran; no experiment started.
    assert_eq!(ledger(&root).rows.len(), 1);
    // Scores only compare under the same k and tasks: another k is refused, nothing is run.
    let mut other = ws.clone();
    other.config.eval.attempts = 3;
    let e = optimize(&other, &opts, &Lines::default(), CancellationToken::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("attempts per task (k) was 2, now 3"), "{e}");
    assert_eq!(ledger(&root).rows.len(), 1);
}
