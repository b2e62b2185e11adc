//! A release from HQ to every unit of a three-unit store through its mesh: published
//! at the mock HQ, served once from origin, the canary first and the others after its
//! health gate passed; and a release the canary rolls back halts the store's rollout.

use std::time::Duration;

use outpost_mocks::hq::Credentials;
use outpost_mocks::hq::release::{self, Published};
use outpost_p2p::roster::{SignedRoster, demo_hq_keypair};
use outpost_updater::bundle::Part;

use crate::{Supervised, Unit, get, script_release, v, wait_for};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A unit of the store: its REST and gRPC ports, its mesh port and peer id.
struct StoreUnit {
    unit: Unit,
    rest: String,
    grpc: String,
    mesh_port: u16,
    peer_id: String,
}

fn store_unit() -> StoreUnit {
    let unit = Unit::new();
    let out = unit.outpost(&["p2p", "id"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer_id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    StoreUnit {
        unit,
        rest: format!("127.0.0.1:{}", free_port()),
        grpc: format!("127.0.0.1:{}", free_port()),
        mesh_port: free_port(),
        peer_id,
    }
}

/// Writes the store's mesh and gRPC settings into each unit's config.
fn join_store(units: &[StoreUnit]) {
    let roster = SignedRoster::sign(
        &demo_hq_keypair(),
        "store-1",
        1,
        units.iter().map(|u| u.peer_id.parse().unwrap()),
    );
    for u in units {
        let dir = u.unit.dir.path();
        let roster_file = dir.join("roster.json");
        std::fs::write(&roster_file, serde_json::to_string(&roster).unwrap()).unwrap();
        let peers: Vec<String> = units
            .iter()
            .filter(|o| o.peer_id != u.peer_id)
            .map(|o| format!("\"/ip4/127.0.0.1/tcp/{}/p2p/{}\"", o.mesh_port, o.peer_id))
            .collect();
        let mut config = std::fs::read_to_string(&u.unit.config).unwrap();
        config.push_str(&format!(
            "[sync]\ngrpc_listen = \"{}\"\n\
             [p2p]\nenabled = true\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/{}\"]\n\
             static_peers = [{}]\nroster_file = {roster_file:?}\nhq_public_key = \"{}\"\n",
            u.grpc,
            u.mesh_port,
            peers.join(", "),
            hex(&demo_hq_keypair().public().to_bytes()),
        ));
        std::fs::write(&u.unit.config, config).unwrap();
    }
}

/// An admin's session on `rest`, for HQ's offers on a port without mutual TLS.
async fn admin_session(u: &StoreUnit, password: &str) -> Credentials {
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/auth/login", u.rest))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let id = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    Credentials::AdminSession(id.to_owned())
}

fn add_admin(u: &StoreUnit) -> String {
    let out = u
        .unit
        .outpost(&["users", "add", "admin", "--role", "admin"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn start_store(units: &[StoreUnit]) -> Vec<Supervised> {
    let sups: Vec<Supervised> = units
        .iter()
        .map(|u| Supervised::start_with(&u.unit, &["--listen", &u.rest]))
        .collect();
    for u in units {
        wait_for("a unit to serve", Duration::from_secs(90), || {
            get(&format!("http://{}/healthz", u.rest)).is_some_and(|(s, _)| s == 200)
        });
    }
    sups
}

fn running_version(u: &StoreUnit) -> Option<String> {
    get(&format!("http://{}/healthz", u.rest))
        .and_then(|(_, b)| b["version"].as_str().map(str::to_owned))
}

/// This build with 2 MiB of incompressible bytes after its end (an ELF runs with
/// trailing bytes), so its delta spans several mesh chunks.
fn grown_binary(base: &[u8], seed: u8) -> Vec<u8> {
    let mut bin = base.to_vec();
    let mut x = u64::from(seed) | 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(2 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bin.extend_from_slice(&x.to_le_bytes());
    }
    bin
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_release_reaches_every_unit_of_a_store_through_its_mesh_once_canary_first() {
    let units: Vec<StoreUnit> = (0..3).map(|_| store_unit()).collect();
    join_store(&units);
    let passwords: Vec<String> = units.iter().map(add_admin).collect();
    let bundle =
        units[0]
            .unit
            .publish("r020", "0.2.0", &grown_binary(&units[0].unit.base, 1), true);
    let sups = start_store(&units);
    let rt = rt();
    rt.block_on(async {
        let mut targets = Vec::new();
        for (u, pw) in units.iter().zip(&passwords) {
            targets.push(release::Unit {
                url: format!("http://{}", u.grpc),
                credentials: admin_session(u, pw).await,
            });
        }
        let m = outpost_updater::bundle::manifest_unverified(&bundle).unwrap();
        let part = release::part_for(&m, &[v("0.1.0"), v("0.1.0"), v("0.1.0")]);
        assert_eq!(part, Part::DeltaFrom(v("0.1.0")));
        let work = tempfile::tempdir().unwrap();
        let published = Published::start(&bundle, part, work.path()).await.unwrap();
        let offer = published.offer(&demo_hq_keypair(), "store-1", Duration::from_secs(3600));
        let size = offer.size;
        assert!(
            size > 1 << 20,
            "the artifact spans several chunks: {size} bytes"
        );
        let full = std::fs::metadata(bundle.join(&m.artifact.name))
            .unwrap()
            .len();
        assert!(
            size * 10 < full,
            "the delta ({size} B) is under 10 % of the full archive ({full} B)"
        );

        let done = release::rollout(&published, &targets, &offer, None, Duration::from_secs(180))
            .await
            .unwrap();
        assert_eq!(done.len(), 3);
        // Canary first: the others were offered only after its gate passed.
        assert!(
            done[1..]
                .iter()
                .all(|d| d.installed_at > done[0].installed_at)
        );
        let sent = published.origin.bytes_sent();
        println!(
            "origin bytes for the store: {sent} for a {size}-byte release ({:.4} x)",
            sent as f64 / size as f64
        );
        assert!(
            sent as f64 <= 1.05 * size as f64,
            "origin sent {sent} bytes for a {size}-byte release to a three-unit store"
        );
    });
    for u in &units {
        assert_eq!(running_version(u).as_deref(), Some("0.2.0"));
        assert_eq!(u.unit.current(), v("0.2.0"));
        assert!(
            !u.unit.layout.root().join("incoming/0.2.0").exists(),
            "the unpacked release is cleaned up"
        );
    }
    drop(sups);
}

#[test]
fn a_release_the_canary_refuses_or_rolls_back_halts_the_stores_rollout() {
    let units: Vec<StoreUnit> = (0..2).map(|_| store_unit()).collect();
    join_store(&units);
    let passwords: Vec<String> = units.iter().map(add_admin).collect();
    // Starts, then exits before its gate: a crash loop the guard rolls back.
    let bad = script_release("0.3.0", "exit 3");
    let bundle = units[0].unit.publish("r030", "0.3.0", &bad, false);
    let sups = start_store(&units);
    let rt = rt();
    let err = rt.block_on(async {
        let mut targets = Vec::new();
        for (u, pw) in units.iter().zip(&passwords) {
            targets.push(release::Unit {
                url: format!("http://{}", u.grpc),
                credentials: admin_session(u, pw).await,
            });
        }
        let work = tempfile::tempdir().unwrap();
        // Signed by a key the units do not trust: refused before anything is staged.
        let forged = units[0].unit.dir.path().join("forged");
        outpost_updater::publish::publish(
            outpost_updater::publish::Release {
                version: v("0.2.5"),
                target: outpost_updater::target().into(),
                binary: units[0].unit.base.clone(),
                delta_from: vec![],
                min_from: None,
                schema: None,
                published: crate::now(),
                lifetime_secs: 3600,
                delta_level: 3,
            },
            &[&ed25519_dalek::SigningKey::from_bytes(&[9; 32])],
            &forged,
        )
        .unwrap();
        let published = Published::start(&forged, Part::Full, work.path())
            .await
            .unwrap();
        let offer = published.offer(&demo_hq_keypair(), "store-1", Duration::from_secs(3600));
        let e = release::rollout(&published, &targets, &offer, None, Duration::from_secs(180))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("halted at http://{}", units[0].grpc))
                && e.contains("[bad_signature]"),
            "{e}"
        );

        let published = Published::start(&bundle, Part::Full, work.path())
            .await
            .unwrap();
        let offer = published.offer(&demo_hq_keypair(), "store-1", Duration::from_secs(3600));
        release::rollout(&published, &targets, &offer, None, Duration::from_secs(180))
            .await
            .unwrap_err()
    });
    let text = err.to_string();
    assert!(
        text.contains(&format!("halted at http://{}", units[0].grpc))
            && text.contains("rolled back"),
        "{text}"
    );
    // The canary is back on 0.1.0; the other unit was never offered the release.
    wait_for("the canary back on 0.1.0", Duration::from_secs(60), || {
        running_version(&units[0]).as_deref() == Some("0.1.0")
    });
    assert_eq!(running_version(&units[1]).as_deref(), Some("0.1.0"));
    assert_eq!(units[1].unit.current(), v("0.1.0"));
    assert!(units[1].unit.layout.installed().unwrap().len() == 1);
    drop(sups);
}
