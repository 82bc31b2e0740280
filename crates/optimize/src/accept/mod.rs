//! Acceptance: whether a candidate harness replaces the incumbent, decided by code, look by look.
//!
//! The loop asks a [`Policy`] for the first look's attempts ([`Policy::first_look`]), runs them,
//! and asks again ([`Policy::decide`]) until the answer is [`Decision::Keep`] or
//! [`Decision::Discard`]; a [`Decision::RunMore`] names the next attempts, per task and arm. The
//! decision is a pure function of the tallies, so a run killed between looks resumes by asking
//! again with what is on disk.
//!
//! The incumbent's side is its history ([`Incumbent`]: the baseline or the evaluation that got it
//! kept, every later look's top-ups, spot checks of an identical tree): attempts are reused, never
//! rerun, so its estimate sharpens while it stays the incumbent.
//!
//! Policies ([`AcceptConfig::policy`]):
//! * `greedy`: k attempts on every task; keep iff more passes than the incumbent's stored total
//!   (the evaluation that got it kept), or as many and a smaller harness. `k = 1` is the original
//!   AutoAgent rule.
//! * `sequential`: a paired, stratified z over per-task pass rates ([`stats::strat_z`]). One
//!   attempt per task first; then more only on tasks that disagreed in this comparison or are
//!   flaky ([`FlakinessModel`]), until the z crosses the keep or the futility boundary or the
//!   per-task cap is reached.
//! * `staged`: `sequential` behind a first stage on a slice of the tasks that discards early;
//!   the stage's attempts count in the full comparison.

mod flaky;
mod greedy;
mod sequential;
pub mod stats;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use autoagent_settings::accept::{AcceptConfig, AcceptConfigError, PolicyKind, StageSelect};
pub use flaky::{FlakinessModel, TaskClass, TaskFlakiness};

/// Passes over attempts of one task by one harness tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub passes: u32,
    pub attempts: u32,
}

impl Tally {
    pub fn new(passes: u32, attempts: u32) -> Self {
        Self { passes, attempts }
    }

    /// Both outcomes seen.
    pub fn mixed(self) -> bool {
        self.passes > 0 && self.passes < self.attempts
    }
}

/// Per-task tallies of one harness tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tallies(BTreeMap<String, Tally>);

impl Tallies {
    pub const fn new() -> Self {
        Self(BTreeMap::new())
    }

    /// The tally of `task` (zero when it never ran).
    pub fn get(&self, task: &str) -> Tally {
        self.0.get(task).copied().unwrap_or_default()
    }

    /// Adds the outcome of one attempt.
    pub fn record(&mut self, task: &str, passed: bool) {
        self.add(task, u32::from(passed), 1);
    }

    /// Adds `passes` of `attempts` on `task`.
    pub fn add(&mut self, task: &str, passes: u32, attempts: u32) {
        let passes = passes.min(attempts);
        match self.0.get_mut(task) {
            Some(t) => {
                t.attempts += attempts;
                t.passes += passes;
            }
            None => {
                self.0.insert(task.to_owned(), Tally::new(passes, attempts));
            }
        }
    }

    /// Adds every tally of `other` (e.g. a spot check of an identical tree).
    pub fn merge(&mut self, other: &Tallies) {
        for (task, t) in other.iter() {
            self.add(task, t.passes, t.attempts);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Tally)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Passes and attempts summed over `tasks`.
    pub fn total(&self, tasks: &[String]) -> Tally {
        tasks.iter().fold(Tally::default(), |acc, t| {
            let x = self.get(t);
            Tally::new(acc.passes + x.passes, acc.attempts + x.attempts)
        })
    }

    /// Attempts summed over every task.
    pub fn attempts(&self) -> u64 {
        self.0.values().map(|t| u64::from(t.attempts)).sum()
    }
}

impl FromIterator<(String, Tally)> for Tallies {
    fn from_iter<I: IntoIterator<Item = (String, Tally)>>(iter: I) -> Self {
        let mut out = Tallies::new();
        for (task, t) in iter {
            out.add(&task, t.passes, t.attempts);
        }
        out
    }
}

/// Which tree an attempt runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Arm {
    Candidate,
    Incumbent,
}

/// Run `attempts` more attempts of `task` on `arm`'s tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub arm: Arm,
    pub task: String,
    pub attempts: u32,
}

/// The answer after a look.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep {
        reason: String,
    },
    Discard {
        reason: String,
    },
    /// Not decided yet: run these attempts, then ask again.
    RunMore(Vec<Request>),
}

/// What a decision needs besides the tallies.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The tasks compared (the train set), in a stable order.
    pub tasks: &'a [String],
    /// What every attempt of every experiment says about each task.
    pub flakiness: &'a FlakinessModel,
    /// Harness sizes (`size::measure`), for "as good and simpler".
    pub incumbent_size: u64,
    pub candidate_size: u64,
    /// Picks the staged policy's random slice; the experiment number is a good one (the same
    /// slice again after a resume).
    pub seed: u64,
}

/// The incumbent's history.
#[derive(Debug, Clone, Copy)]
pub struct Incumbent<'a> {
    /// The evaluation that made it the incumbent: the baseline, or the candidate attempts that
    /// got it kept (`greedy`'s stored total).
    pub accepted: &'a Tallies,
    /// Whether `accepted` is the baseline, an unbiased measurement. A kept candidate's attempts
    /// are not: they were kept because they looked good (the winner's curse).
    pub accepted_is_baseline: bool,
    /// Every other attempt its tree got since: later looks' incumbent attempts, spot checks of an
    /// identical tree.
    pub since: &'a Tallies,
}

impl Incumbent<'_> {
    /// Every attempt of the incumbent's tree.
    pub fn all(&self) -> Tallies {
        let mut t = self.accepted.clone();
        t.merge(self.since);
        t
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    Greedy(greedy::Greedy),
    Sequential(sequential::Sequential),
}

impl Policy {
    /// Validates `cfg` and builds its policy.
    pub fn new(cfg: &AcceptConfig) -> Result<Self, AcceptConfigError> {
        cfg.validate()?;
        Ok(match cfg.policy {
            PolicyKind::Greedy => Self::Greedy(greedy::Greedy { k: cfg.k }),
            PolicyKind::Sequential | PolicyKind::Staged => {
                Self::Sequential(sequential::Sequential::from_config(cfg))
            }
        })
    }

    /// The attempts of the baseline (the first incumbent), before any experiment.
    pub fn baseline(&self, tasks: &[String]) -> Vec<Request> {
        let k = match self {
            Self::Greedy(g) => g.k,
            Self::Sequential(s) => s.baseline_attempts,
        };
        tasks
            .iter()
            .map(|t| Request {
                arm: Arm::Incumbent,
                task: t.clone(),
                attempts: k,
            })
            .collect()
    }

    /// The attempts of a candidate's first look.
    pub fn first_look(&self, ctx: &Context<'_>, incumbent: &Incumbent<'_>) -> Vec<Request> {
        match self {
            Self::Greedy(g) => g.first_look(ctx),
            Self::Sequential(s) => s.first_look(ctx, incumbent),
        }
    }

    /// The decision after look `look` (1 for the first), from the incumbent's history and the
    /// candidate's attempts so far.
    pub fn decide(
        &self,
        ctx: &Context<'_>,
        incumbent: &Incumbent<'_>,
        candidate: &Tallies,
        look: u32,
    ) -> Decision {
        match self {
            Self::Greedy(g) => g.decide(ctx, incumbent, candidate),
            Self::Sequential(s) => s.decide(ctx, incumbent, candidate, look),
        }
    }

    /// Trials a proposal is expected to cost on `tasks` tasks, before the run has a history of
    /// its own: k per task for `greedy`; for the others the simulator's figures at the tuned
    /// defaults (2.4 × N for `sequential`, 2.0 × N for `staged`; crate README).
    pub fn expected_trials(&self, tasks: usize) -> f64 {
        let n = tasks as f64;
        match self {
            Self::Greedy(g) => f64::from(g.k) * n,
            Self::Sequential(s) if s.stage.is_some() => 2.0 * n,
            Self::Sequential(_) => 2.4 * n,
        }
    }

    /// Greedy's k, for the pinned settings (its rule compares totals at one k).
    pub fn greedy_k(&self) -> Option<u32> {
        match self {
            Self::Greedy(g) => Some(g.k),
            Self::Sequential(_) => None,
        }
    }

    /// A short name for the ledger and status lines (`greedy k=3`, `sequential z=2.00/0.00 cap 6`).
    pub fn label(&self) -> String {
        match self {
            Self::Greedy(g) => format!("greedy k={}", g.k),
            Self::Sequential(s) => s.label(),
        }
    }
}
