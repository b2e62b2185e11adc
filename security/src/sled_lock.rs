//! Opening a sled database another handle has just let go of.
//!
//! sled holds an exclusive lock on its files while a `Db` is open, and releases it
//! when its background flusher ends, a moment *after* the last handle is dropped. A
//! restart in the same process (a test that stops a server and opens its data dir, a
//! store reopened after a wipe), or a new process started while the old one exits,
//! meets the lock for that moment. Every such open waits here, for a bounded time,
//! instead of failing with `could not acquire lock … WouldBlock`.
//!
//! It lives in this crate because every crate that opens sled (the server's store, the
//! audit log here, the mock HQ's storage) already depends on it, and their tests share
//! [`reopen`] (tests and feature `test-utils`).

use std::time::{Duration, Instant};

/// How often a locked database is tried again.
const RETRY: Duration = Duration::from_millis(20);

/// Whether `e` is sled's "another handle holds the lock" error.
pub fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
        }
        _ => false,
    }
}

/// Opens the database `config` describes, trying again while its lock is held, for
/// `wait` at most; then the lock error, or any other error at once. Blocks the thread.
pub fn open_released(config: &sled::Config, wait: Duration) -> Result<sled::Db, sled::Error> {
    let deadline = Instant::now() + wait;
    loop {
        match config.open() {
            Err(e) if is_lock_error(&e) && Instant::now() < deadline => std::thread::sleep(RETRY),
            other => return other,
        }
    }
}

/// Tests: opens the sled database at `path` that a handle dropped just before held
/// (a stopped server's data dir, a store closed to be read as a thief would), waiting
/// up to 30 s for its lock (a loaded machine delays sled's flusher). Panics naming the
/// path when it does not open.
#[cfg(any(test, feature = "test-utils"))]
pub fn reopen(path: &std::path::Path) -> sled::Db {
    open_released(&sled::Config::new().path(path), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("Failed to reopen the sled database {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_reopens_once_its_last_handle_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = reopen(dir.path());
        db.insert("k", "v").unwrap();
        db.flush().unwrap();
        // While it is open, the lock holds: a short wait ends with the lock error.
        let held = open_released(&sled::Config::new().path(dir.path()), Duration::ZERO);
        assert!(matches!(&held, Err(e) if is_lock_error(e)), "{held:?}");
        drop(held);
        drop(db);
        let db = reopen(dir.path());
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
