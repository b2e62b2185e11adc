//! The uplink: every record reaches HQ exactly once, whatever the link does.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outpost_mocks::hq::{Faults, MockHq, MockHqHandle};
use outpost_proto::hq::{Envelope, EnvelopeKind};

use crate::helpers::*;

fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What HQ holds for the unit is every sequence from 1, once, in order, and its
/// sales are exactly `sold`.
pub(crate) fn assert_exactly_once(got: &[Envelope], sold: &[String]) {
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "HQ's envelopes are not 1..=n in order");
    }
    let sales: Vec<&str> = got
        .iter()
        .filter(|e| e.kind == EnvelopeKind::Sale as i32)
        .map(|e| e.id.as_str())
        .collect();
    let distinct: HashSet<&str> = sales.iter().copied().collect();
    assert_eq!(distinct.len(), sales.len(), "a sale reached HQ twice");
    let sold: HashSet<&str> = sold.iter().map(String::as_str).collect();
    assert_eq!(distinct, sold, "HQ's sales differ from the store's");
    // Each sale here has one line, so one movement each.
    let movements = got
        .iter()
        .filter(|e| e.kind == EnvelopeKind::InventoryMovement as i32)
        .count();
    assert_eq!(movements, sold.len());
    // Envelopes carry their record.
    let first: serde_json::Value = serde_json::from_slice(&got[0].json).unwrap();
    assert!(first["id"].is_string(), "{first}");
}

pub(crate) async fn start_hq(dir: &std::path::Path, faults: Faults) -> MockHqHandle {
    MockHq::start("127.0.0.1:0".parse().unwrap(), dir, faults)
        .await
        .expect("mock HQ starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sales_reach_hq_exactly_once_in_order_while_hq_cuts_connections() {
    let n = count_from_env("OUTPOST_UPLINK_SALES", 10_000);
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = start_hq(hq_dir.path(), Faults::none().with_cut_every(Some(4))).await;
    let store_dir = tempfile::tempdir().unwrap();
    let mut s = settings(store_dir.path(), Some(hq.url()));
    s.sync.batch_max = 50;
    s.sync.window = 4;
    let app = spawn_with(s).await;
    snapshot(&app, 1, 10).await;
    let sold = sell(&app.base, "P0000001", n, 32, "cut").await;
    let base = app.base.clone();
    eventually(120, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    // Besides the sales and movements, the audit chain's head may be in the outbox.
    let all = hq.received("unit-1");
    let heads = all
        .iter()
        .filter(|e| e.kind == outpost_proto::hq::EnvelopeKind::AuditHead as i32)
        .count();
    assert_eq!(all.len(), 2 * n + heads);
    assert_exactly_once(&all, &sold);
    assert!(
        hq.stats().cuts > 10,
        "HQ should have cut the stream many times: {:?}",
        hq.stats()
    );
    let (_, status) = app.get_json("/api/v1/sync/status").await;
    assert_eq!(status["acked_seq"], (2 * n + heads) as u64, "{status}");
    assert_eq!(status["outbox_bytes"], 0, "{status}");
    app.stop().await;
    hq.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_hq_that_fails_keeps_everything_queued_and_visible() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = start_hq(hq_dir.path(), Faults::none().with_fail(true)).await;
    let store_dir = tempfile::tempdir().unwrap();
    let mut s = settings(store_dir.path(), Some(hq.url()));
    s.sync.alert_after_secs = 1;
    let app = spawn_with(s).await;
    snapshot(&app, 1, 3).await;
    let sold = sell(&app.base, "P0000002", 20, 4, "fail").await;
    // The age is counted in whole seconds and the alert is "older than" the limit.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, status) = app.get_json("/api/v1/sync/status").await;
    // 20 sales, 20 movements, and the outbox-age alert once the watcher saw it.
    let events = &status["events_pending"];
    let event_entries = ["device_event", "alert", "telemetry", "audit_head"]
        .iter()
        .map(|k| events[k].as_u64().unwrap())
        .sum::<u64>();
    assert!(events["alert"].as_u64().unwrap() <= 1, "{status}");
    assert_eq!(status["outbox_pending"], 40 + event_entries, "{status}");
    assert_eq!(status["alert"], true, "{status}");
    assert_eq!(status["health"], "degraded");
    assert!(
        status["outbox_bytes"].as_u64().unwrap() > 40 * 100,
        "{status}"
    );
    assert!(status["last_error"].as_str().is_some(), "{status}");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outpost_outbox_alert 1"), "{metrics}");
    assert!(hq.received("unit-1").is_empty());
    // HQ recovers: everything drains, once.
    hq.set_faults(Faults::none()).unwrap();
    let base = app.base.clone();
    eventually(30, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    assert_exactly_once(&hq.received("unit-1"), &sold);
    app.stop().await;
    hq.shutdown().await.unwrap();
}

/// A real `outpost serve` process, killed with SIGKILL when dropped.
pub(crate) struct Store {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `outpost serve` with `config` on `data`, with `env` added to its environment.
pub(crate) fn start_store(
    config: &std::path::Path,
    data: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> Store {
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("OUTPOST_LOG", "info")
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outpost starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("Outpost is listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
                sent = true;
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("outpost logs its address");
    Store {
        child,
        base: format!("http://{addr}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_outage_drains_exactly_once_across_a_sigkill_of_the_store() {
    let n = count_from_env("OUTPOST_OUTAGE_SALES", 20_000);
    let dir = tempfile::tempdir().unwrap();
    // HQ is down for the whole selling period: started to get a port, then stopped.
    let hq = start_hq(&dir.path().join("hq"), Faults::none()).await;
    hq.stop().await;
    let config = dir.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[sync]\nhq_url = \"{}\"\nbatch_max = 200\nwindow = 2\nbackoff_min_ms = 50\nbackoff_max_secs = 1\nack_timeout_secs = 10\n",
            hq.url()
        ),
    )
    .unwrap();
    let catalog = dir.path().join("catalog.jsonl");
    let mut f = std::fs::File::create(&catalog).unwrap();
    writeln!(f, r#"{{"sku":"OUT-1","name":"Outage item","category":"test","price":100,"currency":"EUR","tax_class":"standard"}}"#).unwrap();
    drop(f);
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["import", "catalog"])
        .arg(&catalog)
        .arg("--data-dir")
        .arg(&data)
        // The import needs the data key (development sealer, as the server).
        .env("OUTPOST_ALLOW_SOFTWARE_SEALER", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A supervisor account (sells, and reads sync status through the helpers' client).
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["users", "add", "outage", "--role", "supervisor,technician"])
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
    let password = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let store = start_store(&config, &data, &[]);
    crate::helpers::log_in(&store.base, "outage", &password).await;
    // The audit chain's head (the account added, the login) is queued at start; no
    // other until `[events] audit_head_ms` (5 min) has passed.
    eventually(10, "the audit head queued", || async {
        events_pending(&store.base, "audit_head").await == 1
    })
    .await;
    let sold = sell(&store.base, "OUT-1", n, 64, "outage").await;
    assert_eq!(outbox_pending(&store.base).await, 2 * n as u64 + 1);

    // HQ comes back, acknowledging slowly, and the store is killed mid-drain.
    hq.set_faults(Faults::none().with_ack_delay(Duration::from_millis(30)))
        .unwrap();
    hq.start().await.unwrap();
    let total = 2 * n as u64;
    eventually(60, "HQ to have part of the backlog", || async {
        let a = hq.acked("unit-1");
        a > 0 && a < total
    })
    .await;
    drop(store); // SIGKILL
    let acked_at_kill = hq.acked("unit-1");
    assert!(acked_at_kill < total, "the drain finished before the kill");

    hq.set_faults(Faults::none()).unwrap();
    let store = start_store(&config, &data, &[]);
    crate::helpers::log_in(&store.base, "outage", &password).await;
    let base = store.base.clone();
    eventually(120, "the outbox to drain after the restart", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    assert_exactly_once(&hq.received("unit-1"), &sold);
    drop(store);
    hq.shutdown().await.unwrap();
}

/// The drain rate after an outage, for BENCHMARKS.md:
/// `OUTPOST_DRAIN_SALES=100000 cargo test --release -p outpost-server --test hq -- --ignored --nocapture drain_rate`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn drain_rate_after_an_outage() {
    let n = count_from_env("OUTPOST_DRAIN_SALES", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let hq = start_hq(&dir.path().join("hq"), Faults::none()).await;
    hq.stop().await;
    let mut s = settings(&dir.path().join("store"), Some(hq.url()));
    s.http.workers = 0;
    s.sync.batch_max = 1_000;
    s.sync.window = 8;
    let app = spawn_with(s).await;
    snapshot(&app, 1, 10).await;
    let selling = std::time::Instant::now();
    let sold = sell(&app.base, "P0000003", n, 64, "drain").await;
    assert_eq!(outbox_pending(&app.base).await, 2 * n as u64);
    eprintln!(
        "sold {n} sales in {:.2} s; HQ back, draining",
        selling.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    hq.start().await.unwrap();
    let base = app.base.clone();
    eventually(600, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    let took = started.elapsed().as_secs_f64();
    assert_exactly_once(&hq.received("unit-1"), &sold);
    eprintln!(
        "drained {n} sales ({} envelopes) in {took:.2} s: {:.0} sales/s, {:.0} envelopes/s",
        2 * n,
        n as f64 / took,
        2.0 * n as f64 / took
    );
    app.stop().await;
    hq.shutdown().await.unwrap();
}
