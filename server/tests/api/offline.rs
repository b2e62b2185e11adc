//! The offline exposure cap: card and wallet money the terminal approves while it
//! cannot reach its acquirer (store-and-forward) is capped per store and per card.
//! Past the store cap a tender is refused before the terminal is asked; an offline
//! approval past its card's cap is voided; cash still sells; what the terminal
//! forwards leaves the exposure; the exposure survives a restart. On the scripted mock
//! and on the nexo wire simulator.

use std::net::SocketAddr;

use outpost_mocks::MockTerminal;
use outpost_mocks::sim::payment::{PaymentSim, Recorded, SimOptions as PaySimOptions};
use outpost_server::config::{DeviceSettings, Settings};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_configured, test_settings};

fn capped(dir: &std::path::Path, store: i64, per_card: i64) -> Settings {
    let mut s = test_settings(dir);
    s.payment.offline_store_cap = store;
    s.payment.offline_card_cap = per_card;
    s
}

/// Two milks: 258.
fn cart(method: &str) -> Value {
    json!({"lines":[{"sku":"MILK","quantity":2}],"payment":{"method":method}})
}

fn cash() -> Value {
    json!({"lines":[{"sku":"MILK","quantity":2}],"payment":{"method":"cash","tendered":500}})
}

/// A gauge's value from `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> i64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in the metrics"))
        .parse()
        .unwrap()
}

fn refused(s: u16, v: &Value) {
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("offline_limit_reached")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(message.contains("cannot reach the bank"), "{message}");
}

#[tokio::test]
async fn past_the_store_cap_card_and_wallet_are_refused_up_front_and_cash_still_sells() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_configured(
        capped(dir.path(), 400, 10_000),
        Some(terminal.clone()),
        true,
    )
    .await;
    terminal.set_host_reachable(false);
    let (s, v, _) = app.checkout("off-1", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(terminal.stored().len(), 1, "approved offline and queued");
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 258);
    assert_eq!(gauge(&app, "outpost_offline_exposure_cap_minor").await, 400);
    assert_eq!(gauge(&app, "outpost_offline_approvals").await, 1);

    for (key, method) in [("off-2", "wallet"), ("off-3", "card")] {
        let (s, v, _) = app.checkout(key, &cart(method)).await;
        refused(s, &v);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("to 5.16 EUR (limit 4.00 EUR)"),
            "{v}"
        );
    }
    assert_eq!(
        terminal.net_charged(),
        258,
        "a refused tender never reaches the terminal"
    );
    let (s, v, _) = app.checkout("off-cash", &cash()).await;
    assert_eq!(s, 201, "cash sells above the cap: {v}");

    // The acquirer is back: the terminal forwards, the exposure falls, cards sell.
    assert_eq!(terminal.set_host_reachable(true), 1);
    let (s, v, _) = app.checkout("off-2", &cart("wallet")).await;
    assert_eq!(s, 201, "the refused key was not used up: {v}");
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 0);
    assert_eq!(gauge(&app, "outpost_offline_approvals").await, 0);
    assert_eq!(terminal.double_charges(), 0);
}

#[tokio::test]
async fn an_offline_approval_past_its_cards_cap_is_voided_and_another_card_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_configured(
        capped(dir.path(), 10_000, 300),
        Some(terminal.clone()),
        true,
    )
    .await;
    terminal.set_host_reachable(false);
    terminal.set_card("tok-a");
    let (s, v, _) = app.checkout("card-1", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    // The same card again: 516 > 300 once the terminal says which card it was.
    let (s, v, _) = app.checkout("card-2", &cart("card")).await;
    refused(s, &v);
    assert!(v["message"].as_str().unwrap().contains("this card"), "{v}");
    assert_eq!(
        terminal.net_charged(),
        258,
        "the second approval was reversed"
    );
    assert_eq!(terminal.standing_charges(), 1);
    assert_eq!(
        terminal.stored().len(),
        1,
        "the reversed approval left the queue"
    );
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 258);
    assert_eq!(
        gauge(&app, "outpost_offline_exposure_largest_card_minor").await,
        258
    );
    // Another card under the same key: the key was released, so it sells.
    terminal.set_card("tok-b");
    let (s, v, _) = app.checkout("card-2", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 516);
    assert_eq!(terminal.double_charges(), 0);
}

#[tokio::test]
async fn a_restart_keeps_the_exposure() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_configured(
        capped(dir.path(), 400, 10_000),
        Some(terminal.clone()),
        true,
    )
    .await;
    terminal.set_host_reachable(false);
    let (s, v, _) = app.checkout("rs-1", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    app.stop().await;

    let app = spawn_configured(
        capped(dir.path(), 400, 10_000),
        Some(terminal.clone()),
        false,
    )
    .await;
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 258);
    let (s, v, _) = app.checkout("rs-2", &cart("card")).await;
    refused(s, &v);
    terminal.set_host_reachable(true);
    let (s, v, _) = app.checkout("rs-2", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 0);
}

#[tokio::test]
async fn the_dashboard_shows_the_exposure_against_its_caps() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_configured(capped(dir.path(), 400, 300), Some(terminal.clone()), true).await;
    terminal.set_host_reachable(false);
    let (s, v, _) = app.checkout("dash-1", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    let page = app
        .client
        .get(app.url("/console/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = page
        .split("id=\"offline-exposure\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no exposure line: {page}"));
    let line = &line[..line.find("</dd>").unwrap()];
    assert!(
        line.contains("2.58") && line.contains("4.00") && line.contains("3.00"),
        "{line}"
    );
}

fn nexo_settings(dir: &std::path::Path, terminal: SocketAddr) -> Settings {
    let mut s = capped(dir, 10_000, 300);
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
async fn on_the_nexo_wire_offline_approvals_are_capped_per_card_and_fall_when_forwarded() {
    let pay = PaymentSim::start(([127, 0, 0, 1], 0).into(), PaySimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_configured(nexo_settings(dir.path(), pay.local_addr()), None, true).await;
    pay.set_host_reachable(false);
    pay.set_card("tok-wire");
    let (s, v, _) = app.checkout("wire-1", &cart("wallet")).await;
    assert_eq!(s, 201, "{v}");
    let first = v["tenders"][0]["payment_key"].as_str().unwrap().to_owned();
    assert_eq!(pay.stored(), std::slice::from_ref(&first));
    // The same wallet again is over its card cap: approved, then reversed.
    let (s, v, _) = app.checkout("wire-2", &cart("card")).await;
    refused(s, &v);
    assert_eq!(
        pay.stored(),
        std::slice::from_ref(&first),
        "the reversed one is not forwarded"
    );
    assert_eq!(pay.total_charges(), 2);
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 258);
    // The acquirer comes back: the queue is forwarded and the exposure falls.
    assert_eq!(pay.set_host_reachable(true), 1);
    let (s, v, _) = app.checkout("wire-3", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(pay.recorded(&first), Some(Recorded::Charged));
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 0);
    assert_eq!(pay.double_charges(), 0);
}

#[tokio::test]
async fn what_the_terminal_forwards_leaves_the_exposure_without_another_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_configured(
        capped(dir.path(), 10_000, 10_000),
        Some(terminal.clone()),
        true,
    )
    .await;
    terminal.set_host_reachable(false);
    let (s, v, _) = app.checkout("fw-1", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(gauge(&app, "outpost_offline_exposure_minor").await, 258);
    terminal.set_host_reachable(true);
    // The recovery pass (every second here) asks the terminal; bounded wait.
    let mut left = -1;
    for _ in 0..50 {
        left = gauge(&app, "outpost_offline_exposure_minor").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0);
}

#[tokio::test]
async fn an_offline_approval_past_its_cards_cap_found_by_recovery_is_voided() {
    let dir = tempfile::tempdir().unwrap();
    let terminal = MockTerminal::new();
    let app = spawn_configured(
        capped(dir.path(), 10_000, 300),
        Some(terminal.clone()),
        true,
    )
    .await;
    terminal.set_host_reachable(false);
    let (s, v, _) = app.checkout("rc-1", &cart("card")).await;
    assert_eq!(s, 201, "{v}");
    // The same card again, and the server dies while the terminal approves offline.
    terminal.script([outpost_mocks::Script::ChargeAndHang]);
    let (client, url) = (app.client.clone(), app.url("/api/v1/checkout"));
    let hung = tokio::spawn(async move {
        client
            .post(url)
            .header("Idempotency-Key", "rc-2")
            .json(&cart("card"))
            .send()
            .await
    });
    for _ in 0..100 {
        if terminal.standing_charges() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(terminal.standing_charges(), 2);
    app.stop().await;
    hung.abort();

    // Recovery finds the approval, keeps it in the exposure, finds the card over its
    // cap and voids it; the key is released.
    let app = spawn_configured(
        capped(dir.path(), 10_000, 300),
        Some(terminal.clone()),
        false,
    )
    .await;
    let mut left = 0;
    for _ in 0..100 {
        left = terminal.standing_charges();
        if left == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(left, 1, "the over-cap approval was reversed");
    assert_eq!(terminal.net_charged(), 258);
    terminal.set_card("tok-other");
    let mut answer = (0, Value::Null);
    for _ in 0..100 {
        let (s, v, _) = app.checkout("rc-2", &cart("card")).await;
        answer = (s, v);
        if answer.0 != 409 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        answer.0, 201,
        "the released key sells with another card: {}",
        answer.1
    );
    assert_eq!(terminal.double_charges(), 0);
}
