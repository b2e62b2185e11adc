//! What one connection saw during the recorded window, merged into the run's total.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use hyper::StatusCode;

/// Highest latency the histograms hold, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;

/// What one connection saw during the recorded window.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Latency of every response, in microseconds.
    pub(crate) hist: Histogram<u64>,
    /// Responses by status code.
    pub(crate) statuses: BTreeMap<u16, u64>,
    /// Connect, send, read and timeout errors.
    pub(crate) transport_errors: u64,
}

impl Stats {
    /// Empty statistics.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            hist: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("creating a latency histogram")?,
            statuses: BTreeMap::new(),
            transport_errors: 0,
        })
    }

    /// Adds `other` to these statistics.
    pub(crate) fn merge(&mut self, other: &Stats) -> Result<()> {
        self.hist
            .add(&other.hist)
            .context("merging latency histograms")?;
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_insert(0) += count;
        }
        self.transport_errors += other.transport_errors;
        Ok(())
    }

    /// Records one response.
    pub(crate) fn record(&mut self, status: StatusCode, latency: Duration) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.hist.saturating_record(us);
        *self.statuses.entry(status.as_u16()).or_insert(0) += 1;
    }

    /// Responses with a 2xx status.
    pub(crate) fn successes(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, c)| c)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_connection_stats() -> Result<()> {
        let mut a = Stats::new()?;
        let mut b = Stats::new()?;
        a.record(StatusCode::OK, Duration::from_millis(1));
        b.record(StatusCode::OK, Duration::from_millis(3));
        b.record(StatusCode::NOT_FOUND, Duration::from_millis(2));
        b.transport_errors = 2;
        a.merge(&b)?;
        assert_eq!(a.hist.len(), 3);
        assert_eq!(a.statuses, BTreeMap::from([(200, 2), (404, 1)]));
        assert_eq!(a.successes(), 2);
        assert_eq!(a.transport_errors, 2);
        Ok(())
    }
}
