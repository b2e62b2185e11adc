//! TLS on the REST port: TLS 1.3 with the device certificate generated at first start,
//! pinned by clients through `device-ca.pem`; plain HTTP only on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use outpost_mocks::MockTerminal;
use outpost_security::tls::{CA_FILE, DeviceIdentity};
use outpost_server::config::HttpTls;
use outpost_server::devices::InjectedDevices;
use outpost_server::startup::Application;
use rustls::pki_types::ServerName;
use secrecy::SecretString;

use crate::helpers::*;

/// A terminal's HTTPS client: trusts only `ca_pem`, TLS 1.3.
fn client_config(ca_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in outpost_security::tls::parse_certs("pinned CA", ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

struct Answer {
    status: u16,
    body: String,
    set_cookie: Option<String>,
    version: Option<rustls::ProtocolVersion>,
}

/// One HTTP/1.1 request over TLS to `addr`, pinning `ca_pem`.
async fn https(
    addr: SocketAddr,
    ca_pem: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(addr.ip().to_string()).unwrap();
    let tls = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(client_config(ca_pem)).connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let version = tls.get_ref().1.protocol_version();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let set_cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = r.into_body().collect().await.unwrap().to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        set_cookie,
        version,
    })
}

#[tokio::test]
async fn the_rest_port_serves_tls_1_3_with_the_generated_device_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    s.tls.http = HttpTls::On;
    let app = spawn_configured(s, Some(MockTerminal::new()), true).await;
    assert!(app.base.starts_with("https://"), "{}", app.base);
    let addr: SocketAddr = app.base.trim_start_matches("https://").parse().unwrap();
    let ca = std::fs::read(dir.path().join(CA_FILE)).expect("device-ca.pem generated");
    // The device key is sealed: nothing of it is in clear in the data dir.
    assert!(dir.path().join("device-key.sealed").exists());
    assert!(!dir.path().join("device-key.pem").exists());
    let bytes = outpost_security::testing::all_bytes(dir.path());
    assert!(!outpost_security::testing::contains(&bytes, "PRIVATE KEY"));

    // A terminal pinning device-ca.pem gets TLS 1.3 and a working API.
    let cookie = session_for(
        &app.security,
        "t",
        vec![outpost_security::auth::roles::Role::Supervisor],
    );
    let a = https(
        addr,
        &ca,
        "GET",
        "/api/v1/products/MILK",
        &[("cookie", &cookie)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(a.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("MILK"), "{}", a.body);
    let a = https(addr, &ca, "GET", "/api/v1/products/MILK", &[], "")
        .await
        .unwrap();
    assert_eq!(a.status, 401, "credentials are still required over TLS");

    // The session cookie is Secure on TLS.
    app.security
        .set_user(
            "test",
            "sam",
            &SecretString::from("correct horse battery".to_owned()),
            vec![outpost_security::auth::roles::Role::Supervisor],
        )
        .unwrap();
    let a = https(
        addr,
        &ca,
        "POST",
        "/api/v1/auth/login",
        &[],
        r#"{"username":"sam","password":"correct horse battery"}"#,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let cookie = a.set_cookie.expect("a session cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // A terminal pinning another device's CA refuses this server.
    let other = DeviceIdentity::generate(&["127.0.0.1".into()]).unwrap();
    let err = https(addr, other.ca_pem.as_bytes(), "GET", "/healthz", &[], "")
        .await
        .err()
        .expect("another CA must not verify this server");
    // Both generated CAs are named after the same address, so webpki tries this one
    // and the signature does not verify (BadSignature); either way, refused.
    assert!(err.contains("invalid peer certificate"), "{err}");

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "plain HTTP answered on the TLS port"
    );

    // A restart keeps the same certificate: terminals keep their pin.
    let kept = app.stop().await;
    drop(kept);
    let mut s = test_settings(dir.path());
    s.tls.http = HttpTls::On;
    let app = spawn_configured(s, Some(MockTerminal::new()), false).await;
    let addr: SocketAddr = app.base.trim_start_matches("https://").parse().unwrap();
    let a = https(addr, &ca, "GET", "/healthz", &[], "").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    app.stop().await;
}

#[tokio::test]
async fn plaintext_off_loopback_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    s.listen = "0.0.0.0:0".parse().unwrap();
    s.tls.http = HttpTls::Off;
    let err = Application::build(s, InjectedDevices::default())
        .await
        .err()
        .expect("plain HTTP on 0.0.0.0 must be refused");
    let err = format!("{err:#}");
    assert!(
        err.contains("tls.http") && err.contains("not loopback"),
        "{err}"
    );

    // The default on a non-loopback address is TLS, so nothing is ever plain there.
    let mut s = test_settings(dir.path());
    s.listen = "0.0.0.0:0".parse().unwrap();
    s.tls.names = vec!["till.test".into()];
    assert!(s.http_tls());
}
