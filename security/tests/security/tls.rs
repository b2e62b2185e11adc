//! TLS on loopback with tokio-rustls: the right certificates work; an expired, a
//! wrong-CA and a wrong-name certificate are each refused, on both sides of the HQ link.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use outpost_security::tls::{self, DeviceIdentity};
use rustls::pki_types::ServerName;
use time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::helpers::{Issued, TestCa};

fn identity(issued: &Issued) -> DeviceIdentity {
    DeviceIdentity::from_pem(issued.cert_pem.as_bytes(), issued.key_pem.as_bytes()).unwrap()
}

/// What each side saw.
struct Outcome {
    server: Result<(), String>,
    client: Result<rustls::ProtocolVersion, String>,
}

/// One connection: the server echoes 4 bytes; the client sends "ping" and reads it back.
async fn exchange(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    name: &str,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(&buf).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    });
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let client_result = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let version = tls.get_ref().1.protocol_version();
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        if &buf != b"ping" {
            return Err("echo mismatch".to_owned());
        }
        version.ok_or_else(|| "no version".to_owned())
    };
    let client = tokio::time::timeout(StdDuration::from_secs(10), client_result)
        .await
        .unwrap_or_else(|_| Err("client timed out".into()));
    let server = tokio::time::timeout(StdDuration::from_secs(10), server_task)
        .await
        .map(|j| j.unwrap())
        .unwrap_or_else(|_| Err("server timed out".into()));
    Outcome { server, client }
}

struct HqLink {
    hq_ca: TestCa,
    device: DeviceIdentity,
}

fn hq_link() -> HqLink {
    let hq_ca = TestCa::new("HQ CA");
    let device = identity(&hq_ca.issue(&["store-1-unit-1"]));
    HqLink { hq_ca, device }
}

impl HqLink {
    fn hq_server(&self, cert: &Issued) -> Arc<rustls::ServerConfig> {
        tls::mtls_server_config(&identity(cert), self.hq_ca.pem.as_bytes()).unwrap()
    }

    fn device_client(&self) -> Arc<rustls::ClientConfig> {
        tls::hq_client_config(self.hq_ca.pem.as_bytes(), &self.device).unwrap()
    }
}

#[tokio::test]
async fn mutual_tls_to_hq_works_with_the_right_certificates() {
    let link = hq_link();
    let out = exchange(
        link.hq_server(&link.hq_ca.issue(&["hq.test"])),
        link.device_client(),
        "hq.test",
    )
    .await;
    assert_eq!(out.client, Ok(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(out.server, Ok(()));
}

#[tokio::test]
async fn device_refuses_an_expired_hq_certificate() {
    let link = hq_link();
    let expired = link
        .hq_ca
        .issue_with(&["hq.test"], Duration::days(-10), Duration::days(-1));
    let out = exchange(link.hq_server(&expired), link.device_client(), "hq.test").await;
    let err = out.client.unwrap_err();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
    assert!(out.server.is_err());
}

#[tokio::test]
async fn device_refuses_an_hq_certificate_from_another_ca() {
    let link = hq_link();
    let rogue = TestCa::new("Rogue CA");
    let out = exchange(
        link.hq_server(&rogue.issue(&["hq.test"])),
        link.device_client(),
        "hq.test",
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test]
async fn device_refuses_an_hq_certificate_for_another_name() {
    let link = hq_link();
    let out = exchange(
        link.hq_server(&link.hq_ca.issue(&["other.test"])),
        link.device_client(),
        "hq.test",
    )
    .await;
    let err = out.client.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn hq_refuses_a_device_certificate_from_another_ca_or_expired() {
    let link = hq_link();
    let server_cert = link.hq_ca.issue(&["hq.test"]);
    // A device that generated its own identity instead of being enrolled.
    let self_made = DeviceIdentity::generate(&["store-1-unit-1".into()])
        .unwrap()
        .identity;
    let client = tls::hq_client_config(link.hq_ca.pem.as_bytes(), &self_made).unwrap();
    let out = exchange(link.hq_server(&server_cert), client, "hq.test").await;
    assert!(out.server.unwrap_err().contains("UnknownIssuer"));
    assert!(out.client.is_err(), "the device sees the alert");

    let expired = identity(&link.hq_ca.issue_with(
        &["store-1-unit-1"],
        Duration::days(-10),
        Duration::days(-1),
    ));
    let client = tls::hq_client_config(link.hq_ca.pem.as_bytes(), &expired).unwrap();
    let out = exchange(link.hq_server(&server_cert), client, "hq.test").await;
    let err = out.server.unwrap_err();
    assert!(err.contains("Expired") || err.contains("expired"), "{err}");
    assert!(out.client.is_err());
}

#[tokio::test]
async fn rest_port_serves_tls13_with_the_generated_device_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["outpost.local".to_owned(), "127.0.0.1".to_owned()];
    let cipher = outpost_security::vault::KeyVault::new(
        outpost_security::seal::DataKey::from_bytes([4; 32]),
    )
    .cipher("file:device-key")
    .unwrap();
    let (device, _) = DeviceIdentity::load_or_generate_sealed(dir.path(), &names, &cipher).unwrap();
    let server = tls::server_config(&device).unwrap();

    // A terminal that pinned device-ca.pem.
    let ca_pem = std::fs::read(dir.path().join(tls::CA_FILE)).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in tls::parse_certs("device CA", &ca_pem).unwrap() {
        roots.add(cert).unwrap();
    }
    let terminal = |roots: rustls::RootCertStore| {
        Arc::new(
            rustls::ClientConfig::builder_with_provider(tls::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let out = exchange(server.clone(), terminal(roots.clone()), "outpost.local").await;
    assert_eq!(out.client, Ok(rustls::ProtocolVersion::TLSv1_3));
    let out = exchange(server.clone(), terminal(roots), "127.0.0.1").await;
    assert_eq!(out.client, Ok(rustls::ProtocolVersion::TLSv1_3));

    // A terminal that pinned another device's CA refuses this one.
    let other = DeviceIdentity::generate(&["outpost.local".into()]).unwrap();
    let mut other_roots = rustls::RootCertStore::empty();
    for cert in tls::parse_certs("other CA", other.ca_pem.as_bytes()).unwrap() {
        other_roots.add(cert).unwrap();
    }
    let out = exchange(server, terminal(other_roots), "outpost.local").await;
    assert!(
        out.client.is_err(),
        "another device's CA must not vouch for this one"
    );
}
