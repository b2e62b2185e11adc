//! Mutual TLS on the HQ link, both ways: the uplink to a mock HQ and HQ's pushes to the
//! store's gRPC port. Certificates are made here (rcgen); all on loopback.

use std::sync::Arc;

use outpost_mocks::hq::{
    CatalogSource, Faults, MockHq, MockHqHandle, PushError, PushKind, PushOptions, push_catalog,
    store_status,
};
use outpost_proto::grpc_tls::TlsConnector;
use outpost_proto::hq::store_service_client::StoreServiceClient;

use crate::helpers::*;
use crate::pki::{Ca, Leaf, Validity};

const HOST: &str = "127.0.0.1";

/// A store provisioned with `device` (its certificate and key) and HQ's CA, dialing
/// `hq_url`; its gRPC port is on loopback with mutual TLS.
async fn spawn_store(
    files: &std::path::Path,
    hq_ca: &Ca,
    device: &Leaf,
    hq_url: Option<String>,
) -> (HqTestApp, tempfile::TempDir) {
    let store_dir = tempfile::tempdir().unwrap();
    let mut s = settings(store_dir.path(), hq_url);
    let (cert, key) = device.write(files, "device");
    s.tls.cert = Some(cert);
    s.tls.key = Some(key);
    s.sync.hq_ca = Some(hq_ca.write(files, "hq-ca"));
    (spawn_with(s).await, store_dir)
}

async fn start_hq(dir: &std::path::Path, leaf: &Leaf, client_ca: &Ca) -> MockHqHandle {
    MockHq::start_with(
        "127.0.0.1:0".parse().unwrap(),
        dir,
        Faults::none(),
        Some(leaf.mtls_server(client_ca)),
    )
    .await
    .expect("mock HQ starts")
}

fn products_jsonl(n: u64) -> CatalogSource {
    let lines: String = (1..=n)
        .map(|i| {
            format!(
                "{{\"sku\":\"T{i}\",\"name\":\"Tea {i}\",\"category\":\"tea\",\"price\":{},\"currency\":\"EUR\",\"tax_class\":\"standard\"}}\n",
                100 + i
            )
        })
        .collect();
    CatalogSource::JsonLines(lines.into_bytes().into())
}

/// HQ's push of a snapshot of `n` products over mutual TLS with `tls`.
async fn push_over(
    app: &HqTestApp,
    tls: Arc<rustls::ClientConfig>,
    n: u64,
) -> Result<u64, outpost_mocks::hq::PushError> {
    let mut opts = PushOptions::new(PushKind::Snapshot);
    opts.tls = Some(tls);
    push_catalog(&app.grpc, products_jsonl(n), &opts)
        .await
        .map(|r| r.version)
}

async fn sync_status(app: &HqTestApp) -> serde_json::Value {
    let (code, v) = app.get_json("/api/v1/sync/status").await;
    assert_eq!(code, 200, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_reach_hq_over_mutual_tls_and_hq_pushes_over_it() {
    let files = tempfile::tempdir().unwrap();
    let hq_ca = Ca::new("HQ CA");
    let device = hq_ca.issue(&[HOST], Validity::Current);
    let pusher = hq_ca.issue(&["hq"], Validity::Current);
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = start_hq(
        hq_dir.path(),
        &hq_ca.issue(&[HOST], Validity::Current),
        &hq_ca,
    )
    .await;
    assert!(hq.url().starts_with("https://"), "{}", hq.url());
    let (app, _store_dir) = spawn_store(files.path(), &hq_ca, &device, Some(hq.url())).await;
    assert!(app.grpc.starts_with("https://"), "{}", app.grpc);

    // HQ pushes to the store's gRPC port over mutual TLS.
    let version = push_over(&app, pusher.client(&hq_ca), 5).await.unwrap();
    assert_eq!(version, 1);
    let status = store_status(&app.grpc, Some(&pusher.client(&hq_ca)))
        .await
        .unwrap();
    assert_eq!(status.catalog_version, 1);

    // Sales reach HQ over the uplink's mutual TLS.
    let sold = sell(&app.base, "T1", 10, 4, "mtls").await;
    let base = app.base.clone();
    eventually(30, "the outbox to drain over TLS", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    let got = hq.received("unit-1");
    assert_eq!(got.len(), 2 * sold.len());
    let mut ids: Vec<String> = got
        .iter()
        .filter(|e| e.kind == outpost_proto::hq::EnvelopeKind::Sale as i32)
        .map(|e| e.id.clone())
        .collect();
    let mut sold = sold;
    ids.sort();
    sold.sort();
    assert_eq!(ids, sold);
    let status = sync_status(&app).await;
    assert_eq!(status["connected"], true, "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    assert_eq!(hq.tls_refused(), 0);

    // Clients without a certificate from HQ's CA are refused by the store's gRPC port,
    // and their push changes nothing.
    let rogue = Ca::new("Rogue CA");
    let foreign = rogue.issue(&["hq-pusher.test"], Validity::Current);
    let err = push_over(&app, foreign.client(&hq_ca), 3)
        .await
        .unwrap_err();
    // Refused at the TLS layer: the store's alert (`received fatal alert: …`) when it
    // is read before the connection resets, else the broken connection.
    assert!(
        matches!(err, PushError::Rpc { .. } | PushError::Connect { .. }),
        "foreign client certificate: {err}"
    );
    eprintln!("foreign client certificate: {err}");
    let expired = hq_ca.issue(&["hq"], Validity::Expired);
    let err = push_over(&app, expired.client(&hq_ca), 3)
        .await
        .unwrap_err();
    // Refused at the TLS layer: the store's alert (`received fatal alert: …`) when it
    // is read before the connection resets, else the broken connection.
    assert!(
        matches!(err, PushError::Rpc { .. } | PushError::Connect { .. }),
        "expired client certificate: {err}"
    );
    eprintln!("expired client certificate: {err}");
    // HQ's CA signs the units too: another unit's certificate (the store's own device
    // certificate here) and a certificate naming another client are from the right CA
    // but do not name HQ (`sync.hq_client_names`, default "hq"), so they cannot push.
    for (what, leaf) in [
        ("a unit's certificate", &device),
        (
            "a certificate for another name",
            &hq_ca.issue(&["hq-pusher.test"], Validity::Current),
        ),
    ] {
        let limit = std::time::Duration::from_secs(20);
        let err = tokio::time::timeout(limit, push_over(&app, leaf.client(&hq_ca), 3))
            .await
            .unwrap_or_else(|_| panic!("{what}: the refused push did not end"))
            .unwrap_err();
        assert!(
            matches!(err, PushError::Rpc { .. } | PushError::Connect { .. }),
            "{what}: {err}"
        );
        let status =
            tokio::time::timeout(limit, store_status(&app.grpc, Some(&leaf.client(&hq_ca))))
                .await
                .unwrap_or_else(|_| panic!("{what}: the refused status call did not end"));
        assert!(status.is_err(), "{what} read the status");
    }
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in outpost_security::tls::parse_certs("HQ CA", hq_ca.pem.as_bytes()).unwrap() {
            roots.add(c).unwrap();
        }
        roots
    })
    .with_no_client_auth();
    let err = push_over(&app, Arc::new(anonymous.clone()), 3)
        .await
        .unwrap_err();
    // Refused at the TLS layer: the store's alert (`received fatal alert: …`) when it
    // is read before the connection resets, else the broken connection.
    assert!(
        matches!(err, PushError::Rpc { .. } | PushError::Connect { .. }),
        "no client certificate: {err}"
    );
    eprintln!("no client certificate: {err}");
    // Plaintext to the TLS port gets nowhere either.
    let plain = app.grpc.replacen("https://", "http://", 1);
    let plain_result = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut c = StoreServiceClient::connect(plain).await?;
        c.get_status(outpost_proto::hq::GetStatusRequest {})
            .await
            .map_err(Box::<dyn std::error::Error + Send + Sync>::from)
    })
    .await
    .expect("a plaintext call ends");
    assert!(plain_result.is_err(), "plaintext reached the gRPC port");
    // A direct handshake without a client certificate is refused too (TLS 1.3: the
    // store's alert arrives on the first read).
    let channel = tonic::transport::Endpoint::from_shared(app.grpc.clone())
        .unwrap()
        .connect_with_connector(TlsConnector::new(&anonymous))
        .await;
    if let Ok(channel) = channel {
        let r = StoreServiceClient::new(channel)
            .get_status(outpost_proto::hq::GetStatusRequest {})
            .await;
        assert!(r.is_err(), "a client without a certificate got an answer");
    }
    let status = store_status(&app.grpc, Some(&pusher.client(&hq_ca)))
        .await
        .unwrap();
    assert_eq!(
        status.catalog_version, 1,
        "a refused push changed the catalog"
    );
    let (_, p) = app.get_json("/api/v1/products/T4").await;
    assert_eq!(p["price"], 104, "{p}");

    app.stop().await;
    hq.shutdown().await.unwrap();
}

/// A store pinning `hq_ca`, with `device` (issued by `device_ca`), dials an HQ
/// presenting `hq_leaf` (HQ accepts devices from `hq_ca`), and the link must fail:
/// nothing delivered, the reason in the sync status, the store still selling. Returns
/// that reason and how many handshakes HQ refused.
async fn refused_link(hq_ca: &Ca, hq_leaf: &Leaf, device_ca: &Ca, device: &Leaf) -> (String, u64) {
    let files = tempfile::tempdir().unwrap();
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = start_hq(hq_dir.path(), hq_leaf, hq_ca).await;
    // The store's gRPC port accepts HQ's clients from the CA it pins (hq_ca); the
    // pusher trusts whichever CA issued the store's certificate.
    let files_path = files.path();
    let store_dir = tempfile::tempdir().unwrap();
    let mut s = settings(store_dir.path(), Some(hq.url()));
    let (cert, key) = device.write(files_path, "device");
    s.tls.cert = Some(cert);
    s.tls.key = Some(key);
    s.sync.hq_ca = Some(hq_ca.write(files_path, "hq-ca"));
    let app = spawn_with(s).await;
    let pusher = hq_ca.issue(&["hq"], Validity::Current);
    push_over(&app, pusher.client(device_ca), 2).await.unwrap();
    sell(&app.base, "T2", 1, 1, "refused").await;
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = sync_status(&app).await;
        if last["last_error"].is_string() && last["sessions"].as_u64() >= Some(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let error = last["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error visible: {last}"))
        .to_owned();
    eprintln!("sync status: {last}");
    assert_eq!(last["connected"], false, "{last}");
    assert_eq!(last["outbox_pending"], 2, "{last}");
    assert!(last["sessions"].as_u64().unwrap() >= 2, "retries: {last}");
    assert!(hq.received("unit-1").is_empty());
    assert_eq!(hq.stats().connections, 0, "{:?}", hq.stats());
    // The store keeps selling while the uplink retries with backoff.
    sell(&app.base, "T2", 1, 1, "still-selling").await;
    assert_eq!(outbox_pending(&app.base).await, 4);
    let refused = hq.tls_refused();
    app.stop().await;
    hq.shutdown().await.unwrap();
    (error, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_an_expired_hq_certificate() {
    let hq_ca = Ca::new("HQ CA");
    let (error, _) = refused_link(
        &hq_ca,
        &hq_ca.issue(&[HOST], Validity::Expired),
        &hq_ca,
        &hq_ca.issue(&[HOST], Validity::Current),
    )
    .await;
    assert!(error.to_lowercase().contains("expired"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_an_hq_certificate_from_another_ca() {
    let hq_ca = Ca::new("HQ CA");
    let rogue = Ca::new("Rogue CA");
    let (error, _) = refused_link(
        &hq_ca,
        &rogue.issue(&[HOST], Validity::Current),
        &hq_ca,
        &hq_ca.issue(&[HOST], Validity::Current),
    )
    .await;
    let lower = error.to_lowercase();
    assert!(
        lower.contains("unknownissuer") || lower.contains("unknown issuer"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_an_hq_certificate_for_another_name() {
    let hq_ca = Ca::new("HQ CA");
    let (error, _) = refused_link(
        &hq_ca,
        &hq_ca.issue(&["hq.example.invalid"], Validity::Current),
        &hq_ca,
        &hq_ca.issue(&[HOST], Validity::Current),
    )
    .await;
    assert!(
        error.to_lowercase().contains("not valid for name"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_refuses_a_device_certificate_from_another_ca() {
    let hq_ca = Ca::new("HQ CA");
    let rogue = Ca::new("Rogue CA");
    let (error, refused) = refused_link(
        &hq_ca,
        &hq_ca.issue(&[HOST], Validity::Current),
        &rogue,
        &rogue.issue(&[HOST], Validity::Current),
    )
    .await;
    assert!(refused >= 1, "HQ refused no handshake");
    // HQ's alert names the reason (`received fatal alert: UnknownCA`) when the store
    // reads it before the connection resets; either way the TLS connection broke.
    assert!(
        error.contains("received fatal alert") || error.contains("transport error"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_with_a_clear_error() {
    let files = tempfile::tempdir().unwrap();
    let hq_ca = Ca::new("HQ CA");
    let device = hq_ca.issue(&[HOST], Validity::Current);
    let other = hq_ca.issue(&[HOST], Validity::Current);
    let (cert, key) = device.write(files.path(), "device");
    let ca_path = hq_ca.write(files.path(), "hq-ca");
    let garbage = files.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let (_, other_key) = other.write(files.path(), "other");
    let loose_key = files.path().join("loose-key.pem");
    std::fs::write(&loose_key, &device.key_pem).unwrap();
    std::fs::set_permissions(
        &loose_key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .unwrap();
    type Breakage<'a> = Box<dyn Fn(&mut outpost_server::config::Settings) + 'a>;
    let cases: Vec<(&str, Breakage<'_>, &str)> = vec![
        (
            "missing HQ CA",
            Box::new(|s| s.sync.hq_ca = Some("/nonexistent/hq-ca.pem".into())),
            "cannot read HQ's CA certificate",
        ),
        (
            "HQ CA not PEM",
            Box::new(|s| s.sync.hq_ca = Some(garbage.clone())),
            "contains no certificate",
        ),
        (
            "key of another certificate",
            Box::new(|s| s.tls.key = Some(other_key.clone())),
            "TLS configuration refused",
        ),
        (
            "key readable by others",
            Box::new(|s| s.tls.key = Some(loose_key.clone())),
            "loose-key.pem",
        ),
    ];
    for (what, breakit, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), Some("https://127.0.0.1:1".into()));
        s.tls.cert = Some(cert.clone());
        s.tls.key = Some(key.clone());
        s.sync.hq_ca = Some(ca_path.clone());
        breakit(&mut s);
        let err = outpost_server::startup::Application::build(s, Default::default())
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: the app started"));
        let err = format!("{err:#}");
        assert!(err.contains(expected), "{what}: {err}");
    }
}
