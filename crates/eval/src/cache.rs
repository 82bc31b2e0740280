//! A content-addressed cache of finished trials, so that a trial already measured (a resumed
//! run, a re-proposed identical harness, a spot check followed by the full evaluation) is
//! copied instead of paid for again.
//!
//! ```text
//! <cache>/
//!   entries/<key>/     one entry: its key is a sha256 of the key parts (see [`CacheKey`])
//!     entry.json       the key parts, when it was made, the original trial dir, its cost
//!     trial/           a full copy of the finished trial dir (result.json, agent/, verifier/, …)
//!   tmp/<uuid>/        an entry being written; renamed into entries/ when complete
//! ```
//!
//! An entry is written into `tmp/` and renamed into place, so a process killed mid-write
//! leaves a temp dir, never a half entry under `entries/`. An entry that does not read back
//! whole (no `entry.json`, a key that does not match its dir, no `trial/result.json`) is a
//! miss, and [`TrialCache::list`] reports it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use autoagent_harbor::TrialResult;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file of an entry that makes it complete: written before the entry is renamed in.
pub const ENTRY_FILE: &str = "entry.json";
const ENTRIES: &str = "entries";
const TMP: &str = "tmp";
const TRIAL: &str = "trial";
/// Changes when the key's meaning changes, so old entries stop matching instead of lying.
const KEY_VERSION: &str = "autoagent-trial-cache-v1";
/// A temp dir younger than this may be a write in progress (another run): prune leaves it.
const TMP_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CacheError {
    let context = context.into();
    move |source| CacheError::Io { context, source }
}

/// What makes two trials the same measurement. Its [`digest`](Self::digest) names the entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// [`tree_hash`] of the harness the agent runs.
    pub harness_tree: String,
    /// The task model and the settings of it that change behaviour, as one string.
    pub model_key: String,
    /// The task's name: two tasks with the same files still are two measurements.
    pub task_name: String,
    /// `Task::checksum()`: every file of the task dir, the environment included.
    pub task_checksum: String,
    /// `<backend kind>:<image>`, the image being what [`Backend::image_id`] names (empty when
    /// the backend cannot name it without building).
    ///
    /// [`Backend::image_id`]: autoagent_sandbox::Backend::image_id
    pub image_id: String,
    /// The trial's attempt index within its task.
    pub attempt: u32,
}

impl CacheKey {
    /// The sha256 (hex) of the parts, each length-prefixed so that no two keys collide by
    /// moving a boundary.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        let attempt = self.attempt.to_string();
        for part in [
            KEY_VERSION,
            &self.harness_tree,
            &self.model_key,
            &self.task_name,
            &self.task_checksum,
            &self.image_id,
            &attempt,
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex(&h.finalize())
    }
}

/// `entry.json`: the key and where the measurement came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryInfo {
    /// [`CacheKey::digest`] of `parts`, also the entry's dir name.
    pub key: String,
    #[serde(flatten)]
    pub parts: CacheKey,
    pub created_at: DateTime<Utc>,
    /// The trial dir the entry was copied from.
    pub trial_path: PathBuf,
    /// What that trial cost (`agent_result.cost_usd`); `None` when unknown.
    pub cost_usd: Option<f64>,
}

/// A hit: the entry and the trial result it holds.
#[derive(Debug, Clone)]
pub struct CachedTrial {
    pub info: EntryInfo,
    /// The cached trial's `result.json`, as the original run wrote it.
    pub result: TrialResult,
    trial_dir: PathBuf,
}

impl CachedTrial {
    /// The entry's copy of the trial dir.
    pub fn trial_dir(&self) -> &Path {
        &self.trial_dir
    }
    /// Copies the cached trial dir to `dest` (created), everything except `result.json`:
    /// the caller writes that last, rewritten for its new place, so that a copy cut short is
    /// an unfinished trial dir.
    pub fn restore(&self, dest: &Path) -> Result<(), CacheError> {
        copy_tree(&self.trial_dir, dest, &|rel| {
            rel == Path::new("result.json")
        })
    }
}

/// An entry in a listing.
#[derive(Debug, Clone)]
pub struct ListedEntry {
    pub info: EntryInfo,
    /// Bytes on disk (file lengths) of the whole entry.
    pub size_bytes: u64,
    pub age: Duration,
}

/// A dir in the cache that is not a usable entry (never a hit).
#[derive(Debug, Clone)]
pub struct BrokenEntry {
    pub path: PathBuf,
    pub reason: String,
    pub size_bytes: u64,
    pub age: Duration,
}

/// What [`TrialCache::list`] found.
#[derive(Debug, Clone, Default)]
pub struct CacheListing {
    /// Sorted by task, attempt, harness, model, key.
    pub entries: Vec<ListedEntry>,
    /// Sorted by path.
    pub broken: Vec<BrokenEntry>,
}

/// What [`TrialCache::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub removed_entries: usize,
    pub removed_broken: usize,
    pub freed_bytes: u64,
    pub kept_entries: usize,
}

/// Whether a finished trial is a real measurement, worth reusing: it has a reward, no
/// infrastructure exception, and is not itself a copy.
pub fn qualifies(result: &TrialResult) -> bool {
    result.finished_at.is_some()
        && result.rewards().is_some()
        && !result.is_infrastructure_error()
        && !result.is_cached()
}

/// The cache: a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialCache {
    dir: PathBuf,
}

impl TrialCache {
    /// Opens (creating) the cache at `dir`.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        for sub in [ENTRIES, TMP] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(format!("creating {}", p.display())))?;
        }
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_dir(&self, digest: &str) -> PathBuf {
        self.dir.join(ENTRIES).join(digest)
    }

    /// The entry for `key`, when a complete one exists. Anything unreadable is a miss.
    pub fn lookup(&self, key: &CacheKey) -> Option<CachedTrial> {
        let digest = key.digest();
        let found = read_entry(&self.entry_dir(&digest)).ok()?;
        (found.info.parts == *key).then_some(found)
    }

    /// Stores a copy of the finished trial at `trial_dir` under `key`, when it
    /// [`qualifies`]. Returns whether an entry was written (false: it does not qualify, or
    /// the key already has a complete entry).
    pub fn store(
        &self,
        key: &CacheKey,
        trial_dir: &Path,
        result: &TrialResult,
    ) -> Result<bool, CacheError> {
        if !qualifies(result) {
            return Ok(false);
        }
        let digest = key.digest();
        let dest = self.entry_dir(&digest);
        if read_entry(&dest).is_ok() {
            return Ok(false);
        }
        let tmp = self.dir.join(TMP).join(uuid::Uuid::new_v4().to_string());
        let written = self.write_entry(key, &digest, trial_dir, result, &tmp, &dest);
        if written.is_err() || tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written
    }

    fn write_entry(
        &self,
        key: &CacheKey,
        digest: &str,
        trial_dir: &Path,
        result: &TrialResult,
        tmp: &Path,
        dest: &Path,
    ) -> Result<bool, CacheError> {
        std::fs::create_dir_all(tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
        copy_tree(trial_dir, &tmp.join(TRIAL), &|_| false)?;
        let info = EntryInfo {
            key: digest.to_owned(),
            parts: key.clone(),
            // Whole seconds: an age is shown in minutes at best.
            created_at: Utc::now().trunc_subsecs(0),
            trial_path: trial_dir.to_path_buf(),
            cost_usd: result.agent_result.as_ref().and_then(|a| a.cost_usd),
        };
        let bytes = serde_json::to_vec_pretty(&info).map_err(|e| CacheError::Corrupt {
            path: tmp.join(ENTRY_FILE),
            message: e.to_string(),
        })?;
        let entry_file = tmp.join(ENTRY_FILE);
        std::fs::write(&entry_file, bytes)
            .map_err(io_err(format!("writing {}", entry_file.display())))?;
        match std::fs::rename(tmp, dest) {
            Ok(()) => Ok(true),
            // Another run stored the same key meanwhile, or a broken entry is in the way.
            Err(_) if read_entry(dest).is_ok() => Ok(false),
            Err(_) => {
                self.remove_entry_dir(dest)?;
                std::fs::rename(tmp, dest).map_err(io_err(format!(
                    "renaming {} to {}",
                    tmp.display(),
                    dest.display()
                )))?;
                Ok(true)
            }
        }
    }

    /// Moves a dir out of `entries/` first, so that no lookup ever sees it half removed.
    fn remove_entry_dir(&self, path: &Path) -> Result<(), CacheError> {
        let doomed = self
            .dir
            .join(TMP)
            .join(format!("removing-{}", uuid::Uuid::new_v4()));
        match std::fs::rename(path, &doomed) {
            Ok(()) => std::fs::remove_dir_all(&doomed)
                .map_err(io_err(format!("removing {}", doomed.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("moving {} aside", path.display()))(e)),
        }
    }

    /// Every entry, with its size and age, and every dir that is not a usable entry.
    pub fn list(&self) -> Result<CacheListing, CacheError> {
        let now = Utc::now();
        let mut out = CacheListing::default();
        for path in children(&self.dir.join(ENTRIES))? {
            let size_bytes = tree_size(&path);
            match read_entry(&path) {
                Ok(found) => out.entries.push(ListedEntry {
                    age: (now - found.info.created_at).to_std().unwrap_or_default(),
                    info: found.info,
                    size_bytes,
                }),
                Err(reason) => out.broken.push(BrokenEntry {
                    age: mtime_age(&path),
                    path,
                    reason,
                    size_bytes,
                }),
            }
        }
        for path in children(&self.dir.join(TMP))? {
            out.broken.push(BrokenEntry {
                age: mtime_age(&path),
                size_bytes: tree_size(&path),
                path,
                reason: "an unfinished write (a temp dir left by an interrupted or running store)"
                    .to_owned(),
            });
        }
        out.entries.sort_by(|a, b| {
            let k = |e: &ListedEntry| {
                let p = &e.info.parts;
                (
                    p.task_name.clone(),
                    p.attempt,
                    p.harness_tree.clone(),
                    p.model_key.clone(),
                    e.info.key.clone(),
                )
            };
            k(a).cmp(&k(b))
        });
        out.broken.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes entries: every one with `all`; else those older than `older_than` (none when
    /// `None`). Broken entries are always removed, and temp dirs once they are an hour old
    /// (a younger one may be a store in progress) or with `all`.
    pub fn prune(
        &self,
        older_than: Option<Duration>,
        all: bool,
    ) -> Result<PruneReport, CacheError> {
        let listing = self.list()?;
        let mut report = PruneReport::default();
        let tmp_root = self.dir.join(TMP);
        for e in listing.entries {
            if all || older_than.is_some_and(|d| e.age > d) {
                self.remove_entry_dir(&self.entry_dir(&e.info.key))?;
                report.removed_entries += 1;
                report.freed_bytes += e.size_bytes;
            } else {
                report.kept_entries += 1;
            }
        }
        for b in listing.broken {
            let in_tmp = b.path.starts_with(&tmp_root);
            if in_tmp && !all && b.age < TMP_GRACE {
                continue;
            }
            let removed = if in_tmp {
                std::fs::remove_dir_all(&b.path)
                    .or_else(|e| {
                        // A file, not a dir, or gone meanwhile.
                        std::fs::remove_file(&b.path).or(
                            if e.kind() == std::io::ErrorKind::NotFound {
                                Ok(())
                            } else {
                                Err(e)
                            },
                        )
                    })
                    .map_err(io_err(format!("removing {}", b.path.display())))
            } else if b.path.is_dir() {
                self.remove_entry_dir(&b.path)
            } else {
                std::fs::remove_file(&b.path)
                    .map_err(io_err(format!("removing {}", b.path.display())))
            };
            removed?;
            report.removed_broken += 1;
            report.freed_bytes += b.size_bytes;
        }
        Ok(report)
    }
}

/// Reads an entry dir whole, or says why it is not one.
fn read_entry(dir: &Path) -> Result<CachedTrial, String> {
    if !dir.is_dir() {
        return Err("not a directory".to_owned());
    }
    let entry_file = dir.join(ENTRY_FILE);
    let text = autoagent_harbor::fs::read_shared(&entry_file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("no {ENTRY_FILE} (an incomplete entry)")
        } else {
            format!("{ENTRY_FILE}: {e}")
        }
    })?;
    let info: EntryInfo =
        serde_json::from_str(&text).map_err(|e| format!("{ENTRY_FILE} does not parse: {e}"))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if info.key != name || info.parts.digest() != name {
        return Err(format!(
            "{ENTRY_FILE}'s key does not match the entry's name (key {})",
            info.key
        ));
    }
    let trial_dir = dir.join(TRIAL);
    let result = autoagent_harbor::TrialDir::new(&trial_dir)
        .read_result()
        .map_err(|e| format!("{TRIAL}/result.json: {e}"))?;
    Ok(CachedTrial {
        info,
        result,
        trial_dir,
    })
}

fn children(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
    };
    let mut out: Vec<PathBuf> = read.filter_map(Result::ok).map(|e| e.path()).collect();
    out.sort();
    Ok(out)
}

fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}

fn mtime_age(path: &Path) -> Duration {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .unwrap_or_default()
}

/// Copies a tree without following links: files (with their modes), dirs, symlinks as
/// symlinks (a trial dir is written from inside a sandbox: a link there must not make us copy
/// a host file). Other kinds (fifos, sockets) are skipped. `skip` gets paths relative to `src`.
fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(), CacheError> {
    for entry in walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| CacheError::Io {
            context: format!("walking {}", src.display()),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        if skip(rel) {
            continue;
        }
        let to = dst.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to).map_err(io_err(format!("creating {}", to.display())))?;
            if let Ok(meta) = entry.metadata() {
                let _ = std::fs::set_permissions(&to, meta.permissions());
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .map_err(io_err(format!("reading link {}", entry.path().display())))?;
            std::os::unix::fs::symlink(&target, &to)
                .map_err(io_err(format!("linking {}", to.display())))?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).map_err(io_err(format!(
                "copying {} to {}",
                entry.path().display(),
                to.display()
            )))?;
        }
    }
    Ok(())
}

/// A deterministic content hash of a harness dir: every file's and symlink's relative path
/// (sorted), a file's executable bit and bytes, a link's target; `.git` left out, and other
/// mode bits and empty dirs too, as git does. So a committed tree and an identical
/// working tree (whatever the umask) hash the same.
pub fn tree_hash(dir: &Path) -> Result<String, CacheError> {
    use std::os::unix::fs::PermissionsExt;
    let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git")
    {
        let entry = entry.map_err(|e| CacheError::Io {
            context: format!("walking {}", dir.display()),
            source: e.into(),
        })?;
        let kind = entry.file_type();
        if kind.is_file() || kind.is_symlink() {
            paths.insert(entry.into_path());
        }
    }
    let mut h = Sha256::new();
    for path in paths {
        let rel = path.strip_prefix(dir).unwrap_or(&path);
        let rel = rel.to_string_lossy();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(io_err(format!("reading {}", path.display())))?;
        let (tag, body) = if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(io_err(format!("reading {}", path.display())))?;
            ("link", target.to_string_lossy().into_owned().into_bytes())
        } else {
            let exec = meta.permissions().mode() & 0o111 != 0;
            let bytes =
                std::fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
            (if exec { "exec" } else { "file" }, bytes)
        };
        for part in [tag.as_bytes(), rel.as_bytes(), &body] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(root: &Path) {
        std::fs::create_dir_all(root.join("prompts")).unwrap();
        std::fs::create_dir_all(root.join("tools")).unwrap();
        std::fs::write(root.join("harness.toml"), "name = \"h\"\n").unwrap();
        std::fs::write(root.join("prompts/system.md"), "be good\n").unwrap();
        std::fs::write(root.join("tools/t.py"), "print(1)\n").unwrap();
    }

    #[test]
    fn tree_hash_is_content_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        tree(a.path());
        tree(b.path());
        let ha = tree_hash(a.path()).unwrap();
        assert_eq!(ha, tree_hash(b.path()).unwrap(), "same content, same hash");
        assert_eq!(ha.len(), 64);

        // .git, empty dirs and non-exec mode bits are not content.
        std::fs::create_dir_all(b.path().join(".git/objects")).unwrap();
        std::fs::write(b.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::create_dir_all(b.path().join("empty")).unwrap();
        std::fs::set_permissions(
            b.path().join("prompts/system.md"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(ha, tree_hash(b.path()).unwrap(), ".git is ignored");

        // The exec bit is.
        std::fs::set_permissions(
            b.path().join("tools/t.py"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let hb = tree_hash(b.path()).unwrap();
        assert_ne!(ha, hb, "the exec bit changes the hash");
        std::fs::set_permissions(
            b.path().join("tools/t.py"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert_eq!(ha, tree_hash(b.path()).unwrap());

        // Content and names are.
        std::fs::write(b.path().join("prompts/system.md"), "be better\n").unwrap();
        assert_ne!(ha, tree_hash(b.path()).unwrap(), "content changes the hash");
        std::fs::write(b.path().join("prompts/system.md"), "be good\n").unwrap();
        std::fs::rename(b.path().join("tools/t.py"), b.path().join("tools/u.py")).unwrap();
        assert_ne!(
            ha,
            tree_hash(b.path()).unwrap(),
            "a rename changes the hash"
        );
        std::fs::rename(b.path().join("tools/u.py"), b.path().join("tools/t.py")).unwrap();
        std::fs::write(b.path().join("new.md"), "").unwrap();
        assert_ne!(
            ha,
            tree_hash(b.path()).unwrap(),
            "an empty new file changes it"
        );
    }

    #[test]
    fn key_parts_all_count() {
        let k = CacheKey {
            harness_tree: "h".into(),
            model_key: "m".into(),
            task_name: "t".into(),
            task_checksum: "c".into(),
            image_id: "docker:i".into(),
            attempt: 0,
        };
        let d = k.digest();
        assert_eq!(d.len(), 64);
        let variants = [
            CacheKey {
                harness_tree: "h2".into(),
                ..k.clone()
            },
            CacheKey {
                model_key: "m2".into(),
                ..k.clone()
            },
            CacheKey {
                task_name: "t2".into(),
                ..k.clone()
            },
            CacheKey {
                task_checksum: "c2".into(),
                ..k.clone()
            },
            CacheKey {
                image_id: "docker:".into(),
                ..k.clone()
            },
            CacheKey {
                attempt: 1,
                ..k.clone()
            },
            // A moved boundary is another key.
            CacheKey {
                harness_tree: "hm".into(),
                model_key: String::new(),
                ..k
            },
        ];
        for v in variants {
            assert_ne!(v.digest(), d, "{v:?}");
        }
    }

    fn trial_result(exception: Option<&str>, reward: Option<f64>) -> TrialResult {
        serde_json::from_value(serde_json::json!({
            "id": "x", "task_name": "t", "trial_name": "t__1", "trial_uri": "file:///x",
            "task_id": {"path": "tasks/t"}, "source": null, "task_checksum": "0",
            "config": {}, "agent_info": {"name": "oracle", "version": "1", "model_info": null},
            "agent_result": {"n_input_tokens": null, "n_cache_tokens": null,
                "n_output_tokens": null, "cost_usd": 0.5, "model_usage": null,
                "rollout_details": null, "metadata": null},
            "verifier_result": reward.map(|r| serde_json::json!({"rewards": {"reward": r}})),
            "verifier_environment_mode": "shared",
            "exception_info": exception.map(|e| serde_json::json!({
                "exception_type": e, "exception_message": "m", "exception_traceback": "",
                "occurred_at": "2025-01-01T00:00:00Z"})),
            "started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:01:00Z",
            "environment_setup": null, "agent_setup": null, "agent_execution": null,
            "verifier": null, "step_results": null
        }))
        .unwrap()
    }

    #[test]
    fn only_real_measurements_qualify() {
        assert!(qualifies(&trial_result(None, Some(1.0))));
        assert!(qualifies(&trial_result(None, Some(0.0))));
        // The agent's own failure with a reward is a measurement.
        assert!(qualifies(&trial_result(
            Some("AgentTimeoutError"),
            Some(0.0)
        )));
        assert!(!qualifies(&trial_result(None, None)), "no reward");
        assert!(
            !qualifies(&trial_result(Some("RuntimeError"), Some(1.0))),
            "an infrastructure failure, even with a reward"
        );
        let mut copy = trial_result(None, Some(1.0));
        copy.cached_from = Some("/elsewhere".into());
        assert!(!qualifies(&copy), "a copy is not stored again");
        let mut unfinished = trial_result(None, Some(1.0));
        unfinished.finished_at = None;
        assert!(!qualifies(&unfinished));
    }

    fn stored(cache: &TrialCache, src: &Path, attempt: u32, result: &TrialResult) -> CacheKey {
        let key = CacheKey {
            harness_tree: "h".into(),
            model_key: "m".into(),
            task_name: "t".into(),
            task_checksum: "c".into(),
            image_id: "docker:img".into(),
            attempt,
        };
        std::fs::create_dir_all(src.join("agent")).unwrap();
        std::fs::write(src.join("agent/trajectory.json"), "{}").unwrap();
        autoagent_harbor::TrialDir::new(src)
            .write_result(result)
            .unwrap();
        assert!(cache.store(&key, src, result).unwrap());
        key
    }

    #[test]
    fn store_lookup_list_prune() {
        let d = tempfile::tempdir().unwrap();
        let cache = TrialCache::open(&d.path().join("cache")).unwrap();
        let good = trial_result(None, Some(1.0));
        let k0 = stored(&cache, &d.path().join("job/t__1"), 0, &good);
        let k1 = stored(&cache, &d.path().join("job/t__2"), 1, &good);
        // Already there: not written again.
        assert!(!cache.store(&k0, &d.path().join("job/t__1"), &good).unwrap());
        // Not a measurement: never written.
        let infra = trial_result(Some("RuntimeError"), None);
        let k2 = CacheKey {
            attempt: 2,
            ..k0.clone()
        };
        assert!(
            !cache
                .store(&k2, &d.path().join("job/t__1"), &infra)
                .unwrap()
        );
        assert!(cache.lookup(&k2).is_none());

        let hit = cache.lookup(&k0).unwrap();
        assert_eq!(hit.result, good);
        assert_eq!(hit.info.cost_usd, Some(0.5));
        assert_eq!(hit.info.trial_path, d.path().join("job/t__1"));
        let dest = d.path().join("restored");
        hit.restore(&dest).unwrap();
        assert!(dest.join("agent/trajectory.json").is_file());
        assert!(
            !dest.join("result.json").exists(),
            "the caller writes it last"
        );

        let listing = cache.list().unwrap();
        let attempts: Vec<u32> = listing
            .entries
            .iter()
            .map(|e| e.info.parts.attempt)
            .collect();
        assert_eq!(attempts, [0, 1]);
        assert!(listing.entries.iter().all(|e| e.size_bytes > 0));
        assert!(listing.broken.is_empty());

        // A young temp dir may be a write in progress: prune leaves it, unless --all.
        std::fs::create_dir_all(d.path().join("cache/tmp/in-progress")).unwrap();
        std::fs::create_dir_all(d.path().join("cache/entries/not-an-entry")).unwrap();
        assert_eq!(cache.list().unwrap().broken.len(), 2);
        let r = cache.prune(Some(Duration::from_secs(3600)), false).unwrap();
        assert_eq!(
            r,
            PruneReport {
                removed_entries: 0,
                removed_broken: 1,
                freed_bytes: 0,
                kept_entries: 2
            }
        );
        assert!(cache.lookup(&k1).is_some());
        let r = cache.prune(Some(Duration::ZERO), false).unwrap();
        assert_eq!(r.removed_entries, 2);
        assert!(r.freed_bytes > 0);
        assert!(cache.lookup(&k0).is_none());
        assert_eq!(cache.list().unwrap().broken.len(), 1, "the temp dir");
        let r = cache.prune(None, true).unwrap();
        assert_eq!(r.removed_broken, 1);
        let listing = cache.list().unwrap();
        assert!(listing.entries.is_empty() && listing.broken.is_empty());
    }

    #[test]
    fn an_entry_under_another_name_is_not_a_hit() {
        let d = tempfile::tempdir().unwrap();
        let cache = TrialCache::open(&d.path().join("cache")).unwrap();
        let k0 = stored(
            &cache,
            &d.path().join("t__1"),
            0,
            &trial_result(None, Some(1.0)),
        );
        let k1 = CacheKey {
            attempt: 1,
            ..k0.clone()
        };
        // Someone copied an entry to another key's name.
        std::fs::rename(
            d.path().join("cache/entries").join(k0.digest()),
            d.path().join("cache/entries").join(k1.digest()),
        )
        .unwrap();
        assert!(cache.lookup(&k1).is_none());
        assert!(cache.lookup(&k0).is_none());
        let broken = cache.list().unwrap().broken;
        assert!(broken[0].reason.contains("does not match"), "{broken:?}");
    }

    #[test]
    fn copy_tree_keeps_links_as_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("agent")).unwrap();
        std::fs::write(src.join("agent/a.txt"), "a").unwrap();
        std::fs::write(src.join("result.json"), "{}").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", src.join("agent/link")).unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst, &|rel| rel == Path::new("result.json")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.join("agent/a.txt")).unwrap(),
            "a"
        );
        assert!(!dst.join("result.json").exists());
        let meta = std::fs::symlink_metadata(dst.join("agent/link")).unwrap();
        assert!(meta.file_type().is_symlink());
    }
}
