//! Harbor's `task_checksum`: `dirhash(task_dir, "sha256")` (the `dirhash` package, protocol
//! `name` + `data`, no empty directories, links followed) over the files Harbor's
//! `TaskFileFilter` lets through, reproduced bit for bit so a trial's checksum is the one Harbor
//! writes for the same task (`harbor/models/task/task.py: checksum`).
//!
//! A file's hash is the sha256 of its bytes; a directory's is the sha256 of its descriptor: one
//! entry per included child, `data:<file hash>\0name:<name>` or `dirhash:<dir hash>\0name:<name>`,
//! sorted and joined by `\0\0`. A directory with nothing included is left out of its parent.
//!
//! What `TaskFileFilter` excludes: every file named `.harborignore`, and what the patterns of a
//! `.harborignore` under `tests/`, `solution/` or `steps/*/{tests,solution}/` ignore. The second
//! part needs gitignore matching, which is not reproduced here: a task with such patterns gets
//! a checksum over all its files (see [`has_ignore_patterns`]); the runner says so in its log.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::task::hex;

/// The file Harbor reads ignore patterns from (and never hashes).
pub const IGNORE_FILE: &str = ".harborignore";

/// Harbor's `task_checksum` of `dir`; `None` when nothing in it can be hashed (Harbor raises).
pub fn task_checksum(dir: &Path) -> Option<String> {
    dir_hash(dir, 0)
}

/// Whether some `.harborignore` under `dir` has a pattern (a line that is not blank or a
/// comment): then [`task_checksum`] may differ from Harbor's.
pub fn has_ignore_patterns(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == IGNORE_FILE && e.file_type().is_file())
        .any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.lines()
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            })
        })
}

/// The lock file's task digest (`lock.json` `task.digest`, without its `sha256:` prefix):
/// Harbor's `Packager.compute_content_hash`, a sha256 over `<relative path>\0<file sha256>\n`
/// of `task.toml`, `instruction.md`, `README.md`, `trajectory.json` and the files under
/// `environment/`, `tests/`, `solution/` and `steps/`, sorted by path, without `.harborignore`
/// files and Harbor's default ignores (`__pycache__/`, `*.pyc`, `.DS_Store`, `*.swp`, `*.swo`,
/// `*~`). A task's own `.gitignore` replaces those defaults in Harbor; it is not read here.
pub fn content_digest(dir: &Path) -> String {
    let mut files: Vec<(String, std::path::PathBuf)> = Vec::new();
    for single in [
        "task.toml",
        "instruction.md",
        "README.md",
        "trajectory.json",
    ] {
        let p = dir.join(single);
        if p.is_file() {
            files.push((single.to_owned(), p));
        }
    }
    for sub in ["environment", "tests", "solution", "steps"] {
        for e in walkdir::WalkDir::new(dir.join(sub))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
        {
            let rel = e
                .path()
                .strip_prefix(dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((rel, e.into_path()));
        }
    }
    files.retain(|(rel, _)| !default_ignored(rel));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut outer = Sha256::new();
    for (rel, path) in files {
        outer.update(format!("{rel}\0{}\n", file_hash(&path).unwrap_or_default()).as_bytes());
    }
    hex(&outer.finalize())
}

fn default_ignored(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel.split('/').any(|part| part == "__pycache__")
        || name == IGNORE_FILE
        || name == ".DS_Store"
        || [".pyc", ".swp", ".swo", "~"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// Links are followed, as `dirhash` does; a cycle ends at this depth rather than recursing
/// for ever (`dirhash` raises on one).
const MAX_DEPTH: usize = 64;

fn dir_hash(dir: &Path, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut entries: Vec<String> = Vec::new();
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        // `metadata` follows links: a link is hashed as what it points to, under its own name.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Some(h) = dir_hash(&path, depth + 1) {
                entries.push(format!("dirhash:{h}\0name:{name}"));
            }
        } else if meta.is_file() {
            if name == IGNORE_FILE {
                continue;
            }
            if let Some(h) = file_hash(&path) {
                entries.push(format!("data:{h}\0name:{name}"));
            }
        }
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort();
    Some(hex(&Sha256::digest(entries.join("\0\0").as_bytes())))
}

fn file_hash(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Some(hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Task(dir).checksum` of each example task, computed by Harbor 0.25.0 itself
    /// (`scripts/harbor-conformance.sh` compares them again against a live Harbor).
    const HARBOR: &[(&str, &str)] = &[
        (
            "agent-timeout",
            "a393dfe0632fe1c3ae001a1ff1326e1f6371ddd58afe6e967fecf3166cab35eb",
        ),
        (
            "broken-build",
            "394a81f71a2866da3c7a49b6e52960350e9c04e3602c98967d3a95b30e91b892",
        ),
        (
            "hello-file",
            "9451541c55e1ac477842eaaae41a7e87fc23ba36ff1839f5550e6e13eadf5ed8",
        ),
        (
            "multi-metric",
            "c74ecaddb54d58cc95c1dfb645781ffc2ed8c0e9837fdf5953a17d512eb0264f",
        ),
        (
            "multi-step",
            "d801631ec450aabf722610c15cd4b6f6ebfeb323b863d7c6b2348772d7f966f4",
        ),
        (
            "multi-step-final",
            "f8b3ea95d940f8a04b7f94b437140e4d7cfecab7a8e7902da0473a747b8e85c9",
        ),
        (
            "no-reward",
            "0aa7da28b0f4247b1642428b1ae1a32fd3caa44e8b27e1ce4805ff2e52072e87",
        ),
        (
            "partial-credit",
            "a984b746df71d600417ec67bcb3e15cee27b69eea4b17ffb4ace4fcf13d24d66",
        ),
        (
            "separate-verifier",
            "04a06871ec52d9eb0b9f96612748f174625b239a0f90e16aa3d6a5d9deb86d0a",
        ),
        (
            "workdir",
            "9d8784158e0dcca76cd32f0af83cb093a561f1c005ac54064af9323e02092d15",
        ),
    ];

    fn examples() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tasks")
    }

    #[test]
    fn the_example_tasks_hash_as_harbor_hashes_them() {
        for (task, want) in HARBOR {
            assert_eq!(
                task_checksum(&examples().join(task)).as_deref(),
                Some(*want),
                "{task}"
            );
            assert!(!has_ignore_patterns(&examples().join(task)));
        }
    }

    #[test]
    fn the_lock_digest_is_harbors() {
        // `Packager.compute_content_hash(task_dir)[0]` in Harbor 0.25.0.
        for (task, want) in [
            (
                "hello-file",
                "cf7c83b0016c75792bff28e8e27550c9918e273a454f9eeaa66fc296b2c0b46d",
            ),
            (
                "multi-metric",
                "fce041a5a8fd285ab602d89681c52230eb1aefc49569f2493fd6691ff076fb0d",
            ),
            (
                "workdir",
                "748ccbb657e047c97944182c14382baf1001428764336da6a5be4fdc96352890",
            ),
            (
                "multi-step",
                "d282b9631c1b189c4af2f827a1b217b988782497d36e05e658bb0cea0c528b2c",
            ),
            (
                "multi-step-final",
                "75cb2bea90826a506f488831ff27baf7c3750e7ae082162995fa7ea7291c1dce",
            ),
            (
                "separate-verifier",
                "0f998946a99a6df4678e4d02d2a4c999d45ed0fac73d38ccc2317e824521860e",
            ),
        ] {
            assert_eq!(content_digest(&examples().join(task)), want, "{task}");
        }
        assert!(default_ignored("tests/__pycache__/x.py"));
        assert!(default_ignored("solution/a.pyc") && !default_ignored("tests/test.sh"));
    }

    #[test]
    fn empty_dirs_and_ignore_files_do_not_count_and_links_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("tests")).unwrap();
        std::fs::write(t.join("instruction.md"), "x").unwrap();
        std::fs::write(t.join("tests/test.sh"), "y").unwrap();
        let before = task_checksum(&t).unwrap();
        std::fs::create_dir_all(t.join("empty/deeper")).unwrap();
        std::fs::write(t.join("tests/.harborignore"), "").unwrap();
        assert_eq!(task_checksum(&t).unwrap(), before);
        assert!(!has_ignore_patterns(&t));
        std::fs::write(t.join("tests/.harborignore"), "# c\n*.log\n").unwrap();
        assert!(has_ignore_patterns(&t));
        // A link to a file hashes as the file, under the link's name.
        std::os::unix::fs::symlink(t.join("instruction.md"), t.join("link.md")).unwrap();
        let with_link = task_checksum(&t).unwrap();
        std::fs::remove_file(t.join("link.md")).unwrap();
        std::fs::write(t.join("link.md"), "x").unwrap();
        assert_eq!(task_checksum(&t).unwrap(), with_link);
        std::fs::write(t.join("link.md"), "z").unwrap();
        assert_ne!(task_checksum(&t).unwrap(), with_link);
        assert_eq!(task_checksum(&d.path().join("none")), None);
    }
}
