//! What `/metrics` counts as requests come: requests per matched route, method and
//! status with their latency (an actix middleware), and checkouts and refunds by
//! outcome and tender.
//!
//! The counters are process-wide (like the recent log lines): one server runs per
//! process in production, and Prometheus reads them as they grow.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;

use crate::domain::sale::{Tender, TenderMethod, TenderRequest};

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
/// (kind, outcome, tender) -> count.
static OUTCOMES: Mutex<BTreeMap<(&'static str, String, String), u64>> = Mutex::new(BTreeMap::new());

/// Counts one request of `protocol` (`http`, `grpc`).
pub fn record_request(protocol: &'static str, route: &str, method: &str, status: &str, secs: f64) {
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

/// The actix middleware: times each request and counts it under its route pattern.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED.to_owned());
    record_request(
        "http",
        &route,
        &method,
        res.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    Ok(res)
}

/// The tender label of a finished sale or refund: `cash`, `card`, or `split`.
pub fn tender_of(tenders: &[Tender]) -> &'static str {
    let mut methods = tenders.iter().map(|t| t.method);
    match (methods.next(), methods.next()) {
        (Some(TenderMethod::Cash), None) => "cash",
        (Some(TenderMethod::Card), None) => "card",
        (Some(_), Some(_)) => "split",
        (None, _) => "none",
    }
}

/// The tender label of a checkout that did not finish, from what it asked for.
pub fn tender_asked(one: Option<&TenderRequest>, many: Option<&[TenderRequest]>) -> &'static str {
    let all: Vec<&TenderRequest> = one.into_iter().chain(many.into_iter().flatten()).collect();
    match all.as_slice() {
        [TenderRequest::Cash { .. }] => "cash",
        [TenderRequest::Card { .. }] => "card",
        [] => "none",
        _ => "split",
    }
}

/// Counts a checkout or refund (`kind`) that ended with `outcome` (`completed`,
/// `replayed`, or the API's error code) for `tender`.
pub fn record_outcome(kind: &'static str, outcome: &str, tender: &str) {
    let mut m = OUTCOMES.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry((kind, outcome.to_owned(), tender.to_owned()))
        .or_default() += 1;
}

/// Escapes a label value for the text format.
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Appends the request and outcome families in the Prometheus text format.
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
    let outcomes = OUTCOMES.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for (kind, help) in [
        (
            "checkout",
            "Checkouts by outcome (completed, replayed, or the error code) and tender.",
        ),
        (
            "refund",
            "Refunds by outcome (completed, replayed, or the error code) and tender.",
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP outpost_{kind}s_total {help}\n# TYPE outpost_{kind}s_total counter"
        );
        for ((k, outcome, tender), n) in &outcomes {
            if k == &kind {
                let _ = writeln!(
                    out,
                    "outpost_{kind}s_total{{outcome=\"{}\",tender=\"{}\"}} {n}",
                    label(outcome),
                    label(tender)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::Money;

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
    fn tenders_are_labelled() {
        let t = |method| Tender {
            method,
            amount: Money(1),
            tendered: None,
            payment_key: None,
            card: None,
            refund_of: None,
        };
        assert_eq!(tender_of(&[t(TenderMethod::Cash)]), "cash");
        assert_eq!(tender_of(&[t(TenderMethod::Card)]), "card");
        assert_eq!(
            tender_of(&[t(TenderMethod::Cash), t(TenderMethod::Card)]),
            "split"
        );
        assert_eq!(tender_of(&[]), "none");
        let cash = TenderRequest::Cash { tendered: Money(5) };
        let card = TenderRequest::Card { amount: None };
        assert_eq!(tender_asked(Some(&cash), None), "cash");
        assert_eq!(tender_asked(None, Some(&[cash.clone(), card])), "split");
        assert_eq!(tender_asked(None, None), "none");
    }

    #[test]
    fn rendered_families_are_prometheus_text() {
        record_request("http", "/t/{id}", "GET", "200", 0.002);
        record_outcome("checkout", "completed", "cash");
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains(
            "outpost_request_duration_seconds_bucket{protocol=\"http\",route=\"/t/{id}\",method=\"GET\",status=\"200\",le=\"0.0025\"} "
        ));
        assert!(out.contains("outpost_checkouts_total{outcome=\"completed\",tender=\"cash\"} "));
        assert_eq!(label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
