//! `autoagent report` on a ledger of eight experiments whose commits are real commits of a
//! harness repository: the plot's data comes from the ledger, the PNG has the size asked for,
//! the SVG has one marker per experiment, and `report.md` has each kept change's diff and gain.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use autoagent_optimize::ledger::{Ledger, Row, Status};
use autoagent_report::{
    self as report, PlotData, ReportError, ReportOptions, plot_data, render_table, write_report,
};
use resvg::tiny_skia::Pixmap;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Appends `line` to the harness's agent file and commits it; the short hash.
fn commit_line(harness: &Path, line: &str, message: &str) -> String {
    let file = harness.join("agent.toml");
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    text.push_str(line);
    text.push('\n');
    std::fs::write(&file, text).unwrap();
    git(harness, &["add", "-A"]);
    git(harness, &["commit", "-q", "-m", message]);
    git(harness, &["rev-parse", "--short=7", "HEAD"])
}

/// A discarded experiment: committed, kept readable under `refs/autoagent/discarded/N`, and
/// the branch put back on the incumbent.
fn discard(harness: &Path, n: u32, line: &str) -> String {
    let c = commit_line(harness, line, &format!("exp {n}"));
    git(
        harness,
        &[
            "update-ref",
            &format!("refs/autoagent/discarded/{n}"),
            "HEAD",
        ],
    );
    git(harness, &["reset", "-q", "--hard", "HEAD~1"]);
    c
}

struct Exp {
    status: Status,
    passed: u32,
    holdout: Option<f64>,
    description: &'static str,
    /// The line the experiment adds to the harness (none for a crash).
    line: Option<&'static str>,
}

const TRIALS: u32 = 10;

fn experiments() -> Vec<Exp> {
    let e = |status, passed, holdout, description, line| Exp {
        status,
        passed,
        holdout,
        description,
        line,
    };
    use Status::{Crash, Discard, Keep};
    vec![
        e(Keep, 4, Some(0.35), "baseline", Some("model = \"m\"")),
        e(
            Discard,
            3,
            None,
            "shorter system prompt",
            Some("prompt = \"short\""),
        ),
        e(Crash, 0, None, "broken tool schema | oops", None),
        e(
            Keep,
            6,
            Some(0.5),
            "retry the shell tool on timeouts",
            Some("retry_on_timeout = true"),
        ),
        e(
            Discard,
            5,
            None,
            "lower temperature",
            Some("temperature = 0.1"),
        ),
        e(
            Keep,
            7,
            None,
            "hint: use grep before reading whole files",
            Some("tool_hint = \"grep first\""),
        ),
        e(
            Discard,
            6,
            None,
            "a very long description that goes on and on about a change to the planning step of the agent",
            Some("plan = \"long\""),
        ),
        e(
            Keep,
            8,
            Some(0.7),
            "plan before acting",
            Some("plan_first = true"),
        ),
    ]
}

fn row(n: u32, e: &Exp, commit: String) -> Row {
    let score = f64::from(e.passed) / f64::from(TRIALS);
    Row {
        commit,
        avg_score: score,
        passed: e.passed,
        trials: TRIALS,
        task_scores: vec![
            ("hello".into(), e.passed.min(5), 5),
            ("regex".into(), e.passed.saturating_sub(5), 5),
        ],
        cost_usd: if n == 4 {
            None
        } else {
            Some(f64::from(25 + n) / 100.0)
        },
        status: e.status,
        description: e.description.into(),
        holdout_score: e.holdout,
        harness_size: 1000 + u64::from(n) * 10,
        meta_cost_usd: if n == 4 { None } else { Some(0.05) },
        task_cost_usd: if n == 4 {
            None
        } else {
            Some(f64::from(20 + n) / 100.0)
        },
        duration_s: 60.0 + f64::from(n),
        job_dir: format!("jobs/exp-{n:04}"),
        policy: "sequential z>=1.50".into(),
        looks: 2,
        attempts: u64::from(TRIALS),
    }
}

/// A workspace with a harness repository whose commits are the ledger's, and its ledger.
fn workspace(dir: &Path) -> Ledger {
    let harness = dir.join("harness");
    std::fs::create_dir_all(&harness).unwrap();
    git(&harness, &["init", "-q"]);
    let mut ledger = Ledger::load(&dir.join("results.tsv")).unwrap();
    for (n, e) in experiments().iter().enumerate() {
        let n = n as u32;
        let commit = match (e.status, e.line) {
            (Status::Keep, Some(line)) => commit_line(&harness, line, e.description),
            (Status::Discard, Some(line)) => discard(&harness, n, line),
            _ => String::new(),
        };
        ledger.append(row(n, e, commit)).unwrap();
    }
    ledger
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let p = Pixmap::decode_png(bytes).unwrap();
    (p.width(), p.height())
}

/// The PNG's RGB pixels (the plot is opaque: every alpha is 255).
fn png_pixels(bytes: &[u8]) -> Vec<[u8; 3]> {
    let p = Pixmap::decode_png(bytes).unwrap();
    p.pixels()
        .iter()
        .map(|c| {
            assert_eq!(c.alpha(), 255);
            [c.red(), c.green(), c.blue()]
        })
        .collect()
}

/// `name="value"` attributes of every element with `class="point …"`, in document order.
fn svg_points(svg: &str) -> Vec<BTreeMap<String, String>> {
    svg.lines()
        .filter(|l| l.contains(r#"class="point "#))
        .map(|l| {
            let mut attrs = BTreeMap::new();
            let mut rest = l;
            while let Some(i) = rest.find(" data-") {
                rest = &rest[i + 6..];
                let (name, after) = rest.split_once("=\"").unwrap();
                let (value, after) = after.split_once('"').unwrap();
                attrs.insert(name.to_owned(), value.to_owned());
                rest = after;
            }
            attrs
        })
        .collect()
}

/// resvg's options with DejaVu Sans as the only font, built here from the `dejavu` crate
/// independently of the report crate's own setup.
fn bundled_font_options() -> resvg::usvg::Options<'static> {
    let mut db = resvg::usvg::fontdb::Database::new();
    db.load_font_data(dejavu::sans::regular().to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    resvg::usvg::Options {
        fontdb: std::sync::Arc::new(db),
        font_family: "DejaVu Sans".to_owned(),
        ..resvg::usvg::Options::default()
    }
}

#[tokio::test]
async fn report_writes_the_plots_and_the_kept_diffs_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = workspace(dir.path());
    let options = ReportOptions {
        size: (900, 450),
        ..ReportOptions::default()
    };
    let summary = write_report(dir.path(), &options).await.unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);

    // The data: one point per row, the kept rows as the running best, their holdout scores.
    let loaded = Ledger::load(&dir.path().join("results.tsv")).unwrap();
    assert_eq!(loaded.rows, ledger.rows);
    let data: PlotData = plot_data(&loaded);
    assert_eq!(summary.plot, data);
    let points: Vec<(u32, f64, Status)> = data
        .points
        .iter()
        .map(|p| (p.experiment, p.score, p.status))
        .collect();
    let expected: Vec<(u32, f64, Status)> = ledger
        .rows
        .iter()
        .map(|r| (r.experiment().unwrap().0, r.avg_score, r.status))
        .collect();
    assert_eq!(points, expected);
    assert_eq!(
        data.running_best,
        vec![(0, 0.4), (3, 0.6), (5, 0.7), (7, 0.8)]
    );
    assert_eq!(data.holdout, vec![(0, 0.35), (3, 0.5), (7, 0.7)]);
    assert_eq!(data.kept(), 4);
    assert_eq!(data.count(Status::Crash), 1);

    // The PNG: the size asked for, and the series drawn in their colours.
    assert_eq!(summary.png, dir.path().join("progress.png"));
    let png = std::fs::read(&summary.png).unwrap();
    assert_eq!(png_size(&png), (900, 450));
    let pixels = png_pixels(&png);
    assert_eq!(pixels.len(), 900 * 450);
    let has = |rgb: [u8; 3]| pixels.contains(&rgb);
    assert!(has([44, 160, 44]), "no kept-green pixel");
    assert!(has([214, 39, 40]), "no crash-red pixel");
    assert!(has([255, 127, 14]), "no holdout-orange pixel");
    // Text is drawn too: dark ink pixels outside the data colours.
    assert!(has([34, 34, 34]), "no text pixel");

    // The PNG is the SVG, rendered by resvg with the bundled font: the same size, the same
    // pixels, so the two images cannot drift.
    let svg_text = std::fs::read_to_string(dir.path().join("progress.svg")).unwrap();
    let tree = resvg::usvg::Tree::from_str(&svg_text, &bundled_font_options()).unwrap();
    let mut expected = Pixmap::new(900, 450).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::identity(),
        &mut expected.as_mut(),
    );
    let decoded = Pixmap::decode_png(&png).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (expected.width(), expected.height())
    );
    assert!(
        decoded.data() == expected.data(),
        "progress.png differs from the rendering of progress.svg"
    );

    // The SVG: one marker per ledger row, carrying that row's values.
    let svg = std::fs::read_to_string(dir.path().join("progress.svg")).unwrap();
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"450\"")
    );
    assert!(svg.contains(">autoagent: 8 experiments, 4 kept</text>"));
    assert!(svg.contains(">avg score (train)</text>"));
    let markers = svg_points(&svg);
    assert_eq!(markers.len(), ledger.rows.len(), "{svg}");
    let mut from_svg: Vec<(u32, f64, String, String)> = markers
        .iter()
        .map(|m| {
            (
                m["experiment"].parse().unwrap(),
                m["score"].parse().unwrap(),
                m["status"].clone(),
                m["commit"].clone(),
            )
        })
        .collect();
    from_svg.sort_by_key(|m| m.0);
    let from_ledger: Vec<(u32, f64, String, String)> = ledger
        .rows
        .iter()
        .map(|r| {
            (
                r.experiment().unwrap().0,
                r.avg_score,
                r.status.to_string(),
                r.commit.clone(),
            )
        })
        .collect();
    assert_eq!(from_svg, from_ledger);
    assert_eq!(svg.matches(r#"class="holdout""#).count(), 3);
    assert_eq!(svg.matches(r#"class="label""#).count(), 4);
    // The labels are the kept experiments' descriptions, cut to fit.
    let kept_descriptions: Vec<&str> = experiments()
        .iter()
        .filter(|e| e.status == Status::Keep)
        .map(|e| e.description)
        .collect();
    for line in svg.lines().filter(|l| l.contains(r#"class="label""#)) {
        let text = &line[line.find('>').unwrap() + 1..line.rfind("</text>").unwrap()];
        let text = text.strip_suffix('…').unwrap_or(text);
        assert!(
            kept_descriptions.iter().any(|d| d.starts_with(text)) && text.len() >= 4,
            "{line}"
        );
    }
    assert!(svg.contains(">baseline</text>"));
    assert!(svg.contains(r#"class="running-best""#));
    assert!(svg.contains(r#"class="holdout-line""#));

    // The table printed is the ledger's.
    assert_eq!(summary.table, render_table(&ledger));

    // report.md: the summary, and each kept change with its gain and its diff.
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("![progress](progress.png)"), "{md}");
    assert!(
        md.contains("**Experiments:** 8: 4 kept, 3 discarded, 1 crashed"),
        "{md}"
    );
    assert!(md.contains("score 0.400, passed 4/10"), "{md}");
    assert!(
        md.contains("score 0.800, passed 8/10 (+0.400 score, +4 passed over the baseline)"),
        "{md}"
    );
    assert!(
        md.contains("**Holdout:** best train score 0.800 vs holdout 0.700 (gap +0.100)"),
        "{md}"
    );
    assert!(md.contains("prices unknown for 1 experiment"), "{md}");
    assert!(md.contains("| 2 |  | crash | 0/10 |"), "{md}");
    assert!(md.contains("broken tool schema \\| oops"), "{md}");
    let section = |heading: &str| -> String {
        let start = md
            .find(heading)
            .unwrap_or_else(|| panic!("no {heading:?} in {md}"));
        let rest = &md[start + heading.len()..];
        rest[..rest.find("\n### ").unwrap_or(rest.len())].to_owned()
    };
    let kept = [
        (
            "### exp-3: retry the shell tool on timeouts (+2 passed, score 0.400 → 0.600)",
            "+retry_on_timeout = true",
        ),
        (
            "### exp-5: hint: use grep before reading whole files (+1 passed, score 0.600 → 0.700)",
            "+tool_hint = \"grep first\"",
        ),
        (
            "### exp-7: plan before acting (+1 passed, score 0.700 → 0.800)",
            "+plan_first = true",
        ),
    ];
    for (heading, added) in kept {
        let s = section(heading);
        assert!(
            s.contains("```diff\ndiff --git a/agent.toml b/agent.toml\n"),
            "{s}"
        );
        assert!(s.contains(&format!("\n{added}\n")), "{heading}: {s}");
        // Only this change: not the previous kept ones, not the discarded ones.
        let added_lines = s
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        assert_eq!(added_lines, 1, "{s}");
        assert!(
            !s.contains("temperature") && !s.contains("prompt = \"short\""),
            "{s}"
        );
    }
    assert!(section("### exp-7: plan before acting").contains("holdout 0.700"));
    // No section for the baseline, discards or the crash.
    assert_eq!(md.matches("\n### exp-").count(), 3, "{md}");
}

#[tokio::test]
async fn without_a_harness_repository_the_report_says_the_diffs_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::load(&dir.path().join("results.tsv")).unwrap();
    for (n, e) in experiments().iter().enumerate() {
        ledger
            .append(row(n as u32, e, format!("{:07x}", 0xabc000 + n)))
            .unwrap();
    }
    let summary = write_report(dir.path(), &ReportOptions::default())
        .await
        .unwrap();
    assert_eq!(summary.warnings.len(), 3, "{:?}", summary.warnings);
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    assert_eq!(
        md.matches("_The diff is not available: ").count(),
        3,
        "{md}"
    );
    assert!(md.contains("is not a git repository"), "{md}");
    let png = std::fs::read(&summary.png).unwrap();
    assert_eq!(png_size(&png), report::DEFAULT_SIZE);
}

#[tokio::test]
async fn report_md_lists_the_suspect_trials_with_their_evidence_and_no_honest_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::load(&dir.path().join("results.tsv")).unwrap();
    for (n, e) in experiments().iter().take(2).enumerate() {
        ledger
            .append(row(n as u32, e, format!("{:07x}", 0xabc000 + n)))
            .unwrap();
    }
    let trial = |job: &str, name: &str, result: serde_json::Value| {
        let d = dir.path().join("jobs").join(job).join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("result.json"), result.to_string()).unwrap();
    };
    trial(
        "exp-0001",
        "pytest-gate__a1",
        serde_json::json!({
            "task_name": "pytest-gate",
            "verifier_result": {"rewards": {"reward": 1.0}},
            "integrity": "suspect",
            "integrity_evidence": ["wrote /logs/verifier/reward.txt", "`pytest` appeared on PATH: /usr/local/bin/pytest | x"]
        }),
    );
    trial(
        "exp-0001",
        "hello-file__b2",
        serde_json::json!({"task_name": "hello-file", "verifier_result": {"rewards": {"reward": 1.0}}}),
    );
    let summary = write_report(dir.path(), &ReportOptions::default())
        .await
        .unwrap();
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    let section = md
        .split("\n## Suspect trials\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_else(|| panic!("no suspect section:\n{md}"));
    assert!(
        section.contains("1 trial touched what the verifier relies on"),
        "{section}"
    );
    assert!(
        section.contains(
            "| exp-0001 | pytest-gate__a1 | pytest-gate | 1.000 | wrote /logs/verifier/reward.txt; `pytest` appeared on PATH: /usr/local/bin/pytest \\| x |"
        ),
        "{section}"
    );
    assert!(!section.contains("hello-file"), "{section}");

    // Without suspect trials there is no section.
    std::fs::remove_dir_all(dir.path().join("jobs/exp-0001/pytest-gate__a1")).unwrap();
    write_report(dir.path(), &ReportOptions::default())
        .await
        .unwrap();
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    assert!(!md.contains("Suspect trials"), "{md}");
}

#[tokio::test]
async fn a_missing_empty_or_malformed_ledger_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("results.tsv");

    let err = write_report(dir.path(), &ReportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::NoLedger { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    std::fs::write(
        &path,
        format!("{}\n", autoagent_optimize::ledger::HEADER.join("\t")),
    )
    .unwrap();
    let err = write_report(dir.path(), &ReportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::EmptyLedger { .. }), "{err:?}");

    let good = row(0, &experiments()[0], "abc1234".into()).to_tsv();
    let bad = good.replacen("\t0.400000\t", "\tforty\t", 1);
    std::fs::write(
        &path,
        format!(
            "{}\n{good}\n{bad}\n{good}\n",
            autoagent_optimize::ledger::HEADER.join("\t")
        ),
    )
    .unwrap();
    let err = write_report(dir.path(), &ReportOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:3: column avg_score", path.display())),
        "{msg}"
    );
    assert!(!dir.path().join("report.md").exists());

    let err = write_report(
        dir.path(),
        &ReportOptions {
            size: (100, 50),
            ..ReportOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ReportError::Size {
                width: 100,
                height: 50
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_table_shows_every_experiment_and_the_gains_of_the_kept_ones() {
    let rows = experiments()
        .iter()
        .enumerate()
        .map(|(n, e)| {
            let commit = if e.status == Status::Crash {
                String::new()
            } else {
                format!("{:07x}", 0xabc000 + n)
            };
            row(n as u32, e, commit)
        })
        .collect();
    let ledger = Ledger {
        path: "results.tsv".into(),
        rows,
    };
    insta::assert_snapshot!("table", render_table(&ledger));
}
