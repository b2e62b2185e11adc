//! Logging: `tracing`, human-readable on a terminal, JSON lines otherwise.
//!
//! The filter can be changed while running (HQ's `set_log_level` command), and the
//! most recent lines are kept in a bounded in-memory ring for HQ's `collect_logs`
//! command, so a technician far away can see what happened without a shell.
//!
//! [`requests`]: the request counters both ports feed, for `/metrics`.

pub mod requests;

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Lines of recent log kept for `collect_logs`.
pub const RING_LINES: usize = 2000;
/// Longest line kept in the ring, in bytes; longer lines are cut.
const RING_LINE_BYTES: usize = 4096;

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();
/// The recent lines, each with its sequence number (counting from 1 since start), so
/// a reader that follows the log asks for what came after the last line it saw.
static RING: Mutex<VecDeque<(u64, String)>> = Mutex::new(VecDeque::new());
static NEXT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Why the log filter could not be changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The filter does not parse.
    #[error("invalid log filter {filter:?}: {message}")]
    BadFilter {
        /// What was asked.
        filter: String,
        /// Why it does not parse.
        message: String,
    },
    /// This process did not install Outpost's logging (a test, or an embedding).
    #[error("logging is not managed by this process")]
    NotInstalled,
}

/// Install the global subscriber. `RUST_LOG` wins over `default_filter`.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let (filter, handle) = reload::Layer::new(filter);
    let ring = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_writer(|| RingWriter(Vec::new()));
    let registry = tracing_subscriber::registry().with(filter).with(ring);
    let installed = if std::io::stderr().is_terminal() {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Replace the log filter (tracing `EnvFilter` syntax) while running.
pub fn set_filter(filter: &str) -> Result<(), LogError> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| LogError::BadFilter {
        filter: filter.to_owned(),
        message: e.to_string(),
    })?;
    let handle = FILTER.get().ok_or(LogError::NotInstalled)?;
    handle.reload(parsed).map_err(|_| LogError::NotInstalled)?;
    tracing::info!(filter, "Log filter changed");
    Ok(())
}

/// The most recent `max` log lines, oldest first, as JSON lines.
pub fn recent_lines(max: usize) -> Vec<String> {
    let ring = RING.lock().unwrap_or_else(|p| p.into_inner());
    let skip = ring.len().saturating_sub(max);
    ring.iter().skip(skip).map(|(_, l)| l.clone()).collect()
}

/// The sequence number of the newest line so far (0 before the first).
pub fn last_seq() -> u64 {
    NEXT_SEQ.load(std::sync::atomic::Ordering::Relaxed) - 1
}

/// The lines after sequence number `after` (0: from the oldest kept), at most `max`
/// of the newest, oldest first, and the sequence number of the last line kept (pass
/// it as `after` next time). Lines that fell out of the ring meanwhile are skipped.
pub fn lines_after(after: u64, max: usize) -> (u64, Vec<String>) {
    let ring = RING.lock().unwrap_or_else(|p| p.into_inner());
    let last = ring.back().map_or(after, |(seq, _)| *seq);
    let newer: Vec<&(u64, String)> = ring.iter().filter(|(seq, _)| *seq > after).collect();
    let skip = newer.len().saturating_sub(max);
    let lines = newer
        .into_iter()
        .skip(skip)
        .map(|(_, l)| l.clone())
        .collect();
    (last, lines)
}

/// Collects one formatted event, then pushes it into the ring when dropped.
struct RingWriter(Vec<u8>);

impl std::io::Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = RING_LINE_BYTES.saturating_sub(self.0.len());
        self.0.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.0).trim_end().to_owned();
        // Held only to push one line; never across I/O.
        let mut ring = RING.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == RING_LINES {
            ring.pop_front();
        }
        let seq = NEXT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ring.push_back((seq, line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_gets_each_line_once() {
        let start = last_seq();
        drop(RingWriter(b"{\"n\":1}\n".to_vec()));
        drop(RingWriter(b"{\"n\":2}".to_vec()));
        let (seq, lines) = lines_after(start, 10);
        let ours: Vec<&String> = lines.iter().filter(|l| l.starts_with("{\"n\":")).collect();
        assert_eq!(ours, ["{\"n\":1}", "{\"n\":2}"]);
        let (_, again) = lines_after(seq, 10);
        assert!(again.iter().all(|l| !l.starts_with("{\"n\":")), "{again:?}");
        let (_, one) = lines_after(start, 1);
        assert_eq!(one.len(), 1, "at most max, the newest");
    }
}
