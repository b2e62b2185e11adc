//! Enrolment with a one-time token (`HqService.Enroll`) through a real tonic client:
//! the answer's bundle and certificate, a certificate that then carries an upload
//! over mutual TLS to the same HQ, and every refusal (used, unknown, expired token; a
//! bad request, which leaves the token usable); `outpost-hq enroll-token`.

use std::time::Duration;

use outpost_mocks::hq::{Faults, MockHq};
use outpost_proto::hq::hq_service_client::HqServiceClient;
use outpost_proto::hq::{EnrollReply, EnrollRequest, TpmFacts};
use outpost_security::enroll::Enrollment;
use outpost_security::tls::{DeviceIdentity, hq_client_config, mtls_server_config};

use crate::helpers::{Conversation, batch, envs, hello, start_hq};

/// The unit's side: a device key it keeps and a certificate request for it.
fn unit_key() -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(vec!["till-1.store-7.lan".to_owned()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    (key, csr)
}

async fn enroll(url: &str, token: &str, csr: &str) -> Result<EnrollReply, tonic::Status> {
    enroll_as(url, token, "unit-1", csr, "").await
}

/// An Enroll as `unit` with the mesh peer id `peer` (empty: none).
async fn enroll_as(
    url: &str,
    token: &str,
    unit: &str,
    csr: &str,
    peer: &str,
) -> Result<EnrollReply, tonic::Status> {
    let mut client = HqServiceClient::connect(url.to_owned()).await.unwrap();
    client
        .enroll(EnrollRequest {
            token: token.into(),
            unit_id: unit.into(),
            csr_pem: csr.into(),
            tpm: Some(TpmFacts {
                sealer: "tpm".into(),
                pcrs: vec![7],
                reachable: true,
            }),
            mesh_peer_id: peer.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn units_enrolling_with_a_peer_id_are_put_on_their_stores_roster_signed_with_hqs_key() {
    let (hq, dir) = start_hq(Faults::none()).await;
    let (_, csr) = unit_key();
    let peer = || {
        outpost_p2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    };
    let (a, b) = (peer(), peer());
    let token = hq.issue_enroll_token("store-7", 600).unwrap();
    // A peer id that does not parse: refused before the token is spent.
    let err = enroll_as(&hq.url(), &token, "unit-a", &csr, "not-a-peer")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("mesh_peer_id"), "{}", err.message());
    let first = enroll_as(&hq.url(), &token, "unit-a", &csr, &a.to_base58())
        .await
        .unwrap();
    let bundle = Enrollment::verify(first.bundle_json.as_bytes()).unwrap();
    let key = outpost_p2p::identity::ed25519::PublicKey::try_from_bytes(
        bundle.hq_key().unwrap().as_bytes(),
    )
    .unwrap();
    let roster = outpost_p2p::roster::SignedRoster::from_json(&first.roster_json)
        .unwrap()
        .verify(&key)
        .expect("signed with the key the bundle names");
    assert_eq!((roster.store_id.as_str(), roster.version), ("store-7", 1));
    assert!(roster.contains(&a));

    let token = hq.issue_enroll_token("store-7", 600).unwrap();
    let second = enroll_as(&hq.url(), &token, "unit-b", &csr, &b.to_base58())
        .await
        .unwrap();
    let roster = outpost_p2p::roster::SignedRoster::from_json(&second.roster_json)
        .unwrap()
        .verify(&key)
        .unwrap();
    assert_eq!(roster.version, 2);
    assert!(roster.contains(&a) && roster.contains(&b));
    assert_eq!(
        hq.roster("store-7").unwrap().unwrap().version,
        2,
        "what HQ pushes to the store"
    );
    // Without a peer id: no roster in the answer, the store's roster unchanged.
    let token = hq.issue_enroll_token("store-7", 600).unwrap();
    let third = enroll_as(&hq.url(), &token, "unit-c", &csr, "")
        .await
        .unwrap();
    assert!(third.roster_json.is_empty());
    assert_eq!(hq.roster("store-7").unwrap().unwrap().version, 2);

    // `outpost-hq roster` prints the same roster from the stopped HQ's storage.
    hq.shutdown().await.unwrap();
    let roster_cli = |store: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost-hq"))
            .args(["roster", "--store-id", store, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = roster_cli("store-7");
    assert!(out.status.success(), "{out:?}");
    let printed =
        outpost_p2p::roster::SignedRoster::from_json(&String::from_utf8_lossy(&out.stdout))
            .unwrap();
    assert_eq!(printed.version, 2);
    let out = roster_cli("store-8");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No unit of store"),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_token_enrols_one_unit_whose_certificate_then_uploads_over_mutual_tls() {
    let (hq, dir) = start_hq(Faults::none()).await;
    let token = hq.issue_enroll_token("store-7", 600).unwrap();
    let (key, csr) = unit_key();

    // A bad request first: refused, and the token is not spent by it.
    let err = enroll(&hq.url(), &token, "not a request")
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("csr_pem"), "{}", err.message());

    let reply = enroll(&hq.url(), &token, &csr).await.unwrap();
    assert_eq!(reply.store_id, "store-7");
    let bundle = Enrollment::verify(reply.bundle_json.as_bytes()).unwrap();
    assert_eq!(
        (bundle.store_id.as_str(), bundle.unit_id.as_str()),
        ("store-7", "unit-1")
    );
    assert_eq!(
        bundle.hq_public_key,
        hq.escrow().keys().publics().0,
        "the bundle pins this HQ's key"
    );
    assert_eq!(reply.hq_ca_pem, hq.ca().pem());
    // The certificate is for the unit's own key (rustls checks they match).
    let identity = DeviceIdentity::from_pem(
        reply.certificate_pem.as_bytes(),
        key.serialize_pem().as_bytes(),
    )
    .unwrap();

    // The same token again: refused, naming the unit that used it.
    let again = enroll(&hq.url(), &token, &csr).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::PermissionDenied);
    assert!(again.message().contains("already used") && again.message().contains("unit-1"));
    let wrong = enroll(&hq.url(), "OPET-0000", &csr).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::PermissionDenied);
    assert!(
        wrong.message().contains("not one HQ issued"),
        "{}",
        wrong.message()
    );
    let short = hq.issue_enroll_token("store-7", 1).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = enroll(&hq.url(), &short, &csr).await.unwrap_err();
    assert!(
        expired.message().contains("expired"),
        "{}",
        expired.message()
    );

    // The same HQ (data dir) behind mutual TLS with a server certificate from its CA:
    // the enrolled unit's certificate carries an upload; the used token stays used.
    hq.shutdown().await.unwrap();
    let ca = outpost_mocks::hq::enrol::HqCa::load_or_create(dir.path()).unwrap();
    let (cert, server_key) = ca.issue(&["127.0.0.1"]).unwrap();
    let server = DeviceIdentity::from_pem(cert.as_bytes(), server_key.as_bytes()).unwrap();
    let tls = mtls_server_config(&server, ca.pem().as_bytes()).unwrap();
    let hq = MockHq::start_with(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        Faults::none(),
        Some(tls),
    )
    .await
    .unwrap();
    let client = hq_client_config(reply.hq_ca_pem.as_bytes(), &identity).unwrap();
    let mut c = Conversation::open_with(&hq.url(), Some(&client))
        .await
        .unwrap();
    assert_eq!(c.ack_of(hello("unit-1")).await, 0);
    assert_eq!(c.ack_of(batch(envs(1..=1))).await, 1);
    assert_eq!(hq.received("unit-1").len(), 1);
    hq.shutdown().await.unwrap();
    let hq = MockHq::start("127.0.0.1:0".parse().unwrap(), dir.path(), Faults::none())
        .await
        .unwrap();
    let after = enroll(&hq.url(), &token, &csr).await.unwrap_err();
    assert!(
        after.message().contains("already used"),
        "{}",
        after.message()
    );
}

#[tokio::test]
async fn a_tpm_unit_whose_tpm_did_not_answer_is_not_enrolled() {
    let (hq, _dir) = start_hq(Faults::none()).await;
    let token = hq.issue_enroll_token("store-7", 600).unwrap();
    let (_, csr) = unit_key();
    let mut client = HqServiceClient::connect(hq.url()).await.unwrap();
    let err = client
        .enroll(EnrollRequest {
            token: token.clone(),
            unit_id: "unit-1".into(),
            csr_pem: csr.clone(),
            tpm: Some(TpmFacts {
                sealer: "tpm".into(),
                pcrs: vec![7],
                reachable: false,
            }),
            mesh_peer_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // The token is still good.
    enroll(&hq.url(), &token, &csr).await.unwrap();
}

#[test]
fn the_cli_issues_tokens_on_a_stopped_hq_and_says_why_not_on_a_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let cli = |ttl: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost-hq"))
            .args([
                "enroll-token",
                "--store-id",
                "store-7",
                "--ttl-secs",
                ttl,
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = cli("600");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("OPET-"), "{token}");
    let bad = cli("0");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("1 s to 30 days"));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let hq = MockHq::start("127.0.0.1:0".parse().unwrap(), dir.path(), Faults::none())
            .await
            .unwrap();
        // Running: the CLI cannot open the storage, and says what to do.
        let busy = cli("600");
        assert!(!busy.status.success());
        assert!(
            String::from_utf8_lossy(&busy.stderr).contains("stop `serve`"),
            "{}",
            String::from_utf8_lossy(&busy.stderr)
        );
        let (_, csr) = unit_key();
        let reply = enroll(&hq.url(), &token, &csr).await.unwrap();
        assert_eq!(reply.store_id, "store-7");
        hq.shutdown().await.unwrap();
    });
}
