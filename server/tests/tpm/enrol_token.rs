//! `outpost enroll --hq URL --token T` (issue 16) on a real software TPM against the
//! mock HQ on loopback: a bare data dir becomes an enrolled unit whose uplink, over
//! mutual TLS with the certificate HQ issued, brings a sale to HQ; a spent token, a
//! wrong one, an unreachable HQ and an unreachable TPM each change nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_mocks::hq::enrol::HqCa;
use outpost_mocks::hq::{Faults, MockHq};
use outpost_proto::hq;
use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_security::testing::Swtpm;
use outpost_security::tls::{DeviceIdentity, hq_client_config, mtls_server_config};
use outpost_server::config::Settings;
use outpost_server::hq::enrol::{TokenEnrolError, enroll_with_token};
use secrecy::SecretString;

use super::theft::{mock_hq, until_status};
use super::{Running, snapshot, tpm_settings};

/// TPM settings with the three files the enrolment writes, in `etc`.
fn unit_settings(dir: &Path, etc: &Path, tpm: &Swtpm) -> Settings {
    let mut s = tpm_settings(dir, tpm);
    s.tls.cert = Some(etc.join("device.pem"));
    s.tls.key = Some(etc.join("device-key.pem"));
    s.sync.hq_ca = Some(etc.join("hq-ca.pem"));
    s.sync.backoff_min_ms = 20;
    s.sync.backoff_max_secs = 1;
    s.sync.ack_timeout_secs = 5;
    s
}

fn token(t: &str) -> SecretString {
    SecretString::from(t.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_data_dir_becomes_an_enrolled_unit_whose_sale_reaches_hq() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq_dir = tmp.path().join("hq");
    let hq = mock_hq(&hq_dir).await;
    let dir = tmp.path().join("unit");
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let s = unit_settings(&dir, &etc, &tpm);
    let good = hq.issue_enroll_token("store-1", 600).unwrap();
    let nothing = |what: &str| {
        assert!(
            !dir.exists() || snapshot(&dir).is_empty(),
            "{what} left files in the data dir"
        );
        assert!(snapshot(&etc).is_empty(), "{what} left files in etc");
    };

    // An unreachable HQ, a TPM that does not answer, a wrong token: nothing changes,
    // and the good token stays unspent through all of them.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = enroll_with_token(&s, &format!("http://127.0.0.1:{dead}"), &token(&good), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TokenEnrolError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("token is still good"), "{err}");
    nothing("an unreachable HQ");
    let mut no_tpm = s.clone();
    no_tpm.security.tcti = format!("swtpm:host=127.0.0.1,port={dead}");
    let err = enroll_with_token(&no_tpm, &hq.url(), &token(&good), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TokenEnrolError::NotReady(_))
            && err.to_string().contains("cannot be reached"),
        "{err}"
    );
    nothing("a missing TPM");
    for (url, says) in [
        (
            "http://127.0.0.1.example.com:80",
            "only reaches HQ on loopback",
        ),
        ("https://hq.example.com", "--hq-ca-pin"),
    ] {
        let err = enroll_with_token(&s, url, &token(&good), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
        nothing("a URL off loopback");
    }
    let err = enroll_with_token(&s, &hq.url(), &token("OPET-0000"), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not one HQ issued"), "{err}");
    nothing("a wrong token");

    let done = enroll_with_token(&s, &hq.url(), &token(&good), None)
        .await
        .unwrap();
    assert_eq!(
        (done.store_id.as_str(), done.unit_id.as_str()),
        ("store-1", "unit-1")
    );
    let key = std::fs::read(dir.join("sealed-key")).unwrap();
    assert_eq!(
        (&key[..6], key[6], key[7]),
        (&b"OPSEAL"[..], 2, 2),
        "an enrolled TPM envelope"
    );
    assert!(dir.join("trust").exists());
    assert_eq!(
        std::fs::read_to_string(etc.join("hq-ca.pem")).unwrap(),
        hq.ca().pem()
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(etc.join("device-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The same token for another bare data dir: refused, nothing written there.
    let other = tmp.path().join("other");
    let other_etc = tmp.path().join("other-etc");
    std::fs::create_dir_all(&other_etc).unwrap();
    let tpm2 = Swtpm::start();
    let err = enroll_with_token(
        &unit_settings(&other, &other_etc, &tpm2),
        &hq.url(),
        &token(&good),
        None,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    assert!(!other.exists() || snapshot(&other).is_empty());
    assert!(snapshot(&other_etc).is_empty());
    // Enrolling the enrolled unit again is refused before HQ is asked.
    let again = hq.issue_enroll_token("store-1", 600).unwrap();
    let err = enroll_with_token(&s, &hq.url(), &token(&again), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("enrolled already"), "{err}");

    // HQ behind mutual TLS (a server certificate from its CA), the unit's uplink to it.
    hq.shutdown().await.unwrap();
    let ca = HqCa::load_or_create(&hq_dir).unwrap();
    let (cert, key) = ca.issue(&["127.0.0.1"]).unwrap();
    let server = DeviceIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let tls = mtls_server_config(&server, ca.pem().as_bytes()).unwrap();
    let hq = MockHq::start_with(
        "127.0.0.1:0".parse().unwrap(),
        &hq_dir,
        Faults::none(),
        Some(tls),
    )
    .await
    .unwrap();
    let mut s = s;
    s.sync.hq_url = Some(hq.url());
    s.sync.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    s.validate().unwrap();
    let app = Running::start(s, false).await;
    // HQ's first lease, pushed over mutual TLS with HQ's client certificate ("hq").
    let (cert, key) = ca.issue(&["hq"]).unwrap();
    let hq_client = DeviceIdentity::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let client = hq_client_config(ca.pem().as_bytes(), &hq_client).unwrap();
    let url = app.grpc.clone().unwrap().replace("http://", "https://");
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect_with_connector(outpost_proto::grpc_tls::TlsConnector::new(&client))
        .await
        .unwrap();
    StoreServiceClient::new(channel)
        .send_command(hq::Command {
            command_id: "first-lease".into(),
            kind: Some(hq::command::Kind::SignedLease(
                hq.escrow().keys().lease("store-1", "unit-1", 3600),
            )),
        })
        .await
        .unwrap();
    until_status(&app, |v| v["data_key"] == "in_memory").await;
    app.seed_milk();
    let sale = app.sell("enrolled-sale-1").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !hq
        .received_kind("unit-1", hq::EnvelopeKind::Sale)
        .iter()
        .any(|e| String::from_utf8_lossy(&e.json).contains(&sale))
    {
        assert!(Instant::now() < deadline, "the sale never reached HQ");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
    hq.shutdown().await.unwrap();
}

/// The command itself: `outpost enroll --hq URL --token T` with a config file, and
/// its refusal of an HQ that does not answer (nothing written); a half-given pair of
/// flags is refused by the parser.
#[test]
fn the_cli_enrols_with_a_token_and_says_what_went_wrong() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let (dir, etc) = (tmp.path().join("unit"), tmp.path().join("etc"));
    std::fs::create_dir_all(&etc).unwrap();
    let config = tmp.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[security]\nsealer = \"tpm\"\ntcti = {:?}\n[tls]\ncert = {:?}\nkey = {:?}\n[sync]\nhq_ca = {:?}\n",
            dir.display().to_string(),
            tpm.tcti(),
            etc.join("device.pem").display().to_string(),
            etc.join("device-key.pem").display().to_string(),
            etc.join("hq-ca.pem").display().to_string(),
        ),
    )
    .unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let outpost = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .arg("enroll")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("OUTPOST_SEALER")
            .env_remove("OUTPOST_TPM_TCTI")
            .output()
            .unwrap()
    };
    let out = outpost(&[
        "--hq",
        &format!("http://127.0.0.1:{dead}"),
        "--token",
        "OPET-1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot be reached") && err.contains("token is still good"),
        "{err}"
    );
    assert!(!dir.exists() || snapshot(&dir).is_empty());
    assert!(snapshot(&etc).is_empty());
    let out = outpost(&["--hq", "http://127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));

    // And with a good token from a mock HQ on loopback, it enrols.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hq = rt.block_on(mock_hq(&tmp.path().join("hq")));
    let token = hq.issue_enroll_token("store-1", 600).unwrap();
    let out = outpost(&["--hq", &hq.url(), "--token", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Enrolled"));
    assert!(etc.join("device.pem").exists() && dir.join("trust").exists());
    rt.block_on(hq.shutdown()).unwrap();
}
