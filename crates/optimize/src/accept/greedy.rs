//! `greedy`: the original rule, made k times more expensive.

use super::{Arm, Context, Decision, Incumbent, Request, Tallies};

#[derive(Debug, Clone, PartialEq)]
pub struct Greedy {
    /// Attempts per task.
    pub k: u32,
}

impl Greedy {
    pub(super) fn first_look(&self, ctx: &Context<'_>) -> Vec<Request> {
        ctx.tasks
            .iter()
            .map(|t| Request {
                arm: Arm::Candidate,
                task: t.clone(),
                attempts: self.k,
            })
            .collect()
    }

    pub(super) fn decide(
        &self,
        ctx: &Context<'_>,
        incumbent: &Incumbent<'_>,
        candidate: &Tallies,
    ) -> Decision {
        // An evaluation cut short (a kill, a trial lost) is completed before any comparison.
        let missing: Vec<Request> = ctx
            .tasks
            .iter()
            .filter_map(|t| {
                let have = candidate.get(t).attempts;
                (have < self.k).then(|| Request {
                    arm: Arm::Candidate,
                    task: t.clone(),
                    attempts: self.k - have,
                })
            })
            .collect();
        if !missing.is_empty() {
            return Decision::RunMore(missing);
        }
        let cand = candidate.total(ctx.tasks);
        let stored = incumbent.accepted.total(ctx.tasks);
        let (c, s) = (cand.passes, stored.passes);
        if c > s {
            Decision::Keep {
                reason: format!(
                    "{c}/{} passed, more than the incumbent's stored {s}/{}",
                    cand.attempts, stored.attempts
                ),
            }
        } else if c == s && ctx.candidate_size < ctx.incumbent_size {
            Decision::Keep {
                reason: format!(
                    "{c}/{} passed, as many as the incumbent, and the harness is smaller ({} < {})",
                    cand.attempts, ctx.candidate_size, ctx.incumbent_size
                ),
            }
        } else {
            Decision::Discard {
                reason: format!(
                    "{c}/{} passed, not more than the incumbent's stored {s}/{}",
                    cand.attempts, stored.attempts
                ),
            }
        }
    }
}
