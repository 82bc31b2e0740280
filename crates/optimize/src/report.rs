//! `autoagent report`: the ledger as a terminal table, a progress plot (`progress.svg` and
//! `progress.png`) and `report.md` with the diff and the gain of every kept change.
//!
//! The plot, like the original's teaser: x is the experiment number, y the average score on the
//! train tasks. Discarded experiments are grey dots; kept ones are green dots joined by a step
//! line of the incumbent's score (the running best) and labelled with their description;
//! crashes are red × markers on the bottom edge of the plot, not on the score scale, since a
//! crash's score measures nothing ([`PlotData`] still carries the ledger's value); the holdout
//! score of kept experiments, when measured, is an orange dashed step line.
//!
//! Both images come from one list of shapes laid out in pixels. The SVG writes them as elements:
//! each experiment's marker is the one element with `class="point <status>"`, and carries its
//! ledger values as `data-experiment`, `data-score`, `data-status` and `data-commit`. The PNG
//! rasterises the same shapes, anti-aliased, with `ab_glyph_rasterizer`, text included: the
//! glyphs come from DejaVu Sans compiled into the binary, so no system font is needed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use ab_glyph::{Font as _, FontRef, OutlineCurve};

use crate::ledger::{Ledger, LedgerError, Row, Status};

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

/// Descriptions are cut to this many characters in the terminal table.
const TABLE_DESCRIPTION: usize = 60;
/// And to this many next to the kept points of the plot.
const PLOT_LABEL: usize = 32;
/// A diff longer than this (bytes) is cut in `report.md`.
const MAX_DIFF_BYTES: usize = 200_000;

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
    #[error("{path}: cannot encode the PNG: {message}")]
    Png { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

// ---------------------------------------------------------------------------------------------
// The data plotted.

/// One experiment of the ledger, as plotted.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// From the row's `job_dir`; the row's position in the ledger when that does not parse.
    pub experiment: u32,
    /// The ledger's `avg_score` (for a crash too, though a crash is drawn on the bottom edge).
    pub score: f64,
    pub status: Status,
    pub passed: u32,
    pub trials: u32,
    pub commit: String,
    pub description: String,
}

/// What the progress plot shows, straight from the ledger.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlotData {
    /// Every row, in ledger order.
    pub points: Vec<Point>,
    /// The kept experiments `(experiment, score)`, in order: drawn as a step line, the score of
    /// the incumbent from each keep to the next.
    pub running_best: Vec<(u32, f64)>,
    /// The kept experiments with a holdout score `(experiment, holdout_score)`, in order.
    pub holdout: Vec<(u32, f64)>,
}

impl PlotData {
    pub fn kept(&self) -> usize {
        self.count(Status::Keep)
    }

    pub fn count(&self, status: Status) -> usize {
        self.points.iter().filter(|p| p.status == status).count()
    }
}

fn experiment_of(index: usize, row: &Row) -> u32 {
    row.experiment()
        .map(|e| e.0)
        .unwrap_or_else(|| u32::try_from(index).unwrap_or(u32::MAX))
}

/// The plot's data: one point per ledger row, the kept ones as the running best, and the
/// holdout scores of the kept ones.
pub fn plot_data(ledger: &Ledger) -> PlotData {
    let mut data = PlotData::default();
    for (i, row) in ledger.rows.iter().enumerate() {
        let experiment = experiment_of(i, row);
        data.points.push(Point {
            experiment,
            score: row.avg_score,
            status: row.status,
            passed: row.passed,
            trials: row.trials,
            commit: row.commit.clone(),
            description: row.description.clone(),
        });
        if row.status == Status::Keep {
            data.running_best.push((experiment, row.avg_score));
            if let Some(h) = row.holdout_score {
                data.holdout.push((experiment, h));
            }
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------
// The terminal table.

/// `s` cut to at most `max` characters, with `…` when cut: at a space when one is near the end.
fn truncate(s: &str, max: usize) -> String {
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

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |x| format!("${x:.2}"))
}

fn signed(v: f64, digits: usize) -> String {
    if v.abs() < 0.5 * 10f64.powi(-(digits as i32)) {
        format!("±{:.digits$}", 0.0)
    } else if v > 0.0 {
        format!("+{v:.digits$}")
    } else {
        format!("{v:.digits$}")
    }
}

fn signed_int(v: i64) -> String {
    match v {
        0 => "±0".to_owned(),
        v if v > 0 => format!("+{v}"),
        v => v.to_string(),
    }
}

/// One table line per row, as strings; shared by the terminal and markdown tables.
struct TableRow {
    cells: [String; 9],
    description: String,
}

const TABLE_HEADER: [&str; 10] = [
    "exp",
    "commit",
    "status",
    "passed",
    "score",
    "holdout",
    "Δ score",
    "size",
    "cost",
    "description",
];

fn table_rows(ledger: &Ledger) -> Vec<TableRow> {
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
    let mut widths = [0usize; 9];
    for (w, h) in widths.iter_mut().zip(TABLE_HEADER) {
        *w = h.chars().count();
    }
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(&r.cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    // Left-aligned: commit, status; the rest are numbers.
    let left = [false, true, true, false, false, false, false, false, false];
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
    let mut out = line(&TABLE_HEADER[..9], TABLE_HEADER[9]);
    for r in &rows {
        let cells: Vec<&str> = r.cells.iter().map(String::as_str).collect();
        out.push_str(&line(&cells, &truncate(&r.description, TABLE_DESCRIPTION)));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Layout: the plot as shapes in pixels, drawn by the SVG writer and by the rasteriser.

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rgb(u8, u8, u8);

impl Rgb {
    fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

const WHITE: Rgb = Rgb(255, 255, 255);
const INK: Rgb = Rgb(34, 34, 34);
const AXIS: Rgb = Rgb(90, 90, 90);
const GRID: Rgb = Rgb(229, 229, 229);
const KEEP: Rgb = Rgb(44, 160, 44);
const KEEP_EDGE: Rgb = Rgb(20, 90, 20);
const KEEP_LABEL: Rgb = Rgb(26, 110, 26);
const DISCARD: Rgb = Rgb(160, 160, 160);
const CRASH: Rgb = Rgb(214, 39, 40);
const HOLDOUT: Rgb = Rgb(255, 127, 14);
const LEGEND_EDGE: Rgb = Rgb(200, 200, 200);

/// The radius of a kept point at the default size.
const KEEP_RADIUS: f64 = 6.5;

#[derive(Debug, Clone, Copy)]
struct Stroke {
    color: Rgb,
    width: f64,
    /// Dash and gap lengths.
    dash: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// SVG-only annotations of a shape: a class, `data-*` attributes and a tooltip.
#[derive(Debug, Clone, Default)]
struct Tag {
    class: String,
    data: Vec<(&'static str, String)>,
    title: Option<String>,
}

impl Tag {
    fn class(class: &str) -> Self {
        Self {
            class: class.to_owned(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
enum Shape {
    /// The whole image.
    Background(Rgb),
    Rect {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
        fill: Option<Rgb>,
        stroke: Option<Stroke>,
    },
    Polyline {
        points: Vec<(f64, f64)>,
        stroke: Stroke,
        tag: Tag,
    },
    Circle {
        cx: f64,
        cy: f64,
        r: f64,
        fill: Rgb,
        opacity: f64,
        stroke: Option<Stroke>,
        tag: Tag,
    },
    Cross {
        cx: f64,
        cy: f64,
        half: f64,
        stroke: Stroke,
        tag: Tag,
    },
    Text {
        x: f64,
        y: f64,
        text: String,
        size: f64,
        color: Rgb,
        anchor: Anchor,
        /// Degrees, clockwise on screen (SVG's `rotate`).
        angle: f64,
        class: &'static str,
    },
}

/// DejaVu Sans, compiled in: the PNG's glyphs and the text widths of the layout.
fn font() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).ok())
        .as_ref()
}

/// The font family named in the SVG: the same font when the viewer has it.
const SVG_FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// Width in pixels of `text` at `size` (em size in pixels).
fn text_width(text: &str, size: f64) -> f64 {
    let Some(font) = font() else {
        return 0.6 * size * text.chars().count() as f64;
    };
    let scale = size / f64::from(font.units_per_em().unwrap_or(2048.0));
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            width += f64::from(font.kern_unscaled(p, id));
        }
        width += f64::from(font.h_advance_unscaled(id));
        prev = Some(id);
    }
    width * scale
}

/// A round step (1, 2, 2.5 or 5 × 10ⁿ) near `span / target` ticks.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// Decimals needed to print multiples of `step`.
fn decimals(step: f64) -> usize {
    let mut d = 0;
    while d < 6
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-9
    {
        d += 1;
    }
    d
}

struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x_min: f64,
    x_max: f64,
    y_min: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, e: f64) -> f64 {
        self.left + (e - self.x_min) / (self.x_max - self.x_min) * (self.right - self.left)
    }
    fn y(&self, v: f64) -> f64 {
        let v = if v.is_finite() { v } else { self.y_min };
        self.bottom - (v - self.y_min) / (self.y_max - self.y_min) * (self.bottom - self.top)
    }
}

/// The score range shown: the measured scores (not crashes) and holdout scores, padded (more
/// above, for the labels) and rounded to tenths, within 0..1 when the scores are.
fn y_range(data: &PlotData) -> (f64, f64) {
    let values: Vec<f64> = data
        .points
        .iter()
        .filter(|p| p.status != Status::Crash)
        .map(|p| p.score)
        .chain(data.holdout.iter().map(|h| h.1))
        .filter(|v| v.is_finite())
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let mut y_min = ((lo - 0.05) * 10.0).floor() / 10.0;
    // More room above, for the labels of the best points.
    let mut y_max = ((hi + 0.1) * 10.0).ceil() / 10.0;
    if lo >= 0.0 {
        y_min = y_min.max(0.0);
    }
    if hi <= 1.0 {
        y_max = y_max.min(1.0);
    }
    if y_max - y_min < 0.2 {
        // A flat run: show at least a fifth of the scale.
        let mid = (y_max + y_min) / 2.0;
        y_min = mid - 0.1;
        y_max = mid + 0.1;
        if lo >= 0.0 && y_min < 0.0 {
            (y_min, y_max) = (0.0, 0.2);
        }
        if hi <= 1.0 && y_max > 1.0 {
            (y_min, y_max) = (0.8, 1.0);
        }
    }
    (y_min, y_max)
}

fn stroke(color: Rgb, width: f64) -> Stroke {
    Stroke {
        color,
        width,
        dash: None,
    }
}

/// A step line through `(x, y)` points, held flat to `x_end`.
fn step_line(frame: &Frame, series: &[(u32, f64)], x_end: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for &(e, v) in series {
        let (x, y) = (frame.x(f64::from(e)), frame.y(v));
        if let Some(&(_, last_y)) = out.last() {
            out.push((x, last_y));
        }
        out.push((x, y));
    }
    if let Some(&(last_x, last_y)) = out.last()
        && x_end > last_x
    {
        out.push((x_end, last_y));
    }
    out
}

fn point_tag(p: &Point) -> Tag {
    Tag {
        class: format!("point {}", p.status),
        data: vec![
            ("experiment", p.experiment.to_string()),
            ("score", p.score.to_string()),
            ("status", p.status.to_string()),
            ("commit", p.commit.clone()),
        ],
        title: Some(format!(
            "exp-{} {} — score {:.3} ({}/{}) — {}",
            p.experiment, p.status, p.score, p.passed, p.trials, p.description
        )),
    }
}

/// The plot, laid out at `width` × `height` pixels.
fn layout(data: &PlotData, (width, height): (u32, u32)) -> Vec<Shape> {
    let (w, h) = (f64::from(width), f64::from(height));
    // Sizes scale with the image: 1 at the default 1200 × 600.
    let s = (w / 1200.0).min(h / 600.0).clamp(0.35, 6.0);
    let mut shapes = vec![Shape::Background(WHITE)];

    let (x_lo, x_hi) = data
        .points
        .iter()
        .map(|p| f64::from(p.experiment))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), e| {
            (lo.min(e), hi.max(e))
        });
    let (x_lo, x_hi) = if x_lo.is_finite() {
        (x_lo, x_hi)
    } else {
        (0.0, 1.0)
    };
    let pad = ((x_hi - x_lo) * 0.03).max(0.5);
    let (y_min, y_max) = y_range(data);
    let frame = Frame {
        left: 78.0 * s,
        right: w - 30.0 * s,
        top: 56.0 * s,
        bottom: h - 58.0 * s,
        x_min: x_lo - pad,
        x_max: x_hi + pad,
        y_min,
        y_max,
    };

    // Grid and tick labels.
    let tick_size = 12.0 * s;
    let y_step = nice_step(y_max - y_min, 6.0);
    let y_digits = decimals(y_step);
    let mut v = (y_min / y_step - 1e-9).ceil() * y_step;
    while v <= y_max + 1e-9 {
        let y = frame.y(v);
        shapes.push(Shape::Polyline {
            points: vec![(frame.left, y), (frame.right, y)],
            stroke: stroke(GRID, 1.0 * s),
            tag: Tag::class("grid"),
        });
        shapes.push(Shape::Text {
            x: frame.left - 8.0 * s,
            y: y + 0.35 * tick_size,
            // Never "-0.0" from a rounding error.
            text: format!(
                "{:.y_digits$}",
                if v.abs() < y_step * 1e-6 { 0.0 } else { v }
            ),
            size: tick_size,
            color: AXIS,
            anchor: Anchor::End,
            angle: 0.0,
            class: "tick",
        });
        v += y_step;
    }
    let x_step = nice_step(x_hi - x_lo, 10.0).max(1.0).round();
    let mut e = (x_lo / x_step).ceil() * x_step;
    while e <= x_hi + 1e-9 {
        let x = frame.x(e);
        shapes.push(Shape::Polyline {
            points: vec![(x, frame.bottom), (x, frame.bottom + 5.0 * s)],
            stroke: stroke(AXIS, 1.0 * s),
            tag: Tag::class("tick"),
        });
        shapes.push(Shape::Text {
            x,
            y: frame.bottom + 8.0 * s + tick_size,
            text: format!("{e:.0}"),
            size: tick_size,
            color: AXIS,
            anchor: Anchor::Middle,
            angle: 0.0,
            class: "tick",
        });
        e += x_step;
    }
    shapes.push(Shape::Rect {
        x: frame.left,
        y: frame.top,
        w: frame.right - frame.left,
        h: frame.bottom - frame.top,
        fill: None,
        stroke: Some(stroke(AXIS, 1.0 * s)),
    });

    // Title and axis labels.
    shapes.push(Shape::Text {
        x: w / 2.0,
        y: 34.0 * s,
        text: format!(
            "autoagent: {} experiments, {} kept",
            data.points.len(),
            data.kept()
        ),
        size: 20.0 * s,
        color: INK,
        anchor: Anchor::Middle,
        angle: 0.0,
        class: "title",
    });
    shapes.push(Shape::Text {
        x: (frame.left + frame.right) / 2.0,
        y: h - 14.0 * s,
        text: "experiment".to_owned(),
        size: 14.0 * s,
        color: INK,
        anchor: Anchor::Middle,
        angle: 0.0,
        class: "axis-label",
    });
    shapes.push(Shape::Text {
        x: 24.0 * s,
        y: (frame.top + frame.bottom) / 2.0,
        text: "avg score (train)".to_owned(),
        size: 14.0 * s,
        color: INK,
        anchor: Anchor::Middle,
        angle: -90.0,
        class: "axis-label",
    });

    // The series: holdout under the running best, under the points.
    let x_end = frame.x(x_hi);
    if !data.holdout.is_empty() {
        shapes.push(Shape::Polyline {
            points: step_line(&frame, &data.holdout, x_end),
            stroke: Stroke {
                color: HOLDOUT,
                width: 2.0 * s,
                dash: Some((7.0 * s, 5.0 * s)),
            },
            tag: Tag::class("holdout-line"),
        });
    }
    if !data.running_best.is_empty() {
        shapes.push(Shape::Polyline {
            points: step_line(&frame, &data.running_best, x_end),
            stroke: stroke(KEEP, 2.2 * s),
            tag: Tag::class("running-best"),
        });
    }
    let mut ordered: Vec<&Point> = data.points.iter().collect();
    // Discards first, so kept points stay on top where they meet.
    ordered.sort_by_key(|p| match p.status {
        Status::Discard => 0,
        Status::Crash => 1,
        Status::Keep => 2,
    });
    for p in ordered {
        let cx = frame.x(f64::from(p.experiment));
        match p.status {
            Status::Discard => shapes.push(Shape::Circle {
                cx,
                cy: frame.y(p.score),
                r: 4.5 * s,
                fill: DISCARD,
                opacity: 0.8,
                stroke: None,
                tag: point_tag(p),
            }),
            Status::Crash => shapes.push(Shape::Cross {
                cx,
                cy: frame.bottom - 6.0 * s,
                half: 5.0 * s,
                stroke: stroke(CRASH, 2.2 * s),
                tag: point_tag(p),
            }),
            Status::Keep => shapes.push(Shape::Circle {
                cx,
                cy: frame.y(p.score),
                r: KEEP_RADIUS * s,
                fill: KEEP,
                opacity: 1.0,
                stroke: Some(stroke(KEEP_EDGE, 1.2 * s)),
                tag: point_tag(p),
            }),
        }
    }
    for &(e, v) in &data.holdout {
        shapes.push(Shape::Circle {
            cx: frame.x(f64::from(e)),
            cy: frame.y(v),
            r: 3.5 * s,
            fill: HOLDOUT,
            opacity: 1.0,
            stroke: None,
            tag: Tag {
                class: "holdout".to_owned(),
                data: vec![("experiment", e.to_string()), ("holdout", v.to_string())],
                title: Some(format!("exp-{e} holdout {v:.3}")),
            },
        });
    }
    shapes.extend(labels(data, &frame, s, w));

    legend(data, &frame, s, &mut shapes);
    shapes
}

/// The labels of the kept points: their descriptions, slanted up to the right, each cut to end
/// before the next label in its way and inside the image; a label with no room is left out.
fn labels(data: &PlotData, frame: &Frame, s: f64, w: f64) -> Vec<Shape> {
    const ANGLE: f64 = -30.0;
    let size = 11.0 * s;
    let (sin, cos) = ANGLE.to_radians().sin_cos();
    let starts: Vec<(f64, f64, &str)> = data
        .points
        .iter()
        .filter(|p| p.status == Status::Keep)
        .map(|p| {
            let (cx, cy) = (frame.x(f64::from(p.experiment)), frame.y(p.score));
            (cx + 9.0 * s, cy - 9.0 * s, p.description.as_str())
        })
        .collect();
    let mut out = Vec::new();
    for (i, &(x, y, text)) in starts.iter().enumerate() {
        // Room along the slant: to the right edge, to below the title, to the next label or
        // kept point in the way.
        let mut room = ((w - 4.0 * s - x) / cos).min((y - 44.0 * s) / -sin);
        let r = KEEP_RADIUS * s;
        for (j, &(xj, yj, _)) in starts.iter().enumerate() {
            if j == i {
                continue;
            }
            let across_along =
                |(dx, dy): (f64, f64)| ((dy * cos - dx * sin).abs(), dx * cos + dy * sin);
            let (across, along) = across_along((xj - x, yj - y));
            if along > 0.0 && across < 1.5 * size {
                room = room.min(along - 0.5 * size);
            }
            let (across, along) = across_along((xj - 9.0 * s - x, yj + 9.0 * s - y));
            if along > 0.0 && across < r + size {
                room = room.min(along - r - 0.3 * size);
            }
        }
        let mut max_chars = PLOT_LABEL;
        let label = loop {
            let t = truncate(text, max_chars);
            if text_width(&t, size) <= room {
                break Some(t);
            }
            if max_chars <= 5 {
                break None;
            }
            max_chars -= 1;
        };
        if let Some(text) = label.filter(|t| !t.is_empty()) {
            out.push(Shape::Text {
                x,
                y,
                text,
                size,
                color: KEEP_LABEL,
                anchor: Anchor::Start,
                angle: ANGLE,
                class: "label",
            });
        }
    }
    out
}

/// The legend, in the top-left corner of the plot, where a rising run leaves room.
fn legend(data: &PlotData, frame: &Frame, s: f64, shapes: &mut Vec<Shape>) {
    #[derive(Clone, Copy)]
    enum Key {
        Kept,
        Discarded,
        Crash,
        Best,
        Holdout,
    }
    let mut keys = vec![(Key::Kept, "kept"), (Key::Discarded, "discarded")];
    if data.count(Status::Crash) > 0 {
        keys.push((Key::Crash, "crash"));
    }
    keys.push((Key::Best, "running best (train)"));
    if !data.holdout.is_empty() {
        keys.push((Key::Holdout, "holdout"));
    }
    let size = 12.0 * s;
    let line_h = 19.0 * s;
    let sample = 26.0 * s;
    let label_w = keys
        .iter()
        .map(|(_, l)| text_width(l, size))
        .fold(0.0, f64::max);
    let (x0, y0) = (frame.left + 10.0 * s, frame.top + 10.0 * s);
    let box_w = 10.0 * s + sample + 8.0 * s + label_w + 10.0 * s;
    let box_h = 8.0 * s + line_h * keys.len() as f64 + 4.0 * s;
    shapes.push(Shape::Rect {
        x: x0,
        y: y0,
        w: box_w,
        h: box_h,
        fill: Some(WHITE),
        stroke: Some(stroke(LEGEND_EDGE, 1.0 * s)),
    });
    for (i, (key, label)) in keys.iter().enumerate() {
        let cy = y0 + 8.0 * s + line_h * (i as f64 + 0.5);
        let (sx0, sx1) = (x0 + 10.0 * s, x0 + 10.0 * s + sample);
        let cx = (sx0 + sx1) / 2.0;
        let tag = Tag::class("legend");
        shapes.push(match key {
            Key::Kept => Shape::Circle {
                cx,
                cy,
                r: 6.0 * s,
                fill: KEEP,
                opacity: 1.0,
                stroke: Some(stroke(KEEP_EDGE, 1.2 * s)),
                tag,
            },
            Key::Discarded => Shape::Circle {
                cx,
                cy,
                r: 4.5 * s,
                fill: DISCARD,
                opacity: 0.8,
                stroke: None,
                tag,
            },
            Key::Crash => Shape::Cross {
                cx,
                cy,
                half: 5.0 * s,
                stroke: stroke(CRASH, 2.2 * s),
                tag,
            },
            Key::Best => Shape::Polyline {
                points: vec![(sx0, cy), (sx1, cy)],
                stroke: stroke(KEEP, 2.2 * s),
                tag,
            },
            Key::Holdout => Shape::Polyline {
                points: vec![(sx0, cy), (sx1, cy)],
                stroke: Stroke {
                    color: HOLDOUT,
                    width: 2.0 * s,
                    dash: Some((7.0 * s, 5.0 * s)),
                },
                tag,
            },
        });
        shapes.push(Shape::Text {
            x: sx1 + 8.0 * s,
            y: cy + 0.35 * size,
            text: (*label).to_owned(),
            size,
            color: INK,
            anchor: Anchor::Start,
            angle: 0.0,
            class: "legend",
        });
    }
}

// ---------------------------------------------------------------------------------------------
// SVG.

/// Text and attribute values for XML: escaped, and without the control characters XML forbids.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn svg_stroke(st: &Stroke) -> String {
    let mut s = format!(
        r#" stroke="{}" stroke-width="{:.2}""#,
        st.color.hex(),
        st.width
    );
    if let Some((dash, gap)) = st.dash {
        let _ = write!(s, r#" stroke-dasharray="{dash:.1} {gap:.1}""#);
    }
    s
}

fn svg_tag(tag: &Tag) -> (String, String) {
    let mut attrs = String::new();
    if !tag.class.is_empty() {
        let _ = write!(attrs, r#" class="{}""#, xml(&tag.class));
    }
    for (k, v) in &tag.data {
        let _ = write!(attrs, r#" data-{k}="{}""#, xml(v));
    }
    let title = tag
        .title
        .as_deref()
        .map(|t| format!("<title>{}</title>", xml(t)))
        .unwrap_or_default();
    (attrs, title)
}

/// The progress plot as an SVG document of `size` pixels.
pub fn svg_string(data: &PlotData, size: (u32, u32)) -> String {
    let (w, h) = size;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{SVG_FONT_FAMILY}">"#
    );
    out.push('\n');
    for shape in layout(data, size) {
        match &shape {
            Shape::Background(color) => {
                let _ = writeln!(
                    out,
                    r#"<rect width="100%" height="100%" fill="{}"/>"#,
                    color.hex()
                );
            }
            Shape::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let fill = fill.map_or_else(|| "none".to_owned(), Rgb::hex);
                let stroke = stroke.as_ref().map(svg_stroke).unwrap_or_default();
                let _ = writeln!(
                    out,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"{stroke}/>"#
                );
            }
            Shape::Polyline {
                points,
                stroke,
                tag,
            } => {
                let (attrs, title) = svg_tag(tag);
                let pts = points
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let _ = writeln!(
                    out,
                    r#"<polyline{attrs} points="{pts}" fill="none"{} stroke-linejoin="round">{title}</polyline>"#,
                    svg_stroke(stroke)
                );
            }
            Shape::Circle {
                cx,
                cy,
                r,
                fill,
                opacity,
                stroke,
                tag,
            } => {
                let (attrs, title) = svg_tag(tag);
                let stroke = stroke.as_ref().map(svg_stroke).unwrap_or_default();
                let _ = writeln!(
                    out,
                    r#"<circle{attrs} cx="{cx:.1}" cy="{cy:.1}" r="{r:.1}" fill="{}" fill-opacity="{opacity}"{stroke}>{title}</circle>"#,
                    fill.hex()
                );
            }
            Shape::Cross {
                cx,
                cy,
                half,
                stroke,
                tag,
            } => {
                let (attrs, title) = svg_tag(tag);
                let _ = writeln!(
                    out,
                    r#"<path{attrs} d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}" fill="none"{} stroke-linecap="round">{title}</path>"#,
                    cx - half,
                    cy - half,
                    cx + half,
                    cy + half,
                    cx - half,
                    cy + half,
                    cx + half,
                    cy - half,
                    svg_stroke(stroke)
                );
            }
            Shape::Text {
                x,
                y,
                text,
                size,
                color,
                anchor,
                angle,
                class,
            } => {
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let transform = if *angle == 0.0 {
                    String::new()
                } else {
                    format!(r#" transform="rotate({angle} {x:.1} {y:.1})""#)
                };
                let _ = writeln!(
                    out,
                    r#"<text class="{class}" x="{x:.1}" y="{y:.1}" font-size="{size:.1}" fill="{}" text-anchor="{anchor}"{transform}>{}</text>"#,
                    color.hex(),
                    xml(text)
                );
            }
        }
    }
    out.push_str("</svg>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// PNG: the same shapes, rasterised.

type Pt = (f64, f64);

/// An outline to fill: closed contours of lines and curves, in pixels.
#[derive(Default)]
struct Outline {
    curves: Vec<OutlineCurve>,
}

fn gp((x, y): Pt) -> ab_glyph::Point {
    ab_glyph::point(x as f32, y as f32)
}

impl Outline {
    fn polygon(&mut self, pts: &[Pt]) {
        for (i, &a) in pts.iter().enumerate() {
            let b = pts[(i + 1) % pts.len()];
            self.curves.push(OutlineCurve::Line(gp(a), gp(b)));
        }
    }

    /// A polygon, turned so that its signed area is positive: unions of same-turning shapes
    /// add up, and the rasteriser's coverage is clamped to 1.
    fn positive_polygon(&mut self, pts: &[Pt]) {
        let area: f64 = pts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let b = pts[(i + 1) % pts.len()];
                a.0 * b.1 - b.0 * a.1
            })
            .sum();
        if area < 0.0 {
            let rev: Vec<Pt> = pts.iter().rev().copied().collect();
            self.polygon(&rev);
        } else {
            self.polygon(pts);
        }
    }

    fn disc(&mut self, (cx, cy): Pt, r: f64) {
        let n = ((std::f64::consts::TAU * r / 1.5) as usize).clamp(12, 256);
        let pts: Vec<Pt> = (0..n)
            .map(|i| {
                let t = std::f64::consts::TAU * i as f64 / n as f64;
                (cx + r * t.cos(), cy + r * t.sin())
            })
            .collect();
        self.positive_polygon(&pts);
    }

    /// A stroke of `width` along `pts`, with round joins.
    fn stroke(&mut self, pts: &[Pt], width: f64) {
        let r = width / 2.0;
        for pair in pts.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len = dx.hypot(dy);
            if len < 1e-9 {
                continue;
            }
            let (nx, ny) = (-dy / len * r, dx / len * r);
            self.positive_polygon(&[
                (a.0 + nx, a.1 + ny),
                (b.0 + nx, b.1 + ny),
                (b.0 - nx, b.1 - ny),
                (a.0 - nx, a.1 - ny),
            ]);
        }
        if pts.len() > 2 {
            for &p in &pts[1..pts.len() - 1] {
                self.disc(p, r);
            }
        }
    }
}

/// `pts` cut into dashes.
fn dashes(pts: &[Pt], dash: f64, gap: f64) -> Vec<Vec<Pt>> {
    let mut out = Vec::new();
    let mut current: Vec<Pt> = Vec::new();
    let (mut on, mut left) = (true, dash);
    for pair in pts.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let len = (b.0 - a.0).hypot(b.1 - a.1);
        let mut t = 0.0;
        while len - t > 1e-9 {
            let step = left.min(len - t);
            let p0 = (a.0 + (b.0 - a.0) * t / len, a.1 + (b.1 - a.1) * t / len);
            let t1 = t + step;
            let p1 = (a.0 + (b.0 - a.0) * t1 / len, a.1 + (b.1 - a.1) * t1 / len);
            if on {
                if current.is_empty() {
                    current.push(p0);
                }
                current.push(p1);
            }
            t = t1;
            left -= step;
            if left <= 1e-9 {
                if on {
                    out.push(std::mem::take(&mut current));
                }
                on = !on;
                left = if on { dash } else { gap };
            }
        }
    }
    if current.len() > 1 {
        out.push(current);
    }
    out
}

/// An RGB image with alpha blending.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32) -> Self {
        let (width, height) = (width as usize, height as usize);
        Self {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let a = alpha.clamp(0.0, 1.0);
        if a <= 0.0 {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        for (k, v) in [c.0, c.1, c.2].into_iter().enumerate() {
            let d = f32::from(self.rgb[i + k]);
            self.rgb[i + k] = (d + (f32::from(v) - d) * a).round() as u8;
        }
    }

    /// Fills an outline (non-zero coverage, clamped) with `color` at `opacity`.
    fn fill(&mut self, outline: &Outline, color: Rgb, opacity: f32) {
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        let mut grow = |p: &ab_glyph::Point| {
            x0 = x0.min(p.x);
            y0 = y0.min(p.y);
            x1 = x1.max(p.x);
            y1 = y1.max(p.y);
        };
        for c in &outline.curves {
            match c {
                OutlineCurve::Line(a, b) => [a, b].into_iter().for_each(&mut grow),
                OutlineCurve::Quad(a, b, c) => [a, b, c].into_iter().for_each(&mut grow),
                OutlineCurve::Cubic(a, b, c, d) => [a, b, c, d].into_iter().for_each(&mut grow),
            }
        }
        if !(x0.is_finite() && y0.is_finite() && x1.is_finite() && y1.is_finite()) {
            return;
        }
        let (ox, oy) = (x0.floor() - 1.0, y0.floor() - 1.0);
        let (w, h) = (
            (x1.ceil() - ox + 2.0) as usize,
            (y1.ceil() - oy + 2.0) as usize,
        );
        // Nothing drawn is larger than a few times the image; anything else is a layout bug.
        if w == 0 || h == 0 || w > 4 * self.width + 64 || h > 4 * self.height + 64 {
            return;
        }
        let mut r = ab_glyph_rasterizer::Rasterizer::new(w, h);
        let sh = |p: &ab_glyph::Point| ab_glyph::point(p.x - ox, p.y - oy);
        for c in &outline.curves {
            match c {
                OutlineCurve::Line(a, b) => r.draw_line(sh(a), sh(b)),
                OutlineCurve::Quad(a, b, c) => r.draw_quad(sh(a), sh(b), sh(c)),
                OutlineCurve::Cubic(a, b, c, d) => r.draw_cubic(sh(a), sh(b), sh(c), sh(d)),
            }
        }
        let (ox, oy) = (ox as i64, oy as i64);
        r.for_each_pixel_2d(|x, y, a| {
            if a > 0.0 {
                self.blend(
                    ox + i64::from(x),
                    oy + i64::from(y),
                    color,
                    a.min(1.0) * opacity,
                );
            }
        });
    }

    fn stroke(&mut self, pts: &[Pt], st: &Stroke) {
        let mut o = Outline::default();
        match st.dash {
            Some((dash, gap)) if dash > 0.0 && gap > 0.0 => {
                for d in dashes(pts, dash, gap) {
                    o.stroke(&d, st.width);
                }
            }
            _ => o.stroke(pts, st.width),
        }
        self.fill(&o, st.color, 1.0);
    }

    /// Text with its baseline through `(x, y)`, anchored and turned like SVG's.
    fn text(&mut self, (x, y): Pt, text: &str, size: f64, color: Rgb, anchor: Anchor, angle: f64) {
        let Some(font) = font() else { return };
        let scale = size / f64::from(font.units_per_em().unwrap_or(2048.0));
        let shift = match anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -text_width(text, size) / 2.0,
            Anchor::End => -text_width(text, size),
        };
        let (sin, cos) = angle.to_radians().sin_cos();
        let mut o = Outline::default();
        let mut caret = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                caret += f64::from(font.kern_unscaled(p, id)) * scale;
            }
            if let Some(glyph) = font.outline(id) {
                let tf = |p: ab_glyph::Point| {
                    let lx = shift + caret + f64::from(p.x) * scale;
                    let ly = -f64::from(p.y) * scale;
                    gp((x + lx * cos - ly * sin, y + lx * sin + ly * cos))
                };
                for curve in glyph.curves {
                    o.curves.push(match curve {
                        OutlineCurve::Line(a, b) => OutlineCurve::Line(tf(a), tf(b)),
                        OutlineCurve::Quad(a, b, c) => OutlineCurve::Quad(tf(a), tf(b), tf(c)),
                        OutlineCurve::Cubic(a, b, c, d) => {
                            OutlineCurve::Cubic(tf(a), tf(b), tf(c), tf(d))
                        }
                    });
                }
            }
            caret += f64::from(font.h_advance_unscaled(id)) * scale;
            prev = Some(id);
        }
        self.fill(&o, color, 1.0);
    }

    fn draw(&mut self, shape: &Shape) {
        match shape {
            Shape::Background(c) => {
                for px in self.rgb.chunks_exact_mut(3) {
                    px.copy_from_slice(&[c.0, c.1, c.2]);
                }
            }
            Shape::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let corners = [(*x, *y), (x + w, *y), (x + w, y + h), (*x, y + h)];
                if let Some(fill) = fill {
                    let mut o = Outline::default();
                    o.positive_polygon(&corners);
                    self.fill(&o, *fill, 1.0);
                }
                if let Some(st) = stroke {
                    let mut closed = corners.to_vec();
                    closed.push(corners[0]);
                    closed.push(corners[1]);
                    self.stroke(&closed, st);
                }
            }
            Shape::Polyline { points, stroke, .. } => self.stroke(points, stroke),
            Shape::Circle {
                cx,
                cy,
                r,
                fill,
                opacity,
                stroke,
                ..
            } => {
                let mut o = Outline::default();
                o.disc((*cx, *cy), *r);
                self.fill(&o, *fill, *opacity as f32);
                if let Some(st) = stroke {
                    // A ring: the outer disc and the inner one turned the other way.
                    let mut ring = Outline::default();
                    ring.disc((*cx, *cy), r + st.width / 2.0);
                    let mut inner = Outline::default();
                    inner.disc((*cx, *cy), (r - st.width / 2.0).max(0.0));
                    ring.curves
                        .extend(inner.curves.into_iter().map(|c| match c {
                            OutlineCurve::Line(a, b) => OutlineCurve::Line(b, a),
                            other => other,
                        }));
                    self.fill(&ring, st.color, 1.0);
                }
            }
            Shape::Cross {
                cx,
                cy,
                half,
                stroke,
                ..
            } => {
                let mut o = Outline::default();
                o.stroke(
                    &[(cx - half, cy - half), (cx + half, cy + half)],
                    stroke.width,
                );
                o.stroke(
                    &[(cx - half, cy + half), (cx + half, cy - half)],
                    stroke.width,
                );
                self.fill(&o, stroke.color, 1.0);
            }
            Shape::Text {
                x,
                y,
                text,
                size,
                color,
                anchor,
                angle,
                ..
            } => self.text((*x, *y), text, *size, *color, *anchor, *angle),
        }
    }
}

fn check_size((width, height): (u32, u32)) -> Result<(), ReportError> {
    let ok = |v: u32| (MIN_SIDE..=MAX_SIDE).contains(&v);
    if ok(width) && ok(height) {
        Ok(())
    } else {
        Err(ReportError::Size { width, height })
    }
}

/// The progress plot as PNG bytes of `size` pixels (8-bit RGB).
pub fn png_bytes(data: &PlotData, size: (u32, u32)) -> Result<Vec<u8>, ReportError> {
    check_size(size)?;
    let mut canvas = Canvas::new(size.0, size.1);
    for shape in layout(data, size) {
        canvas.draw(&shape);
    }
    let png_error = |e: png::EncodingError| ReportError::Png {
        path: PathBuf::from(PNG_FILE),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, size.0, size.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&canvas.rgb).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}

/// Writes a file through a temporary one beside it, so a reader never sees half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
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

/// Writes the progress plot as SVG, `size` pixels.
pub fn render_svg(data: &PlotData, path: &Path, size: (u32, u32)) -> Result<(), ReportError> {
    check_size(size)?;
    write_atomic(path, svg_string(data, size).as_bytes())
}

/// Writes the progress plot as PNG, `size` pixels (width, height).
pub fn render_png(data: &PlotData, path: &Path, size: (u32, u32)) -> Result<(), ReportError> {
    let bytes = png_bytes(data, size).map_err(|e| match e {
        ReportError::Png { message, .. } => ReportError::Png {
            path: path.to_owned(),
            message,
        },
        other => other,
    })?;
    write_atomic(path, &bytes)
}

// ---------------------------------------------------------------------------------------------
// Diffs of kept changes, from the harness repository.

/// A commit as the ledger records it: hex only, so it can never pass for a git option.
fn is_commit(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `git diff from to` in the harness repository, with hooks, external diff tools, textconv
/// filters and the fsmonitor off, and a time limit. The error says why, in one line.
pub async fn git_diff(
    harness: &Path,
    from: &str,
    to: &str,
    timeout: Duration,
) -> Result<String, String> {
    for c in [from, to] {
        if !is_commit(c) {
            return Err(format!("{c:?} is not a commit hash"));
        }
    }
    if !harness.join(".git").exists() {
        return Err(format!("{} is not a git repository", harness.display()));
    }
    crate::git::GitRepo::new(harness)
        .with_timeout(timeout)
        .diff(from, to)
        .await
        .map_err(|e| {
            let first = e
                .message
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            format!("git diff failed: {first}")
        })
}

/// A diff cut to `max` bytes at a line end, saying how much was left out.
fn cut_diff(diff: &str, max: usize) -> String {
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
struct KeptChange {
    /// Index in the ledger of this row and of the incumbent it replaced.
    row: usize,
    prev: usize,
    diff: Result<String, String>,
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

fn render_markdown(ledger: &Ledger, changes: &[KeptChange]) -> String {
    let mut md = String::from("# autoagent report\n\n");
    let _ = writeln!(md, "![progress]({PNG_FILE})\n");
    md.push_str("## Summary\n\n");
    for line in summary_lines(ledger) {
        let _ = writeln!(md, "- {}", md_text(&line));
    }
    md.push_str("\n## Experiments\n\n");
    let _ = writeln!(md, "| {} |", TABLE_HEADER.join(" | "));
    md.push_str("|---:|---|---|---:|---:|---:|---:|---:|---:|---|\n");
    for r in table_rows(ledger) {
        let cells: Vec<String> = r.cells.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(
            md,
            "| {} | {} |",
            cells.join(" | "),
            md_cell(&r.description)
        );
    }
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

// ---------------------------------------------------------------------------------------------
// `autoagent report`.

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
            .await;
            if let Err(e) = &diff {
                warnings.push(format!("exp-{}: no diff: {e}", experiment_of(i, row)));
            }
            changes.push(KeptChange {
                row: i,
                prev: p,
                diff,
            });
        }
        prev = Some(i);
    }
    let markdown = workspace.join(MARKDOWN_FILE);
    write_atomic(&markdown, render_markdown(&ledger, &changes).as_bytes())?;

    Ok(ReportSummary {
        table: render_table(&ledger),
        svg,
        png,
        markdown,
        plot,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_round() {
        assert_eq!(nice_step(1.0, 6.0), 0.2);
        assert_eq!(nice_step(0.3, 6.0), 0.05);
        assert_eq!(nice_step(40.0, 10.0), 5.0);
        assert_eq!(nice_step(7.0, 10.0), 1.0);
        assert_eq!(decimals(0.2), 1);
        assert_eq!(decimals(0.05), 2);
        assert_eq!(decimals(5.0), 0);
    }

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

    #[test]
    fn xml_is_escaped_and_control_characters_dropped() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn dashes_alternate() {
        let d = dashes(&[(0.0, 0.0), (10.0, 0.0)], 3.0, 2.0);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], vec![(0.0, 0.0), (3.0, 0.0)]);
        assert_eq!(d[1], vec![(5.0, 0.0), (8.0, 0.0)]);
    }

    #[test]
    fn y_range_zooms_on_the_scores_within_zero_to_one() {
        let p = |score, status| Point {
            experiment: 0,
            score,
            status,
            passed: 0,
            trials: 0,
            commit: String::new(),
            description: String::new(),
        };
        let data = PlotData {
            points: vec![
                p(0.62, Status::Keep),
                p(0.81, Status::Discard),
                p(0.0, Status::Crash),
            ],
            running_best: vec![],
            holdout: vec![(0, 0.55)],
        };
        let (lo, hi) = y_range(&data);
        assert!(
            (lo - 0.5).abs() < 1e-9 && (hi - 1.0).abs() < 1e-9,
            "{lo} {hi}"
        );
        let data = PlotData {
            points: vec![p(0.0, Status::Keep), p(1.0, Status::Keep)],
            ..PlotData::default()
        };
        assert_eq!(y_range(&data), (0.0, 1.0));
    }

    #[test]
    fn text_is_measured_with_the_bundled_font() {
        assert!(font().is_some());
        let w = text_width("experiment", 14.0);
        assert!(w > 50.0 && w < 100.0, "{w}");
    }

    #[test]
    fn one_point_or_none_still_draws() {
        let one = |status| PlotData {
            points: vec![Point {
                experiment: 4,
                score: f64::NAN,
                status,
                passed: 0,
                trials: 0,
                commit: String::new(),
                description: "<only> & \"one\"".into(),
            }],
            ..PlotData::default()
        };
        for data in [PlotData::default(), one(Status::Crash), one(Status::Keep)] {
            let svg = svg_string(&data, DEFAULT_SIZE);
            // The ledger's value is kept as data; no coordinate is made of it.
            let drawn = svg
                .replace(r#"data-score="NaN""#, "")
                .replace("score NaN", "");
            assert!(!drawn.contains("NaN") && !drawn.contains("inf"), "{svg}");
            assert!(!svg.contains(">-0.0<"), "{svg}");
            assert_eq!(svg.matches(r#"class="point "#).count(), data.points.len());
            let png = png_bytes(&data, (300, 200)).unwrap_or_default();
            assert!(png.starts_with(b"\x89PNG"));
        }
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        let data = PlotData::default();
        assert!(matches!(
            png_bytes(&data, (10, 600)),
            Err(ReportError::Size { width: 10, .. })
        ));
    }
}
