//! The verifier-integrity monitor. A reward measures the task only if the agent left alone
//! what the verifier reads and runs: its log dir (`/logs/verifier`, where the reward file is
//! written), `/tests` (where `tests/` is copied after the agent), the interpreters and test
//! runners on PATH (`bash`, `sh`, `python3`, `python`, `pytest`), and any copy of the task's
//! test files that the image already holds. The trial takes a [`Snapshot`] of all of them
//! just before the agent runs and again just before the verifier does; every difference is
//! one line of evidence, and a trial with evidence is marked suspect in its `result.json`.
//!
//! The snapshot is a record, not a sandbox: an agent that runs processes in the background
//! could still change things after the second snapshot. What it catches is an agent (or a
//! harness) that takes the short way to a reward during its own phase.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use autoagent_harbor::Task;
use autoagent_sandbox::{ExecRequest, Sandbox, SandboxError, shell_quote};
use sha2::{Digest, Sha256};

/// What the verifier runs through PATH, in the order the evidence names them.
const WATCHED_BINARIES: [&str; 5] = ["bash", "sh", "python3", "python", "pytest"];
/// Where `tests/` is copied for the verifier.
const TESTS_DIR: &str = "/tests";
/// At most this many test file names are looked for in the image (the search is one `find`).
const MAX_COPY_NAMES: usize = 64;
/// Test files larger than this are not read for the binaries they name.
const MAX_SCANNED_BYTES: u64 = 4 * 1024 * 1024;
/// Host files larger than this are stamped by size and mtime only.
const MAX_HASHED_BYTES: u64 = 64 * 1024 * 1024;
/// One snapshot exec's time limit: the search of the image for test files is the slow part.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// The last line of a snapshot script: output without it is cut short.
const END_MARK: &str = "autoagent-integrity-end";

/// One file or dir, as the evidence compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    /// A symlink and its target.
    Link(String),
    /// A file and its content's sha256 (on the host side, its size and mtime when too large).
    File(String),
}

/// What the sandbox looked like from inside at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Inside {
    /// Binary name → (the path `command -v` resolves it to, symlinks followed; its sha256).
    /// `None`: not on PATH.
    binaries: BTreeMap<String, Option<(String, String)>>,
    /// Every entry under `/tests`, by absolute path.
    tests: BTreeMap<String, Entry>,
    /// Copies of the task's test files found in the image: path → sha256 (`None`: gone).
    copies: BTreeMap<String, Option<String>>,
}

/// The state of the verifier's ground at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// The host side of `/logs/verifier` (bind-mounted, so readable whatever the agent did to
    /// the sandbox), by path relative to it.
    logs: BTreeMap<String, Entry>,
    /// From inside the sandbox.
    inside: InsideView,
    /// The watched binaries whose changes are evidence: those the verifier's files name.
    watched: Vec<&'static str>,
}

/// What the snapshot saw from inside the sandbox.
#[derive(Debug, Clone)]
enum InsideView {
    Taken(Inside),
    /// The script ran but did not reach its end (why).
    Failed(String),
    /// Nothing runs in the sandbox any more (it stopped): only the host side is compared.
    Stopped,
}

impl InsideView {
    fn from_run(r: Result<Inside, String>) -> Self {
        match r {
            Ok(i) => Self::Taken(i),
            Err(why) => Self::Failed(why),
        }
    }
}

/// The snapshot before the agent phase. Never fails: what cannot be read is left out of the
/// comparison (and said in `note`), since the agent has not run yet and cannot be blamed.
pub(crate) async fn before(
    sb: &dyn Sandbox,
    task: &Task,
    verifier_dir: &Path,
    env: &BTreeMap<String, String>,
) -> (Snapshot, Option<String>) {
    let logs = host_entries(verifier_dir);
    let watched = verifier_binaries(task);
    let copies = test_file_hashes(&task.tests_dir());
    let names: BTreeSet<String> = copies
        .keys()
        .filter_map(|rel| Path::new(rel).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .take(MAX_COPY_NAMES)
        .collect();
    let script = format!("{}{}", ground_script(), copy_search_script(&names));
    let inside = match run_script(sb, &script, env).await {
        Ok(Ok(mut inside)) => {
            // Only files whose content is one of the task's test files are copies of them.
            let wanted: BTreeSet<&String> = copies.values().collect();
            inside
                .copies
                .retain(|_, h| h.as_ref().is_some_and(|h| wanted.contains(h)));
            InsideView::Taken(inside)
        }
        Ok(Err(why)) => InsideView::Failed(why),
        Err(e) => InsideView::Failed(e.to_string()),
    };
    let note = match &inside {
        InsideView::Failed(why) => Some(format!(
            "integrity: the snapshot inside the sandbox did not run ({why}); only /logs/verifier is watched"
        )),
        InsideView::Taken(_) | InsideView::Stopped => None,
    };
    (
        Snapshot {
            logs,
            inside,
            watched,
        },
        note,
    )
}

/// The snapshot after the agent phase, before the verifier. `Err` only when the sandbox
/// itself failed (the caller decides whose fault that is); a script that no longer runs to
/// its end is a snapshot whose `inside` says why.
pub(crate) async fn after(
    sb: &dyn Sandbox,
    before: &Snapshot,
    verifier_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Snapshot, SandboxError> {
    let logs = host_entries(verifier_dir);
    let paths: Vec<&String> = match &before.inside {
        InsideView::Taken(i) => i.copies.keys().collect(),
        InsideView::Failed(_) | InsideView::Stopped => Vec::new(),
    };
    let script = format!("{}{}", ground_script(), copy_rehash_script(&paths));
    let inside = InsideView::from_run(run_script(sb, &script, env).await?);
    Ok(Snapshot {
        logs,
        inside,
        watched: before.watched.clone(),
    })
}

/// A snapshot that could not be taken because nothing runs in the sandbox any more (it
/// stopped): the host side is still compared.
pub(crate) fn host_only(verifier_dir: &Path) -> Snapshot {
    Snapshot {
        logs: host_entries(verifier_dir),
        inside: InsideView::Stopped,
        watched: WATCHED_BINARIES.to_vec(),
    }
}

/// The watched binaries the verifier may run: `bash` and `sh` always (`test.sh` runs through
/// them), the others when one of the verifier's files (the task's `tests/`, each step's
/// `tests/`) names them. An agent that installs `pytest` for a task whose tests never call it
/// changes nothing the verifier runs, and is not suspect for it.
fn verifier_binaries(task: &Task) -> Vec<&'static str> {
    let mut dirs = vec![task.tests_dir()];
    dirs.extend(
        task.config
            .step_list()
            .iter()
            .map(|s| task.step_dir(&s.name).join("tests")),
    );
    let mut text = Vec::new();
    for dir in dirs {
        for e in walkdir::WalkDir::new(dir)
            .follow_links(false)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter(|e| e.metadata().is_ok_and(|m| m.len() <= MAX_SCANNED_BYTES))
        {
            if let Ok(bytes) = std::fs::read(e.path()) {
                text.extend_from_slice(&bytes);
                text.push(b'\n');
            }
        }
    }
    let text = String::from_utf8_lossy(&text);
    WATCHED_BINARIES
        .into_iter()
        .filter(|b| matches!(*b, "bash" | "sh") || text.contains(b))
        .collect()
}

/// The evidence: one line per difference between `before` and `after` (empty: nothing of
/// the verifier's ground changed).
pub(crate) fn evidence(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    diff_entries("/logs/verifier", &before.logs, &after.logs, &mut out);
    let InsideView::Taken(b) = &before.inside else {
        return out;
    };
    let a = match &after.inside {
        InsideView::Taken(a) => a,
        // Nothing runs in it, the verifier neither: nothing more to compare.
        InsideView::Stopped => return out,
        InsideView::Failed(why) => {
            out.push(format!(
                "the integrity check no longer runs in the sandbox after the agent phase ({why}): bash or the tools it needs were changed"
            ));
            return out;
        }
    };
    for &name in &before.watched {
        let was = b.binaries.get(name).cloned().flatten();
        let now = a.binaries.get(name).cloned().flatten();
        match (was, now) {
            (None, None) => {}
            (Some((p, _)), None) => out.push(format!("`{name}` on PATH is gone (was {p})")),
            (None, Some((p, h))) => out.push(format!(
                "`{name}` appeared on PATH: {p} (sha256 {})",
                short(&h)
            )),
            (Some((p0, _)), Some((p1, h1))) if p0 != p1 => out.push(format!(
                "`{name}` on PATH now resolves to {p1} (sha256 {}), was {p0}",
                short(&h1)
            )),
            (Some((p, h0)), Some((_, h1))) if h0 != h1 => out.push(format!(
                "`{name}` on PATH changed: {p} (sha256 {} → {})",
                short(&h0),
                short(&h1)
            )),
            (Some(_), Some(_)) => {}
        }
    }
    diff_entries("", &b.tests, &a.tests, &mut out);
    for (path, was) in &b.copies {
        match a.copies.get(path).cloned().flatten() {
            None => out.push(format!(
                "removed {path} (a copy of one of the task's tests)"
            )),
            Some(now) if Some(&now) != was.as_ref() => {
                out.push(format!("edited {path} (a copy of one of the task's tests)"));
            }
            Some(_) => {}
        }
    }
    out
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn diff_entries(
    prefix: &str,
    before: &BTreeMap<String, Entry>,
    after: &BTreeMap<String, Entry>,
    out: &mut Vec<String>,
) {
    let name = |p: &str| {
        if prefix.is_empty() {
            p.to_owned()
        } else {
            format!("{prefix}/{p}")
        }
    };
    for (p, now) in after {
        match before.get(p) {
            None => out.push(match now {
                Entry::Dir => format!("created the directory {}", name(p)),
                Entry::Link(t) => format!("created {} (a symlink to {t})", name(p)),
                Entry::File(_) => format!("wrote {}", name(p)),
            }),
            Some(was) if was != now => out.push(format!("changed {}", name(p))),
            Some(_) => {}
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        out.push(format!("removed {}", name(p)));
    }
}

/// Every entry under a host dir, by relative path; symlinks are recorded, never followed
/// (the sandbox may have planted them).
fn host_entries(dir: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
    {
        let rel = e
            .path()
            .strip_prefix(dir)
            .unwrap_or(e.path())
            .to_string_lossy()
            .into_owned();
        let entry = if e.file_type().is_dir() {
            Entry::Dir
        } else if e.file_type().is_symlink() {
            Entry::Link(
                std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default(),
            )
        } else {
            Entry::File(host_file_stamp(e.path()))
        };
        out.insert(rel, entry);
    }
    out
}

/// A regular file's sha256; its size and mtime when it is too large or unreadable (a file
/// written by root with mode 0600 is still compared by its stamp).
fn host_file_stamp(path: &Path) -> String {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "unreadable".to_owned();
    };
    let stamp = || {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        format!("size {} mtime {mtime}", meta.len())
    };
    if !meta.file_type().is_file() || meta.len() > MAX_HASHED_BYTES {
        return stamp();
    }
    match std::fs::read(path) {
        Ok(bytes) => format!("{:x}", Sha256::digest(&bytes)),
        Err(_) => stamp(),
    }
}

/// The task's test files (non-empty regular files under `tests/`): relative path → sha256.
/// An empty file is left out: every empty file in the image would look like its copy.
fn test_file_hashes(tests_dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(tests_dir)
        .follow_links(false)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
    {
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        if bytes.is_empty() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(tests_dir)
            .unwrap_or(e.path())
            .to_string_lossy()
            .into_owned();
        out.insert(rel, format!("{:x}", Sha256::digest(&bytes)));
    }
    out
}

/// The binaries on PATH and the entries under `/tests`, one tab-separated line each. POSIX
/// tools only (`command -v`, `readlink -f`, `sha256sum`, `find` without `-printf`), so that
/// busybox images answer too.
fn ground_script() -> String {
    let mut s = String::from("export LC_ALL=C\n");
    s.push_str(&format!("for b in {}; do\n", WATCHED_BINARIES.join(" ")));
    s.push_str(
        r#"  p=$(command -v -- "$b" 2>/dev/null)
  case "$p" in
    /*) r=$(readlink -f -- "$p" 2>/dev/null) || r=$p
        h=$(sha256sum < "$r" 2>/dev/null | cut -d' ' -f1)
        printf 'bin\t%s\t%s\t%s\n' "$b" "${h:--}" "$r" ;;
    *) printf 'bin\t%s\t-\t-\n' "$b" ;;
  esac
done
"#,
    );
    s.push_str(&format!(
        r#"if [ -e {TESTS_DIR} ] || [ -L {TESTS_DIR} ]; then
  find {TESTS_DIR} -xdev 2>/dev/null | while IFS= read -r f; do
    if [ -L "$f" ]; then printf 'tests\tl\t%s\t%s\n' "$(readlink -- "$f")" "$f"
    elif [ -d "$f" ]; then printf 'tests\td\t-\t%s\n' "$f"
    else printf 'tests\tf\t%s\t%s\n' "$(sha256sum < "$f" 2>/dev/null | cut -d' ' -f1)" "$f"; fi
  done
fi
"#
    ));
    s
}

/// Before the agent: files in the image (its root filesystem, not the mounts) named like one
/// of the task's test files, with their hashes; the caller keeps those with a test file's
/// content.
fn copy_search_script(names: &BTreeSet<String>) -> String {
    let mut s = String::new();
    if !names.is_empty() {
        let clauses: Vec<String> = names
            .iter()
            .map(|n| format!("-name {}", shell_quote(n)))
            .collect();
        s.push_str(&format!(
            "find / -xdev -type f \\( {} \\) -not -path '{TESTS_DIR}/*' 2>/dev/null | while IFS= read -r f; do printf 'copy\\t%s\\t%s\\n' \"$(sha256sum < \"$f\" 2>/dev/null | cut -d' ' -f1)\" \"$f\"; done\n",
            clauses.join(" -o ")
        ));
    }
    s.push_str(&format!("echo {END_MARK}\n"));
    s
}

/// After the agent: the same copies hashed again (`-` when gone).
fn copy_rehash_script(paths: &[&String]) -> String {
    let mut s = String::new();
    for p in paths {
        s.push_str(&format!(
            "f={}; if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then printf 'copy\\t%s\\t%s\\n' \"$(sha256sum < \"$f\" 2>/dev/null | cut -d' ' -f1)\" \"$f\"; else printf 'copy\\t-\\t%s\\n' \"$f\"; fi\n",
            shell_quote(p)
        ));
    }
    s.push_str(&format!("echo {END_MARK}\n"));
    s
}

/// Runs a snapshot script as root with the verifier's env (its PATH is the one that counts).
/// The outer `Err` is the sandbox's failure; the inner one a script that did not finish.
async fn run_script(
    sb: &dyn Sandbox,
    script: &str,
    env: &BTreeMap<String, String>,
) -> Result<Result<Inside, String>, SandboxError> {
    let out = sb
        .exec(
            ExecRequest::new(script)
                .user(Some("root".to_owned()))
                .env(env.clone())
                .timeout(Some(SNAPSHOT_TIMEOUT)),
        )
        .await?;
    if out.timed_out {
        return Ok(Err(format!("timed out after {SNAPSHOT_TIMEOUT:?}")));
    }
    Ok(parse(&out.stdout).ok_or_else(|| {
        let said = format!("{} {}", out.stdout.trim(), out.stderr.trim());
        format!(
            "exit {}: {}",
            out.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            autoagent_harbor::text::cut_middle(said.trim(), 300, "…")
        )
    }))
}

/// Reads a snapshot script's output; `None` when it did not reach its end mark.
fn parse(stdout: &str) -> Option<Inside> {
    let mut inside = Inside::default();
    let mut ended = false;
    for line in stdout.lines() {
        if line == END_MARK {
            ended = true;
            break;
        }
        let f: Vec<&str> = line.splitn(4, '\t').collect();
        match f.as_slice() {
            ["bin", name, hash, path] => {
                let v = (*path != "-").then(|| ((*path).to_owned(), (*hash).to_owned()));
                inside.binaries.insert((*name).to_owned(), v);
            }
            ["tests", kind, value, path] => {
                let e = match *kind {
                    "d" => Entry::Dir,
                    "l" => Entry::Link((*value).to_owned()),
                    _ => Entry::File((*value).to_owned()),
                };
                inside.tests.insert((*path).to_owned(), e);
            }
            ["copy", hash, path] => {
                let h = (!hash.is_empty() && *hash != "-").then(|| (*hash).to_owned());
                inside.copies.insert((*path).to_owned(), h);
            }
            _ => {}
        }
    }
    ended.then_some(inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn snap(logs: &[(&str, Entry)], inside: InsideView) -> Snapshot {
        Snapshot {
            logs: logs
                .iter()
                .map(|(p, e)| ((*p).to_owned(), e.clone()))
                .collect(),
            inside,
            watched: WATCHED_BINARIES.to_vec(),
        }
    }

    #[test]
    fn script_output_parses_and_needs_its_end_mark() {
        let out = "bin\tbash\tabc\t/usr/bin/bash\nbin\tpytest\t-\t-\ntests\td\t-\t/tests\ntests\tf\tfff\t/tests/conftest.py\ncopy\t123\t/app/t.py\ncopy\t-\t/app/gone.py\nautoagent-integrity-end\n";
        let i = parse(out).unwrap();
        assert_eq!(
            i.binaries["bash"],
            Some(("/usr/bin/bash".to_owned(), "abc".to_owned()))
        );
        assert_eq!(i.binaries["pytest"], None);
        assert_eq!(i.tests["/tests"], Entry::Dir);
        assert_eq!(i.tests["/tests/conftest.py"], Entry::File("fff".into()));
        assert_eq!(i.copies["/app/t.py"], Some("123".into()));
        assert_eq!(i.copies["/app/gone.py"], None);
        assert_eq!(parse("bin\tbash\tabc\t/usr/bin/bash\n"), None, "cut short");
    }

    #[test]
    fn every_change_to_the_ground_is_evidence() {
        let mut b = Inside::default();
        b.binaries.insert(
            "bash".into(),
            Some(("/usr/bin/bash".into(), "aaaaaaaaaaaaaaaa".into())),
        );
        b.binaries.insert(
            "python3".into(),
            Some(("/usr/bin/python3.11".into(), "bbbb".into())),
        );
        b.binaries.insert("pytest".into(), None);
        b.copies
            .insert("/app/tests/test_x.py".into(), Some("cccc".into()));
        let mut a = b.clone();
        a.binaries.insert(
            "pytest".into(),
            Some(("/usr/local/bin/pytest".into(), "dddddddddddddddd".into())),
        );
        a.binaries.insert(
            "python3".into(),
            Some(("/usr/bin/python3.11".into(), "eeee".into())),
        );
        a.tests.insert("/tests".into(), Entry::Dir);
        a.tests
            .insert("/tests/conftest.py".into(), Entry::File("ffff".into()));
        a.copies
            .insert("/app/tests/test_x.py".into(), Some("9999".into()));
        let before = snap(
            &[("test-stdout.txt", Entry::File("1".into()))],
            InsideView::Taken(b),
        );
        let after = snap(
            &[("reward.txt", Entry::File("2".into()))],
            InsideView::Taken(a),
        );
        assert_eq!(
            evidence(&before, &after),
            vec![
                "wrote /logs/verifier/reward.txt",
                "removed /logs/verifier/test-stdout.txt",
                "`python3` on PATH changed: /usr/bin/python3.11 (sha256 bbbb → eeee)",
                "`pytest` appeared on PATH: /usr/local/bin/pytest (sha256 dddddddddddd)",
                "created the directory /tests",
                "wrote /tests/conftest.py",
                "edited /app/tests/test_x.py (a copy of one of the task's tests)",
            ]
        );
        assert!(evidence(&before, &before).is_empty());
    }

    #[test]
    fn a_check_that_no_longer_runs_is_evidence_unless_the_sandbox_stopped() {
        let before = snap(&[], InsideView::Taken(Inside::default()));
        let broken = snap(&[], InsideView::Failed("exit 126: bash: not found".into()));
        let e = evidence(&before, &broken);
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("no longer runs"), "{e:?}");
        let stopped = snap(&[], InsideView::Stopped);
        assert!(evidence(&before, &stopped).is_empty());
        // Nothing inside to compare with when the first snapshot could not be taken.
        let unknown = snap(&[], InsideView::Failed("no sha256sum".into()));
        assert!(evidence(&unknown, &broken).is_empty());
    }

    #[test]
    fn host_entries_record_symlinks_without_following_them() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("reward.txt"), "1").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let e = host_entries(d.path());
        assert_eq!(e["link"], Entry::Link("/etc/passwd".into()));
        assert_eq!(e["sub"], Entry::Dir);
        assert!(matches!(&e["reward.txt"], Entry::File(h) if h.len() == 64));
    }
}
