//! Runs the real `autoagent` binary and, on failure, shows the command, its status, stdout,
//! stderr and the job dir's contents.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_autoagent"))
}

pub fn examples() -> PathBuf {
    autoagent_test_support::examples_dir().join("tasks")
}

/// Docker must answer for these tests; in CI (AUTOAGENT_REQUIRE_DOCKER=1) its absence fails.
pub use autoagent_test_support::docker_cli_or_skip as docker_or_skip;

pub struct Run {
    pub cmd: String,
    pub out: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn context(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmd,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
}

pub fn autoagent(args: &[&str], cwd: &Path) -> Run {
    autoagent_env(args, cwd, &[])
}

/// [`autoagent`] with extra environment variables.
pub fn autoagent_env(args: &[&str], cwd: &Path, env: &[(&str, &Path)]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("AUTOAGENT_LOG")
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap();
    Run {
        cmd: format!("autoagent {}", args.join(" ")),
        out,
    }
}

/// Filters that make output stable: random trial suffixes, temp paths, image hashes.
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"__[23456789A-HJ-NP-Za-km-z]{7}\b", "__[ID]"),
        (r"/tmp/[^\s]+", "[TMP]"),
        (r"autoagent-env:[0-9a-f]{16}", "autoagent-env:[HASH]"),
    ]
}
