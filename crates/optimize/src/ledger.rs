//! The ledger, `results.tsv`: one row per experiment, appended and flushed as each one ends.
//!
//! Columns, in order (the original's seven first, then ours):
//! `commit avg_score passed task_scores cost_usd status description holdout_score harness_size
//! meta_cost_usd task_cost_usd duration_s job_dir`.
//! `passed` is passing trials over trials (`201/267`); `task_scores` the per-task passes
//! (`regex-log=3/3,hello=0/3`); `cost_usd` is task + meta spend; `job_dir` names the
//! experiment (`jobs/exp-0003`) and is how a resumed run knows an experiment is already recorded.
//! `policy` is the acceptance policy that decided (`greedy k=3`, `sequential …`), `looks` how
//! many looks it took, `attempts` the trials the experiment ran (candidate and incumbent, spot
//! checks and holdout included; cache hits not). Ledgers written before those three columns
//! existed still load (empty policy, zero looks and attempts).

use crate::experiment::{ExperimentId, JobKind};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub const HEADER: &[&str] = &[
    "commit",
    "avg_score",
    "passed",
    "task_scores",
    "cost_usd",
    "status",
    "description",
    "holdout_score",
    "harness_size",
    "meta_cost_usd",
    "task_cost_usd",
    "duration_s",
    "job_dir",
    "policy",
    "looks",
    "attempts",
];

/// The columns of ledgers written before `policy`, `looks` and `attempts`.
const OLD_COLUMNS: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Keep,
    Discard,
    Crash,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Discard => "discard",
            Self::Crash => "crash",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(Self::Keep),
            "discard" => Some(Self::Discard),
            "crash" => Some(Self::Crash),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Passing trials per task: `(task, passed, trials)`, in task order.
pub type TaskScores = Vec<(String, u32, u32)>;

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The harness commit evaluated (short hash); empty for a crash before any commit.
    pub commit: String,
    /// Mean reward over train trials (infrastructure errors excluded).
    pub avg_score: f64,
    pub passed: u32,
    pub trials: u32,
    pub task_scores: TaskScores,
    /// Task + meta spend; `None` when some call had no known price.
    pub cost_usd: Option<f64>,
    pub status: Status,
    pub description: String,
    /// Mean reward on the holdout tasks, when they were evaluated.
    pub holdout_score: Option<f64>,
    pub harness_size: u64,
    pub meta_cost_usd: Option<f64>,
    pub task_cost_usd: Option<f64>,
    pub duration_s: f64,
    /// `jobs/exp-NNNN`, relative to the workspace.
    pub job_dir: String,
    /// The acceptance policy's label; empty for rows that were not evaluated.
    pub policy: String,
    /// Looks the decision took (0 when not evaluated).
    pub looks: u32,
    /// Trials this experiment ran, cache hits excluded.
    pub attempts: u64,
}

impl Row {
    /// The experiment, from `job_dir` (`jobs/exp-0003` → 3).
    pub fn experiment(&self) -> Option<ExperimentId> {
        let name = self.job_dir.rsplit('/').next()?;
        match ExperimentId::parse_job(name)? {
            (id, JobKind::Train) => Some(id),
            _ => None,
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_default()
}

/// Tabs and newlines would break the TSV; descriptions are one line.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ").trim().to_owned()
}

impl Row {
    pub fn to_tsv(&self) -> String {
        let task_scores = self
            .task_scores
            .iter()
            .map(|(t, p, n)| format!("{t}={p}/{n}"))
            .collect::<Vec<_>>()
            .join(",");
        [
            clean(&self.commit),
            format!("{:.6}", self.avg_score),
            format!("{}/{}", self.passed, self.trials),
            task_scores,
            opt(self.cost_usd, 6),
            self.status.to_string(),
            clean(&self.description),
            opt(self.holdout_score, 6),
            self.harness_size.to_string(),
            opt(self.meta_cost_usd, 6),
            opt(self.task_cost_usd, 6),
            format!("{:.1}", self.duration_s),
            clean(&self.job_dir),
            clean(&self.policy),
            self.looks.to_string(),
            self.attempts.to_string(),
        ]
        .join("\t")
    }

    pub fn from_tsv(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != HEADER.len() && f.len() != OLD_COLUMNS {
            return Err(format!(
                "expected {} tab-separated columns ({OLD_COLUMNS} in older ledgers), found {}",
                HEADER.len(),
                f.len()
            ));
        }
        let num = |i: usize| -> Result<f64, String> {
            f[i].parse()
                .map_err(|_| format!("column {}: expected a number, found {:?}", HEADER[i], f[i]))
        };
        let opt_num = |i: usize| -> Result<Option<f64>, String> {
            if f[i].is_empty() {
                Ok(None)
            } else {
                num(i).map(Some)
            }
        };
        let (passed, trials) = f[2]
            .split_once('/')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or_else(|| format!("column passed: expected P/N, found {:?}", f[2]))?;
        let mut task_scores = Vec::new();
        for part in f[3].split(',').filter(|s| !s.is_empty()) {
            let (task, score) = part
                .rsplit_once('=')
                .ok_or_else(|| format!("column task_scores: expected task=P/N, found {part:?}"))?;
            let (p, n) = score
                .split_once('/')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or_else(|| format!("column task_scores: expected task=P/N, found {part:?}"))?;
            task_scores.push((task.to_owned(), p, n));
        }
        Ok(Self {
            commit: f[0].to_owned(),
            avg_score: num(1)?,
            passed,
            trials,
            task_scores,
            cost_usd: opt_num(4)?,
            status: Status::parse(f[5]).ok_or_else(|| {
                format!(
                    "column status: expected keep, discard or crash, found {:?}",
                    f[5]
                )
            })?,
            description: f[6].to_owned(),
            holdout_score: opt_num(7)?,
            harness_size: f[8].parse().map_err(|_| {
                format!("column harness_size: expected an integer, found {:?}", f[8])
            })?,
            meta_cost_usd: opt_num(9)?,
            task_cost_usd: opt_num(10)?,
            duration_s: num(11)?,
            job_dir: f[12].to_owned(),
            policy: f.get(13).map(|s| (*s).to_owned()).unwrap_or_default(),
            looks: match f.get(14) {
                None => 0,
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("column looks: expected an integer, found {v:?}"))?,
            },
            attempts: match f.get(15) {
                None => 0,
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("column attempts: expected an integer, found {v:?}"))?,
            },
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The ledger file.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub path: PathBuf,
    pub rows: Vec<Row>,
}

impl Ledger {
    /// Reads the ledger; a missing file is an empty ledger. A torn last line (a kill in the
    /// middle of a write) is dropped, since its experiment will be redone.
    pub fn load(path: &Path) -> Result<Self, LedgerError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(LedgerError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut rows = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        let complete = text.ends_with('\n');
        for (i, line) in lines.iter().enumerate() {
            if i == 0 && line.starts_with("commit\t") {
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            // An unterminated last line is a torn write, even when it happens to parse (cut
            // inside the last column): `append` cuts it off too, so memory and disk agree.
            if i + 1 == lines.len() && !complete {
                break;
            }
            match Row::from_tsv(line) {
                Ok(r) => rows.push(r),
                Err(message) => {
                    return Err(LedgerError::Parse {
                        path: path.to_owned(),
                        line: i + 1,
                        message,
                    });
                }
            }
        }
        Ok(Self {
            path: path.to_owned(),
            rows,
        })
    }

    /// Appends a row and flushes it to disk (fsync), writing the header first if needed.
    pub fn append(&mut self, row: Row) -> Result<(), LedgerError> {
        let io = |source| LedgerError::Io {
            path: self.path.clone(),
            source,
        };
        let existing = std::fs::read(&self.path).unwrap_or_default();
        if !existing.is_empty() && !existing.ends_with(b"\n") {
            // A torn line from a killed write: cut it off; its experiment is being redone.
            let keep = existing
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(io)?;
            f.set_len(keep as u64).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let mut text = String::new();
        if existing.is_empty() || !existing.contains(&b'\n') {
            text.push_str(&HEADER.join("\t"));
            text.push('\n');
        }
        text.push_str(&row.to_tsv());
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        self.rows.push(row);
        Ok(())
    }

    /// The current incumbent: the last kept row.
    pub fn incumbent(&self) -> Option<&Row> {
        self.rows.iter().rev().find(|r| r.status == Status::Keep)
    }

    /// The highest experiment number recorded.
    pub fn last_experiment(&self) -> Option<ExperimentId> {
        self.rows.iter().filter_map(Row::experiment).max()
    }

    /// Spend so far, task and meta together (unknown prices count as 0 here, and are reported).
    pub fn spent_usd(&self) -> f64 {
        self.rows.iter().filter_map(|r| r.cost_usd).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u32, status: Status) -> Row {
        Row {
            commit: format!("abc{n}"),
            avg_score: 0.5,
            passed: 3,
            trials: 6,
            task_scores: vec![("a".into(), 3, 3), ("b-x".into(), 0, 3)],
            cost_usd: Some(0.25),
            status,
            description: "tabs\tand\nnewlines".into(),
            holdout_score: None,
            harness_size: 120,
            meta_cost_usd: Some(0.05),
            task_cost_usd: Some(0.2),
            duration_s: 12.34,
            job_dir: ExperimentId(n).ledger_job_dir(),
            policy: "sequential z>=1.50".into(),
            looks: 3,
            attempts: 14,
        }
    }

    #[test]
    fn rows_round_trip_and_the_header_comes_first() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.tsv");
        let mut l = Ledger::load(&p).unwrap();
        l.append(row(0, Status::Keep)).unwrap();
        l.append(row(1, Status::Discard)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(
            "commit\tavg_score\tpassed\ttask_scores\tcost_usd\tstatus\tdescription\t"
        ));
        assert!(text.contains("\t3/6\ta=3/3,b-x=0/3\t0.250000\tkeep\ttabs and newlines\t"));
        let back = Ledger::load(&p).unwrap();
        assert_eq!(back.rows.len(), 2);
        assert_eq!(back.rows[1].experiment(), Some(ExperimentId(1)));
        assert_eq!(back.incumbent().unwrap().commit, "abc0");
        let mut want = row(0, Status::Keep);
        want.description = "tabs and newlines".into();
        want.duration_s = 12.3;
        assert_eq!(back.rows[0], want);
    }

    #[test]
    fn rows_of_older_ledgers_still_load() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.tsv");
        let old: Vec<String> = row(0, Status::Keep)
            .to_tsv()
            .split('\t')
            .take(OLD_COLUMNS)
            .map(str::to_owned)
            .collect();
        std::fs::write(&p, format!("{}\n", old.join("\t"))).unwrap();
        let mut l = Ledger::load(&p).unwrap();
        assert_eq!(
            (
                l.rows[0].policy.as_str(),
                l.rows[0].looks,
                l.rows[0].attempts
            ),
            ("", 0, 0)
        );
        l.append(row(1, Status::Discard)).unwrap();
        assert_eq!(Ledger::load(&p).unwrap().rows[1].attempts, 14);
        std::fs::write(&p, "a\tb\n").unwrap();
        let e = Ledger::load(&p).unwrap_err().to_string();
        assert!(e.contains("results.tsv:1") && e.contains("found 2"), "{e}");
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_mended() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("results.tsv");
        let mut l = Ledger::load(&p).unwrap();
        l.append(row(0, Status::Keep)).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"abc1\t0.5\t3/").unwrap();
        let mut l = Ledger::load(&p).unwrap();
        assert_eq!(l.rows.len(), 1);
        l.append(row(1, Status::Crash)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("abc1\t0.5\t3/\n"), "{text}");
        assert_eq!(Ledger::load(&p).unwrap().rows.len(), 2);
    }
}
