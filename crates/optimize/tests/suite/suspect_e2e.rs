//! The loop in real Docker against a harness whose agent tampers with the verifier: the
//! meta-agent adds a generic `run` tool, the scripted task agent uses it to put a pytest that
//! passes everything on PATH (and to write its own reward file). Every candidate trial gets
//! reward 1 and is marked suspect; counted as failures, they gain nothing, so the loop does not
//! keep the change, and the ledger names the suspect trials.

use std::sync::Arc;

use autoagent_harbor::JobDir;
use autoagent_optimize::{Status, StopReason, optimize};
use pretty_assertions::assert_eq;
use tokio_util::sync::CancellationToken;

use super::support::{Lines, copy_dir, dump, fixture, git, ledger, options, workspace};

#[tokio::test]
async fn a_gain_from_suspect_trials_is_never_kept() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let mut ws = workspace(&root, &["hello-file"], "").await;
    // Only the task whose verifier a planted pytest fools.
    std::fs::remove_dir_all(root.join("tasks/hello-file")).unwrap();
    copy_dir(
        &fixture("suspect/pytest-gate"),
        &root.join("tasks/pytest-gate"),
    );
    let meta = format!("{}/meta-{{n}}.toml", fixture("suspect").display());
    let opts = options(Arc::new(docker), &fixture("suspect/task-agent.toml"), &meta);
    ws.config.optimize.max_iterations = Some(2);
    let r = optimize(&ws, &opts, &Lines::default(), CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(2), "{d}");
    let l = ledger(&root);
    assert_eq!(l.rows.len(), 3, "{d}");
    let (base, e1, e2) = (&l.rows[0], &l.rows[1], &l.rows[2]);
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

    // Every candidate trial "passed" the verifier, and every one is suspect.
    let trials = JobDir::new(root.join("jobs/exp-0001")).trial_results();
    assert_eq!(trials.len(), 2, "{d}");
    for t in &trials {
        assert_eq!(t.reward(), Some(1.0), "{d}");
        assert!(t.is_suspect(), "{d}");
        let ev = t.integrity_evidence().join("; ");
        assert!(
            ev.contains("wrote /logs/verifier/reward.txt")
                && ev.contains("`pytest` appeared on PATH: /usr/local/bin/pytest"),
            "{ev}"
        );
    }

    // Counted as failures, the candidate gained nothing on a bigger harness: discarded, and
    // the ledger says why.
    assert_eq!(
        (e1.status, e1.passed, e1.trials),
        (Status::Discard, 0, 2),
        "{d}"
    );
    assert_eq!(e1.avg_score, 0.0, "{d}");
    let mut names: Vec<String> = trials.iter().map(|t| t.trial_name.clone()).collect();
    names.sort();
    assert_eq!(
        e1.description,
        format!(
            "add a run tool for shell commands [2 suspect trial(s) counted as failures: {}]",
            names.join(", ")
        ),
        "{d}"
    );
    assert_eq!(
        git(&root, &["rev-parse", "--short=7", "HEAD"]),
        base.commit,
        "{d}"
    );
    assert_eq!(
        git(
            &root,
            &["rev-parse", "--short=7", "refs/autoagent/discarded/1"]
        ),
        e1.commit
    );
    assert!(!root.join("harness/tools/run.py").exists(), "{d}");

    // The next session saw the flag in list_trials (its script expects it), changed nothing.
    assert_eq!(e2.status, Status::Discard, "{d}");
    assert!(
        e2.description.starts_with("no change to the harness"),
        "{d}"
    );
}
