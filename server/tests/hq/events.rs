//! Device events, alerts and telemetry reach HQ exactly once, like sales, and a long
//! outage cannot flood the outbox with them.

use std::collections::HashSet;
use std::time::Duration;

use outpost_mocks::sim::escpos::{EscPosSim, SimOptions};
use outpost_proto::hq::{Envelope, EnvelopeKind};
use outpost_server::config::{DeviceSettings, Settings};
use serde_json::Value;

use crate::helpers::*;

fn records(envs: &[Envelope]) -> Vec<Value> {
    envs.iter()
        .map(|e| serde_json::from_slice(&e.json).unwrap())
        .collect()
}

/// HQ holds sequences 1..=n once each, in order, with distinct record ids.
fn assert_contiguous_once(got: &[Envelope]) {
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "HQ's envelopes are not 1..=n in order");
    }
    let ids: HashSet<(i32, &str)> = got.iter().map(|e| (e.kind, e.id.as_str())).collect();
    assert_eq!(ids.len(), got.len(), "a record reached HQ twice");
}

fn quick_events(s: &mut Settings) {
    s.events.poll_ms = 50;
    s.receipts.backoff_min_ms = 50;
    s.receipts.backoff_max_ms = 400;
    s.receipts.health_interval_secs = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_events_alerts_and_telemetry_reach_hq_exactly_once() {
    let sim = EscPosSim::start("127.0.0.1:0".parse().unwrap(), SimOptions::default())
        .await
        .unwrap();
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), Some(hq.url()));
    quick_events(&mut s);
    s.events.telemetry_ms = 300;
    s.devices = vec![DeviceSettings {
        id: "printer-1".into(),
        kind: "printer".into(),
        driver: "escpos-tcp".into(),
        address: Some(sim.local_addr().to_string()),
        io_timeout_ms: Some(1_000),
        connect_timeout_ms: Some(1_000),
        ..DeviceSettings::default()
    }];
    let app = spawn_with(s).await;
    snapshot(&app, 1, 3).await;
    let sold = sell(&app.base, "P0000001", 5, 2, "ev").await;
    eventually(20, "telemetry at HQ", || async {
        hq.received_kind("unit-1", EnvelopeKind::Telemetry).len() >= 2
    })
    .await;
    // The printer's cover opens: it fails its health check.
    sim.set_cover_open(true);
    eventually(20, "the printer's failure at HQ", || async {
        records(&hq.received_kind("unit-1", EnvelopeKind::DeviceEvent))
            .iter()
            .any(|r| r["device"] == "printer-1" && r["to"] == "failing")
    })
    .await;
    sim.set_cover_open(false);
    eventually(20, "the printer's recovery at HQ", || async {
        records(&hq.received_kind("unit-1", EnvelopeKind::Alert))
            .iter()
            .any(|r| r["alert"] == "device_offline" && r["state"] == "cleared")
    })
    .await;
    let base = app.base.clone();
    eventually(20, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    let got = hq.received("unit-1");
    assert_contiguous_once(&got);
    let sales = got
        .iter()
        .filter(|e| e.kind == EnvelopeKind::Sale as i32)
        .count();
    assert_eq!(sales, sold.len());
    let alerts = records(&hq.received_kind("unit-1", EnvelopeKind::Alert));
    let raised = alerts
        .iter()
        .position(|r| {
            r["alert"] == "device_offline" && r["state"] == "raised" && r["subject"] == "printer-1"
        })
        .expect("a raised device alert");
    let cleared = alerts
        .iter()
        .position(|r| r["alert"] == "device_offline" && r["state"] == "cleared")
        .unwrap();
    assert!(raised < cleared, "{alerts:?}");
    let events = records(&hq.received_kind("unit-1", EnvelopeKind::DeviceEvent));
    let back = events
        .iter()
        .find(|r| r["to"] == "usable" && r["from"] == "failing")
        .expect("a recovery event");
    assert_eq!(back["type"], "device_event");
    assert_eq!(back["device_kind"], "receipt_printer");
    let telemetry = records(&hq.received_kind("unit-1", EnvelopeKind::Telemetry));
    let last = telemetry.last().unwrap();
    assert_eq!(last["type"], "telemetry");
    // The printer and the helpers' mock payment terminal.
    assert_eq!(last["devices"], 2, "{last}");
    assert!(last["devices_usable"].as_u64().unwrap() >= 1, "{last}");
    assert!(
        last["writer_jobs_committed"].as_u64().unwrap() >= 5,
        "{last}"
    );
    // Acknowledged event records are deleted with their entries. Telemetry keeps
    // coming every 300 ms, and one written between the status's reads of the outbox
    // and of the event counts shows as pending: wait for a status without one (a
    // count that acknowledgments never lowered would never get there).
    eventually(20, "no telemetry pending", || async {
        let (_, status) = app.get_json("/api/v1/sync/status").await;
        status["events_pending"]["telemetry"] == 0
    })
    .await;
    app.stop().await;
    hq.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_queues_at_most_the_cap_of_telemetry_and_the_rest_is_counted() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let url = hq.url();
    hq.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), Some(url));
    quick_events(&mut s);
    s.events.telemetry_ms = 20;
    s.events.max_pending_telemetry = 3;
    s.sync.alert_after_secs = 1;
    let app = spawn_with(s).await;
    snapshot(&app, 1, 3).await;
    let sold = sell(&app.base, "P0000002", 4, 2, "out").await;
    // About 100 telemetry intervals and the outbox-age alert (an entry older than 1 s).
    let base = app.base.clone();
    eventually(20, "the outbox-age alert to be queued", || {
        let base = base.clone();
        async move {
            let v: Value = authed(&base)
                .get(format!("{base}/api/v1/sync/status"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["events_pending"]["alert"] == 1
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (_, status) = app.get_json("/api/v1/sync/status").await;
    assert_eq!(status["events_pending"]["telemetry"], 3, "{status}");
    // 4 sales, 4 movements, 3 samples, 1 alert (and the audit chain's head when it has
    // one): bounded, however long the outage.
    let heads = status["events_pending"]["audit_head"].as_u64().unwrap();
    assert!(heads <= 1, "{status}");
    assert_eq!(status["outbox_pending"], 12 + heads, "{status}");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("outpost_outbox_events_pending_telemetry 3"),
        "{metrics}"
    );
    hq.start().await.unwrap();
    eventually(20, "telemetry after the outage", || async {
        hq.received_kind("unit-1", EnvelopeKind::Telemetry).len() >= 4
    })
    .await;
    let telemetry = records(&hq.received_kind("unit-1", EnvelopeKind::Telemetry));
    assert!(
        telemetry[..3].iter().all(|r| r["dropped_before"] == 0),
        "{telemetry:?}"
    );
    assert!(
        telemetry[3]["dropped_before"].as_u64().unwrap() >= 10,
        "the first sample after the outage counts those not written: {}",
        telemetry[3]
    );
    // The outbox-age alert went up during the outage and comes down once drained.
    eventually(20, "the outbox-age alert to clear at HQ", || async {
        records(&hq.received_kind("unit-1", EnvelopeKind::Alert))
            .iter()
            .any(|r| r["alert"] == "outbox_age" && r["state"] == "cleared")
    })
    .await;
    let got = hq.received("unit-1");
    assert_contiguous_once(&got);
    let sales = got
        .iter()
        .filter(|e| e.kind == EnvelopeKind::Sale as i32)
        .count();
    assert_eq!(sales, sold.len());
    app.stop().await;
    hq.shutdown().await.unwrap();
}

/// A vending site whose HQ is down (stopped after its first start, so its URL is
/// known), with slot `C2` set up (P0000001 at 1.50, capacity 12, par 6) and empty.
async fn vending_site_with_hq_down(
    hq_dir: &std::path::Path,
    dir: &std::path::Path,
) -> (outpost_mocks::hq::MockHqHandle, HqTestApp) {
    let hq = mock_hq(hq_dir).await;
    let url = hq.url();
    hq.stop().await;
    let mut s = settings(dir, Some(url));
    quick_events(&mut s);
    let app = spawn_with(s).await;
    snapshot(&app, 1, 3).await;
    let put = app
        .http
        .put(format!("{}/api/v1/vending/slots/C2", app.base))
        .json(&serde_json::json!({"sku": "P0000001", "price": 150, "capacity": 12, "par": 6}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    (hq, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vending_alerts_reach_hq_once_each_across_an_outage() {
    use outpost_server::domain::vending::climate::TempPolicy;
    use outpost_server::vending::alerts;
    let hq_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Stock: a new slot is empty; a refill below par makes it low; one to par clears.
    let (hq, app) = vending_site_with_hq_down(hq_dir.path(), dir.path()).await;
    for (key, units) in [("r1", 3), ("r2", 5)] {
        let r = app
            .http
            .post(format!("{}/api/v1/vending/slots/C2/refill", app.base))
            .header("Idempotency-Key", key)
            .json(&serde_json::json!({ "units": units }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    // Temperature and door, read by the machine's sensor, repeated readings included.
    let p = TempPolicy::default();
    let t0 = time::OffsetDateTime::now_utc();
    for (minute, t, door) in [
        (0, 9_000, true),
        (10, 9_000, true),
        (16, 9_500, false),
        (20, 9_500, false),
        (30, 4_000, true),
    ] {
        let at = t0 + time::Duration::minutes(minute);
        alerts::observe(&app.store, p, Some(t), Some(door), at)
            .await
            .unwrap();
    }
    alerts::clear_temperature(&app.store, p).await.unwrap();
    alerts::observe(&app.store, p, None, Some(false), t0)
        .await
        .unwrap();
    assert!(hq.received_kind("unit-1", EnvelopeKind::Alert).is_empty());

    hq.start().await.unwrap();
    let base = app.base.clone();
    eventually(20, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    assert_contiguous_once(&hq.received("unit-1"));
    let alerts = records(&hq.received_kind("unit-1", EnvelopeKind::Alert));
    let of = |subject: &str| -> Vec<(String, String)> {
        alerts
            .iter()
            .filter(|r| r["subject"] == subject)
            .map(|r| {
                (
                    r["alert"].as_str().unwrap().to_owned(),
                    r["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, s: &str| (a.to_owned(), s.to_owned());
    assert_eq!(
        of("C2"),
        [
            pair("slot_empty", "raised"),
            pair("slot_empty", "cleared"),
            pair("slot_low", "raised"),
            pair("slot_low", "cleared"),
        ]
    );
    assert_eq!(
        of("chilled"),
        [
            pair("temperature", "raised"),
            pair("temperature", "cleared")
        ]
    );
    assert_eq!(
        of("door"),
        [
            pair("door_open", "raised"),
            pair("door_open", "cleared"),
            pair("door_open", "raised"),
            pair("door_open", "cleared"),
        ]
    );
    app.stop().await;
    hq.shutdown().await.unwrap();
}

/// A technician's counts of a slot (the planogram drift) reach HQ once each across an
/// outage, in the count's order, matched counts too; the drift report adds them up
/// per slot; a bad query is refused.
#[tokio::test]
async fn slot_counts_reach_hq_once_each_and_the_drift_report_adds_them_up() {
    let hq_dir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (hq, app) = vending_site_with_hq_down(hq_dir.path(), dir.path()).await;
    let http = &app.http;
    let refill = http
        .post(format!("{}/api/v1/vending/slots/C2/refill", app.base))
        .header("Idempotency-Key", "r1")
        .json(&serde_json::json!({ "units": 10 }))
        .send()
        .await
        .unwrap();
    assert_eq!(refill.status().as_u16(), 201);
    // 10 in the model: counted 8 (2 missing), then 8 again (exact), then 11 (3 more).
    for (count, reason) in [
        (8, Some("two gone")),
        (8, None),
        (11, Some("unrecorded refill")),
    ] {
        let mut body = serde_json::json!({ "count": count });
        if let Some(r) = reason {
            body["reason"] = r.into();
        }
        let r = http
            .put(format!("{}/api/v1/vending/slots/C2/count", app.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let report: serde_json::Value = http
        .get(format!("{}/api/v1/vending/drift", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&report["counts"], &report["missing"], &report["surplus"]),
        (&3.into(), &2.into(), &3.into()),
        "{report}"
    );
    let c2 = &report["slots"][0];
    assert_eq!(
        (&c2["slot"], &c2["counts"], &c2["exact"], &c2["net"]),
        (&"C2".into(), &3.into(), &1.into(), &1.into()),
        "{report}"
    );
    assert_eq!(c2["history"][0]["expected"], 10);
    assert_eq!(c2["history"][0]["reason"], "two gone");
    // Another slot, a later window: nothing.
    for q in ["slot=A1", "since=2999-01-01T00:00:00Z"] {
        let r: serde_json::Value = http
            .get(format!("{}/api/v1/vending/drift?{q}", app.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (&r["counts"], r["slots"].as_array().unwrap().len()),
            (&0.into(), 0),
            "{q}"
        );
    }
    for (q, code) in [
        ("slot=Z", "invalid_slot"),
        ("since=yesterday", "invalid_time"),
        ("other=1", ""),
    ] {
        let r = http
            .get(format!("{}/api/v1/vending/drift?{q}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
        let body: serde_json::Value = r.json().await.unwrap();
        if !code.is_empty() {
            assert_eq!(body["code"], code, "{q}: {body}");
        }
    }

    hq.start().await.unwrap();
    let base = app.base.clone();
    eventually(20, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    assert_contiguous_once(&hq.received("unit-1"));
    let counts = records(&hq.received_kind("unit-1", EnvelopeKind::SlotCount));
    let seen: Vec<(i64, i64, i64)> = counts
        .iter()
        .map(|r| {
            (
                r["expected"].as_i64().unwrap(),
                r["counted"].as_i64().unwrap(),
                r["difference"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [(10, 8, -2), (8, 8, 0), (8, 11, 3)]);
    assert!(
        counts
            .iter()
            .all(|r| r["type"] == "slot_count" && r["slot"] == "C2")
    );
    app.stop().await;
    hq.shutdown().await.unwrap();
}
