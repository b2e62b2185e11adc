//! A data disk that fills up under selling, on the real binary and a real file system:
//! the data dir lives on a small tmpfs the test mounts (root only; elsewhere the test
//! says SKIPPED), and a filler file eats the space while tills check out.
//!
//! - With the reserve (`storage.reserve_mib`): checkouts are answered `201` or `507
//!   storage_full`, never anything else; every acknowledged sale is kept once; selling
//!   resumes by itself once the filler is deleted; a refused key retried then sells
//!   once.
//! - Without it (reserve 0): the storage engine meets `ENOSPC` and stops; checkouts are
//!   `201` or `503 storage_unavailable`; once space is back the server restarts itself
//!   (same pid), and every acknowledged sale is still there once.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Serving, created, outpost};

/// A tmpfs mounted for the test, unmounted (lazily, so a busy mount never hangs the
/// test) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mounting a tmpfs needs root: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes `path` until only `leave` bytes are free on its file system (0: until
/// ENOSPC), syncing as it goes. Another program filling the disk leaves the server's
/// reserve alone only by chance; a filler that stops short of it shows the reserve at
/// work, one that does not shows the engine failing and the restart.
fn fill(path: &Path, leave: u64) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 256 * 1024];
    let dir = path.parent().unwrap();
    let mut written = 0u64;
    loop {
        let s = rustix::fs::statvfs(dir).unwrap();
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        if free <= leave {
            break;
        }
        let n = chunk
            .len()
            .min(usize::try_from(free - leave).unwrap_or(usize::MAX));
        match f.write(&chunk[..n]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filler: {e}"),
        }
        if f.sync_data().is_err() {
            break;
        }
    }
    written
}

/// What the tills sent and what they were told.
#[derive(Default)]
struct Ledger {
    sent: HashMap<String, Value>,
    /// Key → sale id, for every 201.
    acked: HashMap<String, String>,
    /// Statuses seen, with the error code of the refusals.
    statuses: HashMap<(u16, String), u64>,
}

fn body(i: u64) -> Value {
    json!({"lines": [{"sku": "DISK-1", "quantity": 1 + i % 3}], "payment": {"method": "cash", "tendered": 100_000}})
}

async fn checkout(client: &reqwest::Client, base: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("{base}/api/v1/checkout"))
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Tills checking out until `stop`; every answer is recorded.
async fn till(
    client: reqwest::Client,
    base: String,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        i += 1;
        let key = uuid::Uuid::now_v7().to_string();
        let b = body(i);
        ledger.lock().unwrap().sent.insert(key.clone(), b.clone());
        let (status, v) = checkout(&client, &base, &key, &b).await;
        let code = v["code"].as_str().unwrap_or_default().to_owned();
        {
            let mut l = ledger.lock().unwrap();
            *l.statuses.entry((status, code)).or_default() += 1;
            if status == 201 {
                l.acked
                    .insert(key, v["sale_id"].as_str().unwrap().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every sale on the server, by idempotency key.
async fn sales_by_key(client: &reqwest::Client, base: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/api/v1/sales?limit=200&cursor={c}"),
            None => format!("{base}/api/v1/sales?limit=200"),
        };
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        for s in v["items"].as_array().unwrap() {
            out.entry(s["idempotency_key"].as_str().unwrap().to_owned())
                .or_default()
                .push(s["sale_id"].as_str().unwrap().to_owned());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Every acknowledged sale is there once; every other key sent sells at most once, and
/// retrying it now sells it exactly once; stock moved by exactly what was sold.
async fn audit(client: &reqwest::Client, base: &str, ledger: &Mutex<Ledger>) -> usize {
    let (sent, acked) = {
        let l = ledger.lock().unwrap();
        (l.sent.clone(), l.acked.clone())
    };
    for (key, b) in &sent {
        let (status, v) = checkout(client, base, key, b).await;
        assert_eq!(status, 201, "retrying key {key}: {v}");
        if let Some(id) = acked.get(key) {
            assert_eq!(
                v["sale_id"].as_str(),
                Some(id.as_str()),
                "key {key} names another sale"
            );
        }
    }
    let by_key = sales_by_key(client, base).await;
    for (key, ids) in &by_key {
        assert_eq!(ids.len(), 1, "key {key} sold {} times", ids.len());
        assert!(
            sent.contains_key(key),
            "a sale under a key nobody sent: {key}"
        );
    }
    for key in sent.keys() {
        assert!(by_key.contains_key(key), "the sale of key {key} is missing");
    }
    let units: i64 = sent
        .values()
        .map(|b| b["lines"][0]["quantity"].as_i64().unwrap())
        .sum();
    let v: Value = client
        .get(format!("{base}/api/v1/inventory/DISK-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["stock"].as_i64(),
        Some(-units),
        "stock moved by what was sold"
    );
    by_key.len()
}

/// The data dir on `fs`, with a product and a till's token, under `config`.
fn prepare(fs: &Tmpfs, config: &Path) -> (PathBuf, String) {
    let data = fs.path().join("data");
    let catalog = fs.path().join("catalog.jsonl");
    std::fs::write(
        &catalog,
        r#"{"sku":"DISK-1","name":"Disk test item","category":"test","price":250,"currency":"EUR","tax_class":"standard"}"#,
    )
    .unwrap();
    let c = config.to_str().unwrap();
    created(&outpost(
        &[
            "import",
            "catalog",
            catalog.to_str().unwrap(),
            "--config",
            c,
        ],
        &data,
    ));
    let token = created(&outpost(
        &["terminals", "add", "disk-till", "--config", c],
        &data,
    ));
    (data, token)
}

fn serve(data: &Path, config: &Path) -> Serving {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outpost"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("OUTPOST_LOG", "info")
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        // Not under systemd or a supervisor: the server restarts itself.
        .env_remove("INVOCATION_ID")
        .env_remove("OUTPOST_SUPERVISED")
        .env_remove("RUST_LOG");
    Serving::spawn(command)
}

fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .default_headers(h)
        .build()
        .unwrap()
}

/// Runs two tills while the disk fills and for `after` once it is full; returns the
/// ledger's statuses.
async fn sell_while_filling(
    client: &reqwest::Client,
    base: &str,
    fs: &Tmpfs,
    ledger: &Arc<Mutex<Ledger>>,
    after: Duration,
    leave: u64,
) -> HashMap<(u16, String), u64> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tills: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(till(
                client.clone(),
                base.to_owned(),
                ledger.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let filler = fs.path().join("filler");
    let written = tokio::task::spawn_blocking(move || fill(&filler, leave))
        .await
        .unwrap();
    assert!(written > 0);
    tokio::time::sleep(after).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tills {
        t.await.unwrap();
    }
    ledger.lock().unwrap().statuses.clone()
}

/// `Serving`'s logs, waiting (`within`) for the `n`th "Outpost is listening" line;
/// returns its base URL.
fn nth_listening(serving: &Serving, n: usize, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let logs = serving.logs();
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("Outpost is listening"))
            .collect();
        if let Some(line) = lines.get(n - 1) {
            let v: Value = serde_json::from_str(line).unwrap();
            return format!("http://{}", v["addr"].as_str().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the server did not start again: {logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_507_loses_nothing_and_selling_resumes_by_itself() {
    let fs = match Tmpfs::mount(32) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_refuses_with_507...: {why}");
            return;
        }
    };
    let config = fs.path().join("outpost.toml");
    std::fs::write(&config, "[storage]\nreserve_mib = 4\n").unwrap();
    let (data, token) = prepare(&fs, &config);
    let server = serve(&data, &config);
    let client = client(&token);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let statuses =
        // The filler leaves half the 4 MiB reserve: only the server's writes could go
        // below it, and the reserve keeps them from doing so.
        sell_while_filling(
            &client,
            &server.base,
            &fs,
            &ledger,
            Duration::from_secs(1),
            2 << 20,
        )
        .await;
    for (status, code) in statuses.keys() {
        assert!(
            *status == 201 || (*status == 507 && code == "storage_full"),
            "only 201 or 507 storage_full while the disk fills: {statuses:?}"
        );
    }
    let refused = statuses
        .get(&(507, "storage_full".into()))
        .copied()
        .unwrap_or(0);
    assert!(
        refused > 0,
        "the disk filled and nothing was refused: {statuses:?}"
    );
    // The refusal says what to do, and a read still works.
    let (status, v) = checkout(&client, &server.base, "disk-full-probe", &body(1)).await;
    assert_eq!(status, 507, "{v}");
    assert!(v["message"].as_str().unwrap().contains("reserve"), "{v}");
    let r = client
        .get(format!("{}/api/v1/products/DISK-1", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reads go on while writes are refused");
    ledger
        .lock()
        .unwrap()
        .sent
        .insert("disk-full-probe".into(), body(1));

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let key = uuid::Uuid::now_v7().to_string();
        ledger.lock().unwrap().sent.insert(key.clone(), body(0));
        let (status, v) = checkout(&client, &server.base, &key, &body(0)).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 507, "{v}");
        assert!(
            Instant::now() < deadline,
            "selling did not resume once space was freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sales = audit(&client, &server.base, &ledger).await;
    let logs = server.stop();
    assert!(
        !logs.contains("The storage engine failed"),
        "the reserve kept the storage engine from meeting the full disk"
    );
    eprintln!("disk full with a reserve: {sales} sales, statuses {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_reserve_a_full_disk_stops_storage_and_the_server_restarts_itself_losing_nothing()
{
    let fs = match Tmpfs::mount(32) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED without_a_reserve...: {why}");
            return;
        }
    };
    let config = fs.path().join("outpost.toml");
    std::fs::write(&config, "[storage]\nreserve_mib = 0\n").unwrap();
    let (data, token) = prepare(&fs, &config);
    let server = serve(&data, &config);
    let pid = server.pid();
    let client = client(&token);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let statuses = sell_while_filling(
        &client,
        &server.base,
        &fs,
        &ledger,
        Duration::from_secs(1),
        0,
    )
    .await;
    for (status, code) in statuses.keys() {
        assert!(
            *status == 201 || (*status == 503 && code == "storage_unavailable"),
            "only 201 or 503 storage_unavailable on a full disk without a reserve: {statuses:?}"
        );
    }
    assert!(
        statuses.contains_key(&(503, "storage_unavailable".into())),
        "the disk filled and nothing was refused: {statuses:?}"
    );
    assert!(
        server.logs().contains("The storage engine failed"),
        "{}",
        server.logs()
    );

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    // Waiting on the logs blocks a runtime thread; nothing else runs now.
    let base = nth_listening(&server, 2, Duration::from_secs(60));
    assert_eq!(server.pid(), pid, "the server started again in place");
    let sales = audit(&client, &base, &ledger).await;
    server.stop();
    eprintln!("disk full without a reserve: {sales} sales, statuses {statuses:?}");
}
