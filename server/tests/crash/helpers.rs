//! What the crash tests share: a real `outpost serve` on a data dir, a shop made
//! through the real CLI, the load (checkouts and refunds from many clients) with the
//! ledger of what each client was told, and the audit of a restarted server against
//! that ledger.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

pub const SKUS: usize = 12;
pub const OPENING_STOCK: i64 = 1_000_000;

pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    // A failing assertion must not leave the server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL, and wait until the process is gone (its files closed).
    pub fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

pub fn start(dir: &Path) -> Server {
    start_with(dir, None)
}

/// `outpost serve` on `dir`, with the config file `config` when given.
pub fn start_with(dir: &Path, config: Option<&Path>) -> Server {
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

fn headers(name: reqwest::header::HeaderName, value: String) -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        name,
        reqwest::header::HeaderValue::from_str(&value).unwrap(),
    );
    h
}

/// A client of `server` logged in as `username` (sessions do not survive a restart).
pub async fn login(server: &Server, username: &str, password: &str) -> reqwest::Client {
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"username": username, "password": password}))
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
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .default_headers(headers(reqwest::header::COOKIE, cookie))
        .build()
        .unwrap()
}

/// A data dir with the `CRASH-nn` catalog, a till and a technician, made through the
/// real CLI; the opening stock is set through the first server ([`Shop::open`]).
pub struct Shop {
    pub data: PathBuf,
    /// The till's client (its bearer token).
    pub till: reqwest::Client,
    password: String,
    supervisor_password: String,
}

impl Shop {
    /// The catalog (through the real importer), the till and the technician in `data`;
    /// `scratch` holds the catalog file.
    pub fn create(scratch: &Path, data: &Path) -> Shop {
        let file = scratch.join("catalog.jsonl");
        let mut f = std::fs::File::create(&file).unwrap();
        for i in 0..SKUS {
            writeln!(f, r#"{{"sku":"CRASH-{i:02}","name":"Crash item {i}","category":"test","price":{},"currency":"EUR","tax_class":"standard"}}"#, 100 + i * 7).unwrap();
        }
        drop(f);
        let cli = |args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
                .args(args)
                .arg("--data-dir")
                .arg(data)
                // The CLI needs the data key (development sealer, as the server).
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
        cli(&["import", "catalog", file.to_str().unwrap()]);
        // The till sells with its token; a technician sets the opening stock.
        let token = cli(&["terminals", "add", "crash-till"]);
        let password = cli(&["users", "add", "crash-tech", "--role", "technician"]);
        // Refunds need a supervisor.
        let supervisor_password = cli(&["users", "add", "crash-super", "--role", "supervisor"]);
        let till = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .default_headers(headers(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {token}"),
            ))
            .build()
            .unwrap();
        Shop {
            data: data.to_path_buf(),
            till,
            password,
            supervisor_password,
        }
    }

    /// The supervisor, logged in to `server`, who refunds.
    pub async fn supervisor(&self, server: &Server) -> reqwest::Client {
        login(server, "crash-super", &self.supervisor_password).await
    }

    /// The technician sets the opening stock of every item on `server`.
    pub async fn open(&self, server: &Server) {
        let tech = login(server, "crash-tech", &self.password).await;
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
pub struct Ledger {
    /// Every key sent, with its body.
    pub sent: HashMap<String, Value>,
    /// Keys answered 201, with the sale id.
    pub acked: HashMap<String, String>,
    /// Every refund key sent, with the sale it refunds (all of it).
    pub refunds_sent: HashMap<String, String>,
    /// Refund keys answered 201, with the refund id.
    pub refunds_acked: HashMap<String, String>,
}

/// One till checking out until `stop` or until the server dies under it.
pub async fn load(
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    client: reqwest::Client,
) {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    while !stop.load(Ordering::Relaxed) {
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

/// One till refunding whole sales that were acknowledged, each at most once (one key
/// per sale, never a second key for a sale whose refund's outcome is unknown), until
/// `stop` or until the server dies under it.
pub async fn refunds(
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    client: reqwest::Client,
) {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    while !stop.load(Ordering::Relaxed) {
        let picked = {
            let mut l = ledger.lock().unwrap();
            let refunded: std::collections::HashSet<&String> = l.refunds_sent.values().collect();
            let open: Vec<String> = l
                .acked
                .values()
                .filter(|s| !refunded.contains(s))
                .cloned()
                .collect();
            // About one sale in four is refunded.
            if open.len() > 4 * l.refunds_sent.len() {
                let sale = open[rng.random_range(0..open.len())].clone();
                let key = uuid::Uuid::now_v7().to_string();
                l.refunds_sent.insert(key.clone(), sale.clone());
                Some((key, sale))
            } else {
                None
            }
        };
        let Some((key, sale)) = picked else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let r = client
            .post(format!("{base}/api/v1/sales/{sale}/refunds"))
            .header("Idempotency-Key", &key)
            .json(&json!({"reason": "crash test"}))
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 201 => {
                if let Ok(v) = r.json::<Value>().await {
                    ledger
                        .lock()
                        .unwrap()
                        .refunds_acked
                        .insert(key, v["id"].as_str().unwrap().to_owned());
                }
            }
            Ok(r) => panic!(
                "unexpected refund status {}: {:?}",
                r.status(),
                r.text().await
            ),
            Err(_) => return,
        }
    }
}

/// Start the load on `server`: `tills` checking out, and `refunders` refunding
/// through `supervisor` when given.
pub fn spawn_load(
    server: &Server,
    ledger: &Arc<Mutex<Ledger>>,
    stop: &Arc<AtomicBool>,
    client: &reqwest::Client,
    tills: usize,
    supervisor: Option<(&reqwest::Client, usize)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (refunder, refunders) = match supervisor {
        Some((c, n)) => (c.clone(), n),
        None => (client.clone(), 0),
    };
    let mut tasks: Vec<_> = (0..tills)
        .map(|_| {
            tokio::spawn(load(
                server.base.clone(),
                ledger.clone(),
                stop.clone(),
                client.clone(),
            ))
        })
        .collect();
    tasks.extend((0..refunders).map(|_| {
        tokio::spawn(refunds(
            server.base.clone(),
            ledger.clone(),
            stop.clone(),
            refunder.clone(),
        ))
    }));
    tasks
}

pub async fn all_sales(client: &reqwest::Client, base: &str) -> Vec<Value> {
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

/// Check the restarted server against the ledger: every acknowledged sale and refund
/// is there exactly once; every other one belongs to a key a client sent and is given
/// back to that client when it retries; stock is the opening stock minus what was sold
/// plus what was refunded. Refunds are given back through `supervisor`. Returns the
/// number of sales.
pub async fn audit(
    client: &reqwest::Client,
    supervisor: Option<&reqwest::Client>,
    base: &str,
    ledger: &Mutex<Ledger>,
) -> usize {
    let sales = all_sales(client, base).await;
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    // Refund id -> sale id, as the server has them.
    let mut refund_of: HashMap<String, String> = HashMap::new();
    for s in &sales {
        by_key
            .entry(s["idempotency_key"].as_str().unwrap().to_owned())
            .or_default()
            .push(s["sale_id"].as_str().unwrap().to_owned());
        let refunds = s["refunds"].as_array().unwrap();
        // Every refund here is of the whole sale, and a sale is refunded once at most.
        assert!(
            refunds.len() <= 1,
            "sale {} has {} refunds",
            s["sale_id"],
            refunds.len()
        );
        for l in s["lines"].as_array().unwrap() {
            let units = l["quantity"]["units"].as_i64().unwrap();
            *sold
                .entry(l["sku"].as_str().unwrap().to_owned())
                .or_default() += if refunds.is_empty() { units } else { 0 };
        }
        for r in refunds {
            assert_eq!(s["status"], "refunded", "{s}");
            let id = r["id"].as_str().unwrap().to_owned();
            let sale = s["sale_id"].as_str().unwrap().to_owned();
            assert!(
                refund_of.insert(id.clone(), sale).is_none(),
                "refund {id} twice"
            );
        }
    }
    let (sent, acked, refunds_sent, refunds_acked) = {
        let l = ledger.lock().unwrap();
        (
            l.sent.clone(),
            l.acked.clone(),
            l.refunds_sent.clone(),
            l.refunds_acked.clone(),
        )
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
    for (key, refund_id) in &refunds_acked {
        let sale = refund_of
            .get(refund_id)
            .unwrap_or_else(|| panic!("acknowledged refund {refund_id} (key {key}) is lost"));
        assert_eq!(
            sale, &refunds_sent[key],
            "refund {refund_id} is of another sale"
        );
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
    // Refunds nobody was told about: likewise, each is given back on a retry.
    let told: std::collections::HashSet<&String> = refunds_acked.values().collect();
    for (refund, sale) in refund_of.iter().filter(|(r, _)| !told.contains(r)) {
        let key = refunds_sent
            .iter()
            .find(|(_, s)| *s == sale)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("refund {refund} of sale {sale} that no client sent"));
        let r = supervisor
            .expect("a supervisor to retry refunds")
            .post(format!("{base}/api/v1/sales/{sale}/refunds"))
            .header("Idempotency-Key", &key)
            .json(&json!({"reason": "crash test"}))
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
        assert_eq!(v["id"].as_str().unwrap(), refund);
        ledger
            .lock()
            .unwrap()
            .refunds_acked
            .insert(key, refund.clone());
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
