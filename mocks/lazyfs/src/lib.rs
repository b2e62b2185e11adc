//! A filesystem for tests that loses power: a FUSE passthrough to a backing directory
//! that keeps every write no fsync has made durable in memory, and forgets all of it
//! on [`LazyFs::crash`]. After a crash the backing directory holds exactly what was
//! fsync'd, which is what a disk holds after a power cut. In the spirit of
//! [LazyFS](https://github.com/dsrhaslab/lazyfs), which Jepsen uses for the same
//! purpose.
//!
//! Killing a process (SIGKILL) keeps everything it wrote in the kernel's page cache,
//! so a crash test built on it cannot tell a program that waits for `fsync` from one
//! that does not. On this filesystem it can.
//!
//! # What it models
//! - File data and file size: a write or a truncate (including `O_TRUNC`) is pending
//!   until `fsync` or `fdatasync` of that file (through any of its open handles); a
//!   crash drops it, page-exactly ([`pending`]). Reads see the pending state, as a
//!   process sees the page cache.
//! - Pending writes of a file whose last name is gone are dropped with its last handle.
//!
//! # What it does not model
//! - Directory entries: create, mkdir, rename, unlink, link and symlink reach the
//!   backing directory at once, as if every directory were fsync'd after each change.
//!   A program that forgets to fsync a directory is not caught; a file created and
//!   not synced survives a crash empty (or with its synced contents).
//! - `sync_file_range`: it never reaches a FUSE filesystem, so data "synced" only by it
//!   is dropped, as it is not durable on a real disk either (no metadata, no disk cache
//!   flush).
//! - Reordering or partial persistence of what an fsync wrote (torn sectors, a disk
//!   cache that lies, misdirected writes): an fsync that returned is wholly durable,
//!   and a crash loses all unsynced writes, never some of them.
//! - Timestamps, permissions and owners are passed through (durable at once);
//!   `fallocate` and `rename` with flags are refused; extended attributes are not
//!   supported; `mmap` of a file for writing is not coherent with the pending state.
//! - The backing directory itself is not fsync'd: it lives on a filesystem that does
//!   not crash in the test.
//!
//! # Layout
//! - [`pending`]: the unsynced pages and size of one file (pure, unit-tested).
//! - `fs`: the FUSE operations.
//! - This file: mounting, crashing, unmounting.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod pending;

mod fs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What can go wrong mounting or unmounting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LazyFsError {
    /// There is no `/dev/fuse` (a container without the device, a kernel without FUSE).
    #[error("/dev/fuse is missing: this machine cannot mount a FUSE filesystem")]
    NoFuse,
    /// The backing directory could not be read.
    #[error("cannot use the backing directory {path}: {source}")]
    Backing {
        /// The backing directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The mount itself failed (no permission for the mount syscall and no
    /// `fusermount3`, a bad mountpoint).
    #[error(
        "cannot mount the FUSE filesystem at {path} (root, or fusermount3 from the fuse3 package, is needed): {source}"
    )]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The unmount failed.
    #[error("cannot unmount {path}: {source}")]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What a crash dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crash {
    /// Files that had unsynced writes.
    pub files: usize,
    /// Bytes held for them (whole pages).
    pub bytes: u64,
    /// Fsyncs that made something durable during the mount.
    pub syncs: u64,
}

/// A mounted lazy filesystem. Dropping it unmounts (lazily, so a process still
/// holding a file cannot keep the mount).
#[derive(Debug)]
pub struct LazyFs {
    state: Arc<Mutex<fs::State>>,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl LazyFs {
    /// Mount a passthrough of `backing` at `mountpoint` (both directories that exist).
    pub fn mount(backing: &Path, mountpoint: &Path) -> Result<LazyFs, LazyFsError> {
        let backing = backing
            .canonicalize()
            .map_err(|source| LazyFsError::Backing {
                path: backing.to_path_buf(),
                source,
            })?;
        let state = fs::State::new(&backing).map_err(|source| LazyFsError::Backing {
            path: backing.clone(),
            source,
        })?;
        if !Path::new("/dev/fuse").exists() {
            return Err(LazyFsError::NoFuse);
        }
        let state = Arc::new(Mutex::new(state));
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("outpost-lazyfs".into()),
            fuser::MountOption::Subtype("lazyfs".into()),
            fuser::MountOption::NoAtime,
        ];
        let fs = fs::LazyFsInner {
            state: state.clone(),
        };
        let session =
            fuser::spawn_mount(fs, mountpoint, &config).map_err(|source| LazyFsError::Mount {
                path: mountpoint.to_path_buf(),
                source,
            })?;
        Ok(LazyFs {
            state,
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
        })
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Files with unsynced writes, and the bytes held for them.
    pub fn pending(&self) -> (usize, u64) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (
            s.pending.len(),
            s.pending.values().map(pending::Pending::bytes).sum(),
        )
    }

    /// Power loss: forget every unsynced write, refuse every request from now on, and
    /// unmount. The backing directory then holds exactly what was fsync'd; mount it
    /// again to "reboot". Stop the processes using the mount first (a process still
    /// running would see its files fail with EIO).
    pub fn crash(mut self) -> Result<Crash, LazyFsError> {
        let report = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.crashed = true;
            let report = Crash {
                files: s.pending.len(),
                bytes: s.pending.values().map(pending::Pending::bytes).sum(),
                syncs: s.syncs,
            };
            s.pending.clear();
            report
        };
        self.unmount_now()?;
        Ok(report)
    }

    /// A clean unmount: nothing is forgotten, unsynced writes are made durable first
    /// (as a clean shutdown's `sync` would).
    pub fn unmount(mut self) -> Result<(), LazyFsError> {
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.sync_everything().map_err(|source| LazyFsError::Unmount {
                path: self.mountpoint.clone(),
                source,
            })?;
            s.crashed = true;
        }
        self.unmount_now()
    }

    fn unmount_now(&mut self) -> Result<(), LazyFsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let detached =
            rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH).map_err(
                |e| LazyFsError::Unmount {
                    path: self.mountpoint.clone(),
                    source: e.into(),
                },
            );
        // The session's own unmount on drop finds nothing mounted: harmless.
        let guard: JoinHandle<std::io::Result<()>> = session.guard;
        // The session thread ends when the kernel closes the connection: right away
        // after the lazy unmount unless a process still holds a file. Bounded wait.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !guard.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if guard.is_finished() {
            let _ = guard.join();
        }
        detached
    }
}

/// For tests: whether `OUTPOST_SKIP_FUSE=1` asks to skip a test whose mount failed
/// with `error` (printing why). Without it a test must fail: a machine that cannot
/// mount must not pass the power-loss tests silently.
pub fn skip_on(error: &LazyFsError) -> bool {
    let skip = std::env::var("OUTPOST_SKIP_FUSE").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("Skipped (OUTPOST_SKIP_FUSE=1): {error}");
    }
    skip
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        let _ = self.unmount_now();
    }
}
