//! What to print when a test fails: a directory's files, the small text ones in full.

use std::fmt::Write as _;
use std::path::Path;

/// Files read whole in a dump; everything else is listed.
const READ: &[&str] = &[
    "result.json",
    "trial.log",
    "test-stdout.txt",
    "job.log",
    "exception.txt",
    "oracle.txt",
    "results.tsv",
    "optimize.log",
    "state.json",
];

/// Every file under `dir`, sorted; the logs and results among them in full (clipped).
pub fn dump_dir(dir: &Path) -> String {
    let mut s = format!("=== dir {}\n", dir.display());
    let mut files: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        if READ.contains(&name.as_ref()) {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let _ = writeln!(s, "--- {}\n{}", f.display(), clip(&text, 4000));
        } else {
            let _ = writeln!(s, "--- {} (listed)", f.display());
        }
    }
    s
}

/// Long text cut for a log: its head and tail.
pub fn clip(s: &str, max: usize) -> String {
    autoagent_harbor::text::cut_middle(s, max, "[... clipped for the log ...]").into_owned()
}
