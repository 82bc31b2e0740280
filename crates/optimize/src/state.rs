//! What survives a kill besides the ledger and the harness history: `.autoagent/state.json`
//! (where an unfinished experiment was) and `.autoagent/settings.json` (what the ledger's scores
//! are comparable under).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::experiment::ExperimentId;

/// The phase an unfinished experiment was in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A meta-agent session was running: a resumed run starts a fresh one from the incumbent.
    #[default]
    Meta,
    /// The proposal was committed and its evaluation started: a resumed run resumes the job.
    Evaluate,
}

/// Where an unfinished experiment was when the process died.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub experiment: ExperimentId,
    pub phase: Phase,
    /// The commit under evaluation (phase `evaluate`).
    pub commit: Option<String>,
    pub description: String,
    pub rationale: String,
    /// Meta-agent spend of this experiment so far (sessions killed midway included).
    pub meta_cost_usd: Option<f64>,
    pub started_unix: u64,
    /// Looks of the comparison finished so far.
    #[serde(default)]
    pub looks: u32,
    /// The look in progress: what its jobs must hold when it is done. Saved before it starts,
    /// so a killed look is finished as it was asked, not asked again on different tallies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look: Option<LookTargets>,
}

/// Finished trials per task that a look's two jobs must hold (absolute, so running a look
/// twice runs it once).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookTargets {
    pub candidate: BTreeMap<String, u32>,
    pub incumbent: BTreeMap<String, u32>,
}

impl State {
    pub fn new(experiment: ExperimentId) -> Self {
        Self {
            experiment,
            phase: Phase::Meta,
            started_unix: now_unix(),
            meta_cost_usd: Some(0.0),
            ..Self::default()
        }
    }

    /// Seconds since the experiment first started (across kills).
    pub fn elapsed_s(&self) -> f64 {
        now_unix().saturating_sub(self.started_unix) as f64
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `.autoagent/state.json`, replaced atomically.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("state.json"),
        }
    }

    /// The saved state, if it belongs to `experiment`.
    pub fn load(&self, experiment: ExperimentId) -> Option<State> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        serde_json::from_str::<State>(&text)
            .ok()
            .filter(|s| s.experiment == experiment)
    }

    pub fn save(&self, s: &State) {
        let tmp = self.path.with_extension("json.tmp");
        if std::fs::write(&tmp, serde_json::to_vec_pretty(s).unwrap_or_default()).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }

    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the ledger's scores are comparable under: the train and holdout task sets and k.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinnedSettings {
    pub train: BTreeSet<String>,
    pub holdout: BTreeSet<String>,
    pub attempts: u32,
    /// `greedy`'s k: its rule compares pass totals, which only means something at the same k.
    /// `None` for the other policies (their comparisons are per task) and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy_k: Option<u32>,
}

impl PinnedSettings {
    /// The keep rule compares pass counts with the incumbent's: that only means something on
    /// the same tasks and attempts. The first run writes `settings.json`; a later run under
    /// other settings is refused with what changed.
    pub fn check_or_pin(&self, state_dir: &Path) -> Result<(), String> {
        let path = state_dir.join("settings.json");
        let before = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Self>(&t).ok());
        let Some(before) = before else {
            return std::fs::write(&path, serde_json::to_vec_pretty(self).unwrap_or_default())
                .map_err(|e| format!("writing {}: {e}", path.display()));
        };
        if before == *self {
            return Ok(());
        }
        let mut what = Vec::new();
        if before.attempts != self.attempts {
            what.push(format!(
                "attempts per task (k) was {}, now {}",
                before.attempts, self.attempts
            ));
        }
        if before.greedy_k != self.greedy_k {
            let k =
                |v: Option<u32>| v.map_or("another policy".to_owned(), |k| format!("greedy k={k}"));
            what.push(format!(
                "the acceptance policy was {}, now {}",
                k(before.greedy_k),
                k(self.greedy_k)
            ));
        }
        if before.train != self.train {
            what.push(format!(
                "the train tasks were {:?}, now {:?}",
                before.train, self.train
            ));
        }
        if before.holdout != self.holdout {
            what.push(format!(
                "the holdout tasks were {:?}, now {:?}",
                before.holdout, self.holdout
            ));
        }
        Err(format!(
            "the ledger's scores were measured under other settings: {}. Use the same tasks, --holdout and -k as before, or start a new workspace (deleting {} accepts scores that do not compare)",
            what.join("; "),
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_belongs_to_one_experiment() {
        let d = tempfile::tempdir().unwrap();
        let f = StateFile::new(d.path());
        let mut s = State::new(ExperimentId(3));
        s.phase = Phase::Evaluate;
        s.commit = Some("abc".into());
        f.save(&s);
        let text = std::fs::read_to_string(d.path().join("state.json")).unwrap();
        assert!(text.contains("\"phase\": \"evaluate\""), "{text}");
        assert!(text.contains("\"experiment\": 3"), "{text}");
        assert_eq!(f.load(ExperimentId(3)), Some(s));
        assert_eq!(f.load(ExperimentId(4)), None);
        f.clear();
        assert_eq!(f.load(ExperimentId(3)), None);
    }

    #[test]
    fn changed_settings_are_refused_with_what_changed() {
        let d = tempfile::tempdir().unwrap();
        let a = PinnedSettings {
            train: ["t1".to_owned()].into(),
            holdout: BTreeSet::new(),
            attempts: 3,
            greedy_k: None,
        };
        a.check_or_pin(d.path()).unwrap();
        a.check_or_pin(d.path()).unwrap();
        let b = PinnedSettings { attempts: 1, ..a };
        let e = b.check_or_pin(d.path()).unwrap_err();
        assert!(e.contains("attempts per task (k) was 3, now 1"), "{e}");
        let c = PinnedSettings {
            greedy_k: Some(2),
            ..b
        };
        let e = c.check_or_pin(d.path()).unwrap_err();
        assert!(e.contains("was another policy, now greedy k=2"), "{e}");
    }
}
