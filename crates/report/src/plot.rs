//! The progress plot, like the original's teaser: x is the experiment number, y the average
//! score on the train tasks. Discarded experiments are grey dots; kept ones are green dots
//! joined by a step line of the incumbent's score (the running best) and labelled with their
//! description; crashes are red × markers on the bottom edge of the plot, not on the score
//! scale, since a crash's score measures nothing ([`PlotData`] still carries the ledger's
//! value); the holdout score of kept experiments, when measured, is an orange dashed step line.
//!
//! The SVG is the one drawing. Each experiment's marker is the one element with
//! `class="point <status>"`, and carries its ledger values as `data-experiment`, `data-score`,
//! `data-status` and `data-commit`. The PNG is that SVG rendered by `resvg`, with DejaVu Sans
//! compiled in as its only font (no system font is read), so the two images cannot drift.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use autoagent_optimize::ledger::{Ledger, Status};

use crate::table::truncate;
use crate::{ReportError, check_size, experiment_of, write_atomic};

/// Descriptions are cut to this many characters next to the kept points of the plot.
const PLOT_LABEL: usize = 32;

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

/// DejaVu Sans, compiled in: the text widths of the layout, and the one font the PNG's
/// renderer knows, so that both measure the same glyphs.
fn font() -> Option<&'static ttf_parser::Face<'static>> {
    static FONT: OnceLock<Option<ttf_parser::Face<'static>>> = OnceLock::new();
    FONT.get_or_init(|| ttf_parser::Face::parse(dejavu::sans::regular(), 0).ok())
        .as_ref()
}

/// The font family named in the SVG: the same font when the viewer has it.
const SVG_FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// Width in pixels of `text` at `size` (em size in pixels): advances plus pair kerning.
fn text_width(text: &str, size: f64) -> f64 {
    let Some(face) = font() else {
        return 0.6 * size * text.chars().count() as f64;
    };
    let scale = size / f64::from(face.units_per_em());
    let kern = face.tables().kern;
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = face.glyph_index(c).unwrap_or(ttf_parser::GlyphId(0));
        if let (Some(p), Some(kern)) = (prev, kern) {
            let k = kern
                .subtables
                .into_iter()
                .filter(|s| s.horizontal && !s.variable)
                .find_map(|s| s.glyphs_kerning(p, id));
            width += f64::from(k.unwrap_or(0));
        }
        width += f64::from(face.glyph_hor_advance(id).unwrap_or(0));
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

// ---------------------------------------------------------------------------------------------
// PNG: the SVG, rendered by resvg.

/// The fonts the renderer may use: DejaVu Sans only, under every generic family name.
fn fontdb() -> Arc<resvg::usvg::fontdb::Database> {
    static DB: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = resvg::usvg::fontdb::Database::new();
        db.load_font_data(dejavu::sans::regular().to_vec());
        for family in db.faces().map(|f| f.families.clone()).collect::<Vec<_>>() {
            if let Some((name, _)) = family.first() {
                db.set_sans_serif_family(name.clone());
                db.set_serif_family(name.clone());
                db.set_monospace_family(name.clone());
            }
        }
        Arc::new(db)
    })
    .clone()
}

/// Renders an SVG document to PNG bytes (8-bit RGBA), at the document's own size.
pub fn rasterize(svg: &str) -> Result<Vec<u8>, ReportError> {
    let png_error = |message: String| ReportError::Png {
        path: PathBuf::from(crate::PNG_FILE),
        message,
    };
    let options = resvg::usvg::Options {
        fontdb: fontdb(),
        font_family: "DejaVu Sans".to_owned(),
        ..resvg::usvg::Options::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &options).map_err(|e| png_error(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
            png_error(format!(
                "cannot allocate {}x{}",
                size.width(),
                size.height()
            ))
        })?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| png_error(e.to_string()))
}

/// The progress plot as PNG bytes of `size` pixels: [`svg_string`], rasterised.
pub fn png_bytes(data: &PlotData, size: (u32, u32)) -> Result<Vec<u8>, ReportError> {
    check_size(size)?;
    rasterize(&svg_string(data, size))
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
    fn xml_is_escaped_and_control_characters_dropped() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
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
            let svg = svg_string(&data, crate::DEFAULT_SIZE);
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
