//! A real `outpost serve` process selling vends over HTTP, through the real MDB
//! cashless reader, coin changer and bill validator and OSB/1 board drivers against
//! their wire simulators (which live in this test process and survive the server, as
//! the machine's devices outlive a restart of its controller), killed with SIGKILL
//! in the middle of a vend and restarted. The restarted server finishes the vend
//! before it sells again: never a charge without a product, never two products for
//! one charge, cash credited and paid out exactly once, and the vend's
//! Idempotency-Key answers with how it ended.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use outpost_mocks::sim::changer::{ChangerOptions, ChangerSim};
use outpost_mocks::sim::mdb::{Charge, MdbOptions, MdbSim};
use outpost_mocks::sim::spiral::{SpiralFault, SpiralSim};
use outpost_mocks::sim::validator::{ValidatorOptions, ValidatorSim};
use outpost_peripherals::changer::CoinRoute;
use outpost_peripherals::validator::BillRoute;
use serde_json::{Value, json};

use super::{Server, login, start_with};

struct Site {
    data: std::path::PathBuf,
    config: std::path::PathBuf,
    reader: MdbSim,
    board: SpiralSim,
    coins: ChangerSim,
    notes: ValidatorSim,
    till: reqwest::Client,
    /// The technician's password (user `route-tech`).
    tech: String,
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
    let coins = ChangerSim::start(loopback, ChangerOptions::euro())
        .await
        .unwrap();
    let notes = ValidatorSim::start(loopback, ValidatorOptions::euro())
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
             [[devices]]\nid = \"board\"\nkind = \"vend_dispenser\"\ndriver = \"osb\"\naddress = \"{}\"\n\n\
             [[devices]]\nid = \"changer\"\nkind = \"cash_acceptor\"\ndriver = \"mdb-changer\"\naddress = \"{}\"\n\n\
             [[devices]]\nid = \"validator\"\nkind = \"cash_acceptor\"\ndriver = \"mdb-validator\"\naddress = \"{}\"\n",
            reader.local_addr().unwrap(),
            board.local_addr().unwrap(),
            coins.local_addr().unwrap(),
            notes.local_addr().unwrap()
        ),
    )
    .unwrap();
    let till = bearer(&cli(&data, &["terminals", "add", "machine-1"]));
    let password = cli(
        &data,
        &["users", "add", "route-tech", "--role", "technician"],
    );
    let server = start_with(&data, Some(&config));
    let tech = login(&server, "route-tech", &password).await;
    let r = tech
        .put(format!("{}/api/v1/vending/slots/A1", server.base))
        .json(&json!({"sku": "COLA", "price": 250, "capacity": 20, "par": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = tech
        .post(format!("{}/api/v1/vending/slots/A1/refill", server.base))
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
        coins,
        notes,
        till,
        tech: password,
        _dir: dir,
    }
}

impl Site {
    fn serve(&self) -> Server {
        start_with(&self.data, Some(&self.config))
    }

    /// POST the vend with `key` in the background, again while the server answers
    /// `409 vend_in_progress` (its recovery round at start holds the machine; a 409
    /// binds nothing). The last answer never comes: the server is killed first.
    fn vend_async(&self, server: &Server, key: &str) -> tokio::task::JoinHandle<()> {
        self.post_until_taken(server, key, json!({"slot": "A1"}), 409)
    }

    fn post_until_taken(
        &self,
        server: &Server,
        key: &str,
        body: Value,
        again: u16,
    ) -> tokio::task::JoinHandle<()> {
        let (till, url, key) = (
            self.till.clone(),
            format!("{}/api/v1/vending/vends", server.base),
            key.to_owned(),
        );
        tokio::spawn(async move {
            for _ in 0..200 {
                let r = till
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if [409, again].contains(&r.status().as_u16()) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => return,
                }
            }
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

impl Site {
    /// The DEX audit file, read as the technician.
    async fn dex(&self, server: &Server) -> String {
        let r = login(server, "route-tech", &self.tech)
            .await
            .get(format!("{}/api/v1/vending/dex", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// POST the cash vend `key` in the background until the server takes it (a 422
    /// while the credit is not seen yet binds nothing, as does a 409).
    fn cash_vend_async(&self, server: &Server, key: &str) -> tokio::task::JoinHandle<()> {
        self.post_until_taken(server, key, json!({"slot": "A1", "method": "cash"}), 422)
    }

    /// POST the cash vend `key` until it has ended, bounded: the vend the restart
    /// finished (`200`), or, when the cut came before the vend was written, the vend
    /// run again with the credit recovery restored (`201`).
    async fn cash_ended(&self, server: &Server, key: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .till
                .post(format!("{}/api/v1/vending/vends", server.base))
                .header("Idempotency-Key", key)
                .json(&json!({"slot": "A1", "method": "cash"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            if status == 200 || status == 201 {
                return v;
            }
            // 202: being finished; 409: recovery holds the machine; 422: the
            // credit not seen yet.
            assert!([202, 409, 422].contains(&status), "{status} {v}");
            assert!(Instant::now() < deadline, "vend {key} never ended: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Put coins (euro changer coin types) in once the changer takes them; their
    /// value.
    async fn coins_in(&self, types: &[u8]) -> i64 {
        let mut value = 0;
        for &t in types {
            let deadline = Instant::now() + Duration::from_secs(30);
            while self.coins.insert_coin(t) == CoinRoute::Returned {
                assert!(Instant::now() < deadline, "the changer never takes coins");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            value += [5, 10, 20, 50, 100, 200][usize::from(t)];
        }
        value
    }
}

/// The first element after the segment's id (`CA3*<this>*...`) of the DEX file.
fn dex_field(dex: &str, segment: &str, index: usize) -> i64 {
    let line = dex
        .split("\r\n")
        .find(|l| l.starts_with(&format!("{segment}*")))
        .unwrap_or_else(|| panic!("no {segment} in {dex}"));
    line.split('*').nth(index).unwrap().parse().unwrap()
}

/// Wait for `f` (a device's count moving), bounded.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cash_vend_cut_by_sigkill_credits_and_pays_each_coin_and_note_once() {
    let s = site().await;
    let mut cash_in = 0;

    // 1. Killed while the note is being stacked (ESCROW carried out, its answer
    //    lost): no vend was written yet. The restarted server sees one more note in
    //    the stacker (credit, once); the retried key sells with it: 5.00 in, 2.50
    //    sold, 2.50 paid back.
    let server = s.serve();
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.notes.insert_bill(0) != BillRoute::Escrowed {
        assert!(Instant::now() < deadline, "the validator never takes notes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cash_in += 500;
    s.notes.silent_after_next_escrow();
    let pending = s.cash_vend_async(&server, "cash-cut-stacking");
    until("the note is stacked", || s.notes.stacker() == 1).await;
    sigkill(server);
    pending.await.unwrap();
    s.notes.set_silent(false);
    let server = s.serve();
    let v = s.cash_ended(&server, "cash-cut-stacking").await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(s.notes.stacked_minor(), 500, "stacked once");
    until("the change is paid", || s.coins.paid_out_minor() == 250).await;
    assert_eq!(s.board.dispensed_total(), 1);

    // 2. Killed after the motor ran, while the board's answer is lost: the restart
    //    asks the board (DROP), sells, and pays the change: 3.00 in, 0.50 back.
    cash_in += s.coins_in(&[5, 4]).await;
    s.board.fault_next([SpiralFault::LoseReply]);
    let pending = s.cash_vend_async(&server, "cash-cut-dispensing");
    until("the motor ran", || s.board.dispensed_total() == 2).await;
    sigkill(server);
    pending.await.unwrap();
    let server = s.serve();
    let v = s.cash_ended(&server, "cash-cut-dispensing").await;
    assert_eq!(v["state"], "completed", "{v}");
    until("the change is paid", || {
        s.coins.paid_out_minor() == 250 + 50
    })
    .await;
    assert_eq!(s.board.dispensed_total(), 2, "the motor never ran again");

    // 3. Killed while the change is paid out (DISPENSE carried out, its answer
    //    lost): the vend had ended; the restart sees the tubes lower by the coins
    //    paid and never pays them again. 4.00 in, 1.50 back.
    cash_in += s.coins_in(&[5, 5]).await;
    s.coins.silent_after_next_dispense();
    let pending = s.cash_vend_async(&server, "cash-cut-paying");
    // The first DISPENSE (the euro coin of the change) goes out, its answer lost.
    until("the change is being paid out", || {
        s.coins.paid_out_minor() > 300
    })
    .await;
    sigkill(server);
    pending.await.unwrap();
    s.coins.set_silent(false);
    let server = s.serve();
    let v = s.cash_ended(&server, "cash-cut-paying").await;
    assert_eq!(v["state"], "completed", "{v}");
    assert_eq!(s.board.dispensed_total(), 3);
    until("the rest of the change is paid", || {
        s.coins.paid_out_minor() >= 300 + 150
    })
    .await;

    // The books: three cash sales of 2.50, every coin and note credited once and
    // the change paid once (the simulators' counts), and the journal's DEX totals
    // agree: cash in = cash out + cash sales + the credit, which is zero.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paid = s.coins.paid_out_minor();
    assert_eq!(paid, 250 + 50 + 150, "change paid exactly once");
    assert_eq!(cash_in, 500 + 300 + 400);
    assert_eq!(cash_in, paid + 3 * 250, "nothing left as credit");
    let dex = s.dex(&server).await;
    assert_eq!(dex_field(&dex, "CA2", 1), 750, "{dex}");
    assert_eq!(dex_field(&dex, "CA2", 2), 3, "{dex}");
    assert_eq!(dex_field(&dex, "CA3", 1), cash_in, "{dex}");
    assert_eq!(dex_field(&dex, "CA4", 1), paid, "{dex}");
    assert_eq!(s.count(&server).await, 7);
    assert_eq!(s.charges(Charge::Settled) + s.charges(Charge::Held), 0);
    sigkill(server);
}
