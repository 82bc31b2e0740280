//! `sequential` and `staged`: a paired, stratified z over per-task pass rates, in looks.

use super::stats::{Pair, strat_z};
use super::{AcceptConfig, PolicyKind, StageSelect};
use super::{Arm, Context, Decision, Incumbent, Request, Tallies, Tally};

/// The first stage of `staged`.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub fraction: f64,
    pub min_tasks: u32,
    /// Discard after the stage when its z is below this.
    pub futility: f64,
    pub select: StageSelect,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    pub z_accept: f64,
    pub z_futility: f64,
    pub cap: u32,
    pub baseline_attempts: u32,
    pub step: u32,
    pub incumbent_lead: u32,
    pub retry_flaky: bool,
    pub max_looks: u32,
    pub count_accepting: bool,
    pub incumbent_flaky_min: u32,
    pub stage: Option<Stage>,
}

/// A stable 64-bit mix (SplitMix64's finaliser): the random slice must not depend on the
/// platform or the standard library's hasher.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn task_hash(seed: u64, task: &str) -> u64 {
    // FNV-1a over the name, then mixed with the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in task.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h ^ mix(seed))
}

impl Sequential {
    pub(super) fn from_config(cfg: &AcceptConfig) -> Self {
        Self {
            z_accept: cfg.z_accept,
            z_futility: cfg.z_futility,
            cap: cfg.cap,
            baseline_attempts: cfg.baseline_attempts,
            step: cfg.step,
            incumbent_lead: cfg.incumbent_lead,
            retry_flaky: cfg.retry_flaky,
            max_looks: cfg.max_looks,
            count_accepting: cfg.count_accepting,
            incumbent_flaky_min: cfg.incumbent_flaky_min,
            stage: (cfg.policy == PolicyKind::Staged).then_some(Stage {
                fraction: cfg.stage_fraction,
                min_tasks: cfg.stage_min_tasks,
                futility: cfg.stage_futility,
                select: cfg.stage_select,
            }),
        }
    }

    pub(super) fn label(&self) -> String {
        let mut core = format!(
            "sequential z>={:.2} fut<={:.2} cap{} lead{}",
            self.z_accept, self.z_futility, self.cap, self.incumbent_lead
        );
        if self.step > 1 {
            core.push_str(&format!(" step{}", self.step));
        }
        if !self.retry_flaky {
            core.push_str(" disagree-only");
        }
        if self.count_accepting {
            core.push_str(" ratchet");
        }
        if self.incumbent_flaky_min > 1 {
            core.push_str(&format!(" incflaky{}", self.incumbent_flaky_min));
        }
        if self.baseline_attempts > 1 {
            core.push_str(&format!(" base{}", self.baseline_attempts));
        }
        match &self.stage {
            None => core,
            Some(s) => format!(
                "staged {:.0}% {} fut<{:.2} -> {core}",
                s.fraction * 100.0,
                match s.select {
                    StageSelect::Random => "random",
                    StageSelect::Flaky => "flaky",
                },
                s.futility
            ),
        }
    }

    /// The first stage's tasks: a seeded random slice, or the flakiest.
    pub fn stage_tasks(&self, ctx: &Context<'_>) -> Vec<String> {
        let Some(stage) = &self.stage else {
            return ctx.tasks.to_vec();
        };
        let n = ctx.tasks.len();
        let m = ((stage.fraction * n as f64).round() as usize)
            .max(stage.min_tasks as usize)
            .min(n);
        let mut keyed: Vec<(f64, u64, &String)> = ctx
            .tasks
            .iter()
            .map(|t| {
                let h = task_hash(ctx.seed, t);
                let first = match stage.select {
                    StageSelect::Random => 0.0,
                    StageSelect::Flaky => -ctx.flakiness.task(t).p_flaky,
                };
                (first, h, t)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        keyed
            .into_iter()
            .take(m)
            .map(|(_, _, t)| t.clone())
            .collect()
    }

    /// The incumbent attempts the comparison uses: all of them, except (unless configured) the
    /// winning attempts that got a candidate kept, whose luck would raise the bar for every
    /// later candidate.
    pub fn incumbent_view(&self, incumbent: &Incumbent<'_>) -> Tallies {
        if self.count_accepting || incumbent.accepted_is_baseline {
            incumbent.all()
        } else {
            incumbent.since.clone()
        }
    }

    /// One candidate attempt on each of `tasks`; the incumbent is brought to one attempt on
    /// each, and to `incumbent_flaky_min` on the flaky ones (reused by every later candidate).
    fn one_each(&self, ctx: &Context<'_>, tasks: &[String], incumbent: &Tallies) -> Vec<Request> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(Request {
                arm: Arm::Candidate,
                task: t.clone(),
                attempts: 1,
            });
            let want = if ctx.flakiness.is_flaky(t) {
                self.incumbent_flaky_min.max(1)
            } else {
                1
            };
            let have = incumbent.get(t).attempts;
            if have < want {
                out.push(Request {
                    arm: Arm::Incumbent,
                    task: t.clone(),
                    attempts: want - have,
                });
            }
        }
        out
    }

    pub(super) fn first_look(&self, ctx: &Context<'_>, incumbent: &Incumbent<'_>) -> Vec<Request> {
        self.one_each(ctx, &self.stage_tasks(ctx), &self.incumbent_view(incumbent))
    }

    fn z<'t>(
        tasks: impl Iterator<Item = &'t String>,
        incumbent: &Tallies,
        candidate: &Tallies,
    ) -> (f64, f64) {
        strat_z(tasks.map(|t| Pair {
            candidate: candidate.get(t),
            incumbent: incumbent.get(t),
        }))
    }

    pub(super) fn decide(
        &self,
        ctx: &Context<'_>,
        incumbent: &Incumbent<'_>,
        candidate: &Tallies,
        look: u32,
    ) -> Decision {
        let view = self.incumbent_view(incumbent);
        let incumbent = &view;
        let n = ctx.tasks.len().max(1) as f64;
        let pending: Vec<String> = ctx
            .tasks
            .iter()
            .filter(|t| candidate.get(t).attempts == 0)
            .cloned()
            .collect();
        if pending.len() == ctx.tasks.len() {
            return Decision::RunMore(self.one_each(ctx, &self.stage_tasks(ctx), incumbent));
        }
        if !pending.is_empty() {
            // The first stage is done (or a look was cut short): screen, then the rest.
            if let Some(stage) = &self.stage {
                let seen = ctx.tasks.iter().filter(|t| candidate.get(t).attempts > 0);
                let (z, d) = Self::z(seen, incumbent, candidate);
                if z < stage.futility {
                    return Decision::Discard {
                        reason: format!(
                            "first stage ({} of {} tasks): z {z:.2} below {:.2} (estimated {:+.1} pts)",
                            ctx.tasks.len() - pending.len(),
                            ctx.tasks.len(),
                            stage.futility,
                            100.0 * d / n
                        ),
                    };
                }
            }
            return Decision::RunMore(self.one_each(ctx, &pending, incumbent));
        }
        let (z, d) = Self::z(ctx.tasks.iter(), incumbent, candidate);
        let pts = 100.0 * d / n;
        let spent = candidate.total(ctx.tasks).attempts;
        if z >= self.z_accept {
            return Decision::Keep {
                reason: format!(
                    "z {z:.2} >= {:.2} after look {look} ({spent} attempts; estimated {pts:+.1} pts)",
                    self.z_accept
                ),
            };
        }
        if z <= self.z_futility {
            return Decision::Discard {
                reason: format!(
                    "z {z:.2} <= {:.2} (futility) after look {look} ({spent} attempts; estimated {pts:+.1} pts)",
                    self.z_futility
                ),
            };
        }
        let mut more = Vec::new();
        if look < self.max_looks {
            for t in ctx.tasks {
                let c = candidate.get(t);
                let i = incumbent.get(t);
                if c.attempts >= self.cap {
                    continue;
                }
                let pooled = Tally::new(c.passes + i.passes, c.attempts + i.attempts);
                if !(pooled.mixed() || (self.retry_flaky && ctx.flakiness.is_flaky(t))) {
                    continue;
                }
                let add = self.step.min(self.cap - c.attempts);
                more.push(Request {
                    arm: Arm::Candidate,
                    task: t.clone(),
                    attempts: add,
                });
                let want = c.attempts + add + self.incumbent_lead;
                if i.attempts < want {
                    more.push(Request {
                        arm: Arm::Incumbent,
                        task: t.clone(),
                        attempts: want - i.attempts,
                    });
                }
            }
        }
        if !more.is_empty() {
            return Decision::RunMore(more);
        }
        if ctx.candidate_size < ctx.incumbent_size && d >= 0.0 {
            return Decision::Keep {
                reason: format!(
                    "as good (z {z:.2}, estimated {pts:+.1} pts) and smaller ({} < {}) after look {look}",
                    ctx.candidate_size, ctx.incumbent_size
                ),
            };
        }
        Decision::Discard {
            reason: format!(
                "z {z:.2} below {:.2} with no attempt left to run after look {look} ({spent} attempts; estimated {pts:+.1} pts)",
                self.z_accept
            ),
        }
    }
}
