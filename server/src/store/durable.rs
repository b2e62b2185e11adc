//! Making sled's writes durable.
//!
//! `sled::Db::flush` (0.34) writes its log with `sync_file_range`, which persists
//! neither the file's size nor the disk's write cache, and writes large values as
//! blob files (`blobs/`) with no sync at all; sled itself fsyncs only from its flusher
//! thread, every half second. A flush alone is therefore durable across the death of
//! the process (the page cache survives) but not across a power cut: the power-loss
//! test (`server/tests/crash/powerloss.rs`, on a filesystem that forgets unsynced
//! writes) lost acknowledged sales that way. So every flush that acknowledges
//! something goes through [`DurableDb::flush`]: sled's flush, then an fsync of every
//! blob written since the last sync (and of their directory), then of the log.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A sled database with its files (in `<data dir>/db`) kept open for fsync.
pub struct DurableDb {
    db: sled::Db,
    /// The log: sled's one data file (`db`).
    log: File,
    blob_dir: PathBuf,
    /// Blob files already synced. A lock because the writer thread and the store's
    /// own durable writes (meta, promotions) both sync; held only for the syncs, never
    /// across an await.
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl std::fmt::Debug for DurableDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableDb")
            .field("blob_dir", &self.blob_dir)
            .finish()
    }
}

impl DurableDb {
    /// `db`, the sled database in `dir`. Makes what sled created there durable: its
    /// config, its log, its blobs, the names of them all.
    pub fn open(db: sled::Db, dir: &Path) -> io::Result<DurableDb> {
        let files = DurableDb {
            db,
            log: File::open(dir.join("db"))?,
            blob_dir: dir.join("blobs"),
            synced_blobs: Mutex::new(HashSet::new()),
        };
        match File::open(dir.join("conf")) {
            Ok(conf) => conf.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        files.sync()?;
        File::open(dir)?.sync_all()?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(files)
    }

    /// Flush sled, durably: when this returns, everything written before is on disk.
    pub fn flush(&self) -> Result<(), super::StoreError> {
        self.db.flush()?;
        self.sync()?;
        Ok(())
    }

    /// After `sled::Db::flush`: make what it wrote durable.
    fn sync(&self) -> io::Result<()> {
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut present = HashSet::new();
        let mut new = false;
        match std::fs::read_dir(&self.blob_dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e?;
                    let name = e.file_name();
                    if !synced.contains(&name) {
                        match File::open(e.path()) {
                            Ok(f) => f.sync_data()?,
                            // Collected by sled since the listing: nothing to sync.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(e),
                        }
                        new = true;
                    }
                    present.insert(name);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if new {
            File::open(&self.blob_dir)?.sync_all()?;
        }
        *synced = present;
        // The log last: once it is durable, every blob it names is too.
        self.log.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_a_sled_directory_and_its_blobs_and_notices_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = sled::Config::new().path(&path).open().unwrap();
        db.insert("k", vec![1u8; 4 << 20]).unwrap();
        db.flush().unwrap();
        let files = DurableDb::open(db.clone(), &path).unwrap();
        let blobs = files.synced_blobs.lock().unwrap().len();
        assert!(blobs > 0, "a 4 MiB value is a blob");
        db.insert("k2", vec![2u8; 4 << 20]).unwrap();
        files.flush().unwrap();
        assert!(files.synced_blobs.lock().unwrap().len() > blobs);
    }

    #[test]
    fn a_directory_without_sled_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("db"))
            .open()
            .unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(
            DurableDb::open(db, elsewhere.path()).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
