//! A vending site's slots over REST: a technician sets, refills and counts them;
//! bad input is named and changes nothing.

use outpost_security::auth::roles::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, client_with, session_for, spawn_app};

async fn put(app: &TestApp, client: &reqwest::Client, path: &str, body: &Value) -> (u16, Value) {
    let r = client.put(app.url(path)).json(body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn milk(price: i64) -> Value {
    json!({"sku": "MILK", "price": price, "capacity": 12, "par": 6, "climate": "chilled"})
}

#[tokio::test]
async fn a_technician_sets_refills_and_counts_a_slot_and_each_movement_is_journaled() {
    let app = spawn_app().await;
    let (s, v) = put(&app, &app.client, "/api/v1/vending/slots/B7", &milk(180)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["slot"].as_str(), v["count"].as_u64(), v["low"].as_bool()),
        (Some("B7"), Some(0), Some(true))
    );
    assert_eq!(v["climate"], "chilled");

    let (s, m, _) = app
        .post(
            "/api/v1/vending/slots/B7/refill",
            Some("refill-1"),
            &json!({"units": 10}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        (m["kind"].as_str(), m["count_after"].as_u64()),
        (Some("refill"), Some(10))
    );
    // A retry with the same key adds nothing.
    let (s, again, headers) = app
        .post(
            "/api/v1/vending/slots/B7/refill",
            Some("refill-1"),
            &json!({"units": 10}),
        )
        .await;
    assert_eq!((s, again["id"].clone()), (201, m["id"].clone()));
    assert_eq!(headers["idempotent-replayed"], "true");
    // Past capacity is refused and names the field.
    let (s, e, _) = app
        .post(
            "/api/v1/vending/slots/B7/refill",
            Some("refill-2"),
            &json!({"units": 3}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str(), e["field"].as_str()),
        (422, Some("invalid_refill"), Some("units"))
    );

    let (s, v) = put(
        &app,
        &app.client,
        "/api/v1/vending/slots/B7/count",
        &json!({"count": 8, "reason": "two crushed"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["count"], 8);
    let kinds: Vec<&str> = v["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["refill", "count"]);
    assert_eq!(v["movements"][1]["delta"], -2);
    assert_eq!(v["movements"][1]["reason"], "two crushed");
    // The store's stock of the product moved with the count.
    assert_eq!(app.stock("MILK").await, -2);

    let (s, list) = app.get("/api/v1/vending/slots").await;
    assert_eq!(s, 200);
    assert_eq!(list["slots"].as_array().unwrap().len(), 1);
    assert_eq!(list["slots"][0]["price"], 180);
    assert_eq!(list["slots"][0]["low"], false);

    // A slot with units in it cannot be removed; an empty one can.
    let r = app
        .client
        .delete(app.url("/api/v1/vending/slots/B7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    put(
        &app,
        &app.client,
        "/api/v1/vending/slots/B7/count",
        &json!({"count": 0, "reason": "emptied"}),
    )
    .await;
    let r = app
        .client
        .delete(app.url("/api/v1/vending/slots/B7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, _) = app.get("/api/v1/vending/slots/B7").await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test]
async fn each_bad_slot_field_is_named_and_changes_nothing() {
    let app = spawn_app().await;
    put(&app, &app.client, "/api/v1/vending/slots/A1", &milk(150)).await;
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "A1",
            json!({"sku": "MILK", "price": 0, "capacity": 12, "par": 6}),
            422,
            "invalid_slot_config",
            Some("price"),
        ),
        (
            "A1",
            json!({"sku": "MILK", "price": 65001, "capacity": 12, "par": 6}),
            422,
            "invalid_slot_config",
            Some("price"),
        ),
        (
            "A1",
            json!({"sku": "MILK", "price": 100, "capacity": 0, "par": 0}),
            422,
            "invalid_slot_config",
            Some("capacity"),
        ),
        (
            "A1",
            json!({"sku": "MILK", "price": 100, "capacity": 201, "par": 6}),
            422,
            "invalid_slot_config",
            Some("capacity"),
        ),
        (
            "A1",
            json!({"sku": "MILK", "price": 100, "capacity": 12, "par": 13}),
            422,
            "invalid_slot_config",
            Some("par"),
        ),
        (
            "A1",
            json!({"sku": "no spaces", "price": 100, "capacity": 12, "par": 6}),
            422,
            "invalid_slot_config",
            Some("sku"),
        ),
        (
            "A1",
            json!({"sku": "NOPE", "price": 100, "capacity": 12, "par": 6}),
            422,
            "product_not_found",
            Some("sku"),
        ),
        ("A0", milk(100), 400, "invalid_slot", Some("slot")),
        ("a1", milk(100), 400, "invalid_slot", Some("slot")),
    ];
    for (slot, body, status, code, field) in cases {
        let (s, e) = put(
            &app,
            &app.client,
            &format!("/api/v1/vending/slots/{slot}"),
            &body,
        )
        .await;
        assert_eq!(
            (s, e["code"].as_str(), e["field"].as_str()),
            (status, Some(code), field),
            "{body}"
        );
    }
    let (_, v) = app.get("/api/v1/vending/slots/A1").await;
    assert_eq!(v["price"], 150, "nothing changed");
    let (s, e) = put(
        &app,
        &app.client,
        "/api/v1/vending/slots/A1/count",
        &json!({"count": 201}),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (422, Some("count")));
    let (s, e) = put(
        &app,
        &app.client,
        "/api/v1/vending/slots/A1/count",
        &json!({"count": 1, "reason": " "}),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (422, Some("reason")));
    let (s, e, _) = app
        .post(
            "/api/v1/vending/slots/A1/refill",
            None,
            &json!({"units": 1}),
        )
        .await;
    assert_eq!(s, 400, "a refill needs an Idempotency-Key: {e}");
    let (s, _, _) = app
        .post(
            "/api/v1/vending/slots/C3/refill",
            Some("k"),
            &json!({"units": 1}),
        )
        .await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_cashier_terminal_reads_slots_but_cannot_change_them() {
    let app = spawn_app().await;
    put(&app, &app.client, "/api/v1/vending/slots/A1", &milk(150)).await;
    let cashier = client_with(
        "cookie",
        &session_for(&app.security, "sup", vec![Role::Supervisor]),
    );
    let r = cashier
        .get(app.url("/api/v1/vending/slots"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (s, _) = put(&app, &cashier, "/api/v1/vending/slots/A1", &milk(1)).await;
    assert_eq!(s, 403);
    let tech = client_with(
        "cookie",
        &session_for(&app.security, "tech", vec![Role::Technician]),
    );
    let (s, v) = put(&app, &tech, "/api/v1/vending/slots/A1", &milk(175)).await;
    assert_eq!((s, v["price"].as_i64()), (200, Some(175)));
    app.stop().await;
}

#[tokio::test]
async fn the_dex_audit_lists_every_slot_and_only_technicians_and_admins_read_it() {
    let app = spawn_app().await;
    put(&app, &app.client, "/api/v1/vending/slots/B7", &milk(180)).await;
    let r = app
        .client
        .get(app.url("/api/v1/vending/dex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let dex = r.text().await.unwrap();
    assert!(dex.starts_with("DXS*"), "{dex}");
    assert!(
        dex.contains("\r\nPA1*B7*180*MILK\r\nPA2*0*0*0*0\r\n"),
        "{dex}"
    );
    let r = app
        .client
        .post(app.url("/api/v1/vending/dex/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cashier = client_with(
        "cookie",
        &session_for(&app.security, "sup", vec![Role::Supervisor]),
    );
    let r = cashier
        .get(app.url("/api/v1/vending/dex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    app.stop().await;
}

#[tokio::test]
async fn slot_alerts_are_listed_and_a_temperature_clear_without_an_excursion_is_refused() {
    let app = spawn_app().await;
    put(&app, &app.client, "/api/v1/vending/slots/C2", &milk(100)).await;
    let (s, v) = app.get("/api/v1/vending/alerts").await;
    assert_eq!(s, 200);
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{v}");
    assert_eq!(
        (alerts[0]["alert"].as_str(), alerts[0]["subject"].as_str()),
        (Some("slot_empty"), Some("C2"))
    );
    let (s, e, _) = app
        .post("/api/v1/vending/alerts/temperature/clear", None, &json!({}))
        .await;
    assert_eq!((s, e["code"].as_str()), (422, Some("cannot_clear")));
    app.stop().await;
}
