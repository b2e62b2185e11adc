//! Crash test: a real `outpost serve` process under concurrent checkouts is killed with
//! SIGKILL at random moments and restarted. After every cycle:
//! - every sale a client got a 2xx for is present exactly once;
//! - every other sale belongs to a key some client sent, and that client gets it back
//!   by retrying with its key;
//! - stock equals the opening stock minus everything sold.
//!
//! `OUTPOST_CRASH_CYCLES` sets the number of cycles (default 10);
//! `scripts/crash-soak.sh` runs 200.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};

mod vending;

const SKUS: usize = 12;
const OPENING_STOCK: i64 = 1_000_000;
const CLIENTS: usize = 16;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    // A failing assertion must not leave the server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Server {
    start_with(dir, None)
}

/// `outpost serve` on `dir`, with the config file `config` when given.
fn start_with(dir: &Path, config: Option<&Path>) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpost"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .env("OUTPOST_LOG", "info")
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outpost starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the log until the listening line; keep draining it so the child never blocks.
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
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
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

fn checkout_body(rng: &mut impl Rng) -> Value {
    let n = rng.random_range(1..=3);
    let mut skus: Vec<usize> = (0..SKUS).collect();
    let lines: Vec<Value> = (0..n)
        .map(|_| {
            let i = skus.remove(rng.random_range(0..skus.len()));
            json!({"sku": format!("CRASH-{i:02}"), "quantity": rng.random_range(1..=3)})
        })
        .collect();
    json!({"lines": lines, "payment": {"method": "cash", "tendered": 1_000_000}})
}

#[derive(Default)]
struct Ledger {
    /// Every key sent, with its body.
    sent: HashMap<String, Value>,
    /// Keys answered 201, with the sale id.
    acked: HashMap<String, String>,
}

async fn load(
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    client: reqwest::Client,
) {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let key = uuid::Uuid::now_v7().to_string();
        let body = checkout_body(&mut rng);
        ledger
            .lock()
            .unwrap()
            .sent
            .insert(key.clone(), body.clone());
        let r = client
            .post(format!("{base}/api/v1/checkout"))
            .header("Idempotency-Key", &key)
            .json(&body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 201 => {
                if let Ok(v) = r.json::<Value>().await {
                    ledger
                        .lock()
                        .unwrap()
                        .acked
                        .insert(key, v["sale_id"].as_str().unwrap().to_owned());
                }
            }
            Ok(r) => panic!("unexpected status {}: {:?}", r.status(), r.text().await),
            // The server died under us: the outcome of this key is unknown.
            Err(_) => return,
        }
    }
}

async fn all_sales(client: &reqwest::Client, base: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/api/v1/sales?limit=200&cursor={c}"),
            None => format!("{base}/api/v1/sales?limit=200"),
        };
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

async fn audit(client: &reqwest::Client, base: &str, ledger: &Mutex<Ledger>) -> usize {
    let sales = all_sales(client, base).await;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    for s in &sales {
        by_key
            .entry(s["idempotency_key"].as_str().unwrap().to_owned())
            .or_default()
            .push(s["sale_id"].as_str().unwrap().to_owned());
        for l in s["lines"].as_array().unwrap() {
            *sold
                .entry(l["sku"].as_str().unwrap().to_owned())
                .or_default() += l["quantity"]["units"].as_i64().unwrap();
        }
    }
    let (sent, acked) = {
        let l = ledger.lock().unwrap();
        (l.sent.clone(), l.acked.clone())
    };
    for (key, ids) in &by_key {
        assert_eq!(ids.len(), 1, "key {key} has {} sales", ids.len());
        assert!(
            sent.contains_key(key),
            "sale {} under key {key} that no client sent",
            ids[0]
        );
    }
    for (key, sale_id) in &acked {
        let ids = by_key
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged sale {sale_id} (key {key}) is lost"));
        assert_eq!(&ids[0], sale_id, "key {key} now names another sale");
    }
    // Sales nobody was told about: the client that sent the key gets each one back.
    for (key, ids) in by_key.iter().filter(|(k, _)| !acked.contains_key(*k)) {
        let r = client
            .post(format!("{base}/api/v1/checkout"))
            .header("Idempotency-Key", key)
            .json(&sent[key])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(
            r.headers()
                .get("idempotent-replayed")
                .map(|v| v.to_str().unwrap()),
            Some("true")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["sale_id"].as_str().unwrap(), ids[0]);
        ledger
            .lock()
            .unwrap()
            .acked
            .insert(key.clone(), ids[0].clone());
    }
    for i in 0..SKUS {
        let sku = format!("CRASH-{i:02}");
        let v: Value = client
            .get(format!("{base}/api/v1/inventory/{sku}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = OPENING_STOCK - sold.get(&sku).copied().unwrap_or(0);
        assert_eq!(v["stock"].as_i64().unwrap(), expected, "stock of {sku}");
    }
    sales.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sales_survive_sigkill_exactly_once() {
    let cycles: usize = std::env::var("OUTPOST_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    // The catalog goes in through the real importer.
    let file = dir.path().join("catalog.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..SKUS {
        writeln!(f, r#"{{"sku":"CRASH-{i:02}","name":"Crash item {i}","category":"test","price":{},"currency":"EUR","tax_class":"standard"}}"#, 100 + i * 7).unwrap();
    }
    drop(f);
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["import", "catalog"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        // The import needs the data key (development sealer, as the server below).
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The till sells with its token; a technician sets the opening stock.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let token = cli(&["terminals", "add", "crash-till"]);
    let password = cli(&["users", "add", "crash-tech", "--role", "technician"]);
    let headers = |name: reqwest::header::HeaderName, value: String| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            name,
            reqwest::header::HeaderValue::from_str(&value).unwrap(),
        );
        h
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .default_headers(headers(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}"),
        ))
        .build()
        .unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::rng();
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut server = start(&data);
        if cycle == 0 {
            let login = reqwest::Client::new()
                .post(format!("{}/api/v1/auth/login", server.base))
                .json(&json!({"username": "crash-tech", "password": password}))
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
            let tech = reqwest::Client::builder()
                .default_headers(headers(reqwest::header::COOKIE, cookie))
                .build()
                .unwrap();
            for i in 0..SKUS {
                let r = tech
                    .put(format!("{}/api/v1/inventory/CRASH-{i:02}", server.base))
                    .json(&json!({"stock": OPENING_STOCK}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(load(
                    server.base.clone(),
                    ledger.clone(),
                    stop.clone(),
                    client.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let mut server = start(&data);
        let n = audit(&client, &server.base, &ledger).await;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        eprintln!(
            "cycle {cycle}: {n} sales, {} acknowledged",
            ledger.lock().unwrap().acked.len()
        );
    }
    let l = ledger.lock().unwrap();
    assert!(
        l.acked.len() > cycles,
        "the load made sales ({} in {cycles} cycles)",
        l.acked.len()
    );
    eprintln!(
        "{cycles} cycles in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
