//! Logging: `tracing`, human-readable on a terminal, JSON lines otherwise.
//!
//! The filter can be changed while running (HQ's `set_log_level` command), and the
//! most recent lines are kept in a bounded in-memory ring for HQ's `collect_logs`
//! command, so a technician far away can see what happened without a shell.

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
static RING: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

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
    ring.iter().skip(skip).cloned().collect()
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
        ring.push_back(line);
    }
}
