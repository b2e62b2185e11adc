//! Issue 14, "audit that can't be forged or cut quietly": an entry written into the
//! spool of a locked unit by someone who can write its data dir is refused and
//! audited (done-when (f)); the audit chain's head reaches HQ, and HQ notices a log
//! cut short on a stopped unit.

use outpost_proto::hq;
use outpost_security::auth::spool::{AuditSpool, SpoolSigner, SpooledEntry};
use outpost_security::lease::{Action, Command, HqSigner, Lease};
use serde_json::Value;
use time::OffsetDateTime;

use crate::helpers::*;

const HQ_SECRET: [u8; 32] = [7; 32];

fn lease(signer: &HqSigner) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    signer
        .sign_lease(&Lease {
            store: "store-1".into(),
            unit: "unit-1".into(),
            issued_at: now - time::Duration::seconds(1),
            expires_at: now + time::Duration::hours(1),
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

async fn send(app: &HqTestApp, id: &str, kind: hq::command::Kind) {
    app.client()
        .await
        .send_command(hq::Command {
            command_id: id.into(),
            kind: Some(kind),
        })
        .await
        .unwrap();
}

async fn failed_login(base: &str, user: &str) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": user, "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

async fn audit_page(app: &HqTestApp) -> Value {
    let (st, page) = app.get_json("/api/v1/audit?limit=1000").await;
    assert_eq!(st, 200, "{page}");
    page
}

/// (f): a spooled entry sealed with the spool's clear public key but not signed by the
/// unit's key is not appended as genuine; the chain says how many were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_spool_entry_is_refused_and_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let hq_signer = HqSigner::from_bytes(HQ_SECRET);
    let mut s = settings(tmp.path(), None);
    enroll_signed(&mut s, &hq_signer);

    // No lease: the unit is locked, and a login tried on it is spooled.
    let app = spawn_with(s.clone()).await;
    let (_, status) = app.get_json("/api/v1/security/status").await;
    assert_eq!(status["data_key"], "wiped", "{status}");
    failed_login(&app.base, "intruder").await;
    app.stop().await;

    // With the server stopped, someone who can write the data dir seals entries to the
    // spool's public key: one unsigned, one signed by a key of their own that they
    // also put where the clear verifying key is kept.
    {
        let db = outpost_security::sled_lock::reopen(&tmp.path().join("db"));
        let tree = db.open_tree("audit-spool").unwrap();
        let forger = SpoolSigner::from_secret_bytes(&[0x66; 32]);
        tree.insert("meta/verify", forger.verifying_key().as_bytes().as_slice())
            .unwrap();
        let mut spool = AuditSpool::new(tree, 10_000, SpoolSigner::from_secret_bytes(&[1; 32]));
        let fake = |n: u32| SpooledEntry {
            at_ms: (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            actor: "supervisor-anna".into(),
            action: "refund.approved".into(),
            detail: format!("forged-refund-{n}"),
        };
        spool.forge(&fake(1), None).unwrap();
        spool.forge(&fake(2), Some(&forger)).unwrap();
        db.flush().unwrap();
    }

    // The unit starts (still locked) and HQ's lease unlocks it.
    let app = spawn_with(s).await;
    let mut client = app.client().await;
    client
        .send_command(hq::Command {
            command_id: "l1".into(),
            kind: Some(hq::command::Kind::SignedLease(lease(&hq_signer))),
        })
        .await
        .unwrap();
    eventually(10, "the unit unlocked", || async {
        let (_, status) = app.get_json("/api/v1/security/status").await;
        status["data_key"] == "in_memory"
    })
    .await;

    let page = audit_page(&app).await;
    assert_eq!(page["verified"], true, "{page}");
    let entries = page["entries"].as_array().unwrap();
    let has = |action: &str, detail: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["detail"].as_str().unwrap().contains(detail))
    };
    assert!(
        has("login.failed", "intruder"),
        "the genuine entry is kept: {page}"
    );
    assert!(
        !entries
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("forged-refund")),
        "a forged entry reached the chain: {page}"
    );
    assert!(
        has("audit.spool_forged", "2 spooled entries refused"),
        "the refusal is audited: {page}"
    );
    assert!(
        has(
            "audit.spool_forged",
            "verifying key on disk had been replaced"
        ),
        "{page}"
    );
    app.stop().await;
}

/// The head reaches HQ; a log cut on a stopped unit shows at HQ as a chain that went
/// backwards, although the shorter chain verifies on the unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_head_reaches_hq_and_a_cut_log_is_reported() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), Some(hq.url()));
    s.events.poll_ms = 50;
    s.events.audit_head_ms = 200;
    let app = spawn_with(s.clone()).await;

    // Audited actions; HQ ends up with the unit's head.
    for n in 0..5 {
        failed_login(&app.base, &format!("guess-{n}")).await;
    }
    let head = audit_page(&app).await["head"].clone();
    let (seq, hash) = (
        head[0].as_u64().unwrap(),
        head[1].as_str().unwrap().to_owned(),
    );
    assert!(seq >= 5, "{head}");
    eventually(20, "the audit head at HQ", || async {
        hq.audit_head("unit-1")
            .is_some_and(|h| h.seq == seq && h.hash == hash)
    })
    .await;
    assert!(hq.audit_alerts().is_empty(), "{:?}", hq.audit_alerts());
    assert!(
        !hq.received_kind("unit-1", hq::EnvelopeKind::AuditHead)
            .is_empty(),
        "sent as its own envelope kind"
    );
    app.stop().await;

    // With the unit stopped, its last three audit entries are deleted.
    {
        let db = outpost_security::sled_lock::reopen(&dir.path().join("db"));
        let tree = db.open_tree("audit").unwrap();
        for cut in seq - 2..=seq {
            assert!(tree.remove(cut.to_be_bytes()).unwrap().is_some());
        }
        db.flush().unwrap();
    }

    let app = spawn_with(s).await;
    let page = audit_page(&app).await;
    assert_eq!(
        page["verified"], true,
        "a cut tail leaves a valid chain: {page}"
    );
    assert_eq!(page["head"][0].as_u64(), Some(seq - 3), "{page}");
    eventually(20, "HQ's alert of a chain that went backwards", || async {
        !hq.audit_alerts().is_empty()
    })
    .await;
    let alerts = hq.audit_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].unit, "unit-1");
    assert_eq!(alerts[0].held.as_ref().map(|h| h.seq), Some(seq));
    assert_eq!(alerts[0].reported.seq, seq - 3);
    assert!(
        alerts[0].reason.contains("backwards"),
        "{}",
        alerts[0].reason
    );

    // The unit carries on from the shorter chain; its next head extends the one HQ
    // now holds, so the cut is reported once.
    failed_login(&app.base, "after-cut").await;
    let next = audit_page(&app).await["head"][0].as_u64().unwrap();
    eventually(20, "the next head at HQ", || async {
        hq.audit_head("unit-1").is_some_and(|h| h.seq == next)
    })
    .await;
    assert_eq!(hq.audit_alerts().len(), 1);
    app.stop().await;
    hq.shutdown().await.unwrap();
}

/// While locked nothing can be queued (the outbox is sealed too); right after an
/// unlock the head goes out, covering the lockdown, what was spooled and the unlock,
/// without waiting for `audit_head_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_goes_to_hq_right_after_an_unlock() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let dir = tempfile::tempdir().unwrap();
    // Enrolled with this HQ: after the lock, the key comes back through its recovery.
    let hq_signer = &hq.escrow().keys().signer;
    let mut s = settings(dir.path(), Some(hq.url()));
    enroll(
        &mut s,
        hq.escrow().keys(),
        outpost_security::enroll::SecondFactors::default(),
        72 * 3600,
    );
    s.events.poll_ms = 200;
    // Never periodically within this test: only the unlock can send the head.
    s.events.audit_head_ms = 3_600_000;
    let app = spawn_with(s).await;
    send(&app, "l1", hq::command::Kind::SignedLease(lease(hq_signer))).await;
    let unlocked_head = |page: &Value| {
        let entries = page["entries"].as_array().unwrap();
        entries
            .iter()
            .rev()
            .find(|e| e["action"] == "unlocked")
            .and_then(|e| e["seq"].as_u64())
    };
    eventually(20, "the head after the first unlock at HQ", || async {
        let (st, page) = app.get_json("/api/v1/audit?limit=1000").await;
        st == 200
            && unlocked_head(&page)
                .is_some_and(|u| hq.audit_head("unit-1").is_some_and(|h| h.seq >= u))
    })
    .await;
    let before = hq.audit_head("unit-1").unwrap().seq;

    // Locked, a login tried meanwhile (spooled), then HQ's signed unlock.
    send(
        &app,
        "k1",
        hq::command::Kind::SignedCommand(command(hq_signer, Action::Lock, 1)),
    )
    .await;
    failed_login(&app.base, "while-locked").await;
    send(
        &app,
        "u1",
        hq::command::Kind::SignedCommand(command(hq_signer, Action::Unlock, 2)),
    )
    .await;
    let page = audit_page(&app).await;
    let unlocked = unlocked_head(&page).unwrap();
    assert!(unlocked > before, "{page}");
    eventually(10, "the head after the second unlock at HQ", || async {
        hq.audit_head("unit-1").is_some_and(|h| h.seq >= unlocked)
    })
    .await;
    assert!(hq.audit_alerts().is_empty(), "{:?}", hq.audit_alerts());
    app.stop().await;
    hq.shutdown().await.unwrap();
}
