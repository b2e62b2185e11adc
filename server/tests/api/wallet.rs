//! Wallet tenders (Apple Pay, Google Pay, ... on a phone or watch) through the payment
//! terminal: the same payment state machine as a card, the terminal told to take only
//! wallets, the wallet's brand on the tender and the receipt; split with cash and card;
//! refunded the same way. On the scripted mock and on the nexo wire simulator.

use std::net::SocketAddr;

use outpost_mocks::Script;
use outpost_mocks::sim::payment::{Mode, PaymentSim, SimOptions as PaySimOptions};
use outpost_peripherals::payment::Instrument;
use outpost_server::config::{DeviceSettings, Settings};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_configured, test_settings};

fn wallet_cart() -> Value {
    json!({"lines":[{"sku":"MILK","quantity":2}],"payment":{"method":"wallet"}})
}

fn key_of(v: &Value, i: usize) -> String {
    v["tenders"][i]["payment_key"]
        .as_str()
        .unwrap_or_else(|| panic!("tender {i} has no payment key: {v}"))
        .to_owned()
}

async fn refund_all(app: &TestApp, sale: &Value, key: &str) -> Value {
    let id = sale["sale_id"].as_str().unwrap();
    let (s, r, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some(key),
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    r
}

#[tokio::test]
async fn a_wallet_pays_through_the_terminal_taking_only_wallets() {
    let app = spawn_app().await;
    app.terminal.set_wallet("GooglePay");
    let (s, v, _) = app.checkout("w-1", &wallet_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tenders"][0]["method"], "wallet");
    assert_eq!(v["tenders"][0]["card"]["brand"], "GooglePay");
    let key = key_of(&v, 0);
    assert_eq!(app.terminal.instrument(&key), Some(Instrument::Wallet));
    assert_eq!(app.terminal.charge_count(&key), 1);
    assert_eq!(app.terminal.net_charged(), 258);
    let receipt = v["receipt_text"].as_str().unwrap();
    assert!(receipt.contains("GooglePay ****4242"), "{receipt}");
    assert_eq!(v["receipt"]["tenders"][0]["brand"], "GooglePay");
    // A card tender still lets the terminal take anything.
    let card = json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"card"}});
    let (s, v, _) = app.checkout("w-card", &card).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        app.terminal.instrument(&key_of(&v, 0)),
        Some(Instrument::Any)
    );
}

#[tokio::test]
async fn cash_card_and_wallet_split_one_sale() {
    let app = spawn_app().await;
    let body = json!({"lines":[{"sku":"SOAP","quantity":2}],"payments":[
        {"method":"card","amount":300},
        {"method":"wallet","amount":200},
        {"method":"cash","tendered":1000}]});
    let (s, v, _) = app.checkout("w-split", &body).await;
    assert_eq!(s, 201, "{v}");
    // 718 due: 300 by card, 200 by wallet, 218 of the cash, 782 change.
    let amounts: Vec<_> = (0..3).map(|i| v["tenders"][i]["amount"].as_i64()).collect();
    assert_eq!(amounts, [Some(300), Some(200), Some(218)]);
    assert_eq!(v["change"].as_i64(), Some(782));
    assert_eq!(
        app.terminal.instrument(&key_of(&v, 0)),
        Some(Instrument::Any)
    );
    assert_eq!(
        app.terminal.instrument(&key_of(&v, 1)),
        Some(Instrument::Wallet)
    );
    assert_eq!(v["tenders"][1]["card"]["brand"], "ApplePay");
    assert_eq!(app.terminal.net_charged(), 500);

    // An open wallet takes what cash and card leave.
    let body = json!({"lines":[{"sku":"SOAP","quantity":2}],"payments":[
        {"method":"cash","tendered":100},{"method":"card","amount":18},{"method":"wallet"}]});
    let (s, v, _) = app.checkout("w-split-open", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tenders"][2]["amount"].as_i64(), Some(600));
    assert_eq!(app.terminal.net_charged(), 1118);

    // The refund goes back the way each tender was paid.
    let r = refund_all(&app, &v, "w-split-open-r").await;
    let methods: Vec<_> = r["tenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["method"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(methods, ["card", "wallet", "cash"], "{r}");
    assert_eq!(
        app.terminal.instrument(&key_of(&r, 1)),
        Some(Instrument::Wallet)
    );
    assert_eq!(app.terminal.net_charged(), 500);
    assert_eq!(app.terminal.double_charges(), 0);
}

#[tokio::test]
async fn a_wallet_payment_keeps_the_state_machine_of_a_card() {
    let app = spawn_app().await;
    // Declined: 402, the same answer for the same key, nothing charged.
    app.terminal
        .script([Script::Decline("wallet not set up".into())]);
    let (s, v, _) = app.checkout("w-decl", &wallet_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("payment_declined")),
        "{v}"
    );
    let (s, _, _) = app.checkout("w-decl", &wallet_cart()).await;
    assert_eq!(s, 402);
    assert_eq!(app.terminal.net_charged(), 0);
    // The answer lost after charging: asked about, never charged again.
    app.terminal.script([Script::LostResponse]);
    let (s, v, _) = app.checkout("w-lost", &wallet_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(app.terminal.charge_count(&key_of(&v, 0)), 1);
    assert_eq!(v["tenders"][0]["card"]["brand"], "ApplePay");
    // Its refund is a wallet refund.
    let r = refund_all(&app, &v, "w-lost-r").await;
    assert_eq!(r["tenders"][0]["method"], "wallet");
    assert_eq!(
        app.terminal.instrument(&key_of(&r, 0)),
        Some(Instrument::Wallet)
    );
    assert_eq!(app.terminal.net_charged(), 0);
    app.terminal.done();
    assert_eq!(app.terminal.double_charges(), 0);
}

#[tokio::test]
async fn bad_wallet_tenders_are_refused_and_charge_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!([{"method":"wallet"},{"method":"card"}]),
            "invalid_payment",
        ),
        (json!([{"method":"wallet","amount":0}]), "invalid_payment"),
        (json!([{"method":"wallet","amount":-5}]), "invalid_payment"),
        (json!([{"method":"wallet","amount":100000}]), "overpayment"),
        (
            json!([{"method":"wallet","amount":10}]),
            "insufficient_payment",
        ),
        (
            json!([{"method":"wallet","brand":"ApplePay"}]),
            "unknown_field",
        ),
    ];
    for (i, (payments, code)) in cases.into_iter().enumerate() {
        let body = json!({"lines":[{"sku":"MILK","quantity":2}],"payments":payments});
        let (s, v, _) = app.checkout(&format!("w-bad-{i}"), &body).await;
        assert_eq!(v["code"], code, "{payments}: {v}");
        assert!((400..500).contains(&s), "{payments}: {s}");
    }
    assert_eq!(app.terminal.net_charged(), 0);
}

fn nexo_settings(dir: &std::path::Path, terminal: SocketAddr) -> Settings {
    let mut s = test_settings(dir);
    s.devices = vec![DeviceSettings {
        id: "pay-1".into(),
        kind: "payment".into(),
        driver: "nexo-tcp".into(),
        address: Some(terminal.to_string()),
        request_timeout_secs: Some(5),
        io_timeout_ms: Some(1_000),
        ..DeviceSettings::default()
    }];
    s.payment.timeout_secs = 5;
    s
}

#[tokio::test]
async fn a_wallet_sale_and_its_refund_on_the_nexo_wire() {
    let pay = PaymentSim::start(([127, 0, 0, 1], 0).into(), PaySimOptions::default())
        .await
        .unwrap();
    pay.set_wallet("GooglePay");
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_configured(nexo_settings(dir.path(), pay.local_addr()), None, true).await;
    let body = json!({"lines":[{"sku":"SOAP","quantity":2}],"payments":[
        {"method":"card","amount":300},{"method":"wallet"}]});
    pay.next([Mode::Approve, Mode::LoseResponse]);
    let (s, v, _) = app.checkout("nexo-w-1", &body).await;
    assert_eq!(s, 201, "{v}");
    let (card, wallet) = (key_of(&v, 0), key_of(&v, 1));
    assert_eq!(pay.brand(&card).as_deref(), Some("VISA"));
    assert_eq!(pay.brand(&wallet).as_deref(), Some("GooglePay"));
    assert_eq!(v["tenders"][1]["card"]["brand"], "GooglePay");
    assert_eq!(
        pay.charge_count(&wallet),
        1,
        "the lost answer was asked about"
    );
    assert!(v["receipt_text"].as_str().unwrap().contains("GooglePay"));
    // A wallet the terminal was not told to allow is declined at the terminal.
    pay.set_wallet("PayPal");
    let (s, d, _) = app.checkout("nexo-w-2", &wallet_cart()).await;
    assert_eq!(
        (s, d["code"].as_str()),
        (402, Some("payment_declined")),
        "{d}"
    );
    // The refund goes back to the wallet it came from.
    pay.set_wallet("GooglePay");
    let r = refund_all(&app, &v, "nexo-w-1-r").await;
    assert_eq!(r["tenders"][1]["method"], "wallet");
    assert_eq!(pay.brand(&key_of(&r, 1)).as_deref(), Some("GooglePay"));
    assert_eq!(pay.double_charges(), 0);
}
