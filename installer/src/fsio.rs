//! A directory or file made to be as asked: content, owner and mode. Each function
//! first looks, changes only what differs, and says whether it changed anything (or,
//! with `apply` false, whether it would). Files are written whole: a temporary file
//! with the final owner and mode, fsync'd, renamed over the old one, the directory
//! fsync'd, so after a power cut a file is the old one or the new one.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::error::InstallError;

/// A numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Owner {
    /// root:root.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

fn meta(path: &Path) -> Result<Option<std::fs::Metadata>, InstallError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(InstallError::io("stat", path, e)),
    }
}

/// Whether `m` has `owner` (an unknown owner, before the user exists, never matches).
fn owned(m: &std::fs::Metadata, owner: Option<Owner>) -> bool {
    owner.is_some_and(|o| m.uid() == o.uid && m.gid() == o.gid)
}

fn need_owner(owner: Option<Owner>, path: &Path) -> Result<Owner, InstallError> {
    owner.ok_or_else(|| InstallError::Invalid {
        what: path.display().to_string(),
        reason: "its owner does not exist yet".into(),
    })
}

/// Makes `path` a directory (its parents too, root's 0755) with `mode` and `owner`.
pub fn ensure_dir(
    path: &Path,
    mode: u32,
    owner: Option<Owner>,
    apply: bool,
) -> Result<bool, InstallError> {
    let m = meta(path)?;
    if let Some(m) = &m {
        if !m.is_dir() {
            return Err(InstallError::Conflict(format!(
                "{} exists and is not a directory: move it away",
                path.display()
            )));
        }
        if owned(m, owner) && m.mode() & 0o7777 == mode {
            return Ok(false);
        }
    }
    if !apply {
        return Ok(true);
    }
    let owner = need_owner(owner, path)?;
    if m.is_none() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| InstallError::io("create", parent, e))?;
        }
        std::fs::create_dir(path).map_err(|e| InstallError::io("create", path, e))?;
    }
    // Owner before mode: chown clears set-id bits, and the mode is the last word.
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| InstallError::io("chown", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| InstallError::io("chmod", path, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(true)
}

/// Makes `path` a regular file holding `bytes`, with `mode` and `owner`. A file with
/// the right bytes only has its owner and mode corrected.
pub fn ensure_file(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<Owner>,
    apply: bool,
) -> Result<bool, InstallError> {
    let m = meta(path)?;
    let same_bytes = match &m {
        Some(m) if m.is_file() && m.len() == bytes.len() as u64 => {
            std::fs::read(path).map_err(|e| InstallError::io("read", path, e))? == bytes
        }
        Some(m) if !m.is_file() => {
            return Err(InstallError::Conflict(format!(
                "{} exists and is not a regular file: move it away",
                path.display()
            )));
        }
        _ => false,
    };
    if let Some(m) = &m
        && same_bytes
        && owned(m, owner)
        && m.mode() & 0o7777 == mode
    {
        return Ok(false);
    }
    if !apply {
        return Ok(true);
    }
    let owner = need_owner(owner, path)?;
    if same_bytes {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
            .map_err(|e| InstallError::io("chown", path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| InstallError::io("chmod", path, e))?;
    } else {
        write_atomic(path, bytes, mode, owner)?;
    }
    Ok(true)
}

/// Makes `owner` the owner of `path` itself (a symlink's own owner, not its target's).
pub fn ensure_owner(path: &Path, owner: Option<Owner>, apply: bool) -> Result<bool, InstallError> {
    let Some(m) = meta(path)? else {
        return Ok(true);
    };
    if owned(&m, owner) {
        return Ok(false);
    }
    if !apply {
        return Ok(true);
    }
    let owner = need_owner(owner, path)?;
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| InstallError::io("chown", path, e))?;
    Ok(true)
}

/// Gives the tree at `path` to `owner` when its top is someone else's: a data dir
/// kept by an uninstall whose old user's id was since taken by another account must
/// not stay readable by that account. A top already `owner`'s is not walked.
pub fn ensure_tree_owner(
    path: &Path,
    owner: Option<Owner>,
    apply: bool,
) -> Result<bool, InstallError> {
    let Some(m) = meta(path)? else {
        return Ok(false);
    };
    if owned(&m, owner) {
        return Ok(false);
    }
    if apply {
        chown_tree(path, need_owner(owner, path)?)?;
    }
    Ok(true)
}

fn chown_tree(path: &Path, owner: Owner) -> Result<(), InstallError> {
    std::os::unix::fs::lchown(path, Some(owner.uid), Some(owner.gid))
        .map_err(|e| InstallError::io("chown", path, e))?;
    if std::fs::symlink_metadata(path)
        .map_err(|e| InstallError::io("stat", path, e))?
        .is_dir()
    {
        for entry in std::fs::read_dir(path).map_err(|e| InstallError::io("read", path, e))? {
            let entry = entry.map_err(|e| InstallError::io("read", path, e))?;
            chown_tree(&entry.path(), owner)?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` whole: a temporary file beside it (a fixed name, so one
/// left by a cut-short run is simply replaced) with `owner` and `mode`, fsync'd,
/// renamed over `path`, the directory fsync'd.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Owner,
) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| InstallError::io("create", dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.outpost-install"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| InstallError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| InstallError::io("write", &tmp, e))?;
    std::os::unix::fs::fchown(&f, Some(owner.uid), Some(owner.gid))
        .map_err(|e| InstallError::io("chown", &tmp, e))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.sync_all())
        .map_err(|e| InstallError::io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| InstallError::io("rename", path, e))?;
    sync_dir(dir)
}

/// Removes the file or symlink `path` if it is there.
pub fn remove_file(path: &Path, apply: bool) -> Result<bool, InstallError> {
    if meta(path)?.is_none() {
        return Ok(false);
    }
    if apply {
        std::fs::remove_file(path).map_err(|e| InstallError::io("remove", path, e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(true)
}

/// Removes the directory tree `path` if it is there.
pub fn remove_tree(path: &Path, apply: bool) -> Result<bool, InstallError> {
    if meta(path)?.is_none() {
        return Ok(false);
    }
    if apply {
        std::fs::remove_dir_all(path).map_err(|e| InstallError::io("remove", path, e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(true)
}

/// fsyncs a directory, so the names in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), InstallError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| InstallError::io("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_written_once_and_then_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b.txt");
        assert!(ensure_file(&p, b"x", 0o640, Some(Owner::ROOT), false).unwrap());
        assert!(!p.exists(), "a dry run writes nothing");
        assert!(ensure_file(&p, b"x", 0o640, Some(Owner::ROOT), true).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"x");
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640);
        assert!(!ensure_file(&p, b"x", 0o640, Some(Owner::ROOT), true).unwrap());
        assert!(ensure_file(&p, b"x", 0o644, Some(Owner::ROOT), false).unwrap());
        assert!(ensure_file(&p, b"y", 0o640, Some(Owner::ROOT), true).unwrap());
        assert_eq!(std::fs::read(&p).unwrap(), b"y");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        // Before the user exists, its files cannot be right yet.
        assert!(ensure_file(&p, b"y", 0o640, None, false).unwrap());
    }
}
