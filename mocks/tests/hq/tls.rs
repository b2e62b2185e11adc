//! The mock HQ over mutual TLS: `MockHq::start_with` and `outpost-hq serve --tls-*`.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::hq::{Faults, MockHq, PushError, PushKind, PushOptions, push_catalog};
use outpost_security::tls::{
    DeviceIdentity, GeneratedIdentity, hq_client_config, mtls_server_config,
};

use crate::helpers::{Conversation, WAIT, batch, envs, hello, seqs};

/// HQ's certificate (for 127.0.0.1) and a store's, each from its own one-off CA.
fn pki() -> (GeneratedIdentity, GeneratedIdentity) {
    (
        DeviceIdentity::generate(&["127.0.0.1".into()]).unwrap(),
        DeviceIdentity::generate(&["store-1.test".into()]).unwrap(),
    )
}

#[tokio::test]
async fn uploads_over_mutual_tls_and_stores_without_a_good_certificate_are_refused() {
    let (hq_id, store) = pki();
    let dir = tempfile::tempdir().unwrap();
    let tls = mtls_server_config(&hq_id.identity, store.ca_pem.as_bytes()).unwrap();
    let hq = MockHq::start_with(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        Faults::none(),
        Some(tls),
    )
    .await
    .unwrap();
    let url = hq.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let good = hq_client_config(hq_id.ca_pem.as_bytes(), &store.identity).unwrap();
    let mut c = Conversation::open_with(&url, Some(&good)).await.unwrap();
    assert_eq!(c.ack_of(hello("unit-a")).await, 0);
    assert_eq!(c.ack_of(batch(envs(1..=3))).await, 3);
    drop(c);
    assert_eq!(seqs(&hq.received("unit-a")), vec![1, 2, 3]);
    assert_eq!(hq.tls_refused(), 0);

    // A store whose certificate comes from another CA: the handshake is refused and
    // nothing reaches the service.
    let foreign = DeviceIdentity::generate(&["store-1.test".into()]).unwrap();
    let bad = hq_client_config(hq_id.ca_pem.as_bytes(), &foreign.identity).unwrap();
    let refused = async {
        let mut c = Conversation::open_with(&url, Some(&bad)).await?;
        c.send(hello("unit-x")).await;
        c.next().await
    };
    assert!(
        refused.await.is_err(),
        "a foreign store certificate was accepted"
    );
    // Plaintext to the TLS port gets nowhere either.
    let plain = url.replacen("https://", "http://", 1);
    let refused = async {
        let mut c = Conversation::open_with(&plain, None).await?;
        c.send(hello("unit-y")).await;
        c.next().await
    };
    assert!(
        tokio::time::timeout(WAIT, refused)
            .await
            .map_or(true, |r| r.is_err()),
        "plaintext reached the TLS port"
    );
    // A store that does not trust this HQ's CA refuses HQ.
    let other_ca = DeviceIdentity::generate(&["127.0.0.1".into()])
        .unwrap()
        .ca_pem;
    let distrust = hq_client_config(other_ca.as_bytes(), &store.identity).unwrap();
    let err = Conversation::open_with(&url, Some(&distrust))
        .await
        .err()
        .expect("a store must refuse an HQ from another CA");
    assert!(err.message().contains("invalid peer certificate"), "{err}");

    let deadline = std::time::Instant::now() + WAIT;
    while hq.tls_refused() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hq.tls_refused() >= 2, "refused: {}", hq.tls_refused());
    assert_eq!(hq.units(), vec!["unit-a".to_owned()]);
    assert_eq!(hq.stats().connections, 1);
    hq.shutdown().await.unwrap();
}

#[tokio::test]
async fn push_options_and_url_scheme_must_agree() {
    let (hq_id, store) = pki();
    let mut opts = PushOptions::new(PushKind::Snapshot);
    let lines = outpost_mocks::hq::CatalogSource::JsonLines(
        br#"{"sku":"A","name":"A","category":"c","price":1,"currency":"EUR","tax_class":"standard"}"#
            .to_vec()
            .into(),
    );
    let err = push_catalog("https://127.0.0.1:1", lines.clone(), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::Options(_)), "{err}");
    opts.tls = Some(hq_client_config(hq_id.ca_pem.as_bytes(), &store.identity).unwrap());
    let err = push_catalog("http://127.0.0.1:1", lines, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, PushError::Options(_)), "{err}");
}

fn write_identity(
    dir: &std::path::Path,
    stem: &str,
    id: &GeneratedIdentity,
) -> (String, String, String) {
    let cert = dir.join(format!("{stem}-cert.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    let ca = dir.join(format!("{stem}-ca.pem"));
    std::fs::write(&cert, &id.cert_pem).unwrap();
    std::fs::write(&key, id.key_pem.as_bytes()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&ca, &id.ca_pem).unwrap();
    let s = |p: std::path::PathBuf| p.display().to_string();
    (s(cert), s(key), s(ca))
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_cli_serves_mutual_tls_and_refuses_half_tls_options() {
    let bin = env!("CARGO_BIN_EXE_outpost-hq");
    let (hq_id, store) = pki();
    let dir = tempfile::tempdir().unwrap();
    let (hq_cert, hq_key, hq_ca) = write_identity(dir.path(), "hq", &hq_id);
    let (_, _, store_ca) = write_identity(dir.path(), "store", &store);

    // TLS options come all together.
    let out = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("hq1"))
        .args(["--tls-cert", &hq_cert])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--tls-key") || stderr.contains("--client-ca"),
        "{stderr}"
    );
    // A key readable by others is refused with a clear error.
    let loose = dir.path().join("loose-key.pem");
    std::fs::write(&loose, hq_id.key_pem.as_bytes()).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("hq2"))
        .args(["--tls-cert", &hq_cert, "--tls-key"])
        .arg(&loose)
        .args(["--client-ca", &store_ca])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server certificate"), "{stderr}");

    // Serve on a port picked here (bound, then released for the child).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _child = Child(
        std::process::Command::new(bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("hq3"))
            .args([
                "--tls-cert",
                &hq_cert,
                "--tls-key",
                &hq_key,
                "--client-ca",
                &store_ca,
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}");
    let good: Arc<rustls::ClientConfig> =
        hq_client_config(std::fs::read(&hq_ca).unwrap().as_slice(), &store.identity).unwrap();
    let mut conversation = None;
    for _ in 0..100 {
        match Conversation::open_with(&url, Some(&good)).await {
            Ok(c) => {
                conversation = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut c = conversation.expect("outpost-hq serve came up with TLS");
    assert_eq!(c.ack_of(hello("unit-cli")).await, 0);
    assert_eq!(c.ack_of(batch(envs(1..=2))).await, 2);
}
