//! Units as separate processes on loopback: the test binary re-runs itself as each unit
//! (the `unit_process` entry below, which does nothing unless `OUTPOST_P2P_UNIT` names
//! its configuration), so every unit has its own process, sockets and files, and a
//! unit can be killed with SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use outpost_p2p::roster::SignedRoster;
use outpost_p2p::{Multiaddr, Offer, PeerId, SignedOffer};
use serde::{Deserialize, Serialize};

use crate::helpers::*;

const MB: u64 = 1024 * 1024;
const ENV: &str = "OUTPOST_P2P_UNIT";

/// What a unit process is told.
#[derive(Serialize, Deserialize)]
struct UnitSpec {
    data_dir: std::path::PathBuf,
    roster: SignedRoster,
    peers: Vec<String>,
    offer: SignedOffer,
    /// Longest the unit lives.
    life_secs: u64,
}

/// The unit, when this test binary runs as one (see the module doc). A unit prints
/// `LISTEN <addr>`, `FETCHING` while it downloads from origin, `DONE <root>
/// <origin_bytes> <peer_bytes>` when complete, then keeps serving its peers until
/// its stdin closes or its life ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the unit processes the other tests start, not a test"]
async fn unit_process() {
    let spec = std::env::var(ENV).expect("run by the process tests, with OUTPOST_P2P_UNIT set");
    let spec: UnitSpec =
        serde_json::from_str(&std::fs::read_to_string(spec).expect("spec")).expect("spec JSON");
    let peers: Vec<Multiaddr> = spec
        .peers
        .iter()
        .map(|p| p.parse().expect("peer addr"))
        .collect();
    let c = outpost_p2p::start(config(&spec.data_dir, spec.roster, &peers))
        .await
        .expect("unit starts");
    let out = |line: String| {
        let mut o = std::io::stdout().lock();
        writeln!(o, "{line}").expect("stdout");
        o.flush().expect("flush");
    };
    out(format!("LISTEN {}", addr(&c)));
    // Let the parent start the others before the offer arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.offer(spec.offer.clone()).await.expect("offer");
    let deadline = Instant::now() + Duration::from_secs(spec.life_secs);
    let root = spec.offer.offer.root;
    let mut said_fetching = false;
    loop {
        let s = c.status(root).await.expect("status").expect("known");
        if s.fetching_origin && !said_fetching {
            out("FETCHING".into());
            said_fetching = true;
        }
        if s.complete {
            let path = c.wait_complete(root).await.expect("complete");
            assert_eq!(root_of(&path), root, "verified content");
            // Complete means the node counted every chunk: the bytes add up.
            let s = c.status(root).await.expect("status").expect("known");
            assert!(
                s.origin_bytes + s.peer_bytes >= spec.offer.offer.size,
                "complete with {} + {} of {} bytes counted",
                s.origin_bytes,
                s.peer_bytes,
                spec.offer.offer.size
            );
            out(format!(
                "DONE {} {} {}",
                root.to_hex(),
                s.origin_bytes,
                s.peer_bytes
            ));
            break;
        }
        assert!(Instant::now() < deadline, "unit did not complete in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Serve the others until told to stop (stdin closed) or the life ends.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = std::io::stdin().read_line(&mut sink);
        let _ = tx.send(());
    });
    let _ = tokio::time::timeout_at(deadline.into(), rx).await;
    c.shutdown().await.expect("shutdown");
}

/// A running unit process and its output lines.
struct Unit {
    child: Child,
    lines: mpsc::Receiver<String>,
    id: PeerId,
}

impl Unit {
    fn spawn(spec_dir: &Path, i: usize, spec: &UnitSpec, id: PeerId) -> Unit {
        let file = spec_dir.join(format!("unit-{i}.json"));
        std::fs::write(&file, serde_json::to_vec(spec).expect("spec")).expect("write spec");
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "processes::unit_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, &file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a unit process");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Unit { child, lines, id }
    }

    /// The next line with `prefix`, from `prefix` on, waiting at most `limit`.
    fn expect(&self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // libtest prints "test <name> ... " without a newline first.
                Ok(l) => {
                    if let Some(at) = l.find(prefix) {
                        return l[at..].to_owned();
                    }
                }
                Err(e) => panic!("unit {}: no {prefix} line: {e}", self.id),
            }
        }
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `n` unit processes, each dialling the ones before it, all offered `offer`.
fn start_units(n: usize, offer: &Offer, spec_dir: &Path) -> (Vec<Unit>, Vec<tempfile::TempDir>) {
    let d = dirs(n);
    let ids = identities(&d);
    let r = roster(&ids);
    let mut units: Vec<Unit> = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    for (i, dir) in d.iter().enumerate() {
        let spec = UnitSpec {
            data_dir: dir.path().to_owned(),
            roster: r.clone(),
            peers: addrs.clone(),
            offer: signed(offer),
            life_secs: 60,
        };
        let u = Unit::spawn(spec_dir, i, &spec, ids[i]);
        let listen = u.expect("LISTEN ", Duration::from_secs(20));
        addrs.push(listen["LISTEN ".len()..].to_owned());
        units.push(u);
    }
    (units, d)
}

fn done(line: &str) -> (String, u64, u64) {
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.len(), 4, "{line}");
    (
        parts[1].to_owned(),
        parts[2].parse().expect("origin bytes"),
        parts[3].parse().expect("peer bytes"),
    )
}

#[test]
fn five_unit_processes_share_an_artifact_with_one_origin_download() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = rt.block_on(origin(tmp.path(), 8 * MB + 777));
    let offer = origin.offer();
    let (units, _dirs) = start_units(5, &offer, tmp.path());
    let (mut from_origin, mut from_peers) = (0, 0);
    for u in &units {
        let (root, origin, peer) = done(&u.expect("DONE ", Duration::from_secs(60)));
        assert_eq!(root, offer.root.to_hex());
        from_origin += origin;
        from_peers += peer;
    }
    let ratio = origin.bytes_sent() as f64 / offer.size as f64;
    assert!(ratio <= 1.05, "origin bytes ratio {ratio}");
    // Every unit holds every byte, and what did not come from origin came from peers.
    assert!(
        from_origin + from_peers >= 5 * offer.size,
        "origin {from_origin} + peers {from_peers} bytes for 5 × {}",
        offer.size
    );
    assert!(
        from_peers
            >= 4 * offer.size - offer.size / 20 - (from_origin - offer.size.min(from_origin)),
        "peers {from_peers}, origin {from_origin}"
    );
    drop(units);
}

#[test]
fn the_origin_fetcher_process_killed_halfway_and_the_rest_still_complete() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tmp = tempfile::tempdir().expect("tmp");
    // Chunks only the fetcher held when it died (at most the last announce interval's
    // worth, plus what was in flight) are fetched again: a bigger artifact keeps that a
    // small fraction of it.
    let origin = rt.block_on(origin(tmp.path(), 48 * MB));
    origin.set_rate(12 * MB);
    let offer = origin.offer();
    let (mut units, _dirs) = start_units(5, &offer, tmp.path());
    // Whoever says FETCHING downloads from origin; kill it once half has come.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fetcher = None;
    while fetcher.is_none() {
        for (i, u) in units.iter().enumerate() {
            if let Ok(l) = u.lines.try_recv()
                && l.ends_with("FETCHING")
            {
                fetcher = Some(i);
            }
        }
        assert!(Instant::now() < deadline, "no unit fetched from origin");
        std::thread::sleep(Duration::from_millis(20));
    }
    let k = fetcher.expect("fetcher");
    while origin.bytes_sent() < offer.size / 2 {
        assert!(Instant::now() < deadline, "origin too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = units.remove(k);
    killed.child.kill().expect("SIGKILL the fetcher");
    killed.child.wait().expect("reaped");
    origin.set_rate(0);
    for u in &units {
        let (root, _, _) = done(&u.expect("DONE ", Duration::from_secs(60)));
        assert_eq!(root, offer.root.to_hex());
    }
    let ratio = origin.bytes_sent() as f64 / offer.size as f64;
    assert!(ratio <= 1.1, "origin bytes ratio {ratio}");
}
