//! The presence lease and HQ's signed lock / unlock / wipe, through the gRPC
//! StoreService: locked devices answer checkout and refund with `423 device_locked`.

use outpost_proto::hq;
use outpost_security::lease::{Action, Command, HqSigner, Lease};
use serde_json::{Value, json};
use time::OffsetDateTime;

use outpost_mocks::hq::MockHqHandle;
use outpost_security::enroll::SecondFactors;

use crate::helpers::{enroll, mock_hq, settings, spawn_with};

/// A mock HQ (its data dir inside `dir`): it signs the bundles, leases and commands, and
/// answers the enrolled unit's escrow exchanges.
async fn hq(dir: &std::path::Path) -> MockHqHandle {
    mock_hq(&dir.join("hq")).await
}

/// Settings of a unit in `dir` enrolled with `hq` (TPM alone releases its key at start;
/// a lock comes back only through `hq`'s recovery).
fn enrolled(
    dir: &std::path::Path,
    hq: &MockHqHandle,
    grace_secs: u64,
) -> outpost_server::config::Settings {
    let mut s = settings(dir, Some(hq.url()));
    enroll(
        &mut s,
        hq.escrow().keys(),
        SecondFactors::default(),
        grace_secs,
    );
    s
}

fn lease(signer: &HqSigner, hours: i64) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    signer
        .sign_lease(&Lease {
            store: "store-1".into(),
            unit: "unit-1".into(),
            issued_at: now - time::Duration::seconds(1),
            expires_at: now + time::Duration::hours(hours),
            nonce: rand::random(),
        })
        .unwrap()
}

fn command(signer: &HqSigner, action: Action, counter: u64) -> Vec<u8> {
    signer
        .sign_command(&Command {
            action,
            store: "store-1".into(),
            unit: "unit-1".into(),
            counter,
            issued_at: OffsetDateTime::now_utc() - time::Duration::seconds(1),
        })
        .unwrap()
}

async fn send(
    client: &mut outpost_mocks::hq::StoreClient,
    id: &str,
    kind: hq::command::Kind,
) -> Result<hq::CommandReply, tonic::Status> {
    client
        .send_command(hq::Command {
            command_id: id.into(),
            kind: Some(kind),
        })
        .await
        .map(|r| r.into_inner())
}

async fn checkout(app: &crate::helpers::HqTestApp, key: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/checkout", app.base))
        .header("Idempotency-Key", key)
        .json(&json!({"lines":[{"sku":"P0000000","quantity":1}],"payment":{"method":"cash","tendered":1000}}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn lease_lock_unlock_wipe_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = hq(tmp.path()).await;
    let signer = &hq.escrow().keys().signer;
    let s = enrolled(&tmp.path().join("unit"), &hq, 72 * 3600);
    let unit = s.data_dir.clone();
    let app = spawn_with(s.clone()).await;
    let mut client = app.client().await;

    // No lease yet: locked.
    let (st, v) = checkout(&app, "c0").await;
    assert_eq!(st, 423, "{v}");
    assert_eq!(v["code"], "device_locked");
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["state"], "locked", "{status}");
    assert_eq!(status["data_key"], "wiped", "{status}");

    // A forged lease is refused; a real one activates.
    let forged = lease(&HqSigner::generate(), 1);
    let e = send(&mut client, "l0", hq::command::Kind::SignedLease(forged))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let ok = send(
        &mut client,
        "l1",
        hq::command::Kind::SignedLease(lease(signer, 1)),
    )
    .await
    .unwrap();
    assert!(ok.result.contains("active"), "{}", ok.result);
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["data_key"], "in_memory", "{status}");
    // One product (P0000000), pushed by HQ once the device may hold its key.
    crate::helpers::snapshot(&app, 1, 1).await;
    let (st, _) = app.get_json("/api/v1/products/P0000000").await;
    assert_eq!(st, 200);

    // Lock: 423; a replayed counter is refused; unlock lifts it.
    send(
        &mut client,
        "k1",
        hq::command::Kind::SignedCommand(command(signer, Action::Lock, 1)),
    )
    .await
    .unwrap();
    let (st, v) = checkout(&app, "c1").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (423, Some("device_locked")),
        "{v}"
    );
    // The key is gone from memory: lookups cannot read the catalog either.
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["data_key"], "wiped", "{status}");
    let barcode = crate::helpers::product(0, 1).barcodes[0].clone();
    for path in [
        "/api/v1/products/P0000000".to_owned(),
        format!("/api/v1/products/{barcode}"),
        "/api/v1/products?q=x".to_owned(),
    ] {
        let (st, v) = app.get_json(&path).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (423, Some("device_locked")),
            "{path}: {v}"
        );
    }
    let e = send(
        &mut client,
        "k1-again",
        hq::command::Kind::SignedCommand(command(signer, Action::Unlock, 1)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = send(
        &mut client,
        "k-forged",
        hq::command::Kind::SignedCommand(command(&HqSigner::generate(), Action::Unlock, 9)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let e = send(
        &mut client,
        "k-garbage",
        hq::command::Kind::SignedCommand(b"OPCMD001 nonsense".to_vec()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let (st, _) = checkout(&app, "c2").await;
    assert_eq!(st, 423, "still locked after refusals");
    send(
        &mut client,
        "k2",
        hq::command::Kind::SignedCommand(command(signer, Action::Unlock, 2)),
    )
    .await
    .unwrap();
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["can_transact"], true, "{status}");
    assert_eq!(status["data_key"], "in_memory", "{status}");
    let (st, p) = app.get_json("/api/v1/products/P0000000").await;
    assert_eq!((st, p["sku"].as_str()), (200, Some("P0000000")), "{p}");
    let (st, sale) = checkout(&app, "c3").await;
    assert_eq!(st, 201, "{sale}");
    let sale_id = sale["sale_id"].as_str().unwrap().to_owned();

    // Lock again, restart: still locked (the guard snapshot persists).
    send(
        &mut client,
        "k3",
        hq::command::Kind::SignedCommand(command(signer, Action::Lock, 3)),
    )
    .await
    .unwrap();
    let r = app
        .http
        .post(format!("{}/api/v1/sales/{sale_id}/refunds", app.base))
        .header("Idempotency-Key", "r3")
        .json(&json!({"lines":[{"line":1,"quantity":1}],"reason":"test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 423, "refunds are locked too");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "device_locked");
    app.stop().await;
    let app = spawn_with(s).await;
    let mut client = app.client().await;
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["state"], "locked", "{status}");
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outpost_locked 1"), "{metrics}");
    // The replay protection survived the restart too.
    let e = send(
        &mut client,
        "k2-replay",
        hq::command::Kind::SignedCommand(command(signer, Action::Unlock, 2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");

    // Wipe: the sealed key is crypto-erased and the device stays locked.
    assert!(unit.join("sealed-key").exists());
    let r = send(
        &mut client,
        "w4",
        hq::command::Kind::SignedCommand(command(signer, Action::Wipe, 4)),
    )
    .await
    .unwrap();
    assert!(r.result.contains("wiped"), "{}", r.result);
    assert!(!unit.join("sealed-key").exists());
    assert!(!unit.join("software-kek").exists());
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["state"], "locked", "{status}");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_lease_wipes_the_key_and_a_fresh_lease_brings_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = hq(tmp.path()).await;
    let signer = &hq.escrow().keys().signer;
    let s = enrolled(&tmp.path().join("unit"), &hq, 1);
    let app = spawn_with(s).await;
    let mut client = app.client().await;
    let now = OffsetDateTime::now_utc();
    let short = signer
        .sign_lease(&Lease {
            store: "store-1".into(),
            unit: "unit-1".into(),
            issued_at: now - time::Duration::seconds(1),
            expires_at: now + time::Duration::seconds(3),
            nonce: rand::random(),
        })
        .unwrap();
    send(&mut client, "l1", hq::command::Kind::SignedLease(short))
        .await
        .unwrap();
    crate::helpers::snapshot(&app, 1, 1).await;
    let (st, sale) = checkout(&app, "e1").await;
    assert_eq!(st, 201, "{sale}");
    let sale_id = sale["sale_id"].as_str().unwrap().to_owned();

    // Nobody calls in: the lease runs out and the watch wipes the key on its own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, status) = app.get_json("/api/v1/security/status").await;
        if status["data_key"] == "wiped" {
            assert_eq!(status["state"], "locked", "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never wiped: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (st, v) = app.get_json("/api/v1/products/P0000000").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (423, Some("device_locked")),
        "{v}"
    );
    let (st, v) = app.get_json(&format!("/api/v1/sales/{sale_id}")).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (423, Some("device_locked")),
        "{v}"
    );

    // A fresh lease: the key is unsealed again and nothing was lost.
    send(
        &mut client,
        "l2",
        hq::command::Kind::SignedLease(lease(signer, 1)),
    )
    .await
    .unwrap();
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["data_key"], "in_memory", "{status}");
    assert_eq!(
        hq.escrow().answered("recovery"),
        1,
        "the key came back through HQ"
    );
    let (st, v) = app.get_json(&format!("/api/v1/sales/{sale_id}")).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = checkout(&app, "e2").await;
    assert_eq!(st, 201);
    app.stop().await;
}

/// Raise a door/case event on the sensor `id` of `app`.
fn door(app: &crate::helpers::HqTestApp, id: &str, open: bool) {
    use outpost_peripherals::{DataEvent, EventBody};
    app.devices
        .entry(id)
        .expect("the sensor is configured")
        .device
        .core()
        .events()
        .publish(EventBody::Data {
            data: DataEvent::Door { open },
        });
}

/// Poll the security status until its state is `want` and the data key's presence
/// has followed it.
async fn security_state(app: &crate::helpers::HqTestApp, want: &str) -> Value {
    let key = if want == "locked" {
        "wiped"
    } else {
        "in_memory"
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, status) = app.get_json("/api/v1/security/status").await;
        if status["state"] == want && status["data_key"] == key {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "security state never became {want}: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_case_sensor_opening_locks_at_once_and_only_a_signed_unlock_lifts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let hq = hq(tmp.path()).await;
    let signer = &hq.escrow().keys().signer;
    let mut s = enrolled(&tmp.path().join("unit"), &hq, 72 * 3600);
    s.devices.push(outpost_server::config::DeviceSettings {
        id: "case-1".into(),
        kind: "sensor".into(),
        driver: "mock".into(),
        ..Default::default()
    });
    s.security.tamper_sensors = vec!["case-1".into()];
    let app = spawn_with(s.clone()).await;
    let mut client = app.client().await;
    send(
        &mut client,
        "l1",
        hq::command::Kind::SignedLease(lease(signer, 1)),
    )
    .await
    .unwrap();
    security_state(&app, "active").await;

    // A door closing is not a tamper signal.
    door(&app, "case-1", false);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["state"], "active", "{status}");

    // The case opens: locked at once, the key leaves memory, checkout is refused.
    door(&app, "case-1", true);
    let status = security_state(&app, "locked").await;
    assert!(
        status["reason"].as_str().unwrap().contains("case-1"),
        "{status}"
    );
    assert_eq!(status["data_key"], "wiped", "{status}");
    let (st, v) = checkout(&app, "t1").await;
    assert_eq!(
        (st, v["code"].as_str()),
        (423, Some("device_locked")),
        "{v}"
    );

    // Someone tries a login on the locked unit: refused, and audited although the
    // key is gone (spooled, sealed to the spool's public key).
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&serde_json::json!({"username": "intruder", "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // A fresh lease does not lift a tamper lock; HQ's signed unlock does.
    let _ = send(
        &mut client,
        "l2",
        hq::command::Kind::SignedLease(lease(signer, 2)),
    )
    .await;
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["state"], "locked", "{status}");
    send(
        &mut client,
        "u1",
        hq::command::Kind::SignedCommand(command(signer, Action::Unlock, 1)),
    )
    .await
    .unwrap();
    let status = security_state(&app, "active").await;
    assert_eq!(status["data_key"], "in_memory", "{status}");

    // What was audited while locked is in the chain now, in order, before the
    // unlock, and the chain verifies.
    let (st, page) = app.get_json("/api/v1/audit?limit=1000").await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(page["verified"], true, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let at = |action: &str, detail: &str| {
        entries
            .iter()
            .rposition(|e| e["action"] == action && e["detail"].as_str().unwrap().contains(detail))
            .unwrap_or_else(|| panic!("no {action} ({detail}) in {page}"))
    };
    let lockdown = at("lockdown", "case-1");
    let failed = at("login.failed", "intruder");
    let renew = at("lease.renew", "locked");
    let unlocked = at("unlocked", "");
    assert!(
        lockdown < failed && failed < unlocked && lockdown < renew && renew < unlocked,
        "{page}"
    );
    app.stop().await;

    // Misconfigurations stop the start with the setting named: tamper sensors on a unit
    // that is not enrolled (nobody could unlock it), and sensors that are not there.
    let mut no_key = settings(&tmp.path().join("unenrolled"), None);
    no_key.devices = s.devices.clone();
    no_key.security.tamper_sensors = s.security.tamper_sensors.clone();
    let built = outpost_server::startup::Application::build(no_key, Default::default()).await;
    let e = format!("{:#}", built.err().expect("refused"));
    assert!(e.contains("security.tamper_sensors"), "{e}");
    for (bad, why) in [("nope", "no device"), ("case-1x", "no device")] {
        let mut wrong = s.clone();
        wrong.security.tamper_sensors = vec![bad.into()];
        let built = outpost_server::startup::Application::build(wrong, Default::default()).await;
        let e = format!("{:#}", built.err().expect("refused"));
        assert!(e.contains(why), "{e}");
    }
}
