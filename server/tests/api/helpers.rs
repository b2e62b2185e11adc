//! Shared test fixtures: an app on port 0 with its own data dir and a scripted terminal.

use std::sync::Arc;

use outpost_mocks::MockTerminal;
use outpost_security::auth::roles::{Principal, Role};
use outpost_server::access::{Access, SESSION_COOKIE};
use outpost_server::config::Settings;
use outpost_server::devices::InjectedDevices;
use outpost_server::domain::product::parse_product_json;
use outpost_server::domain::promotion::Promotion;
use outpost_server::startup::Application;
use outpost_server::store::ImportMode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Products of the test store (prices in EUR cents, tax-inclusive, 19 % / 7 %).
pub const PRODUCTS: &[&str] = &[
    r#"{"sku":"MILK","barcodes":["4006381333931"],"name":"Whole Milk 1 L","category":"dairy","price":129,"currency":"EUR","tax_class":"reduced"}"#,
    r#"{"sku":"BREAD","barcodes":["96385074"],"name":"Rye Bread 500 g","category":"bakery","price":250,"currency":"EUR","tax_class":"reduced"}"#,
    r#"{"sku":"BEER","barcodes":["036000291452"],"name":"Pilsner Beer 0.5 L","category":"beer_wine","price":199,"currency":"EUR","tax_class":"standard","age_restricted":true}"#,
    r#"{"sku":"APPLES","barcodes":["2100349000001"],"name":"Gala Apples","category":"produce","price":349,"currency":"EUR","tax_class":"reduced","sold_by":"weight"}"#,
    r#"{"sku":"SOAP","barcodes":["4006381333955"],"name":"Lavender Soap","category":"household","price":399,"currency":"EUR","tax_class":"standard"}"#,
    r#"{"sku":"SHAKE","name":"Milk Milkshake Vanilla","category":"dairy","price":179,"currency":"EUR","tax_class":"reduced"}"#,
    r#"{"sku":"OLD","name":"Discontinued Thing","category":"household","price":100,"currency":"EUR","tax_class":"standard","active":false}"#,
];

/// A running test app.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub terminal: MockTerminal,
    /// The app's credentials (tests add terminals, users and sessions through it).
    pub security: Arc<Access>,
    /// The app's device registry (its simulators and mocks).
    pub devices: Arc<outpost_server::devices::Registry>,
    /// The app's store (to put what HQ would push).
    #[allow(dead_code)]
    pub store: Arc<outpost_server::store::Store>,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test app: port 0, the given data dir, quick timeouts.
pub fn test_settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    s.store.name = "Test Store".into();
    s.payment.timeout_secs = 2;
    s.payment.recovery_interval_secs = 1;
    s.http.workers = 2;
    s.http.max_body_bytes = 64 * 1024;
    s.http.shutdown_timeout_secs = 1;
    s.security.allow_software = true;
    s.security.password_hashing = "fast".into();
    s
}

/// A client that sends `header: value` with every request.
pub fn client_with(header: &str, value: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::HeaderName::from_bytes(header.as_bytes()).unwrap(),
        reqwest::header::HeaderValue::from_str(value).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The session cookie of a staff session for `principal`, opened directly.
pub fn session_for(security: &Access, name: &str, roles: Vec<Role>) -> String {
    let id = security.start_session(Principal {
        name: name.into(),
        roles,
    });
    format!("{SESSION_COOKIE}={id}")
}

/// The promotions of the test store: buy 2 bread get 1 free; 10 % off household.
pub fn test_promotions() -> Vec<Promotion> {
    serde_json::from_value(json!([
        {"id":"bread-3for2","name":"Bread 3 for 2","kind":{"type":"buy_x_get_y","buy":2,"get":1},
         "target":{"skus":["BREAD"]},"starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"},
        {"id":"household-10","name":"Household 10% off","kind":{"type":"percent_off","percent_bp":1000},
         "target":{"categories":["household"]},"starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"}
    ]))
    .unwrap()
}

/// Start an app on a fresh data dir with the test catalog.
pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let mut app = spawn_app_at(&path, MockTerminal::new(), true).await;
    app._dir = Some(dir);
    app
}

/// Start an app on `dir` with `terminal`; seed the test catalog when `seed`.
pub async fn spawn_app_at(dir: &std::path::Path, terminal: MockTerminal, seed: bool) -> TestApp {
    spawn_configured(test_settings(dir), Some(terminal), seed).await
}

/// Put the test catalog and promotions in `store`.
pub fn seed_store(store: &std::sync::Arc<outpost_server::store::Store>) {
    let mut import = store.begin_catalog_import(ImportMode::Replace).unwrap();
    for (i, p) in PRODUCTS.iter().enumerate() {
        import
            .add(&parse_product_json(p.as_bytes()).unwrap(), i as u64 + 1)
            .unwrap()
            .unwrap();
    }
    import.finish("test-1").unwrap();
    store.replace_promotions(test_promotions()).unwrap();
}

/// Start an app with `settings`; the mock `terminal` replaces any configured payment
/// device when given. Seeds the test catalog when `seed`.
pub async fn spawn_configured(
    settings: Settings,
    terminal: Option<MockTerminal>,
    seed: bool,
) -> TestApp {
    let app = Application::build(
        settings,
        InjectedDevices {
            terminal: terminal
                .clone()
                .map(|t| Arc::new(t) as Arc<dyn outpost_peripherals::payment::PaymentTerminal>),
        },
    )
    .await
    .expect("app builds");
    let terminal = terminal.unwrap_or_default();
    if seed {
        seed_store(app.sales().store());
    }
    let base = app.base_url();
    let security = app.security().clone();
    // Existing tests act as one staff member holding every staff role (which together
    // grant every permission); the role matrix test covers each role on its own.
    let cookie = session_for(
        &security,
        "tester",
        vec![Role::Supervisor, Role::Technician, Role::Admin],
    );
    let devices = app.devices().clone();
    let store = app.sales().store().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        client: client_with("cookie", &cookie),
        terminal,
        security,
        devices,
        store,
        _dir: None,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    /// Stop the app and wait until its data dir is released; keeps the temp dir.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self._dir.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, r.json().await.unwrap_or(Value::Null), headers)
    }

    pub async fn checkout(
        &self,
        key: &str,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.post("/api/v1/checkout", Some(key), body).await
    }

    pub async fn stock(&self, sku: &str) -> i64 {
        let (s, v) = self.get(&format!("/api/v1/inventory/{sku}")).await;
        assert_eq!(s, 200, "{v}");
        v["stock"].as_i64().unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// `outpost terminals add NAME --config CONFIG`: the printed token.
pub fn cli_terminal_token(config: &std::path::Path, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["terminals", "add", name, "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The whole audit log as `client` (an admin) reads it, checked to verify, and its
/// (actor, action) pairs in order.
pub async fn audit_page(app: &TestApp, client: &reqwest::Client) -> (Value, Vec<(String, String)>) {
    let r = client
        .get(app.url("/api/v1/audit?limit=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["verified"], true, "{page}");
    let actions = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (page, actions)
}

/// The secret the test unit shares with its wallet provider (`spawn_with_wallet`).
pub const WALLET_SECRET: &str = "3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

/// An app with the test catalog whose QR payments go through a wallet provider on
/// loopback (`[payment.qr]`), every paid basket drawn for the exit audit. The temp
/// dir holds the data dir and the shared secret.
pub async fn spawn_with_wallet() -> (
    TestApp,
    outpost_mocks::wallet::WalletProvider,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let wallet = outpost_mocks::wallet::WalletProvider::start(WALLET_SECRET, "http://127.0.0.1:9/")
        .await
        .unwrap();
    let key = dir.path().join("qr.key");
    std::fs::write(&key, WALLET_SECRET).unwrap();
    let mut s = test_settings(&dir.path().join("data"));
    s.payment.qr.pay_url = Some(wallet.pay_url());
    s.payment.qr.merchant = Some("store-1".into());
    s.payment.qr.secret_file = Some(key);
    s.shopper.audit_percent = 100;
    let app = spawn_configured(s, Some(MockTerminal::new()), true).await;
    wallet.set_notify_url(&app.url("/api/v1/payments/qr/notifications"));
    (app, wallet, dir)
}

/// Loyalty as HQ would push it to the test store: 1 point per euro, a point worth one
/// cent, customer `c-1` with loyalty card `K-1` holding 1,000 points (300 of them
/// redeemable offline here), and voucher `GIFT-1` worth 5.00 €.
pub async fn seed_loyalty(store: &std::sync::Arc<outpost_server::store::Store>) {
    use outpost_server::domain::loyalty::{Customer, HqBalance, LoyaltyRules, Voucher};
    use outpost_server::loyalty::push::{self, AccountsPush};
    let rules = LoyaltyRules::parse(1, &[], &[], 1).unwrap();
    push::rules(store, 1, rules).await.unwrap();
    push::accounts(
        store,
        AccountsPush {
            version: 1,
            snapshot: true,
            customers: vec![Customer {
                id: "c-1".into(),
                cards: vec!["K-1".into()],
                tier: None,
                points: HqBalance {
                    balance: 1_000,
                    allowance: 300,
                    ..HqBalance::default()
                },
            }],
            vouchers: vec![Voucher {
                id: "v-1".into(),
                code: "GIFT-1".into(),
                balance: HqBalance {
                    balance: 500,
                    allowance: 500,
                    ..HqBalance::default()
                },
            }],
            ..AccountsPush::default()
        },
    )
    .await
    .unwrap();
}
