//! The OpenAPI document and the served routes are the same set.

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_documented_route_is_served_and_every_served_route_is_documented() {
    let app = spawn_app().await;
    let (s, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(s, 200);
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            // Fill path parameters with a value and call the route: the router must
            // know it (any answer but `no_such_route`).
            let concrete = path
                .replace("{sku}", "MILK")
                .replace("{id}", "00000000-0000-0000-0000-000000000000");
            let req = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete));
            let r = req
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            assert!(
                body["code"] != "no_such_route" && body["code"] != "method_not_allowed",
                "{method} {path} is documented but not served"
            );
            assert!(status < 500, "{method} {path} answered {status}");
        }
    }
    assert_eq!(
        operations,
        outpost_server::http::ROUTE_COUNT,
        "every registered handler is documented exactly once"
    );
    for required in [
        "/healthz",
        "/metrics",
        "/api/v1/checkout",
        "/api/v1/products/{sku}",
        "/api/v1/sales/{id}/refunds",
    ] {
        assert!(
            paths.contains_key(required),
            "{required} missing from the document"
        );
    }
}
