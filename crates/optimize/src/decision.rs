//! Keep or discard: the comparison's verdict ([`crate::accept`] decides it, look by look) and
//! the overfitting guard that may overturn a keep. The loop records what it is told; it never
//! weighs scores itself.

use std::fmt;

/// What the loop does with an evaluated change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Keep { reason: String },
    Discard { reason: String },
}

impl Decision {
    /// The final answer of a comparison; `None` while it wants more attempts.
    pub fn from_accept(d: crate::accept::Decision) -> Option<Self> {
        match d {
            crate::accept::Decision::Keep { reason } => Some(Self::Keep { reason }),
            crate::accept::Decision::Discard { reason } => Some(Self::Discard { reason }),
            crate::accept::Decision::RunMore(_) => None,
        }
    }

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

    #[test]
    fn holdout_turns_a_keep_into_a_discard_only_beyond_noise() {
        let keep = Decision::Keep {
            reason: "z 2.10".into(),
        };
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
