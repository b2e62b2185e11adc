//! Refunds: whole or chosen lines, idempotent, never more than was sold.

use serde_json::json;

use crate::helpers::spawn_app;

async fn sell(app: &crate::helpers::TestApp, key: &str, payment: serde_json::Value) -> String {
    let body = json!({"lines":[{"sku":"MILK","quantity":3},{"sku":"SOAP"}],"payment":payment});
    let (s, v, _) = app.checkout(key, &body).await;
    assert_eq!(s, 201, "{v}");
    v["sale_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn partial_then_rest_adds_up_to_the_sale() {
    let app = spawn_app().await;
    let id = sell(&app, "s1", json!({"method":"cash","tendered":5000})).await;
    let before = app.stock("MILK").await;
    let path = format!("/api/v1/sales/{id}/refunds");
    let (s, r1, _) = app
        .post(
            &path,
            Some("r1"),
            &json!({"lines":[{"line":1,"quantity":1}],"reason":"leaking"}),
        )
        .await;
    assert_eq!(s, 201, "{r1}");
    assert_eq!(r1["total"], 129);
    assert_eq!(app.stock("MILK").await, before + 1);
    let (s, r1b, h) = app
        .post(
            &path,
            Some("r1"),
            &json!({"lines":[{"line":1,"quantity":1}],"reason":"leaking"}),
        )
        .await;
    assert_eq!((s, &r1b["id"]), (201, &r1["id"]));
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(
        app.stock("MILK").await,
        before + 1,
        "the retry moved no stock"
    );
    let (s, v, _) = app
        .post(
            &path,
            Some("r2"),
            &json!({"lines":[{"line":1,"quantity":3}]}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("refund_exceeds_sale")));
    let (s, rest, _) = app.post(&path, Some("r3"), &json!({})).await;
    assert_eq!(s, 201, "{rest}");
    let (_, sale) = app.get(&format!("/api/v1/sales/{id}")).await;
    assert_eq!(sale["status"], "refunded");
    let refunded = r1["total"].as_i64().unwrap() + rest["total"].as_i64().unwrap();
    assert_eq!(refunded, sale["total"].as_i64().unwrap());
    let (s, v, _) = app.post(&path, Some("r4"), &json!({})).await;
    assert_eq!((s, v["code"].as_str()), (422, Some("nothing_to_refund")));
}

#[tokio::test]
async fn card_sales_are_refunded_to_the_card() {
    let app = spawn_app().await;
    let id = sell(&app, "s2", json!({"method":"card"})).await;
    let charged = app.terminal.net_charged();
    assert!(charged > 0);
    let (s, r, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some("rc"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["tenders"][0]["method"], "card");
    assert_eq!(app.terminal.net_charged(), 0);
}

#[tokio::test]
async fn refunds_of_unknown_sales_and_lines() {
    let app = spawn_app().await;
    let (s, v, _) = app
        .post(
            "/api/v1/sales/0190aaaa-0000-7000-8000-000000000000/refunds",
            Some("x"),
            &json!({}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("sale_not_found")));
    let id = sell(&app, "s3", json!({"method":"cash","tendered":5000})).await;
    let (s, v, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some("y"),
            &json!({"lines":[{"line":9}]}),
        )
        .await;
    assert_eq!((s, v["code"].as_str()), (422, Some("no_such_line")));
}
