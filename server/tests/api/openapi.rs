//! The OpenAPI document and the served routes are the same set.

use serde_json::json;

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

/// The document says what validation refuses: a generated client cannot build a
/// request the server turns down for a reason the document hides.
#[tokio::test]
async fn the_document_states_the_constraints_the_server_checks() {
    let app = spawn_app().await;
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    let param = |path: &str, method: &str, name: &str| {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has no {name}"))["schema"]
            .clone()
    };
    assert_eq!(param("/api/v1/products", "get", "limit")["minimum"], 1);
    assert_eq!(param("/api/v1/products", "get", "limit")["maximum"], 200);
    assert_eq!(
        param("/api/v1/products", "get", "barcode")["pattern"],
        "^([0-9]{8}|[0-9]{12,14})$"
    );
    assert_eq!(param("/api/v1/products", "get", "q")["minLength"], 1);
    assert_eq!(
        param("/api/v1/devices/{id}/scans", "get", "wait_ms")["maximum"],
        30000
    );
    assert_eq!(
        param("/api/v1/sales", "get", "since")["format"],
        "date-time"
    );
    assert_eq!(
        param("/api/v1/promotions", "get", "at")["format"],
        "date-time"
    );
    assert_eq!(
        param("/api/v1/products", "get", "barcode")["format"],
        "gtin",
        "the check digit is a format the conformance run knows"
    );
    assert_eq!(param("/api/v1/products", "get", "q")["maxLength"], 200);
    assert_eq!(
        param("/api/v1/products", "get", "cursor")["pattern"],
        "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$"
    );
    assert_eq!(
        param("/api/v1/sales", "get", "cursor")["pattern"],
        "^[A-Za-z0-9_-]{21}[AQgw]$"
    );
    assert_eq!(
        param("/api/v1/planogram", "get", "sku")["pattern"],
        "^[A-Za-z0-9._-]{1,64}$"
    );
    assert_eq!(
        param("/api/v1/checkout", "post", "Idempotency-Key")["pattern"],
        "^[!-~]{1,255}$"
    );
    // A checkout links to its sale, refunds and reprint by `sale_id`.
    let links = &doc["paths"]["/api/v1/checkout"]["post"]["responses"]["201"]["links"];
    for (name, op) in [
        ("GetSale", "get_sale"),
        ("Refund", "post_refund"),
        ("Reprint", "reprint"),
    ] {
        assert_eq!(links[name]["operationId"], op);
        assert_eq!(links[name]["parameters"]["id"], "$response.body#/sale_id");
        assert!(doc["paths"].as_object().unwrap().values().any(|item| {
            item.as_object()
                .unwrap()
                .values()
                .any(|o| o["operationId"] == op)
        }));
    }
    let schemas = &doc["components"]["schemas"];
    let checkout = &schemas["CheckoutRequest"]["allOf"];
    assert_eq!(checkout[0]["properties"]["lines"]["minItems"], 1);
    // `payment` or `payments`, not both: one of them absent or null.
    let either = checkout[1]["anyOf"].as_array().unwrap();
    assert_eq!(either[0]["properties"]["payment"]["type"], "null");
    assert_eq!(either[1]["properties"]["payments"]["type"], "null");
    // A line: exactly one of `sku` or `barcode`.
    let line = &schemas["LineRequest"]["allOf"];
    assert_eq!(line[0]["properties"]["barcode"]["format"], "gtin");
    let one = line[1]["oneOf"].as_array().unwrap();
    assert_eq!(one[0]["required"], serde_json::json!(["sku"]));
    assert_eq!(one[0]["properties"]["barcode"]["type"], "null");
    assert_eq!(one[1]["required"], serde_json::json!(["barcode"]));
    assert_eq!(one[1]["properties"]["sku"]["type"], "null");
    assert_eq!(schemas["CartRequest"]["properties"]["lines"]["minItems"], 1);
    let slot = &schemas["SlotBody"]["properties"];
    assert_eq!(
        (&slot["price"]["minimum"], &slot["price"]["maximum"]),
        (&json!(1), &json!(65000))
    );
    assert_eq!(
        (&slot["capacity"]["minimum"], &slot["capacity"]["maximum"]),
        (&json!(1), &json!(200))
    );
    assert_eq!(slot["sku"]["pattern"], "^[A-Za-z0-9._-]{1,64}$");
    assert_eq!(schemas["RefillBody"]["properties"]["units"]["minimum"], 1);
    assert_eq!(schemas["RefillBody"]["properties"]["units"]["maximum"], 200);
    assert_eq!(schemas["CountBody"]["properties"]["count"]["maximum"], 200);
    assert_eq!(
        schemas["CountBody"]["properties"]["reason"]["maxLength"],
        200
    );
    for (path, method) in [
        ("/api/v1/vending/slots/{slot}", "put"),
        ("/api/v1/vending/slots/{slot}/refill", "post"),
    ] {
        assert_eq!(param(path, method, "slot")["pattern"], "^[A-Z][1-9][0-9]?$");
    }
    // Every operation that needs credentials documents 401 and 403; every one with a
    // body, 400, 413 and 415.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let codes = op["responses"].as_object().unwrap();
            let public = op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r.as_object().is_some_and(|o| o.is_empty()))
            });
            if !public {
                for c in ["401", "403"] {
                    assert!(codes.contains_key(c), "{method} {path} lacks {c}");
                }
            }
            if op.get("requestBody").is_some() {
                for c in ["400", "413", "415"] {
                    assert!(codes.contains_key(c), "{method} {path} lacks {c}");
                }
            }
        }
    }
}
