//! `autoagent report`: the ledger as a table, the progress plot (`progress.png`, `progress.svg`)
//! and `report.md` with the diff and gain of every kept change.

use std::path::PathBuf;
use std::process::ExitCode;

use autoagent_report::{self as report, ReportOptions};

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The workspace folder (the one with results.tsv and harness/).
    #[arg(long, default_value = ".")]
    pub workspace: PathBuf,
    /// Width of progress.png and progress.svg, in pixels.
    #[arg(long, default_value_t = report::DEFAULT_SIZE.0,
          value_parser = clap::value_parser!(u32).range(i64::from(report::MIN_SIDE)..=i64::from(report::MAX_SIDE)))]
    pub width: u32,
    /// Height of progress.png and progress.svg, in pixels.
    #[arg(long, default_value_t = report::DEFAULT_SIZE.1,
          value_parser = clap::value_parser!(u32).range(i64::from(report::MIN_SIDE)..=i64::from(report::MAX_SIDE)))]
    pub height: u32,
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let options = ReportOptions {
        size: (args.width, args.height),
        ..ReportOptions::default()
    };
    let summary = report::write_report(&args.workspace, &options).await?;
    print!("{}", summary.table);
    println!();
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    for path in [&summary.png, &summary.svg, &summary.markdown] {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
