//! A soak: mixed load for a bounded time on one store, watching for slow leaks.
//!
//! Lookups and searches, checkouts, refunds of every tenth sale, a price delta pushed
//! by HQ every few seconds, and the uplink flapping (HQ stopped and started) all run at
//! once for `OUTPOST_SOAK_SECS` (20 s by default; the gauntlet's `--long` runs an
//! hour). The run is cut in thirds: after the first (warm-up: caches fill, the catalog
//! settles), the process's memory and open files must stay flat and the p99 latency of
//! lookups and checkouts must not climb. At the end every sale and refund reaches HQ
//! exactly once.
//!
//! The store runs in this process (so HQ's pushes go through the test's gRPC client),
//! so memory and files are the whole process's: a leak in the store, the mock HQ or
//! the clients shows the same way.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_mocks::hq::Faults;
use outpost_proto::hq::{self, EnvelopeKind};
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;

use crate::helpers::*;
use crate::uplink::start_hq;

/// Products in the catalog HQ pushes.
const PRODUCTS: u64 = 2_000;

fn proc_self(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// One observation: when (seconds into the run), and what.
#[derive(Default)]
struct Observed {
    /// (t, latency) of lookups.
    lookups: Vec<(f64, Duration)>,
    /// (t, latency) of checkouts.
    checkouts: Vec<(f64, Duration)>,
    /// (t, RSS KiB, open files).
    process: Vec<(f64, u64, usize)>,
    sold: Vec<String>,
    refunded: Vec<String>,
}

fn p99(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_load_keeps_memory_files_and_latency_flat() {
    let secs: u64 = std::env::var("OUTPOST_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let hq = start_hq(&dir.path().join("hq"), Faults::none()).await;
    let mut s = settings(&dir.path().join("store"), Some(hq.url()));
    // A small page cache fills during the warm-up, so a flat memory means no leak.
    s.storage.cache_mib = 32;
    let app = spawn_with(s).await;
    snapshot(&app, 1, PRODUCTS).await;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let t = move || started.elapsed().as_secs_f64();
    let observed = Arc::new(Mutex::new(Observed::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();

    // Lookups: by SKU and by search words.
    for _ in 0..3 {
        let (base, http, observed, stop) = (
            app.base.clone(),
            authed(&app.base),
            observed.clone(),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::from_os_rng();
            while !stop.load(Ordering::Relaxed) {
                let i = rng.random_range(0..PRODUCTS);
                let url = if i % 3 == 0 {
                    format!("{base}/api/v1/products?q=product+{i}&limit=10")
                } else {
                    format!("{base}/api/v1/products/P{i:07}")
                };
                let at = Instant::now();
                let r = http.get(url).send().await.expect("a lookup is answered");
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await;
                observed.lock().unwrap().lookups.push((t(), at.elapsed()));
            }
        });
    }
    // Checkouts, and a refund of every tenth sale.
    let keys = Arc::new(AtomicU64::new(0));
    for _ in 0..2 {
        let (base, http, observed, stop, keys) = (
            app.base.clone(),
            authed(&app.base),
            observed.clone(),
            stop.clone(),
            keys.clone(),
        );
        tasks.spawn(async move {
            let mut rng = rand::rngs::StdRng::from_os_rng();
            while !stop.load(Ordering::Relaxed) {
                let n = keys.fetch_add(1, Ordering::Relaxed);
                let lines: Vec<_> = (0..rng.random_range(1..=3))
                    .map(|_| json!({"sku": format!("P{:07}", rng.random_range(0..PRODUCTS)), "quantity": 1}))
                    .collect();
                let at = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/checkout"))
                    .header("Idempotency-Key", format!("soak-{n}"))
                    .json(&json!({"lines": lines, "payment": {"method": "cash", "tendered": 10_000_000}}))
                    .send()
                    .await
                    .expect("a checkout is answered");
                assert_eq!(r.status(), 201);
                let v: serde_json::Value = r.json().await.unwrap();
                let id = v["sale_id"].as_str().unwrap().to_owned();
                observed.lock().unwrap().checkouts.push((t(), at.elapsed()));
                if n % 10 == 0 {
                    let r = http
                        .post(format!("{base}/api/v1/sales/{id}/refunds"))
                        .header("Idempotency-Key", format!("soak-refund-{n}"))
                        .json(&json!({"lines": [{"line": 1, "quantity": 1}], "reason": "soak"}))
                        .send()
                        .await
                        .expect("a refund is answered");
                    assert_eq!(r.status(), 201);
                    let v: serde_json::Value = r.json().await.unwrap();
                    observed.lock().unwrap().refunded.push(v["id"].as_str().unwrap().to_owned());
                }
                observed.lock().unwrap().sold.push(id);
            }
        });
    }
    // HQ's price deltas.
    {
        let (mut client, stop) = (app.client().await, stop.clone());
        tasks.spawn(async move {
            let mut version = 1u64;
            let mut rng = rand::rngs::StdRng::from_os_rng();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(3)).await;
                // Fifty distinct products with new prices.
                let changed: Vec<hq::Product> = (0..50)
                    .map(|_| rng.random_range(0..PRODUCTS))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .map(|i| product(i, 100 + rng.random_range(0..500)))
                    .collect();
                let n = changed.len() as u64;
                let reply = push(
                    &mut client,
                    chunks(
                        header(
                            &format!("d{}", version + 1),
                            hq::CatalogPushKind::Delta,
                            version + 1,
                            version,
                            n,
                            0,
                        ),
                        changed,
                        25,
                        vec![],
                    ),
                )
                .await
                .expect("a delta push is applied");
                version = reply.version;
            }
        });
    }
    // The process, once a second.
    {
        let (observed, stop) = (observed.clone(), stop.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let files = std::fs::read_dir("/proc/self/fd").unwrap().count();
                observed
                    .lock()
                    .unwrap()
                    .process
                    .push((t(), proc_self("VmRSS:"), files));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    // The uplink flaps: HQ goes away and comes back.
    let mut flaps = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(
            Duration::from_secs(4).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
        if flaps % 2 == 0 {
            hq.stop().await;
        } else {
            hq.start().await.unwrap();
        }
        flaps += 1;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    if flaps % 2 == 1 {
        hq.start().await.unwrap();
    }

    // Every sale and refund reaches HQ once.
    let base = app.base.clone();
    eventually(120, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    let o = observed.lock().unwrap();
    let at_hq = |kind: EnvelopeKind| -> Vec<String> {
        hq.received_kind("unit-1", kind)
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
    let sales = at_hq(EnvelopeKind::Sale);
    let distinct: HashSet<&String> = sales.iter().collect();
    assert_eq!(distinct.len(), sales.len(), "a sale reached HQ twice");
    assert_eq!(
        distinct,
        o.sold.iter().collect::<HashSet<_>>(),
        "HQ's sales"
    );
    let refunds = at_hq(EnvelopeKind::Refund);
    assert_eq!(
        refunds.iter().collect::<HashSet<_>>(),
        o.refunded.iter().collect::<HashSet<_>>(),
        "HQ's refunds"
    );
    assert_eq!(refunds.len(), o.refunded.len(), "a refund reached HQ twice");

    // Flat after the warm-up: the last third against the middle one.
    let third = secs as f64 / 3.0;
    let window = |from: f64, to: f64, v: &[(f64, Duration)]| -> Vec<Duration> {
        v.iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, d)| *d)
            .collect()
    };
    let (mid, last) = ((third, 2.0 * third), (2.0 * third, f64::MAX));
    let peak = |from: f64, to: f64| {
        o.process
            .iter()
            .filter(|(at, ..)| *at >= from && *at < to)
            .fold((0u64, 0usize), |(r, f), (_, rss, files)| {
                (r.max(*rss), f.max(*files))
            })
    };
    let (rss_mid, files_mid) = peak(mid.0, mid.1);
    let (rss_last, files_last) = peak(last.0, last.1);
    let lookup_p99 = (
        p99(window(mid.0, mid.1, &o.lookups)),
        p99(window(last.0, last.1, &o.lookups)),
    );
    let checkout_p99 = (
        p99(window(mid.0, mid.1, &o.checkouts)),
        p99(window(last.0, last.1, &o.checkouts)),
    );
    eprintln!(
        "soak {secs} s: {} lookups, {} sales, {} refunds, {flaps} uplink flaps; RSS peak {} -> {} MiB, files {files_mid} -> {files_last}; p99 lookup {:?} -> {:?}, checkout {:?} -> {:?}",
        o.lookups.len(),
        o.sold.len(),
        o.refunded.len(),
        rss_mid / 1024,
        rss_last / 1024,
        lookup_p99.0,
        lookup_p99.1,
        checkout_p99.0,
        checkout_p99.1
    );
    assert!(!o.sold.is_empty() && !o.lookups.is_empty());
    assert!(
        rss_last <= rss_mid + rss_mid / 5 + 32 * 1024,
        "memory climbs: {rss_mid} KiB in the middle third, {rss_last} KiB in the last"
    );
    assert!(
        files_last <= files_mid + 32,
        "open files climb: {files_mid} -> {files_last}"
    );
    // Latency is noisy on a shared machine: only a climb of several times counts.
    for (what, (a, b)) in [("lookup", lookup_p99), ("checkout", checkout_p99)] {
        assert!(
            b <= a * 4 + Duration::from_millis(100),
            "{what} p99 climbs: {a:?} in the middle third, {b:?} in the last"
        );
    }
}
