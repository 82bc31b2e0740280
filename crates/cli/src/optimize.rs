//! `autoagent init` and `autoagent optimize`: the main job.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use autoagent_eval::JobObserver;
use autoagent_llm::{EnvSource, ModelConfig};
use autoagent_optimize::config::Holdout;
use autoagent_optimize::{OptimizeError, Options, Reporter, Workspace};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::sandbox::{SandboxKind, backend};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to create.
    pub dir: PathBuf,
}

pub async fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let ws = autoagent_optimize::init(&args.dir).await?;
    println!("created {}", ws.root.display());
    println!("  autoagent.toml   models, sandbox, concurrency, attempts, budgets, holdout");
    println!("  program.md       the directive the meta-agent follows: edit it for your domain");
    println!(
        "  harness/         the baseline harness (a git repository: one commit per experiment)"
    );
    println!("  tasks/           example tasks in Harbor format: replace them with yours");
    println!(
        "next: cd {} && autoagent optimize --hours 8",
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct OptimizeArgs {
    /// The workspace folder.
    #[arg(long, default_value = ".")]
    pub workspace: PathBuf,
    /// The task agent's model (`provider/model`).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// The meta-agent's model (default: the task model).
    #[arg(long)]
    pub meta_model: Option<String>,
    /// Base URL of the task model's provider (a gateway or a local server).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Trials at once.
    #[arg(short = 'n', long)]
    pub concurrency: Option<usize>,
    /// Attempts per task per evaluation.
    #[arg(short = 'k', long)]
    pub attempts: Option<u32>,
    /// Stop once this many experiments follow the baseline.
    #[arg(long)]
    pub max_iterations: Option<u32>,
    #[arg(long)]
    pub hours: Option<f64>,
    /// Stop once task and meta spend reach this.
    #[arg(long)]
    pub budget_usd: Option<f64>,
    /// A fraction of the tasks (0.2) or task names (a,b,c) set aside to measure overfitting.
    #[arg(long)]
    pub holdout: Option<String>,
    /// `docker` or `local`.
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxKind>,
}

/// Status lines, the evaluation bar and the meta-agent's spinner.
struct CliReporter {
    bar: ProgressBar,
    observer: Arc<crate::progress::JobProgress>,
}

impl Reporter for CliReporter {
    fn line(&self, msg: &str) {
        self.bar
            .println(format!("{} {msg}", chrono::Local::now().format("%H:%M:%S")));
    }
    fn job_observer(&self) -> Arc<dyn JobObserver> {
        self.observer.clone()
    }
    fn meta_step(&self, experiment: autoagent_optimize::ExperimentId, calls: u64, tokens: u64) {
        self.bar.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        self.bar.set_message(format!(
            "{experiment}: meta-agent thinking: {calls} model calls, {}k tokens",
            tokens / 1000
        ));
    }
}

pub async fn run(args: OptimizeArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(&args.workspace)?;
    let c = &mut ws.config;
    if let Some(n) = args.concurrency {
        c.eval.concurrency = n.max(1);
    }
    if let Some(k) = args.attempts {
        c.eval.attempts = k.max(1);
    }
    if args.max_iterations.is_some() {
        c.optimize.max_iterations = args.max_iterations;
    }
    if args.hours.is_some() {
        c.optimize.hours = args.hours;
    }
    if args.budget_usd.is_some() {
        c.optimize.budget_usd = args.budget_usd;
    }
    if let Some(h) = &args.holdout {
        c.optimize.holdout = match h.parse::<f64>() {
            Ok(f) if (0.0..1.0).contains(&f) => Holdout::Fraction(f),
            Ok(f) => anyhow::bail!("--holdout: a fraction must be in [0, 1), found {f}"),
            Err(_) => Holdout::Tasks(
                h.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect(),
            ),
        };
    }
    let env = EnvSource::process_with_dotenv(&ws.root.join(".env")).context("reading .env")?;
    let harness = crate::harness::load(&ws.harness_dir())?;
    let task = args
        .model
        .clone()
        .or_else(|| ws.config.models.task.clone())
        .or_else(|| harness.config.agent.model.clone())
        .or_else(|| env.get("AUTOAGENT_MODEL"))
        .context("no task model: pass --model or set [models].task in autoagent.toml")?;
    let meta = args
        .meta_model
        .clone()
        .or_else(|| ws.config.models.meta.clone())
        .unwrap_or_else(|| task.clone());
    let base_url = args
        .base_url
        .clone()
        .or_else(|| ws.config.models.base_url.clone());
    let same_provider = task.split('/').next() == meta.split('/').next();
    let meta_base_url = ws.config.models.meta_base_url.clone().or_else(|| {
        if same_provider {
            base_url.clone()
        } else {
            None
        }
    });
    let prices = ws.config.models.prices.clone();
    let task_model = ModelConfig {
        model: task,
        base_url,
        api_key_env: ws.config.models.api_key_env.clone(),
        prices: prices.clone(),
        stream: ws.config.models.stream,
        ..ModelConfig::default()
    };
    let meta_model = ModelConfig {
        model: meta,
        base_url: meta_base_url,
        prices,
        stream: ws.config.models.stream,
        ..ModelConfig::default()
    };
    let sandbox = args
        .sandbox
        .or(SandboxKind::from_config(ws.config.eval.sandbox.as_deref()));
    let backend = backend(sandbox).await?;
    let opts = Options {
        task_model,
        meta_model,
        env,
        backend,
    };
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    let reporter = CliReporter {
        bar: bar.clone(),
        observer: Arc::new(crate::progress::JobProgress::new(
            bar.clone(),
            "evaluating: ",
        )),
    };
    reporter.line(&format!(
        "optimizing {} (task model {}, meta model {}); log: {}",
        ws.root.display(),
        opts.task_model.model,
        opts.meta_model.model,
        ws.state_dir().join("optimize.log").display()
    ));
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
            // A second Ctrl-C does not wait for the cleanup.
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let result = autoagent_optimize::optimize(&ws, &opts, &reporter, cancel).await;
    bar.finish_and_clear();
    match result {
        Ok(reason) => {
            println!("stopped: {reason:?}. `autoagent report` shows the results.");
            Ok(ExitCode::SUCCESS)
        }
        Err(OptimizeError::Cancelled) => {
            eprintln!("interrupted: run `autoagent optimize` again to resume where it stopped");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}
