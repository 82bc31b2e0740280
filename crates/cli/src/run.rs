//! `autoagent run`: the harness once, on a new instruction, in a Docker image or a host dir.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use autoagent_agent::{Run, RunObserver, Totals};
use autoagent_harbor::Trajectory;
use autoagent_llm::build_model;
use autoagent_sandbox::docker::DockerBackend;
use autoagent_sandbox::local::LocalBackend;
use autoagent_sandbox::{Backend, EnvironmentSpec, Mount};

use crate::sandbox::SandboxKind;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// What the agent should do.
    pub instruction: String,
    /// The harness dir.
    #[arg(long, default_value = "harness")]
    pub harness: PathBuf,
    #[command(flatten)]
    pub model: crate::settings::ModelArgs,
    /// Where the agent's commands run: `docker` (with --image), `local` (with --workdir) or
    /// `kubernetes` (with --image: a pod in the kube config's cluster, `[sandbox.kubernetes]`).
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxKind>,
    /// The Docker image to run in.
    #[arg(long)]
    pub image: Option<String>,
    /// A host directory to work in (local sandbox; bubblewrap when installed).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Where the trajectory goes.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
}

struct Writer(PathBuf);

impl RunObserver for Writer {
    fn updated(&self, t: &Trajectory, _totals: &Totals) {
        let _ = t.write(&self.0);
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let harness = crate::harness::load(&args.harness)?;
    let ws = crate::settings::current_workspace()?;
    let env = crate::settings::env_in(std::path::Path::new("."))?;
    let cfg = crate::settings::models(&args.model.flags(), &env, ws.as_ref(), Some(&harness))?.task;
    let model = build_model(&cfg, &env).map_err(|e| anyhow::anyhow!("{e}"))?;
    let run_dir = args.runs_dir.join(
        chrono::Local::now()
            .format("%Y-%m-%d__%H-%M-%S-%3f")
            .to_string(),
    );
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let run_dir = std::path::absolute(&run_dir).unwrap_or(run_dir);
    let kind = match (args.sandbox, &args.image, &args.workdir) {
        (Some(k), _, _) => k,
        (None, Some(_), _) => SandboxKind::Docker,
        (None, None, Some(_)) => SandboxKind::Local,
        (None, None, None) => anyhow::bail!(
            "say where to run: --image IMAGE (Docker) or --workdir DIR (this machine)"
        ),
    };
    let (backend, spec): (Arc<dyn Backend>, EnvironmentSpec) = match kind {
        SandboxKind::Kubernetes => {
            let image = args
                .image
                .clone()
                .context("--sandbox kubernetes needs --image IMAGE")?;
            let kube = ws
                .as_ref()
                .map(|w| w.sandbox.kubernetes.clone())
                .unwrap_or_default();
            let spec = EnvironmentSpec {
                name: "run".into(),
                docker_image: Some(image),
                workdir: args.workdir.as_ref().map(|w| w.display().to_string()),
                ..EnvironmentSpec::default()
            };
            (crate::sandbox::kubernetes(&kube).await?, spec)
        }
        SandboxKind::Docker => {
            let image = args
                .image
                .clone()
                .context("--sandbox docker needs --image IMAGE")?;
            let d = DockerBackend::connect()
                .await
                .context("no Docker daemon answers")?;
            let spec = EnvironmentSpec {
                name: "run".into(),
                docker_image: Some(image),
                workdir: args.workdir.as_ref().map(|w| w.display().to_string()),
                ..EnvironmentSpec::default()
            };
            (Arc::new(d), spec)
        }
        SandboxKind::Local => {
            let dir = args
                .workdir
                .clone()
                .context("--sandbox local needs --workdir DIR")?;
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let b = LocalBackend::detect().await;
            let target = dir.display().to_string();
            let spec = EnvironmentSpec {
                name: "run".into(),
                workdir: Some(target.clone()),
                mounts: vec![Mount { host: dir, target }],
                ..EnvironmentSpec::default()
            };
            (Arc::new(b), spec)
        }
    };
    let sandbox = backend.start(&spec).await.context("starting the sandbox")?;
    for note in sandbox.notes() {
        eprintln!("note: {note}");
    }
    let path = run_dir.join("trajectory.json");
    let writer = Writer(path.clone());
    let r = Run {
        harness: &harness,
        model,
        models: Default::default(),
        sandbox: Some(sandbox.as_ref()),
        observer: &writer,
    };
    let cancel = crate::interrupt::on_ctrl_c();
    let outcome = tokio::select! {
        r = r.run(&args.instruction) => r,
        () = cancel.cancelled() => {
            let _ = sandbox.destroy().await;
            anyhow::bail!("interrupted; the trajectory so far is in {}", path.display());
        }
    };
    let _ = sandbox.destroy().await;
    let outcome = outcome
        .map_err(|e| anyhow::anyhow!("{e}\nthe trajectory so far is in {}", path.display()))?;
    println!("{}", outcome.answer);
    eprintln!(
        "\n{} after {} model call(s); tokens in {} (cached {}), out {}; cost {}\ntrajectory: {}",
        match outcome.end {
            autoagent_agent::EndReason::Finished => "finished",
            autoagent_agent::EndReason::MaxTurns => "stopped at the turn limit",
        },
        outcome.totals.calls,
        outcome.totals.prompt_tokens(),
        outcome.totals.usage.cache_read_tokens,
        outcome.totals.usage.output_tokens,
        outcome
            .totals
            .cost_usd
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "unknown".to_owned()),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
