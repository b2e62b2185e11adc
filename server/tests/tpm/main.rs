//! The server with `[security] sealer = "tpm"` on real software TPMs (swtpm), one or two
//! per test, started on loopback by `outpost_security::testing::Swtpm`. Needs
//! `--features tpm` (libtss2) and swtpm; run by `.ci/run`:
//! `TSS2_LOG=all+none cargo test -p outpost-server --features tpm --locked --test tpm`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use outpost_security::auth::roles::{Principal, Role};
use outpost_security::testing::{Swtpm, contains};
use outpost_server::access::{AccessError, SESSION_COOKIE};
use outpost_server::config::{Flags, Settings};
use outpost_server::devices::InjectedDevices;
use outpost_server::domain::product::parse_product_json;
use outpost_server::startup::Application;
use outpost_server::store::{ImportMode, StoreOptions};
use serde_json::{Value, json};
use tokio::sync::oneshot;

mod bench;
mod enrol_mesh;
mod enrol_token;
#[path = "../cli/login_storm.rs"]
mod login_storm;
mod purge;
mod theft;

const MILK: &str = r#"{"sku":"MILK","barcodes":["4006381333931"],"name":"Whole Milk 1 L","category":"dairy","price":129,"currency":"EUR","tax_class":"reduced"}"#;

/// Settings of a test server sealed to `tpm`: port 0, the default PCR selection
/// (PCR 7), and the software sealer NOT allowed, as in production.
fn tpm_settings(dir: &Path, tpm: &Swtpm) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_owned(),
        ..Settings::default()
    };
    s.store.name = "TPM Test Store".into();
    s.http.workers = 1;
    s.http.shutdown_timeout_secs = 1;
    s.security.password_hashing = "fast".into();
    s.security.sealer = "tpm".into();
    s.security.tcti = tpm.tcti();
    assert!(!s.security.allow_software);
    s.validate().unwrap();
    s
}

/// A server running on its data dir, with a staff session that may sell.
struct Running {
    base: String,
    /// The gRPC port's URL, when the settings open one.
    grpc: Option<String>,
    /// The admin session the client sends (also as the gRPC bearer).
    session: String,
    store: std::sync::Arc<outpost_server::store::Store>,
    security: std::sync::Arc<outpost_server::access::Access>,
    client: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(settings: Settings, seed: bool) -> Running {
        let app = Application::build(settings, InjectedDevices::default())
            .await
            .expect("app builds");
        let running = Running::serve(app);
        if seed {
            running.seed_milk();
        }
        running
    }

    /// Serves a built app, with a staff session that may sell.
    fn serve(app: Application) -> Running {
        let store = app.sales().store().clone();
        let security = app.security().clone();
        let session = app.security().start_session(Principal {
            name: "tester".into(),
            roles: vec![Role::Supervisor, Role::Technician, Role::Admin],
        });
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::COOKIE,
            format!("{SESSION_COOKIE}={session}").parse().unwrap(),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        let base = app.base_url();
        let grpc = app.grpc_addr().map(|a| format!("http://{a}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async move {
            let _ = stopped.await;
        }));
        Running {
            base,
            grpc,
            session,
            store,
            security,
            client,
            stop,
            task,
        }
    }

    /// Puts the milk on sale (a catalog of one product).
    fn seed_milk(&self) {
        let mut import = self
            .store
            .begin_catalog_import(ImportMode::Replace)
            .unwrap();
        import
            .add(&parse_product_json(MILK.as_bytes()).unwrap(), 1)
            .unwrap()
            .unwrap();
        import.finish("tpm-test-1").unwrap();
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Sells two milks for cash; returns the sale id.
    async fn sell(&self, key: &str) -> String {
        let r = self
            .client
            .post(format!("{}/api/v1/checkout", self.base))
            .header("Idempotency-Key", key)
            .json(&json!({"lines":[{"sku":"MILK","quantity":2}],
                          "payment":{"method":"cash","tendered":1000}}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["total"], 258, "{v}");
        v["sale_id"].as_str().unwrap().to_owned()
    }

    /// Stops the server and waits until it has released its data dir.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Every file under `dir` with its bytes: what a failed start must leave untouched.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    outpost_security::testing::files(dir)
}

/// Copies a stopped server's data dir, modes included (the sealed key must stay 0600).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The full error chain of a failed start (what `outpost serve` prints).
async fn start_error(settings: Settings) -> String {
    match Application::build(settings, InjectedDevices::default()).await {
        Ok(_) => panic!("the server started"),
        Err(e) => format!("{e:#}"),
    }
}

/// A data dir with one sale, sealed on `tpm`, server stopped; returns the sale id.
async fn sold_on(dir: &Path, tpm: &Swtpm) -> String {
    let app = Running::start(tpm_settings(dir, tpm), true).await;
    let id = app.sell("tpm-sale-1").await;
    app.stop().await;
    id
}

/// With the feature, the TPM settings are checked before any TPM is contacted.
#[test]
fn tpm_settings_are_checked_without_a_tpm() {
    let load = |pairs: &[(&str, &str)]| {
        let env = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string()));
        Settings::load(None, env, &Flags::default())
    };
    let s = load(&[("OUTPOST_SEALER", "tpm")]).unwrap();
    assert_eq!(s.security.tpm_config().pcrs, vec![7]);
    assert_eq!(s.security.tpm_config().tcti, "device:/dev/tpmrm0");
    for (pcrs, why) in [
        ("24", "does not exist"),
        ("7,7", "twice"),
        ("0,1,2,3,4,5,6,7,8", "between 1 and 8"),
    ] {
        let err = load(&[("OUTPOST_SEALER", "tpm"), ("OUTPOST_TPM_PCRS", pcrs)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("security.pcrs") && err.contains(why),
            "{pcrs}: {err}"
        );
    }
    let err = load(&[("OUTPOST_SEALER", "tpm"), ("OUTPOST_TPM_TCTI", "nonsense")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("security.tcti") && err.contains("nonsense"),
        "{err}"
    );
}

#[tokio::test]
async fn a_restart_on_the_same_tpm_reads_its_sales() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let id = sold_on(dir.path(), &tpm).await;

    let blob = std::fs::read(dir.path().join("sealed-key")).unwrap();
    assert_eq!(&blob[..6], b"OPSEAL");
    assert_eq!(blob[7], 2, "the sealed key is a TPM blob");
    assert!(
        !dir.path().join("software-kek").exists(),
        "the TPM sealer keeps no key on the disk"
    );

    let app = Running::start(tpm_settings(dir.path(), &tpm), false).await;
    let (status, sale) = app.get(&format!("/api/v1/sales/{id}")).await;
    assert_eq!(status, 200, "{sale}");
    assert_eq!(sale["total"], 258, "{sale}");
    assert_eq!(sale["lines"][0]["name"], "Whole Milk 1 L", "{sale}");
    // Still selling after the restart.
    app.sell("tpm-sale-2").await;
    app.stop().await;
}

#[tokio::test]
async fn a_copy_of_the_data_dir_on_another_tpm_refuses_to_start_and_changes_nothing() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let id = sold_on(dir.path(), &a).await;
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    let before = snapshot(copy.path());

    let err = start_error(tpm_settings(copy.path(), &b)).await;
    assert!(
        err.contains("belongs to another TPM or another boot state")
            && err.contains(&copy.path().display().to_string())
            && err.contains(&b.tcti())
            && err.contains("Nothing in the data dir was changed"),
        "{err}"
    );
    // The library path the CLI commands use refuses the same way.
    let settings = tpm_settings(copy.path(), &b);
    match outpost_server::access::open_data_dir(&settings, &StoreOptions::default()) {
        Err(AccessError::ForeignTpm(f)) => assert_eq!(f.pcrs, vec![7]),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("the copy opened on another TPM"),
    }
    assert_eq!(
        snapshot(copy.path()),
        before,
        "a refused start changes nothing in the data dir"
    );
    // Nothing in it is readable without TPM A.
    for bytes in before.values() {
        for needle in ["Whole Milk", "TPM Test Store", "dairy", &id] {
            assert!(!contains(bytes, needle), "{needle} readable in the copy");
        }
    }
    // The copy itself is intact: on TPM A it starts and reads its sale.
    let app = Running::start(tpm_settings(copy.path(), &a), false).await;
    let (status, sale) = app.get(&format!("/api/v1/sales/{id}")).await;
    assert_eq!((status, &sale["total"]), (200, &json!(258)), "{sale}");
    app.stop().await;
}

#[tokio::test]
async fn a_pcr_extend_after_sealing_makes_the_next_start_refuse() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    sold_on(dir.path(), &tpm).await;
    // A PCR outside the sealed selection (default: PCR 7) does not matter.
    tpm.extend_pcr(10);
    Running::start(tpm_settings(dir.path(), &tpm), false)
        .await
        .stop()
        .await;

    tpm.extend_pcr(7);
    let before = snapshot(dir.path());
    let err = start_error(tpm_settings(dir.path(), &tpm)).await;
    assert!(
        err.contains("belongs to another TPM or another boot state")
            && err.contains("PCRs [7]")
            && err.contains("PCR values differ"),
        "{err}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn an_unreachable_tpm_names_the_tcti_and_creates_no_key() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    s.security.sealer = "tpm".into();
    s.security.tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let err = start_error(s).await;
    assert!(
        err.contains("cannot be reached") && err.contains(&format!("port={port}")),
        "{err}"
    );
    assert!(snapshot(dir.path()).is_empty(), "no key, no store: {err}");
}

#[tokio::test]
async fn a_tpm_data_dir_started_with_the_software_sealer_is_refused_before_it_writes() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    sold_on(dir.path(), &tpm).await;
    let before = snapshot(dir.path());
    let mut s = tpm_settings(dir.path(), &tpm);
    s.security.sealer = "software".into();
    s.security.allow_software = true;
    let err = start_error(s).await;
    assert!(
        err.contains("made by the tpm sealer, but the software sealer is configured"),
        "{err}"
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "no software key file was made"
    );
}

/// The CLI commands (`import`, `export`, `terminals`, `users`) open the data dir through
/// the same sealer; with the TPM they need no `OUTPOST_ALLOW_SOFTWARE_SEALER`.
#[test]
fn the_cli_imports_and_exports_through_the_tpm_sealer() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("c.jsonl");
    std::fs::write(&file, format!("{MILK}\n")).unwrap();
    let outpost = |args: &[&str], pcrs: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("OUTPOST_ALLOW_SOFTWARE_SEALER")
            .env("OUTPOST_SEALER", "tpm")
            .env("OUTPOST_TPM_TCTI", tpm.tcti())
            .env("OUTPOST_TPM_PCRS", pcrs)
            .output()
            .unwrap()
    };
    let out = outpost(&["import", "catalog", file.to_str().unwrap()], "7,16");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = outpost(&["export", "catalog", "-"], "7,16");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Whole Milk 1 L"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sealed to PCRs 7 and 16: extending 16 locks the CLI out too. The error names
    // the PCRs of the sealed key, not the setting (which only applies to new keys).
    tpm.extend_pcr(16);
    let out = outpost(&["export", "catalog", "-"], "7");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("another boot state") && err.contains("PCRs [7, 16]"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Whole Milk"));
}
