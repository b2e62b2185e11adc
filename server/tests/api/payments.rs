//! Card payments: the state machine around a terminal that declines, times out, loses
//! its answer, or dies with the server mid-payment.

use std::time::Duration;

use outpost_mocks::{MockTerminal, Script};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_at};

fn card_cart() -> serde_json::Value {
    json!({"lines":[{"sku":"MILK","quantity":2}],"payment":{"method":"card"}})
}

#[tokio::test]
async fn an_approved_card_pays_and_shows_on_the_receipt() {
    let app = spawn_app().await;
    let (s, v, _) = app.checkout("c-1", &card_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["tenders"][0]["method"], "card");
    assert_eq!(v["tenders"][0]["card"]["last4"], "4242");
    assert_eq!(app.terminal.net_charged(), 258);
    assert!(v["receipt_text"].as_str().unwrap().contains("4242"));
}

#[tokio::test]
async fn a_decline_is_the_answer_for_that_key() {
    let app = spawn_app().await;
    app.terminal
        .script([Script::Decline("insufficient funds".into())]);
    let (s, v, _) = app.checkout("d-1", &card_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("payment_declined")),
        "{v}"
    );
    let (s, _, h) = app.checkout("d-1", &card_cart()).await;
    assert_eq!(s, 402);
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.terminal.net_charged(), 0);
    assert_eq!(app.terminal.pending_steps(), 0);
    let (_, list) = app.get("/api/v1/sales").await;
    assert!(list["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_lost_response_is_resolved_by_asking_not_by_charging_again() {
    let app = spawn_app().await;
    app.terminal.script([Script::LostResponse]);
    let (s, v, _) = app.checkout("lost-1", &card_cart()).await;
    assert_eq!(s, 201, "{v}");
    let key = v["tenders"][0]["payment_key"].as_str().unwrap();
    assert_eq!(app.terminal.charge_count(key), 1);
    assert_eq!(app.terminal.double_charges(), 0);
    let (s, v2, h) = app.checkout("lost-1", &card_cart()).await;
    assert_eq!((s, &v2["sale_id"]), (201, &v["sale_id"]));
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.terminal.charge_count(key), 1);
}

#[tokio::test]
async fn a_timeout_that_never_reached_the_terminal_frees_the_key() {
    let app = spawn_app().await;
    app.terminal.script([Script::Timeout]);
    let (s, v, _) = app.checkout("t-1", &card_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("payment_terminal_unavailable")),
        "{v}"
    );
    assert_eq!(app.terminal.net_charged(), 0);
    let (s, v, _) = app.checkout("t-1", &card_cart()).await;
    assert_eq!(s, 201, "the retry with the same key pays: {v}");
    assert_eq!(app.terminal.net_charged(), 258);
}

#[tokio::test]
async fn an_unreachable_terminal_leaves_the_payment_in_doubt_until_it_answers() {
    let app = spawn_app().await;
    app.terminal.script([Script::LostResponse]);
    app.terminal.set_status_offline(true);
    let (s, v, _) = app.checkout("doubt-1", &card_cart()).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("payment_outcome_unknown")),
        "{v}"
    );
    let (s, v, _) = app.checkout("doubt-1", &card_cart()).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("in_progress")), "{v}");
    app.terminal.set_status_offline(false);
    // The server's periodic recovery pass (every second in tests) resolves it.
    assert!(
        wait_until_no_pending_payments(&app).await,
        "recovery resolved the payment"
    );
    let (s, v, _) = app.checkout("doubt-1", &card_cart()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(app.terminal.double_charges(), 0);
    assert_eq!(app.terminal.net_charged(), 258);
}

/// Polls the metrics until no payment is pending: at most 30 s (the recovery pass runs
/// every second; a loaded CI machine can be slow to schedule it).
async fn wait_until_no_pending_payments(app: &crate::helpers::TestApp) -> bool {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_second_card_declined_voids_the_first() {
    let app = spawn_app().await;
    app.terminal
        .script([Script::Approve, Script::Decline("do not honour".into())]);
    let body = json!({"lines":[{"sku":"SOAP","quantity":2}],"payments":[{"method":"card","amount":300},{"method":"card"}]});
    let (s, v, _) = app.checkout("split-1", &body).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("payment_declined")),
        "{v}"
    );
    assert_eq!(
        app.terminal.standing_charges(),
        0,
        "the first card was voided"
    );
    assert_eq!(app.terminal.net_charged(), 0);
}

#[tokio::test]
async fn split_card_and_cash() {
    let app = spawn_app().await;
    let body = json!({"lines":[{"sku":"SOAP","quantity":2}],"payments":[{"method":"card","amount":300},{"method":"cash","tendered":1000}]});
    let (s, v, _) = app.checkout("split-2", &body).await;
    assert_eq!(s, 201, "{v}");
    // 2 x 399 = 798 less 10 % (80) = 718: 300 by card, 418 cash, 582 change.
    assert_eq!(
        (v["total"].as_i64(), v["change"].as_i64()),
        (Some(718), Some(582))
    );
    assert_eq!(app.terminal.net_charged(), 300);
}

#[tokio::test]
async fn a_server_killed_mid_payment_finishes_the_sale_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_app_at(dir.path(), terminal.clone(), true).await;
    terminal.script([Script::ChargeAndHang]);
    let client = app.client.clone();
    let url = app.url("/api/v1/checkout");
    let hung = tokio::spawn(async move {
        client
            .post(url)
            .header("Idempotency-Key", "crash-1")
            .json(&card_cart())
            .send()
            .await
    });
    // Wait until the terminal has charged: the server is now waiting for an answer
    // that will never come.
    for _ in 0..100 {
        if terminal.standing_charges() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(terminal.standing_charges(), 1);
    app.stop().await;
    hung.abort();
    // Restart on the same data dir: recovery asks the terminal about the key.
    let app = spawn_app_at(dir.path(), terminal.clone(), false).await;
    let mut answer = None;
    for _ in 0..100 {
        let (s, v, _) = app.checkout("crash-1", &card_cart()).await;
        if s != 409 {
            answer = Some((s, v));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = answer.expect("recovery resolves the payment");
    assert_eq!(s, 201, "{v}");
    assert_eq!(terminal.double_charges(), 0);
    assert_eq!(terminal.standing_charges(), 1);
    let (_, list) = app.get("/api/v1/sales").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}
