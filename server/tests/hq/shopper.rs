//! A shopper's sale (with the customer of their loyalty card) and the money QR
//! payments give back reach HQ exactly once, across an HQ outage: the sale paid on the
//! phone, a second payment of the same code and a
//! payment of a cancelled code (both to be paid back through HQ), and the provider's
//! redeliveries, which change nothing.

use outpost_mocks::hq::Faults;
use outpost_mocks::wallet::WalletProvider;
use outpost_proto::hq::EnvelopeKind;
use serde_json::{Value, json};

use crate::helpers::{eventually, outbox_pending, product, settings, snapshot, spawn_with};
use crate::uplink::start_hq;

const SECRET: &str = "4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d";

async fn call(c: &reqwest::Client, method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_shopper_sale_and_qr_money_given_back_reach_hq_once_across_an_outage() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = start_hq(hq_dir.path(), Faults::none()).await;
    let dir = tempfile::tempdir().unwrap();
    let wallet = WalletProvider::start(SECRET, "http://127.0.0.1:9/")
        .await
        .unwrap();
    let key = dir.path().join("qr.key");
    std::fs::write(&key, SECRET).unwrap();
    let mut s = settings(&dir.path().join("data"), Some(hq.url()));
    s.payment.qr.pay_url = Some(wallet.pay_url());
    s.payment.qr.merchant = Some("store-1".into());
    s.payment.qr.secret_file = Some(key);
    let app = spawn_with(s).await;
    wallet.set_notify_url(&format!("{}/api/v1/payments/qr/notifications", app.base));
    snapshot(&app, 1, 3).await;
    // HQ's loyalty: 1 point per euro; customer c-1 with card K-1.
    {
        use outpost_server::domain::loyalty::{Customer, HqBalance, LoyaltyRules};
        use outpost_server::loyalty::push::{self, AccountsPush};
        push::rules(&app.store, 1, LoyaltyRules::parse(1, &[], &[], 1).unwrap())
            .await
            .unwrap();
        let customer = Customer {
            id: "c-1".into(),
            cards: vec!["K-1".into()],
            tier: None,
            points: HqBalance {
                balance: 50,
                ..HqBalance::default()
            },
        };
        let accounts = AccountsPush {
            version: 1,
            snapshot: true,
            customers: vec![customer],
            ..AccountsPush::default()
        };
        push::accounts(&app.store, accounts).await.unwrap();
    }
    // HQ goes away: the store sells on.
    hq.stop().await;

    let (st, qr) = app.get_json("/api/v1/shopper/store-qr").await;
    assert_eq!(st, 200, "{qr}");
    let opened = reqwest::Client::new()
        .post(format!("{}/api/v1/shopper/sessions", app.base))
        .json(&json!({"store_token": qr["store_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 201);
    let cookie = opened.headers()["set-cookie"].to_str().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cookie", cookie.split(';').next().unwrap().parse().unwrap());
    let phone = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", app.base);
    let (st, v) = call(
        &phone,
        "PUT",
        url("/api/v1/shopper/customer"),
        Some(json!({"card": "K-1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let barcode = |i| product(i, 1).barcodes[0].clone();
    let (st, v) = call(
        &phone,
        "POST",
        url("/api/v1/shopper/cart/lines"),
        Some(json!({"barcode": barcode(1), "quantity": 2})),
    )
    .await;
    assert_eq!(st, 200, "{v}");

    // A code cancelled, then paid anyway: to be given back.
    let (_, first) = call(&phone, "POST", url("/api/v1/shopper/checkout"), None).await;
    let cancelled = first["pay_url"].as_str().unwrap().to_owned();
    let (_, v) = call(&phone, "DELETE", url("/api/v1/shopper/checkout"), None).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(wallet.pay(&cancelled).await.unwrap().status, 204);
    // The cart paid for real, then paid a second time: the second to be given back.
    let (_, second) = call(&phone, "POST", url("/api/v1/shopper/checkout"), None).await;
    let paying = second["pay_url"].as_str().unwrap().to_owned();
    assert_eq!(wallet.pay(&paying).await.unwrap().status, 204);
    assert_eq!(wallet.repeat().await.unwrap().status, 204);
    let mut sale_id = Value::Null;
    for _ in 0..100 {
        let (_, v) = call(&phone, "GET", url("/api/v1/shopper/checkout"), None).await;
        if v["status"] == "paid" {
            sale_id = v["sale_id"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(sale_id.is_string(), "never paid");
    assert_eq!(wallet.pay(&paying).await.unwrap().status, 204);
    assert_eq!(wallet.repeat().await.unwrap().status, 204);
    assert_eq!(wallet.sent().len(), 5);

    // HQ back: everything drains once.
    hq.start().await.unwrap();
    let base = app.base.clone();
    eventually(60, "the outbox to drain", || {
        let base = base.clone();
        async move { outbox_pending(&base).await == 0 }
    })
    .await;
    let sales = hq.received_kind("unit-1", EnvelopeKind::Sale);
    assert_eq!(sales.len(), 1, "one sale, once");
    let sale: Value = serde_json::from_slice(&sales[0].json).unwrap();
    assert_eq!(sale["id"], sale_id);
    assert_eq!(sale["terminal_id"], "shopper");
    assert_eq!(sale["tenders"][0]["method"], "qr");
    assert_eq!(sale["customer_id"], "c-1", "{sale}");
    assert_eq!(sale["loyalty"]["points_earned"], 2, "{sale}");
    let returns: Vec<Value> = hq
        .received_kind("unit-1", EnvelopeKind::PaymentReturn)
        .iter()
        .map(|e| serde_json::from_slice(&e.json).unwrap())
        .collect();
    assert_eq!(returns.len(), 2, "{returns:?}");
    for r in &returns {
        assert_eq!(r["type"], "payment_return");
        assert_eq!(r["amount"], 2 * 101);
        assert!(r["provider_ref"].is_string());
    }
    assert_ne!(returns[0]["reference"], returns[1]["reference"]);
    assert_ne!(returns[0]["provider_ref"], returns[1]["provider_ref"]);
    app.stop().await;
    hq.shutdown().await.unwrap();
}
