//! The server's resident memory, read from `/proc/PID/status` (`--server-pid`):
//! its peak so far (`VmHWM`) and its current size (`VmRSS`).

use anyhow::{Context, Result};
use serde::Serialize;

/// One reading, in MiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ServerMemory {
    /// Peak resident memory since the server started.
    pub(crate) peak_mib: f64,
    /// Resident memory now.
    pub(crate) rss_mib: f64,
}

impl ServerMemory {
    /// Reads the memory of process `pid`.
    pub(crate) fn read(pid: u32) -> Result<Self> {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Self::parse(&status).with_context(|| format!("no VmHWM / VmRSS in {path}"))
    }

    /// Parses the text of `/proc/PID/status`.
    fn parse(status: &str) -> Option<Self> {
        let kib = |field: &str| -> Option<u64> {
            status.lines().find_map(|l| {
                let v = l.strip_prefix(field)?.strip_prefix(':')?;
                v.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
            })
        };
        Some(Self {
            peak_mib: round_mib(kib("VmHWM")?),
            rss_mib: round_mib(kib("VmRSS")?),
        })
    }
}

/// KiB to MiB, one decimal.
fn round_mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status =
            "Name:\toutpost\nVmPeak:\t 2000000 kB\nVmHWM:\t  153600 kB\nVmRSS:\t   51251 kB\n";
        let m = ServerMemory::parse(status).unwrap();
        assert_eq!((m.peak_mib, m.rss_mib), (150.0, 50.0));
        assert!(ServerMemory::parse("Name:\tx\n").is_none());
    }

    #[test]
    fn reads_this_process() {
        let m = ServerMemory::read(std::process::id()).unwrap();
        assert!(m.peak_mib >= m.rss_mib && m.rss_mib > 0.0, "{m:?}");
    }
}
