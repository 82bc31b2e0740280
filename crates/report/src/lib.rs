//! autoagent-report: what a run looks like from its files. The ledger as a terminal table, the
//! progress plot (`progress.svg`, and `progress.png` rendered from it by `resvg`), `report.md`
//! with the diff and gain of every kept change, and the data model of the dashboard
//! ([`model`]: the run's summary and phase, the experiments, the task × experiment matrix, the
//! trials).
//!
//! Everything is read from the workspace's files (`results.tsv`, `.autoagent/`, `jobs/`, the
//! harness's git history), never from a running process, so it works beside a live `optimize`
//! and after it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use autoagent_optimize::ledger::{Ledger, LedgerError, Row, Status};

pub mod git;
pub mod markdown;
pub mod model;
pub mod plot;
pub mod table;

pub use plot::{
    PlotData, Point, plot_data, png_bytes, rasterize, render_png, render_svg, svg_string,
};
pub use table::render_table;

/// The ledger, the plots and the report, relative to the workspace.
pub const LEDGER_FILE: &str = "results.tsv";
pub const SVG_FILE: &str = "progress.svg";
pub const PNG_FILE: &str = "progress.png";
pub const MARKDOWN_FILE: &str = "report.md";

/// The default image size in pixels, width × height.
pub const DEFAULT_SIZE: (u32, u32) = (1200, 600);
/// The smallest and largest width or height accepted, in pixels.
pub const MIN_SIDE: u32 = 200;
pub const MAX_SIDE: u32 = 8000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{path}: no ledger here: run `autoagent optimize` in this workspace first, or pass --workspace"
    )]
    NoLedger { path: PathBuf },
    #[error("{path}: the ledger has no experiments yet")]
    EmptyLedger { path: PathBuf },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("image size {width}x{height}: each side must be {MIN_SIDE} to {MAX_SIDE} pixels")]
    Size { width: u32, height: u32 },
    #[error("{path}: cannot render the PNG: {message}")]
    Png { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The experiment number of a ledger row: from its `job_dir`, else its position in the ledger.
pub fn experiment_of(index: usize, row: &Row) -> u32 {
    row.experiment()
        .map(|e| e.0)
        .unwrap_or_else(|| u32::try_from(index).unwrap_or(u32::MAX))
}

pub(crate) fn check_size((width, height): (u32, u32)) -> Result<(), ReportError> {
    let ok = |v: u32| (MIN_SIDE..=MAX_SIDE).contains(&v);
    if ok(width) && ok(height) {
        Ok(())
    } else {
        Err(ReportError::Size { width, height })
    }
}

/// Writes a file through a temporary one beside it, so a reader never sees half of it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// `git diff from to` in the harness repository, within `timeout`.
pub async fn git_diff(
    harness: &Path,
    from: &str,
    to: &str,
    timeout: Duration,
) -> Result<String, git::GitError> {
    git::Repo::new(harness, timeout).diff(from, to).await
}

#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The images' size in pixels, width × height.
    pub size: (u32, u32),
    /// The time limit of each `git diff`.
    pub git_timeout: Duration,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            size: DEFAULT_SIZE,
            git_timeout: Duration::from_secs(30),
        }
    }
}

/// What `write_report` wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// The terminal table ([`render_table`]).
    pub table: String,
    pub svg: PathBuf,
    pub png: PathBuf,
    pub markdown: PathBuf,
    /// The data plotted.
    pub plot: PlotData,
    /// Diffs that could not be had (no harness repository, a missing commit, …), one line each;
    /// `report.md` says the same in the change's section.
    pub warnings: Vec<String>,
}

/// Every trial of the workspace's jobs that the verifier-integrity monitor flagged, by job and
/// trial name. A workspace without jobs has none.
fn suspect_trials(workspace: &Path) -> Vec<model::TrialRef> {
    let Ok(src) = model::Source::open(workspace) else {
        return Vec::new();
    };
    model::jobs(&src)
        .iter()
        .filter_map(|job| model::job_trials(&src, job).ok())
        .flatten()
        .filter(|t| t.suspect.is_some())
        .collect()
}

/// Loads `<workspace>/results.tsv` and writes `progress.svg`, `progress.png` and `report.md`
/// beside it. A missing, empty or malformed ledger is an error naming the file (and the line).
pub async fn write_report(
    workspace: &Path,
    options: &ReportOptions,
) -> Result<ReportSummary, ReportError> {
    check_size(options.size)?;
    let ledger_path = workspace.join(LEDGER_FILE);
    match std::fs::metadata(&ledger_path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(ReportError::NoLedger { path: ledger_path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReportError::NoLedger { path: ledger_path });
        }
        Err(source) => {
            return Err(ReportError::Io {
                path: ledger_path,
                source,
            });
        }
    }
    let ledger = Ledger::load(&ledger_path)?;
    if ledger.rows.is_empty() {
        return Err(ReportError::EmptyLedger { path: ledger_path });
    }

    let plot = plot_data(&ledger);
    let svg = workspace.join(SVG_FILE);
    let png = workspace.join(PNG_FILE);
    render_svg(&plot, &svg, options.size)?;
    render_png(&plot, &png, options.size)?;

    let harness = workspace.join("harness");
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    let mut prev: Option<usize> = None;
    for (i, row) in ledger.rows.iter().enumerate() {
        if row.status != Status::Keep {
            continue;
        }
        if let Some(p) = prev {
            let diff = git_diff(
                &harness,
                &ledger.rows[p].commit,
                &row.commit,
                options.git_timeout,
            )
            .await
            .map_err(|e| e.to_string());
            if let Err(e) = &diff {
                warnings.push(format!("exp-{}: no diff: {e}", experiment_of(i, row)));
            }
            changes.push(markdown::KeptChange {
                row: i,
                prev: p,
                diff,
            });
        }
        prev = Some(i);
    }
    let markdown = workspace.join(MARKDOWN_FILE);
    write_atomic(
        &markdown,
        markdown::render_markdown(&ledger, &changes, &suspect_trials(workspace)).as_bytes(),
    )?;

    Ok(ReportSummary {
        table: table::render_table(&ledger),
        svg,
        png,
        markdown,
        plot,
        warnings,
    })
}
