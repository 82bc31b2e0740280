//! Keep or discard, decided by code from the evaluation: the one place the acceptance rule
//! lives. The loop records what it is told; it never weighs scores itself.

use std::fmt;

/// What the loop does with an evaluated change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep { reason: String },
    Discard { reason: String },
}

impl Decision {
    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Self::Keep { reason } | Self::Discard { reason } => reason,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Keep { reason } => write!(f, "keep ({reason})"),
            Self::Discard { reason } => write!(f, "discard ({reason})"),
        }
    }
}

/// One side of a comparison: passing trials out of scored ones, and the harness size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    pub passed: u32,
    pub trials: u32,
    pub size: u64,
}

/// The original rule, on the incumbent's stored total: keep when more trials pass, or as many
/// pass and the harness is smaller.
pub fn greedy(incumbent: Score, candidate: Score) -> Decision {
    let vs = format!(
        "{}/{} passed vs {}/{}, size {} vs {}",
        candidate.passed,
        candidate.trials,
        incumbent.passed,
        incumbent.trials,
        candidate.size,
        incumbent.size
    );
    if candidate.passed > incumbent.passed {
        Decision::Keep {
            reason: format!("more trials pass: {vs}"),
        }
    } else if candidate.passed == incumbent.passed && candidate.size < incumbent.size {
        Decision::Keep {
            reason: format!("as many pass and the harness is smaller: {vs}"),
        }
    } else {
        Decision::Discard {
            reason: format!("no gain: {vs}"),
        }
    }
}

/// The overfitting guard on a would-be keep: the holdout score, measured on `trials` trials,
/// against the incumbent's. A fall beyond noise turns the keep into a discard.
pub fn holdout_guard(decision: Decision, before: Option<f64>, now: f64, trials: u32) -> Decision {
    match (decision, before) {
        (Decision::Keep { .. }, Some(before)) if holdout_fell(before, now, trials) => {
            Decision::Discard {
                reason: format!("holdout fell from {before:.3} to {now:.3}, beyond noise"),
            }
        }
        (d, _) => d,
    }
}

/// Whether a holdout score fell by more than noise: more than two standard errors of the
/// difference of two scores measured on `n` trials each (a smoothed estimate of the earlier
/// score keeps the error above zero at 0 and 1).
pub fn holdout_fell(before: f64, now: f64, n: u32) -> bool {
    if n == 0 {
        return false;
    }
    let n = f64::from(n);
    let p = (before * n + 0.5) / (n + 1.0);
    let se_diff = (2.0 * p * (1.0 - p) / n).sqrt();
    before - now > 2.0 * se_diff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(passed: u32, size: u64) -> Score {
        Score {
            passed,
            trials: 9,
            size,
        }
    }

    #[test]
    fn greedy_rule() {
        assert!(greedy(s(4, 100), s(5, 200)).is_keep());
        assert!(greedy(s(4, 100), s(4, 90)).is_keep());
        assert!(!greedy(s(4, 100), s(4, 100)).is_keep());
        assert!(!greedy(s(4, 100), s(3, 10)).is_keep());
        assert_eq!(
            greedy(s(4, 100), s(3, 10)).reason(),
            "no gain: 3/9 passed vs 4/9, size 10 vs 100"
        );
    }

    #[test]
    fn holdout_turns_a_keep_into_a_discard_only_beyond_noise() {
        let keep = greedy(s(4, 100), s(5, 100));
        assert!(holdout_guard(keep.clone(), Some(0.9), 0.8, 30).is_keep());
        let d = holdout_guard(keep.clone(), Some(0.9), 0.6, 30);
        assert_eq!(
            d,
            Decision::Discard {
                reason: "holdout fell from 0.900 to 0.600, beyond noise".into()
            }
        );
        assert!(holdout_guard(keep, None, 0.0, 30).is_keep());
    }

    #[test]
    fn holdout_noise() {
        // 30 trials: 0.9 → 0.8 is within noise, 0.9 → 0.6 is not.
        assert!(!holdout_fell(0.9, 0.8, 30));
        assert!(holdout_fell(0.9, 0.6, 30));
        // A rise or no change never counts.
        assert!(!holdout_fell(0.5, 0.7, 30));
        assert!(!holdout_fell(1.0, 1.0, 6));
        // Few trials: one failure of six is noise, everything failing is not.
        assert!(!holdout_fell(1.0, 5.0 / 6.0, 6));
        assert!(holdout_fell(1.0, 0.0, 6));
        assert!(!holdout_fell(1.0, 0.0, 0));
    }
}
