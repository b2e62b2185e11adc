//! Offers passed on by a peer of the roster: only what HQ signed for this store, and
//! not yet expired, is ever fetched; a peer that forges an offer is banned.

use std::time::Duration;

use outpost_p2p::roster::demo_hq_keypair;
use outpost_p2p::{Client, PeerState, SignedOffer};

use crate::helpers::*;

const MB: u64 = 1024 * 1024;

async fn forger_seen_by(u: &Client, forger: &str) -> Option<outpost_p2p::PeerInfo> {
    u.peers()
        .await
        .expect("peers")
        .into_iter()
        .find(|p| p.peer_id == forger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_offer_from_a_roster_peer_is_never_fetched_and_a_signed_one_is() {
    let d = dirs(3);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 2 * MB).await;
    let good = origin.offer();
    let units = units(&d, |_, _| {}).await;
    let (forger, honest) = (&units[0], &units[1..]);
    let forger_id = forger.peer_id().to_base58();

    // What an older unit (unsigned) or one whose clock is behind (expired) might pass
    // on: refused by both others, and the sender stays connected. Published until both
    // have refused something (the first ones may go out before the mesh has formed).
    let mut unsigned = signed(&good);
    unsigned.signature.clear();
    let expired = SignedOffer::sign(&demo_hq_keypair(), good.clone(), STORE, 1_000);
    until(
        "both units to refuse the unsigned and expired offers",
        Duration::from_secs(15),
        || async {
            let _ = forger.gossip_unchecked(unsigned.clone()).await;
            let _ = forger.gossip_unchecked(expired.clone()).await;
            for u in honest {
                match forger_seen_by(u, &forger_id).await {
                    Some(p) if p.refused_offers >= 2 => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;
    for u in honest {
        let p = forger_seen_by(u, &forger_id).await.expect("listed");
        assert_eq!(p.state, PeerState::Connected, "{p:?}");
    }

    // A forged one: HQ's offer pointed elsewhere after signing. Refused and the
    // forger banned by both.
    let mut forged = signed(&good);
    forged.offer.url = format!("{}?forged", good.url);
    until(
        "both units to ban the forger",
        Duration::from_secs(15),
        || async {
            let _ = forger.gossip_unchecked(forged.clone()).await;
            for u in honest {
                match forger_seen_by(u, &forger_id).await {
                    Some(p) if p.state == PeerState::Banned => {}
                    _ => return false,
                }
            }
            true
        },
    )
    .await;

    // Nothing of any of them was stored or asked of origin, even after the time an
    // election would have taken.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for u in &units {
        assert!(u.status(good.root).await.expect("status").is_none());
    }
    assert_eq!(origin.hits(), 0, "origin was asked for something");

    // HQ's own offer, given to one unit only: the other learns it from the gossip,
    // checks it and fetches it from its peer.
    honest[0].offer(signed(&good)).await.expect("offer");
    for u in honest {
        let path = complete(u, good.root, Duration::from_secs(20)).await;
        assert_eq!(root_of(&path), good.root);
    }
    let ratio = origin.bytes_sent() as f64 / good.size as f64;
    assert!(ratio <= 1.05, "origin bytes ratio {ratio}");
    // The banned forger was told nothing.
    assert!(forger.status(good.root).await.expect("status").is_none());
    for u in &units {
        u.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_whose_stored_offer_was_changed_is_not_resumed() {
    let d = dirs(1);
    let tmp = tempfile::tempdir().expect("tmp");
    let origin = origin(tmp.path(), 4 * MB).await;
    origin.set_rate(2 * MB);
    let offer = origin.offer();
    let u = units(&d, |_, _| {}).await.remove(0);
    u.offer(signed(&offer)).await.expect("offer");
    until("some chunks", Duration::from_secs(10), || async {
        origin.bytes_sent() > 0
    })
    .await;
    u.shutdown().await.expect("shutdown");
    // Someone with the disk points the unfinished download at another origin.
    let elsewhere = origin_elsewhere(tmp.path()).await;
    let meta = d[0]
        .path()
        .join("store")
        .join(offer.root.to_hex())
        .join("meta.json");
    let text = std::fs::read_to_string(&meta).expect("meta.json");
    assert!(text.contains(&offer.url), "{text}");
    std::fs::write(&meta, text.replace(&offer.url, &elsewhere.offer().url)).expect("write");
    let ids = identities(&d);
    let u = outpost_p2p::start(config(d[0].path(), roster(&ids), &[]))
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(elsewhere.hits(), 0, "the changed offer was fetched");
    let s = u.status(offer.root).await.expect("status").expect("known");
    assert!(!s.complete && !s.fetching_origin, "{s:?}");
    // HQ offering it again resumes it.
    origin.set_rate(0);
    u.offer(signed(&offer)).await.expect("offer again");
    let path = complete(&u, offer.root, Duration::from_secs(20)).await;
    assert_eq!(root_of(&path), offer.root);
}

async fn origin_elsewhere(dir: &std::path::Path) -> outpost_p2p::testing::OriginServer {
    let sub = dir.join("elsewhere");
    std::fs::create_dir_all(&sub).expect("dir");
    origin(&sub, 1000).await
}
