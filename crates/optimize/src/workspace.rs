//! The workspace folder: `autoagent.toml`, `program.md`, `harness/` (its own git repository),
//! `tasks/`, `jobs/`, `results.tsv`, and `.autoagent/` (the run's state and log).

use std::path::{Path, PathBuf};

use crate::git::GitRepo;
use autoagent_settings::WorkspaceConfig;
use autoagent_settings::file::TEMPLATE;

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub config: WorkspaceConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(transparent)]
    Config(#[from] autoagent_settings::ConfigError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WorkspaceError {
    let context = context.into();
    move |source| WorkspaceError::Io { context, source }
}

impl Workspace {
    /// Opens the workspace at `root` (reads `autoagent.toml`; checks `harness/` exists).
    pub fn open(root: &Path) -> Result<Self, WorkspaceError> {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let config = WorkspaceConfig::load(&root.join("autoagent.toml"))?;
        let ws = Self { root, config };
        if !ws.harness_dir().join("harness.toml").is_file() {
            return Err(WorkspaceError::Invalid(format!(
                "{} is not an autoagent workspace: {} is missing (run `autoagent init DIR` to make one)",
                ws.root.display(),
                ws.harness_dir().join("harness.toml").display()
            )));
        }
        Ok(ws)
    }

    pub fn harness_dir(&self) -> PathBuf {
        self.root.join("harness")
    }
    pub fn tasks_dir(&self) -> PathBuf {
        self.root.join(&self.config.eval.tasks)
    }
    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    pub fn ledger_path(&self) -> PathBuf {
        self.root.join("results.tsv")
    }
    pub fn program_path(&self) -> PathBuf {
        self.root.join("program.md")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".autoagent")
    }
    /// The trial cache (`autoagent_eval::TrialCache`): `.autoagent/cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.state_dir().join("cache")
    }
    pub fn stop_file(&self) -> PathBuf {
        self.root.join("STOP")
    }
    pub fn git(&self) -> GitRepo {
        GitRepo::new(&self.harness_dir())
    }
}

/// `program.md` as `init` writes it: the directive the meta-agent reads every session.
pub const PROGRAM_TEMPLATE: &str = "# Program

## The agent to build
A task agent that completes tasks in a Linux terminal environment: it reads the task, works
in the shell, and checks its own result before it stops. (Describe your domain here: the kind
of tasks, the tools and files they involve, what good work looks like.)

## Constraints
- Keep the harness general: it must help on tasks like these, not on these exact tasks.
- Prefer changes to prompts, tools and the switches in harness.toml (verification, sub-agents,
  output limits) over long lists of special cases.
- Tools run inside the task's sandbox: they may only use what the task images have.

## Simplicity
All else being equal, simpler is better. A change that keeps the score and makes the harness
smaller is an improvement; a change that adds complexity for no gain is not.

## Overfitting
Before you finish, ask: if this exact task disappeared, would this still be a worthwhile
harness improvement? If not, do not make the change.
";

macro_rules! example_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../examples/", $path)))
    };
}

/// The files of a new workspace: the baseline harness and a few example tasks.
const EXAMPLE_FILES: &[(&str, &str)] = &[
    example_file!("harness/harness.toml"),
    example_file!("harness/prompts/system.md"),
    example_file!("harness/prompts/verify.md"),
    example_file!("tasks/hello-file/task.toml"),
    example_file!("tasks/hello-file/instruction.md"),
    example_file!("tasks/hello-file/environment/Dockerfile"),
    example_file!("tasks/hello-file/solution/solve.sh"),
    example_file!("tasks/hello-file/tests/test.sh"),
    example_file!("tasks/multi-metric/task.toml"),
    example_file!("tasks/multi-metric/instruction.md"),
    example_file!("tasks/multi-metric/environment/Dockerfile"),
    example_file!("tasks/multi-metric/solution/solve.sh"),
    example_file!("tasks/multi-metric/tests/test.sh"),
    example_file!("tasks/workdir/task.toml"),
    example_file!("tasks/workdir/instruction.md"),
    example_file!("tasks/workdir/environment/Dockerfile"),
    example_file!("tasks/workdir/solution/solve.sh"),
    example_file!("tasks/workdir/tests/test.sh"),
];

/// `autoagent init DIR`: a new workspace. Refuses a dir that already has `autoagent.toml` or
/// `harness/`, so nothing is overwritten.
pub async fn init(dir: &Path) -> Result<Workspace, WorkspaceError> {
    if dir.join("autoagent.toml").exists() || dir.join("harness").exists() {
        return Err(WorkspaceError::Invalid(format!(
            "{} already holds a workspace (autoagent.toml or harness/ exists); nothing was changed",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::write(dir.join("autoagent.toml"), TEMPLATE).map_err(io("writing autoagent.toml"))?;
    std::fs::write(dir.join("program.md"), PROGRAM_TEMPLATE).map_err(io("writing program.md"))?;
    for (rel, text) in EXAMPLE_FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))?;
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(format!("chmod {}", path.display())))?;
        }
    }
    std::fs::write(dir.join(".gitignore"), "jobs/\n.autoagent/\n.env\n")
        .map_err(io("writing .gitignore"))?;
    GitRepo::new(&dir.join("harness")).init().await?;
    Workspace::open(dir)
}
