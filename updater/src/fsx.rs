//! Durable file-system steps: a file written whole or not at all, a symlink replaced
//! atomically, a directory's entries synced.

use std::io::Write as _;
use std::path::Path;

use crate::error::UpdateError;

/// Writes `bytes` to `path` through a temporary file, fsync'd, renamed over `path`,
/// and the directory synced: after a power cut the file is the old or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), UpdateError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| UpdateError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| UpdateError::io("write", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| UpdateError::io("rename", path, e))?;
    sync_dir(dir)
}

/// Points the symlink `link` at `target` atomically (a new link renamed over it).
pub fn replace_symlink(link: &Path, target: &Path) -> Result<(), UpdateError> {
    let dir = link.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.new{}",
        link.file_name().and_then(|n| n.to_str()).unwrap_or("link"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| UpdateError::io("symlink", &tmp, e))?;
    std::fs::rename(&tmp, link).map_err(|e| UpdateError::io("rename", link, e))?;
    sync_dir(dir)
}

/// fsyncs a directory, so the names in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), UpdateError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| UpdateError::io("sync", dir, e))
}

/// Copies the tree at `from` to `to` (regular files and directories), each file
/// fsync'd.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), UpdateError> {
    copy_tree_except(from, to, |_| false)
}

/// [`copy_tree`] without the top-level entries `skip` names.
pub fn copy_tree_except(
    from: &Path,
    to: &Path,
    skip: impl Fn(&std::ffi::OsStr) -> bool,
) -> Result<(), UpdateError> {
    std::fs::create_dir_all(to).map_err(|e| UpdateError::io("create", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| UpdateError::io("read", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| UpdateError::io("read", from, e))?;
        if skip(&entry.file_name()) {
            continue;
        }
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| UpdateError::io("stat", &src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(|e| UpdateError::io("copy", &src, e))?;
            std::fs::File::open(&dst)
                .and_then(|f| f.sync_all())
                .map_err(|e| UpdateError::io("sync", &dst, e))?;
        }
    }
    sync_dir(to)
}
