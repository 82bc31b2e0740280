//! `autoagent eval`: run an agent on tasks, show progress, print the results table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use autoagent_eval::job::{JobConfig, JobOutcome};
use autoagent_eval::{NopAgent, OracleAgent, TrialAgent};
use autoagent_harbor::TrialResult;
use autoagent_settings::{AttemptsDefault, EvalFlags, resolve_eval};
use indicatif::ProgressBar;

use crate::sandbox::{SandboxKind, backend};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AgentKind {
    /// The task's reference solution (solution/solve.sh).
    Oracle,
    /// Does nothing: the tests should fail.
    Nop,
    /// The task agent run from a harness dir (`--harness`), with `--model`.
    Harness,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A task dir or a dataset dir (a dir of task dirs). Default: `[eval].tasks` of
    /// ./autoagent.toml, else `tasks`.
    #[arg(
        short = 'p',
        long = "path",
        visible_alias = "tasks",
        conflicts_with = "dataset"
    )]
    pub path: Option<PathBuf>,
    /// A registry dataset, `NAME@VERSION` (or `NAME` when it has one version): its tasks are
    /// cloned at their commits into the user's cache and run like a local dataset. Default:
    /// `[tasks] dataset` of ./autoagent.toml.
    #[arg(short = 'd', long = "dataset")]
    pub dataset: Option<String>,
    /// The Harbor `registry.json` that `-d` resolves in: a path or a URL. Default: `[tasks]
    /// registry` of ./autoagent.toml.
    #[arg(long)]
    pub registry: Option<String>,
    /// The agent to run.
    #[arg(short = 'a', long = "agent", value_enum, default_value = "oracle")]
    pub agent: AgentKind,
    /// Trials run at once. Default: `[eval].concurrency` of ./autoagent.toml, else 4.
    #[arg(short = 'n', long = "n-concurrent")]
    pub n_concurrent: Option<usize>,
    /// Trials per task (1 unless given, also in a workspace).
    #[arg(short = 'k', long = "n-attempts")]
    pub n_attempts: Option<u32>,
    /// Where job folders go.
    #[arg(short = 'o', long = "jobs-dir", default_value = "jobs")]
    pub jobs_dir: PathBuf,
    /// The job's folder name; running again with the same name resumes the job.
    #[arg(long)]
    pub job_name: Option<String>,
    /// Only tasks whose name matches (a glob; repeatable).
    #[arg(short = 'i', long = "include-task-name")]
    pub include: Vec<String>,
    /// Leave out tasks whose name matches (a glob; repeatable).
    #[arg(short = 'x', long = "exclude-task-name")]
    pub exclude: Vec<String>,
    /// Where trials run. Default: `[eval].sandbox` of ./autoagent.toml, else docker when a
    /// daemon answers, else local.
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxKind>,
    /// Retries of a trial that failed for an infrastructure reason. Default:
    /// `[eval].max_retries` of ./autoagent.toml, else 0.
    #[arg(short = 'r', long)]
    pub max_retries: Option<u32>,
    #[command(flatten)]
    pub docker_hosts: crate::sandbox::DockerHostArgs,
    /// Rebuild task images even when cached or prebuilt.
    #[arg(long)]
    pub force_build: bool,
    /// Scales every task timeout. Default: `[eval].timeout_multiplier` of ./autoagent.toml, else 1.
    #[arg(long)]
    pub timeout_multiplier: Option<f64>,
    /// Print the job's result.json instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model: crate::settings::ModelArgs,
    /// The harness dir, for `-a harness`.
    #[arg(long, default_value = "harness")]
    pub harness: PathBuf,
}

impl EvalArgs {
    pub fn eval_flags(&self) -> EvalFlags {
        EvalFlags {
            tasks: self.path.clone(),
            concurrency: self.n_concurrent,
            attempts: self.n_attempts,
            sandbox: self.sandbox.map(|s| s.as_str().to_owned()),
            max_retries: self.max_retries,
            timeout_multiplier: self.timeout_multiplier,
            docker_hosts: self.docker_hosts.docker_hosts.clone(),
        }
    }
}

pub async fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    // Inside a workspace, its settings are the defaults (k stays Harbor's 1 unless given).
    let ws = crate::settings::current_workspace()?;
    let settings = resolve_eval(&args.eval_flags(), ws.as_ref(), AttemptsDefault::One);
    let mut model_name = None;
    let mut agent_kwargs = std::collections::BTreeMap::new();
    let agent: Arc<dyn TrialAgent> = match args.agent {
        AgentKind::Oracle => Arc::new(OracleAgent),
        AgentKind::Nop => Arc::new(NopAgent),
        AgentKind::Harness => {
            let harness = crate::harness::load(&args.harness)?;
            let env = crate::settings::env_in(Path::new("."))?;
            let cfg =
                crate::settings::models(&args.model.flags(), &env, ws.as_ref(), Some(&harness))?
                    .task;
            model_name = Some(cfg.model.clone());
            agent_kwargs.insert("harness".to_owned(), harness.dir.display().to_string());
            // Resuming after the harness changed would mix two harnesses in one job.
            agent_kwargs.insert(
                "harness_digest".to_owned(),
                autoagent_sandbox::dir_digest(&harness.dir).unwrap_or_default(),
            );
            Arc::new(autoagent_eval::HarnessAgent::new(
                Arc::new(harness),
                cfg,
                env,
            ))
        }
    };
    let m = settings.timeout_multiplier;
    if !(m.is_finite() && m > 0.0 && m <= 1000.0) {
        anyhow::bail!("--timeout-multiplier: expected a number above 0 (at most 1000), found {m}");
    }
    let dataset = args.dataset.clone().or_else(|| {
        args.path
            .is_none()
            .then(|| ws.as_ref().and_then(|w| w.tasks.dataset.clone()))
            .flatten()
    });
    let path = match dataset {
        None => settings.tasks.clone(),
        Some(name) => {
            let registry = args
                .registry
                .clone()
                .or_else(|| ws.as_ref().and_then(|w| w.tasks.registry.clone()))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "-d {name}: no registry to resolve it in; give --registry PATH|URL or `[tasks] registry` in autoagent.toml"
                    )
                })?;
            let reg = autoagent_eval::registry::load_registry(&registry).await?;
            let spec = reg.find(&name)?;
            let cache = autoagent_eval::registry::default_cache_dir();
            eprintln!(
                "dataset {}@{}: {} task(s) from {registry} (cache {})",
                spec.name,
                spec.version,
                spec.tasks.len(),
                cache.display()
            );
            autoagent_eval::registry::materialize(&reg, spec, &cache).await?
        }
    };
    let backend = backend(
        SandboxKind::from_config(settings.sandbox.as_deref()),
        &settings.docker_hosts,
        &settings.kubernetes,
    )
    .await?;
    let config = JobConfig {
        job_name: args.job_name.clone().unwrap_or_else(|| {
            chrono::Local::now()
                .format("%Y-%m-%d__%H-%M-%S")
                .to_string()
        }),
        jobs_dir: args.jobs_dir.clone(),
        path: std::path::absolute(&path).unwrap_or(path.clone()),
        agent: agent.name().to_owned(),
        model: model_name,
        agent_kwargs,
        n_attempts: settings.attempts,
        max_retries: settings.max_retries,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        sandbox: backend.kind().to_owned(),
        force_build: args.force_build,
        timeout_multiplier: settings.timeout_multiplier,
        disable_verification: false,
        n_concurrent: settings.concurrency,
        task_attempts: Default::default(),
        cache: None,
    };
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.enable_steady_tick(Duration::from_millis(250));
    let progress = Arc::new(crate::progress::JobProgress::new(bar.clone(), ""));
    let cancel = crate::interrupt::on_ctrl_c();
    let outcome = autoagent_eval::run_job(&config, backend, agent, progress, cancel)
        .await
        .context("eval")?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.result)?);
    } else {
        print!("{}", render_summary(&outcome));
    }
    if outcome.cancelled {
        eprintln!(
            "interrupted: finished trials are kept; resume with --job-name {}",
            config.job_name
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table a person reads after a job: one row per trial, then the metrics.
pub fn render_summary(o: &JobOutcome) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let w_task = o
        .trials
        .iter()
        .map(|t| t.task_name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let w_trial = o
        .trials
        .iter()
        .map(|t| t.trial_name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        s,
        "{:<w_task$}  {:<w_trial$}  {:>8}  error",
        "task", "trial", "reward"
    );
    for t in &o.trials {
        let reward = match t.rewards() {
            Some(r) if r.len() == 1 => r.values().next().map(|v| v.to_string()).unwrap_or_default(),
            Some(r) => r
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            None => "-".to_owned(),
        };
        let mut error = match t.exception() {
            Some(e) if e.is_infrastructure() => format!("{e} (infrastructure)"),
            Some(e) => e.to_string(),
            None => String::new(),
        };
        if t.is_suspect() {
            error = if error.is_empty() {
                "SUSPECT".to_owned()
            } else {
                format!("{error}, SUSPECT")
            };
        }
        let row = format!(
            "{:<w_task$}  {:<w_trial$}  {reward:>8}  {error}",
            t.task_name, t.trial_name
        );
        let _ = writeln!(s, "{}", row.trim_end());
    }
    let _ = writeln!(s);
    for (key, ev) in &o.result.stats.evals {
        let metrics = ev
            .metrics
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| format!("{k} {v:.3}")))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(s, "{key}: {metrics}");
        if !ev.pass_at_k.is_empty() {
            let p = ev
                .pass_at_k
                .iter()
                .map(|(k, v)| format!("pass@{k} {v:.3}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(s, "  {p}");
        }
    }
    let infra: Vec<&TrialResult> = o
        .trials
        .iter()
        .filter(|t| t.is_infrastructure_error())
        .collect();
    let scored = o.trials.len() - infra.len();
    let _ = writeln!(
        s,
        "trials: {} (scored {}, infrastructure errors {}, retries {})",
        o.trials.len(),
        scored,
        infra.len(),
        o.result.stats.n_retries
    );
    if !infra.is_empty() {
        let sum: f64 = o
            .trials
            .iter()
            .filter(|t| !t.is_infrastructure_error())
            .map(|t| t.reward().unwrap_or(0.0))
            .sum();
        let _ = writeln!(
            s,
            "mean over scored trials: {:.3} (the mean above counts infrastructure errors as 0, as Harbor does)",
            if scored == 0 {
                0.0
            } else {
                sum / scored as f64
            }
        );
        for t in infra {
            let msg = t
                .exception_info
                .as_ref()
                .map(|e| {
                    e.exception_message
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
                .unwrap_or_default();
            let _ = writeln!(s, "  {}: {msg}", t.trial_name);
        }
    }
    let suspect: Vec<&TrialResult> = o.trials.iter().filter(|t| t.is_suspect()).collect();
    if !suspect.is_empty() {
        let _ = writeln!(
            s,
            "suspect trials (the agent touched what the verifier reads or runs; their rewards may not measure the task): {}",
            suspect.len()
        );
        for t in suspect {
            let _ = writeln!(
                s,
                "  {}: {}",
                t.trial_name,
                t.integrity_evidence().join("; ")
            );
        }
    }
    if !o.invalid_tasks.is_empty() {
        let _ = writeln!(s, "invalid tasks (not run): {}", o.invalid_tasks.len());
        for t in &o.invalid_tasks {
            let _ = writeln!(s, "  {t}");
        }
    }
    let _ = writeln!(s, "job: {}", o.job_dir.display());
    s
}
