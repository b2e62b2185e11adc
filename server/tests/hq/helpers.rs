//! An app with its gRPC port on 127.0.0.1:0, and a client of its StoreService that
//! authenticates as a store admin (the port has no mutual TLS here, so pushes need it).

use std::sync::Arc;

use outpost_mocks::MockTerminal;
use outpost_mocks::hq::StoreClient;
use outpost_mocks::hq::auth::Authorizer;
use outpost_mocks::hq::{Faults, MockHq, MockHqHandle};
use outpost_proto::hq;
use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_server::config::Settings;
use outpost_server::devices::InjectedDevices;
use outpost_server::startup::Application;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct HqTestApp {
    pub base: String,
    pub grpc: String,
    pub http: reqwest::Client,
    #[allow(dead_code)]
    pub dir: std::path::PathBuf,
    /// The unit's device registry (to raise device events in tests).
    #[allow(dead_code)]
    pub devices: Arc<outpost_server::devices::Registry>,
    /// The unit's credentials and sessions (to open sessions of other roles).
    #[allow(dead_code)]
    pub security: Arc<outpost_server::access::Access>,
    /// The session of the "tester" account (every staff role, admin included), which
    /// [`HqTestApp::client`] sends as `authorization: Bearer`.
    pub session: String,
    /// The unit's store (to drive the server's own services in tests).
    #[allow(dead_code)]
    pub store: Arc<outpost_server::store::Store>,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn settings(dir: &std::path::Path, hq_url: Option<String>) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    s.http.workers = 2;
    s.http.shutdown_timeout_secs = 1;
    s.sync.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    s.sync.hq_url = hq_url;
    s.sync.backoff_min_ms = 20;
    s.sync.backoff_max_secs = 1;
    s.sync.ack_timeout_secs = 5;
    s.security.allow_software = true;
    s.security.password_hashing = "fast".into();
    s
}

/// Enrols the unit of `s` (at its first start) with a bundle HQ signs with `keys`: the
/// unlock policy `unlock`, `grace_secs` of offline grace.
#[allow(dead_code)]
pub fn enroll(
    s: &mut Settings,
    keys: &outpost_mocks::hq::escrow::HqKeys,
    unlock: outpost_security::enroll::SecondFactors,
    grace_secs: u64,
) {
    let bundle = keys
        .enrollment(
            &s.store.id,
            &s.sync.unit_id,
            unlock,
            outpost_security::enroll::LeasePolicy {
                offline_grace_secs: grace_secs,
                ..Default::default()
            },
        )
        .unwrap();
    std::fs::create_dir_all(&s.data_dir).unwrap();
    let path = s.data_dir.join("hq-bundle.json");
    std::fs::write(&path, bundle).unwrap();
    s.security.enrollment = Some(path);
}

/// Enrols the unit of `s` (at its first start) with a bundle `hq` signs: its TPM alone
/// releases its key (no lock reached the TPM yet, so a first lease needs no HQ), HQ's
/// escrow keys are throwaway ones.
#[allow(dead_code)]
pub fn enroll_signed(s: &mut Settings, hq: &outpost_security::lease::HqSigner) {
    use outpost_security::enroll::{Enrollment, LeasePolicy, SecondFactors, to_hex};
    use outpost_security::escrow::EscrowSecret;
    let bundle = Enrollment {
        store_id: s.store.id.clone(),
        unit_id: s.sync.unit_id.clone(),
        hq_public_key: to_hex(hq.verifying_key().as_bytes()),
        escrow_share_key: None,
        escrow_recovery_key: Some(EscrowSecret::generate().public().to_hex()),
        lease: LeasePolicy::default(),
        unlock: SecondFactors::default(),
        issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    }
    .sign(hq)
    .unwrap();
    std::fs::create_dir_all(&s.data_dir).unwrap();
    let path = s.data_dir.join("hq-bundle.json");
    std::fs::write(&path, bundle).unwrap();
    s.security.enrollment = Some(path);
}

/// The session cookie of each running test app, by base URL, so helpers that only get
/// the base URL can authenticate.
static COOKIES: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Logs in at the app at `base` (a separate process) and remembers the session for
/// [`authed`].
pub async fn log_in(base: &str, username: &str, password: &str) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    COOKIES.lock().unwrap().push((base.to_owned(), cookie));
}

/// A client authenticated as a staff member holding every staff role, for the app at
/// `base`.
pub fn authed(base: &str) -> reqwest::Client {
    let cookie = COOKIES
        .lock()
        .unwrap()
        .iter()
        .find(|(b, _)| b == base)
        .map(|(_, c)| c.clone())
        .expect("an app spawned by these helpers");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::COOKIE,
        reqwest::header::HeaderValue::from_str(&cookie).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn spawn(hq_url: Option<String>) -> HqTestApp {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = spawn_at(tmp.path(), hq_url).await;
    app._tmp = Some(tmp);
    app
}

pub async fn spawn_at(dir: &std::path::Path, hq_url: Option<String>) -> HqTestApp {
    spawn_with(settings(dir, hq_url)).await
}

pub async fn spawn_with(s: Settings) -> HqTestApp {
    spawn_with_terminal(s, MockTerminal::new()).await
}

/// As [`spawn_with`], with `terminal` as the payment terminal.
pub async fn spawn_with_terminal(s: Settings, terminal: MockTerminal) -> HqTestApp {
    let dir = s.data_dir.clone();
    let grpc_scheme = if s.hq_mtls() { "https" } else { "http" };
    let app = Application::build(
        s,
        InjectedDevices {
            terminal: Some(Arc::new(terminal)),
        },
    )
    .await
    .expect("app builds");
    let base = app.base_url();
    let session = app
        .security()
        .start_session(outpost_security::auth::roles::Principal {
            name: "tester".into(),
            roles: vec![
                outpost_security::auth::roles::Role::Supervisor,
                outpost_security::auth::roles::Role::Technician,
                outpost_security::auth::roles::Role::Admin,
            ],
        });
    COOKIES.lock().unwrap().push((
        base.clone(),
        format!("{}={session}", outpost_server::access::SESSION_COOKIE),
    ));
    let devices = app.devices().clone();
    let security = app.security().clone();
    let store = app.sales().store().clone();
    let grpc = format!(
        "{grpc_scheme}://{}",
        app.grpc_addr().expect("grpc configured")
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let http = authed(&base);
    HqTestApp {
        base,
        grpc,
        http,
        dir,
        devices,
        security,
        session,
        store,
        _tmp: None,
        stop: Some(stop),
        task: Some(task),
    }
}

impl HqTestApp {
    /// A StoreService client that sends the admin session with every call.
    pub async fn client(&self) -> StoreClient {
        let channel = Channel::from_shared(self.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        StoreServiceClient::with_interceptor(
            channel,
            Authorizer::admin_session(&self.session).unwrap(),
        )
        .max_encoding_message_size(64 * 1024 * 1024)
    }

    /// `request` with the admin session, for calls made without [`HqTestApp::client`].
    #[allow(dead_code)]
    pub fn authorize<T>(&self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.session).parse().unwrap(),
        );
        request
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

pub fn product(i: u64, price: i64) -> hq::Product {
    hq::Product {
        sku: format!("P{i:07}"),
        barcodes: vec![gtin13(2_900_000_000_000 / 10 + i)],
        name: format!("Product {i}"),
        description: String::new(),
        category: if i.is_multiple_of(2) { "even" } else { "odd" }.into(),
        price_minor: price,
        currency: "EUR".into(),
        tax_class: "standard".into(),
        sold_by: hq::SoldBy::Each as i32,
        active: true,
        age_restricted: false,
    }
}

/// A valid GTIN-13 from 12 digits.
pub fn gtin13(body: u64) -> String {
    let digits = format!("{body:012}");
    let sum: u32 = digits
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i.is_multiple_of(2) { 1 } else { 3 })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

pub fn header(
    id: &str,
    kind: hq::CatalogPushKind,
    version: u64,
    base: u64,
    total: u64,
    removals: u64,
) -> hq::CatalogPushHeader {
    hq::CatalogPushHeader {
        push_id: id.into(),
        kind: kind as i32,
        version,
        base_version: base,
        total_products: total,
        total_removals: removals,
    }
}

/// Chunks of `per` products, header on the first, `last` on the final one.
pub fn chunks(
    h: hq::CatalogPushHeader,
    products: Vec<hq::Product>,
    per: usize,
    removed: Vec<String>,
) -> Vec<hq::CatalogChunk> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    let n = products.len();
    let mut it = products.into_iter().peekable();
    loop {
        let batch: Vec<_> = it.by_ref().take(per).collect();
        let last = it.peek().is_none();
        out.push(hq::CatalogChunk {
            header: if offset == 0 { Some(h.clone()) } else { None },
            offset,
            products: batch,
            removed_skus: if last { removed.clone() } else { vec![] },
            last,
        });
        offset += per as u64;
        if last {
            break;
        }
    }
    let _ = n;
    out
}

pub async fn push(
    client: &mut StoreClient,
    chunks: Vec<hq::CatalogChunk>,
) -> Result<hq::PushCatalogReply, tonic::Status> {
    client
        .push_catalog(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}

/// Push a snapshot of `n` products (`P0000000`.., price 100 + i) as `version`.
pub async fn snapshot(app: &HqTestApp, version: u64, n: u64) {
    let mut c = app.client().await;
    let products = (0..n).map(|i| product(i, 100 + i as i64)).collect();
    let reply = push(
        &mut c,
        chunks(
            header(
                &format!("s{version}"),
                hq::CatalogPushKind::Snapshot,
                version,
                0,
                n,
                0,
            ),
            products,
            7,
            vec![],
        ),
    )
    .await
    .unwrap();
    assert_eq!((reply.version, reply.products), (version, n));
}

/// Sell `n` cash sales of one `sku` through the REST API, `concurrency` at a time;
/// returns the sale ids the store acknowledged.
pub async fn sell(
    base: &str,
    sku: &str,
    n: usize,
    concurrency: usize,
    key_prefix: &str,
) -> Vec<String> {
    use futures::StreamExt as _;
    let client = authed(base);
    let ids: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{base}/api/v1/checkout");
            let body = serde_json::json!({"lines":[{"sku": sku, "quantity": 1}],"payment":{"method":"cash","tendered":100000}});
            let key = format!("{key_prefix}-{i}");
            async move {
                // A terminal whose connection drops mid-request retries with the
                // same key: the store answers the first sale again, never a second.
                let mut tries = 0;
                let r = loop {
                    match client
                        .post(&url)
                        .header("Idempotency-Key", &key)
                        .json(&body)
                        .send()
                        .await
                    {
                        // 408: the server gave up waiting for the request (a loaded
                        // machine); nothing was processed, so the terminal resends.
                        Ok(r) if r.status().as_u16() == 408 && tries < 3 => {
                            tries += 1;
                            eprintln!("checkout {key}: 408; retrying with the same key");
                        }
                        Ok(r) => break r,
                        Err(e) if tries < 3 => {
                            tries += 1;
                            eprintln!("checkout {key}: {e}; retrying with the same key");
                        }
                        Err(e) => panic!("checkout {key}: {e}"),
                    }
                };
                assert_eq!(r.status().as_u16(), 201);
                let v: serde_json::Value = r.json().await.unwrap();
                v["sale_id"].as_str().unwrap().to_owned()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    ids
}

/// Poll `f` every 50 ms until it is true, for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// The outbox backlog the store reports.
pub async fn outbox_pending(base: &str) -> u64 {
    let v: serde_json::Value = authed(base)
        .get(format!("{base}/api/v1/sync/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["outbox_pending"].as_u64().unwrap()
}

/// Entries of one event kind (`device_event`, `alert`, `telemetry`, `audit_head`)
/// waiting for HQ, as the store reports them.
pub async fn events_pending(base: &str, kind: &str) -> u64 {
    let v: serde_json::Value = authed(base)
        .get(format!("{base}/api/v1/sync/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["events_pending"][kind].as_u64().unwrap()
}

/// A mock HQ on loopback with its data in `dir`, no faults.
#[allow(dead_code)]
pub async fn mock_hq(dir: &std::path::Path) -> MockHqHandle {
    MockHq::start("127.0.0.1:0".parse().unwrap(), dir, Faults::none())
        .await
        .expect("mock HQ starts")
}
