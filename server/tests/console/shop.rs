//! The shopper page (`/shop/`): its HTTP contract, and in a real headless Chromium at
//! a phone's viewport the flow from the store QR's URL to a priced cart with a
//! promotion. Screenshots land in `$CARGO_TARGET_TMPDIR/shop-screenshots/`.

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};
use crate::webdriver::{Browser, available};

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shop-screenshots")
}

async fn store_qr_url(app: &TestApp) -> String {
    let (s, v) = app.get("/api/v1/shopper/store-qr").await;
    assert_eq!(s, 200, "{v}");
    v["url"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_page_is_served_in_the_shoppers_language_with_strict_headers() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for (lang, title) in [("en", "Scan and go"), ("ru-RU,ru;q=0.9", "Сканируй и иди")] {
        let r = http
            .get(app.url("/shop/?t=x"))
            .header("accept-language", lang)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let h = r.headers().clone();
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        let body = r.text().await.unwrap();
        assert!(body.contains(title), "{lang}: {body}");
        assert!(body.contains("Test Store"));
        // Every asset is this unit's own.
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{body}"
        );
        // No session cookie: the script is told to open one.
        assert!(body.contains("data-session=\"\""), "{body}");
    }
    for asset in [
        outpost_server::shop::CSS_PATH,
        outpost_server::shop::JS_PATH,
    ] {
        let r = http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{asset}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let r = http
        .get(app.url("/shop/assets/other.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// Adds `code` through the page's barcode field and waits for the line count and the
/// status line that says the scan was taken.
pub(crate) async fn type_barcode(b: &Browser, code: &str, lines: usize) {
    // The status line is what says this scan was taken: clear the last one's.
    b.script("document.getElementById('status').textContent = ''; return null;")
        .await;
    let input = b.find("#barcode").await;
    b.type_into(&input, code).await;
    b.click(&b.find("#add button[type=submit]").await).await;
    assert!(
        b.wait_for(
            &format!("document.querySelectorAll('#lines li').length === {lines} && document.getElementById('status').textContent.length > 0"),
            10
        )
        .await,
        "{code}: {}",
        b.text("#status").await
    );
}

#[tokio::test]
async fn a_phone_opens_the_store_qr_and_builds_a_cart_with_a_promotion() {
    if !available("a_phone_opens_the_store_qr_and_builds_a_cart_with_a_promotion") {
        return;
    }
    let app = spawn_app().await;
    let url = store_qr_url(&app).await;
    let shots = screenshots();
    let b = Browser::start_phone("en", 390, 844).await;
    b.goto(&url).await;
    assert!(
        b.wait_for(
            "document.getElementById('shop').classList.contains('ready')",
            15
        )
        .await,
        "{}",
        b.text("#status").await
    );
    // The token left the address bar once used.
    assert_eq!(b.url().await, app.url("/shop/"));
    assert!(b.text("#empty").await.contains("Your cart is empty"));
    // The camera where the browser reads barcodes, else a note saying to type.
    let detector = b.script("return 'BarcodeDetector' in window;").await == Value::Bool(true);
    assert_eq!(b.script("return window.innerWidth;").await, 390);
    let scan_shown = b
        .script("return !document.getElementById('scan').hidden;")
        .await;
    assert_eq!(scan_shown, Value::Bool(detector));
    if !detector {
        assert!(b.text("#scanner .note").await.contains("type the barcode"));
    }
    b.screenshot(&shots.join("en-1-empty.png")).await;

    // Milk, then three breads: "Bread 3 for 2".
    type_barcode(&b, "4006381333931", 1).await;
    type_barcode(&b, "96385074", 2).await;
    type_barcode(&b, "96385074", 2).await;
    type_barcode(&b, "96385074", 2).await;
    assert!(
        b.wait_for(
            "document.querySelector('#lines li:nth-child(2) .promo') !== null",
            5
        )
        .await
    );
    let promo = b.text("#lines li:nth-child(2) .promo").await;
    assert!(
        promo.contains("Bread 3 for 2") && promo.contains("2.50"),
        "{promo}"
    );
    assert!(
        b.text("#lines li:nth-child(2) .name")
            .await
            .starts_with("3 × Rye Bread")
    );
    assert_eq!(b.text("#total").await, "€6.29");
    assert_eq!(b.text("#discounts").await, "−€2.50");
    b.screenshot(&shots.join("en-2-cart.png")).await;
    // Milk again goes into its line, and the page says which.
    type_barcode(&b, "4006381333931", 2).await;
    assert!(
        b.wait_for(
            "document.getElementById('status').textContent.includes('2 × Whole Milk')",
            5
        )
        .await,
        "{}",
        b.text("#status").await
    );
    assert_eq!(b.text("#total").await, "€7.58");

    // An unknown barcode: said so, the cart unchanged.
    let input = b.find("#barcode").await;
    b.type_into(&input, "0000000000000").await;
    b.click(&b.find("#add button[type=submit]").await).await;
    assert!(
        b.wait_for(
            "document.getElementById('status').classList.contains('bad')",
            5
        )
        .await
    );
    assert!(
        b.text("#status")
            .await
            .contains("No product with this barcode")
    );
    assert_eq!(b.count("#lines li").await, 2);
    b.screenshot(&shots.join("en-3-unknown.png")).await;

    // Remove the milk.
    b.click(&b.find("#lines li:nth-child(1) .remove").await)
        .await;
    assert!(
        b.wait_for("document.querySelectorAll('#lines li').length === 1", 5)
            .await
    );
    assert_eq!(b.text("#total").await, "€5.00");
    // The server agrees: the session's cart is the page's.
    let (_, sales) = app.get("/api/v1/sales").await;
    assert_eq!(
        sales["items"],
        serde_json::json!([]),
        "nothing is sold without paying"
    );

    // A reload keeps the session and its cart (the cookie, not the token).
    b.goto(&app.url("/shop/")).await;
    assert!(
        b.wait_for(
            "document.getElementById('shop').classList.contains('ready')",
            10
        )
        .await
    );
    assert_eq!(b.count("#lines li").await, 1);
    b.screenshot(&shots.join("en-4-reloaded.png")).await;
    let errors: Vec<String> = b
        .console_log()
        .await
        .into_iter()
        .filter(|l| l.starts_with("SEVERE"))
        .collect();
    // The unknown barcode's 422 is the one failed request, expected.
    assert!(
        errors.iter().all(|e| e.contains("422")) && errors.len() <= 1,
        "{errors:?}"
    );
    drop(b);

    // In Russian.
    let url = store_qr_url(&app).await;
    let b = Browser::start_phone("ru", 390, 844).await;
    b.goto(&url).await;
    assert!(
        b.wait_for(
            "document.getElementById('shop').classList.contains('ready')",
            15
        )
        .await
    );
    type_barcode(&b, "96385074", 1).await;
    assert!(b.text("h1").await.contains("Сканируй и иди"));
    assert!(b.text("#lines .remove").await.contains("Убрать"));
    b.screenshot(&shots.join("ru-cart.png")).await;
}
