//! Registry datasets (`-d NAME@VERSION --registry PATH|URL`): the dataset's tasks are cloned at
//! their commits into a content-addressed cache under the user's cache dir, reused and verified,
//! and laid out as a local dataset dir that [`crate::run_job`] runs like any other.
//!
//! Cache layout (`$AUTOAGENT_CACHE_DIR`, else `$XDG_CACHE_HOME/autoagent`, else
//! `~/.cache/autoagent`):
//! * `git/<sha256(url)>.git`: a bare clone of each repository, fetched again only when a named
//!   commit is missing;
//! * `tasks/<sha256(url, commit, path)>/`: one task's tree at its commit (`git archive`), with
//!   `.autoagent-digest` holding its dirhash; a tree whose files no longer hash to it is
//!   fetched again;
//! * `datasets/<sha256(dataset)>/<name>/`: links to the task trees under the tasks' names, and
//!   `.autoagent-dataset.json` (each task's origin, recorded as Harbor's git task id).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autoagent_harbor::dirhash::task_checksum;
use autoagent_harbor::registry::{DatasetSpec, ORIGINS_FILE, Registry, TaskOrigin};
use sha2::{Digest, Sha256};

/// Overrides where the registry cache lives.
pub const CACHE_DIR_VAR: &str = "AUTOAGENT_CACHE_DIR";

/// How long one git command may take (a clone of a large repository included).
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Registry(#[from] autoagent_harbor::registry::RegistryError),
    #[error("reading the registry {source_name}: {message}")]
    Read {
        source_name: String,
        message: String,
    },
    #[error("dataset {dataset}, task {task}: {message}")]
    Task {
        dataset: String,
        task: String,
        message: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    move |source| FetchError::Io {
        context: context.into(),
        source,
    }
}

/// The user's cache dir for registry datasets.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(CACHE_DIR_VAR) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("autoagent");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/autoagent"))
        .unwrap_or_else(|| std::env::temp_dir().join("autoagent-cache"))
}

fn sha(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a registry from a path, a `file://` URL or an `http(s)://` URL.
pub async fn load_registry(source: &str) -> Result<Registry, FetchError> {
    let read_err = |message: String| FetchError::Read {
        source_name: source.to_owned(),
        message,
    };
    if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| read_err(e.to_string()))?;
        let resp = client
            .get(source)
            .send()
            .await
            .map_err(|e| read_err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(read_err(format!("HTTP {}", resp.status())));
        }
        let text = resp.text().await.map_err(|e| read_err(e.to_string()))?;
        return Ok(Registry::parse(&text, source, None)?);
    }
    let path = PathBuf::from(source.strip_prefix("file://").unwrap_or(source));
    let text = std::fs::read_to_string(&path).map_err(|e| read_err(e.to_string()))?;
    let base = std::path::absolute(&path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    Ok(Registry::parse(&text, source, base.as_deref())?)
}

async fn git(args: &[&str], dir: Option<&Path>) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    if let Some(d) = dir {
        cmd.arg("-C").arg(d);
    }
    cmd.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "protocol.file.allow=always",
    ])
    .args(args)
    .env("GIT_TERMINAL_PROMPT", "0")
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(GIT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("git {} timed out after {GIT_TIMEOUT:?}", args.join(" ")))?
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A bare clone of `url` that has `commit`.
async fn repo_with(cache: &Path, url: &str, commit: &str) -> Result<PathBuf, String> {
    let repo = cache
        .join("git")
        .join(format!("{}.git", &sha(&[url])[..32]));
    let has = |repo: PathBuf| async move {
        git(
            &["cat-file", "-e", &format!("{commit}^{{commit}}")],
            Some(&repo),
        )
        .await
        .is_ok()
    };
    if !repo.join("HEAD").is_file() {
        let tmp = repo.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(cache.join("git")).map_err(|e| e.to_string())?;
        let tmp_s = tmp.display().to_string();
        git(&["clone", "--quiet", "--bare", url, &tmp_s], None).await?;
        if std::fs::rename(&tmp, &repo).is_err() {
            // Another run cloned it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    if !has(repo.clone()).await {
        git(
            &["fetch", "--quiet", "origin", "+refs/*:refs/*"],
            Some(&repo),
        )
        .await?;
        if !has(repo.clone()).await {
            // Servers that allow fetching a commit by id.
            git(&["fetch", "--quiet", "origin", commit], Some(&repo)).await?;
        }
    }
    if !has(repo.clone()).await {
        return Err(format!("commit {commit} is not in {url}"));
    }
    Ok(repo)
}

const DIGEST_FILE: &str = ".autoagent-digest";

/// The cached tree of one git task, fetched when missing or when it no longer matches the
/// digest recorded when it was written.
async fn git_task(cache: &Path, url: &str, commit: &str, path: &Path) -> Result<PathBuf, String> {
    let rel = path.to_string_lossy().trim_end_matches('/').to_owned();
    let dir = cache.join("tasks").join(sha(&[url, commit, &rel]));
    if let Ok(want) = std::fs::read_to_string(dir.join(DIGEST_FILE))
        && task_checksum(&dir.join("task")).as_deref() == Some(want.trim())
    {
        return Ok(dir.join("task"));
    }
    let repo = repo_with(cache, url, commit).await?;
    let tmp = dir.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let tar = tmp.join("task.tar");
    let tar_s = tar.display().to_string();
    git(
        &["archive", "--format=tar", "-o", &tar_s, commit, "--", &rel],
        Some(&repo),
    )
    .await?;
    let out = tokio::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&tmp)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {rel} at {commit}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let _ = std::fs::remove_file(&tar);
    std::fs::rename(tmp.join(&rel), tmp.join("task"))
        .map_err(|e| format!("{rel} at {commit}: no such directory in {url} ({e})"))?;
    let digest = task_checksum(&tmp.join("task"))
        .ok_or_else(|| format!("{rel} at {commit}: the task dir is empty"))?;
    std::fs::write(tmp.join(DIGEST_FILE), &digest).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| e.to_string())?;
    Ok(dir.join("task"))
}

/// Fetches every task of `dataset` into `cache` and lays the dataset out as a local dataset
/// dir (named after the dataset, so trials record it as their `source`); returns that dir.
pub async fn materialize(
    registry: &Registry,
    dataset: &DatasetSpec,
    cache: &Path,
) -> Result<PathBuf, FetchError> {
    let key = sha(&[
        &registry.source,
        &dataset.name,
        &dataset.version,
        &serde_json::to_string(&dataset.tasks).unwrap_or_default(),
    ]);
    let root = cache.join("datasets").join(&key[..32]);
    let out = root.join(&dataset.name);
    let tmp = root.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    let mut origins = BTreeMap::new();
    for t in &dataset.tasks {
        let task_err = |message: String| FetchError::Task {
            dataset: format!("{}@{}", dataset.name, dataset.version),
            task: t.name.clone(),
            message,
        };
        let dir = match (&t.git_url, &t.git_commit_id) {
            (Some(url), Some(commit)) => git_task(cache, url, commit, &t.path)
                .await
                .map_err(task_err)?,
            _ => {
                let base = registry.base_dir.as_ref().ok_or_else(|| {
                    task_err("a task without git_url needs a registry read from a file".into())
                })?;
                let d = base.join(&t.path);
                if !d.join("task.toml").is_file() {
                    return Err(task_err(format!("{}: no task.toml", d.display())));
                }
                d
            }
        };
        std::os::unix::fs::symlink(&dir, tmp.join(&t.name))
            .map_err(io(format!("linking {}", t.name)))?;
        origins.insert(
            t.name.clone(),
            TaskOrigin {
                git_url: t.git_url.clone(),
                git_commit_id: t.git_commit_id.clone(),
                path: t.path.clone(),
            },
        );
    }
    std::fs::write(
        tmp.join(ORIGINS_FILE),
        serde_json::to_vec_pretty(&origins).unwrap_or_default(),
    )
    .map_err(io("writing the dataset's origins"))?;
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out).map_err(io(format!("writing {}", out.display())))?;
    Ok(out)
}
