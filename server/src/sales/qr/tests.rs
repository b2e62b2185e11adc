//! QR payments as a payment terminal, against a real store.

use std::sync::Arc;
use std::time::Duration;

use outpost_peripherals::payment::{
    KeyStatus, Outcome, PaymentKey, PaymentRequest, PaymentTerminal,
};

use super::wire::sign_notification;
use super::*;
use crate::store::outbox::OutboxKind;
use crate::store::outbox::drain::read_from;

const SECRET: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn qr(dir: &std::path::Path, expiry: Duration) -> Arc<QrPayments> {
    Arc::new(QrPayments::new(
        crate::store::crypt::test_store(dir),
        QrConfig {
            pay_url: "http://127.0.0.1:9/pay".into(),
            merchant: "store-1".into(),
            secret: Secret::from_hex(SECRET).unwrap(),
            expiry,
            brand: "QR".into(),
        },
    ))
}

fn req(key: &str, amount: i64) -> PaymentRequest {
    PaymentRequest {
        key: PaymentKey(key.into()),
        amount_minor: amount,
        currency: "EUR".into(),
        instrument: Default::default(),
    }
}

async fn tell(q: &QrPayments, reference: &str, status: &str, amount: i64, provider_ref: &str) {
    let body = serde_json::json!({
        "merchant": "store-1", "reference": reference, "status": status,
        "amount": amount, "currency": "EUR", "provider_ref": provider_ref, "wallet": "DemoPay",
    })
    .to_string();
    let sig = sign_notification(&Secret::from_hex(SECRET).unwrap(), body.as_bytes());
    q.notify(body.as_bytes(), Some(&sig))
        .await
        .unwrap()
        .unwrap();
}

/// Wait until `reference`'s code is shown.
async fn shown(q: &QrPayments, reference: &str) -> AwaitingCode {
    for _ in 0..200 {
        if let Some(c) = q.awaiting(reference, None).unwrap() {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("code {reference} never shown");
}

fn returns(q: &QrPayments) -> Vec<serde_json::Value> {
    read_from(&q.store, 0, 1000, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|o| o.entry.kind == OutboxKind::PaymentReturn)
        .map(|o| serde_json::from_slice(&o.record).unwrap())
        .collect()
}

#[tokio::test]
async fn a_code_paid_by_the_provider_is_approved_with_the_wallet() {
    let dir = tempfile::tempdir().unwrap();
    let q = qr(dir.path(), Duration::from_secs(60));
    let q2 = q.clone();
    let waiting = tokio::spawn(async move { q2.authorize(&req("s1-0", 250)).await });
    let code = shown(&q, "s1-0").await;
    assert_eq!((code.amount, code.currency.as_str()), (250, "EUR"));
    assert!(
        code.url
            .starts_with("http://127.0.0.1:9/pay?m=store-1&ref=s1-0&amount=250")
    );
    assert_eq!(
        q.status(&PaymentKey("s1-0".into())).await.unwrap(),
        KeyStatus::InProgress
    );
    tell(&q, "s1-0", "paid", 250, "pp-1").await;
    let Outcome::Approved(a) = waiting.await.unwrap().unwrap() else {
        panic!("not approved")
    };
    assert_eq!(
        (a.auth_code.as_str(), a.brand.as_deref()),
        ("pp-1", Some("DemoPay"))
    );
    q.complete(&PaymentKey("s1-0".into())).await.unwrap();
    // Told again: nothing changes, nothing is returned.
    tell(&q, "s1-0", "paid", 250, "pp-1").await;
    assert!(returns(&q).is_empty());
    assert!(q.awaiting("s1-0", None).unwrap().is_none());
}

#[tokio::test]
async fn an_unpaid_code_expires_declined_and_a_late_payment_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let q = qr(dir.path(), Duration::from_millis(300));
    let out = q.authorize(&req("s2-0", 400)).await.unwrap();
    assert!(matches!(out, Outcome::Declined { reason } if reason.contains("not paid in time")));
    tell(&q, "s2-0", "paid", 400, "pp-late").await;
    let r = returns(&q);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["type"], "payment_return");
    assert_eq!(r[0]["reference"], "s2-0");
    assert_eq!(r[0]["provider_ref"], "pp-late");
    assert_eq!(r[0]["amount"], 400);
    assert_eq!(
        q.status(&PaymentKey("s2-0".into())).await.unwrap(),
        KeyStatus::Reversed
    );
}

#[tokio::test]
async fn a_failed_or_cancelled_code_is_declined_and_asking_after_a_restart_says_so() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = qr(dir.path(), Duration::from_secs(60));
        let q2 = q.clone();
        let waiting = tokio::spawn(async move { q2.authorize(&req("s3-0", 100)).await });
        shown(&q, "s3-0").await;
        tell(&q, "s3-0", "failed", 100, "pp-3").await;
        assert!(matches!(
            waiting.await.unwrap().unwrap(),
            Outcome::Declined { reason } if reason.contains("failed")
        ));
        let q3 = q.clone();
        let waiting = tokio::spawn(async move { q3.authorize(&req("s4-0", 100)).await });
        shown(&q, "s4-0").await;
        let st = q.abort(&PaymentKey("s4-0".into())).await.unwrap();
        assert!(matches!(st, KeyStatus::Done(Outcome::Declined { .. })));
        assert!(matches!(
            waiting.await.unwrap().unwrap(),
            Outcome::Declined { .. }
        ));
    }
    // The answers are on disk.
    let q = qr(dir.path(), Duration::from_secs(60));
    for k in ["s3-0", "s4-0"] {
        assert!(matches!(
            q.status(&PaymentKey(k.into())).await.unwrap(),
            KeyStatus::Done(Outcome::Declined { .. })
        ));
    }
    assert_eq!(
        q.status(&PaymentKey("never".into())).await.unwrap(),
        KeyStatus::Unknown
    );
}

#[tokio::test]
async fn a_code_paid_while_the_unit_was_down_is_approved_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = qr(dir.path(), Duration::from_secs(60));
        let q2 = q.clone();
        let waiting = tokio::spawn(async move { q2.authorize(&req("s5-0", 700)).await });
        shown(&q, "s5-0").await;
        waiting.abort();
        let _ = waiting.await;
    }
    let q = qr(dir.path(), Duration::from_secs(60));
    assert_eq!(
        q.status(&PaymentKey("s5-0".into())).await.unwrap(),
        KeyStatus::InProgress
    );
    tell(&q, "s5-0", "paid", 700, "pp-5").await;
    assert!(matches!(
        q.status(&PaymentKey("s5-0".into())).await.unwrap(),
        KeyStatus::Done(Outcome::Approved(_))
    ));
}

#[tokio::test]
async fn wrong_amounts_second_payments_stray_codes_voids_and_refunds_are_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let q = qr(dir.path(), Duration::from_secs(60));
    let q2 = q.clone();
    let waiting = tokio::spawn(async move { q2.authorize(&req("s6-0", 500)).await });
    shown(&q, "s6-0").await;
    tell(&q, "s6-0", "paid", 499, "pp-wrong").await;
    assert!(matches!(
        waiting.await.unwrap().unwrap(),
        Outcome::Declined { .. }
    ));

    let q3 = q.clone();
    let waiting = tokio::spawn(async move { q3.authorize(&req("s7-0", 500)).await });
    shown(&q, "s7-0").await;
    tell(&q, "s7-0", "paid", 500, "pp-a").await;
    assert!(matches!(
        waiting.await.unwrap().unwrap(),
        Outcome::Approved(_)
    ));
    tell(&q, "s7-0", "paid", 500, "pp-b").await;
    tell(&q, "s7-0", "paid", 500, "pp-b").await;
    tell(&q, "nobody-0", "paid", 300, "pp-stray").await;
    tell(&q, "nobody-0", "paid", 300, "pp-stray2").await;
    tell(&q, "nobody-0", "paid", 300, "pp-stray2").await;
    q.void(&PaymentKey("s7-0".into())).await.unwrap();
    q.void(&PaymentKey("s7-0".into())).await.unwrap();
    assert!(matches!(
        q.refund(&req("r1-0", 200)).await.unwrap(),
        Outcome::Approved(_)
    ));
    assert!(matches!(
        q.refund(&req("r1-0", 200)).await.unwrap(),
        Outcome::Approved(_)
    ));
    let got: Vec<(String, Option<String>, i64)> = returns(&q)
        .iter()
        .map(|r| {
            (
                r["reference"].as_str().unwrap().to_owned(),
                r["provider_ref"].as_str().map(str::to_owned),
                r["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("s6-0".into(), Some("pp-wrong".into()), 499),
            ("s7-0".into(), Some("pp-b".into()), 500),
            ("nobody-0".into(), Some("pp-stray".into()), 300),
            ("nobody-0".into(), Some("pp-stray2".into()), 300),
            ("s7-0".into(), Some("pp-a".into()), 500),
            ("r1-0".into(), None, 200),
        ],
        "each returned once"
    );
    // A void of a code never paid, or never issued, is refused.
    let q4 = q.clone();
    let waiting = tokio::spawn(async move { q4.authorize(&req("s9-0", 500)).await });
    shown(&q, "s9-0").await;
    assert!(q.void(&PaymentKey("s9-0".into())).await.is_err());
    q.abort(&PaymentKey("s9-0".into())).await.unwrap();
    assert!(matches!(
        waiting.await.unwrap().unwrap(),
        Outcome::Declined { .. }
    ));
    assert!(q.void(&PaymentKey("s9-0".into())).await.is_err());
    assert!(q.void(&PaymentKey("zz-0".into())).await.is_err());
}

#[tokio::test]
async fn a_forged_notification_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = qr(dir.path(), Duration::from_secs(60));
    let body = br#"{"merchant":"store-1","reference":"s8-0","status":"paid","amount":1,"currency":"EUR","provider_ref":"x"}"#;
    let forged = sign_notification(&Secret::from_hex(&"00".repeat(32)).unwrap(), body);
    assert_eq!(
        q.notify(body, Some(&forged)).await.unwrap(),
        Err(NotificationError::BadSignature)
    );
    assert!(q.get("s8-0").unwrap().is_none());
    assert!(returns(&q).is_empty());
}
