//! Selling vends through the running server over HTTP: the real MDB cashless driver
//! and the real OSB/1 board driver, configured in `[[devices]]`, against their wire
//! simulators on loopback.

use outpost_mocks::sim::changer::{ChangerOptions, ChangerSim};
use outpost_mocks::sim::mdb::{Charge, Decision, MdbOptions, MdbSim};
use outpost_mocks::sim::spiral::{SlotTrouble, SpiralSim};
use outpost_mocks::sim::validator::{ValidatorOptions, ValidatorSim};
use outpost_peripherals::changer::CoinRoute;
use outpost_peripherals::validator::BillRoute;
use outpost_server::config::DeviceSettings;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_configured, test_settings};

struct Machine {
    app: TestApp,
    reader: MdbSim,
    board: SpiralSim,
    _dir: tempfile::TempDir,
}

/// A vending machine: a reader and a 2x4 board, with `A1` (MILK at 1.80, 5 units)
/// and `A2` (SOAP, empty) set up over REST.
async fn machine() -> Machine {
    machine_with(MdbOptions::default()).await
}

/// [`machine`] with the reader started with `options`.
async fn machine_with(options: MdbOptions) -> Machine {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let reader = MdbSim::start(loopback, options).await.unwrap();
    let board = SpiralSim::start(loopback, 2, 4, &[("A1", 5)])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.devices = vec![
        DeviceSettings {
            id: "reader".into(),
            kind: "payment".into(),
            driver: "mdb".into(),
            address: Some(reader.local_addr().unwrap().to_string()),
            ..DeviceSettings::default()
        },
        DeviceSettings {
            id: "board".into(),
            kind: "vend_dispenser".into(),
            driver: "osb".into(),
            address: Some(board.local_addr().unwrap().to_string()),
            ..DeviceSettings::default()
        },
    ];
    let app = spawn_configured(settings, None, true).await;
    for (slot, sku) in [("A1", "MILK"), ("A2", "SOAP")] {
        let r = app
            .client
            .put(app.url(&format!("/api/v1/vending/slots/{slot}")))
            .json(&json!({"sku": sku, "price": 180, "capacity": 10, "par": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (s, v, _) = app
        .post(
            "/api/v1/vending/slots/A1/refill",
            Some("fill-a1"),
            &json!({"units": 5}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    Machine {
        app,
        reader,
        board,
        _dir: dir,
    }
}

async fn vend(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Value, String) {
    let (s, v, h) = app.post("/api/v1/vending/vends", key, body).await;
    let replayed = h
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (s, v, replayed)
}

fn charges(reader: &MdbSim, c: Charge) -> usize {
    reader.ledger().iter().filter(|e| e.charge == c).count()
}

async fn count(app: &TestApp, slot: &str) -> u64 {
    let (s, v) = app.get(&format!("/api/v1/vending/slots/{slot}")).await;
    assert_eq!(s, 200, "{v}");
    v["count"].as_u64().unwrap()
}

#[tokio::test]
async fn a_vend_over_http_charges_once_drops_once_and_a_retry_starts_nothing() {
    let m = machine().await;
    let (s, v, _) = vend(&m.app, Some("vend-1"), &json!({"slot": "A1"})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["price"].as_i64(), v["sku"].as_str()),
        (Some("completed"), Some(180), Some("MILK"))
    );
    assert_eq!(v["currency"], "EUR");
    assert_eq!(charges(&m.reader, Charge::Settled), 1);
    assert_eq!(m.board.dispensed_total(), 1);
    assert_eq!(count(&m.app, "A1").await, 4);
    // The sale is in the journal under the vend's id, with the slot on its line.
    let (s, sale) = m
        .app
        .get(&format!("/api/v1/sales/{}", v["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200, "{sale}");
    assert_eq!(sale["lines"][0]["slot"], "A1", "{sale}");

    // A retry with the same key gets the same vend: no charge, no drop.
    let (s, again, replayed) = vend(&m.app, Some("vend-1"), &json!({"slot": "A1"})).await;
    assert_eq!((s, replayed.as_str()), (200, "true"), "{again}");
    assert_eq!(again["id"], v["id"]);
    assert_eq!(charges(&m.reader, Charge::Settled), 1);
    assert_eq!(m.board.dispensed_total(), 1);
    // The same key for another slot is refused.
    let (s, e, _) = vend(&m.app, Some("vend-1"), &json!({"slot": "A2"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_does_not_cut_the_vend_and_its_retry_gets_the_outcome() {
    // No card until the customer presents one.
    let m = machine_with(MdbOptions {
        card_funds: None,
        ..MdbOptions::default()
    })
    .await;
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let cookie = crate::helpers::session_for(
        &m.app.security,
        "impatient",
        vec![outpost_security::auth::roles::Role::Supervisor],
    );
    let gone = impatient
        .post(m.app.url("/api/v1/vending/vends"))
        .header("cookie", cookie)
        .header("Idempotency-Key", "hung-up")
        .json(&json!({"slot": "A1"}))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out: {gone:?}");
    // While the reader waits for the card, a retry sees the vend open.
    let (s, v, _) = vend(&m.app, Some("hung-up"), &json!({"slot": "A1"})).await;
    assert_eq!((s, v["state"].as_str()), (202, Some("authorizing")), "{v}");
    m.reader.present_card(Some(50_000));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let v = loop {
        let (s, v, _) = vend(&m.app, Some("hung-up"), &json!({"slot": "A1"})).await;
        if s == 200 || std::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(charges(&m.reader, Charge::Settled), 1);
    assert_eq!(m.board.dispensed_total(), 1);
}

#[tokio::test]
async fn a_declined_card_or_a_product_not_dropping_charges_nothing() {
    let m = machine().await;
    m.reader.decide_next([Decision::Deny]);
    let (s, v, _) = vend(&m.app, Some("declined"), &json!({"slot": "A1"})).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("failed")), "{v}");
    assert!(v["failure"].as_str().unwrap().contains("declined"), "{v}");
    assert_eq!(m.board.dispensed_total(), 0);

    m.board.trouble("A1", [SlotTrouble::Hang]);
    let (s, v, _) = vend(&m.app, Some("hang"), &json!({"slot": "A1"})).await;
    assert_eq!((s, v["state"].as_str()), (201, Some("failed")), "{v}");
    assert_eq!(charges(&m.reader, Charge::Refunded), 1);
    assert_eq!(charges(&m.reader, Charge::Settled), 0);
    assert_eq!(count(&m.app, "A1").await, 5);
    let (_, alerts) = m.app.get("/api/v1/vending/alerts").await;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alert"] == "dispense_failure"),
        "{alerts}"
    );
}

#[tokio::test]
async fn each_bad_vend_request_is_named_and_nothing_moves() {
    let m = machine().await;
    let cases: Vec<(Option<&str>, Value, u16, &str)> = vec![
        (None, json!({"slot": "A1"}), 400, "idempotency_key_required"),
        (Some("k1"), json!({"slot": "A0"}), 400, "invalid_slot"),
        (Some("k2"), json!({"slot": "a1; DROP"}), 400, "invalid_slot"),
        (Some("k3"), json!({"slot": "C3"}), 404, "slot_not_found"),
        (Some("k4"), json!({"slot": "A2"}), 409, "slot_not_sellable"),
        // This machine has no coin changer or bill validator: it takes no cash.
        (
            Some("k5"),
            json!({"slot": "A1", "method": "cash"}),
            422,
            "method_not_supported",
        ),
    ];
    for (key, body, status, code) in cases {
        let (s, e, _) = vend(&m.app, key, &body).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{body}: {e}");
    }
    for body in [
        json!({"slot": "A1", "tip": 5}),
        json!({"slot": 7}),
        json!({"slot": "A1", "method": "bitcoin"}),
        json!({}),
    ] {
        let (s, e, _) = vend(&m.app, Some("bad-body"), &body).await;
        assert!(s == 400 || s == 422, "{body}: {s} {e}");
        assert!(e["code"].is_string(), "{e}");
    }
    assert!(m.reader.ledger().is_empty());
    assert_eq!(m.board.dispensed_total(), 0);
    assert_eq!(count(&m.app, "A1").await, 5);
}

#[tokio::test]
async fn without_a_dispenser_a_vend_is_refused_as_device_unavailable() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .client
        .put(app.url("/api/v1/vending/slots/A1"))
        .json(&json!({"sku": "MILK", "price": 180, "capacity": 10, "par": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _, _) = app
        .post(
            "/api/v1/vending/slots/A1/refill",
            Some("f"),
            &json!({"units": 1}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, e, _) = vend(&app, Some("no-board"), &json!({"slot": "A1"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (503, Some("device_unavailable")),
        "{e}"
    );
}

async fn alerts(app: &TestApp) -> Vec<String> {
    let (s, v) = app.get("/api/v1/vending/alerts").await;
    assert_eq!(s, 200, "{v}");
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls the alerts until `want` says so, bounded.
async fn until_alerts(app: &TestApp, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let a = alerts(app).await;
        if want(&a) || std::time::Instant::now() > deadline {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_running_server_reads_the_door_sensor_into_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.devices = ["vend_dispenser", "sensor"]
        .into_iter()
        .map(|kind| DeviceSettings {
            id: kind.into(),
            kind: kind.into(),
            driver: "mock".into(),
            ..DeviceSettings::default()
        })
        .collect();
    let app = spawn_configured(settings, None, true).await;
    let sensor = app.devices.sims().sensors[0].1.clone();
    sensor.set_door(true);
    let a = until_alerts(&app, |a| a.iter().any(|x| x == "door_open")).await;
    assert_eq!(a, ["door_open"]);
    sensor.set_door(false);
    let a = until_alerts(&app, |a| a.is_empty()).await;
    assert!(a.is_empty(), "{a:?}");
}

/// A cash machine: an MDB coin changer and bill validator (euro) and a 2x4 board,
/// with `A1` (MILK at 1.80, 5 units) set up over REST.
async fn cash_machine() -> (
    TestApp,
    ChangerSim,
    ValidatorSim,
    SpiralSim,
    tempfile::TempDir,
) {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let coins = ChangerSim::start(loopback, ChangerOptions::euro())
        .await
        .unwrap();
    let notes = ValidatorSim::start(loopback, ValidatorOptions::euro())
        .await
        .unwrap();
    let board = SpiralSim::start(loopback, 2, 4, &[("A1", 5)])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    let dev = |id: &str, kind: &str, driver: &str, at: String| DeviceSettings {
        id: id.into(),
        kind: kind.into(),
        driver: driver.into(),
        address: Some(at),
        ..DeviceSettings::default()
    };
    settings.devices = vec![
        dev(
            "changer",
            "cash_acceptor",
            "mdb-changer",
            coins.local_addr().unwrap().to_string(),
        ),
        dev(
            "validator",
            "cash_acceptor",
            "mdb-validator",
            notes.local_addr().unwrap().to_string(),
        ),
        dev(
            "board",
            "vend_dispenser",
            "osb",
            board.local_addr().unwrap().to_string(),
        ),
    ];
    let app = spawn_configured(settings, None, true).await;
    let r = app
        .client
        .put(app.url("/api/v1/vending/slots/A1"))
        .json(&json!({"sku": "MILK", "price": 180, "capacity": 10, "par": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v, _) = app
        .post(
            "/api/v1/vending/slots/A1/refill",
            Some("fill-a1"),
            &json!({"units": 5}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    (app, coins, notes, board, dir)
}

/// Retry `f` every 50 ms for up to 10 s until it is true.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// POST a cash vend with `key` until the credit is seen (a 422 binds nothing).
async fn cash_vend(app: &TestApp, key: &str) -> (u16, Value) {
    let body = json!({"slot": "A1", "method": "cash"});
    for _ in 0..100 {
        let (s, v, _) = vend(app, Some(key), &body).await;
        if s != 422 {
            return (s, v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the credit never covered the price");
}

#[tokio::test]
async fn a_cash_vend_over_http_takes_coins_and_a_note_and_pays_the_change() {
    let (app, coins, notes, board, _dir) = cash_machine().await;
    // No credit yet: refused, nothing moves.
    let (s, e, _) = vend(&app, Some("none"), &json!({"slot": "A1", "method": "cash"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (422, Some("insufficient_credit")),
        "{e}"
    );
    // The server starts taking coins once the changer is open.
    eventually("the changer takes coins", || {
        coins.insert_coin(5) == CoinRoute::Tube
    })
    .await;
    let (s, v) = cash_vend(&app, "cash-1").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(v["method"], "cash");
    assert_eq!(board.dispensed_total(), 1);
    assert_eq!(coins.paid_out_minor(), 20, "2.00 in, 1.80 sold, 0.20 back");
    assert_eq!(count(&app, "A1").await, 4);
    // The retry is the same vend.
    let (s, again, _) = vend(
        &app,
        Some("cash-1"),
        &json!({"slot": "A1", "method": "cash"}),
    )
    .await;
    assert_eq!((s, &again["id"]), (200, &v["id"]));
    assert_eq!(board.dispensed_total(), 1);

    // A 5 euro note: held in escrow, stacked for the vend, 3.20 back in coins.
    eventually("the validator takes notes", || {
        notes.insert_bill(0) == BillRoute::Escrowed
    })
    .await;
    let (s, v) = cash_vend(&app, "cash-2").await;
    assert_eq!((s, v["state"].as_str()), (201, Some("completed")), "{v}");
    assert_eq!(notes.stacked_minor(), 500);
    assert_eq!(coins.paid_out_minor(), 20 + 320);
    assert_eq!(board.dispensed_total(), 2);
    // The DEX audit counts both as cash sales.
    let r = app
        .client
        .get(app.url("/api/v1/vending/dex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let dex = r.text().await.unwrap();
    assert!(dex.contains("\r\nCA2*360*2*360*2\r\n"), "{dex}");
}

/// The machine's screen: the credit as coins and a note come in, and the coin return
/// button, which hands the note back and pays the coins out; pressed again it returns
/// nothing. A machine without cash refuses the button.
#[tokio::test]
async fn the_screen_shows_the_credit_and_the_return_button_gives_it_back() {
    let (app, coins, notes, _board, _dir) = cash_machine().await;
    let credit = |app: &TestApp| {
        let r = app.client.get(app.url("/api/v1/vending/credit")).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap() }
    };
    let v = credit(&app).await;
    assert_eq!(
        (&v["credit"], &v["accepts_cash"]),
        (&0.into(), &true.into()),
        "{v}"
    );
    eventually("the changer takes coins", || {
        coins.insert_coin(3) == CoinRoute::Tube
    })
    .await;
    eventually("the validator takes notes", || {
        notes.insert_bill(0) == BillRoute::Escrowed
    })
    .await;
    let mut v = credit(&app).await;
    for _ in 0..100 {
        if v["credit"] == 50 && v["in_escrow"] == 500 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        v = credit(&app).await;
    }
    assert_eq!(
        (&v["credit"], &v["in_escrow"]),
        (&50.into(), &500.into()),
        "{v}"
    );
    let (s, back, _) = app
        .post("/api/v1/vending/credit/return", None, &json!({}))
        .await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(
        (&back["coins"], &back["note"], &back["credit"]),
        (&50.into(), &500.into(), &0.into()),
        "{back}"
    );
    assert_eq!(coins.paid_out_minor(), 50);
    assert_eq!(
        notes.stacked_minor(),
        0,
        "the note went back, not into the box"
    );
    let v = credit(&app).await;
    assert_eq!(
        (&v["credit"], &v["in_escrow"]),
        (&0.into(), &Value::Null),
        "{v}"
    );
    // Pressed again: nothing more.
    let (s, again, _) = app
        .post("/api/v1/vending/credit/return", None, &json!({}))
        .await;
    assert_eq!((s, &again["coins"]), (200, &0.into()), "{again}");
    assert_eq!(coins.paid_out_minor(), 50);

    // A machine without cash devices.
    let (plain, _reader, _board2) = {
        let m = machine().await;
        (m.app, m.reader, m.board)
    };
    let (s, e, _) = plain
        .post("/api/v1/vending/credit/return", None, &json!({}))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (422, Some("method_not_supported")),
        "{e}"
    );
    let v = credit(&plain).await;
    assert_eq!(v["accepts_cash"], false, "{v}");
}

/// A real sensor driver: the kernel's files (a 1-Wire probe's `w1_slave`, a GPIO
/// door switch) read by the `sysfs` driver feed the machine's alerts; a probe whose
/// CRC fails gives no reading (the device fails, the alerts keep their state).
#[tokio::test]
async fn the_sysfs_sensor_driver_reads_a_probe_and_a_door_switch_into_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("w1_slave");
    let door = dir.path().join("value");
    let w1 = |t: &str, crc: &str| {
        format!("72 01 4b 46 7f ff 0e 10 57 : crc=57 {crc}\n72 01 4b 46 7f ff 0e 10 57 t={t}\n")
    };
    std::fs::write(&probe, w1("4125", "YES")).unwrap();
    std::fs::write(&door, "0\n").unwrap();
    let mut settings = test_settings(dir.path());
    settings.vending.sensor_interval_secs = 1;
    settings.devices = vec![
        DeviceSettings {
            id: "board".into(),
            kind: "vend_dispenser".into(),
            driver: "mock".into(),
            ..DeviceSettings::default()
        },
        DeviceSettings {
            id: "fridge".into(),
            kind: "sensor".into(),
            driver: "sysfs".into(),
            temperature_file: Some(probe.display().to_string()),
            door_file: Some(door.display().to_string()),
            ..DeviceSettings::default()
        },
    ];
    let app = spawn_configured(settings, None, true).await;
    let (s, devices) = app.get("/api/v1/devices").await;
    assert_eq!(s, 200, "{devices}");
    assert!(devices.to_string().contains("sysfs"), "{devices}");
    std::fs::write(&door, "1\n").unwrap();
    let a = until_alerts(&app, |a| a.iter().any(|x| x == "door_open")).await;
    assert_eq!(a, ["door_open"]);
    // A failing probe: no reading, and the door alert stays as it was.
    std::fs::write(&probe, w1("4125", "NO")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(alerts(&app).await, ["door_open"]);
    std::fs::write(&probe, w1("4125", "YES")).unwrap();
    std::fs::write(&door, "0\n").unwrap();
    let a = until_alerts(&app, |a| a.is_empty()).await;
    assert!(a.is_empty(), "{a:?}");
}
