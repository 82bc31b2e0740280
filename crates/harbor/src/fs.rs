//! Host-side reads and writes of the files in a trial's dirs. `agent/`, `verifier/` and
//! `artifacts/logs/artifacts/` are bind-mounted read-write into the sandbox, so whatever is
//! there may have been planted by the code under test: these helpers never follow a symlink.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A file that could not be read or parsed, named with the field that did not fit.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: at `{}`: {}", path.display(), source.path(), source.inner())]
    Json {
        path: PathBuf,
        source: serde_path_to_error::Error<serde_json::Error>,
    },
}

impl ReadError {
    /// True when the file is not there at all (as opposed to unreadable or malformed).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Writes a file in a directory that a sandbox shares with the host (the trial's log dirs,
/// bind-mounted read-write): whatever the sandbox left at `path` — a symlink to a host file,
/// say — is removed first, and the file is created anew without following links.
pub fn write_shared(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

/// Reads a regular file from a directory that a sandbox shares with the host, refusing
/// symlinks and special files (a link to `/proc/self/environ` must not be read into a result).
pub fn read_shared(path: &Path) -> std::io::Result<String> {
    let m = std::fs::symlink_metadata(path)?;
    if !m.file_type().is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file; it is not read",
            path.display()
        )));
    }
    std::fs::read_to_string(path)
}

/// [`read_shared`], parsed as JSON into `T`.
pub fn read_shared_json<T: DeserializeOwned>(path: &Path) -> Result<T, ReadError> {
    let text = read_shared(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|source| ReadError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `bytes` to a temp file beside `path` and renames it over `path`: a reader (or a
/// resume after a kill) sees the whole file or none of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    write_shared(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_files_refuse_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secret");
        std::fs::write(&secret, "host secret").unwrap();
        let link = d.path().join("reward.txt");
        std::os::unix::fs::symlink(&secret, &link).unwrap();
        assert!(read_shared(&link).is_err(), "a symlink is not read");
        write_shared(&link, b"1").unwrap();
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
        assert_eq!(read_shared(&link).unwrap(), "1");
    }

    #[test]
    fn atomic_writes_replace_whole_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("result.json");
        write_atomic(&p, b"{\"a\": 1}").unwrap();
        write_atomic(&p, b"{\"a\": 2}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\": 2}");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "no temp file is left behind");
    }

    #[test]
    fn json_errors_name_the_file_and_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Doc {
            n: u64,
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("doc.json");
        std::fs::write(&p, r#"{"n": "x"}"#).unwrap();
        let e = read_shared_json::<Doc>(&p).unwrap_err().to_string();
        assert!(e.contains("doc.json") && e.contains("`n`"), "{e}");
        assert!(
            read_shared_json::<Doc>(&d.path().join("none.json"))
                .unwrap_err()
                .is_missing()
        );
    }
}
