//! Audit chain heads through a real Upload stream: the last head per unit is kept, a
//! chain that went backwards is an alert, and both survive a restart of the mock HQ
//! (the library API and the `audit` command).

use outpost_mocks::hq::{Faults, MockHq};
use outpost_proto::hq::{Envelope, EnvelopeKind};

use crate::helpers::*;

fn head(seq: u64, chain_seq: u64, hash: &str, since: Option<(u64, Option<&str>)>) -> Envelope {
    let since = since.map(|(s, h)| serde_json::json!({"seq": s, "hash": h}));
    Envelope {
        seq,
        kind: EnvelopeKind::AuditHead as i32,
        id: format!("head-{seq}"),
        at_unix_ms: 1_700_000_000_000 + seq as i64,
        json: serde_json::json!({
            "type": "audit_head", "id": format!("head-{seq}"), "at": "2026-01-01T00:00:00Z",
            "dropped_before": 0, "seq": chain_seq, "hash": hash, "since": since,
        })
        .to_string()
        .into_bytes(),
    }
}

#[tokio::test]
async fn a_chain_that_went_backwards_is_reported_and_remembered() {
    let (hq, dir) = start_hq(Faults::none()).await;
    let (mut c, _) = Conversation::hello(&hq.url(), "u-1").await;
    // A sale, then heads that only grow.
    let acked = c
        .ack_of(batch(vec![
            env(1, "a"),
            head(2, 10, "h10", None),
            head(3, 14, "h14", Some((10, Some("h10")))),
        ]))
        .await;
    assert_eq!(acked, 3);
    let held = hq.audit_head("u-1").unwrap();
    assert_eq!(
        (held.seq, held.hash.as_str(), held.envelope_seq),
        (14, "h14", 3)
    );
    assert!(hq.audit_alerts().is_empty());
    // The same envelope again (a resend) is a duplicate: not judged twice.
    assert_eq!(
        c.ack_of(batch(vec![head(3, 14, "h14", Some((10, Some("h10"))))]))
            .await,
        3
    );
    // The unit restarts after its log was cut to entry 11.
    assert_eq!(
        c.ack_of(batch(vec![head(4, 11, "h11", Some((14, None)))]))
            .await,
        4
    );
    let alerts = hq.audit_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].unit, "u-1");
    assert_eq!(alerts[0].held.as_ref().map(|h| h.seq), Some(14));
    assert_eq!(alerts[0].reported.seq, 11);
    assert!(
        alerts[0].reason.contains("backwards"),
        "{}",
        alerts[0].reason
    );
    // Another unit is not concerned.
    let (mut other, _) = Conversation::hello(&hq.url(), "u-2").await;
    assert_eq!(other.ack_of(batch(vec![head(1, 3, "x3", None)])).await, 1);
    assert_eq!(hq.audit_alerts().len(), 1);
    drop((c, other));
    hq.shutdown().await.unwrap();

    // Rebuilt from what is stored.
    let hq = MockHq::start("127.0.0.1:0".parse().unwrap(), dir.path(), Faults::none())
        .await
        .unwrap();
    assert_eq!(hq.audit_alerts().len(), 1);
    assert_eq!(hq.audit_head("u-1").unwrap().seq, 11);
    assert_eq!(hq.audit_head("u-2").unwrap().seq, 3);
    hq.shutdown().await.unwrap();

    // The CLI reads the same from the data dir and exits 2 on an alert.
    let bin = env!("CARGO_BIN_EXE_outpost-hq");
    let path = dir.path().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["audit", "--data-dir", &path])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["unit"], "u-1");
    assert_eq!(lines[0]["head"]["seq"], 11);
    assert_eq!(lines[1]["head"]["seq"], 3);
    assert_eq!(lines[2]["alert"]["reported"]["seq"], 11);
    assert_eq!(lines[2]["alert"]["held"]["seq"], 14);
}

#[tokio::test]
async fn the_audit_command_exits_0_without_alerts() {
    let (hq, dir) = start_hq(Faults::none()).await;
    let (mut c, _) = Conversation::hello(&hq.url(), "u-1").await;
    assert_eq!(c.ack_of(batch(vec![head(1, 2, "h2", None)])).await, 1);
    drop(c);
    hq.shutdown().await.unwrap();
    let bin = env!("CARGO_BIN_EXE_outpost-hq");
    let path = dir.path().display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["audit", "--data-dir", &path, "--unit", "u-1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["head"]["hash"], "h2");
}
