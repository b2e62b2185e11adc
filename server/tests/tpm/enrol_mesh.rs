//! Enrolment over the WAN and onto the store mesh (issue 16), on real software TPMs
//! against the mock HQ on loopback: one unit enrols through HQ's TLS enrolment
//! endpoint under the CA pin printed with its token (a wrong pin sends nothing and
//! spends nothing), a second through the loopback path; the config names no
//! certificate paths (the files stay in the data dir and the server finds them); HQ
//! puts each unit's peer id on the store's roster, pushes the new roster to the
//! first, and the two units form their store's mesh.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_mocks::hq::MockHqHandle;
use outpost_proto::hq;
use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_security::testing::Swtpm;
use outpost_security::tls_pin::CaPin;
use outpost_server::config::Settings;
use outpost_server::hq::enrol::{HQ_LINK_DIR, TokenEnrolError, enroll_with_token};
use secrecy::SecretString;

use super::theft::mock_hq;
use super::{Running, snapshot, tpm_settings};

/// A unit of store-1 on the mesh (loopback, no mDNS), its config naming no certificate
/// and no roster: both come from the enrolment.
fn mesh_unit(dir: &Path, tpm: &Swtpm, unit: &str, peers: &[String]) -> Settings {
    let mut s = tpm_settings(dir, tpm);
    s.sync.unit_id = unit.into();
    s.sync.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    s.p2p.enabled = true;
    s.p2p.mdns = false;
    s.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    s.p2p.static_peers = peers.to_vec();
    s
}

fn token(t: &str) -> SecretString {
    SecretString::from(t.to_owned())
}

/// The peers `app` sees as connected.
async fn connected(app: &Running) -> Vec<String> {
    let (_, view) = app.get("/api/v1/peers").await;
    view["peers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["state"] == "connected")
                .filter_map(|p| p["peer_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn push_roster(app: &Running, roster_json: &str) -> Result<u64, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(app.grpc.clone().unwrap())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(hq::RosterPush {
        roster_json: roster_json.into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.session).parse().unwrap(),
    );
    StoreServiceClient::new(channel)
        .push_roster(request)
        .await
        .map(|r| r.into_inner().version)
}

fn roster_of(hq: &MockHqHandle) -> String {
    serde_json::to_string(&hq.roster("store-1").unwrap().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_enrolled_with_tokens_over_the_wan_and_loopback_form_their_stores_mesh() {
    let (tpm_a, tpm_b) = (Swtpm::start(), Swtpm::start());
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let endpoint = hq
        .serve_enrolment("127.0.0.1:0".parse().unwrap(), &["127.0.0.1"])
        .await
        .unwrap();
    let pin = hq.ca().pin().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = mesh_unit(&dir_a, &tpm_a, "unit-a", &[]);
    let good = hq.issue_enroll_token("store-1", 600).unwrap();

    // A wrong pin: the endpoint is not trusted, the token is never sent.
    let wrong = CaPin::of(b"another CA");
    let err = enroll_with_token(&a, &endpoint.url(), &token(&good), Some(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, TokenEnrolError::NotPinned { .. }), "{err}");
    assert!(err.to_string().contains("Nothing was sent"), "{err}");
    assert!(!dir_a.exists() || snapshot(&dir_a).is_empty());
    // The main port's plaintext URL with a pin, and https without one: refused.
    let err = enroll_with_token(&a, &hq.url(), &token(&good), Some(pin))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("goes with an https"), "{err}");
    let err = enroll_with_token(&a, &endpoint.url(), &token(&good), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--hq-ca-pin"), "{err}");

    // The right pin: enrolled, with everything in the data dir.
    let done_a = enroll_with_token(&a, &endpoint.url(), &token(&good), Some(pin))
        .await
        .unwrap();
    assert_eq!(done_a.roster_version, Some(1));
    for f in ["device-cert.pem", "device-key.pem", "hq-ca.pem"] {
        assert!(dir_a.join(HQ_LINK_DIR).join(f).is_file(), "{f}");
    }
    // The identity and HQ's CA pin are sealed under the new data key; nothing of the
    // identity is in the clear.
    assert!(dir_a.join("p2p/identity.sealed").is_file());
    assert!(!dir_a.join("p2p/identity.key").exists());
    assert!(dir_a.join("hq-ca.pin").is_file());
    assert!(dir_a.join("p2p/roster.json").is_file());
    // The endpoint serves Enroll only.
    {
        let config = outpost_security::tls_pin::pinned_client_config(pin).unwrap();
        let channel = tonic::transport::Endpoint::from_shared(endpoint.url())
            .unwrap()
            .connect_with_connector(outpost_proto::grpc_tls::TlsConnector::new(&config))
            .await
            .unwrap();
        let e = outpost_proto::hq::hq_service_client::HqServiceClient::new(channel)
            .escrow(hq::EscrowRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    }

    // The server finds the enrolment's files although the config names none.
    let mut adopted = a.clone();
    adopted.adopt_enrolment();
    assert_eq!(
        adopted.sync.hq_ca.as_deref(),
        Some(dir_a.join(HQ_LINK_DIR).join("hq-ca.pem").as_path())
    );
    let app_a = Running::start(a.clone(), false).await;
    let (_, view_a) = app_a.get("/api/v1/peers").await;
    assert_eq!(view_a["peer_id"], done_a.peer_id.as_str());
    let a_addr = view_a["listen"][0].as_str().unwrap().to_owned();

    // The second unit through the loopback path.
    let b = mesh_unit(&dir_b, &tpm_b, "unit-b", &[a_addr]);
    let second = hq.issue_enroll_token("store-1", 600).unwrap();
    let done_b = enroll_with_token(&b, &hq.url(), &token(&second), None)
        .await
        .unwrap();
    assert_eq!(done_b.roster_version, Some(2));
    let app_b = Running::start(b, false).await;

    // A holds roster 1 (itself only): B is not admitted until HQ pushes roster 2.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(connected(&app_a).await.is_empty());
    // A roster that does not verify, and one that does not name A: refused.
    let mut forged: serde_json::Value = serde_json::from_str(&roster_of(&hq)).unwrap();
    forged["version"] = 3.into();
    let e = push_roster(&app_a, &forged.to_string()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("not signed"), "{}", e.message());
    let first = outpost_server::mesh::kept_roster(&dir_a).unwrap().unwrap();
    assert_eq!(first.version, 1);
    let stranger = outpost_p2p::roster::SignedRoster::sign(
        &hq.escrow().keys().roster_keypair(),
        "store-1",
        5,
        [outpost_p2p::PeerId::random()],
    );
    let e = push_roster(&app_a, &serde_json::to_string(&stranger).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(
        e.message().contains("does not name this unit"),
        "{}",
        e.message()
    );
    assert_eq!(push_roster(&app_a, &roster_of(&hq)).await.unwrap(), 2);
    let e = push_roster(&app_a, &serde_json::to_string(&first).unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "an older roster: {e}"
    );
    assert_eq!(
        push_roster(&app_a, &roster_of(&hq)).await.unwrap(),
        2,
        "the same roster again changes nothing"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (on_a, on_b) = (connected(&app_a).await, connected(&app_b).await);
        if on_a.contains(&done_b.peer_id) && on_b.contains(&done_a.peer_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the units never formed the mesh: a sees {on_a:?}, b sees {on_b:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app_a.stop().await;
    app_b.stop().await;
    // A keeps roster 2 in its data dir.
    let kept = outpost_server::mesh::kept_roster(&dir_a).unwrap().unwrap();
    assert_eq!(kept.version, 2);

    // HQ's CA is fixed in A's protected state: a CA swapped on the disk keeps the HQ
    // link (here the gRPC port) off, and the unit still starts; the enrolled CA back,
    // the link is on again.
    let mut linked = a.clone();
    linked.adopt_enrolment();
    let ca_file = dir_a.join(HQ_LINK_DIR).join("hq-ca.pem");
    let enrolled_ca = std::fs::read(&ca_file).unwrap();
    std::fs::create_dir_all(tmp.path().join("other-hq")).unwrap();
    let other =
        outpost_mocks::hq::enrol::HqCa::load_or_create(&tmp.path().join("other-hq")).unwrap();
    std::fs::write(&ca_file, other.pem()).unwrap();
    let swapped = Running::start(linked.clone(), false).await;
    assert!(
        swapped.grpc.is_none(),
        "the HQ link must stay off under a swapped CA"
    );
    swapped.stop().await;
    std::fs::write(&ca_file, &enrolled_ca).unwrap();
    let restored = Running::start(linked, false).await;
    assert!(
        restored.grpc.is_some(),
        "the enrolled CA opens the link again"
    );
    restored.stop().await;
    hq.shutdown().await.unwrap();
}
