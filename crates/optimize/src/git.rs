//! The harness's git history, through the `git` CLI with timeouts. User configuration (hooks,
//! signing, textconv) cannot change what an experiment commits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("git {args} in {dir}: {message}")]
pub struct GitError {
    pub dir: PathBuf,
    pub args: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct GitRepo {
    pub dir: PathBuf,
    timeout: Duration,
}

impl GitRepo {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            timeout: TIMEOUT,
        }
    }

    /// The same repository with another time limit per git call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let err = |message: String| GitError {
            dir: self.dir.clone(),
            args: args.join(" "),
            message,
        };
        let mut cmd = Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "user.name=autoagent",
                "-c",
                "user.email=autoagent@localhost",
                "-c",
                "core.autocrlf=false",
                "-c",
                "core.excludesFile=/dev/null",
                "-c",
                "core.fsmonitor=false",
            ])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            // Never the repository of a folder above the harness (the user's own project).
            .env(
                "GIT_CEILING_DIRECTORIES",
                self.dir.parent().unwrap_or(&self.dir),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .map_err(|_| err(format!("timed out after {:?}", self.timeout)))?
            .map_err(|e| err(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `git init` with a first commit of whatever the dir holds, on branch `main`.
    pub async fn init(&self) -> Result<String, GitError> {
        self.run(&["init", "-q", "-b", "main"]).await?;
        self.commit_all("baseline harness").await?;
        self.head().await
    }

    /// Whether the harness dir is the top of a repository of its own.
    pub async fn is_repo(&self) -> bool {
        let Ok(top) = self.run(&["rev-parse", "--show-toplevel"]).await else {
            return false;
        };
        let here = self.dir.canonicalize().ok();
        here.is_some() && std::path::Path::new(top.trim()).canonicalize().ok() == here
    }

    pub async fn head(&self) -> Result<String, GitError> {
        Ok(self.run(&["rev-parse", "HEAD"]).await?.trim().to_owned())
    }

    pub async fn short(&self, rev: &str) -> Result<String, GitError> {
        Ok(self
            .run(&["rev-parse", "--short=7", rev])
            .await?
            .trim()
            .to_owned())
    }

    /// Commits everything in the working tree; `None` when there was nothing to commit.
    pub async fn commit_all(&self, message: &str) -> Result<Option<String>, GitError> {
        self.run(&["add", "-A"]).await?;
        if self
            .run(&["status", "--porcelain"])
            .await?
            .trim()
            .is_empty()
        {
            return Ok(None);
        }
        self.run(&["commit", "-q", "--no-verify", "-m", message])
            .await?;
        Ok(Some(self.head().await?))
    }

    /// Writes the tree of `rev` into `dest` (created), without touching the working tree, the
    /// index or any ref: `git archive` into a file, unpacked by `tar`.
    pub async fn export(&self, rev: &str, dest: &Path) -> Result<(), GitError> {
        let err = |message: String| GitError {
            dir: self.dir.clone(),
            args: format!("archive {rev} (into {})", dest.display()),
            message,
        };
        std::fs::create_dir_all(dest).map_err(|e| err(e.to_string()))?;
        let tar = dest.with_extension("tar");
        let tar_s = tar.display().to_string();
        self.run(&["archive", "--format=tar", "-o", &tar_s, rev])
            .await?;
        let mut cmd = Command::new("tar");
        cmd.arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(dest)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.timeout, cmd.output())
            .await
            .map_err(|_| err(format!("tar timed out after {:?}", self.timeout)))?
            .map_err(|e| err(format!("cannot run tar: {e}")))?;
        let _ = std::fs::remove_file(&tar);
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        Ok(())
    }

    /// Puts the working tree, the index and the branch back at `rev`, untracked files removed.
    pub async fn reset_hard(&self, rev: &str) -> Result<(), GitError> {
        self.run(&["reset", "-q", "--hard", rev]).await?;
        self.run(&["clean", "-q", "-fdx"]).await?;
        Ok(())
    }

    pub async fn update_ref(&self, name: &str, rev: &str) -> Result<(), GitError> {
        self.run(&["update-ref", name, rev]).await.map(|_| ())
    }

    /// The diff of the working tree (untracked files included) against `rev`.
    pub async fn diff_worktree(&self, rev: &str) -> Result<String, GitError> {
        // Intent-to-add makes new files show in the diff without staging their content.
        self.run(&["add", "-A", "-N"]).await?;
        self.run(&[
            "diff",
            "--text",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            rev,
        ])
        .await
    }

    pub async fn diff(&self, from: &str, to: &str) -> Result<String, GitError> {
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

    pub async fn is_clean(&self) -> Result<bool, GitError> {
        Ok(self
            .run(&["status", "--porcelain"])
            .await?
            .trim()
            .is_empty())
    }
}
