//! `autoagent init` and `autoagent optimize`: the main job.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use autoagent_eval::JobObserver;
use autoagent_optimize::{OptimizeError, Options, Reporter, Workspace};
use autoagent_settings::{AttemptsDefault, EvalFlags, Holdout, ModelFlags, resolve_eval};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Attempts per task per evaluation: the holdout's, and `greedy`'s k.
    #[arg(short = 'k', long)]
    pub attempts: Option<u32>,
    /// How a proposal is kept or discarded: `sequential` (per-task comparison in looks, the
    /// default), `greedy` (k attempts on every task against the stored total) or `staged`.
    #[arg(long, value_enum)]
    pub accept: Option<AcceptPolicy>,
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
    #[command(flatten)]
    pub docker_hosts: crate::sandbox::DockerHostArgs,
    /// Run every trial, reusing none from the trial cache (`.autoagent/cache`).
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AcceptPolicy {
    Greedy,
    Sequential,
    Staged,
}

impl AcceptPolicy {
    fn kind(self) -> autoagent_settings::PolicyKind {
        match self {
            Self::Greedy => autoagent_settings::PolicyKind::Greedy,
            Self::Sequential => autoagent_settings::PolicyKind::Sequential,
            Self::Staged => autoagent_settings::PolicyKind::Staged,
        }
    }
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

impl OptimizeArgs {
    pub(crate) fn model_flags(&self) -> ModelFlags {
        ModelFlags {
            model: self.model.clone(),
            meta_model: self.meta_model.clone(),
            base_url: self.base_url.clone(),
        }
    }

    fn eval_flags(&self) -> EvalFlags {
        EvalFlags {
            concurrency: self.concurrency,
            attempts: self.attempts,
            sandbox: self.sandbox.map(|s| s.as_str().to_owned()),
            docker_hosts: self.docker_hosts.docker_hosts.clone(),
            ..EvalFlags::default()
        }
    }
}

pub async fn run(args: OptimizeArgs) -> anyhow::Result<ExitCode> {
    let mut ws = Workspace::open(&args.workspace)?;
    let eval = resolve_eval(
        &args.eval_flags(),
        Some(&ws.config),
        AttemptsDefault::Workspace,
    );
    let c = &mut ws.config;
    c.eval.concurrency = eval.concurrency;
    c.eval.attempts = eval.attempts;
    c.eval.sandbox = eval.sandbox;
    c.sandbox.docker_hosts = eval.docker_hosts;
    if let Some(p) = args.accept {
        c.accept.policy = p.kind();
    }
    if let Some(k) = args.attempts {
        c.accept.k = k;
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
    let env = crate::settings::env_in(&ws.root)?;
    let harness = crate::harness::load(&ws.harness_dir())?;
    let models =
        crate::settings::models(&args.model_flags(), &env, Some(&ws.config), Some(&harness))?;
    let backend = backend(
        SandboxKind::from_config(ws.config.eval.sandbox.as_deref()),
        &ws.config.sandbox.docker_hosts,
        &ws.config.sandbox.kubernetes,
    )
    .await?;
    let opts = Options {
        task_model: models.task,
        meta_model: models.meta,
        env,
        backend,
        no_cache: args.no_cache,
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
    let cancel = crate::interrupt::on_ctrl_c();
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
