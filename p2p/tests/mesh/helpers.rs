//! Fixtures: units on loopback with a shared demo-signed roster, and an HTTP origin.

use std::path::Path;
use std::time::Duration;

use outpost_p2p::roster::{SignedRoster, demo_hq_keypair};
use outpost_p2p::testing::{OriginServer, demo_signed, random_file};
use outpost_p2p::{Client, Multiaddr, Offer, P2pConfig, PeerId, SignedOffer, identity_for, start};
use tempfile::TempDir;

pub const STORE: &str = "store-test";

/// Peer ids for `n` data dirs (identities are created on first use).
pub fn identities(dirs: &[TempDir]) -> Vec<PeerId> {
    dirs.iter()
        .map(|d| {
            identity_for(d.path())
                .expect("identity")
                .public()
                .to_peer_id()
        })
        .collect()
}

pub fn roster(peers: &[PeerId]) -> SignedRoster {
    SignedRoster::sign(&demo_hq_keypair(), STORE, 1, peers.iter().copied())
}

/// `offer` as HQ signs it for the test store.
pub fn signed(offer: &Offer) -> SignedOffer {
    demo_signed(offer.clone(), STORE)
}

pub fn config(dir: &Path, roster: SignedRoster, peers: &[Multiaddr]) -> P2pConfig {
    let key = identity_for(dir).expect("identity");
    let mut c = P2pConfig::loopback(dir, key, roster, demo_hq_keypair().public());
    c.static_peers = peers.to_vec();
    c
}

/// The address of a started unit, with its peer id.
pub fn addr(c: &Client) -> Multiaddr {
    format!("{}/p2p/{}", c.listen_addrs()[0], c.peer_id())
        .parse()
        .expect("multiaddr")
}

/// Starts `n` units that all know each other (each dials the earlier ones).
pub async fn units(dirs: &[TempDir], tune: impl Fn(usize, &mut P2pConfig)) -> Vec<Client> {
    let ids = identities(dirs);
    let r = roster(&ids);
    let mut out: Vec<Client> = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let peers: Vec<Multiaddr> = out.iter().map(addr).collect();
        let mut c = config(d.path(), r.clone(), &peers);
        tune(i, &mut c);
        out.push(start(c).await.expect("unit starts"));
    }
    out
}

pub fn dirs(n: usize) -> Vec<TempDir> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    (0..n).map(|_| tempfile::tempdir().expect("tmp")).collect()
}

pub async fn origin(dir: &Path, bytes: u64) -> OriginServer {
    let f = dir.join("artifact.bin");
    random_file(&f, bytes).expect("artifact");
    OriginServer::start(&f).await.expect("origin")
}

/// Waits (bounded) until `f` holds.
pub async fn until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn complete(c: &Client, root: outpost_p2p::Root, limit: Duration) -> std::path::PathBuf {
    tokio::time::timeout(limit, c.wait_complete(root))
        .await
        .expect("completes in time")
        .expect("completes")
}

/// The BLAKE3 root of a file, computed independently of the store.
pub fn root_of(p: &Path) -> outpost_p2p::Root {
    outpost_p2p::chunks::ChunkList::compute(std::fs::File::open(p).expect("open"))
        .expect("hash")
        .root()
}
