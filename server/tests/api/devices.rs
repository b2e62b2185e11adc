//! Devices in the middle of a sale: the real ESC/POS and nexo drivers against the
//! wire simulators on loopback. A sale never fails for a printer; a receipt that could
//! not print waits in the durable queue and prints once when the printer recovers; a
//! lost payment answer is resolved by asking, never by charging again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use outpost_mocks::sim::escpos::{EscPosSim, SimHandle, SimOptions};
use outpost_mocks::sim::payment::{Mode, PaymentSim, SimOptions as PaySimOptions};
use outpost_server::config::{DeviceSettings, Settings};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_configured, test_settings};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn cash_cart() -> Value {
    json!({"lines":[{"sku":"MILK","quantity":2}],"payment":{"method":"cash","tendered":500}})
}

fn device(id: &str, kind: &str, driver: &str) -> DeviceSettings {
    DeviceSettings {
        id: id.into(),
        kind: kind.into(),
        driver: driver.into(),
        ..DeviceSettings::default()
    }
}

/// Quick supervisor and spooler timings for tests.
fn quick(s: &mut Settings) {
    s.receipts.retry_ms = 200;
    s.receipts.backoff_min_ms = 50;
    s.receipts.backoff_max_ms = 400;
    s.receipts.health_interval_secs = 1;
    s.receipts.print_wait_ms = 3_000;
}

/// A printer (and the drawer on its kick port) at `printer`.
fn printer_settings(dir: &std::path::Path, printer: SocketAddr) -> Settings {
    let mut s = test_settings(dir);
    quick(&mut s);
    let mut p = device("printer-1", "printer", "escpos-tcp");
    p.address = Some(printer.to_string());
    p.io_timeout_ms = Some(1_000);
    p.connect_timeout_ms = Some(1_000);
    let mut d = device("drawer-1", "drawer", "escpos-kick");
    d.printer = Some("printer-1".into());
    s.devices = vec![p, d];
    s
}

async fn printer_app(sim: &SimHandle) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_configured(printer_settings(dir.path(), sim.local_addr()), None, true).await;
    (app, dir)
}

/// Complete receipts the simulator printed that name `sale_id`.
fn printed_copies(sim: &SimHandle, sale_id: &str) -> usize {
    sim.receipts()
        .iter()
        .filter(|r| r.contains(sale_id))
        .count()
}

/// Wait (bounded) until the reprint queue is empty.
async fn queue_drains(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, q) = app.get("/api/v1/receipts/queue").await;
        assert_eq!(s, 200, "{q}");
        if q["total"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "queue never drained: {q}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn device_view<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("no device {id} in {list}"))
}

#[tokio::test]
async fn a_cash_sale_prints_its_receipt_and_opens_the_drawer() {
    let sim = EscPosSim::start(loopback(), SimOptions::default())
        .await
        .unwrap();
    let (app, _dir) = printer_app(&sim).await;
    let (s, v, _) = app.checkout("print-1", &cash_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["receipt_status"], "printed", "{v}");
    assert_eq!(v["drawer_status"], "opened", "{v}");
    assert_eq!(v["display_status"], "not_configured");
    let id = v["sale_id"].as_str().unwrap();
    assert_eq!(printed_copies(&sim, id), 1);
    assert!(sim.last_receipt().unwrap().contains("Whole Milk 1 L"));
    assert_eq!(sim.counters().kicks, 1);
    // A retry of the same checkout prints nothing and kicks nothing.
    let (s, v2, _) = app.checkout("print-1", &cash_cart()).await;
    assert_eq!((s, &v2["receipt_status"]), (201, &json!("printed")));
    assert_eq!(printed_copies(&sim, id), 1);
    assert_eq!(sim.counters().kicks, 1);
    // A reprint is one more copy.
    let (s, r, _) = app
        .post(&format!("/api/v1/sales/{id}/reprint"), None, &json!({}))
        .await;
    assert_eq!((s, &r["receipt_status"]), (202, &json!("printed")), "{r}");
    assert_eq!(printed_copies(&sim, id), 2);
}

#[tokio::test]
async fn paper_running_out_mid_sale_queues_the_receipt_and_it_prints_once_on_recovery() {
    let sim = EscPosSim::start(loopback(), SimOptions::default())
        .await
        .unwrap();
    let (app, _dir) = printer_app(&sim).await;
    // A few lines of paper: the receipt starts printing and is torn off mid-way.
    sim.paper_out_after(4);
    let (s, v, _) = app.checkout("paper-1", &cash_cart()).await;
    assert_eq!(s, 201, "the sale completes without paper: {v}");
    assert_eq!(v["receipt_status"], "queued", "{v}");
    assert!(
        v["device_errors"][0].as_str().unwrap().contains("paper"),
        "{v}"
    );
    let first = v["sale_id"].as_str().unwrap().to_owned();
    // The next sale does not wait for a printer known to be failing, and queues behind.
    let started = Instant::now();
    let (s, v, _) = app.checkout("paper-2", &cash_cart()).await;
    assert_eq!((s, &v["receipt_status"]), (201, &json!("queued")), "{v}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let second = v["sale_id"].as_str().unwrap().to_owned();
    let (_, q) = app.get("/api/v1/receipts/queue").await;
    assert_eq!(q["total"], 2, "{q}");
    assert_eq!(q["items"][0]["sale_id"], first.as_str());
    assert!(
        q["printer_error"].as_str().unwrap().contains("paper"),
        "{q}"
    );
    let (_, devices) = app.get("/api/v1/devices").await;
    let p = device_view(&devices, "printer-1");
    assert_eq!(p["queued_receipts"], 2);
    assert_eq!(p["state"], "error", "{p}");
    assert_eq!(printed_copies(&sim, &first), 0);

    sim.load_paper(10_000);
    queue_drains(&app).await;
    // In order, once each, and no more copies come later.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(printed_copies(&sim, &first), 1);
    assert_eq!(printed_copies(&sim, &second), 1);
    let receipts = sim.receipts();
    let pos = |id: &str| receipts.iter().position(|r| r.contains(id)).unwrap();
    assert!(pos(&first) < pos(&second));
    let (_, sale) = app.get(&format!("/api/v1/sales/{first}")).await;
    assert_eq!(sale["receipt_status"], "printed");
    assert_eq!(sim.counters().torn, 1);
}

#[tokio::test]
async fn a_cover_opened_mid_sale_queues_the_receipt_until_it_is_closed() {
    let sim = EscPosSim::start(loopback(), SimOptions::default())
        .await
        .unwrap();
    let (app, _dir) = printer_app(&sim).await;
    sim.set_cover_open(true);
    let (s, v, _) = app.checkout("cover-1", &cash_cart()).await;
    assert_eq!((s, &v["receipt_status"]), (201, &json!("queued")), "{v}");
    let id = v["sale_id"].as_str().unwrap().to_owned();
    let (_, devices) = app.get("/api/v1/devices").await;
    let p = device_view(&devices, "printer-1");
    assert!(
        p["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cover"),
        "{p}"
    );
    sim.set_cover_open(false);
    queue_drains(&app).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(printed_copies(&sim, &id), 1);
}

#[tokio::test]
async fn the_queue_survives_a_restart_and_prints_once_the_printer_is_back() {
    let sim = EscPosSim::start(loopback(), SimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    sim.set_cover_open(true);
    let app = spawn_configured(printer_settings(dir.path(), sim.local_addr()), None, true).await;
    let (s, v, _) = app.checkout("restart-1", &cash_cart()).await;
    assert_eq!((s, &v["receipt_status"]), (201, &json!("queued")), "{v}");
    let id = v["sale_id"].as_str().unwrap().to_owned();
    app.stop().await;
    sim.set_cover_open(false);
    let app = spawn_configured(printer_settings(dir.path(), sim.local_addr()), None, false).await;
    queue_drains(&app).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(printed_copies(&sim, &id), 1);
}

#[tokio::test]
async fn with_no_printer_the_sale_completes_and_its_receipt_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    quick(&mut s);
    let app = spawn_configured(s, None, true).await;
    let (s, v, _) = app.checkout("none-1", &cash_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["receipt_status"], "queued");
    assert_eq!(v["drawer_status"], "not_configured");
    let id = v["sale_id"].as_str().unwrap().to_owned();
    let (_, q) = app.get("/api/v1/receipts/queue").await;
    assert_eq!(q["total"], 1);
    assert_eq!(q["items"][0]["sale_id"], id.as_str());
    assert!(
        q["printer_error"]
            .as_str()
            .unwrap_or_default()
            .contains("no receipt printer"),
        "{q}"
    );
    // Asking again for a queued receipt does not queue it twice.
    let (s, r, _) = app
        .post(&format!("/api/v1/sales/{id}/reprint"), None, &json!({}))
        .await;
    assert_eq!((s, &r["receipt_status"]), (202, &json!("queued")), "{r}");
    let (_, q) = app.get("/api/v1/receipts/queue").await;
    assert_eq!(q["total"], 1);
    let (_, sale) = app.get(&format!("/api/v1/sales/{id}")).await;
    assert_eq!(sale["receipt_status"], "queued");
    let (s, e, _) = app
        .post(
            "/api/v1/sales/01890000-0000-7000-8000-000000000000/reprint",
            None,
            &json!({}),
        )
        .await;
    assert_eq!((s, &e["code"]), (404, &json!("sale_not_found")));
}

#[tokio::test]
async fn devices_list_their_state_health_and_errors() {
    let sim = EscPosSim::start(loopback(), SimOptions::default())
        .await
        .unwrap();
    let pay = PaymentSim::start(loopback(), PaySimOptions::default())
        .await
        .unwrap();
    // A printer nobody listens on: refused at once.
    let dead = std::net::TcpListener::bind(loopback()).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let dir = tempfile::tempdir().unwrap();
    let mut s = printer_settings(dir.path(), dead_addr);
    let mut t = device("pay-1", "payment", "nexo-tcp");
    t.address = Some(pay.local_addr().to_string());
    s.devices.push(t);
    let app = spawn_configured(s, None, true).await;
    let (st, list) = app.get("/api/v1/devices").await;
    assert_eq!(st, 200);
    let p = device_view(&list, "printer-1");
    assert_eq!(p["kind"], "receipt_printer");
    assert_eq!(p["driver"], "escpos-tcp");
    assert_eq!(p["state"], "closed");
    assert_eq!(p["usable"], false);
    assert!(
        p["last_error"].as_str().unwrap().contains("cannot open"),
        "{p}"
    );
    let t = device_view(&list, "pay-1");
    assert_eq!(
        (&t["kind"], &t["state"], &t["health"]["health"]),
        (&json!("payment_terminal"), &json!("idle"), &json!("ok")),
        "{t}"
    );
    assert_eq!(device_view(&list, "drawer-1")["kind"], "cash_drawer");
    // A sale still completes; the receipt waits; the drawer reports it failed.
    let (s, v, _) = app.checkout("dead-1", &cash_cart()).await;
    assert_eq!((s, &v["receipt_status"]), (201, &json!("queued")), "{v}");
    assert_eq!(v["drawer_status"], "failed");
    // Health checks on demand.
    let (s, h, _) = app
        .post("/api/v1/devices/pay-1/health-check", None, &json!({}))
        .await;
    assert_eq!((s, &h["health"]["health"]), (200, &json!("ok")), "{h}");
    let (s, h, _) = app
        .post("/api/v1/devices/printer-1/health-check", None, &json!({}))
        .await;
    assert_eq!((s, &h["usable"]), (200, &json!(false)), "{h}");
    let (s, e, _) = app
        .post("/api/v1/devices/nope/health-check", None, &json!({}))
        .await;
    assert_eq!((s, &e["code"]), (404, &json!("device_not_found")));
    let (s, e, _) = app
        .post(
            "/api/v1/devices/pay-1/health-check?level=loud",
            None,
            &json!({}),
        )
        .await;
    assert_eq!((s, &e["code"]), (400, &json!("invalid_level")));
    drop(sim);
}

fn nexo_settings(dir: &std::path::Path, terminal: SocketAddr) -> Settings {
    let mut s = test_settings(dir);
    quick(&mut s);
    let mut t = device("pay-1", "payment", "nexo-tcp");
    t.address = Some(terminal.to_string());
    t.request_timeout_secs = Some(5);
    t.io_timeout_ms = Some(1_000);
    s.devices = vec![t];
    s.payment.timeout_secs = 5;
    s
}

#[tokio::test]
async fn a_terminal_that_loses_its_answer_after_charging_is_asked_not_charged_again() {
    let pay = PaymentSim::start(loopback(), PaySimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_configured(nexo_settings(dir.path(), pay.local_addr()), None, true).await;
    pay.next([Mode::LoseResponse]);
    let card = json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"card"}});
    let (s, v, _) = app.checkout("lost-nexo-1", &card).await;
    assert_eq!(s, 201, "{v}");
    let key = v["tenders"][0]["payment_key"].as_str().unwrap();
    assert_eq!(pay.charge_count(key), 1);
    assert_eq!(pay.total_charges(), 1);
    assert_eq!(pay.double_charges(), 0);
    let (s, _, h) = app.checkout("lost-nexo-1", &card).await;
    assert_eq!(s, 201);
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(pay.total_charges(), 1);
}

/// A running `outpost serve` child.
struct Child {
    child: std::process::Child,
    base: String,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_outpost(config: &std::path::Path) -> Child {
    start_child(&["serve".as_ref(), "--config".as_ref(), config.as_os_str()])
}

fn start_child(args: &[&std::ffi::OsStr]) -> Child {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .env("OUTPOST_LOG", "info")
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("outpost starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            // Shown with the test's output when it fails.
            eprintln!("outpost: {line}");
            if !sent && line.contains("Outpost is listening") {
                let v: Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("outpost logs its address");
    Child {
        child,
        base: format!("http://{addr}"),
    }
}

// Multi-threaded: the simulator must answer the server's start-up diagnosis while this
// test blocks on the child's "listening" line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_authorization_and_completion_leaves_one_outcome_and_one_charge() {
    let pay = PaymentSim::start(loopback(), PaySimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let mut settings = outpost_server::config::Settings {
            data_dir: dir.path().join("data"),
            ..Default::default()
        };
        settings.security.allow_software = true;
        let (store, _security) = outpost_server::access::open_data_dir(
            &settings,
            &outpost_server::store::StoreOptions::default(),
        )
        .unwrap();
        crate::helpers::seed_store(&store);
    }
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[payment]\ntimeout_secs = 5\nrecovery_interval_secs = 1\n[[devices]]\nid = \"pay-1\"\nkind = \"payment\"\ndriver = \"nexo-tcp\"\naddress = \"{}\"\nrequest_timeout_secs = 10\n[security]\nallow_software = true\n",
            dir.path().join("data"),
            pay.local_addr()
        ),
    )
    .unwrap();
    let token = crate::helpers::cli_terminal_token(&config, "till-1");
    // The card holder is slow: the terminal charges 1.5 s after the request.
    pay.next([Mode::Late(Duration::from_millis(1_500))]);
    let server = start_outpost(&config);
    let card = json!({"lines":[{"sku":"BREAD","quantity":1}],"payment":{"method":"card"}});
    let client = crate::helpers::client_with("authorization", &format!("Bearer {token}"));
    let url = format!("{}/api/v1/checkout", server.base);
    let inflight = {
        let (client, url, card) = (client.clone(), url.clone(), card.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .header("Idempotency-Key", "kill-1")
                .json(&card)
                .timeout(Duration::from_secs(10))
                .send()
                .await
        })
    };
    // Wait (bounded) until the terminal has the payment, then kill the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pay.pending_modes() > 0 {
        if inflight.is_finished() {
            panic!(
                "the checkout ended before the terminal had the payment: {:?}",
                inflight.await.unwrap().map(|r| r.status())
            );
        }
        assert!(
            Instant::now() < deadline,
            "the payment never reached the terminal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server); // SIGKILL, then reap.
    assert!(
        inflight.await.unwrap().is_err(),
        "the killed server answered"
    );
    // The terminal finishes the charge while the server is down.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(pay.total_charges(), 1);
    let server = start_outpost(&config);
    // The retry with the same key gets the one sale, once recovery has asked.
    let deadline = Instant::now() + Duration::from_secs(20);
    let sale = loop {
        let r = client
            .post(format!("{}/api/v1/checkout", server.base))
            .header("Idempotency-Key", "kill-1")
            .json(&card)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or_default();
        if status == 201 {
            break v;
        }
        assert!(
            matches!(status, 409 | 503) && Instant::now() < deadline,
            "{status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let key = sale["tenders"][0]["payment_key"].as_str().unwrap();
    assert_eq!(pay.charge_count(key), 1);
    assert_eq!(pay.total_charges(), 1);
    assert_eq!(pay.double_charges(), 0);
    let list: Value = client
        .get(format!("{}/api/v1/sales", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn bad_device_entries_stop_the_server_with_the_entry_named() {
    let dir = tempfile::tempdir().unwrap();
    for (entry, expect) in [
        (
            "id = \"p\"\nkind = \"printer\"\ndriver = \"escpos-tcp\"\n",
            "devices[0] (id \"p\").address",
        ),
        (
            "id = \"p\"\nkind = \"toaster\"\ndriver = \"mock\"\n",
            "unknown kind",
        ),
        (
            "id = \"s\"\nkind = \"scanner\"\ndriver = \"serial\"\nport = \"/dev/ttyUSB0\"\n",
            "unknown driver \"serial\" for barcode_scanner: use scanner-serial, sim, mock",
        ),
        (
            "id = \"s\"\nkind = \"scale\"\ndriver = \"mt-sics\"\n",
            "needs port = \"/dev/ttyUSB0\" (serial) or address",
        ),
        (
            "id = \"c\"\nkind = \"cash_acceptor\"\ndriver = \"sim\"\n",
            "unknown driver \"sim\" for cash_acceptor: use mdb-changer, mdb-validator, mdb-changer-sim, mdb-validator-sim, mock",
        ),
        (
            "id = \"v\"\nkind = \"vend_dispenser\"\ndriver = \"escpos-tcp\"\n",
            "unknown driver \"escpos-tcp\" for vend_dispenser: use osb, sim, mock",
        ),
        (
            "id = \"v\"\nkind = \"vend_dispenser\"\ndriver = \"osb\"\n",
            "needs port = \"/dev/ttyUSB0\" (serial) or address",
        ),
        (
            "id = \"p\"\nkind = \"printer\"\ndriver = \"escpos-tcp\"\nadress = \"x\"\n",
            "adress",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, format!("[[devices]]\n{entry}")).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A server that wrongly accepts the entry serves forever: bound the wait.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{entry}: started and kept serving");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{entry}: started");
        assert!(err.contains(expect), "{entry}: {err}");
    }
}

#[tokio::test]
async fn the_demo_sells_through_simulated_devices_on_the_real_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let server = start_child(&[
        "demo".as_ref(),
        "--products".as_ref(),
        "300".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    // The demo wrote its credentials: the terminal sells, the technician sees devices.
    let creds: Value = serde_json::from_slice(
        &std::fs::read(data.join("demo-credentials.json")).expect("demo credentials written"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(data.join("demo-credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let client = crate::helpers::client_with(
        "authorization",
        &format!("Bearer {}", creds["terminal_token"].as_str().unwrap()),
    );
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&creds["technician"])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let tech = crate::helpers::client_with("cookie", &cookie);
    let products: Value = client
        .get(format!("{}/api/v1/products?limit=50", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let get = |path: &str| {
        let (client, url) = (tech.clone(), format!("{}{path}", server.base));
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let devices = get("/api/v1/devices").await;
    let kinds: Vec<_> = devices["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["kind"].as_str().unwrap().to_owned(), d["usable"].clone()))
        .collect();
    // One of every kind, each usable, each answering a health check.
    for kind in [
        "receipt_printer",
        "cash_drawer",
        "barcode_scanner",
        "scale",
        "customer_display",
        "payment_terminal",
        "cash_acceptor",
        "vend_dispenser",
        "environment_sensor",
    ] {
        assert!(
            kinds.contains(&(kind.to_owned(), json!(true))),
            "{kind} missing or unusable: {devices}"
        );
    }
    assert_eq!(kinds.len(), 9, "{devices}");
    for d in devices["items"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let r = tech
            .post(format!("{}/api/v1/devices/{id}/health-check", server.base))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{id}");
        let h: Value = r.json().await.unwrap();
        assert_eq!(h["health"]["health"], "ok", "{id}: {h}");
    }
    let printer = device_view(&devices, "printer-1");
    assert!(
        printer["transport"]
            .as_str()
            .unwrap()
            .starts_with("tcp://127.0.0.1:")
    );
    let payment = device_view(&devices, "payment-1");
    assert_eq!(payment["statistics"]["commands_failed"], 0);
    let sku = products["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sold_by"] == "each")
        .expect("a product sold by the piece")["sku"]
        .clone();
    for (key, payment) in [
        ("demo-cash", json!({"method":"cash","tendered":10_000_000})),
        ("demo-card", json!({"method":"card"})),
    ] {
        let r = client
            .post(format!("{}/api/v1/checkout", server.base))
            .header("Idempotency-Key", key)
            .json(&json!({"lines":[{"sku": sku, "quantity": 1}], "payment": payment}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["receipt_status"], "printed", "{v}");
        assert_eq!(v["display_status"], "shown", "{v}");
        let last = get("/api/v1/devices/printer-1/last-receipt").await;
        assert!(
            last["text"]
                .as_str()
                .unwrap()
                .contains(v["sale_id"].as_str().unwrap()),
            "{last}"
        );
    }
    let devices = get("/api/v1/devices").await;
    let printer = device_view(&devices, "printer-1");
    assert_eq!(printer["statistics"]["counters"]["receipts_printed"], 2);
    assert_eq!(
        device_view(&devices, "drawer-1")["statistics"]["counters"]["kicks"],
        1
    );
}

#[tokio::test]
async fn a_payment_still_waiting_for_the_card_at_our_timeout_is_aborted_not_left_to_charge() {
    let pay = PaymentSim::start(loopback(), PaySimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = nexo_settings(dir.path(), pay.local_addr());
    // Our bound (1 s) runs out long before the card holder (10 s) or the driver (20 s).
    s.payment.timeout_secs = 1;
    s.devices[0].request_timeout_secs = Some(20);
    let app = spawn_configured(s, None, true).await;
    pay.next([Mode::Late(Duration::from_secs(10))]);
    let card = json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"card"}});
    let started = Instant::now();
    let (s, v, _) = app.checkout("abort-1", &card).await;
    // Aborted, then asked: a final answer (no charge), not an outcome left in doubt.
    assert_eq!((s, &v["code"]), (402, &json!("payment_declined")), "{v}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(pay.total_charges(), 0);
    let (_, list) = app.get("/api/v1/sales").await;
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_full_receipt_queue_lets_the_sale_complete_unqueued() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    quick(&mut s);
    s.receipts.queue_max = 1;
    let app = spawn_configured(s, None, true).await;
    let (s, v, _) = app.checkout("full-1", &cash_cart()).await;
    assert_eq!((s, &v["receipt_status"]), (201, &json!("queued")), "{v}");
    let (s, v, _) = app.checkout("full-2", &cash_cart()).await;
    assert_eq!(
        (s, &v["receipt_status"]),
        (201, &json!("not_queued")),
        "{v}"
    );
    let id = v["sale_id"].as_str().unwrap();
    let (s, e, _) = app
        .post(&format!("/api/v1/sales/{id}/reprint"), None, &json!({}))
        .await;
    assert_eq!((s, &e["code"]), (503, &json!("receipt_queue_full")), "{e}");
    let (_, q) = app.get("/api/v1/receipts/queue").await;
    assert_eq!(q["total"], 1);
}
