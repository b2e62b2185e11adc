//! Points and vouchers beside a card (docs/loyalty.md): held while the terminal
//! decides, redeemed with the sale, given back when the card is declined; refused
//! refunds of redeemed sales; a card sale with a customer prints its points.

use outpost_mocks::Script;
use outpost_server::domain::loyalty::{Customer, HqBalance, LoyaltyRules, Voucher};
use outpost_server::loyalty::push::{self, AccountsPush};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn with_customer() -> TestApp {
    let app = spawn_app().await;
    let rules = LoyaltyRules::parse(1, &[], &[], 1).unwrap();
    push::rules(&app.store, 1, rules).await.unwrap();
    let balance = |balance, allowance| HqBalance {
        balance,
        allowance,
        ..HqBalance::default()
    };
    push::accounts(
        &app.store,
        AccountsPush {
            version: 1,
            snapshot: true,
            customers: vec![Customer {
                id: "c-1".into(),
                cards: vec!["K-1".into()],
                tier: None,
                points: balance(1_000, 300),
            }],
            vouchers: vec![Voucher {
                id: "v-1".into(),
                code: "GIFT-1".into(),
                balance: balance(500, 500),
            }],
            ..AccountsPush::default()
        },
    )
    .await
    .unwrap();
    app
}

async fn unseen(app: &TestApp) -> i64 {
    let (s, v) = app.get("/api/v1/customers?card=K-1").await;
    assert_eq!(s, 200, "{v}");
    v["points"]["unseen_redeemed"].as_i64().unwrap()
}

fn points_and_card(points: i64) -> Value {
    json!({
        "lines": [{"sku": "MILK", "quantity": 2}],
        "customer": {"card": "K-1"},
        "payments": [{"method": "points", "amount": points}, {"method": "card"}]
    })
}

#[tokio::test]
async fn points_beside_a_card_are_held_then_redeemed_or_given_back() {
    let app = with_customer().await;
    // Approved: the sale redeems the points and the card pays the rest.
    let (s, v, _) = app.checkout("pc-1", &points_and_card(100)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tenders"][0]["method"], "points");
    assert_eq!(v["tenders"][1]["amount"], 258 - 100);
    assert_eq!(app.terminal.net_charged(), 158);
    assert_eq!(v["loyalty"]["points_redeemed"], 100);
    assert!(
        v["receipt_text"]
            .as_str()
            .unwrap()
            .contains("Points redeemed")
    );
    assert_eq!(unseen(&app).await, 100);

    // Declined: nothing is redeemed, the hold is given back.
    app.terminal
        .script([Script::Decline("insufficient funds".into())]);
    let (s, v, _) = app.checkout("pc-2", &points_and_card(100)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("payment_declined")),
        "{v}"
    );
    assert_eq!(unseen(&app).await, 100);

    // Over what is left of the allowance (200): refused before the terminal is asked.
    let (s, v, _) = app.checkout("pc-3", &points_and_card(201)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("offline_limit_reached")),
        "{v}"
    );
    assert_eq!(app.terminal.net_charged(), 158);
    assert_eq!(unseen(&app).await, 100);

    // A voucher beside a card, then the refund of that sale is refused.
    let body = json!({
        "lines": [{"sku": "BREAD", "quantity": 1}],
        "payments": [{"method": "voucher", "code": "GIFT-1", "amount": 200}, {"method": "card"}]
    });
    let (s, v, _) = app.checkout("pc-4", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["loyalty"]["vouchers"][0]["balance"], 300);
    let id = v["sale_id"].as_str().unwrap();
    let (s, v, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some("rf-1"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("refund_not_supported")),
        "{v}"
    );
}

#[tokio::test]
async fn a_card_sale_with_a_customer_prints_the_points_it_earned() {
    let app = with_customer().await;
    let body = json!({
        "lines": [{"sku": "SOAP", "quantity": 3}],
        "customer": {"id": "c-1"},
        "payment": {"method": "card"}
    });
    let (s, v, _) = app.checkout("earn-1", &body).await;
    assert_eq!(s, 201, "{v}");
    // 1 point per whole EUR of the line's total after its promotion.
    let line_total = v["lines"][0]["total"].as_i64().unwrap();
    let earned = line_total / 100;
    assert!(earned > 0);
    assert_eq!(v["loyalty"]["points_earned"], earned, "{v}");
    assert_eq!(v["loyalty"]["points_balance"], 1_000 + earned);
    let text = v["receipt_text"].as_str().unwrap();
    let balance = (1_000 + earned).to_string();
    assert!(
        text.contains("Points earned") && text.contains(&balance),
        "{text}"
    );
    let (_, c) = app.get("/api/v1/customers?id=c-1").await;
    assert_eq!(c["points"]["balance"], 1_000 + earned);
}

/// Polls the metrics until no payment is pending (recovery runs every second in
/// tests): at most 30 s.
async fn no_pending_payments(app: &TestApp) -> bool {
    for _ in 0..300 {
        let m = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("outpost_payments_pending 0") {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A card that never reached the terminal gives the points back with the key; a card
/// whose answer was lost keeps them held until recovery records the sale, which then
/// redeems them once.
#[tokio::test]
async fn held_points_follow_the_payment_through_a_timeout_and_a_recovery() {
    let app = with_customer().await;
    app.terminal.script([Script::Timeout]);
    let (s, v, _) = app.checkout("hold-1", &points_and_card(100)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("payment_terminal_unavailable")),
        "{v}"
    );
    assert_eq!(unseen(&app).await, 0, "nothing charged, nothing held");
    let (s, v, _) = app.checkout("hold-1", &points_and_card(100)).await;
    assert_eq!(s, 201, "the retry pays: {v}");
    assert_eq!(unseen(&app).await, 100);

    app.terminal.script([Script::LostResponse]);
    app.terminal.set_status_offline(true);
    let (s, v, _) = app.checkout("hold-2", &points_and_card(100)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("payment_outcome_unknown")),
        "{v}"
    );
    // Held while the payment is in doubt: no other checkout may spend it.
    assert_eq!(unseen(&app).await, 200);
    let (s, v, _) = app.checkout("hold-3", &points_and_card(101)).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("offline_limit_reached")),
        "{v}"
    );
    app.terminal.set_status_offline(false);
    assert!(
        no_pending_payments(&app).await,
        "recovery resolved the payment"
    );
    let (s, v, _) = app.checkout("hold-2", &points_and_card(100)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["loyalty"]["points_redeemed"], 100);
    // Redeemed once: the hold became the redemption.
    assert_eq!(unseen(&app).await, 200);
    assert_eq!(app.terminal.double_charges(), 0);
}
