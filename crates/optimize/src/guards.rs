//! The leak guard: a harness change must not carry task-specific literals. It scans the lines a
//! change adds for any task's name, the names of files in its `tests/` and `solution/`, and the
//! distinctive strings (quoted literals) of those files. A hit discards the change, with the
//! reason in the ledger: "if this exact task disappeared, would this still be a worthwhile
//! harness improvement?" — mechanically.

use std::collections::BTreeMap;
use std::path::Path;

use autoagent_harbor::Task;

/// Strings too common in test and solution scripts to mean anything.
const COMMON: &[&str] = &[
    "test.sh",
    "solve.sh",
    "reward.txt",
    "reward.json",
    "/dev/null",
    "/logs/verifier",
    "/logs/agent",
    "/logs/artifacts",
    "/tests",
    "/solution",
    "#!/bin/bash",
    "#!/usr/bin/env",
    "python3",
    "__main__",
    "utf-8",
    "/bin/bash",
    "bash",
    "pytest",
    "requirements.txt",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The literal found.
    pub literal: String,
    /// Where it comes from: `task hello-file: tests/test.sh`.
    pub source: String,
}

#[derive(Debug, Clone, Default)]
pub struct LeakGuard {
    /// literal → where it comes from.
    forbidden: BTreeMap<String, String>,
}

impl LeakGuard {
    /// Collects the forbidden literals of every task (train and holdout).
    pub fn new(tasks: &[Task]) -> Self {
        let mut forbidden = BTreeMap::new();
        for t in tasks {
            if t.name.len() >= 4 {
                forbidden.insert(t.name.clone(), format!("the name of task {}", t.name));
            }
            for sub in ["tests", "solution"] {
                let dir = t.dir.join(sub);
                for f in walk(&dir) {
                    let rel = f.strip_prefix(&t.dir).unwrap_or(&f).display().to_string();
                    let source = format!("task {}: {rel}", t.name);
                    if let Some(name) = f.file_name().map(|n| n.to_string_lossy().into_owned())
                        && name.len() >= 5
                        && !COMMON.contains(&name.as_str())
                    {
                        forbidden.entry(name).or_insert_with(|| source.clone());
                    }
                    if let Ok(text) = std::fs::read_to_string(&f) {
                        for lit in literals(&text) {
                            forbidden.entry(lit).or_insert_with(|| source.clone());
                        }
                    }
                }
            }
        }
        Self { forbidden }
    }

    /// The forbidden literals in the lines a unified diff adds.
    pub fn scan_diff(&self, diff: &str) -> Vec<Hit> {
        // Inside a hunk every `+` line is content (even one that starts `+++`); the `+++ b/…`
        // file header only comes between `diff --git` and the first `@@`.
        let mut in_hunk = false;
        let mut added_lines = Vec::new();
        for l in diff.lines() {
            if l.starts_with("diff --git ") {
                in_hunk = false;
            } else if l.starts_with("@@") {
                in_hunk = true;
            } else if in_hunk && let Some(rest) = l.strip_prefix('+') {
                added_lines.push(rest);
            }
        }
        let added = added_lines.join("\n");
        self.forbidden
            .iter()
            .filter(|(lit, _)| contains_word(&added, lit))
            .map(|(lit, source)| Hit {
                literal: lit.clone(),
                source: source.clone(),
            })
            .collect()
    }
}

/// `needle` in `hay`, not as part of a longer word (so the task `sort` does not match `sorted`).
fn contains_word(hay: &str, needle: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        let starts_word = needle.chars().next().is_some_and(is_word);
        let ends_word = needle.chars().next_back().is_some_and(is_word);
        let glued_before = starts_word && before.is_some_and(is_word);
        let glued_after = ends_word && after.is_some_and(is_word);
        !(glued_before || glued_after)
    })
}

/// Quoted literals of at least 6 characters with a letter in them: expected outputs, magic
/// values, specific paths.
fn literals(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in ['"', '\''] {
        let parts: Vec<&str> = text.split(q).collect();
        for (i, p) in parts.iter().enumerate() {
            if i % 2 == 1 && i + 1 < parts.len() {
                let s = p.trim();
                if s.chars().count() >= 6
                    && s.len() <= 200
                    && !s.contains('\n')
                    && s.chars().any(char::is_alphabetic)
                    && !s.starts_with('$')
                    && !COMMON.iter().any(|c| s == *c || s.starts_with("/logs/"))
                {
                    out.push(s.to_owned());
                }
            }
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(root: &Path, name: &str, test: &str) -> Task {
        let d = root.join(name);
        std::fs::create_dir_all(d.join("tests")).unwrap();
        std::fs::create_dir_all(d.join("environment")).unwrap();
        std::fs::write(d.join("task.toml"), "").unwrap();
        std::fs::write(d.join("instruction.md"), "x").unwrap();
        std::fs::write(d.join("tests/test.sh"), test).unwrap();
        std::fs::write(d.join("tests/expected_output.csv"), "a,b").unwrap();
        Task::load(&d, false).unwrap()
    }

    #[test]
    fn finds_names_files_and_literals_only_in_added_lines() {
        let d = tempfile::tempdir().unwrap();
        let t = task(
            d.path(),
            "regex-log",
            "#!/bin/bash\n[ \"$(cat /app/out)\" = \"Hello, world!\" ] && echo 1 > /logs/verifier/reward.txt\n",
        );
        let g = LeakGuard::new(&[t]);
        let diff = "diff --git a/p b/p\n--- a/prompts/system.md\n+++ b/prompts/system.md\n@@ -1 +1 @@\n-old Hello, world!\n+Always check your work.\n";
        assert!(g.scan_diff(diff).is_empty(), "removed lines do not count");
        let hits =
            g.scan_diff("@@ -1 +1 @@\n+If the output should be \"Hello, world!\", write it.\n");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].source, "task regex-log: tests/test.sh");
        assert_eq!(
            g.scan_diff("@@\n+For regex-log tasks, ...\n")[0].literal,
            "regex-log"
        );
        assert_eq!(
            g.scan_diff("@@\n+compare with expected_output.csv\n")[0].literal,
            "expected_output.csv"
        );
        assert!(
            g.scan_diff("@@\n+regex-logging is fine\n").is_empty(),
            "a longer word is not the name"
        );
        assert!(
            g.scan_diff("@@\n+write to /logs/verifier/reward.txt\n")
                .is_empty()
        );
    }
}
