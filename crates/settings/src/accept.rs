//! `[accept]` in `autoagent.toml`: which policy decides keep or discard, and its parameters.

use serde::{Deserialize, Serialize};

/// The policy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// k attempts on every task against the incumbent's stored total.
    Greedy,
    /// Paired stratified z in looks, extra attempts where the doubt is.
    Sequential,
    /// `sequential` behind a first stage on a slice of the tasks.
    Staged,
}

/// How the staged policy picks its first-stage tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageSelect {
    /// A random slice, seeded by the experiment (the same slice after a resume).
    Random,
    /// The tasks most likely to move: the flakiest first (ties broken at random).
    Flaky,
}

/// `[accept]`. Every field has a default; see the crate README for the tuned values and the
/// simulator that chose them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcceptConfig {
    pub policy: PolicyKind,
    /// `greedy`: attempts per task of each evaluation (and of the baseline).
    pub k: u32,
    /// `sequential`/`staged`: keep once the z reaches this.
    pub z_accept: f64,
    /// Discard once the z falls to this or below (futility).
    pub z_futility: f64,
    /// At most this many attempts per task for the candidate.
    pub cap: u32,
    /// Attempts per task of the baseline (the first incumbent).
    pub baseline_attempts: u32,
    /// Candidate attempts added per uncertain task and look.
    pub step: u32,
    /// The incumbent is topped up to the candidate's attempts plus this on each uncertain task
    /// (its attempts are reused by every later candidate, so they are worth more).
    pub incumbent_lead: u32,
    /// Tasks the flakiness model calls flaky get extra attempts even when this comparison saw
    /// no disagreement on them.
    pub retry_flaky: bool,
    /// Stop after this many looks (the cap usually ends a comparison first).
    pub max_looks: u32,
    /// Whether the attempts that got a candidate kept count in its history as the incumbent.
    /// They were kept because they looked good, so counting them raises the bar for every later
    /// candidate (the stored ratchet); without them the next comparison runs the new incumbent
    /// once on each task, and every later comparison reuses those attempts.
    pub count_accepting: bool,
    /// Before a candidate's first look is judged, the incumbent has at least this many attempts
    /// on each flaky task (once per incumbent: later candidates reuse them).
    pub incumbent_flaky_min: u32,
    /// `staged`: the first stage's share of the tasks.
    pub stage_fraction: f64,
    /// `staged`: at least this many tasks in the first stage.
    pub stage_min_tasks: u32,
    /// `staged`: discard after the first stage when its z is at or below this.
    pub stage_futility: f64,
    pub stage_select: StageSelect,
    /// The flakiness model's prior, Beta(a, a) per task: small values expect most tasks to be
    /// near always-pass or always-fail.
    pub flaky_prior: f64,
}

impl Default for AcceptConfig {
    fn default() -> Self {
        Self {
            policy: PolicyKind::Sequential,
            k: 3,
            z_accept: 1.5,
            z_futility: 0.0,
            cap: 12,
            baseline_attempts: 1,
            step: 1,
            incumbent_lead: 2,
            retry_flaky: true,
            max_looks: 20,
            count_accepting: false,
            incumbent_flaky_min: 4,
            stage_fraction: 0.5,
            stage_min_tasks: 5,
            stage_futility: -0.5,
            stage_select: StageSelect::Random,
            flaky_prior: 0.3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AcceptConfigError {
    #[error("accept.{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

fn field(field: &'static str, message: impl Into<String>) -> AcceptConfigError {
    AcceptConfigError::Field {
        field,
        message: message.into(),
    }
}

impl AcceptConfig {
    /// The configuration of `policy` with its defaults (`greedy` gets k = 3).
    pub fn of(policy: PolicyKind) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Checks every field against its range; the error names the field.
    pub fn validate(&self) -> Result<(), AcceptConfigError> {
        if self.k == 0 {
            return Err(field("k", "expected at least 1 attempt per task, found 0"));
        }
        for (name, v) in [
            ("z_accept", self.z_accept),
            ("z_futility", self.z_futility),
            ("stage_futility", self.stage_futility),
        ] {
            if !v.is_finite() {
                return Err(field(name, format!("expected a finite number, found {v}")));
            }
        }
        if self.z_futility >= self.z_accept {
            return Err(field(
                "z_futility",
                format!(
                    "expected below z_accept ({}), found {}",
                    self.z_accept, self.z_futility
                ),
            ));
        }
        if self.cap == 0 {
            return Err(field(
                "cap",
                "expected at least 1 attempt per task, found 0",
            ));
        }
        if self.baseline_attempts == 0 {
            return Err(field(
                "baseline_attempts",
                "expected at least 1 attempt per task, found 0",
            ));
        }
        if self.step == 0 {
            return Err(field(
                "step",
                "expected at least 1 attempt per look, found 0",
            ));
        }
        if self.max_looks == 0 {
            return Err(field("max_looks", "expected at least 1 look, found 0"));
        }
        if !(self.stage_fraction > 0.0 && self.stage_fraction <= 1.0) {
            return Err(field(
                "stage_fraction",
                format!(
                    "expected a share of the tasks in (0, 1], found {}",
                    self.stage_fraction
                ),
            ));
        }
        if !(self.flaky_prior.is_finite() && self.flaky_prior > 0.0) {
            return Err(field(
                "flaky_prior",
                format!("expected a positive number, found {}", self.flaky_prior),
            ));
        }
        Ok(())
    }
}
