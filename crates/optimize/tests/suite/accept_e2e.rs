//! The acceptance policies in the loop, in real Docker, with tasks whose success is a seeded
//! coin of known probability (`autoagent_test_support::coin`): the truly helpful edit is kept,
//! the neutral and the harmful ones are discarded, `sequential` spends fewer trials than
//! `greedy k=3` on the same script, the incumbent's attempts are reused, and the forecast stops
//! the loop before the budget is overrun.

use std::path::Path;
use std::sync::Arc;

use autoagent_optimize::experiment::JobKind;
use autoagent_optimize::history::{History, JobAttempts};
use autoagent_optimize::{ExperimentId, Ledger, Status, StopReason, optimize};
use autoagent_test_support::coin;
use tokio_util::sync::CancellationToken;

use super::support::{Lines, dump, ledger, options, workspace};

/// A workspace of the six coin tasks under `accept` (an `[accept]` section), at the baseline
/// prompt, stopping after `experiments`.
async fn coin_workspace(
    root: &Path,
    accept: &str,
    extra: &str,
    series: &str,
) -> autoagent_optimize::Workspace {
    let mut ws = workspace(root, &[], &format!("{extra}\n[accept]\n{accept}\n")).await;
    coin::write_tasks(&root.join("tasks"), &coin::PROBABILITIES, series);
    coin::write_baseline_prompt(&root.join("harness"));
    ws.config.eval.concurrency = 3;
    ws
}

fn coin_options(docker: Arc<dyn autoagent_sandbox::Backend>) -> autoagent_optimize::Options {
    let dir = coin::fixture_dir();
    options(
        docker,
        &dir.join("task-agent.toml"),
        &format!("{}/meta-{{n}}.toml", dir.display()),
    )
}

/// Trial folders under every job of experiment `n` (holdout included).
fn trial_dirs(root: &Path, n: u32) -> u64 {
    let id = ExperimentId(n);
    [JobKind::Train, JobKind::Incumbent, JobKind::Holdout]
        .iter()
        .map(|k| JobAttempts::read(&root.join("jobs").join(id.job(*k))).ran)
        .sum()
}

fn spent(l: &Ledger, from: usize) -> u64 {
    l.rows[from..].iter().map(|r| r.attempts).sum()
}

#[tokio::test]
async fn sequential_keeps_the_helpful_edit_discards_the_others_and_spends_less_than_greedy() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let docker: Arc<dyn autoagent_sandbox::Backend> = Arc::new(docker);
    let dir = tempfile::tempdir().unwrap();

    // The default policy.
    let root = dir.path().join("sequential");
    let mut ws = coin_workspace(&root, "policy = \"sequential\"", "", "policies-b").await;
    ws.config.optimize.max_iterations = Some(3);
    let lines = Lines::default();
    let r = optimize(
        &ws,
        &coin_options(docker.clone()),
        &lines,
        CancellationToken::new(),
    )
    .await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(3), "{d}");
    let seq = ledger(&root);
    let statuses: Vec<Status> = seq.rows.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Status::Keep, Status::Keep, Status::Discard, Status::Discard],
        "helpful kept, neutral and harmful discarded\n{d}"
    );
    for (n, row) in seq.rows.iter().enumerate() {
        assert!(row.policy.starts_with("sequential"), "{d}");
        assert!(row.looks >= 1, "{d}");
        // The ledger's attempts are the trials on disk: none lost, none counted twice.
        assert_eq!(row.attempts, trial_dirs(&root, n as u32), "row {n}\n{d}");
    }
    assert_eq!(
        seq.rows[0].attempts, 6,
        "one attempt per task at the baseline\n{d}"
    );

    // The incumbent's attempts are reused: experiments 2 and 3 both compare against experiment
    // 1's tree, and the third's comparison counts the second's incumbent attempts, run once.
    let c1 = std::process::Command::new("git")
        .args(["-C", root.join("harness").to_str().unwrap()])
        .args(["rev-parse", &seq.rows[1].commit])
        .output()
        .unwrap();
    let c1 = String::from_utf8_lossy(&c1.stdout).trim().to_owned();
    let history = History::load(&root.join("jobs"));
    let inc2 = history.job(ExperimentId(2), JobKind::Incumbent);
    let inc3 = history.job(ExperimentId(3), JobKind::Incumbent);
    assert_eq!(inc2.commit, c1, "{d}");
    let (_, since) = history.incumbent(ExperimentId(1), &c1);
    assert_eq!(
        since.attempts(),
        inc2.tallies.attempts() + inc3.tallies.attempts(),
        "{d}"
    );
    assert!(inc2.tallies.attempts() > 0, "{d}");
    assert!(
        inc3.ran < since.attempts(),
        "experiment 3 ran {} incumbent trials and compared against {}\n{d}",
        inc3.ran,
        since.attempts()
    );

    // The same script under greedy k=3.
    let root_g = dir.path().join("greedy");
    let mut wg = coin_workspace(&root_g, "policy = \"greedy\"\nk = 3", "", "policies-b").await;
    wg.config.optimize.max_iterations = Some(3);
    let r = optimize(
        &wg,
        &coin_options(docker),
        &Lines::default(),
        CancellationToken::new(),
    )
    .await;
    let dg = dump(&root_g);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(3), "{dg}");
    let greedy = ledger(&root_g);
    assert_eq!(greedy.rows.len(), 4, "{dg}");
    for row in &greedy.rows {
        assert_eq!((row.policy.as_str(), row.looks), ("greedy k=3", 1), "{dg}");
        assert_eq!(row.attempts, 18, "{dg}");
    }
    eprintln!(
        "trials per row: sequential {:?}, greedy k=3 {:?}",
        seq.rows.iter().map(|r| r.attempts).collect::<Vec<_>>(),
        greedy.rows.iter().map(|r| r.attempts).collect::<Vec<_>>()
    );
    assert!(
        spent(&seq, 0) < spent(&greedy, 0),
        "sequential ran {} trials, greedy k=3 {}\n{d}\n{dg}",
        spent(&seq, 0),
        spent(&greedy, 0)
    );
}

#[tokio::test]
async fn the_forecast_stops_the_loop_before_the_budget_is_overrun() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let budget = 0.12;
    let mut ws = coin_workspace(&root, "policy = \"sequential\"", "", "budget").await;
    ws.config.optimize.budget_usd = Some(budget);
    // A holdout task too: its evaluation of a would-be keep is part of the forecast.
    ws.config.optimize.holdout = autoagent_settings::Holdout::Tasks(vec!["coin-5".into()]);
    let lines = Lines::default();
    let r = optimize(
        &ws,
        &coin_options(Arc::new(docker)),
        &lines,
        CancellationToken::new(),
    )
    .await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::Budget(budget), "{d}");
    let l = ledger(&root);
    // Every trial costs $0.002 (two calls), every meta session $0.03.
    let one_trial = 0.002;
    assert!(
        l.spent_usd() <= budget + one_trial + 1e-9,
        "spent {} of {budget}\n{d}",
        l.spent_usd()
    );
    assert!(l.rows.len() >= 2, "at least one experiment fits\n{d}");
    let said = lines.0.lock().unwrap().join("\n");
    assert!(
        said.contains("next experiment forecast $")
            && said.contains("experiments left at this rate"),
        "{said}"
    );
    assert!(
        said.contains("not starting another experiment: spent $"),
        "{said}"
    );
}

#[tokio::test]
async fn the_trial_cache_serves_a_spot_checked_tree_and_a_re_proposed_one() {
    let Some(docker) = autoagent_test_support::docker_backend().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let mut ws = coin_workspace(&root, "policy = \"sequential\"", "", "cache").await;
    ws.config.optimize.max_iterations = Some(3);
    let fixtures = coin::fixture_dir();
    let opts = options(
        Arc::new(docker),
        &fixtures.join("task-agent.toml"),
        &format!("{}/cache-meta-{{n}}.toml", fixtures.display()),
    );
    let r = optimize(&ws, &opts, &Lines::default(), CancellationToken::new()).await;
    let d = dump(&root);
    assert_eq!(r.unwrap(), StopReason::MaxIterations(3), "{d}");
    let l = ledger(&root);
    let jobs = root.join("jobs");
    let job = |n: u32, kind: JobKind| JobAttempts::read(&jobs.join(ExperimentId(n).job(kind)));

    // Experiment 1: the spot check ran coin-0 and coin-1 once; the comparison of the same tree
    // took those two trials from the cache.
    let spot = job(1, JobKind::Spot(1));
    assert_eq!((spot.ran, spot.cached), (2, 0), "{d}");
    let e1 = job(1, JobKind::Train);
    assert_eq!(e1.cached, 2, "{d}");
    let marked: Vec<_> = autoagent_harbor::JobDir::new(jobs.join("exp-0001"))
        .trial_results()
        .into_iter()
        .filter(|t| t.cached_from.is_some())
        .map(|t| t.task_name)
        .collect();
    let mut marked = marked;
    marked.sort();
    assert_eq!(marked, ["coin-0", "coin-1"], "{d}");

    // Experiment 3 proposes experiment 2's tree again: every attempt experiment 2 gave it is
    // served from the cache, not paid again.
    assert_eq!(l.rows[2].status, Status::Discard, "{d}");
    let (e2, e3) = (job(2, JobKind::Train), job(3, JobKind::Train));
    assert!(
        e3.cached >= 6,
        "{} of {} from the cache\n{d}",
        e3.cached,
        e3.ran
    );
    assert!(
        e3.cached <= e2.ran,
        "at most the trials experiment 2 ran\n{d}"
    );
    // The ledger counts what was paid for: cached trials are not attempts spent.
    for n in 0..4u32 {
        assert_eq!(
            l.rows[n as usize].attempts,
            trial_dirs(&root, n) + job(n, JobKind::Spot(1)).ran,
            "row {n}\n{d}"
        );
    }
    // A hit costs nothing: experiment 3's task spend is what its own runs cost.
    let e3_cost = l.rows[3].task_cost_usd.unwrap();
    assert!(
        (e3_cost - 0.002 * (e3.ran + job(3, JobKind::Incumbent).ran) as f64).abs() < 1e-9,
        "{e3_cost}\n{d}"
    );
}
