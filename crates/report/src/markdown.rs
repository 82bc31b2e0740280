//! `report.md`: the summary figures, the experiments' table, and every kept change with its
//! gain and its diff.

use std::fmt::Write as _;

use autoagent_optimize::ledger::{Ledger, Row, Status};

use crate::table::{TABLE_HEADER, money, signed, signed_int, table_rows};
use crate::{PNG_FILE, experiment_of};

/// A diff longer than this (bytes) is cut in `report.md`.
pub const MAX_DIFF_BYTES: usize = 200_000;

/// A diff cut to `max` bytes at a line end, saying how much was left out.
pub fn cut_diff(diff: &str, max: usize) -> String {
    if diff.len() <= max {
        return diff.to_owned();
    }
    let mut end = max;
    while !diff.is_char_boundary(end) {
        end -= 1;
    }
    let end = diff[..end].rfind('\n').map_or(end, |i| i + 1);
    let rest = diff[end..].lines().count();
    format!("{}… {rest} more lines not shown\n", &diff[..end])
}

/// A code fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// Markdown table cells: no pipes or newlines breaking the table, no HTML.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace(['\n', '\r'], " ")
}

/// Markdown text outside tables: no HTML.
fn md_text(s: &str) -> String {
    s.replace('<', "&lt;")
}

/// One kept change after the baseline, with its diff against the previous kept commit.
#[derive(Debug, Clone)]
pub(crate) struct KeptChange {
    /// Index in the ledger of this row and of the incumbent it replaced.
    pub(crate) row: usize,
    pub(crate) prev: usize,
    pub(crate) diff: Result<String, String>,
}

/// The summary figures of `report.md`.
fn summary_lines(ledger: &Ledger) -> Vec<String> {
    let rows = &ledger.rows;
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let mut out = vec![format!(
        "**Experiments:** {}: {} kept, {} discarded, {} crashed",
        rows.len(),
        count(Status::Keep),
        count(Status::Discard),
        count(Status::Crash)
    )];
    let kept: Vec<(usize, &Row)> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == Status::Keep)
        .collect();
    let name = |i: usize, r: &Row| format!("exp-{} (`{}`)", experiment_of(i, r), r.commit);
    match kept.first() {
        None => out.push("**Baseline:** none kept yet".to_owned()),
        Some(&(bi, base)) => {
            out.push(format!(
                "**Baseline:** {}: score {:.3}, passed {}/{}",
                name(bi, base),
                base.avg_score,
                base.passed,
                base.trials
            ));
            // The best kept score; the later one on a tie.
            let (i, best) = kept.iter().copied().fold(kept[0], |acc, k| {
                if k.1.avg_score >= acc.1.avg_score {
                    k
                } else {
                    acc
                }
            });
            out.push(format!(
                "**Best:** {}: score {:.3}, passed {}/{} ({} score, {} passed over the baseline)",
                name(i, best),
                best.avg_score,
                best.passed,
                best.trials,
                signed(best.avg_score - base.avg_score, 3),
                signed_int(i64::from(best.passed) - i64::from(base.passed))
            ));
            out.push(match best.holdout_score {
                Some(h) => format!(
                    "**Holdout:** best train score {:.3} vs holdout {h:.3} (gap {})",
                    best.avg_score,
                    signed(best.avg_score - h, 3)
                ),
                None if rows.iter().any(|r| r.holdout_score.is_some()) => format!(
                    "**Holdout:** not measured for the best, exp-{}",
                    experiment_of(i, best)
                ),
                None => "**Holdout:** not measured".to_owned(),
            });
        }
    }
    let sum = |f: fn(&Row) -> Option<f64>| rows.iter().filter_map(f).sum::<f64>();
    let unknown = rows.iter().filter(|r| r.cost_usd.is_none()).count();
    let mut cost = format!(
        "**Cost:** ${:.2} (${:.2} task agent, ${:.2} meta-agent)",
        sum(|r| r.cost_usd),
        sum(|r| r.task_cost_usd),
        sum(|r| r.meta_cost_usd)
    );
    if unknown > 0 {
        let _ = write!(
            cost,
            "; prices unknown for {unknown} experiment{}",
            if unknown == 1 { "" } else { "s" }
        );
    }
    out.push(cost);
    out
}

/// The trials the verifier-integrity monitor flagged, with its evidence, job by job.
fn suspect_section(md: &mut String, suspects: &[crate::model::TrialRef]) {
    if suspects.is_empty() {
        return;
    }
    md.push_str("\n## Suspect trials\n\n");
    let _ = writeln!(
        md,
        "{} trial{} touched what the verifier relies on; the loop counted each as a failure, \
         whatever reward it got.\n",
        suspects.len(),
        if suspects.len() == 1 { "" } else { "s" }
    );
    md.push_str("| job | trial | task | reward | evidence |\n|---|---|---|---:|---|\n");
    for t in suspects {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            md_cell(&t.job),
            md_cell(&t.trial),
            md_cell(&t.task),
            t.reward.map_or("-".to_owned(), |r| format!("{r:.3}")),
            md_cell(&t.suspect.as_deref().unwrap_or_default().join("; "))
        );
    }
}

pub(crate) fn render_markdown(
    ledger: &Ledger,
    changes: &[KeptChange],
    suspects: &[crate::model::TrialRef],
) -> String {
    let mut md = String::from("# autoagent report\n\n");
    let _ = writeln!(md, "![progress]({PNG_FILE})\n");
    md.push_str("## Summary\n\n");
    for line in summary_lines(ledger) {
        let _ = writeln!(md, "- {}", md_text(&line));
    }
    md.push_str("\n## Experiments\n\n");
    let _ = writeln!(md, "| {} |", TABLE_HEADER.join(" | "));
    md.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in table_rows(ledger) {
        let cells: Vec<String> = r.cells.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(
            md,
            "| {} | {} |",
            cells.join(" | "),
            md_cell(&r.description)
        );
    }
    suspect_section(&mut md, suspects);
    md.push_str("\n## Kept changes\n");
    if changes.is_empty() {
        md.push_str("\nNo change has been kept over the baseline yet.\n");
    }
    for change in changes {
        let (Some(row), Some(prev)) = (ledger.rows.get(change.row), ledger.rows.get(change.prev))
        else {
            continue;
        };
        let _ = writeln!(
            md,
            "\n### exp-{}: {} ({} passed, score {:.3} → {:.3})\n",
            experiment_of(change.row, row),
            md_text(&row.description),
            signed_int(i64::from(row.passed) - i64::from(prev.passed)),
            prev.avg_score,
            row.avg_score
        );
        let mut facts = format!(
            "Commit `{}` over exp-{} (`{}`): passed {}/{} → {}/{}",
            row.commit,
            experiment_of(change.prev, prev),
            prev.commit,
            prev.passed,
            prev.trials,
            row.passed,
            row.trials
        );
        if let Some(h) = row.holdout_score {
            let _ = write!(facts, ", holdout {h:.3}");
        }
        let _ = write!(
            facts,
            ", harness size {} → {}, cost {}.",
            prev.harness_size,
            row.harness_size,
            money(row.cost_usd)
        );
        let _ = writeln!(md, "{}\n", md_text(&facts));
        match &change.diff {
            Ok(diff) if diff.trim().is_empty() => {
                md.push_str("_The harness did not change (an empty diff)._\n");
            }
            Ok(diff) => {
                let diff = cut_diff(diff, MAX_DIFF_BYTES);
                let f = fence(&diff);
                let _ = write!(md, "{f}diff\n{diff}");
                if !diff.ends_with('\n') {
                    md.push('\n');
                }
                let _ = writeln!(md, "{f}");
            }
            Err(e) => {
                let _ = writeln!(md, "_The diff is not available: {}._", md_text(e));
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outrun_backticks() {
        assert_eq!(fence("no ticks"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }

    #[test]
    fn long_diffs_are_cut_at_a_line() {
        let diff = "+a\n+b\n+c\n+d\n";
        assert_eq!(cut_diff(diff, 100), diff);
        assert_eq!(cut_diff(diff, 7), "+a\n+b\n… 2 more lines not shown\n");
    }
}
