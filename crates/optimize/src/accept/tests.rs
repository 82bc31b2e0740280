use pretty_assertions::assert_eq;

use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i:02}")).collect()
}

fn tallies(spec: &[(&str, u32, u32)]) -> Tallies {
    spec.iter()
        .map(|&(t, p, n)| (t.to_owned(), Tally::new(p, n)))
        .collect()
}

fn uniform(tasks: &[String], passes: u32, attempts: u32) -> Tallies {
    tasks
        .iter()
        .map(|t| (t.clone(), Tally::new(passes, attempts)))
        .collect()
}

fn ctx<'a>(tasks: &'a [String], flakiness: &'a FlakinessModel) -> Context<'a> {
    Context {
        tasks,
        flakiness,
        incumbent_size: 100,
        candidate_size: 100,
        seed: 1,
    }
}

static EMPTY: Tallies = Tallies::new();

/// The first incumbent: its baseline is all it has.
fn base(t: &Tallies) -> Incumbent<'_> {
    Incumbent {
        accepted: t,
        accepted_is_baseline: true,
        since: &EMPTY,
    }
}

/// The first incumbent, with `more` attempts since the baseline `stored`.
fn inc2<'a>(stored: &'a Tallies, more: &'a Tallies) -> Incumbent<'a> {
    Incumbent {
        accepted: stored,
        accepted_is_baseline: true,
        since: more,
    }
}

/// Round parameters the cases below are worked out for (z 2.0, cap 6, no incumbent lead).
fn seq_cfg() -> AcceptConfig {
    AcceptConfig {
        z_accept: 2.0,
        cap: 6,
        incumbent_lead: 0,
        incumbent_flaky_min: 1,
        ..AcceptConfig::of(PolicyKind::Sequential)
    }
}

fn staged_cfg() -> AcceptConfig {
    AcceptConfig {
        policy: PolicyKind::Staged,
        stage_fraction: 0.2,
        stage_futility: 0.0,
        ..seq_cfg()
    }
}

fn policy(cfg: AcceptConfig) -> Policy {
    Policy::new(&cfg).expect("valid config")
}

fn sequential() -> Policy {
    policy(seq_cfg())
}

fn greedy(k: u32) -> Policy {
    policy(AcceptConfig {
        k,
        ..AcceptConfig::of(PolicyKind::Greedy)
    })
}

fn requested(d: &Decision) -> Vec<(Arm, String, u32)> {
    match d {
        Decision::RunMore(r) => {
            let mut v: Vec<_> = r
                .iter()
                .map(|r| (r.arm, r.task.clone(), r.attempts))
                .collect();
            v.sort();
            v
        }
        other => panic!("expected RunMore, got {other:?}"),
    }
}

fn is_keep(d: &Decision) -> bool {
    matches!(d, Decision::Keep { .. })
}

fn is_discard(d: &Decision) -> bool {
    matches!(d, Decision::Discard { .. })
}

// ------------------------------------------------------------------ greedy

#[test]
fn greedy_k1_is_the_original_rule() {
    let tasks = names(4);
    let model = FlakinessModel::default();
    let stored = tallies(&[("t00", 1, 1), ("t01", 1, 1), ("t02", 0, 1), ("t03", 0, 1)]);
    // Every attempt the incumbent ever got must not matter to greedy: only its stored run.
    let more = tallies(&[("t02", 5, 5)]);
    let inc = inc2(&stored, &more);
    let g = greedy(1);
    assert_eq!(g.baseline(&tasks).len(), 4);
    assert!(g.baseline(&tasks).iter().all(|r| r.attempts == 1));
    let first = g.first_look(&ctx(&tasks, &model), &inc);
    assert_eq!(first.len(), 4);
    assert!(
        first
            .iter()
            .all(|r| r.arm == Arm::Candidate && r.attempts == 1)
    );

    let three = tallies(&[("t00", 1, 1), ("t01", 1, 1), ("t02", 1, 1), ("t03", 0, 1)]);
    assert!(is_keep(&g.decide(&ctx(&tasks, &model), &inc, &three, 1)));
    let two = tallies(&[("t00", 0, 1), ("t01", 1, 1), ("t02", 1, 1), ("t03", 0, 1)]);
    assert!(is_discard(&g.decide(&ctx(&tasks, &model), &inc, &two, 1)));
    // As many passes and a smaller harness: kept; a larger one: discarded.
    let mut smaller = ctx(&tasks, &model);
    smaller.candidate_size = 90;
    assert!(is_keep(&g.decide(&smaller, &inc, &two, 1)));
    let mut larger = ctx(&tasks, &model);
    larger.candidate_size = 110;
    assert!(is_discard(&g.decide(&larger, &inc, &two, 1)));
}

#[test]
fn greedy_completes_a_cut_short_evaluation_before_deciding() {
    let tasks = names(3);
    let model = FlakinessModel::default();
    let stored = uniform(&tasks, 1, 3);
    let inc = base(&stored);
    let partial = tallies(&[("t00", 3, 3), ("t01", 1, 2)]);
    let d = greedy(3).decide(&ctx(&tasks, &model), &inc, &partial, 1);
    assert_eq!(
        requested(&d),
        vec![
            (Arm::Candidate, "t01".into(), 1),
            (Arm::Candidate, "t02".into(), 3)
        ]
    );
}

// ------------------------------------------------------------------ sequential

#[test]
fn first_look_reuses_the_incumbent_and_runs_it_only_where_it_never_ran() {
    let tasks = names(5);
    let model = FlakinessModel::default();
    let all = tallies(&[("t00", 1, 3), ("t01", 0, 1), ("t02", 2, 2), ("t03", 1, 1)]);
    let inc = base(&all);
    let first = sequential().first_look(&ctx(&tasks, &model), &inc);
    let mut got: Vec<_> = first
        .iter()
        .map(|r| (r.arm, r.task.clone(), r.attempts))
        .collect();
    got.sort();
    let mut want: Vec<_> = tasks
        .iter()
        .map(|t| (Arm::Candidate, t.clone(), 1))
        .collect();
    want.push((Arm::Incumbent, "t04".into(), 1));
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_clearly_better_candidate_is_kept_after_one_look() {
    let tasks = names(20);
    let model = FlakinessModel::default();
    let all = uniform(&tasks, 1, 2);
    let inc = base(&all);
    let cand = uniform(&tasks, 1, 1);
    let d = sequential().decide(&ctx(&tasks, &model), &inc, &cand, 1);
    assert!(is_keep(&d), "{d:?}");
}

#[test]
fn a_clearly_worse_candidate_is_discarded_by_futility_after_one_look() {
    let tasks = names(20);
    let model = FlakinessModel::default();
    let mut all = uniform(&tasks, 2, 2);
    all.add("t00", 0, 2);
    let inc = base(&all);
    let mut cand = uniform(&tasks[6..], 1, 1);
    cand.merge(&uniform(&tasks[..6], 0, 1));
    let d = sequential().decide(&ctx(&tasks, &model), &inc, &cand, 1);
    match d {
        Decision::Discard { reason } => assert!(reason.contains("futility"), "{reason}"),
        other => panic!("expected a futility discard, got {other:?}"),
    }
}

/// Ten tasks both arms always pass, one the candidate newly passes, one the incumbent passes
/// half the time, and one that only an earlier tree showed to be flaky.
fn undecided() -> (Vec<String>, FlakinessModel, Tallies, Tallies) {
    let tasks = names(13);
    let mut inc = uniform(&tasks[..10], 3, 3);
    inc.add("t10", 0, 3);
    inc.add("t11", 1, 2);
    inc.add("t12", 3, 3);
    let mut cand = uniform(&tasks[..10], 1, 1);
    cand.add("t10", 1, 1);
    cand.add("t11", 1, 1);
    cand.add("t12", 1, 1);
    let mut model = FlakinessModel::default();
    model.set_tree("incumbent", &inc);
    model.set_tree("older", &tallies(&[("t12", 1, 2)]));
    (tasks, model, inc, cand)
}

#[test]
fn run_more_asks_only_for_disagreeing_or_flaky_tasks() {
    let (tasks, model, inc_t, cand) = undecided();
    assert!(model.is_flaky("t12") && !model.is_flaky("t00") && !model.is_flaky("t10"));
    let inc = base(&inc_t);
    let d = sequential().decide(&ctx(&tasks, &model), &inc, &cand, 1);
    // The incumbent has at least as many attempts as the candidate will: nothing is rerun.
    assert_eq!(
        requested(&d),
        vec![
            (Arm::Candidate, "t10".into(), 1),
            (Arm::Candidate, "t11".into(), 1),
            (Arm::Candidate, "t12".into(), 1),
        ]
    );
    // Without the flakiness model, only the tasks that disagreed here.
    let no_model = policy(AcceptConfig {
        retry_flaky: false,
        ..seq_cfg()
    });
    let d = no_model.decide(&ctx(&tasks, &model), &inc, &cand, 1);
    assert_eq!(
        requested(&d),
        vec![
            (Arm::Candidate, "t10".into(), 1),
            (Arm::Candidate, "t11".into(), 1)
        ]
    );
    // With a lead, the incumbent is topped up just past the candidate, never rerun from zero.
    let lead = policy(AcceptConfig {
        incumbent_lead: 2,
        ..seq_cfg()
    });
    let d = lead.decide(&ctx(&tasks, &model), &inc, &cand, 1);
    assert_eq!(
        requested(&d),
        vec![
            (Arm::Candidate, "t10".into(), 1),
            (Arm::Candidate, "t11".into(), 1),
            (Arm::Candidate, "t12".into(), 1),
            (Arm::Incumbent, "t10".into(), 1),
            (Arm::Incumbent, "t11".into(), 2),
            (Arm::Incumbent, "t12".into(), 1),
        ]
    );
}

#[test]
fn the_cap_is_honoured_and_ends_the_comparison() {
    let (tasks, model, inc_t, cand) = undecided();
    let inc = base(&inc_t);
    let capped = policy(AcceptConfig {
        cap: 2,
        ..seq_cfg()
    });
    // One more attempt each, up to the cap of 2...
    let d = capped.decide(&ctx(&tasks, &model), &inc, &cand, 1);
    assert!(requested(&d).iter().all(|(_, _, n)| *n == 1));
    // ...then nothing more: the candidate sits at the cap on every uncertain task.
    let mut at_cap = cand.clone();
    at_cap.add("t10", 0, 1);
    at_cap.add("t11", 1, 1);
    at_cap.add("t12", 1, 1);
    let d = capped.decide(&ctx(&tasks, &model), &inc, &at_cap, 2);
    match d {
        Decision::Discard { reason } => assert!(reason.contains("no attempt left"), "{reason}"),
        other => panic!("expected a discard at the cap, got {other:?}"),
    }
    // max_looks ends it too.
    let one_look = policy(AcceptConfig {
        max_looks: 1,
        ..seq_cfg()
    });
    assert!(is_discard(&one_look.decide(
        &ctx(&tasks, &model),
        &inc,
        &cand,
        1
    )));
}

#[test]
fn at_the_cap_a_tie_goes_to_the_smaller_harness() {
    let tasks = names(4);
    let model = FlakinessModel::default();
    let inc_t = uniform(&tasks, 1, 2);
    let inc = base(&inc_t);
    let cand = uniform(&tasks, 1, 2);
    let p = policy(AcceptConfig {
        cap: 2,
        z_futility: -1.0,
        ..seq_cfg()
    });
    let mut c = ctx(&tasks, &model);
    c.candidate_size = 80;
    let d = p.decide(&c, &inc, &cand, 2);
    match d {
        Decision::Keep { reason } => assert!(reason.contains("smaller"), "{reason}"),
        other => panic!("expected keep as simpler, got {other:?}"),
    }
    c.candidate_size = 120;
    assert!(is_discard(&p.decide(&c, &inc, &cand, 2)));
}

#[test]
fn more_incumbent_attempts_sharpen_the_comparison() {
    // The same candidate against an incumbent known from one attempt per task is undecided,
    // against one known from many attempts (the same rate) it is kept.
    let tasks = names(12);
    let model = FlakinessModel::default();
    let cand: Tallies = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), Tally::new(u32::from(i < 6), 1)))
        .collect();
    let few: Tallies = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), Tally::new(u32::from(i < 5), 1)))
        .collect();
    let many: Tallies = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), Tally::new(if i < 5 { 6 } else { 0 }, 6)))
        .collect();
    let p = sequential();
    let d_few = p.decide(&ctx(&tasks, &model), &base(&few), &cand, 1);
    let d_many = p.decide(&ctx(&tasks, &model), &base(&many), &cand, 1);
    assert!(matches!(d_few, Decision::RunMore(_)), "{d_few:?}");
    assert!(is_keep(&d_many), "{d_many:?}");
}

// ------------------------------------------------------------------ staged

#[test]
fn staged_screens_a_seeded_slice_then_runs_only_the_rest() {
    let tasks = names(40);
    let model = FlakinessModel::default();
    let inc_t = uniform(&tasks, 1, 2);
    let inc = base(&inc_t);
    let p = policy(staged_cfg());
    let c = ctx(&tasks, &model);
    let first = p.first_look(&c, &inc);
    assert_eq!(first.len(), 8, "20% of 40 tasks");
    assert_eq!(first, p.first_look(&c, &inc), "the same slice again");
    let mut other_seed = c;
    other_seed.seed = 2;
    assert_ne!(first, p.first_look(&other_seed, &inc));
    let slice: Vec<String> = first.iter().map(|r| r.task.clone()).collect();

    // Worse on the slice: discarded after the first stage.
    let worse = uniform(&slice, 0, 1);
    match p.decide(&c, &inc, &worse, 1) {
        Decision::Discard { reason } => assert!(reason.contains("first stage"), "{reason}"),
        other => panic!("expected a first-stage discard, got {other:?}"),
    }
    // Better there: the other 32 tasks, once each; the slice's attempts count.
    let better = uniform(&slice, 1, 1);
    let more = requested(&p.decide(&c, &inc, &better, 1));
    assert_eq!(more.len(), 32);
    assert!(
        more.iter()
            .all(|(arm, t, n)| *arm == Arm::Candidate && *n == 1 && !slice.contains(t))
    );
}

#[test]
fn staged_can_pick_the_flakiest_tasks() {
    let tasks = names(10);
    let mut model = FlakinessModel::default();
    let mut seen = uniform(&tasks, 4, 4);
    seen.add("t03", 0, 4);
    seen.add("t07", 0, 4);
    model.set_tree("a", &seen);
    let p = policy(AcceptConfig {
        stage_select: StageSelect::Flaky,
        stage_min_tasks: 2,
        ..staged_cfg()
    });
    let inc = base(&seen);
    let mut slice: Vec<String> = p
        .first_look(&ctx(&tasks, &model), &inc)
        .into_iter()
        .map(|r| r.task)
        .collect();
    slice.sort();
    assert_eq!(slice, vec!["t03".to_owned(), "t07".to_owned()]);
}

// ------------------------------------------------------------------ flakiness, config

#[test]
fn flakiness_classes_follow_the_evidence() {
    let mut m = FlakinessModel::default();
    assert_eq!(m.task("never-ran").class, TaskClass::Flaky);
    m.set_tree(
        "a",
        &tallies(&[("pass", 4, 4), ("fail", 0, 4), ("flaky", 2, 4)]),
    );
    assert_eq!(m.task("pass").class, TaskClass::StablePass);
    assert_eq!(m.task("fail").class, TaskClass::StableFail);
    assert_eq!(m.task("flaky").class, TaskClass::Flaky);
    assert!(m.task("flaky").mixed);
    // Two trees that each never vary but disagree: the pooled rate is in the middle.
    m.set_tree("b", &tallies(&[("pass", 0, 4)]));
    assert_eq!(m.task("pass").class, TaskClass::Flaky);
    assert!(!m.task("pass").mixed);
    // A tree recorded again replaces its tallies: nothing counted twice.
    m.set_tree("b", &tallies(&[("pass", 3, 3)]));
    let t = m.task("pass");
    assert_eq!(
        (t.passes, t.attempts, t.class),
        (7, 7, TaskClass::StablePass)
    );
    assert_eq!(TaskClass::StableFail.as_str(), "stable-fail");
}

#[test]
fn config_errors_name_the_field() {
    let bad = [
        (
            AcceptConfig {
                k: 0,
                ..AcceptConfig::default()
            },
            "accept.k",
        ),
        (
            AcceptConfig {
                z_futility: 3.0,
                ..AcceptConfig::default()
            },
            "accept.z_futility",
        ),
        (
            AcceptConfig {
                cap: 0,
                ..AcceptConfig::default()
            },
            "accept.cap",
        ),
        (
            AcceptConfig {
                stage_fraction: 1.5,
                ..AcceptConfig::default()
            },
            "accept.stage_fraction",
        ),
        (
            AcceptConfig {
                z_accept: f64::NAN,
                ..AcceptConfig::default()
            },
            "accept.z_accept",
        ),
    ];
    for (cfg, name) in bad {
        let e = Policy::new(&cfg).expect_err("invalid").to_string();
        assert!(e.starts_with(&format!("{name}:")), "{e}");
    }
    #[derive(serde::Deserialize)]
    struct Wrap {
        #[allow(dead_code)]
        accept: AcceptConfig,
    }
    let e = toml::from_str::<Wrap>("[accept]\npolicy = \"bandit\"\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("policy") && e.contains("greedy"), "{e}");
    let ok: Wrap = toml::from_str("[accept]\npolicy = \"greedy\"\nk = 1\n").expect("parses");
    assert_eq!(ok.accept.policy, PolicyKind::Greedy);
    assert_eq!(policy(ok.accept).label(), "greedy k=1");
}

#[test]
fn a_kept_candidates_winning_attempts_do_not_raise_the_bar() {
    let tasks = names(3);
    let model = FlakinessModel::default();
    let won = uniform(&tasks, 1, 1);
    let later = tallies(&[("t00", 0, 1)]);
    let inc = Incumbent {
        accepted: &won,
        accepted_is_baseline: false,
        since: &later,
    };
    // Its winning attempts are left out: the incumbent runs once where only they exist.
    let mut got: Vec<_> = sequential()
        .first_look(&ctx(&tasks, &model), &inc)
        .into_iter()
        .filter(|r| r.arm == Arm::Incumbent)
        .map(|r| r.task)
        .collect();
    got.sort();
    assert_eq!(got, vec!["t01".to_owned(), "t02".to_owned()]);
    // Counting them (the stored ratchet) asks for nothing.
    let ratchet = policy(AcceptConfig {
        count_accepting: true,
        ..seq_cfg()
    });
    assert!(
        ratchet
            .first_look(&ctx(&tasks, &model), &inc)
            .iter()
            .all(|r| r.arm == Arm::Candidate)
    );
    // The baseline is an unbiased measurement: it always counts.
    assert!(
        sequential()
            .first_look(&ctx(&tasks, &model), &base(&won))
            .iter()
            .all(|r| r.arm == Arm::Candidate)
    );
}

#[test]
fn flaky_tasks_get_extra_incumbent_attempts_once() {
    let tasks = names(2);
    let mut model = FlakinessModel::default();
    let seen = tallies(&[("t00", 1, 2), ("t01", 2, 2)]);
    model.set_tree("incumbent", &seen);
    let p = policy(AcceptConfig {
        incumbent_flaky_min: 4,
        ..seq_cfg()
    });
    let first = p.first_look(&ctx(&tasks, &model), &base(&seen));
    let inc: Vec<_> = first
        .iter()
        .filter(|r| r.arm == Arm::Incumbent)
        .map(|r| (r.task.as_str(), r.attempts))
        .collect();
    assert_eq!(inc, vec![("t00", 2)]);
    // Once it has them, the next candidate reuses them.
    let topped = tallies(&[("t00", 2, 4), ("t01", 2, 2)]);
    assert!(
        p.first_look(&ctx(&tasks, &model), &base(&topped))
            .iter()
            .all(|r| r.arm == Arm::Candidate)
    );
}
