//! Owner-only file handling for key material and credentials.
//!
//! Every secret this crate writes (the software sealing key, the sealed data key, the
//! device TLS key, the demo credentials) goes through [`write_private`]: it is created
//! with mode 0600 from the first byte (never chmod'ed after the fact), written to a
//! temporary file, fsync'ed and renamed into place, so a crash leaves either the old
//! file or the new one. [`read_private`] refuses a file that group or others can read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// What went wrong with a private file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// The file could not be read, written or removed.
    #[error("Failed to {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file can be read by group or others; a key there must be assumed leaked.
    #[error(
        "{path} has mode {mode:o}: a secret file must be readable by its owner only (chmod 600)"
    )]
    InsecureMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than anything this crate writes, so it is not ours.
    #[error("{path} is {len} bytes, more than the {max} expected")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The largest accepted size.
        max: u64,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Atomically replaces `path` with `bytes`, readable and writable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{:08x}", rand::rng().next_u32()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(bytes).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a secret file of at most `max` bytes, refusing it if group or others may read it.
///
/// Returns `Ok(None)` when the file does not exist.
pub fn read_private(path: &Path, max: u64) -> Result<Option<Vec<u8>>, FsError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let meta = file.metadata().map_err(io_err("stat", path))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FsError::InsecureMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > max {
        return Err(FsError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
            max,
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut file)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    Ok(Some(bytes))
}

/// Overwrites a file with random bytes, fsyncs it and removes it.
///
/// On flash storage the overwrite is best effort (the controller may keep old blocks);
/// the real guarantee comes from the key hierarchy: what is destroyed here is a sealed
/// key, and everything else on disk is ciphertext under it. Missing files are fine.
pub fn destroy(path: &Path) -> Result<(), FsError> {
    let len = match fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("open for erase", path))?;
        let mut rng = rand::rng();
        let mut left = len;
        let mut buf = [0u8; 4096];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill_bytes(&mut buf[..n]);
            file.write_all(&buf[..n])
                .map_err(io_err("overwrite", path))?;
            left -= n as u64;
        }
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    fs::remove_file(path).map_err(io_err("remove", path))?;
    sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_files_are_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"abc").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_private(&path, 10).unwrap().unwrap(), b"abc");
        assert!(
            read_private(&dir.path().join("none"), 10)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn group_readable_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"abc").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private(&path, 10),
            Err(FsError::InsecureMode { mode: 0o640, .. })
        ));
    }

    #[test]
    fn oversized_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, &[0u8; 100]).unwrap();
        assert!(matches!(
            read_private(&path, 10),
            Err(FsError::TooLarge { len: 100, .. })
        ));
    }

    #[test]
    fn destroy_removes_the_file_and_tolerates_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, &[7u8; 5000]).unwrap();
        destroy(&path).unwrap();
        assert!(!path.exists());
        destroy(&path).unwrap();
    }
}
