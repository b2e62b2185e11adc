//! What `/metrics` counts as REST requests come: each request under its matched route,
//! method and status with its latency (an actix middleware feeding
//! [`crate::telemetry::requests`], which the gRPC port feeds too), and checkouts and
//! refunds by outcome and tender.
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
pub use crate::telemetry::requests::{UNMATCHED, label};

/// (kind, outcome, tender) -> count.
static OUTCOMES: Mutex<BTreeMap<(&'static str, String, String), u64>> = Mutex::new(BTreeMap::new());

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
    crate::telemetry::requests::record(
        "http",
        &route,
        &method,
        res.status().as_str(),
        started.elapsed().as_secs_f64(),
    );
    Ok(res)
}

/// The tender label of a finished sale or refund: `cash`, `card`, `wallet`, `qr` or
/// `split`.
pub fn tender_of(tenders: &[Tender]) -> &'static str {
    let mut methods = tenders.iter().map(|t| t.method);
    match (methods.next(), methods.next()) {
        (Some(TenderMethod::Cash), None) => "cash",
        (Some(TenderMethod::Card), None) => "card",
        (Some(TenderMethod::Qr), None) => "qr",
        (Some(TenderMethod::Wallet), None) => "wallet",
        (Some(TenderMethod::Points), None) => "points",
        (Some(TenderMethod::Voucher), None) => "voucher",
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
        [TenderRequest::Qr { .. }] => "qr",
        [TenderRequest::Wallet { .. }] => "wallet",
        [TenderRequest::Points { .. }] => "points",
        [TenderRequest::Voucher { .. }] => "voucher",
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

/// Appends the request and outcome families in the Prometheus text format.
pub fn render(out: &mut String) {
    crate::telemetry::requests::render(out);
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
        crate::telemetry::requests::record("http", "/t/{id}", "GET", "200", 0.002);
        record_outcome("checkout", "completed", "cash");
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains(
            "outpost_request_duration_seconds_bucket{protocol=\"http\",route=\"/t/{id}\",method=\"GET\",status=\"200\",le=\"0.0025\"} "
        ));
        assert!(out.contains("outpost_checkouts_total{outcome=\"completed\",tender=\"cash\"} "));
    }
}
