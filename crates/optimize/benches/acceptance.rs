//! The acceptance simulator: the policies of `autoagent_optimize::accept` — the code the loop
//! calls — hill-climbing on a Monte-Carlo model of noisy harness edits (the reference model of
//! `reference/acceptance/sim.py`, ported faithfully).
//!
//! Model: N tasks with incumbent pass rates p_i ~ Beta(A, A); 100 proposals, each neutral,
//! harmful or helpful (60/25/15 by default) with effect N(0, 0.5) pts, −U(2, 5)·P/P0 pts or
//! +U(2, 6)·(1−P)/(1−P0) pts, concentrated on a few tasks (each moves by U(0.3, 0.9) of its
//! room until the mass is used), plus churn on 5% of the tasks. The incumbent is replaced on
//! keep. Cost = task attempts run (both arms and the baseline).
//!
//! ```text
//! cargo bench -p autoagent-optimize --bench acceptance -- \
//!     [--n 30,89,300] [--seeds 600] [--a 0.3] [--mix 0.60,0.25,0.15] [--threads 2] \
//!     [--policy '<[accept] fields as a TOML inline table body>' ...]
//! ```
//! `--policy 'policy = "sequential", z_accept = 1.8, cap = 5'` replaces the built-in list
//! (repeat it for several).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use autoagent_optimize::accept::{
    AcceptConfig, Arm, Context, Decision, FlakinessModel, Incumbent, Policy, PolicyKind, Request,
    Tallies,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T_PROPOSALS: usize = 100;

// ------------------------------------------------------------------ random numbers

fn seeded(parts: &[u64]) -> StdRng {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for &p in parts {
        h ^= p;
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
    }
    StdRng::seed_from_u64(h)
}

fn uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller; 1 − u keeps the logarithm finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// ln of a Gamma(a, 1) draw (Marsaglia–Tsang; a < 1 boosted through Gamma(a + 1)·U^(1/a), in
/// logs so that tiny shapes do not underflow).
fn ln_gamma_draw(rng: &mut StdRng, a: f64) -> f64 {
    if a < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return ln_gamma_draw(rng, a + 1.0) + u.ln() / a;
    }
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
            return (d * v).ln();
        }
    }
}

fn beta(rng: &mut StdRng, a: f64, b: f64) -> f64 {
    let x = ln_gamma_draw(rng, a);
    let y = ln_gamma_draw(rng, b);
    1.0 / (1.0 + (y - x).exp())
}

fn permutation(rng: &mut StdRng, v: &mut [usize]) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

// ------------------------------------------------------------------ the edit model

/// Moves `mass` (in task units) of pass probability up or down, on a few random tasks with room.
fn move_mass(p: &[f64], mass: f64, rng: &mut StdRng, up: bool) -> Vec<f64> {
    let mut d = vec![0.0; p.len()];
    let room: Vec<f64> = p.iter().map(|&x| if up { 1.0 - x } else { x }).collect();
    let mut cand: Vec<usize> = (0..p.len()).filter(|&i| room[i] > 0.05).collect();
    if cand.is_empty() || mass <= 0.0 {
        return d;
    }
    permutation(rng, &mut cand);
    let inc: Vec<f64> = cand
        .iter()
        .map(|&i| room[i] * uniform(rng, 0.3, 0.9))
        .collect();
    let mut used = 0.0;
    for (j, &i) in cand.iter().enumerate() {
        if used + inc[j] >= mass {
            d[i] = mass - used;
            break;
        }
        d[i] = inc[j];
        used += inc[j];
    }
    if !up {
        for x in &mut d {
            *x = -*x;
        }
    }
    d
}

/// Edit type: 0 neutral, 1 harmful, 2 helpful.
fn make_candidate(p: &[f64], etype: usize, emag: f64, p0: f64, rng: &mut StdRng) -> Vec<f64> {
    let n = p.len();
    let mean = p.iter().sum::<f64>() / n as f64;
    let eff = match etype {
        0 => emag,
        1 => emag * (mean / p0),
        _ => emag * ((1.0 - mean) / (1.0 - p0)),
    };
    let mass = eff.abs() / 100.0 * n as f64;
    let d = move_mass(p, mass, rng, eff > 0.0);
    let mut q: Vec<f64> = p.iter().zip(&d).map(|(a, b)| a + b).collect();
    // Churn: 5% of the tasks up, as many down.
    let m = ((0.05 * n as f64).round() as usize).max(1);
    let mut idx: Vec<usize> = (0..n).collect();
    permutation(rng, &mut idx);
    let idx = &idx[..(2 * m).min(n)];
    let (up, dn) = idx.split_at(m.min(idx.len()));
    for &i in up {
        q[i] += (1.0 - q[i]) * uniform(rng, 0.2, 0.6);
    }
    for &i in dn {
        q[i] -= q[i] * uniform(rng, 0.2, 0.6);
    }
    q.iter().map(|x| x.clamp(0.0, 1.0)).collect()
}

// ------------------------------------------------------------------ one run

#[derive(Clone)]
enum Rule {
    Oracle,
    AcceptAll,
    Policy(Policy),
}

#[derive(Clone, Copy, Default)]
struct Outcome {
    gain: f64,
    kept: [u32; 3],
    proposed: [u32; 3],
    cost: u64,
    /// Of `cost`, the incumbent's attempts (the baseline included).
    incumbent_cost: u64,
    looks: u64,
}

struct Scenario {
    n: usize,
    a: f64,
    mix: [f64; 3],
}

fn run_one(sc: &Scenario, seed: u64, rule_index: u64, rule: &Rule, names: &[String]) -> Outcome {
    let n = sc.n;
    let mut base = seeded(&[seed, n as u64, 7]);
    let p0: Vec<f64> = (0..n).map(|_| beta(&mut base, sc.a, sc.a)).collect();
    let mean0 = p0.iter().sum::<f64>() / n as f64;
    let types: Vec<usize> = (0..T_PROPOSALS)
        .map(|_| {
            let u: f64 = base.random();
            if u < sc.mix[0] {
                0
            } else if u < sc.mix[0] + sc.mix[1] {
                1
            } else {
                2
            }
        })
        .collect();
    let mags: Vec<f64> = types
        .iter()
        .map(|&t| match t {
            0 => 0.5 * normal(&mut base),
            1 => -uniform(&mut base, 2.0, 5.0),
            _ => uniform(&mut base, 2.0, 6.0),
        })
        .collect();
    // The same edit stream for every rule; the evaluation noise is the rule's own.
    let mut edits = seeded(&[seed, n as u64, 11]);
    let mut eval = seeded(&[seed, n as u64, 13, rule_index]);
    let mut out = Outcome::default();
    let mut p = p0;

    let policy = match rule {
        Rule::Policy(pol) => Some(pol),
        _ => None,
    };
    let prior = 0.3;
    let mut flakiness = FlakinessModel::new(prior);
    // The incumbent's history: the evaluation that made it (the baseline first), and every
    // attempt it got since.
    let mut inc_accepted = Tallies::new();
    let mut inc_since = Tallies::new();
    let mut inc_is_baseline = true;
    let mut inc_tree = 0usize;
    if let Some(pol) = policy {
        for r in pol.baseline(names) {
            for _ in 0..r.attempts {
                let i = index(&r.task);
                inc_accepted.record(&r.task, eval.random::<f64>() < p[i]);
            }
            out.cost += u64::from(r.attempts);
            out.incumbent_cost += u64::from(r.attempts);
        }
        flakiness.set_tree("tree-0", &inc_accepted);
    }

    for (t, (&etype, &emag)) in types.iter().zip(&mags).enumerate() {
        let q = make_candidate(&p, etype, emag, mean0, &mut edits);
        out.proposed[etype] += 1;
        let keep = match rule {
            Rule::Oracle => q.iter().sum::<f64>() > p.iter().sum::<f64>(),
            Rule::AcceptAll => true,
            Rule::Policy(pol) => {
                let ctx = Context {
                    tasks: names,
                    flakiness: &flakiness,
                    incumbent_size: 0,
                    candidate_size: 0,
                    seed: seed.wrapping_mul(1_000).wrapping_add(t as u64),
                };
                let mut cand = Tallies::new();
                let mut reqs: Vec<Request> = pol.first_look(
                    &ctx,
                    &Incumbent {
                        accepted: &inc_accepted,
                        accepted_is_baseline: inc_is_baseline,
                        since: &inc_since,
                    },
                );
                let mut look = 0;
                let keep = loop {
                    for r in &reqs {
                        let i = index(&r.task);
                        let (probs, tallies) = match r.arm {
                            Arm::Candidate => (&q, &mut cand),
                            Arm::Incumbent => (&p, &mut inc_since),
                        };
                        for _ in 0..r.attempts {
                            tallies.record(&r.task, eval.random::<f64>() < probs[i]);
                        }
                        out.cost += u64::from(r.attempts);
                        if r.arm == Arm::Incumbent {
                            out.incumbent_cost += u64::from(r.attempts);
                        }
                    }
                    look += 1;
                    out.looks += 1;
                    let inc = Incumbent {
                        accepted: &inc_accepted,
                        accepted_is_baseline: inc_is_baseline,
                        since: &inc_since,
                    };
                    match pol.decide(&ctx, &inc, &cand, look) {
                        Decision::Keep { .. } => break true,
                        Decision::Discard { .. } => break false,
                        Decision::RunMore(r) => reqs = r,
                    }
                };
                let mut all = inc_accepted.clone();
                all.merge(&inc_since);
                flakiness.set_tree(&format!("tree-{inc_tree}"), &all);
                if keep {
                    // The candidate's tree becomes the incumbent's; its attempts so far are the
                    // accepting evaluation.
                    inc_tree = t + 1;
                    flakiness.set_tree(&format!("tree-{inc_tree}"), &cand);
                    inc_accepted = cand;
                    inc_since = Tallies::new();
                    inc_is_baseline = false;
                } else {
                    flakiness.set_tree(&format!("tree-c{t}"), &cand);
                }
                keep
            }
        };
        if keep {
            out.kept[etype] += 1;
            p = q;
        }
    }
    out.gain = 100.0 * (p.iter().sum::<f64>() / n as f64 - mean0);
    out
}

fn index(task: &str) -> usize {
    task.trim_start_matches('t').parse().unwrap_or(0)
}

// ------------------------------------------------------------------ tables

struct Row {
    name: String,
    gain: f64,
    se: f64,
    p10: f64,
    p90: f64,
    harm: f64,
    help: f64,
    neutral: f64,
    per_prop: f64,
    incumbent_share: f64,
    looks: f64,
}

fn summarize(name: String, outs: &[Outcome], n: usize) -> Row {
    let k = outs.len() as f64;
    let gains: Vec<f64> = outs.iter().map(|o| o.gain).collect();
    let mean = gains.iter().sum::<f64>() / k;
    let var = gains.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / k;
    let mut sorted = gains;
    sorted.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        // numpy's default (linear) percentile.
        let pos = q * (sorted.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    };
    let share = |t: usize| {
        let kept: u32 = outs.iter().map(|o| o.kept[t]).sum();
        let prop: u32 = outs.iter().map(|o| o.proposed[t]).sum();
        100.0 * f64::from(kept) / f64::from(prop.max(1))
    };
    let cost = outs.iter().map(|o| o.cost as f64).sum::<f64>() / k;
    let inc_cost = outs.iter().map(|o| o.incumbent_cost as f64).sum::<f64>() / k;
    let looks = outs.iter().map(|o| o.looks as f64).sum::<f64>() / k;
    Row {
        name,
        gain: mean,
        se: (var / k).sqrt(),
        p10: pct(0.1),
        p90: pct(0.9),
        harm: share(1),
        help: share(2),
        neutral: share(0),
        per_prop: cost / T_PROPOSALS as f64 / n as f64,
        incumbent_share: if cost > 0.0 {
            100.0 * inc_cost / cost
        } else {
            0.0
        },
        looks: looks / T_PROPOSALS as f64,
    }
}

/// The reference tables (results.md) for the rows the simulator must reproduce: (N, rule,
/// gain, SE), main model only.
const REFERENCE: &[(usize, &str, f64, f64)] = &[
    (30, "greedy k=1", 4.6, 0.2),
    (30, "greedy k=3", 9.7, 0.2),
    (30, "greedy k=5", 12.8, 0.3),
    (89, "greedy k=1", 9.3, 0.2),
    (89, "greedy k=3", 16.7, 0.2),
    (89, "greedy k=5", 19.7, 0.2),
    (300, "greedy k=1", 16.3, 0.3),
    (300, "greedy k=3", 21.7, 0.2),
    (300, "greedy k=5", 23.5, 0.2),
    (30, "oracle", 28.0, 0.2),
    (89, "oracle", 29.6, 0.2),
    (300, "oracle", 27.7, 0.2),
];

fn parse_list<T: std::str::FromStr>(s: &str, flag: &str) -> Vec<T> {
    s.split(',')
        .map(|x| {
            x.trim().parse().unwrap_or_else(|_| {
                eprintln!("{flag}: cannot read {x:?}");
                std::process::exit(2)
            })
        })
        .collect()
}

fn builtin_policies() -> Vec<AcceptConfig> {
    let greedy = |k| AcceptConfig {
        k,
        ..AcceptConfig::of(PolicyKind::Greedy)
    };
    vec![
        greedy(1),
        greedy(3),
        greedy(5),
        AcceptConfig::of(PolicyKind::Sequential),
        // The reference's rule (d) z >= 2.0, cap 6, with the incumbent's attempts reused.
        AcceptConfig {
            z_accept: 2.0,
            cap: 6,
            incumbent_lead: 0,
            incumbent_flaky_min: 1,
            ..AcceptConfig::of(PolicyKind::Sequential)
        },
        AcceptConfig::of(PolicyKind::Staged),
        AcceptConfig {
            stage_fraction: 0.2,
            stage_futility: 0.0,
            ..AcceptConfig::of(PolicyKind::Staged)
        },
    ]
}

fn main() {
    let mut ns = vec![30usize, 89, 300];
    let mut seeds: Option<u64> = None;
    let mut a = 0.3;
    let mut mix = [0.60, 0.25, 0.15];
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut configs: Vec<AcceptConfig> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{arg}: expected a value");
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--n" => ns = parse_list(&value(), "--n"),
            "--seeds" => seeds = Some(parse_list::<u64>(&value(), "--seeds")[0]),
            "--a" => a = parse_list::<f64>(&value(), "--a")[0],
            "--mix" => {
                let m: Vec<f64> = parse_list(&value(), "--mix");
                if m.len() != 3 {
                    eprintln!("--mix: expected neutral,harmful,helpful");
                    std::process::exit(2)
                }
                mix = [m[0], m[1], m[2]];
            }
            "--threads" => threads = parse_list::<usize>(&value(), "--threads")[0].max(1),
            "--policy" => {
                let text = format!("accept = {{ {} }}", value());
                #[derive(serde::Deserialize)]
                struct Wrap {
                    accept: AcceptConfig,
                }
                match toml::from_str::<Wrap>(&text) {
                    Ok(w) => configs.push(w.accept),
                    Err(e) => {
                        eprintln!("--policy: {e}");
                        std::process::exit(2)
                    }
                }
            }
            // `cargo bench` passes `--bench`; anything else is a mistake.
            "--bench" => {}
            other => {
                eprintln!("unknown argument {other:?}");
                std::process::exit(2)
            }
        }
    }
    if configs.is_empty() {
        configs = builtin_policies();
    }
    let mut rules: Vec<(String, Rule)> = vec![
        ("oracle".into(), Rule::Oracle),
        ("accept-all".into(), Rule::AcceptAll),
    ];
    for c in &configs {
        match Policy::new(c) {
            Ok(p) => rules.push((p.label(), Rule::Policy(p))),
            Err(e) => {
                eprintln!("--policy: {e}");
                std::process::exit(2)
            }
        }
    }
    let main_model = (a - 0.3).abs() < 1e-12 && mix == [0.60, 0.25, 0.15];
    for &n in &ns {
        let seeds = seeds.unwrap_or(if n >= 300 { 250 } else { 600 });
        let sc = Scenario { n, a, mix };
        let names: Vec<String> = (0..n).map(|i| format!("t{i:03}")).collect();
        let started = std::time::Instant::now();
        let results: Mutex<Vec<Vec<Outcome>>> =
            Mutex::new(vec![vec![Outcome::default(); seeds as usize]; rules.len()]);
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= seeds as usize {
                            break;
                        }
                        let row: Vec<Outcome> = rules
                            .iter()
                            .enumerate()
                            .map(|(ri, (_, r))| run_one(&sc, seed as u64, ri as u64, r, &names))
                            .collect();
                        if let Ok(mut res) = results.lock() {
                            for (ri, o) in row.into_iter().enumerate() {
                                res[ri][seed] = o;
                            }
                        }
                    }
                });
            }
        });
        let results = results.into_inner().unwrap_or_default();
        println!(
            "\n### N = {n} ({seeds} seeds x {T_PROPOSALS} proposals; p~Beta({a},{a}), mix n/h/+ = {}/{}/{})\n",
            mix[0], mix[1], mix[2]
        );
        println!(
            "| policy | true gain, pts (mean ± SE) [p10, p90] | harmful kept % | helpful kept % | neutral kept % | trials / proposal (×N) | incumbent share of trials % | looks / proposal | reference (results.md) |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for ((name, _), outs) in rules.iter().zip(&results) {
            let r = summarize(name.clone(), outs, n);
            let reference = REFERENCE
                .iter()
                .find(|(rn, rname, _, _)| main_model && *rn == n && *rname == r.name)
                .map(|&(_, _, g, se)| {
                    let within = (r.gain - g).abs() <= 2.0 * (se * se + r.se * r.se).sqrt();
                    format!(
                        "{g:+.1} ± {se:.1} ({})",
                        if within {
                            "within 2 SE"
                        } else {
                            "OUTSIDE 2 SE"
                        }
                    )
                })
                .unwrap_or_default();
            println!(
                "| {} | {:+.1} ± {:.1} [{:+.1}, {:+.1}] | {:.1} | {:.1} | {:.1} | {:.2} | {:.0} | {:.2} | {reference} |",
                r.name,
                r.gain,
                r.se,
                r.p10,
                r.p90,
                r.harm,
                r.help,
                r.neutral,
                r.per_prop,
                r.incumbent_share,
                r.looks
            );
        }
        eprintln!("[N={n}: {:.0}s]", started.elapsed().as_secs_f64());
    }
}
