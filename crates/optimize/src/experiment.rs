//! Experiment numbers and the names derived from them: one place formats `exp-NNNN`, and one
//! place reads a job folder's name back into what it holds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The number of an experiment: 0 is the baseline, then one per meta-agent proposal.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ExperimentId(pub u32);

/// What a job folder under `jobs/` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// The experiment's evaluation on the train tasks.
    Train,
    /// Its evaluation on the holdout tasks.
    Holdout,
    /// The incumbent's attempts that its comparisons asked for (train tasks, the incumbent's
    /// commit): every later comparison against the same incumbent reuses them.
    Incumbent,
    /// The meta-agent's `k`-th spot check of its working tree (train tasks only).
    Spot(u32),
}

impl ExperimentId {
    pub const BASELINE: Self = Self(0);

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }

    /// The name of one of its job folders.
    pub fn job(self, kind: JobKind) -> String {
        match kind {
            JobKind::Train => self.to_string(),
            JobKind::Holdout => format!("{self}-holdout"),
            JobKind::Incumbent => format!("{self}-incumbent"),
            JobKind::Spot(k) => format!("{self}-spot-{k}"),
        }
    }

    /// Its train job as the ledger's `job_dir` column writes it.
    pub fn ledger_job_dir(self) -> String {
        format!("jobs/{self}")
    }

    /// Reads a job folder name back: `exp-0003`, `exp-0003-holdout`, `exp-0003-incumbent`,
    /// `exp-0003-spot-2`.
    pub fn parse_job(name: &str) -> Option<(Self, JobKind)> {
        let rest = name.strip_prefix("exp-")?;
        let (digits, kind) = match rest.split_once('-') {
            None => (rest, JobKind::Train),
            Some((d, "holdout")) => (d, JobKind::Holdout),
            Some((d, "incumbent")) => (d, JobKind::Incumbent),
            Some((d, spot)) => (d, JobKind::Spot(spot.strip_prefix("spot-")?.parse().ok()?)),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((Self(digits.parse().ok()?), kind))
    }
}

impl fmt::Display for ExperimentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exp-{:04}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let e = ExperimentId(7);
        for kind in [
            JobKind::Train,
            JobKind::Holdout,
            JobKind::Incumbent,
            JobKind::Spot(3),
        ] {
            assert_eq!(ExperimentId::parse_job(&e.job(kind)), Some((e, kind)));
        }
        assert_eq!(e.job(JobKind::Train), "exp-0007");
        assert_eq!(e.ledger_job_dir(), "jobs/exp-0007");
        assert_eq!(
            ExperimentId::parse_job("exp-12345"),
            Some((ExperimentId(12345), JobKind::Train))
        );
        for bad in [
            "exp-",
            "exp-00x1",
            "exp-0001-other",
            "exp-0001-spot-",
            "run-0001",
        ] {
            assert_eq!(ExperimentId::parse_job(bad), None, "{bad}");
        }
    }
}
