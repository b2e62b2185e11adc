//! The figures of a run: computed from what the connections recorded, printed as a
//! readable report followed by one JSON line.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Cli, Scenario};
use crate::memory::ServerMemory;
use crate::metrics::{StorageCounters, fsync_ratios};
use crate::stats::Stats;

/// Rounds to `decimals` decimal places.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Microseconds to milliseconds, rounded to the microsecond.
fn us_to_ms(us: u64) -> f64 {
    round(us as f64 / 1000.0, 3)
}

/// The figures of a run; serialized as the last output line.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// The scenario run.
    scenario: &'static str,
    /// Connections used.
    connections: usize,
    /// Length of the recorded window, in seconds.
    duration_s: f64,
    /// Responses received in the recorded window, whatever their status.
    pub(crate) requests: u64,
    /// `requests / duration_s`.
    rps: f64,
    /// Median latency.
    p50_ms: f64,
    /// 90th percentile latency.
    p90_ms: f64,
    /// 99th percentile latency.
    p99_ms: f64,
    /// 99.9th percentile latency.
    p999_ms: f64,
    /// Highest latency.
    max_ms: f64,
    /// Non-2xx responses plus transport errors.
    errors: u64,
    /// Responses by status code.
    status_counts: BTreeMap<String, u64>,
    /// Storage flushes (fsyncs) per successful checkout; only for `checkout`.
    fsyncs_per_checkout: Option<f64>,
    /// Successful checkouts per storage flush; only for `checkout`.
    checkouts_per_fsync: Option<f64>,
    /// Responses whose status was not 2xx.
    pub(crate) non_2xx: u64,
    /// Connect, send, read and timeout errors.
    transport_errors: u64,
    /// Warm-up seconds run before recording.
    warmup_s: u64,
    /// Client runtime threads.
    threads: usize,
    /// Growth of the storage counters over the window (checkout only).
    #[serde(skip)]
    storage: Option<StorageCounters>,
    /// The server's memory before the load (`--server-pid`).
    server_memory_before: Option<ServerMemory>,
    /// The server's memory after the load: its peak covers the whole run.
    server_memory_after: Option<ServerMemory>,
}

impl Summary {
    /// Computes the figures from what the connections recorded.
    pub(crate) fn new(
        cli: &Cli,
        window: Duration,
        stats: &Stats,
        storage: Option<StorageCounters>,
    ) -> Self {
        let requests: u64 = stats.statuses.values().sum();
        let successes = stats.successes();
        let non_2xx = requests - successes;
        let secs = window.as_secs_f64();
        let (fsyncs_per_checkout, checkouts_per_fsync) = match storage {
            Some(delta) if matches!(cli.scenario, Scenario::Checkout | Scenario::CardCheckout) => {
                fsync_ratios(delta.flushes, successes)
            }
            _ => (None, None),
        };
        let quantile = |q: f64| {
            if requests == 0 {
                0.0
            } else {
                us_to_ms(stats.hist.value_at_quantile(q))
            }
        };
        Self {
            scenario: cli.scenario.name(),
            connections: cli.connections,
            duration_s: round(secs, 3),
            requests,
            rps: if secs > 0.0 {
                round(requests as f64 / secs, 1)
            } else {
                0.0
            },
            p50_ms: quantile(0.5),
            p90_ms: quantile(0.9),
            p99_ms: quantile(0.99),
            p999_ms: quantile(0.999),
            max_ms: if requests == 0 {
                0.0
            } else {
                us_to_ms(stats.hist.max())
            },
            errors: non_2xx + stats.transport_errors,
            status_counts: stats
                .statuses
                .iter()
                .map(|(s, c)| (s.to_string(), *c))
                .collect(),
            fsyncs_per_checkout: fsyncs_per_checkout.map(|v| round(v, 4)),
            checkouts_per_fsync: checkouts_per_fsync.map(|v| round(v, 3)),
            non_2xx,
            transport_errors: stats.transport_errors,
            warmup_s: cli.warmup,
            threads: cli.threads,
            storage,
            server_memory_before: None,
            server_memory_after: None,
        }
    }

    /// Adds the server's memory readings before and after the load.
    pub(crate) fn with_memory(
        mut self,
        before: Option<ServerMemory>,
        after: Option<ServerMemory>,
    ) -> Self {
        self.server_memory_before = before;
        self.server_memory_after = after;
        self
    }

    /// The readable report (without the JSON line).
    pub(crate) fn render(&self) -> String {
        let statuses = if self.status_counts.is_empty() {
            "none".to_owned()
        } else {
            self.status_counts
                .iter()
                .map(|(s, c)| format!("{s}: {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "scenario     {}\nconnections  {} (client threads: {})\nduration     {} s recorded (after {} s warm-up)\nrequests     {} ({} req/s)\nlatency ms   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\nstatus       {statuses}\nerrors       {} (non-2xx: {}, transport: {})\n",
            self.scenario,
            self.connections,
            self.threads,
            self.duration_s,
            self.warmup_s,
            self.requests,
            self.rps,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.errors,
            self.non_2xx,
            self.transport_errors,
        );
        if let Some(delta) = self.storage {
            let jobs = delta
                .committed_jobs
                .map_or_else(|| "n/a".to_owned(), |j| j.to_string());
            let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| v.to_string());
            out.push_str(&format!(
                "storage      flushes +{}, committed jobs +{jobs}: {} fsyncs/checkout, {} checkouts/fsync\n",
                delta.flushes,
                fmt(self.fsyncs_per_checkout),
                fmt(self.checkouts_per_fsync),
            ));
        }
        if let (Some(before), Some(after)) = (self.server_memory_before, self.server_memory_after) {
            out.push_str(&format!(
                "server RSS   peak {} MiB (peak before the load {} MiB), {} MiB at the end\n",
                after.peak_mib, before.peak_mib, after.rss_mib,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Result;
    use hyper::StatusCode;

    use super::*;

    fn cli(scenario: Scenario) -> Cli {
        Cli {
            url: "http://127.0.0.1:8080".into(),
            scenario,
            connections: 8,
            duration: 10,
            warmup: 2,
            sample: 100,
            threads: 1,
            login_user: None,
            sources: 1,
            server_pid: None,
            qr_secret_file: None,
            think_ms: 500,
        }
    }

    #[test]
    fn summary_math() -> Result<()> {
        let mut stats = Stats::new()?;
        // 1..=1000 ms once each above ten 10 µs answers: p50 = 495 ms, p99 = 990 ms.
        for ms in 1..=1000u64 {
            stats.record(StatusCode::CREATED, Duration::from_millis(ms));
        }
        for _ in 0..10 {
            stats.record(StatusCode::INTERNAL_SERVER_ERROR, Duration::from_micros(10));
        }
        stats.transport_errors = 5;
        let storage = Some(StorageCounters {
            flushes: 250.0,
            committed_jobs: Some(1000.0),
        });
        let s = Summary::new(
            &cli(Scenario::Checkout),
            Duration::from_secs(10),
            &stats,
            storage,
        );
        assert_eq!(s.requests, 1010);
        assert_eq!(s.rps, 101.0);
        assert_eq!(s.non_2xx, 10);
        assert_eq!(s.errors, 15);
        assert_eq!(s.status_counts.get("201"), Some(&1000));
        assert_eq!(s.status_counts.get("500"), Some(&10));
        assert_eq!(s.fsyncs_per_checkout, Some(0.25));
        assert_eq!(s.checkouts_per_fsync, Some(4.0));
        // HdrHistogram with 3 significant digits: within 0.1 %.
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(s.p50_ms, 495.0), "p50 {}", s.p50_ms);
        assert!(close(s.p99_ms, 990.0), "p99 {}", s.p99_ms);
        assert!(close(s.max_ms, 1000.0), "max {}", s.max_ms);
        assert!(s.p90_ms <= s.p99_ms && s.p99_ms <= s.p999_ms && s.p999_ms <= s.max_ms);

        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s)?)?;
        for key in [
            "scenario",
            "connections",
            "duration_s",
            "requests",
            "rps",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "errors",
            "status_counts",
            "fsyncs_per_checkout",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["scenario"], "checkout");
        assert_eq!(json["status_counts"]["201"], 1000);
        assert!(s.render().contains("fsyncs/checkout"));
        Ok(())
    }

    #[test]
    fn empty_and_non_checkout_summaries() -> Result<()> {
        let stats = Stats::new()?;
        let s = Summary::new(&cli(Scenario::Sku), Duration::from_secs(10), &stats, None);
        assert_eq!(
            (s.requests, s.rps, s.p50_ms, s.max_ms, s.errors),
            (0, 0.0, 0.0, 0.0, 0)
        );
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s)?)?;
        assert!(json["fsyncs_per_checkout"].is_null());
        assert!(json["server_memory_after"].is_null());
        assert!(!s.render().contains("server RSS"));

        let reading = |peak_mib, rss_mib| Some(ServerMemory { peak_mib, rss_mib });
        let s = Summary::new(
            &cli(Scenario::LoginStorm),
            Duration::from_secs(10),
            &stats,
            None,
        )
        .with_memory(reading(40.0, 35.0), reading(80.5, 41.0));
        let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&s)?)?;
        assert_eq!(json["scenario"], "login-storm");
        assert_eq!(json["server_memory_after"]["peak_mib"], 80.5);
        assert!(s.render().contains("peak 80.5 MiB"), "{}", s.render());
        Ok(())
    }
}
