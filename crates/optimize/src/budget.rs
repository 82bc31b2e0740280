//! The budget governor: meta and task spend together, a forecast of the next experiment from the
//! run's own history, and the rule that an experiment (or a look of one) that cannot finish
//! within `--budget-usd` / `--hours` is not started.

use crate::accept::Policy;
use crate::history::History;
use crate::ledger::{Ledger, Status};

/// What one more experiment is expected to cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Meta-agent plus task-model spend; `None` while no priced call says what a trial costs.
    pub usd: Option<f64>,
    /// Wall time.
    pub seconds: f64,
    /// Task trials (train comparison and holdout).
    pub trials: f64,
}

/// The run's sizes the forecast needs.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub train_tasks: usize,
    pub holdout_tasks: usize,
    /// Attempts per task of a holdout evaluation (run on each would-be keep).
    pub holdout_attempts: u32,
}

fn mean(v: impl Iterator<Item = f64>) -> Option<f64> {
    let (s, n) = v.fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| s / f64::from(n))
}

/// The next experiment's forecast: the mean of the experiments so far (meta spend, trials,
/// wall time), or before the first one the policy's expected trials at the baseline's pace.
pub fn forecast(ledger: &Ledger, history: &History, policy: &Policy, shape: Shape) -> Forecast {
    let past = ledger.rows.get(1..).unwrap_or_default();
    let evaluated: Vec<_> = past.iter().filter(|r| r.looks > 0).collect();
    let train_trials = mean(evaluated.iter().map(|r| r.attempts as f64))
        .unwrap_or_else(|| policy.expected_trials(shape.train_tasks));
    let keep_rate = if evaluated.is_empty() {
        0.5
    } else {
        evaluated
            .iter()
            .filter(|r| r.status == Status::Keep || r.holdout_score.is_some())
            .count() as f64
            / evaluated.len() as f64
    };
    let holdout_trials = keep_rate * shape.holdout_tasks as f64 * f64::from(shape.holdout_attempts);
    let trials = train_trials + holdout_trials;
    let meta = mean(past.iter().filter_map(|r| r.meta_cost_usd)).unwrap_or(0.0);
    let usd = history.trial_cost(None).map(|c| meta + c * trials);
    let seconds = mean(past.iter().map(|r| r.duration_s)).unwrap_or_else(|| {
        // The baseline's pace per trial, times the trials expected.
        ledger
            .rows
            .first()
            .filter(|b| b.trials > 0)
            .map_or(0.0, |b| b.duration_s / f64::from(b.trials) * trials)
    });
    Forecast {
        usd,
        seconds,
        trials,
    }
}

/// The limits of the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub budget_usd: Option<f64>,
    pub hours: Option<f64>,
}

/// Why something may not start.
#[derive(Debug, Clone, PartialEq)]
pub enum OverLimit {
    Budget {
        spent: f64,
        forecast: f64,
        budget: f64,
    },
    Hours {
        elapsed_s: f64,
        forecast_s: f64,
        hours: f64,
    },
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Budget {
                spent,
                forecast,
                budget,
            } => write!(
                f,
                "spent ${spent:.4} + forecast ${forecast:.4} would pass the budget of ${budget:.4}"
            ),
            Self::Hours {
                elapsed_s,
                forecast_s,
                hours,
            } => write!(
                f,
                "{:.2} h + forecast {:.2} h would pass the limit of {hours} h",
                elapsed_s / 3600.0,
                forecast_s / 3600.0
            ),
        }
    }
}

impl Limits {
    /// Whether something that costs `usd` and takes `seconds` fits after `spent` and
    /// `elapsed_s`. An unknown cost fits (nothing says it does not; the spend so far still
    /// stops the run once it reaches the budget).
    pub fn check(
        &self,
        spent: f64,
        usd: Option<f64>,
        elapsed_s: f64,
        seconds: f64,
    ) -> Result<(), OverLimit> {
        if let Some(budget) = self.budget_usd {
            let forecast = usd.unwrap_or(0.0);
            // A hair of slack: a forecast equal to what is left fits, despite rounding.
            if spent >= budget || spent + forecast > budget * (1.0 + 1e-9) {
                return Err(OverLimit::Budget {
                    spent,
                    forecast,
                    budget,
                });
            }
        }
        if let Some(hours) = self.hours {
            let limit = hours * 3600.0;
            if elapsed_s >= limit || elapsed_s + seconds > limit {
                return Err(OverLimit::Hours {
                    elapsed_s,
                    forecast_s: seconds,
                    hours,
                });
            }
        }
        Ok(())
    }
}

/// Meta-agent tokens of every session so far, from their trajectories' final metrics (a session
/// killed before its end has none there; its spend is in the state file and the ledger).
pub fn meta_tokens(meta_dir: &std::path::Path) -> u64 {
    std::fs::read_dir(meta_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<autoagent_harbor::Trajectory>(&t).ok())
        .filter_map(|t| t.final_metrics)
        .map(|m| m.total_prompt_tokens.unwrap_or(0) + m.total_completion_tokens.unwrap_or(0))
        .sum()
}

/// The status line after an experiment: spend so far (money, task and meta tokens, time), the
/// next one's forecast, and how many more fit at this rate.
pub fn status_line(
    spent: f64,
    tokens: (u64, u64),
    elapsed_s: f64,
    f: &Forecast,
    limits: &Limits,
) -> String {
    let mut s = format!(
        "spent ${spent:.4}, {} task + {} meta tokens, in {:.2} h; next experiment forecast {}, {:.0} trials, {:.1} min",
        tokens.0,
        tokens.1,
        elapsed_s / 3600.0,
        f.usd
            .map_or_else(|| "unknown $".to_owned(), |u| format!("${u:.4}")),
        f.trials,
        f.seconds / 60.0
    );
    let mut left: Vec<String> = Vec::new();
    if let (Some(b), Some(u)) = (limits.budget_usd, f.usd)
        && u > 0.0
    {
        left.push(format!(
            "{:.0} by budget (${b:.2})",
            ((b - spent) / u).max(0.0).floor()
        ));
    }
    if let Some(h) = limits.hours
        && f.seconds > 0.0
    {
        left.push(format!(
            "{:.0} by time ({h} h)",
            ((h * 3600.0 - elapsed_s) / f.seconds).max(0.0).floor()
        ));
    }
    if !left.is_empty() {
        s.push_str(&format!(
            "; experiments left at this rate: {}",
            left.join(", ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accept::{AcceptConfig, PolicyKind};
    use crate::experiment::ExperimentId;
    use crate::ledger::Row;

    fn row(n: u32, status: Status, meta: f64, attempts: u64, secs: f64) -> Row {
        Row {
            commit: format!("c{n}"),
            avg_score: 0.0,
            passed: 0,
            trials: 10,
            task_scores: Vec::new(),
            cost_usd: Some(meta),
            status,
            description: String::new(),
            holdout_score: None,
            harness_size: 1,
            meta_cost_usd: Some(meta),
            task_cost_usd: Some(0.0),
            duration_s: secs,
            job_dir: ExperimentId(n).ledger_job_dir(),
            policy: "p".into(),
            looks: u32::from(attempts > 0),
            attempts,
        }
    }

    fn priced_history(dir: &std::path::Path, cost: f64) -> History {
        // One job of two trials at `cost` each.
        let job = dir.join("exp-0000");
        for (i, task) in ["a", "b"].iter().enumerate() {
            let t = job.join(format!("{task}__{i}"));
            std::fs::create_dir_all(&t).unwrap();
            let r = serde_json::json!({
                "id": "x", "task_name": task, "trial_name": format!("{task}__{i}"),
                "trial_uri": "", "task_id": {"path": task}, "source": null, "task_checksum": "0",
                "config": {}, "agent_info": {"name": "harness", "version": "1", "model_info": null},
                "agent_result": {"n_input_tokens": 1, "n_cache_tokens": 0, "n_output_tokens": 1,
                                  "cost_usd": cost, "rollout_details": null, "metadata": null},
                "verifier_result": {"rewards": {"reward": 1}}, "verifier_environment_mode": "shared",
                "exception_info": null, "started_at": null, "finished_at": null,
                "environment_setup": null, "agent_setup": null, "agent_execution": null,
                "verifier": null, "step_results": null
            });
            std::fs::write(t.join("result.json"), r.to_string()).unwrap();
        }
        History::load(dir)
    }

    fn ledger(rows: Vec<Row>) -> Ledger {
        Ledger {
            path: "results.tsv".into(),
            rows,
        }
    }

    #[test]
    fn the_forecast_is_the_history_or_the_policy_before_it() {
        let d = tempfile::tempdir().unwrap();
        let h = priced_history(d.path(), 0.01);
        assert_eq!(h.trial_cost(Some("a")), Some(0.01));
        let seq = Policy::new(&AcceptConfig::default()).unwrap();
        let greedy = Policy::new(&AcceptConfig::of(PolicyKind::Greedy)).unwrap();
        let shape = Shape {
            train_tasks: 10,
            holdout_tasks: 0,
            holdout_attempts: 3,
        };
        // Only the baseline: the policy's expected trials, at the baseline's pace.
        let l = ledger(vec![row(0, Status::Keep, 0.0, 10, 20.0)]);
        let f = forecast(&l, &h, &seq, shape);
        assert_eq!(f.trials, 24.0);
        assert!((f.usd.unwrap() - 0.24).abs() < 1e-12, "{f:?}");
        assert!((f.seconds - 48.0).abs() < 1e-9, "{f:?}");
        assert_eq!(forecast(&l, &h, &greedy, shape).trials, 30.0);
        // With history: the mean trials, meta spend and duration of the experiments so far.
        let l = ledger(vec![
            row(0, Status::Keep, 0.0, 10, 20.0),
            row(1, Status::Discard, 0.1, 12, 60.0),
            row(2, Status::Keep, 0.3, 20, 100.0),
        ]);
        let f = forecast(&l, &h, &seq, shape);
        assert_eq!(f.trials, 16.0);
        assert!((f.usd.unwrap() - (0.2 + 0.16)).abs() < 1e-12, "{f:?}");
        assert_eq!(f.seconds, 80.0);
        // A holdout adds its trials at the keep rate.
        let f = forecast(
            &l,
            &h,
            &seq,
            Shape {
                holdout_tasks: 4,
                ..shape
            },
        );
        assert_eq!(f.trials, 16.0 + 0.5 * 4.0 * 3.0);
        // No priced trial: the money forecast is unknown.
        let empty = History::load(&d.path().join("none"));
        assert_eq!(forecast(&l, &empty, &seq, shape).usd, None);
    }

    #[test]
    fn limits_refuse_what_cannot_finish() {
        let l = Limits {
            budget_usd: Some(1.0),
            hours: Some(1.0),
        };
        assert!(l.check(0.5, Some(0.5), 0.0, 10.0).is_ok());
        let e = l.check(0.5, Some(0.51), 0.0, 10.0).unwrap_err();
        assert!(e.to_string().contains("budget of $1.0000"), "{e}");
        assert!(l.check(1.0, None, 0.0, 0.0).is_err(), "spent reached");
        assert!(l.check(0.2, None, 0.0, 0.0).is_ok(), "unknown cost fits");
        let e = l.check(0.0, Some(0.0), 3000.0, 700.0).unwrap_err();
        assert!(matches!(e, OverLimit::Hours { .. }), "{e}");
        assert!(Limits::default().check(1e9, Some(1e9), 1e9, 1e9).is_ok());
        let s = status_line(
            0.25,
            (1200, 300),
            1800.0,
            &Forecast {
                usd: Some(0.25),
                seconds: 600.0,
                trials: 20.0,
            },
            &l,
        );
        assert_eq!(
            s,
            "spent $0.2500, 1200 task + 300 meta tokens, in 0.50 h; next experiment forecast $0.2500, 20 trials, 10.0 min; experiments left at this rate: 3 by budget ($1.00), 3 by time (1 h)"
        );
    }
}
