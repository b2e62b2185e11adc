//! Bad input of every kind gets a clear 4xx with a stable code, never a 5xx.

use serde_json::json;

use crate::helpers::spawn_app;

async fn raw(
    app: &crate::helpers::TestApp,
    body: &str,
    content_type: &str,
) -> (u16, serde_json::Value) {
    let r = app
        .client
        .post(app.url("/api/v1/checkout"))
        .header("Idempotency-Key", format!("bad-{}", uuid::Uuid::now_v7()))
        .header("Content-Type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap())
}

#[tokio::test]
async fn malformed_bodies_name_their_fault() {
    let app = spawn_app().await;
    let cases: &[(&str, u16, &str, Option<&str>)] = &[
        ("{\"lines\":[", 400, "malformed_json", None),
        (
            "{\"lines\":[],\"tip\":5}",
            400,
            "unknown_field",
            Some("tip"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\",\"quantity\":\"two\"}]}",
            400,
            "invalid_type",
            Some("lines[0].quantity"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\",\"quantity\":-1}]}",
            400,
            "invalid_value",
            Some("lines[0].quantity"),
        ),
        (
            "{\"payment\":{\"method\":\"cash\",\"tendered\":1}}",
            400,
            "missing_field",
            Some("lines"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\",\"quantity\":1000000}],\"payment\":{\"method\":\"cash\",\"tendered\":1}}",
            422,
            "invalid_quantity",
            Some("lines[0]"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\",\"quantity\":0}],\"payment\":{\"method\":\"cash\",\"tendered\":1}}",
            422,
            "invalid_quantity",
            Some("lines[0]"),
        ),
        (
            "{\"lines\":[{\"sku\":\"NOPE\"}],\"payment\":{\"method\":\"cash\",\"tendered\":1}}",
            422,
            "unknown_product",
            Some("lines[0]"),
        ),
        (
            "{\"lines\":[{\"sku\":\"OLD\"}],\"payment\":{\"method\":\"cash\",\"tendered\":1000}}",
            422,
            "product_inactive",
            Some("lines[0]"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\",\"barcode\":\"96385074\"}],\"payment\":{\"method\":\"cash\",\"tendered\":1000}}",
            422,
            "invalid_line",
            Some("lines[0]"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\"}],\"payment\":{\"method\":\"cash\",\"tendered\":100}}",
            422,
            "insufficient_payment",
            Some("payment"),
        ),
        (
            "{\"lines\":[{\"sku\":\"MILK\"}],\"payment\":{\"method\":\"bitcoin\"}}",
            400,
            "invalid_value",
            Some("payment.method"),
        ),
        (
            "{\"lines\":[],\"payment\":{\"method\":\"cash\",\"tendered\":1}}",
            422,
            "empty_cart",
            Some("lines"),
        ),
        ("\"just a string\"", 400, "invalid_type", None),
    ];
    for (body, status, code, field) in cases {
        let (s, v) = raw(&app, body, "application/json").await;
        assert_eq!(
            (s, v["code"].as_str()),
            (*status, Some(*code)),
            "{body} -> {v}"
        );
        assert_eq!(v["field"].as_str(), *field, "{body} -> {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn wrong_content_type_and_oversized_bodies() {
    let app = spawn_app().await;
    let (s, v) = raw(&app, "lines=1", "application/x-www-form-urlencoded").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let big = format!(
        "{{\"lines\":[{}]}}",
        vec!["{\"sku\":\"MILK\"}"; 10_000].join(",")
    );
    let (s, v) = raw(&app, &big, "application/json").await;
    assert_eq!((s, v["code"].as_str()), (413, Some("payload_too_large")));
}

#[tokio::test]
async fn headers_queries_and_paths_are_checked() {
    let app = spawn_app().await;
    let body = json!({"lines":[{"sku":"MILK"}],"payment":{"method":"cash","tendered":1000}});
    let (s, v, _) = app.post("/api/v1/checkout", None, &body).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("idempotency_key_required"))
    );
    let (s, v, _) = app.checkout(&"x".repeat(300), &body).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );
    let (s, v) = app.get("/api/v1/products?limit=0").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_limit")));
    let (s, v) = app.get("/api/v1/products?limit=abc").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_query")));
    let (s, v) = app.get("/api/v1/products?colour=red").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_query")));
    let (s, v) = app.get("/api/v1/products?cursor=!!!").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_cursor")));
    // Every string of the cursor's documented pattern is a position.
    let (s, _) = app.get("/api/v1/products?cursor=AB").await;
    assert_eq!(s, 200);
    let (s, v) = app.get("/api/v1/products?cursor=A").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_cursor")));
    let (s, v) = app.get("/api/v1/products?q=").await;
    assert_eq!(
        (s, v["code"].as_str(), v["field"].as_str()),
        (400, Some("invalid_query"), Some("q"))
    );
    let (s, _) = app.get("/api/v1/sales?cursor=AAAAAAAAAAAAAAAAAAAAAw").await;
    assert_eq!(s, 200);
    let (s, v) = app.get("/api/v1/sales?cursor=0").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_cursor")));
    // A filter another one makes moot is still checked.
    let (s, v) = app.get("/api/v1/products?barcode=96385074&q=").await;
    assert_eq!((s, v["field"].as_str()), (400, Some("q")));
    let (s, v) = app.get("/api/v1/products?barcode=96385074&cursor=A").await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_cursor")));
    let (s, v) = app
        .get("/api/v1/sales?cursor=AAAAAAAAAAAAAAAAAAAAAw&since=yesterday")
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_time")));
    let (s, v) = app
        .get("/api/v1/planogram?sku=MILK&cursor=no%20spaces")
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("invalid_sku")));
    let (s, v) = app.get("/api/v1/sales/not-a-uuid").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("sale_not_found")));
    let (s, v) = app.get("/api/v1/nothing-here").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("no_such_route")));
    // A path the API serves, with a method it does not: 405 and what it does serve.
    for (method, path, allow) in [
        (reqwest::Method::GET, "/api/v1/checkout".to_owned(), "POST"),
        (
            reqwest::Method::DELETE,
            "/api/v1/checkout".to_owned(),
            "POST",
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/sales/00000000-0000-0000-0000-000000000000".to_owned(),
            "GET",
        ),
        (reqwest::Method::POST, "/healthz".to_owned(), "GET"),
        (
            reqwest::Method::DELETE,
            "/api/v1/inventory/MILK".to_owned(),
            "GET, PUT",
        ),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(
            r.headers().get("allow").and_then(|h| h.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "method_not_allowed");
    }
    let r = app
        .client
        .put(app.url("/api/v1/inventory/MILK"))
        .json(&json!({"stock":-5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .put(app.url("/api/v1/inventory/NOPE"))
        .json(&json!({"stock":5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_failed_request_changes_nothing() {
    let app = spawn_app().await;
    let before = app.stock("MILK").await;
    let (s, _, _) = app.checkout("bad", &json!({"lines":[{"sku":"MILK"},{"sku":"NOPE"}],"payment":{"method":"cash","tendered":1000}})).await;
    assert_eq!(s, 422);
    assert_eq!(app.stock("MILK").await, before);
    let (_, list) = app.get("/api/v1/sales").await;
    assert!(list["items"].as_array().unwrap().is_empty());
    // The key was not used up by the failed request.
    let (s, _, _) = app
        .checkout(
            "bad",
            &json!({"lines":[{"sku":"MILK"}],"payment":{"method":"cash","tendered":1000}}),
        )
        .await;
    assert_eq!(s, 201);
}
