//! A real `outpost serve` process selling vends over HTTP, through the real MDB
//! cashless and OSB/1 board drivers against their wire simulators (which live in this
//! test process and survive the server, as the machine's reader and board outlive a
//! power cut of the controller), killed with SIGKILL in the middle of a vend and
//! restarted. The restarted server finishes the vend before it sells again: never a
//! charge without a product, never two products for one charge, and the vend's
//! Idempotency-Key answers with how it ended.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_mocks::sim::mdb::{Charge, MdbOptions, MdbSim};
use outpost_mocks::sim::spiral::{SpiralFault, SpiralSim};
use serde_json::{Value, json};

use super::{Server, start_with};

struct Site {
    data: std::path::PathBuf,
    config: std::path::PathBuf,
    reader: MdbSim,
    board: SpiralSim,
    till: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn cli(data: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(h)
        .build()
        .unwrap()
}

/// A machine with slot `A1` (a drink at 2.50) holding 10 units, the server stopped.
async fn site() -> Site {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let reader = MdbSim::start(loopback, MdbOptions::default())
        .await
        .unwrap();
    let board = SpiralSim::start(loopback, 6, 8, &[("A1", 10)])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let catalog = dir.path().join("catalog.jsonl");
    std::fs::write(
        &catalog,
        r#"{"sku":"COLA","name":"Cola 0.33 L","category":"drinks","price":250,"currency":"EUR","tax_class":"standard"}"#,
    )
    .unwrap();
    cli(&data, &["import", "catalog", catalog.to_str().unwrap()]);
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[[devices]]\nid = \"reader\"\nkind = \"payment\"\ndriver = \"mdb\"\naddress = \"{}\"\n\n\
             [[devices]]\nid = \"board\"\nkind = \"vend_dispenser\"\ndriver = \"osb\"\naddress = \"{}\"\n",
            reader.local_addr().unwrap(),
            board.local_addr().unwrap()
        ),
    )
    .unwrap();
    let till = bearer(&cli(&data, &["terminals", "add", "machine-1"]));
    let password = cli(
        &data,
        &["users", "add", "route-tech", "--role", "technician"],
    );
    let server = start_with(&data, Some(&config));
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": "route-tech", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let tech = reqwest::Client::new();
    let r = tech
        .put(format!("{}/api/v1/vending/slots/A1", server.base))
        .header("cookie", &cookie)
        .json(&json!({"sku": "COLA", "price": 250, "capacity": 20, "par": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = tech
        .post(format!("{}/api/v1/vending/slots/A1/refill", server.base))
        .header("cookie", &cookie)
        .header("Idempotency-Key", "fill")
        .json(&json!({"units": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    drop(server);
    Site {
        data,
        config,
        reader,
        board,
        till,
        _dir: dir,
    }
}

impl Site {
    fn serve(&self) -> Server {
        start_with(&self.data, Some(&self.config))
    }

    /// POST the vend with `key` in the background.
    fn vend_async(&self, server: &Server, key: &str) -> tokio::task::JoinHandle<()> {
        let req = self
            .till
            .post(format!("{}/api/v1/vending/vends", server.base))
            .header("Idempotency-Key", key)
            .json(&json!({"slot": "A1"}));
        // The answer never comes: the server is killed first.
        tokio::spawn(async move {
            let _ = req.send().await;
        })
    }

    /// Retry the vend `key` until it has ended (recovery finished it), bounded.
    async fn ended(&self, server: &Server, key: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .till
                .post(format!("{}/api/v1/vending/vends", server.base))
                .header("Idempotency-Key", key)
                .json(&json!({"slot": "A1"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            if status == 200 {
                assert_eq!(v["id"].as_str().map(str::len), Some(36), "{v}");
                return v;
            }
            assert_eq!(status, 202, "{v}");
            assert!(Instant::now() < deadline, "vend {key} never ended: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn count(&self, server: &Server) -> i64 {
        let v: Value = self
            .till
            .get(format!("{}/api/v1/vending/slots/A1", server.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["count"].as_i64().unwrap()
    }

    fn charges(&self, c: Charge) -> usize {
        self.reader
            .ledger()
            .iter()
            .filter(|e| e.charge == c)
            .count()
    }
}

fn sigkill(mut server: Server) {
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vend_cut_by_sigkill_is_finished_at_the_next_start_without_a_charge_without_a_product() {
    let s = site().await;

    // 1. Killed while the reader waits for the customer's card (authorizing): the
    //    reader holds nothing (the restarted controller withdraws the request on the
    //    session it kept, then resets it); the vend fails.
    s.reader.present_card(None);
    let server = s.serve();
    let pending = s.vend_async(&server, "cut-waiting-for-card");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sigkill(server);
    pending.await.unwrap();
    s.reader.present_card(Some(50_000));
    let server = s.serve();
    let v = s.ended(&server, "cut-waiting-for-card").await;
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(s.board.dispensed_total(), 0);
    assert_eq!(s.charges(Charge::Settled) + s.charges(Charge::Held), 0);
    assert_eq!(s.count(&server).await, 10);
    sigkill(server);

    // 2. Killed after the motor ran, while the board's answer is lost (dispensing):
    //    the restarted controller asks the board about the key (DROP) and never runs
    //    the motor again; the reader kept its session (only the controller died), so
    //    VEND SUCCESS on it takes the charge before the reader is reset: sold, one
    //    product out, one charge, the slot one unit down.
    s.board.fault_next([SpiralFault::LoseReply]);
    let server = s.serve();
    let pending = s.vend_async(&server, "cut-while-dispensing");
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.board.dispensed_total() == 0 {
        assert!(Instant::now() < deadline, "the motor never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigkill(server);
    pending.await.unwrap();
    let server = s.serve();
    let v = s.ended(&server, "cut-while-dispensing").await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(v["capture_in_doubt"], false, "{v}");
    assert_eq!(s.board.dispensed_total(), 1);
    assert_eq!(s.charges(Charge::Settled), 1);
    assert_eq!(s.charges(Charge::Held) + s.charges(Charge::Released), 0);
    assert_eq!(s.count(&server).await, 9);

    // 3. The machine sells again after recovery: one charge, one product. (Recovery
    //    may still hold the machine for a moment: 409 `vend_in_progress`, retried.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, v) = loop {
        let r = s
            .till
            .post(format!("{}/api/v1/vending/vends", server.base))
            .header("Idempotency-Key", "after-recovery")
            .json(&json!({"slot": "A1"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if status != 409 || Instant::now() > deadline {
            break (status, v);
        }
        assert_eq!(v["code"], "vend_in_progress", "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (status, v["state"].as_str()),
        (201, Some("completed")),
        "{v}"
    );
    assert_eq!(s.charges(Charge::Settled), 2);
    assert_eq!(s.board.dispensed_total(), 2);
    assert_eq!(s.count(&server).await, 8);
    // Charges equal completed vends; products out equal completed plus unpaid vends.
    sigkill(server);
}
