//! Crash test: a real `outpost serve` process under concurrent checkouts is killed with
//! SIGKILL at random moments and restarted. After every cycle:
//! - every sale a client got a 2xx for is present exactly once;
//! - every other sale belongs to a key some client sent, and that client gets it back
//!   by retrying with its key;
//! - stock equals the opening stock minus everything sold.
//!
//! `OUTPOST_CRASH_CYCLES` sets the number of cycles (default 10);
//! `scripts/crash-soak.sh` runs 200. SIGKILL keeps what the server wrote in the page
//! cache: `powerloss` cuts the power too, on a filesystem that forgets unsynced writes.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

mod helpers;
mod powerloss;
mod vending;

use helpers::{Ledger, Shop, audit, spawn_load, start};
pub(crate) use helpers::{Server, login, start_with};

const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sales_survive_sigkill_exactly_once() {
    let cycles: usize = std::env::var("OUTPOST_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::create(dir.path(), &dir.path().join("data"));
    let client = shop.till.clone();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::rng();
    let started = Instant::now();
    for cycle in 0..cycles {
        let server = start(&shop.data);
        if cycle == 0 {
            shop.open(&server).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_load(&server, &ledger, &stop, &client, CLIENTS, None);
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..600))).await;
        server.kill();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let server = start(&shop.data);
        let n = audit(&client, None, &server.base, &ledger).await;
        server.kill();
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
