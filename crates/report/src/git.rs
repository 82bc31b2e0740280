//! Read-only questions to the harness's git repository, through the `git` CLI with a time limit:
//! diffs, commits and their messages. Hooks, external diff tools, textconv filters, the
//! fsmonitor and optional locks are off, so reading never changes the repository and never
//! waits on a running `optimize`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The default limit of one git call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GitError {
    #[error("{0:?} is not a commit hash")]
    NotACommit(String),
    #[error("{} is not a git repository", .0.display())]
    NotARepository(PathBuf),
    #[error("git {args} timed out after {timeout:?}")]
    Timeout { args: String, timeout: Duration },
    #[error("git {args} failed: {message}")]
    Failed { args: String, message: String },
}

/// A commit as the ledger records it: hex only, so it can never pass for a git option.
pub fn is_commit(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The harness repository, read-only.
#[derive(Debug, Clone)]
pub struct Repo {
    pub dir: PathBuf,
    pub timeout: Duration,
}

impl Repo {
    pub fn new(dir: &Path, timeout: Duration) -> Self {
        Self {
            dir: dir.to_path_buf(),
            timeout,
        }
    }

    /// One git call; stdout, or the first line of stderr as the error.
    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        if !self.dir.join(".git").exists() {
            return Err(GitError::NotARepository(self.dir.clone()));
        }
        let joined = args.join(" ");
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "diff.external=",
                "-c",
                "core.pager=cat",
            ])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // Never the repository of a folder above the harness (the user's own project).
            .env(
                "GIT_CEILING_DIRECTORIES",
                self.dir.parent().unwrap_or(&self.dir),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .map_err(|_| GitError::Timeout {
                args: joined.clone(),
                timeout: self.timeout,
            })?
            .map_err(|e| GitError::Failed {
                args: joined.clone(),
                message: format!("cannot run git: {e}"),
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .to_owned();
            return Err(GitError::Failed {
                args: joined,
                message: first,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `git diff from to`.
    pub async fn diff(&self, from: &str, to: &str) -> Result<String, GitError> {
        for c in [from, to] {
            if !is_commit(c) {
                return Err(GitError::NotACommit(c.to_owned()));
            }
        }
        self.run(&[
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            from,
            to,
            "--",
        ])
        .await
    }

    /// The change a commit made against its parent: `git show --format= <commit>`.
    pub async fn show_diff(&self, commit: &str) -> Result<String, GitError> {
        if !is_commit(commit) {
            return Err(GitError::NotACommit(commit.to_owned()));
        }
        self.run(&[
            "show",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--format=",
            commit,
            "--",
        ])
        .await
    }

    /// A commit's full message.
    pub async fn message(&self, commit: &str) -> Result<String, GitError> {
        if !is_commit(commit) {
            return Err(GitError::NotACommit(commit.to_owned()));
        }
        self.run(&["show", "-s", "--no-color", "--format=%B", commit, "--"])
            .await
    }

    /// The commit a ref names (`refs/autoagent/discarded/3`), when it exists.
    pub async fn resolve_ref(&self, name: &str) -> Option<String> {
        if !name.starts_with("refs/")
            || name.contains("..")
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b))
        {
            return None;
        }
        let out = self
            .run(&[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{name}^{{commit}}"),
            ])
            .await
            .ok()?;
        let hash = out.trim().to_owned();
        is_commit(&hash).then_some(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_passes_for_a_commit() {
        assert!(is_commit("abc1234"));
        assert!(!is_commit("--output=/tmp/x"));
        assert!(!is_commit("abc"));
        assert!(!is_commit("HEAD"));
    }
}
