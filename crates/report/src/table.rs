//! The ledger as a terminal table (and the rows of `report.md`'s table).

use std::fmt::Write as _;

use autoagent_optimize::ledger::{Ledger, Row, Status};

use crate::experiment_of;

/// Descriptions are cut to this many characters in the terminal table.
const TABLE_DESCRIPTION: usize = 60;

/// `s` cut to at most `max` characters, with `…` when cut: at a space when one is near the end.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let keep = max.saturating_sub(1);
    let mut out: String = s.chars().take(keep).collect();
    if let Some(i) = out.rfind(' ')
        && out[..i].chars().count() * 4 >= keep * 3
    {
        out.truncate(i);
    }
    let mut out = out.trim_end().to_owned();
    out.push('…');
    out
}

pub(crate) fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |x| format!("${x:.2}"))
}

pub(crate) fn signed(v: f64, digits: usize) -> String {
    if v.abs() < 0.5 * 10f64.powi(-(digits as i32)) {
        format!("±{:.digits$}", 0.0)
    } else if v > 0.0 {
        format!("+{v:.digits$}")
    } else {
        format!("{v:.digits$}")
    }
}

pub(crate) fn signed_int(v: i64) -> String {
    match v {
        0 => "±0".to_owned(),
        v if v > 0 => format!("+{v}"),
        v => v.to_string(),
    }
}

/// One table line per row, as strings; shared by the terminal and markdown tables.
pub(crate) struct TableRow {
    pub(crate) cells: [String; 11],
    pub(crate) description: String,
}

pub(crate) const TABLE_HEADER: [&str; 12] = [
    "exp",
    "commit",
    "status",
    "passed",
    "looks",
    "run",
    "score",
    "holdout",
    "Δ score",
    "size",
    "cost",
    "description",
];

pub(crate) fn table_rows(ledger: &Ledger) -> Vec<TableRow> {
    let mut out = Vec::with_capacity(ledger.rows.len());
    let mut incumbent: Option<&Row> = None;
    for (i, row) in ledger.rows.iter().enumerate() {
        let delta = match (row.status, incumbent) {
            (Status::Keep, Some(prev)) => signed(row.avg_score - prev.avg_score, 3),
            (Status::Keep, None) => "base".to_owned(),
            _ => String::new(),
        };
        out.push(TableRow {
            cells: [
                experiment_of(i, row).to_string(),
                row.commit.chars().take(12).collect(),
                row.status.to_string(),
                format!("{}/{}", row.passed, row.trials),
                // Rows of ledgers from before looks were recorded show none.
                if row.looks == 0 {
                    "-".to_owned()
                } else {
                    row.looks.to_string()
                },
                if row.looks == 0 && row.attempts == 0 {
                    "-".to_owned()
                } else {
                    row.attempts.to_string()
                },
                format!("{:.3}", row.avg_score),
                row.holdout_score
                    .map_or_else(|| "-".to_owned(), |h| format!("{h:.3}")),
                delta,
                row.harness_size.to_string(),
                money(row.cost_usd),
            ],
            description: row.description.clone(),
        });
        if row.status == Status::Keep {
            incumbent = Some(row);
        }
    }
    out
}

/// The ledger as a fixed-width table for the terminal: one line per experiment, descriptions
/// cut to 60 characters, Δ score against the previous incumbent on kept rows.
pub fn render_table(ledger: &Ledger) -> String {
    let rows = table_rows(ledger);
    let mut widths = [0usize; 11];
    for (w, h) in widths.iter_mut().zip(TABLE_HEADER) {
        *w = h.chars().count();
    }
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(&r.cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Left-aligned: commit, status; the rest are numbers.
    let left = [
        false, true, true, false, false, false, false, false, false, false, false,
    ];
    let line = |cells: &[&str], description: &str| {
        let mut s = String::new();
        for ((c, w), l) in cells.iter().zip(widths).zip(left) {
            if l {
                let _ = write!(s, "{c:<w$}  ");
            } else {
                let _ = write!(s, "{c:>w$}  ");
            }
        }
        s.push_str(description);
        let mut s = s.trim_end().to_owned();
        s.push('\n');
        s
    };
    let mut out = line(&TABLE_HEADER[..11], TABLE_HEADER[11]);
    for r in &rows {
        let cells: Vec<&str> = r.cells.iter().map(String::as_str).collect();
        out.push_str(&line(&cells, &truncate(&r.description, TABLE_DESCRIPTION)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Layout: the plot as shapes in pixels, drawn by the SVG writer and by the rasteriser.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ééééé", 4), "ééé…");
        assert_eq!(
            truncate("use grep before reading whole files", 28),
            "use grep before reading…"
        );
        assert_eq!(truncate("a bcdefghij", 6), "a bcd…");
    }
}
