//! Power loss, not just process death: the data dir lives on `outpost-lazyfs`, a FUSE
//! filesystem that keeps every write not yet fsync'd in memory. While tills check out
//! and refund, the server is killed with SIGKILL *and* every unsynced write is
//! dropped (the filesystem crashes and is mounted again over what was synced), as a
//! power cut would. After every cycle, on the data dir as the disk kept it:
//! - the outbox holds exactly one entry for each sale and each refund in the journal,
//!   in contiguous sequence;
//! - the restarted server has every sale and refund a client got a 201 for, exactly
//!   once, gives back the others to the client retrying their key, and its stock is
//!   the opening stock minus what was sold plus what was refunded.
//!
//! SIGKILL alone leaves the page cache intact, so only this test shows that a 201 waits
//! for the fsync. `OUTPOST_POWERLOSS_CYCLES` sets the number of cycles (default 3; the
//! gauntlet runs more). A machine that cannot mount FUSE fails this test unless
//! `OUTPOST_SKIP_FUSE=1`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outpost_lazyfs::{LazyFs, skip_on};
use outpost_server::store::outbox::{OutboxKind, read_from};
use rand::Rng;
use uuid::Uuid;

use super::helpers::{Ledger, Shop, audit, spawn_load, start};

const TILLS: usize = 8;
const REFUNDERS: usize = 2;

fn mount(backing: &Path, at: &Path) -> Option<LazyFs> {
    match LazyFs::mount(backing, at) {
        Ok(fs) => Some(fs),
        Err(e) if skip_on(&e) => None,
        Err(e) => {
            panic!("{e} (set OUTPOST_SKIP_FUSE=1 to skip the power-loss test on this machine)")
        }
    }
}

/// Open the stopped server's data dir in this process and check its outbox against
/// its journal: one entry per sale and per refund, contiguous. Returns (sales, refunds).
fn check_outbox(data: &Path) -> (usize, usize) {
    let settings = outpost_server::config::Settings::load(
        None,
        [
            ("OUTPOST_DATA_DIR".to_owned(), data.display().to_string()),
            ("OUTPOST_ALLOW_SOFTWARE_SEALER".to_owned(), "1".to_owned()),
        ],
        &outpost_server::config::Flags::default(),
    )
    .unwrap();
    let (store, _access) = outpost_server::access::open_data_dir(
        &settings,
        &outpost_server::store::StoreOptions::default(),
    )
    .unwrap();
    let mut sales = Vec::new();
    loop {
        let batch = store.sales_after(sales.last().copied(), 500).unwrap();
        if batch.is_empty() {
            break;
        }
        sales.extend(batch.iter().map(|s| s.id));
    }
    let mut refunds = Vec::new();
    for s in &sales {
        refunds.extend(store.refunds_of(*s).unwrap().iter().map(|r| r.id));
    }
    let first = store.outbox_first_seq().unwrap();
    let entries = read_from(&store, first, usize::MAX, usize::MAX).unwrap();
    assert_eq!(
        entries.len() as u64,
        store.outbox_pending().unwrap(),
        "outbox entries readable vs counted"
    );
    let mut in_outbox: HashMap<(u8, Uuid), usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.entry.seq, first + i as u64, "outbox sequence has a gap");
        let kind = match e.entry.kind {
            OutboxKind::Sale => 0,
            OutboxKind::Refund => 1,
            _ => continue,
        };
        *in_outbox.entry((kind, e.entry.id)).or_default() += 1;
    }
    for s in &sales {
        assert_eq!(
            in_outbox.remove(&(0, *s)),
            Some(1),
            "outbox entries of sale {s}"
        );
    }
    for r in &refunds {
        assert_eq!(
            in_outbox.remove(&(1, *r)),
            Some(1),
            "outbox entries of refund {r}"
        );
    }
    assert!(
        in_outbox.is_empty(),
        "outbox entries with no sale or refund: {in_outbox:?}"
    );
    (sales.len(), refunds.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_sales_refunds_and_outbox_survive_power_loss_exactly_once() {
    let cycles: usize = std::env::var("OUTPOST_POWERLOSS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("disk"), dir.path().join("mnt"));
    std::fs::create_dir_all(&backing).unwrap();
    std::fs::create_dir_all(&mnt).unwrap();
    let Some(mut fs) = mount(&backing, &mnt) else {
        return;
    };
    let shop = Shop::create(dir.path(), &mnt.join("data"));
    let client = shop.till.clone();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::rng();
    let started = Instant::now();
    let mut dropped = (0usize, 0u64);
    let mut syncs = 0;
    for cycle in 0..cycles {
        let server = start(&shop.data);
        if cycle == 0 {
            shop.open(&server).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let supervisor = shop.supervisor(&server).await;
        let tasks = spawn_load(
            &server,
            &ledger,
            &stop,
            &client,
            TILLS,
            Some((&supervisor, REFUNDERS)),
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
        // The power goes: the process dies and the unsynced writes with it.
        server.kill();
        let crash = fs.crash().unwrap();
        dropped = (dropped.0 + crash.files, dropped.1 + crash.bytes);
        syncs += crash.syncs;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        fs = mount(&backing, &mnt).expect("the second mount works as the first did");
        let data = shop.data.clone();
        let (sales, refunds) = tokio::task::spawn_blocking(move || check_outbox(&data))
            .await
            .unwrap();
        let server = start(&shop.data);
        let supervisor = shop.supervisor(&server).await;
        let n = audit(&client, Some(&supervisor), &server.base, &ledger).await;
        assert_eq!(n, sales);
        server.kill();
        let l = ledger.lock().unwrap();
        eprintln!(
            "cycle {cycle}: {n} sales ({} acknowledged), {refunds} refunds ({} acknowledged); the crash dropped unsynced writes to {} files ({} bytes)",
            l.acked.len(),
            l.refunds_acked.len(),
            crash.files,
            crash.bytes
        );
    }
    let l = ledger.lock().unwrap();
    assert!(
        l.acked.len() > cycles && !l.refunds_acked.is_empty(),
        "the load made sales and refunds ({} and {} in {cycles} cycles)",
        l.acked.len(),
        l.refunds_acked.len()
    );
    // The server's writes went through the lazy filesystem: it synced through it.
    assert!(
        syncs > 0,
        "the server never fsync'd through the lazy filesystem"
    );
    eprintln!(
        "{cycles} power cuts in {:.1} s: {} acknowledged sales and {} refunds checked; {syncs} fsyncs, unsynced writes to {} files ({} bytes) dropped",
        started.elapsed().as_secs_f64(),
        l.acked.len(),
        l.refunds_acked.len(),
        dropped.0,
        dropped.1
    );
}
