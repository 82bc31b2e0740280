//! Tar archives for the Engine API's archive endpoints, and for backends that move files as a
//! tar stream through an exec (`tar -xf - -C /` in, `tar -cf -` out: the Kubernetes backend).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::{Result, SandboxError};

/// Archives a host file or a directory's contents so that, extracted at `/`, they land at
/// `dest` (an absolute path): entries are named `dest/...`. Missing parents are created by the
/// daemon on extraction, which saves a `mkdir -p` exec per upload. No entry is written for
/// `dest` itself unless the directory is empty, so an existing directory keeps its mode and owner.
pub fn pack_at(host: &Path, dest: &str) -> Result<Vec<u8>> {
    let err = |e| SandboxError::io(format!("archiving {}", host.display()), e);
    let prefix = dest.trim_matches('/');
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let meta = std::fs::metadata(host)
        .map_err(|e| SandboxError::io(format!("reading {}", host.display()), e))?;
    if !meta.is_dir() {
        builder.append_path_with_name(host, prefix).map_err(err)?;
        return builder.into_inner().map_err(err);
    }
    let mut any = false;
    for entry in walkdir::WalkDir::new(host).min_depth(1).sort_by_file_name() {
        let entry =
            entry.map_err(|e| SandboxError::io(format!("reading {}", host.display()), e.into()))?;
        let rel = entry.path().strip_prefix(host).unwrap_or(entry.path());
        let name = format!("{prefix}/{}", rel.display());
        let kind = entry.file_type();
        // A socket or FIFO left in a dir (an agent's, in the artifacts) cannot be archived; it
        // is left out, as Harbor's tar filter leaves out special files.
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
            continue;
        }
        if kind.is_dir() {
            builder.append_dir(&name, entry.path()).map_err(err)?;
        } else {
            builder
                .append_path_with_name(entry.path(), &name)
                .map_err(err)?;
        }
        any = true;
    }
    if !any {
        builder.append_dir(prefix, host).map_err(err)?;
    }
    builder.into_inner().map_err(err)
}

/// Archives a build context: the directory's contents, relative to it.
pub(crate) fn pack_context(dir: &Path) -> Result<Vec<u8>> {
    let err = |e| SandboxError::io(format!("archiving {}", dir.display()), e);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir).map_err(err)?;
    builder.into_inner().map_err(err)
}

/// Archives one in-memory file.
pub fn pack_bytes(file_name: &str, bytes: &[u8], mode: u32) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    header.set_cksum();
    builder
        .append_data(&mut header, file_name, bytes)
        .map_err(|e| SandboxError::io(format!("archiving {file_name}"), e))?;
    builder
        .into_inner()
        .map_err(|e| SandboxError::io(format!("archiving {file_name}"), e))
}

/// Unpacks an archive from `GET /archive?path=SRC` (or `tar -cf - -C dirname(SRC)
/// basename(SRC)`), whose entries start with `basename(SRC)`.
/// A single file lands at `host_dest`; a directory's contents land inside `host_dest`.
///
/// What a sandbox hands back is written by its agent, so nothing is written through a symlink:
/// an archive's symlinks are made as links, a link already where a file or dir goes is
/// replaced, and an entry below a link (planted by this archive or an earlier download into
/// the same dir) is skipped, so no write leaves `host_dest`.
pub fn unpack_download(archive: &[u8], host_dest: &Path) -> Result<()> {
    unlink_if_symlink(host_dest)?;
    let mut ar = tar::Archive::new(archive);
    let entries = ar
        .entries()
        .map_err(|e| SandboxError::io("reading the downloaded archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| SandboxError::io("reading the downloaded archive", e))?;
        let path = entry
            .path()
            .map_err(|e| SandboxError::io("reading the downloaded archive", e))?
            .into_owned();
        let mut comps = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)));
        comps.next();
        let rest: PathBuf = comps.collect();
        let kind = entry.header().entry_type();
        if rest.as_os_str().is_empty() {
            if kind.is_dir() {
                std::fs::create_dir_all(host_dest).map_err(|e| {
                    SandboxError::io(format!("creating {}", host_dest.display()), e)
                })?;
                continue;
            }
            if let Some(parent) = host_dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| SandboxError::io(format!("creating {}", parent.display()), e))?;
            }
            write_entry(&mut entry, host_dest)?;
            continue;
        }
        if crosses_symlink(host_dest, &rest) {
            continue;
        }
        let target = host_dest.join(&rest);
        unlink_if_symlink(&target)?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| SandboxError::io(format!("creating {}", target.display()), e))?;
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| SandboxError::io(format!("creating {}", parent.display()), e))?;
            }
            write_entry(&mut entry, &target)?;
        } else if kind.is_symlink() {
            // Symlinks are kept as links; their targets are not followed out of the dest.
            if let (Ok(Some(link)), Some(parent)) = (entry.link_name(), target.parent()) {
                let _ = std::fs::create_dir_all(parent);
                let _ = std::fs::remove_file(&target);
                let _ = std::os::unix::fs::symlink(link.as_ref(), &target);
            }
        }
    }
    Ok(())
}

/// Whether a dir between `root` and `root/rest` (not `root/rest` itself) is a symlink: a write
/// to `root/rest` would then land wherever the link points.
pub fn crosses_symlink(root: &Path, rest: &Path) -> bool {
    let mut at = root.to_path_buf();
    let Some(parent) = rest.parent() else {
        return false;
    };
    parent.components().any(|c| {
        at.push(c);
        std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// Removes `path` when it is a symlink, so what is written there is not written through it.
fn unlink_if_symlink(path: &Path) -> Result<()> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path)
            .map_err(|e| SandboxError::io(format!("removing the link {}", path.display()), e))?;
    }
    Ok(())
}

fn write_entry<R: Read>(entry: &mut tar::Entry<R>, target: &Path) -> Result<()> {
    let mut buf = Vec::new();
    entry
        .read_to_end(&mut buf)
        .map_err(|e| SandboxError::io("reading the downloaded archive", e))?;
    std::fs::write(target, &buf)
        .map_err(|e| SandboxError::io(format!("writing {}", target.display()), e))?;
    if let Ok(mode) = entry.header().mode() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(target, std::fs::Permissions::from_mode(mode & 0o7777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_round_trip_through_a_download_shaped_archive() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/a.txt"), "A").unwrap();
        std::fs::write(src.path().join("b.txt"), "B").unwrap();
        // The daemon prefixes entries with the basename of the path asked for.
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all("logs", src.path()).unwrap();
        let ar = b.into_inner().unwrap();
        let dst = tempfile::tempdir().unwrap();
        unpack_download(&ar, dst.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("sub/a.txt")).unwrap(),
            "A"
        );
        assert_eq!(
            std::fs::read_to_string(dst.path().join("b.txt")).unwrap(),
            "B"
        );
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        // An earlier download left links to outside the dest.
        std::os::unix::fs::symlink(outside.path(), dst.path().join("d")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), dst.path().join("f")).unwrap();
        // This archive writes below the dir link, over the file link, and plants and then
        // uses a link of its own.
        let mut b = tar::Builder::new(Vec::new());
        let file = |b: &mut tar::Builder<Vec<u8>>, name: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &b"x"[..]).unwrap();
        };
        file(&mut b, "logs/d/escaped");
        file(&mut b, "logs/f");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_cksum();
        b.append_link(&mut h, "logs/l", outside.path()).unwrap();
        file(&mut b, "logs/l/escaped-too");
        let ar = b.into_inner().unwrap();
        unpack_download(&ar, dst.path()).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The file link was replaced by the file; the links are still links.
        assert!(
            std::fs::symlink_metadata(dst.path().join("f"))
                .unwrap()
                .is_file()
        );
        assert!(
            std::fs::symlink_metadata(dst.path().join("l"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn sockets_and_fifos_are_left_out_of_an_upload() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.txt"), "A").unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(src.path().join("s")).unwrap();
        let ar = pack_at(src.path(), "/logs/artifacts").unwrap();
        let names: Vec<String> = tar::Archive::new(&ar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["logs/artifacts/a.txt"]);
    }

    #[test]
    fn single_file_lands_at_dest() {
        let ar = pack_bytes("x.txt", b"hello", 0o644).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let target = dst.path().join("out/y.txt");
        unpack_download(&ar, &target).unwrap();
        assert_eq!(std::fs::read_to_string(target).unwrap(), "hello");
    }
}
