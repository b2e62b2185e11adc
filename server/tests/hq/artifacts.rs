//! Catalog snapshots HQ offers through the store mesh (`OfferArtifact`): fetched from
//! origin once per store, shared between the units, opened with the key HQ sent, and
//! applied on every unit; bad offers (among them any HQ did not sign for this store
//! now) are refused and change nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_mocks::hq::offer::{DEFAULT_TTL, expiry_in, sign_offer};
use outpost_p2p::PeerId;
use outpost_p2p::roster::{HqKeypair, SignedRoster, demo_hq_keypair};
use outpost_p2p::testing::OriginServer;
use outpost_proto::hq;
use outpost_security::stream::{StreamKey, seal};
use outpost_server::store::StoreOptions;
use tonic::Code;

use crate::helpers::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Settings of a mesh unit in `dir` with gRPC, on `roster`, dialling `peers`.
fn mesh_settings(
    dir: &Path,
    roster: &SignedRoster,
    peers: Vec<String>,
) -> outpost_server::config::Settings {
    let file = dir.join("roster.json");
    std::fs::write(&file, serde_json::to_string(roster).unwrap()).unwrap();
    let mut s = settings(dir, None);
    s.p2p.enabled = true;
    s.p2p.mdns = false;
    s.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    s.p2p.static_peers = peers;
    s.p2p.roster_file = Some(file);
    s.p2p.hq_public_key = Some(hex(&demo_hq_keypair().public().to_bytes()));
    s
}

/// `n` products as JSON lines, named so a grep can find them.
fn catalog_jsonl(n: u64, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let line = serde_json::json!({
            "sku": format!("ART-{i:06}"),
            "barcodes": [gtin13(400_000_000_000 + i)],
            "name": format!("Meshberry {tag} jam {i}"),
            "category": "preserves",
            "price": 100 + i as i64,
            "currency": "EUR",
            "tax_class": "standard",
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Seal `plain` under `key` into a file in `dir` and serve it from a loopback origin.
async fn publish(dir: &Path, plain: &[u8], key: &StreamKey) -> OriginServer {
    let file = dir.join(format!("artifact-{}", rand_suffix()));
    let mut sealed = Vec::new();
    seal(key, plain, &mut sealed).unwrap();
    std::fs::write(&file, &sealed).unwrap();
    OriginServer::start(&file).await.unwrap()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// The peer id of the unit whose data dir is `dir` (its identity is sealed under the
/// data key, so the data dir is opened, as `outpost p2p id` does).
fn peer_id_of(dir: &Path) -> PeerId {
    let s = settings(dir, None);
    let (_store, access) =
        outpost_server::access::open_data_dir(&s, &StoreOptions::default()).unwrap();
    outpost_server::mesh::peer_id(dir, &access)
        .unwrap()
        .parse()
        .unwrap()
}

/// HQ's offer of what `origin` serves, unsigned.
fn unsigned_offer_of(origin: &OriginServer, key: &[u8], version: u64) -> hq::ArtifactOffer {
    let o = origin.offer();
    hq::ArtifactOffer {
        root_hex: o.root.to_hex(),
        size: o.size,
        url: o.url,
        chunks_url: o.chunks_url,
        content_key: key.to_vec(),
        payload: Some(hq::artifact_offer::Payload::CatalogSnapshot(
            hq::CatalogArtifact { version },
        )),
        ..hq::ArtifactOffer::default()
    }
}

/// `o` signed as the mock HQ signs it: its roster key (the demo's), "store-1", a day.
fn signed(
    mut o: hq::ArtifactOffer,
    key: &HqKeypair,
    store: &str,
    expires: u64,
) -> hq::ArtifactOffer {
    sign_offer(&mut o, key, store, expires).unwrap();
    o
}

/// HQ's signed offer of what `origin` serves.
fn offer_of(origin: &OriginServer, key: &[u8], version: u64) -> hq::ArtifactOffer {
    signed(
        unsigned_offer_of(origin, key, version),
        &demo_hq_keypair(),
        "store-1",
        expiry_in(DEFAULT_TTL),
    )
}

/// Poll `GetArtifactState` until it reaches `want` (at most 60 s).
async fn artifact_reaches(app: &HqTestApp, root: &str, want: &str) -> hq::ArtifactState {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut c = app.client().await;
    loop {
        let s = c
            .get_artifact_state(hq::GetArtifactStateRequest {
                root_hex: root.into(),
            })
            .await
            .unwrap()
            .into_inner();
        if s.state == want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "artifact {root} did not reach {want}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn mesh_addr(app: &HqTestApp) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, v) = app.get_json("/api/v1/peers").await;
        assert_eq!(status, 200, "{v}");
        if let Some(a) = v["listen"][0].as_str() {
            return a.to_owned();
        }
        assert!(Instant::now() < deadline, "no mesh listen address: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every file under `dir`, searched for `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_offered_to_every_unit_crosses_the_wan_once_and_is_applied_everywhere() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ids: Vec<PeerId> = dirs.iter().map(|d| peer_id_of(d.path())).collect();
    let roster = SignedRoster::sign(&demo_hq_keypair(), "store-1", 1, ids.clone());
    let a = spawn_with(mesh_settings(dirs[0].path(), &roster, vec![])).await;
    let at = mesh_addr(&a).await;
    let b = spawn_with(mesh_settings(dirs[1].path(), &roster, vec![at.clone()])).await;
    let c = spawn_with(mesh_settings(dirs[2].path(), &roster, vec![at])).await;
    let units = [&a, &b, &c];

    let origin_dir = tempfile::tempdir().unwrap();
    let key = StreamKey::generate();
    let plain = catalog_jsonl(3_000, "first");
    let origin = publish(origin_dir.path(), &plain, &key).await;
    let size = origin.offer().size;
    let offer = offer_of(&origin, key.as_bytes(), 7);
    for u in units {
        let s = u
            .client()
            .await
            .offer_artifact(offer.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.state, "fetching", "{s:?}");
        assert_eq!(s.catalog_version, 7);
    }
    for u in units {
        let s = artifact_reaches(u, &offer.root_hex, "applied").await;
        assert!(s.error.is_empty(), "{s:?}");
        let status = u
            .client()
            .await
            .get_status(hq::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.catalog_version, 7);
        assert_eq!(status.catalog_products, 3_000);
        let (code, p) = u.get_json("/api/v1/products/ART-002999").await;
        assert_eq!(code, 200, "{p}");
        assert_eq!(p["name"], "Meshberry first jam 2999");
    }
    let sent = origin.bytes_sent();
    assert!(
        sent as f64 <= 1.05 * size as f64,
        "origin sent {sent} bytes for a {size}-byte artifact"
    );
    // Offering it again (HQ retrying) answers its state and changes nothing.
    let again = a
        .client()
        .await
        .offer_artifact(offer.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.state, "applied");
    let (_, view) = a.get_json("/api/v1/peers").await;
    assert_eq!(view["catalog_artifacts"][0]["stage"], "applied", "{view}");
    assert_eq!(view["catalog_artifacts"][0]["products"], 3_000, "{view}");
    assert!(
        view["catalog_artifacts"][0].get("content_key").is_none(),
        "the key is never shown: {view}"
    );
    // Units and peers only hold ciphertext: no product name in any mesh store.
    for d in &dirs {
        let hits = files_containing(&d.path().join("p2p"), b"Meshberry");
        assert!(hits.is_empty(), "plaintext in the mesh store: {hits:?}");
    }

    // The next snapshot replaces the first; the first is released to the mesh's GC.
    let key2 = StreamKey::generate();
    let origin2 = publish(origin_dir.path(), &catalog_jsonl(500, "second"), &key2).await;
    let offer2 = offer_of(&origin2, key2.as_bytes(), 8);
    for u in units {
        u.client()
            .await
            .offer_artifact(offer2.clone())
            .await
            .unwrap();
    }
    for u in units {
        artifact_reaches(u, &offer2.root_hex, "applied").await;
        let (code, _) = u.get_json("/api/v1/products/ART-002999").await;
        assert_eq!(code, 404);
        let (_, view) = u.get_json("/api/v1/peers").await;
        let list = view["catalog_artifacts"].as_array().unwrap();
        assert_eq!(list.len(), 1, "the old record is dropped: {view}");
        assert_eq!(list[0]["root"], offer2.root_hex.as_str());
    }
    let old_dir = dirs[0]
        .path()
        .join("p2p")
        .join("store")
        .join(&offer.root_hex);
    assert!(!old_dir.exists(), "the old artifact was collected");

    for u in [c, b, a] {
        u.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_offers_are_refused_and_a_wrong_key_changes_nothing() {
    // Without the mesh, offers are refused with a reason.
    let plain = spawn(None).await;
    let origin_dir = tempfile::tempdir().unwrap();
    let key = StreamKey::generate();
    let origin = publish(origin_dir.path(), &catalog_jsonl(50, "bad"), &key).await;
    let good = offer_of(&origin, key.as_bytes(), 3);
    let e = plain
        .client()
        .await
        .offer_artifact(good.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("mesh is off"), "{e:?}");
    plain.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let id = peer_id_of(dir.path());
    let roster = SignedRoster::sign(&demo_hq_keypair(), "store-1", 1, [id]);
    let app = spawn_with(mesh_settings(dir.path(), &roster, vec![])).await;
    snapshot(&app, 2, 10).await;
    let mut c = app.client().await;
    let bad = |f: &dyn Fn(&mut hq::ArtifactOffer)| {
        let mut o = good.clone();
        f(&mut o);
        o
    };
    for (what, offer, code) in [
        (
            "bad hash",
            bad(&|o| o.root_hex = "xyz".into()),
            Code::InvalidArgument,
        ),
        (
            "short key",
            bad(&|o| o.content_key.truncate(31)),
            Code::InvalidArgument,
        ),
        ("size 0", bad(&|o| o.size = 0), Code::InvalidArgument),
        (
            "not http",
            bad(&|o| o.url = "ftp://x/y".into()),
            Code::InvalidArgument,
        ),
        (
            "no payload",
            bad(&|o| o.payload = None),
            Code::InvalidArgument,
        ),
        // Offers HQ did not sign for this store now.
        (
            "unsigned",
            unsigned_offer_of(&origin, key.as_bytes(), 3),
            Code::InvalidArgument,
        ),
        (
            "signed by another key",
            signed(
                unsigned_offer_of(&origin, key.as_bytes(), 3),
                &HqKeypair::generate(),
                "store-1",
                expiry_in(DEFAULT_TTL),
            ),
            Code::InvalidArgument,
        ),
        (
            "pointed elsewhere after signing",
            bad(&|o| o.url = format!("{}?elsewhere", o.url)),
            Code::InvalidArgument,
        ),
        (
            "expired",
            signed(
                unsigned_offer_of(&origin, key.as_bytes(), 3),
                &demo_hq_keypair(),
                "store-1",
                1_000,
            ),
            Code::InvalidArgument,
        ),
        (
            "for another store",
            signed(
                unsigned_offer_of(&origin, key.as_bytes(), 3),
                &demo_hq_keypair(),
                "store-2",
                expiry_in(DEFAULT_TTL),
            ),
            Code::InvalidArgument,
        ),
        (
            "a release that is not a version",
            bad(&|o| {
                o.payload = Some(hq::artifact_offer::Payload::Release(hq::ReleaseArtifact {
                    version: "9.x".into(),
                }))
            }),
            Code::InvalidArgument,
        ),
        (
            "a release to a unit that does not update itself",
            bad(&|o| {
                o.payload = Some(hq::artifact_offer::Payload::Release(hq::ReleaseArtifact {
                    version: "9.0.0".into(),
                }))
            }),
            Code::FailedPrecondition,
        ),
        (
            "not newer than the live catalog",
            bad(&|o| {
                o.payload = Some(hq::artifact_offer::Payload::CatalogSnapshot(
                    hq::CatalogArtifact { version: 2 },
                ))
            }),
            Code::FailedPrecondition,
        ),
    ] {
        let e = c.offer_artifact(offer).await.unwrap_err();
        assert_eq!(e.code(), code, "{what}: {e:?}");
        if what.contains("sign") || what.contains("expired") || what.contains("store") {
            assert!(e.message().starts_with("hq_signature:"), "{what}: {e:?}");
        }
    }
    assert_eq!(origin.hits(), 0, "a refused offer made a unit ask origin");
    let e = c
        .get_artifact_state(hq::GetArtifactStateRequest {
            root_hex: good.root_hex.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "refused offers leave no record");

    // The right artifact with the wrong key: downloaded, fails to open, nothing applied.
    let wrong = bad(&|o| o.content_key = StreamKey::generate().as_bytes().to_vec());
    c.offer_artifact(wrong.clone()).await.unwrap();
    let s = artifact_reaches(&app, &wrong.root_hex, "failed").await;
    assert!(s.error.contains("does not open"), "{s:?}");
    let status = c
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.catalog_version, 2);
    assert_eq!(status.catalog_products, 10);
    // The same version under another hash is a conflict only while the first stands;
    // a failed artifact may be offered again, with the right key, and then applies.
    c.offer_artifact(good.clone()).await.unwrap();
    artifact_reaches(&app, &good.root_hex, "applied").await;
    let (code, p) = app.get_json("/api/v1/products/ART-000049").await;
    assert_eq!(code, 200, "{p}");
    app.stop().await;
}
