//! The thief's moves against an enrolled unit (issue 14), each on a real software TPM:
//! editing the config, winding the clock back, restoring an older data dir, unsealing
//! the key with tpm2-tools, and starting a unit whose second factor is out of reach.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use outpost_mocks::hq::auth::Authorizer;
use outpost_mocks::hq::escrow::HqKeys;
use outpost_mocks::hq::{Faults, MockHq, MockHqHandle};
use outpost_proto::hq;
use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_security::enroll::{LeasePolicy, SecondFactors};
use outpost_security::lease::Action;
use outpost_security::testing::{Swtpm, tpm2_tools_unseal_share};
use outpost_server::config::Settings;
use outpost_server::devices::InjectedDevices;
use outpost_server::startup::{Application, Start};
use serde_json::{Value, json};

use super::{MILK, Running, copy_dir, snapshot, start_error, tpm_settings};

/// A mock HQ in `dir`: it signs the bundle, leases and commands, and answers escrow.
pub(super) async fn mock_hq(dir: &Path) -> MockHqHandle {
    MockHq::start("127.0.0.1:0".parse().unwrap(), dir, Faults::none())
        .await
        .unwrap()
}

/// TPM settings for a unit in `dir` with a gRPC port and `hq` as its HQ, enrolled (at
/// its first start) by a bundle `hq` signs with `unlock` and `grace_secs`.
pub(super) fn enrolled(
    dir: &Path,
    tpm: &Swtpm,
    hq: &MockHqHandle,
    unlock: SecondFactors,
    grace_secs: u64,
) -> Settings {
    let mut s = tpm_settings(dir, tpm);
    s.sync.grpc_listen = Some("127.0.0.1:0".parse().unwrap());
    s.sync.hq_url = Some(hq.url());
    s.sync.backoff_min_ms = 20;
    s.sync.backoff_max_secs = 1;
    s.sync.ack_timeout_secs = 5;
    let bundle = hq
        .escrow()
        .keys()
        .enrollment(
            &s.store.id,
            &s.sync.unit_id,
            unlock,
            LeasePolicy {
                offline_grace_secs: grace_secs,
                ..LeasePolicy::default()
            },
        )
        .unwrap();
    let path = dir.with_extension("bundle.json");
    std::fs::write(&path, bundle).unwrap();
    s.security.enrollment = Some(path);
    s
}

/// Sends `kind` to the unit's StoreService as its admin.
async fn send(app: &Running, kind: hq::command::Kind) -> Result<String, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(app.grpc.clone().unwrap())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = StoreServiceClient::with_interceptor(
        channel,
        Authorizer::admin_session(&app.session).unwrap(),
    );
    client
        .send_command(hq::Command {
            command_id: format!("c{}", rand::random::<u64>()),
            kind: Some(kind),
        })
        .await
        .map(|r| r.into_inner().result)
}

fn lease(keys: &HqKeys, secs: i64) -> hq::command::Kind {
    hq::command::Kind::SignedLease(keys.lease("store-1", "unit-1", secs))
}

fn command(keys: &HqKeys, action: Action) -> hq::command::Kind {
    let counter =
        u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap();
    hq::command::Kind::SignedCommand(keys.command("store-1", "unit-1", action, counter))
}

/// Polls `GET /api/v1/security/status` until `want(status)`.
pub(super) async fn until_status(app: &Running, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = app.get("/api/v1/security/status").await;
        if want(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never reached: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An enrolled unit in `dir`, leased for `lease_secs`, with milk on sale and one sale.
pub(super) async fn leased(
    dir: &Path,
    settings: &Settings,
    keys: &HqKeys,
    lease_secs: i64,
) -> Running {
    let app = Running::start(settings.clone(), false).await;
    send(&app, lease(keys, lease_secs)).await.unwrap();
    until_status(&app, |s| s["data_key"] == "in_memory").await;
    app.seed_milk();
    app.sell(&format!("sale-{}", rand::random::<u32>())).await;
    assert!(dir.join("trust").exists());
    app
}

/// (d) A locked unit's sealed key does not open with tpm2-tools in the same boot state,
/// though the same tools open it before the lock.
#[tokio::test]
async fn a_locked_unit_does_not_unseal_with_tpm2_tools() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, keys, 3600).await;
    let key = dir.join("sealed-key");
    let share =
        tpm2_tools_unseal_share(&tpm, &key).expect("the tools open the share before a lock");
    assert_eq!(share.len(), 32);

    send(&app, command(keys, Action::Lock)).await.unwrap();
    until_status(&app, |s| s["data_key"] == "wiped").await;
    let err = tpm2_tools_unseal_share(&tpm, &key).expect_err("a locked share opened");
    assert!(!err.is_empty());
    app.stop().await;
    // Nor after a reboot of the TPM.
    let mut tpm = tpm;
    tpm.restart();
    tpm2_tools_unseal_share(&tpm, &key).expect_err("a locked share opened after a reboot");
}

/// (a) Removing the enrolment from the config (and the old `hq_public_key` line) does not
/// make an enrolled, locked unit come up "off"; deleting its trust record is refused.
#[tokio::test]
async fn editing_the_config_does_not_unlock_an_enrolled_unit() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, keys, 3600).await;
    send(&app, command(keys, Action::Lock)).await.unwrap();
    until_status(&app, |s| s["state"] == "locked" && s["data_key"] == "wiped").await;
    app.stop().await;
    // HQ knows the box is gone.
    hq.escrow().mark_stolen("store-1", "unit-1", true);

    // The line deleted: the unit is still enrolled, locked in its TPM, and serves only
    // its unlock gate; HQ refuses it.
    let mut edited = s.clone();
    edited.security.enrollment = None;
    let Start::Waiting(gate) = Application::start(edited.clone(), InjectedDevices::default())
        .await
        .unwrap()
    else {
        panic!("an enrolled, locked unit opened without HQ");
    };
    let base = format!("http://{}", gate.addr());
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let status: Value = http
        .get(format!("{base}/api/v1/security/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["needs_recovery"], true, "{status}");
    let r = http
        .post(format!("{base}/api/v1/checkout"))
        .json(&json!({"lines":[{"sku":"MILK","quantity":1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "device_locked", "{v}");
    // HQ answers the gate with a refusal: it stays shut.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status: Value = http
        .get(format!("{base}/api/v1/security/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["last_hq_error"]
            .as_str()
            .unwrap_or_default()
            .contains("stolen"),
        "{status}"
    );
    drop(gate);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The old setting is refused with what to do instead.
    let mut old = toml::Table::new();
    old.insert("hq_public_key".into(), "00".repeat(32).into());
    let text = format!("[security]\n{old}");
    let e = Settings::from_toml(&text)
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("security.hq_public_key") && e.contains("enrollment"),
        "{e}"
    );

    // Deleting the trust record (and the public bundle) is refused, never "off".
    let before = snapshot(&dir);
    std::fs::remove_file(dir.join("trust")).unwrap();
    std::fs::remove_file(dir.join("enrollment.json")).unwrap();
    let e = start_error(edited.clone()).await;
    assert!(e.contains("trust record") || e.contains("enrol"), "{e}");
    // Deleting the sealed key too leaves a TPM that remembers the enrolment.
    std::fs::remove_file(dir.join("sealed-key")).unwrap();
    let e = start_error(edited).await;
    assert!(e.contains("TPM was enrolled"), "{e}");
    let after = snapshot(&dir);
    for (path, bytes) in &after {
        if let Some(old) = before.get(path) {
            assert_eq!(old, bytes, "{} changed", path.display());
        }
    }
}

/// (c) An older copy of the data dir (restored to undo a lock) is refused.
#[tokio::test]
async fn restoring_an_older_data_dir_is_refused() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, keys, 3600).await;
    app.stop().await;
    let backup = tmp.path().join("backup");
    copy_dir(&dir, &backup);

    // Later: HQ locks it, and it is stopped.
    let app = Running::start(s.clone(), false).await;
    send(&app, command(keys, Action::Lock)).await.unwrap();
    until_status(&app, |s| s["data_key"] == "wiped").await;
    app.stop().await;

    // The thief puts the copy from before the lock back. Its TPM share died with the
    // lock, so it waits for HQ's recovery, which HQ refuses for a stolen unit.
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&backup, &dir);
    let before = snapshot(&dir);
    hq.escrow().mark_stolen("store-1", "unit-1", true);
    let Start::Waiting(gate) = Application::start(s.clone(), InjectedDevices::default())
        .await
        .unwrap()
    else {
        panic!("the older copy opened");
    };
    let status: Value = reqwest::get(format!("http://{}/api/v1/security/status", gate.addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["needs_recovery"], true, "{status}");
    // Even if HQ answered (a mistake, or before it knew), the copy is behind the TPM's
    // epoch: refused, with nothing changed.
    hq.escrow().mark_stolen("store-1", "unit-1", false);
    let e = tokio::time::timeout(Duration::from_secs(30), gate.opened())
        .await
        .expect("the gate ends")
        .err()
        .expect("the older copy opened");
    let e = format!("{e:#}");
    assert!(e.contains("older copy"), "{e}");
    assert!(snapshot(&dir) == before, "a refused start changes nothing");
}

/// (c, the epoch alone) An older copy whose TPM share still opens (no lock since) but
/// whose trust record is behind the TPM's epoch is refused.
#[tokio::test]
async fn a_data_dir_older_than_the_tpm_epoch_is_refused_even_without_a_lock() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, keys, 3600).await;
    app.stop().await;
    let backup = tmp.path().join("backup");
    copy_dir(&dir, &backup);
    // A decisive change: a new lease moves the epoch on.
    let app = Running::start(s.clone(), false).await;
    send(&app, lease(keys, 7200)).await.unwrap();
    app.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
    copy_dir(&backup, &dir);
    let e = start_error(s).await;
    assert!(e.contains("older copy"), "{e}");
}

/// (e) A unit whose second factor (HQ's share) is out of reach does not open; it does
/// once HQ is back, or once the store manager's PIN is given.
#[tokio::test]
async fn the_second_factor_hq_or_the_pin_releases_the_key() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let both = SecondFactors {
        hq: true,
        pin: true,
    };
    let mut s = enrolled(&dir, &tpm, &hq, both, 3600);
    // A PIN policy is enrolled with the manager's PIN (`outpost enroll --pin-stdin`).
    std::fs::create_dir_all(&dir).unwrap();
    let json = std::fs::read(s.security.enrollment.as_ref().unwrap()).unwrap();
    let pin = secrecy::SecretString::from("4711".to_owned());
    assert!(
        outpost_server::access::enroll_data_dir(
            &s,
            &outpost_server::store::StoreOptions::default(),
            &json,
            Some(&pin)
        )
        .unwrap()
    );
    s.security.enrollment = None;
    // HQ is there: the unit opens by its share, and gets its lease.
    let app = Running::start(s.clone(), false).await;
    assert_eq!(hq.escrow().answered("share"), 1);
    send(&app, lease(keys, 3600)).await.unwrap();
    until_status(&app, |s| s["data_key"] == "in_memory").await;
    app.seed_milk();
    let sale = app.sell("e-1").await;
    app.stop().await;

    // HQ is down: the unit waits at its gate, selling nothing.
    hq.stop().await;
    let Start::Waiting(gate) = Application::start(s.clone(), InjectedDevices::default())
        .await
        .unwrap()
    else {
        panic!("opened without its second factor");
    };
    let base = format!("http://{}", gate.addr());
    let http = reqwest::Client::new();
    let status: Value = http
        .get(format!("{base}/api/v1/security/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            status["accepts_hq"].as_bool(),
            status["accepts_pin"].as_bool()
        ),
        (Some(true), Some(true)),
        "{status}"
    );
    let opened = tokio::spawn(gate.opened());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503, "still waiting");
    // HQ comes back: the gate's next try opens the unit.
    hq.start().await.unwrap();
    let app = tokio::time::timeout(Duration::from_secs(20), opened)
        .await
        .expect("HQ's share opened it")
        .unwrap()
        .unwrap();
    let running = Running::serve(app);
    let (st, v) = running.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(st, 200, "{v}");
    running.stop().await;

    // HQ down again: the manager's PIN opens it (a wrong one is refused and counted).
    hq.stop().await;
    let Start::Waiting(gate) = Application::start(s.clone(), InjectedDevices::default())
        .await
        .unwrap()
    else {
        panic!("opened without its second factor");
    };
    let base = format!("http://{}", gate.addr());
    let opened = tokio::spawn(gate.opened());
    let unlock = |pin: &str| {
        http.post(format!("{base}/api/v1/security/unlock"))
            .json(&json!({ "pin": pin }))
            .send()
    };
    let r = unlock("1234").await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "wrong_pin", "{v}");
    let r = unlock("4711").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let app = tokio::time::timeout(Duration::from_secs(20), opened)
        .await
        .expect("the PIN opened it")
        .unwrap()
        .unwrap();
    let running = Running::serve(app);
    let (st, v) = running.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(st, 200, "{v}");
    running.stop().await;
    let _ = MILK;
}

/// A free loopback port (bound and released: the child binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real `outpost serve` on `dir`, under libfaketime with the wall clock `offset`
/// (e.g. `-3d`), until dropped.
struct FakedServer {
    child: std::process::Child,
    base: String,
}

impl FakedServer {
    async fn start(dir: &Path, tpm: &Swtpm, offset: &str) -> FakedServer {
        let port = free_port();
        let config = dir.with_extension("serve.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n[security]\nsealer = \"tpm\"\ntcti = {:?}\npassword_hashing = \"fast\"\n",
                dir.display().to_string(),
                tpm.tcti()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("faketime")
            .arg("-f")
            .arg(offset)
            .arg(env!("CARGO_BIN_EXE_outpost"))
            .args(["serve", "--config"])
            .arg(&config)
            // Only the wall clock is set back, as a BIOS clock would be.
            .env("DONT_FAKE_MONOTONIC", "1")
            .env("TSS2_LOG", "all+none")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: faketime runs outpost as a child, and both must go
            // when the test ends (an orphan would keep retrying its TPM's port, which a
            // later test's software TPM may reuse).
            .process_group(0)
            .spawn()
            .expect("faketime (Debian package faketime) runs the outpost binary");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if reqwest::get(format!("{base}/healthz")).await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the faked server never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        FakedServer { child, base }
    }

    /// A checkout with `token`: the status and the body.
    async fn checkout(&self, token: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/checkout", self.base))
            .bearer_auth(token)
            .header("Idempotency-Key", format!("k{}", rand::random::<u32>()))
            .json(&json!({"lines":[{"sku":"MILK","quantity":1}],
                          "payment":{"method":"cash","tendered":1000}}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for FakedServer {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (b) The lease expired while the unit was off; the BIOS clock is set back three days
/// so the lease looks fresh again: the unit still counts the time (the TPM's clock ran
/// on), locks at start, and stays locked on every later start with the clock back.
#[tokio::test]
async fn a_clock_set_back_after_expiry_leaves_it_locked() {
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 1);
    let app = leased(&dir, &s, keys, 4).await;
    let (_, token) = app.security.add_terminal("test", "till-9").unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
    app.stop().await;
    // The lease (4 s) and its grace (1 s) run out while the unit is off.
    tokio::time::sleep(Duration::from_secs(7)).await;

    let server = FakedServer::start(&dir, &tpm, "-3d").await;
    let (st, v) = server.checkout(&token).await;
    assert_eq!(st, 423, "sold with the clock set back: {v}");
    assert_eq!(v["code"], "device_locked", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{v}"
    );
    drop(server);

    // Again with the clock back: locked in the TPM now, it serves only its gate.
    let server = FakedServer::start(&dir, &tpm, "-3d").await;
    let (st, v) = server.checkout(&token).await;
    assert_eq!(st, 503, "{v}");
    assert_eq!(v["code"], "device_locked", "{v}");
    drop(server);
    let _ = hq;
}

/// (f) Entries forged into the audit spool of a unit locked in its TPM are refused and
/// audited when HQ's recovery brings the key back; the genuine one is kept.
#[tokio::test]
async fn a_forged_spool_entry_on_a_locked_unit_is_refused_and_audited() {
    use outpost_security::auth::spool::{AuditSpool, SpoolSigner, SpooledEntry};
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, keys, 3600).await;
    send(&app, command(keys, Action::Lock)).await.unwrap();
    until_status(&app, |s| s["data_key"] == "wiped").await;
    // A login tried on the locked unit: spooled (signed by the unit).
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": "intruder", "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    app.stop().await;

    // Someone with the disk seals entries to the spool's clear public key: unsigned.
    {
        let db = outpost_security::sled_lock::reopen(&dir.join("db"));
        let tree = db.open_tree("audit-spool").unwrap();
        let mut spool = AuditSpool::new(tree, 10_000, SpoolSigner::from_secret_bytes(&[1; 32]));
        spool
            .forge(
                &SpooledEntry {
                    at_ms: 1,
                    actor: "supervisor-anna".into(),
                    action: "refund.approved".into(),
                    detail: "forged-refund".into(),
                },
                None,
            )
            .unwrap();
        db.flush().unwrap();
    }

    // HQ unlocks it: the gate gets the key back through HQ's recovery.
    hq.escrow().approve_unlock("store-1", "unit-1");
    let app = Running::start(s, false).await;
    until_status(&app, |s| s["data_key"] == "in_memory").await;
    let (st, page) = app.get("/api/v1/audit?limit=1000").await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["verified"], true, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let has = |action: &str, detail: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["detail"].as_str().unwrap().contains(detail))
    };
    assert!(has("login.failed", "intruder"), "{page}");
    assert!(has("audit.spool_forged", "refused"), "{page}");
    assert!(
        !entries
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("forged-refund")),
        "{page}"
    );
    app.stop().await;
}

/// (g) On the loopback gRPC port without mutual TLS, a push without credentials is
/// refused and changes nothing; HQ's push token opens it.
#[tokio::test]
async fn a_push_without_credentials_on_the_loopback_port_is_refused() {
    use outpost_security::push_token::{PUSH_TOKEN_METADATA, PushToken, PushTokenSigner};
    let tpm = Swtpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let hq = mock_hq(&tmp.path().join("hq")).await;
    let keys = hq.escrow().keys();
    let dir = tmp.path().join("unit");
    let s = enrolled(&dir, &tpm, &hq, SecondFactors::default(), 3600);
    let app = leased(&dir, &s, keys, 3600).await;
    let channel = tonic::transport::Channel::from_shared(app.grpc.clone().unwrap())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut bare = StoreServiceClient::new(channel);
    let tax = |version: u64| hq::TaxRatesPush {
        version,
        rates: vec![hq::TaxRate {
            tax_class: "standard".into(),
            rate_bp: 1,
        }],
        mode: hq::TaxMode::Unspecified as i32,
    };
    let e = bare.push_tax_rates(tax(7)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
    let status = bare
        .get_status(hq::GetStatusRequest {})
        .await
        .expect("reads stay open")
        .into_inner();
    assert_eq!(status.tax_rates_version, 0, "nothing changed");
    // With HQ's token (signed by the key the unit is enrolled with) it applies.
    let signer = PushTokenSigner::from_bytes(keys.signer_secret());
    let token = signer
        .sign_text(&PushToken::new(
            "store-1",
            "unit-1",
            time::OffsetDateTime::now_utc(),
            time::Duration::minutes(5),
        ))
        .unwrap();
    let mut request = tonic::Request::new(tax(7));
    request
        .metadata_mut()
        .insert(PUSH_TOKEN_METADATA, token.parse().unwrap());
    bare.push_tax_rates(request).await.unwrap();
    let status = bare
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.tax_rates_version, 7);
    app.stop().await;
}

/// (h) on a TPM-sealed unit: 500 parallel wrong logins keep the server's memory
/// bounded, and the right password works after the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_wrong_logins_on_a_tpm_sealed_unit_keep_memory_bounded() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    crate::login_storm::storm(&[("OUTPOST_SEALER", "tpm"), ("OUTPOST_TPM_TCTI", &tcti)]).await;
}
