//! Store mesh integration tests: units on loopback (static peers, no mDNS), a loopback
//! HTTP origin, every wait bounded.

mod helpers;
mod offers;
mod processes;

use std::time::Duration;

use helpers::*;
use outpost_p2p::roster::{SignedRoster, demo_hq_keypair};
use outpost_p2p::{OfferError, P2pError, PeerState, ServeFault, SignedOffer, start};

const MB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_units_share_an_artifact_with_one_origin_download() {
    let d = dirs(5);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 8 * MB + 12345).await;
    let units = units(&d, |_, _| {}).await;
    let offer = origin.offer();
    for u in &units {
        u.offer(signed(&offer)).await.expect("offer");
    }
    for u in &units {
        let path = complete(u, offer.root, Duration::from_secs(20)).await;
        assert_eq!(root_of(&path), offer.root);
    }
    let ratio = origin.bytes_sent() as f64 / offer.size as f64;
    assert!(ratio <= 1.05, "origin bytes ratio {ratio}");
    let mut from_peers = 0;
    for u in &units {
        let s = u.status(offer.root).await.expect("status").expect("known");
        assert!(s.complete);
        from_peers += s.peer_bytes;
    }
    // One unit fetched from origin; the four others got (almost) all of it from peers.
    assert!(
        from_peers >= 4 * offer.size - offer.size / 20,
        "peers served {from_peers}"
    );
    let peers = units[0].peers().await.expect("peers");
    assert_eq!(
        peers
            .iter()
            .filter(|p| p.state == PeerState::Connected)
            .count(),
        4
    );
    for u in &units {
        u.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_rejects_a_stranger() {
    let d = dirs(2);
    let units = units(&d, |_, _| {}).await;
    // The stranger trusts a roster from a key of its own that lists itself and unit 0.
    let sd = tempfile::tempdir().expect("tmp");
    let sid = identity_for(sd.path());
    let fake_hq = libp2p_identity_keypair();
    let fake = SignedRoster::sign(&fake_hq, STORE, 9, [sid, units[0].peer_id()]);
    let mut c = config(sd.path(), fake, &[addr(&units[0])]);
    c.hq_key = fake_hq.public();
    let stranger = start(c).await.expect("stranger starts");
    until(
        "the stranger to be refused",
        Duration::from_secs(10),
        || async {
            units[0].peers().await.expect("peers").iter().any(|p| {
                p.peer_id == sid.to_base58() && p.state == PeerState::Rejected && !p.on_roster
            })
        },
    )
    .await;
    let seen = stranger.peers().await.expect("peers");
    assert!(
        seen.iter().all(|p| p.state != PeerState::Connected),
        "{seen:?}"
    );
    let members = units[0].peers().await.expect("peers");
    assert!(members.iter().any(|p| p.peer_id == units[1].peer_id().to_base58() && p.state == PeerState::Connected));
    stranger.shutdown().await.expect("shutdown");
}

fn identity_for(p: &std::path::Path) -> outpost_p2p::PeerId {
    outpost_p2p::identity_for(p)
        .expect("identity")
        .public()
        .to_peer_id()
}

fn libp2p_identity_keypair() -> outpost_p2p::roster::HqKeypair {
    outpost_p2p::roster::HqKeypair::generate()
}

/// Units on the first of `d`, one per fault (`None`: honest), each holding the
/// artifact of `offer`: alone, each fetches it from origin itself, so no bad data
/// reaches the seeds.
async fn seeds<const N: usize>(
    d: &[tempfile::TempDir],
    r: &SignedRoster,
    offer: &outpost_p2p::Offer,
    faults: [Option<ServeFault>; N],
) -> Vec<outpost_p2p::Client> {
    let mut units = Vec::new();
    for (i, fault) in faults.into_iter().enumerate() {
        let mut c = config(d[i].path(), r.clone(), &[]);
        c.fault = fault;
        let u = start(c).await.expect("start");
        u.offer(signed(offer)).await.expect("offer");
        complete(&u, offer.root, Duration::from_secs(10)).await;
        units.push(u);
    }
    units
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_wrong_size_chunks_are_refused_and_the_peers_banned() {
    // Units 0 (honest), 1 (flips a byte) and 2 (serves chunks one byte short) hold the
    // artifact; unit 3 joins later and must end with a verified copy.
    let d = dirs(4);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 4 * MB).await;
    let offer = origin.offer();
    let ids = identities(&d);
    let r = roster(&ids);
    let first = seeds(
        &d,
        &r,
        &offer,
        [
            None,
            Some(ServeFault::CorruptChunks),
            Some(ServeFault::TruncateChunks),
        ],
    )
    .await;
    // The late unit first knows only the two bad peers, so both must serve it (and
    // be caught); the honest unit is dialled once both are banned.
    let bad: Vec<_> = first[1..].iter().map(addr).collect();
    let mut c = config(d[3].path(), r.clone(), &bad);
    c.requests_per_peer = 8;
    let late = start(c).await.expect("start");
    until(
        "the late unit to see the 2 bad peers",
        Duration::from_secs(10),
        || async {
            late.peers()
                .await
                .expect("peers")
                .iter()
                .filter(|p| p.state == PeerState::Connected)
                .count()
                == 2
        },
    )
    .await;
    late.offer(signed(&offer)).await.expect("offer");
    until(
        "both bad peers to be banned",
        Duration::from_secs(20),
        || async {
            let peers = late.peers().await.expect("peers");
            [1, 2].iter().all(|i| {
                peers
                    .iter()
                    .any(|p| p.peer_id == ids[*i].to_base58() && p.state == PeerState::Banned)
            })
        },
    )
    .await;
    late.dial(addr(&first[0])).await.expect("dial");
    let path = complete(&late, offer.root, Duration::from_secs(20)).await;
    assert_eq!(root_of(&path), offer.root);
    let s = late
        .status(offer.root)
        .await
        .expect("status")
        .expect("known");
    assert!(s.rejected_chunks >= 2, "{s:?}");
    let peers = late.peers().await.expect("peers");
    for (i, want) in [(0, false), (1, true), (2, true)] {
        let p = peers
            .iter()
            .find(|p| p.peer_id == ids[i].to_base58())
            .expect("listed");
        assert_eq!(p.state == PeerState::Banned, want, "unit {i}: {p:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_lying_about_its_chunks_and_one_flooding_announcements_are_banned() {
    // Units 0 (honest), 1 (announces everything, answers every chunk "not found") and
    // 2 (serves good chunks but announces a hundred times a tick) hold the artifact.
    // Unit 3 first knows only the liar, unit 4 only the flooder: each must ban its bad
    // peer and end with a verified copy, the honest unit never banned.
    let d = dirs(5);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 4 * MB).await;
    let offer = origin.offer();
    let ids = identities(&d);
    let r = roster(&ids);
    let first = seeds(
        &d,
        &r,
        &offer,
        [
            None,
            Some(ServeFault::DenyChunks),
            Some(ServeFault::FloodAnnouncements),
        ],
    )
    .await;
    // HQ's origin goes away: the late units can only get the artifact from peers.
    drop(origin);
    for (late_i, bad_i, who) in [(3, 1, "the liar"), (4, 2, "the flooder")] {
        let mut c = config(d[late_i].path(), r.clone(), &[addr(&first[bad_i])]);
        c.requests_per_peer = 8;
        let late = start(c).await.expect("start");
        until(
            &format!("unit {late_i} to see {who}"),
            Duration::from_secs(10),
            || async {
                late.peers()
                    .await
                    .expect("peers")
                    .iter()
                    .any(|p| p.state == PeerState::Connected)
            },
        )
        .await;
        late.offer(signed(&offer)).await.expect("offer");
        until(
            &format!("{who} to be banned"),
            Duration::from_secs(30),
            || async {
                let peers = late.peers().await.expect("peers");
                peers
                    .iter()
                    .any(|p| p.peer_id == ids[bad_i].to_base58() && p.state == PeerState::Banned)
            },
        )
        .await;
        late.dial(addr(&first[0])).await.expect("dial");
        let path = complete(&late, offer.root, Duration::from_secs(20)).await;
        assert_eq!(root_of(&path), offer.root, "unit {late_i}");
        let peers = late.peers().await.expect("peers");
        let honest = peers
            .iter()
            .find(|p| p.peer_id == ids[0].to_base58())
            .expect("listed");
        assert_ne!(honest.state, PeerState::Banned, "{honest:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_fetcher_killed_mid_download_another_takes_over() {
    let d = dirs(5);
    let tmp = tempfile::tempdir().expect("tmp");
    // Big enough that the chunks lost with the fetcher (those no peer had copied yet,
    // and bytes in flight) stay a small fraction of the artifact.
    let origin = origin(tmp.path(), 24 * MB).await;
    origin.set_rate(8 * MB);
    let offer = origin.offer();
    let units = units(&d, |_, _| {}).await;
    for u in &units {
        u.offer(signed(&offer)).await.expect("offer");
    }
    until(
        "a third of the artifact from origin",
        Duration::from_secs(10),
        || async { origin.bytes_sent() > offer.size / 3 },
    )
    .await;
    let mut fetcher = None;
    for (i, u) in units.iter().enumerate() {
        if u.status(offer.root)
            .await
            .expect("status")
            .expect("known")
            .fetching_origin
        {
            fetcher = Some(i);
        }
    }
    let k = fetcher.expect("one unit fetches from origin");
    units[k].shutdown().await.expect("kill the fetcher");
    origin.set_rate(0);
    for (i, u) in units.iter().enumerate().filter(|(i, _)| *i != k) {
        let path = complete(u, offer.root, Duration::from_secs(20)).await;
        assert_eq!(root_of(&path), offer.root, "unit {i}");
    }
    let ratio = origin.bytes_sent() as f64 / offer.size as f64;
    assert!(ratio <= 1.1, "origin bytes ratio {ratio}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_refetching_verified_chunks_and_gc_collects() {
    let d = dirs(1);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 8 * MB).await;
    origin.set_rate(6 * MB);
    let offer = origin.offer();
    let u = units(&d, |_, _| {}).await.remove(0);
    u.offer(signed(&offer)).await.expect("offer");
    until("half the chunks", Duration::from_secs(10), || async {
        u.status(offer.root)
            .await
            .expect("status")
            .expect("known")
            .chunks_present
            >= 16
    })
    .await;
    u.shutdown().await.expect("shutdown");
    // The stopped unit's connections end at the origin's next write to them; bytes it
    // writes until then are not a refetch (a CI run counted ~1 MB of them once the rate
    // limit was lifted below).
    until("the origin noticed", Duration::from_secs(10), || async {
        origin.open_connections() == 0
    })
    .await;
    let sent_before = origin.bytes_sent();
    origin.set_rate(0);
    let ids = identities(&d);
    let u = start(config(d[0].path(), roster(&ids), &[]))
        .await
        .expect("restart");
    let s = u
        .status(offer.root)
        .await
        .expect("status")
        .expect("resumed");
    assert!(s.chunks_present >= 16, "{s:?}");
    let path = complete(&u, offer.root, Duration::from_secs(20)).await;
    assert_eq!(root_of(&path), offer.root);
    let refetched = origin.bytes_sent() - sent_before;
    let present_bytes = s.chunks_present as u64 * 256 * 1024;
    assert!(
        refetched <= offer.size - present_bytes + MB / 2,
        "refetched {refetched}"
    );
    // References: one from the offer. Released, gc removes the files.
    assert_eq!(u.release(offer.root).await.expect("release"), 0);
    let rep = u.gc().await.expect("gc");
    assert_eq!(rep.removed, vec![offer.root]);
    assert!(!path.exists());
    assert!(u.status(offer.root).await.expect("status").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused() {
    let d = dirs(1);
    let ids = identities(&d);
    // A roster whose signature does not cover its peer list.
    let mut r = roster(&ids);
    r.peers.push(outpost_p2p::PeerId::random().to_base58());
    let err = start(config(d[0].path(), r, &[]))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, P2pError::Roster(_)), "{err}");
    let u = start(config(d[0].path(), roster(&ids), &[]))
        .await
        .expect("start");
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 1000).await;
    let mut bad = origin.offer();
    bad.size = 0;
    assert!(matches!(
        u.offer(signed(&bad)).await,
        Err(P2pError::Refused(OfferError::Invalid(_)))
    ));
    let mut bad = origin.offer();
    bad.url = "file:///etc/passwd".into();
    assert!(matches!(
        u.offer(signed(&bad)).await,
        Err(P2pError::Refused(OfferError::Invalid(_)))
    ));
    // Offers HQ did not sign for this store now, from this unit's own server.
    let good = origin.offer();
    let mut unsigned = signed(&good);
    unsigned.signature.clear();
    let other_key = outpost_p2p::roster::HqKeypair::generate();
    let expires = outpost_p2p::offer::now_ms() + 60_000;
    let mut tampered = signed(&good);
    tampered.offer.url = "http://127.0.0.1:1/elsewhere".into();
    for (what, o, want) in [
        ("unsigned", unsigned, "not signed"),
        (
            "wrong key",
            SignedOffer::sign(&other_key, good.clone(), STORE, expires),
            "does not verify",
        ),
        ("tampered", tampered, "does not verify"),
        (
            "expired",
            SignedOffer::sign(&demo_hq_keypair(), good.clone(), STORE, 1_000),
            "expired",
        ),
        (
            "other store",
            SignedOffer::sign(&demo_hq_keypair(), good.clone(), "store-other", expires),
            "store-other",
        ),
    ] {
        let e = u.offer(o).await.expect_err(what);
        assert!(matches!(e, P2pError::Refused(_)), "{what}: {e}");
        assert!(e.to_string().contains(want), "{what}: {e}");
    }
    assert!(u.status(good.root).await.expect("status").is_none());
    assert_eq!(origin.hits(), 0, "nothing was asked of origin");
    // Wrong hash for the content: the chunk list from origin does not verify, nothing
    // is written, and the unit reports the failure instead of completing.
    let mut bad = origin.offer();
    bad.root = outpost_p2p::Root([7; 32]);
    u.offer(signed(&bad)).await.expect("accepted for download");
    let res = tokio::time::timeout(Duration::from_secs(15), u.wait_complete(bad.root))
        .await
        .expect("settles");
    assert!(matches!(res, Err(P2pError::Failed(..))), "{res:?}");
    let s = u.status(bad.root).await.expect("status").expect("known");
    assert_eq!(s.chunks_present, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_unit_fetches_everything_from_a_peer() {
    let d = dirs(2);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 2 * MB).await;
    let offer = origin.offer();
    let ids = identities(&d);
    let r = roster(&ids);
    let a = start(config(d[0].path(), r.clone(), &[]))
        .await
        .expect("start");
    a.offer(signed(&offer)).await.expect("offer");
    complete(&a, offer.root, Duration::from_secs(10)).await;
    let mut c = config(d[1].path(), r, &[addr(&a)]);
    c.requests_per_peer = 4;
    let b = start(c).await.expect("start");
    until("connected", Duration::from_secs(5), || async {
        b.peers()
            .await
            .expect("peers")
            .iter()
            .any(|p| p.state == PeerState::Connected)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sent = origin.bytes_sent();
    b.offer(signed(&offer)).await.expect("offer");
    let path = complete(&b, offer.root, Duration::from_secs(15)).await;
    assert_eq!(root_of(&path), offer.root);
    assert_eq!(origin.bytes_sent(), sent);
}

/// The origin fixture's shared link (the store's WAN, for the `store_swarm` baseline):
/// two downloads at once share its rate, so both together take at least twice as long
/// as one alone would. A lower bound only: a slow machine makes it slower, not faster.
#[tokio::test]
async fn the_origin_link_rate_is_shared_by_concurrent_downloads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), MB).await;
    origin.set_link_rate(4 * MB);
    let url = origin.offer().url;
    let client = reqwest::Client::new();
    let get = |c: reqwest::Client, u: String| async move {
        let body = c
            .get(u)
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        body.len() as u64
    };
    let t0 = std::time::Instant::now();
    let (a, b) = tokio::join!(get(client.clone(), url.clone()), get(client, url));
    let took = t0.elapsed();
    assert_eq!((a, b), (MB, MB));
    assert_eq!(origin.bytes_sent(), 2 * MB);
    // 2 MiB through a 4 MiB/s link: 0.5 s at least (one alone would need 0.25 s). The
    // first 64 KiB piece of each goes out before its wait: allow for those.
    assert!(
        took >= Duration::from_millis(450),
        "two downloads through one 4 MiB/s link took {took:?}"
    );
}
