//! Scales, scanners and the MDB cashless reader in the registry: the real MT-SICS,
//! serial scanner and MDB drivers against their wire simulators on loopback, and the
//! trait mocks. A weighed line sells only a stable weight; scanner garbage is counted
//! and shown, never a crash; a lost MDB answer is resolved by status, charged once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_mocks::sim::mdb::{Charge, MdbFault, MdbOptions, MdbSim};
use outpost_mocks::sim::scale::{ScaleFault, ScaleOptions, ScaleSim};
use outpost_mocks::sim::scanner::ScannerSim;
use outpost_server::config::{DeviceSettings, Settings};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_configured, test_settings};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn device(id: &str, kind: &str, driver: &str) -> DeviceSettings {
    DeviceSettings {
        id: id.into(),
        kind: kind.into(),
        driver: driver.into(),
        ..DeviceSettings::default()
    }
}

fn quick(s: &mut Settings) {
    s.receipts.backoff_min_ms = 50;
    s.receipts.backoff_max_ms = 400;
    s.receipts.health_interval_secs = 1;
}

async fn app_with(devices: Vec<DeviceSettings>) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    quick(&mut s);
    s.devices = devices;
    let app = spawn_configured(s, None, true).await;
    (app, dir)
}

fn weighed_cart() -> Value {
    json!({"lines":[{"sku":"APPLES","scale":"scale-1"}],"payment":{"method":"cash","tendered":5000}})
}

async fn sale_count(app: &TestApp) -> usize {
    let (s, v) = app.get("/api/v1/sales?limit=200").await;
    assert_eq!(s, 200, "{v}");
    v["items"].as_array().unwrap().len()
}

fn device_view(list: &Value, id: &str) -> Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no device {id} in {list}"))
}

fn sics_scale(address: SocketAddr) -> DeviceSettings {
    let mut d = device("scale-1", "scale", "mt-sics");
    d.address = Some(address.to_string());
    d.io_timeout_ms = Some(300);
    d.connect_timeout_ms = Some(500);
    d
}

#[tokio::test]
async fn a_weighed_line_sells_only_the_stable_weight_of_the_mt_sics_scale() {
    let sim = ScaleSim::start(loopback(), ScaleOptions::default())
        .await
        .unwrap();
    let (app, _dir) = app_with(vec![sics_scale(sim.local_addr().unwrap())]).await;
    sim.place(350, 10_000);

    // Moving: refused, nothing recorded.
    let (s, v, _) = app.checkout("w-1", &weighed_cart()).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "scale_unstable", "{v}");
    assert_eq!(v["field"], "lines[0].scale", "{v}");
    assert_eq!(sale_count(&app).await, 0);
    let (s, v) = app.get("/api/v1/devices/scale-1/weight").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stable"], false, "{v}");
    assert!(v["stable_grams"].is_null(), "{v}");

    // Settled: sold at the weight on the pan.
    sim.set_unstable(0);
    let (s, v) = app.get("/api/v1/devices/scale-1/weight").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["grams"].as_i64(), v["stable"].as_bool()),
        (Some(350), Some(true))
    );
    assert_eq!(v["stable_grams"], 350);
    let (s, v, _) = app.checkout("w-1", &weighed_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["lines"][0]["quantity"], json!({"grams": 350}), "{v}");
    // 3.49 EUR/kg x 350 g = 1.2215 -> 1.22.
    assert_eq!(v["total"], 122, "{v}");
    assert_eq!(sale_count(&app).await, 1);

    // A retry of the same key replays the first sale, whatever the pan holds now.
    sim.place(900, 10_000);
    let (s, v, h) = app.checkout("w-1", &weighed_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(v["lines"][0]["quantity"], json!({"grams": 350}));

    // Over capacity (6 kg): refused.
    sim.place(7_000, 0);
    let (s, v, _) = app.checkout("w-2", &weighed_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("scale_overload")),
        "{v}"
    );
    let (s, v) = app.get("/api/v1/devices/scale-1/weight").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("scale_overload")),
        "{v}"
    );

    // Silent (unplugged): unavailable.
    sim.place(200, 0);
    sim.set_silent(true);
    let (s, v, h) = app.checkout("w-3", &weighed_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("device_unavailable")),
        "{v}"
    );
    assert!(h.get("retry-after").is_some());
    assert_eq!(sale_count(&app).await, 1, "nothing recorded by refusals");
}

#[tokio::test]
async fn weighed_lines_that_cannot_be_weighed_are_refused_with_the_line_named() {
    let sim = ScaleSim::start(loopback(), ScaleOptions::default())
        .await
        .unwrap();
    let (app, _dir) = app_with(vec![sics_scale(sim.local_addr().unwrap())]).await;
    sim.place(350, 0);
    let cases = [
        (
            json!({"lines":[{"sku":"MILK","scale":"scale-1"}],"payment":{"method":"cash","tendered":5000}}),
            422,
            "not_sold_by_weight",
        ),
        (
            json!({"lines":[{"sku":"APPLES","scale":"nope"}],"payment":{"method":"cash","tendered":5000}}),
            404,
            "device_not_found",
        ),
        (
            json!({"lines":[{"sku":"APPLES","scale":"scale-1","weight_grams":100}],"payment":{"method":"cash","tendered":5000}}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"lines":[{"sku":"NOPE","scale":"scale-1"}],"payment":{"method":"cash","tendered":5000}}),
            422,
            "unknown_product",
        ),
    ];
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let (s, v, _) = app.checkout(&format!("bad-{i}"), &body).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{body}: {v}");
    }
    let (s, v, _) = app
        .post(
            "/api/v1/carts/price",
            None,
            &json!({"lines":[{"sku":"APPLES","scale":"scale-1"}]}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("scale_needs_checkout")),
        "{v}"
    );
    let (s, v) = app.get("/api/v1/devices/nope/weight").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("device_not_found")),
        "{v}"
    );
    assert_eq!(sale_count(&app).await, 0);
}

#[tokio::test]
async fn a_mock_scale_is_weighed_through_the_trait() {
    let (app, _dir) = app_with(vec![device("scale-1", "scale", "mock")]).await;
    let scale = app.devices.sims().mock_scales[0].1.clone();
    scale.place(500, 10_000);
    let (s, v, _) = app.checkout("m-1", &weighed_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("scale_unstable")),
        "{v}"
    );
    scale.place(500, 0);
    let (s, v, _) = app.checkout("m-1", &weighed_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["lines"][0]["quantity"], json!({"grams": 500}), "{v}");
    let (s, v) = app.get("/api/v1/devices").await;
    assert_eq!(s, 200);
    let view = device_view(&v, "scale-1");
    assert_eq!(view["kind"], "scale");
    assert_eq!(view["usable"], true, "{view}");
}

async fn wait_for<F: Fn(&Value) -> bool>(app: &TestApp, path: &str, ok: F) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = app.get(path).await;
        if ok(&v) || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn scans_resolve_to_products_and_garbage_is_counted_not_fatal() {
    let sim = ScannerSim::start(loopback()).await.unwrap();
    let mut d = device("scanner-1", "scanner", "scanner-serial");
    d.address = Some(sim.local_addr().unwrap().to_string());
    let (app, _dir) = app_with(vec![d]).await;
    assert!(sim.wait_connected(1, Duration::from_secs(5)).await);

    sim.scan("]E0", "4006381333931");
    let (s, v) = app
        .get("/api/v1/devices/scanner-1/scans?after=0&wait_ms=5000")
        .await;
    assert_eq!(s, 200, "{v}");
    let first = &v["items"][0];
    assert_eq!(first["seq"], 1, "{v}");
    assert_eq!(first["symbology"], "ean13");
    assert_eq!(first["sku"], "MILK");
    assert_eq!(first["product_name"], "Whole Milk 1 L");
    assert_eq!(v["last_seq"], 1);

    // Garbage: control bytes, then a frame cut off by silence.
    sim.send_raw(b"\x01\x02\x7f\x1b[\r\n");
    sim.send_raw(b"]E04006");
    let list = wait_for(&app, "/api/v1/devices", |v| {
        device_view(v, "scanner-1")["statistics"]["counters"]["scans_rejected"] == 2
    })
    .await;
    let view = device_view(&list, "scanner-1");
    assert_eq!(
        view["statistics"]["counters"]["scans_rejected"], 2,
        "{view}"
    );
    assert!(
        view["last_event_error"]
            .as_str()
            .is_some_and(|e| e.contains("rejected")),
        "{view}"
    );
    assert_eq!(
        view["usable"], true,
        "garbage does not make the scanner unusable"
    );

    // Still scanning: an unknown product and a QR code come through, unresolved.
    sim.scan("]E0", "4000000000006");
    sim.scan("]Q1", "https://example.com/x");
    let v = wait_for(&app, "/api/v1/devices/scanner-1/scans?after=1", |v| {
        v["items"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(v["items"][0]["seq"], 2, "{v}");
    assert!(v["items"][0]["sku"].is_null());
    assert_eq!(v["items"][0]["unresolved"], "no product has this barcode");
    assert_eq!(v["items"][1]["symbology"], "qr");
    assert_eq!(v["rejected"], 2);

    // Nothing new: an empty page after the wait.
    let (s, v) = app
        .get("/api/v1/devices/scanner-1/scans?after=3&wait_ms=100")
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["items"], json!([]));
    assert_eq!(v["last_seq"], 3);

    for (path, status, code) in [
        ("/api/v1/devices/nope/scans", 404, "device_not_found"),
        (
            "/api/v1/devices/scanner-1/scans?wait_ms=99999",
            400,
            "invalid_wait",
        ),
        (
            "/api/v1/devices/scanner-1/scans?limit=0",
            400,
            "invalid_limit",
        ),
        (
            "/api/v1/devices/scanner-1/scans?after=x",
            400,
            "invalid_query",
        ),
    ] {
        let (s, v) = app.get(path).await;
        assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{path}: {v}");
    }
}

fn mdb_settings(address: SocketAddr) -> DeviceSettings {
    let mut d = device("mdb-1", "payment", "mdb");
    d.address = Some(address.to_string());
    d.io_timeout_ms = Some(500);
    d.request_timeout_secs = Some(5);
    d
}

#[tokio::test]
async fn a_card_checkout_goes_through_the_mdb_reader_and_a_lost_answer_charges_once() {
    let sim = MdbSim::start(loopback(), MdbOptions::default())
        .await
        .unwrap();
    let (app, _dir) = app_with(vec![mdb_settings(sim.local_addr().unwrap())]).await;
    let card = json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"card"}});

    let (s, v, _) = app.checkout("mdb-1", &card).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tenders"][0]["method"], "card", "{v}");
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].price, 129);
    assert_eq!(ledger[0].charge, Charge::Settled);

    // The reader approves and the answer is lost: resolved by asking, charged once.
    sim.fault_next_vend([MdbFault::LoseReply]);
    let (s, v, _) = app.checkout("mdb-2", &card).await;
    let v = if s == 503 {
        // Outcome unknown at first: the same key resolves it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, v, _) = app.checkout("mdb-2", &card).await;
            if s != 503 || Instant::now() > deadline {
                assert_eq!(s, 201, "{v}");
                break v;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        assert_eq!(s, 201, "{v}");
        v
    };
    assert_eq!(v["tenders"][0]["method"], "card");
    let ledger = sim.ledger();
    assert_eq!(
        ledger.len(),
        2,
        "one approval per sale, never a second: {ledger:?}"
    );
    assert_eq!(sim.charge_count(ledger[1].item), 1);
    assert_eq!(ledger[1].charge, Charge::Settled, "{ledger:?}");
    let (s, v, h) = app.checkout("mdb-2", &card).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(sim.ledger().len(), 2);

    let (_, list) = app.get("/api/v1/devices").await;
    let view = device_view(&list, "mdb-1");
    assert_eq!(view["kind"], "payment_terminal");
    assert_eq!(view["driver"], "mdb");
    // The answer really was lost: the driver saw outcome unknown, then resolved it.
    assert!(
        view["last_event_error"]
            .as_str()
            .is_some_and(|e| e.contains("outcome unknown")),
        "{view}"
    );
    assert_eq!(view["statistics"]["commands_failed"], 1, "{view}");
}

#[tokio::test]
async fn a_mock_sensor_is_supervised_and_listed() {
    let (app, _dir) = app_with(vec![device("door-1", "sensor", "mock")]).await;
    let list = wait_for(&app, "/api/v1/devices", |v| {
        device_view(v, "door-1")["usable"] == true
    })
    .await;
    let view = device_view(&list, "door-1");
    assert_eq!(view["kind"], "environment_sensor", "{view}");
    assert_eq!(view["usable"], true, "{view}");
    let (s, v) = app.get("/api/v1/devices/door-1/weight").await;
    assert_eq!((s, v["code"].as_str()), (422, Some("not_a_scale")), "{v}");
    let (s, v) = app.get("/api/v1/devices/door-1/scans").await;
    assert_eq!((s, v["code"].as_str()), (422, Some("not_a_scanner")), "{v}");
}

#[tokio::test]
async fn sim_scale_and_scanner_entries_run_the_real_drivers_against_in_process_simulators() {
    let (app, _dir) = app_with(vec![
        device("scale-1", "scale", "sim"),
        device("scanner-1", "scanner", "sim"),
    ])
    .await;
    let scale = app.devices.sims().scales[0].1.clone();
    let scanner = app.devices.sims().scanners[0].1.clone();
    assert!(scanner.wait_connected(1, Duration::from_secs(5)).await);
    scale.place(1_250, 0);
    let (s, v, _) = app.checkout("sim-1", &weighed_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["lines"][0]["quantity"], json!({"grams": 1250}), "{v}");
    scanner.scan("]E0", "4006381333931");
    let (s, v) = app
        .get("/api/v1/devices/scanner-1/scans?wait_ms=5000")
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"][0]["sku"], "MILK", "{v}");
    let (_, list) = app.get("/api/v1/devices").await;
    for id in ["scale-1", "scanner-1"] {
        let d = device_view(&list, id);
        assert_eq!(d["driver"], "sim", "{d}");
        assert!(
            d["transport"].as_str().unwrap().contains("127.0.0.1"),
            "{d}"
        );
    }
}

#[tokio::test]
async fn a_mock_scanner_rejects_garbage_frames_through_the_drivers_parser() {
    let (app, _dir) = app_with(vec![device("scanner-1", "scanner", "mock")]).await;
    let scanner = app.devices.sims().mock_scanners[0].1.clone();
    // Opened by the supervisor first: a disabled scanner delivers nothing.
    wait_for(&app, "/api/v1/devices", |v| {
        device_view(v, "scanner-1")["usable"] == true
    })
    .await;
    scanner.feed_frame(b"\x00\x00\x00");
    scanner.feed_frame(b"]E04006381333931");
    let v = wait_for(&app, "/api/v1/devices/scanner-1/scans?wait_ms=2000", |v| {
        v["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(v["items"][0]["sku"], "MILK", "{v}");
    assert_eq!(v["rejected"], 1, "{v}");
    assert!(v["last_event_error"].is_string(), "{v}");
}

#[tokio::test]
async fn a_scale_whose_link_drops_is_reconnected_by_the_supervisor() {
    let sim = ScaleSim::start(loopback(), ScaleOptions::default())
        .await
        .unwrap();
    let (app, _dir) = app_with(vec![sics_scale(sim.local_addr().unwrap())]).await;
    sim.place(400, 0);
    // The next command (a health check or ours) is answered by closing the link.
    sim.fault_next([ScaleFault::Drop]);
    let list = wait_for(&app, "/api/v1/devices", |v| {
        let d = device_view(v, "scale-1");
        d["statistics"]["reconnects"].as_u64() >= Some(1) && d["usable"] == true
    })
    .await;
    let d = device_view(&list, "scale-1");
    assert!(d["statistics"]["reconnects"].as_u64() >= Some(1), "{d}");
    assert_eq!(d["usable"], true, "{d}");
    let (s, v, _) = app.checkout("after-drop", &weighed_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["lines"][0]["quantity"], json!({"grams": 400}), "{v}");
}
