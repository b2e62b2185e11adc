//! The store mesh through the API: units of one store see each other at
//! `GET /api/v1/peers`; a unit that is not on the store's roster is refused.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_p2p::PeerId;
use outpost_p2p::roster::{SignedRoster, demo_hq_keypair};
use outpost_server::store::StoreOptions;
use serde_json::Value;

use crate::helpers::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The peer id of the unit whose data dir is `dir`: its identity is sealed under the
/// data key, so this opens the data dir (as `outpost p2p id` does).
fn peer_id_of(dir: &Path) -> String {
    let (_store, access) =
        outpost_server::access::open_data_dir(&test_settings(dir), &StoreOptions::default())
            .unwrap();
    outpost_server::mesh::peer_id(dir, &access).unwrap()
}

/// Mesh settings for a unit in `dir`, with `roster`, dialling `peers`.
fn unit_settings(
    dir: &Path,
    roster: &SignedRoster,
    peers: Vec<String>,
) -> outpost_server::config::Settings {
    let file = dir.join("roster.json");
    std::fs::write(&file, serde_json::to_string(roster).unwrap()).unwrap();
    let mut s = test_settings(dir);
    s.p2p.enabled = true;
    s.p2p.mdns = false;
    s.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    s.p2p.static_peers = peers;
    s.p2p.roster_file = Some(file);
    s.p2p.hq_public_key = Some(hex(&demo_hq_keypair().public().to_bytes()));
    s
}

/// Poll `GET /api/v1/peers` of `app` until `ok` holds (at most 20 s).
async fn peers_until(app: &TestApp, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = app.get("/api/v1/peers").await;
        assert_eq!(status, 200, "{body}");
        if ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_of<'a>(view: &'a Value, peer: &str) -> Option<&'a str> {
    view["peers"]
        .as_array()?
        .iter()
        .find(|p| p["peer_id"] == peer)?["state"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_of_a_store_see_each_other_and_a_stranger_is_refused() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids: Vec<String> = dirs.iter().map(|d| peer_id_of(d.path())).collect();
    let pid = |s: &String| s.parse::<PeerId>().unwrap();
    let hq = demo_hq_keypair();
    let store = SignedRoster::sign(&hq, "store-1", 1, [pid(&ids[0]), pid(&ids[1])]);

    let a = spawn_configured(unit_settings(dirs[0].path(), &store, vec![]), None, false).await;
    let view = peers_until(&a, "A to listen", |v| {
        v["listen"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    assert_eq!(view["enabled"], true);
    assert_eq!(view["peer_id"], ids[0].as_str());
    let a_addr = view["listen"][0].as_str().unwrap().to_owned();

    let b = spawn_configured(
        unit_settings(dirs[1].path(), &store, vec![a_addr.clone()]),
        None,
        false,
    )
    .await;
    peers_until(&a, "A to see B connected", |v| {
        state_of(v, &ids[1]) == Some("connected")
    })
    .await;
    let view = peers_until(&b, "B to see A connected", |v| {
        state_of(v, &ids[0]) == Some("connected")
    })
    .await;
    let peer = view["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(peer["on_roster"], true, "{view}");

    // A unit HQ put on another store's roster is not admitted to this store.
    let other = SignedRoster::sign(&hq, "store-2", 1, [pid(&ids[2]), pid(&ids[0])]);
    let c = spawn_configured(
        unit_settings(dirs[2].path(), &other, vec![a_addr]),
        None,
        false,
    )
    .await;
    let view = peers_until(&a, "A to refuse the stranger", |v| {
        state_of(v, &ids[2]) == Some("rejected")
    })
    .await;
    assert_eq!(state_of(&view, &ids[1]), Some("connected"), "{view}");

    for app in [c, b, a] {
        app.stop().await;
    }
}

#[tokio::test]
async fn the_mesh_is_off_by_default_and_a_bad_roster_stops_start_up() {
    let app = spawn_app().await;
    let (status, body) = app.get("/api/v1/peers").await;
    assert_eq!(status, 200);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["peers"], serde_json::json!([]));
    app.stop().await;

    // A roster signed by someone other than HQ: refused before anything starts.
    let dir = tempfile::tempdir().unwrap();
    let id = peer_id_of(dir.path());
    let forger = outpost_p2p::identity::ed25519::Keypair::generate();
    let forged = SignedRoster::sign(&forger, "store-1", 1, [id.parse::<PeerId>().unwrap()]);
    let s = unit_settings(dir.path(), &forged, vec![]);
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("p2p.roster_file"), "{e}");
    let built = outpost_server::startup::Application::build(s, Default::default()).await;
    assert!(built.is_err(), "a forged roster must stop start-up");
}

/// On an enrolled unit the mesh must trust the HQ key it is enrolled with: a config that
/// names another roster key (a thief's, with a roster of his own) stops the start.
#[tokio::test]
async fn an_enrolled_unit_refuses_a_roster_key_other_than_its_hq_key() {
    let dir = tempfile::tempdir().unwrap();
    let id = peer_id_of(dir.path());
    // The roster is genuinely signed by the key the config names; the unit is enrolled
    // with another HQ key.
    let roster = SignedRoster::sign(
        &demo_hq_keypair(),
        "store-1",
        1,
        [id.parse::<PeerId>().unwrap()],
    );
    let mut s = unit_settings(dir.path(), &roster, vec![]);
    let hq = outpost_security::lease::HqSigner::generate();
    let bundle = outpost_security::enroll::Enrollment {
        store_id: s.store.id.clone(),
        unit_id: s.sync.unit_id.clone(),
        hq_public_key: hex(hq.verifying_key().as_bytes()),
        escrow_share_key: None,
        escrow_recovery_key: Some(
            outpost_security::escrow::EscrowSecret::generate()
                .public()
                .to_hex(),
        ),
        lease: Default::default(),
        unlock: Default::default(),
        issued_at: 1_800_000_000,
    }
    .sign(&hq)
    .unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bundle).unwrap();
    s.security.enrollment = Some(path);
    let built = outpost_server::startup::Application::build(s, Default::default()).await;
    let e = format!("{:#}", built.err().expect("refused"));
    assert!(e.contains("p2p.hq_public_key"), "{e}");
}

/// An older unit kept its mesh identity in a plaintext `p2p/identity.key`: the server
/// moves it under the data key at start, with the same peer id (the roster still
/// lists it), and destroys the plaintext file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_units_plaintext_identity_is_sealed_at_start_with_the_same_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("p2p").join("identity.key");
    let old = outpost_p2p::keyfile::load_or_create(&plain).unwrap();
    let id = old.public().to_peer_id();
    let roster = SignedRoster::sign(&demo_hq_keypair(), "store-1", 1, [id]);
    let app = spawn_configured(unit_settings(dir.path(), &roster, vec![]), None, false).await;
    let (status, view) = app.get("/api/v1/peers").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["peer_id"], id.to_base58().as_str(), "{view}");
    assert!(!plain.exists(), "the plaintext identity was destroyed");
    let sealed = std::fs::read(dir.path().join("p2p").join("identity.sealed")).unwrap();
    let secret = outpost_p2p::keyfile::secret_of(&old).unwrap();
    assert!(
        !sealed.windows(secret.len()).any(|w| w == &secret[..]),
        "the sealed identity holds the key in clear"
    );
    app.stop().await;
    assert_eq!(peer_id_of(dir.path()), id.to_base58());
}
