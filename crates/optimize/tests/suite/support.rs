//! A workspace for the loop's tests, and everything to print when one fails.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use autoagent_eval::job::{JobObserver, Silent};
use autoagent_llm::{EnvSource, ModelConfig};
use autoagent_optimize::{Ledger, Options, Reporter, Workspace};
use autoagent_sandbox::Backend;

pub use autoagent_test_support::{copy_dir, examples_dir as examples};

pub fn fixture(name: &str) -> PathBuf {
    autoagent_test_support::fixture!(name)
}

/// A new workspace with only the given example tasks, k = 2, concurrency 2, and the `greedy`
/// policy unless `extra_config` has an `[accept]` section.
pub async fn workspace(dir: &Path, tasks: &[&str], extra_config: &str) -> Workspace {
    autoagent_optimize::init(dir).await.unwrap();
    std::fs::remove_dir_all(dir.join("tasks")).unwrap();
    autoagent_test_support::copy_tasks(&dir.join("tasks"), tasks);
    std::fs::write(
        dir.join("autoagent.toml"),
        format!(
            "[eval]\nattempts = 2\nconcurrency = 2\nmax_retries = 0\n{extra_config}{}",
            if extra_config.contains("[accept]") {
                ""
            } else {
                "\n[accept]\npolicy = \"greedy\"\nk = 2\n"
            }
        ),
    )
    .unwrap();
    Workspace::open(dir).unwrap()
}

pub fn scripted(path: &Path) -> ModelConfig {
    ModelConfig {
        model: format!("scripted/{}", path.display()),
        ..ModelConfig::default()
    }
}

pub fn options(backend: Arc<dyn Backend>, task: &Path, meta: &str) -> Options {
    Options {
        task_model: scripted(task),
        meta_model: ModelConfig {
            model: format!("scripted/{meta}"),
            ..ModelConfig::default()
        },
        env: EnvSource::from_vars(Vec::<(String, String)>::new()),
        backend,
        no_cache: false,
    }
}

#[derive(Default)]
pub struct Lines(pub Mutex<Vec<String>>);

impl Reporter for Lines {
    fn line(&self, msg: &str) {
        self.0.lock().unwrap().push(msg.to_owned());
    }
    fn job_observer(&self) -> Arc<dyn JobObserver> {
        Arc::new(Silent)
    }
}

/// The ledger, the git state and the loop's log: what to read when a step goes wrong.
pub fn dump(root: &Path) -> String {
    let sh = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root.join("harness"))
            .args(args)
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    };
    format!(
        "--- results.tsv\n{}\n--- optimize.log\n{}\n--- git log\n{}\n--- refs\n{}\n--- status\n{}\n--- state\n{}",
        std::fs::read_to_string(root.join("results.tsv")).unwrap_or_default(),
        std::fs::read_to_string(root.join(".autoagent/optimize.log")).unwrap_or_default(),
        sh(&["log", "--format=%h %s", "main"]),
        sh(&["for-each-ref", "--format=%(refname) %(objectname:short)"]),
        sh(&["status", "--porcelain"]),
        std::fs::read_to_string(root.join(".autoagent/state.json")).unwrap_or_default(),
    )
}

pub fn git(root: &Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .arg("-C")
        .arg(root.join("harness"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

pub fn ledger(root: &Path) -> Ledger {
    Ledger::load(&root.join("results.tsv")).unwrap()
}
