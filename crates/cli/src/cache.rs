//! `autoagent cache list` and `autoagent cache prune`: the workspace's trial cache
//! (`<workspace>/.autoagent/cache`, see `autoagent_eval::cache`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use autoagent_eval::TrialCache;
use autoagent_optimize::Workspace;

#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Every cached trial: task, attempt, harness, model, original cost, size, age; and the
    /// dirs that are not usable entries.
    List {
        /// The workspace folder.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
    },
    /// Remove entries older than `--older-than`, or all of them; unusable dirs always go.
    Prune {
        /// The workspace folder.
        #[arg(long, default_value = ".")]
        workspace: PathBuf,
        /// An age: a number and a unit, s, m, h, d or w (`7d`, `12h`).
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
        /// Remove every entry.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(args: CacheArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CacheCommand::List { workspace } => {
            let dir = Workspace::open(&workspace)?.cache_dir();
            if !dir.is_dir() {
                println!("trial cache {}: empty", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            let cache = TrialCache::open(&dir)?;
            print!("{}", list_text(&cache)?);
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Prune {
            workspace,
            older_than,
            all,
        } => {
            let dir = Workspace::open(&workspace)?.cache_dir();
            if !dir.is_dir() {
                println!("trial cache {}: empty, nothing to prune", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            let r = TrialCache::open(&dir)?.prune(older_than, all)?;
            println!(
                "removed {} {} and {} unusable dir(s), freed {}; kept {} {}",
                r.removed_entries,
                plural(r.removed_entries, "entry", "entries"),
                r.removed_broken,
                size(r.freed_bytes),
                r.kept_entries,
                plural(r.kept_entries, "entry", "entries"),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list_text(cache: &TrialCache) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let listing = cache.list()?;
    let mut out = String::new();
    let total: u64 = listing.entries.iter().map(|e| e.size_bytes).sum();
    writeln!(out, "trial cache {}", cache.dir().display())?;
    if !listing.entries.is_empty() {
        let rows: Vec<[String; 8]> = listing
            .entries
            .iter()
            .map(|e| {
                let p = &e.info.parts;
                [
                    short(&e.info.key, 12),
                    p.task_name.clone(),
                    p.attempt.to_string(),
                    short(&p.harness_tree, 12),
                    clip(&p.model_key, 40),
                    e.info
                        .cost_usd
                        .map_or_else(|| "?".to_owned(), |c| format!("${c:.4}")),
                    size(e.size_bytes),
                    age(e.age),
                ]
            })
            .collect();
        let header = [
            "KEY", "TASK", "ATTEMPT", "HARNESS", "MODEL", "COST", "SIZE", "AGE",
        ]
        .map(str::to_owned);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(out, "{}", cells.join("  ").trim_end())?;
        }
    }
    writeln!(
        out,
        "{} {}, {}",
        listing.entries.len(),
        plural(listing.entries.len(), "entry", "entries"),
        size(total)
    )?;
    if !listing.broken.is_empty() {
        writeln!(
            out,
            "{} unusable dir(s), never a hit (`autoagent cache prune` removes them):",
            listing.broken.len()
        )?;
        for b in &listing.broken {
            let rel = b.path.strip_prefix(cache.dir()).unwrap_or(&b.path);
            writeln!(
                out,
                "  {}: {} ({}, {})",
                rel.display(),
                b.reason,
                size(b.size_bytes),
                age(b.age)
            )?;
        }
    }
    Ok(out)
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

fn short(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", short(s, n - 1))
    }
}

fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / KIB / KIB)
    } else {
        format!("{:.1} GiB", b / KIB / KIB / KIB)
    }
}

fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// `7d`, `12h`, `30m`, `45s`, `2w`.
fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}`: add a unit: s, m, h, d or w (`7d`)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("`{s}`: expected a number and a unit (`7d`)"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use s, m, h, d or w")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}`: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        assert!(parse_age("7").is_err());
        assert!(parse_age("d").is_err());
        assert!(parse_age("7y").is_err());
        assert!(parse_age("-1d").is_err());
    }

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(age(Duration::from_secs(59)), "59s");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(8 * 86_400)), "8d");
    }
}
