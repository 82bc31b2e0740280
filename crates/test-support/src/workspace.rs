//! Fixture paths and a builder of throwaway workspaces made of the example tasks.

use std::path::{Path, PathBuf};

/// The repository's `examples/` (tasks, a harness).
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .canonicalize()
        .expect("examples/ exists")
}

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            std::fs::copy(&p, dst.join(e.file_name())).unwrap();
        }
    }
}

/// A directory for one test: example tasks copied in, files written where asked. Removed
/// when dropped.
pub struct TestWorkspace {
    dir: tempfile::TempDir,
}

impl Default for TestWorkspace {
    fn default() -> Self {
        Self::new()
    }
}

impl TestWorkspace {
    /// An empty directory under the system temp dir.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Copies the named example tasks into `<dir>/<into>/`.
    pub fn tasks(self, into: &str, names: &[&str]) -> Self {
        copy_tasks(&self.path().join(into), names);
        self
    }
    /// Writes a file (creating its directories).
    pub fn file(self, rel: &str, content: &str) -> Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }
}

/// Copies the named example tasks into `dir`.
pub fn copy_tasks(dir: &Path, names: &[&str]) {
    for t in names {
        copy_dir(&examples_dir().join("tasks").join(t), &dir.join(t));
    }
}
