//! Paying on the phone, in a real headless Chromium at a phone's viewport: from the
//! store QR and a loyalty card to three products with a promotion, the wallet's pay
//! page (the provider on loopback), back to the shop with the exit code and the
//! points earned, the sale sold to the card's customer, and the exit check of that
//! code. Screenshots land in `$CARGO_TARGET_TMPDIR/shop-screenshots/`.

use std::path::PathBuf;

use crate::helpers::spawn_with_wallet;
use crate::shop::type_barcode as scan;
use crate::webdriver::{Browser, available};

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shop-screenshots")
}

#[tokio::test]
async fn a_phone_pays_its_cart_in_the_wallet_and_gets_the_exit_code() {
    if !available("a_phone_pays_its_cart_in_the_wallet_and_gets_the_exit_code") {
        return;
    }
    let (app, wallet, _dir) = spawn_with_wallet().await;
    crate::helpers::seed_loyalty(&app.store).await;
    let shots = screenshots();
    let (s, qr) = app.get("/api/v1/shopper/store-qr").await;
    assert_eq!(s, 200, "{qr}");
    let b = Browser::start_phone("en", 390, 844).await;
    b.goto(qr["url"].as_str().unwrap()).await;
    assert!(
        b.wait_for(
            "document.getElementById('shop').classList.contains('ready')",
            15
        )
        .await,
        "{}",
        b.text("#status").await
    );
    // Nothing to pay yet.
    assert_eq!(
        b.script("return document.getElementById('pay').hidden;")
            .await,
        true
    );
    // The shopper's loyalty card.
    let card = b.find("#card").await;
    b.type_into(&card, "K-1").await;
    b.click(&b.find("#loyalty button[type=submit]").await).await;
    assert!(
        b.wait_for(
            "document.getElementById('card-status').textContent.includes('1000')",
            10
        )
        .await,
        "{}",
        b.text("#status").await
    );
    // Three products by barcode: milk, soap, and bread three times ("Bread 3 for 2").
    scan(&b, "4006381333931", 1).await;
    scan(&b, "4006381333955", 2).await;
    for _ in 0..3 {
        scan(&b, "96385074", 3).await;
    }
    assert!(
        b.text("#lines li:nth-child(3) .promo")
            .await
            .contains("Bread 3 for 2")
    );
    // 1.29 + 3.59 (soap 10 % off) + 5.00.
    assert_eq!(b.text("#total").await, "€9.88");
    b.screenshot(&shots.join("pay-1-cart.png")).await;

    // Pay: the phone goes to the wallet's page.
    b.click(&b.find("#pay").await).await;
    assert!(
        b.wait_for("document.getElementById('reference') !== null", 15)
            .await,
        "still at {}",
        b.url().await
    );
    assert!(b.url().await.starts_with(&wallet.pay_url()));
    assert_eq!(b.text("#amount").await, "9.88 EUR");
    b.screenshot(&shots.join("pay-2-wallet.png")).await;
    b.click(&b.find("#pay").await).await;

    // Back at the shop: paid, with the exit code.
    assert!(
        b.wait_for(
            "document.getElementById('paid') && !document.getElementById('paid').hidden",
            20
        )
        .await,
        "at {}: {}",
        b.url().await,
        b.text("#status").await
    );
    assert_eq!(b.url().await, app.url("/shop/"));
    assert_eq!(b.text("#paid-total").await, "€9.88");
    // 9.88 € at 1 point per euro.
    assert_eq!(b.text("#paid-points").await, "Points earned: 9");
    assert!(
        b.wait_for(
            "document.getElementById('exit-qr').complete && document.getElementById('exit-qr').naturalWidth > 0",
            5
        )
        .await
    );
    assert_eq!(b.count("#lines li").await, 0, "the paid cart is emptied");
    b.screenshot(&shots.join("pay-3-paid.png")).await;
    let code = b
        .script("return document.getElementById('exit-qr').dataset.code;")
        .await;
    let code = code.as_str().unwrap().to_owned();

    // The sale is in the journal once, and the exit check shows it.
    assert_eq!(wallet.sent().len(), 1);
    assert_eq!(wallet.sent()[0].status, 204);
    let (_, check) = app.get(&format!("/api/v1/exit-checks/{code}")).await;
    assert_eq!(check["total"], 988, "{check}");
    assert_eq!(check["cart"]["lines"].as_array().unwrap().len(), 3);
    let (_, sales) = app.get("/api/v1/sales").await;
    let items = sales["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{sales}");
    assert_eq!(items[0]["terminal_id"], "shopper");
    let (_, sale) = app
        .get(&format!(
            "/api/v1/sales/{}",
            items[0]["sale_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(sale["customer_id"], "c-1", "{sale}");

    // A reload keeps showing the code.
    b.goto(&app.url("/shop/")).await;
    assert!(
        b.wait_for("!document.getElementById('paid').hidden", 10)
            .await
    );
    let errors: Vec<String> = b
        .console_log()
        .await
        .into_iter()
        .filter(|l| l.starts_with("SEVERE"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[tokio::test]
async fn a_phone_cancels_a_payment_and_pays_again_in_russian() {
    if !available("a_phone_cancels_a_payment_and_pays_again_in_russian") {
        return;
    }
    let (app, _wallet, _dir) = spawn_with_wallet().await;
    let shots = screenshots();
    let (_, qr) = app.get("/api/v1/shopper/store-qr").await;
    let b = Browser::start_phone("ru", 390, 844).await;
    b.goto(qr["url"].as_str().unwrap()).await;
    assert!(
        b.wait_for(
            "document.getElementById('shop').classList.contains('ready')",
            15
        )
        .await
    );
    let input = b.find("#barcode").await;
    b.type_into(&input, "4006381333931").await;
    b.click(&b.find("#add button[type=submit]").await).await;
    assert!(
        b.wait_for("!document.getElementById('pay').hidden", 10)
            .await
    );
    assert!(b.text("#pay").await.contains("Оплатить"));
    // At the wallet, the shopper cancels there: back at the shop, told it failed.
    b.click(&b.find("#pay").await).await;
    assert!(
        b.wait_for("document.getElementById('cancel') !== null", 15)
            .await
    );
    b.click(&b.find("#cancel").await).await;
    assert!(
        b.wait_for(
            "document.getElementById('status') && document.getElementById('status').classList.contains('bad')",
            20
        )
        .await,
        "{}",
        b.url().await
    );
    assert!(b.text("#status").await.contains("Оплата не прошла"));
    assert!(
        b.wait_for("!document.getElementById('pay').hidden", 10)
            .await
    );
    b.screenshot(&shots.join("pay-ru-failed.png")).await;
    // The cart is the shopper's again.
    assert_eq!(b.count("#lines li").await, 1);
    let (_, sales) = app.get("/api/v1/sales").await;
    assert_eq!(sales["items"], serde_json::json!([]));
}
