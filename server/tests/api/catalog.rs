//! Catalog lookups and search.

use serde_json::Value;

use crate::helpers::spawn_app;

/// The SKUs of a page of products, in order.
fn skus(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn products_by_sku_barcode_and_search() {
    let app = spawn_app().await;
    let (s, v) = app.get("/api/v1/products/MILK").await;
    assert_eq!((s, v["name"].as_str()), (200, Some("Whole Milk 1 L")));
    let (s, v) = app.get("/api/v1/products/NOPE").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("product_not_found")));
    // A UPC-A and its EAN-13 form (leading 0) find the same product.
    for code in ["036000291452", "0036000291452"] {
        let (s, v) = app.get(&format!("/api/v1/products?barcode={code}")).await;
        assert_eq!(s, 200);
        assert_eq!(v["items"][0]["sku"], "BEER", "{code}");
    }
    let (s, v) = app.get("/api/v1/products?barcode=4006381333932").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_barcode")));
    // "Milk Milkshake" matches "milk" twice but is listed once.
    let (_, v) = app.get("/api/v1/products?q=milk").await;
    assert_eq!(skus(&v), ["MILK", "SHAKE"]);
    let (_, v) = app
        .get("/api/v1/products?q=milk&category=dairy&limit=1")
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, v2) = app
        .get(&format!(
            "/api/v1/products?q=milk&category=dairy&limit=1&cursor={}",
            v["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(v2["items"][0]["sku"], "SHAKE");
    let (_, v) = app.get("/api/v1/products?q=lav%20so").await;
    assert_eq!(v["items"][0]["sku"], "SOAP");
    let (_, v) = app.get("/api/v1/products?category=household").await;
    assert_eq!(skus(&v), ["OLD", "SOAP"]);
}

#[tokio::test]
async fn listing_pages_with_a_cursor_visit_every_product_once() {
    let app = spawn_app().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/products?limit=2&cursor={c}"),
            None => "/api/v1/products?limit=2".into(),
        };
        let (s, v) = app.get(&path).await;
        assert_eq!(s, 200, "{v}");
        seen.extend(skus(&v));
        match &v["next_cursor"] {
            Value::String(c) => cursor = Some(c.clone()),
            _ => break,
        }
    }
    assert_eq!(
        seen,
        ["APPLES", "BEER", "BREAD", "MILK", "OLD", "SHAKE", "SOAP"]
    );
}

#[tokio::test]
async fn promotions_active_now_and_at_a_time() {
    let app = spawn_app().await;
    let (_, v) = app.get("/api/v1/promotions").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, v) = app.get("/api/v1/promotions?at=2010-01-01T00:00:00Z").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (s, v) = app.get("/api/v1/promotions?at=yesterday").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_time")));
}
