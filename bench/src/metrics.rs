//! The storage counters of the server's `/metrics`, read before and after the recorded
//! window of a checkout run to report fsyncs per checkout.

use anyhow::{Context, Result, bail};

use crate::http::{SimpleClient, Target};

/// The Prometheus counter of group commits flushed to disk (one fsync each).
const FLUSHES_METRIC: &str = "outpost_storage_flushes_total";
/// The Prometheus counter of writer jobs whose writes were kept.
const COMMITTED_JOBS_METRIC: &str = "outpost_storage_committed_jobs_total";

/// The sum of the samples of metric `name` (any labels) in Prometheus text, if it is there.
fn parse_metric(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let rest = if let Some(labelled) = rest.strip_prefix('{') {
            match labelled.find('}') {
                Some(close) => &labelled[close + 1..],
                None => continue,
            }
        } else if rest.starts_with(char::is_whitespace) {
            rest
        } else {
            continue;
        };
        if let Some(value) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// The storage counters of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StorageCounters {
    /// `outpost_storage_flushes_total`.
    pub(crate) flushes: f64,
    /// `outpost_storage_committed_jobs_total`, if reported.
    pub(crate) committed_jobs: Option<f64>,
}

impl StorageCounters {
    /// Parses the counters out of Prometheus text.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let flushes = parse_metric(text, FLUSHES_METRIC)
            .with_context(|| format!("/metrics has no {FLUSHES_METRIC}"))?;
        Ok(Self {
            flushes,
            committed_jobs: parse_metric(text, COMMITTED_JOBS_METRIC),
        })
    }

    /// Reads the counters from the server.
    pub(crate) async fn read(target: &Target) -> Result<Self> {
        let mut client = SimpleClient::connect(target).await?;
        let (status, body) = client.get("/metrics").await?;
        if !status.is_success() {
            bail!("GET /metrics answered {status}");
        }
        Self::parse(&String::from_utf8_lossy(&body))
    }

    /// How much the counters grew from `before` to `self`.
    pub(crate) fn since(self, before: Self) -> Self {
        Self {
            flushes: self.flushes - before.flushes,
            committed_jobs: self
                .committed_jobs
                .zip(before.committed_jobs)
                .map(|(a, b)| a - b),
        }
    }
}

/// `(fsyncs per checkout, checkouts per fsync)`, each `None` when its divisor is zero.
pub(crate) fn fsync_ratios(flushes: f64, checkouts: u64) -> (Option<f64>, Option<f64>) {
    let checkouts = checkouts as f64;
    let per_checkout = (checkouts > 0.0).then(|| flushes / checkouts);
    let per_fsync = (flushes > 0.0).then(|| checkouts / flushes);
    (per_checkout, per_fsync)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP outpost_storage_flushes_total Group commits flushed to disk (one fsync each).\n\
        # TYPE outpost_storage_flushes_total counter\n\
        outpost_storage_flushes_total 1234\n\
        # HELP outpost_storage_jobs_total Writer jobs run.\n\
        # TYPE outpost_storage_jobs_total counter\n\
        outpost_storage_jobs_total 9999\n\
        outpost_storage_committed_jobs_total 5678\n\
        outpost_uptime_seconds 12\n";

    #[test]
    fn parses_exact_metric_names() {
        assert_eq!(
            parse_metric(METRICS, "outpost_storage_flushes_total"),
            Some(1234.0)
        );
        assert_eq!(
            parse_metric(METRICS, "outpost_storage_committed_jobs_total"),
            Some(5678.0)
        );
        assert_eq!(
            parse_metric(METRICS, "outpost_storage_jobs_total"),
            Some(9999.0)
        );
        assert_eq!(parse_metric(METRICS, "outpost_storage"), None);
        assert_eq!(parse_metric(METRICS, "missing_total"), None);
    }

    #[test]
    fn sums_labelled_samples_and_ignores_junk() {
        let text = "x_total{a=\"1\"} 2\nx_total{a=\"2\"} 3.5 1700000000\nx_total_other 100\nx_total garbage\n  # x_total 7\n";
        assert_eq!(parse_metric(text, "x_total"), Some(5.5));
    }

    #[test]
    fn storage_counters_and_delta() -> Result<()> {
        let before = StorageCounters::parse(METRICS)?;
        assert_eq!(
            before,
            StorageCounters {
                flushes: 1234.0,
                committed_jobs: Some(5678.0)
            }
        );
        let after = StorageCounters::parse(
            "outpost_storage_flushes_total 1334\noutpost_storage_committed_jobs_total 6678\n",
        )?;
        assert_eq!(
            after.since(before),
            StorageCounters {
                flushes: 100.0,
                committed_jobs: Some(1000.0)
            }
        );
        assert!(StorageCounters::parse("outpost_storage_committed_jobs_total 1\n").is_err());
        Ok(())
    }

    #[test]
    fn fsync_ratio_math() {
        assert_eq!(fsync_ratios(100.0, 1000), (Some(0.1), Some(10.0)));
        assert_eq!(fsync_ratios(0.0, 50), (Some(0.0), None));
        assert_eq!(fsync_ratios(10.0, 0), (None, Some(0.0)));
        assert_eq!(fsync_ratios(0.0, 0), (None, None));
    }
}
