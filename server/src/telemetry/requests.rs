//! Requests answered by the REST and gRPC ports, for `/metrics`: a count and a latency
//! histogram per protocol, route (the matched pattern, or the gRPC method), method
//! and status.
//!
//! The counters are process-wide (like the recent log lines): one server runs per
//! process in production, and Prometheus reads them as they grow.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds of the latency buckets, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The route label of a request no route matched: the path itself would let any
/// client grow the label set without bound.
pub const UNMATCHED: &str = "unmatched";

/// Latency of one label set.
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at or below each of [`BUCKETS`] (cumulative when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// (protocol, route, method, status).
type RequestKey = (&'static str, String, String, String);

/// Held only to update or copy a map; never across an await.
static REQUESTS: Mutex<BTreeMap<RequestKey, Histogram>> = Mutex::new(BTreeMap::new());

/// Counts one request of `protocol` (`http`, `grpc`).
pub fn record(protocol: &'static str, route: &str, method: &str, status: &str, secs: f64) {
    let mut m = REQUESTS.lock().unwrap_or_else(|p| p.into_inner());
    m.entry((
        protocol,
        route.to_owned(),
        method.to_owned(),
        status.to_owned(),
    ))
    .or_default()
    .observe(secs);
}

/// Escapes a label value for the text format.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the request families in the Prometheus text format.
pub fn render(out: &mut String) {
    let requests = REQUESTS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let _ = writeln!(
        out,
        "# HELP outpost_requests_total Requests answered, by protocol, matched route, method and status.\n# TYPE outpost_requests_total counter"
    );
    for ((proto, route, method, status), h) in &requests {
        let _ = writeln!(
            out,
            "outpost_requests_total{{protocol=\"{proto}\",route=\"{}\",method=\"{}\",status=\"{}\"}} {}",
            label(route),
            label(method),
            label(status),
            h.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP outpost_request_duration_seconds Time to answer a request, by protocol, matched route, method and status.\n# TYPE outpost_request_duration_seconds histogram"
    );
    for ((proto, route, method, status), h) in &requests {
        let labels = format!(
            "protocol=\"{proto}\",route=\"{}\",method=\"{}\",status=\"{}\"",
            label(route),
            label(method),
            label(status)
        );
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "outpost_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "outpost_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\noutpost_request_duration_seconds_sum{{{labels}}} {}\noutpost_request_duration_seconds_count{{{labels}}} {}",
            h.count, h.sum, h.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_into_its_bucket() {
        let mut h = Histogram::default();
        h.observe(0.0005);
        h.observe(0.3);
        h.observe(60.0);
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(
            h.buckets[BUCKETS.iter().position(|b| *b == 0.5).unwrap()],
            1
        );
        assert_eq!(h.buckets.iter().sum::<u64>(), 2, "60 s is only in +Inf");
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
