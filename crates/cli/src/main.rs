//! `autoagent`: the command-line front end. Parses flags, picks the sandbox backend, draws
//! progress, prints results. The work itself is in the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cache;
mod eval;
mod harness;
mod interrupt;
mod models;
mod optimize;
mod progress;
mod report;
mod run;
mod sandbox;
mod settings;
mod view;

#[derive(Parser)]
#[command(name = "autoagent", version, about = "Engineers agent harnesses by itself", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an agent on Harbor tasks and score it (Harbor-compatible job folders).
    Eval(eval::EvalArgs),
    /// Create a workspace: autoagent.toml, program.md, harness/ (a git repo), tasks/.
    Init(optimize::InitArgs),
    /// The main job: improve the harness, experiment by experiment, until a limit.
    Optimize(optimize::OptimizeArgs),
    /// Print the ledger, write progress.png/.svg and report.md.
    Report(report::ReportArgs),
    /// Run the harness once on a new instruction and print its answer.
    Run(run::RunArgs),
    /// Check a harness dir.
    Harness(harness::HarnessArgs),
    /// A live web dashboard of a run (or of a jobs dir): `autoagent view WORKSPACE`.
    View(view::ViewArgs),
    /// The trial cache: `autoagent cache list`, `autoagent cache prune [--older-than 7d] [--all]`.
    Cache(cache::CacheArgs),
    /// Check that a model answers: `autoagent models check --model anthropic/claude-sonnet-4-5`.
    Models(models::ModelsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(
                autoagent_settings::env_vars::AUTOAGENT_LOG,
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Eval(args) => eval::run(args).await,
            Command::Init(args) => optimize::init(args).await,
            Command::Optimize(args) => optimize::run(args).await,
            Command::Report(args) => report::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Harness(args) => harness::run(args),
            Command::Cache(args) => cache::run(args),
            Command::View(args) => view::run(args).await,
            Command::Models(args) => models::run(args).await.map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
