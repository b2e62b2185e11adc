//! The data disk's reserve, and what happens when the disk fills anyway.
//!
//! sled cannot recover from a failed write in place: once a write of its log meets
//! `ENOSPC` (or any I/O error), every later read and write of that `Db` fails, although
//! what it had flushed is intact on disk. So the store keeps it from ever meeting a full
//! disk: each group of writes first checks the free space of the data dir's file system,
//! and below the reserve (`storage.reserve_mib`) the group writes nothing and every job
//! in it is answered [`StoreError::DiskFull`] (`507 storage_full`). Selling resumes by
//! itself with the first group after space is freed; reads never stop.
//!
//! Something else can still fill the disk between the check and the write (another
//! process, a reserve of 0). Then the writer records the failure ([`Space::failure`]),
//! every write answers `503 storage_unavailable`, and [`Space::reopenable`] resolves
//! once the disk is back above the reserve: the server restarts itself, reopening the
//! data dir from what was flushed (docs/storage.md, "A full disk").

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::StoreError;

/// How often [`Space::reopenable`] looks at the disk.
const POLL: Duration = Duration::from_secs(1);

/// The reserve of one data dir and the failure of its storage engine, if any.
#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    reserve: u64,
    /// Whether the last check found the disk below the reserve (to log changes once).
    low: AtomicBool,
    /// Why the storage engine failed, once it has: it refuses everything until the
    /// data dir is reopened.
    failed: Mutex<Option<String>>,
}

impl Space {
    /// The reserve of `reserve` bytes on the file system that holds `dir`.
    pub fn new(dir: &Path, reserve: u64) -> Space {
        Space {
            dir: dir.to_path_buf(),
            reserve,
            low: AtomicBool::new(false),
            failed: Mutex::new(None),
        }
    }

    /// Bytes kept free on the data disk.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes an unprivileged process may still write on the data dir's file system;
    /// `None` when the file system cannot be asked.
    pub fn free(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(&self.dir).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// `Ok` when a group of writes may go to disk: the disk has more than the reserve
    /// free (or cannot be asked: then the write itself says). Logs when the disk goes
    /// below the reserve and when it comes back.
    pub fn check(&self) -> Result<(), StoreError> {
        let Some(free) = self.free() else {
            return Ok(());
        };
        let low = free < self.reserve;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::error!(
                    free_bytes = free,
                    reserve_bytes = self.reserve,
                    dir = %self.dir.display(),
                    "The data disk is down to its reserve: sales and every other write are refused (507 storage_full) until space is freed"
                );
            } else {
                tracing::info!(
                    free_bytes = free,
                    reserve_bytes = self.reserve,
                    "The data disk has space again: writes resume"
                );
            }
        }
        if low {
            return Err(StoreError::DiskFull {
                free,
                reserve: self.reserve,
            });
        }
        Ok(())
    }

    /// Whether the disk was below the reserve at the last check.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Record that the storage engine failed writing (`why`); the first failure is kept.
    pub(crate) fn fail(&self, why: &StoreError) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.is_none() {
            tracing::error!(
                error = %why,
                "The storage engine failed a write; it refuses every write until the data dir is reopened, which this server does by restarting itself once the data disk has space"
            );
            *failed = Some(why.to_string());
        }
    }

    /// Why the storage engine failed, if it has.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves once the storage engine has failed and the data disk is back above its
    /// reserve (at least 1 MiB free), so a reopened data dir can write again. Returns
    /// the failure.
    pub async fn reopenable(&self) -> String {
        let mut told = false;
        loop {
            if let Some(why) = self.failure() {
                let free = self.free();
                if free.is_none_or(|f| f >= self.reserve.max(1 << 20)) {
                    return why;
                }
                if !told {
                    tracing::warn!(
                        free_bytes = free,
                        reserve_bytes = self.reserve,
                        "Waiting for space on the data disk before reopening the data dir"
                    );
                    told = true;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Whether `e` means the storage engine itself failed writing (and so refuses every
/// later write until reopened), as opposed to a refusal of this one write.
pub(crate) fn is_engine_failure(e: &StoreError) -> bool {
    match e {
        StoreError::Sled(e) => matches!(**e, sled::Error::Io(_)),
        StoreError::Io(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_says_how_much_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path(), u64::MAX);
        match space.check() {
            Err(StoreError::DiskFull { free, reserve }) => {
                assert_eq!(reserve, u64::MAX);
                assert!(free < reserve);
            }
            other => panic!("expected DiskFull, got {other:?}"),
        }
        assert!(space.is_low());
        let roomy = Space::new(dir.path(), 0);
        roomy.check().unwrap();
        assert!(!roomy.is_low());
    }

    #[test]
    fn the_first_engine_failure_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::new(dir.path(), 0);
        assert_eq!(space.failure(), None);
        let io = |m: &str| StoreError::Io(std::sync::Arc::new(std::io::Error::other(m.to_owned())));
        assert!(is_engine_failure(&io("first")));
        assert!(!is_engine_failure(&StoreError::DeviceLocked));
        space.fail(&io("first"));
        space.fail(&io("second"));
        assert!(space.failure().unwrap().contains("first"));
    }

    #[tokio::test]
    async fn reopenable_waits_for_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let space = std::sync::Arc::new(Space::new(dir.path(), 0));
        let waiting = tokio::spawn({
            let space = space.clone();
            async move { space.reopenable().await }
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!waiting.is_finished());
        space.fail(&StoreError::Io(std::sync::Arc::new(std::io::Error::other(
            "ENOSPC",
        ))));
        let why = tokio::time::timeout(3 * POLL, waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(why.contains("ENOSPC"));
    }
}
