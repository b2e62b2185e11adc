//! Selling: pricing with promotions and taxes, checkout, idempotency.

use serde_json::json;

use outpost_server::domain::variable_measure::{MeasureKind, VariableMeasureRule};

use crate::helpers::{spawn_app, spawn_configured, test_settings};

fn cart() -> serde_json::Value {
    json!({"lines":[{"sku":"MILK","quantity":2},{"barcode":"96385074","quantity":3},{"sku":"SOAP"}],
           "payment":{"method":"cash","tendered":2000}})
}

#[tokio::test]
async fn pricing_applies_promotions_and_taxes_per_class() {
    let app = spawn_app().await;
    let (s, v, _) = app
        .post(
            "/api/v1/carts/price",
            None,
            &json!({"lines": cart()["lines"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["subtotal"], 1407);
    assert_eq!(
        v["discount_total"], 290,
        "3-for-2 on bread (250) + 10 % on soap (40)"
    );
    assert_eq!(v["total"], 1117);
    // JSON has one number type: 2.0 is the quantity 2 (JSON Schema's integer agrees).
    let (s2, v2, _) = app
        .post(
            "/api/v1/carts/price",
            None,
            &json!({"lines":[{"sku":"MILK","quantity":2.0},{"barcode":"96385074","quantity":3.0},{"sku":"SOAP"}]}),
        )
        .await;
    assert_eq!((s2, &v2["total"]), (200, &v["total"]), "{v2}");
    let taxes = v["taxes"].as_array().unwrap();
    let reduced = taxes.iter().find(|t| t["tax_class"] == "reduced").unwrap();
    let standard = taxes.iter().find(|t| t["tax_class"] == "standard").unwrap();
    assert_eq!(
        (reduced["base"].as_i64(), reduced["tax"].as_i64()),
        (Some(758), Some(50))
    );
    assert_eq!(
        (standard["base"].as_i64(), standard["tax"].as_i64()),
        (Some(359), Some(57))
    );
    assert_eq!(v["lines"][1]["promotion_id"], "bread-3for2");
}

#[tokio::test]
async fn cash_checkout_records_sale_stock_and_receipt() {
    let app = spawn_app().await;
    let before = app.stock("MILK").await;
    let (s, v, h) = app.checkout("k-1", &cart()).await;
    assert_eq!(s, 201, "{v}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(v["status"], "completed");
    assert_eq!(v["total"], 1117);
    assert_eq!(v["change"], 883);
    assert!(
        v["receipt_text"].as_str().unwrap().contains("Whole Milk"),
        "{}",
        v["receipt_text"]
    );
    assert_eq!(app.stock("MILK").await, before - 2);
    let id = v["sale_id"].as_str().unwrap();
    let (s, got) = app.get(&format!("/api/v1/sales/{id}")).await;
    assert_eq!(s, 200);
    assert_eq!(got["total"], 1117);
    let (_, list) = app.get("/api/v1/sales?limit=10").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn weight_items_sell_by_grams() {
    let app = spawn_app().await;
    let body = json!({"lines":[{"sku":"APPLES","weight_grams":350}],"payment":{"method":"cash","tendered":500}});
    let (s, v, _) = app.checkout("w-1", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["total"], 122, "349/kg x 0.350 kg = 122.15 -> 122");
    let (s, v, _) = app.checkout("w-2", &json!({"lines":[{"sku":"APPLES","quantity":2}],"payment":{"method":"cash","tendered":500}})).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("weight_required")));
}

/// A weight label from the store's scale (GS1 variable measure, prefix 21, 5 item
/// digits, grams): the till scans it, the server finds the product by its base
/// barcode and sells the weight on the label.
#[tokio::test]
async fn a_scale_label_barcode_sells_the_weight_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.store.variable_measure = vec![VariableMeasureRule {
        prefix: "21".into(),
        item_digits: 5,
        value: MeasureKind::Grams,
    }];
    let app = spawn_configured(settings, None, true).await;
    // 2100349 01250 9: APPLES (base barcode 2100349000001), 1,250 g.
    let label = "2100349012509";
    let (s, v, _) = app
        .post(
            "/api/v1/carts/price",
            None,
            &json!({"lines":[{"barcode":label}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lines"][0]["quantity"], json!({"grams": 1250}), "{v}");
    let body = json!({"lines":[{"barcode":label}],"payment":{"method":"cash","tendered":1000}});
    let (s, v, _) = app.checkout("label-1", &body).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["total"], 436, "349/kg x 1.250 kg = 436.25 -> 436: {v}");
    assert_eq!(app.stock("APPLES").await, -1250);

    // The label carries the weight: no other quantity, no scale.
    for (line, code) in [
        (
            json!({"barcode":label,"weight_grams":100}),
            "invalid_quantity",
        ),
        (json!({"barcode":label,"quantity":1}), "invalid_quantity"),
        (
            json!({"barcode":label,"scale":"scale-1"}),
            "invalid_quantity",
        ),
        // 0 g on the label.
        (json!({"barcode":"2100349000001"}), "invalid_barcode"),
        // A bad check digit is a misread, as for any barcode.
        (json!({"barcode":"2100349012508"}), "invalid_barcode"),
    ] {
        let body = json!({"lines":[line],"payment":{"method":"cash","tendered":1000}});
        let (s, v, _) = app.checkout(&format!("label-bad-{line}"), &body).await;
        assert_eq!((s, v["code"].as_str()), (422, Some(code)), "{line}: {v}");
    }
    // An item code no product has (22 is not a configured prefix: an ordinary code).
    let (s, v, _) = app
        .checkout(
            "label-unknown",
            &json!({"lines":[{"barcode":"2100999012508"}],"payment":{"method":"cash","tendered":1000}}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("unknown_product")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("weight label"),
        "{v}"
    );
    assert_eq!(app.stock("APPLES").await, -1250, "nothing more was sold");
}

#[tokio::test]
async fn without_a_rule_a_scale_label_is_an_ordinary_unknown_barcode() {
    let app = spawn_app().await;
    let body =
        json!({"lines":[{"barcode":"2100349012509"}],"payment":{"method":"cash","tendered":1000}});
    let (s, v, _) = app.checkout("label-no-rule", &body).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("unknown_product")),
        "{v}"
    );
}

#[tokio::test]
async fn a_retry_returns_the_first_sale() {
    let app = spawn_app().await;
    let (s1, v1, _) = app.checkout("same", &cart()).await;
    let (s2, v2, h2) = app.checkout("same", &cart()).await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(v1["sale_id"], v2["sale_id"]);
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    let (_, list) = app.get("/api/v1/sales").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = spawn_app().await;
    app.checkout("k", &cart()).await;
    let mut other = cart();
    other["lines"][0]["quantity"] = json!(5);
    let (s, v, _) = app.checkout("k", &other).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
}

#[tokio::test]
async fn fifty_concurrent_requests_with_one_key_make_one_sale() {
    let app = std::sync::Arc::new(spawn_app().await);
    let before = app.stock("MILK").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.checkout("one-key", &cart()).await
        }));
    }
    let mut created = 0;
    let mut sale_ids = std::collections::HashSet::new();
    for t in tasks {
        let (s, v, _) = t.await.unwrap();
        match s {
            201 => {
                created += 1;
                sale_ids.insert(v["sale_id"].as_str().unwrap().to_owned());
            }
            409 => assert_eq!(v["code"], "in_progress"),
            other => panic!("unexpected status {other}: {v}"),
        }
    }
    assert!(created >= 1);
    assert_eq!(sale_ids.len(), 1, "every 201 names the same sale");
    let (_, list) = app.get("/api/v1/sales").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(app.stock("MILK").await, before - 2, "stock moved once");
}

#[tokio::test]
async fn zero_stock_never_blocks_a_sale() {
    let app = spawn_app().await;
    let r = app
        .client
        .put(app.url("/api/v1/inventory/SOAP"))
        .json(&json!({"stock":1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v, _) = app.checkout("z", &json!({"lines":[{"sku":"SOAP","quantity":2}],"payment":{"method":"cash","tendered":1000}})).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(app.stock("SOAP").await, -1);
    let (_, inv) = app.get("/api/v1/inventory/SOAP").await;
    let kinds: Vec<_> = inv["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["count", "sale"]);
}

#[tokio::test]
async fn adjustments_are_idempotent_and_journaled() {
    let app = spawn_app().await;
    let body = json!({"delta":-2,"reason":"damaged"});
    let (s1, m1, _) = app
        .post("/api/v1/inventory/MILK/adjustments", Some("adj-1"), &body)
        .await;
    let (s2, m2, h2) = app
        .post("/api/v1/inventory/MILK/adjustments", Some("adj-1"), &body)
        .await;
    assert_eq!((s1, s2), (201, 201), "{m1} {m2}");
    assert_eq!(m1["id"], m2["id"]);
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.stock("MILK").await, -2);
    let (s, v, _) = app
        .post("/api/v1/inventory/MILK/adjustments", None, &body)
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("idempotency_key_required"))
    );
}

#[tokio::test]
async fn age_restricted_products_need_a_check() {
    let app = spawn_app().await;
    let mut body = json!({"lines":[{"sku":"BEER"}],"payment":{"method":"cash","tendered":500}});
    let (s, v, _) = app.checkout("age-1", &body).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("age_verification_required"))
    );
    body["age_verified"] = json!(true);
    let (s, _, _) = app.checkout("age-2", &body).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn every_sale_writes_an_outbox_entry_for_hq() {
    let app = spawn_app().await;
    app.checkout("o-1", &cart()).await;
    let r = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // One sale and three stock movements.
    assert!(r.contains("outpost_outbox_pending 4"), "{r}");
}

/// A count that found the stock right, sent again with its key after a sale (a
/// double-pressed button, a retry), stays the first count: the sale is not counted
/// away as a difference.
#[tokio::test]
async fn a_count_that_moved_nothing_replayed_after_a_sale_moves_nothing() {
    let app = spawn_app().await;
    let put = |key: &'static str, stock: i64| {
        app.client
            .put(app.url("/api/v1/inventory/SOAP"))
            .header("Idempotency-Key", key)
            .json(&json!({ "stock": stock }))
            .send()
    };
    assert_eq!(put("count-1", 5).await.unwrap().status(), 200);
    assert_eq!(
        put("count-2", 5).await.unwrap().status(),
        200,
        "matches: nothing moves"
    );
    let (s, v, _) = app
        .checkout(
            "after-count",
            &json!({"lines":[{"sku":"SOAP","quantity":1}],"payment":{"method":"cash","tendered":1000}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(app.stock("SOAP").await, 4);
    assert_eq!(put("count-2", 5).await.unwrap().status(), 200);
    assert_eq!(
        app.stock("SOAP").await,
        4,
        "the replay must not count the sale away"
    );
    // The same key for another count is refused.
    assert_eq!(put("count-2", 7).await.unwrap().status(), 422);
    assert_eq!(app.stock("SOAP").await, 4);
}
