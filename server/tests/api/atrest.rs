//! Encryption at rest through the public surface: after a day of selling (receipts
//! printed and queued, refunds, stock counts and adjustments, promotions, a catalog
//! import and a price-only merge into the overlay), no file of the data dir shows a
//! product name, a category, a promotion, a price list or receipt text.

use std::net::SocketAddr;

use outpost_mocks::sim::escpos::{EscPosSim, SimOptions};
use outpost_security::testing::{all_bytes, contains as find};
use outpost_server::config::DeviceSettings;
use outpost_server::domain::product::parse_product_json;
use outpost_server::store::{ImportMode, StoreOptions};
use serde_json::json;

use crate::helpers::{PRODUCTS, spawn_configured, test_settings};

#[tokio::test]
async fn after_a_day_of_selling_no_business_string_is_readable_in_the_data_dir() {
    let sim = EscPosSim::start(SocketAddr::from(([127, 0, 0, 1], 0)), SimOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    s.receipts.retry_ms = 200;
    s.receipts.print_wait_ms = 3_000;
    s.devices = vec![DeviceSettings {
        id: "printer-1".into(),
        kind: "printer".into(),
        driver: "escpos-tcp".into(),
        address: Some(sim.local_addr().to_string()),
        io_timeout_ms: Some(1_000),
        connect_timeout_ms: Some(1_000),
        ..DeviceSettings::default()
    }];
    let settings = s.clone();
    // Seeding is a catalog import plus the promotions.
    let app = spawn_configured(s, None, true).await;

    let cart = json!({"lines":[{"sku":"MILK","quantity":2},{"sku":"BREAD","quantity":3},{"sku":"SOAP"}],
                      "payment":{"method":"cash","tendered":5000}});
    let (st, sale, _) = app.checkout("walrus-idem-1", &cart).await;
    assert_eq!(st, 201, "{sale}");
    assert_eq!(sale["receipt_status"], "printed", "{sale}");
    assert!(sim.last_receipt().unwrap().contains("Whole Milk 1 L"));
    let id = sale["sale_id"].as_str().unwrap().to_owned();
    // Out of paper: the next receipt waits in the durable queue.
    sim.paper_out_after(2);
    let (st, sale2, _) = app.checkout("walrus-idem-2", &cart).await;
    assert_eq!(st, 201, "{sale2}");
    assert_eq!(sale2["receipt_status"], "queued", "{sale2}");
    let (st, r, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some("walrus-refund-1"),
            &json!({"lines":[{"line":1,"quantity":1}],"reason":"leaking carton"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let (st, m, _) = app
        .post(
            "/api/v1/inventory/SOAP/adjustments",
            Some("walrus-adj-1"),
            &json!({"delta":-1,"reason":"dropped on the floor"}),
        )
        .await;
    assert_eq!(st, 201, "{m}");
    let r = app
        .client
        .put(app.url("/api/v1/inventory/MILK"))
        .header("Idempotency-Key", "walrus-count-1")
        .json(&json!({"stock": 40}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let (st, q) = app.get("/api/v1/receipts/queue").await;
    assert_eq!((st, q["total"].as_u64()), (200, Some(1)), "{q}");
    drop(app.stop().await);

    // A price-only merge (the overlay) on the stopped server's data dir.
    {
        let (store, _security) =
            outpost_server::access::open_data_dir(&settings, &StoreOptions::default()).unwrap();
        let mut imp = store.begin_catalog_import(ImportMode::Merge).unwrap();
        let mut milk = parse_product_json(PRODUCTS[0].as_bytes()).unwrap();
        milk.price = outpost_server::domain::money::Money(149);
        imp.add(&milk, 1).unwrap().unwrap();
        assert!(imp.finish("overlay-1").unwrap().overlay);
        assert_eq!(
            store.catalog().product("MILK").unwrap().unwrap().price.0,
            149
        );
        assert!(
            store.outbox_pending().unwrap() >= 3,
            "sales and the refund wait for HQ"
        );
    }

    let bytes = all_bytes(dir.path());
    let mut needles: Vec<String> = PRODUCTS
        .iter()
        .map(|p| parse_product_json(p.as_bytes()).unwrap().name)
        .collect();
    needles.extend(
        [
            "dairy",
            "bakery",
            "beer_wine",
            "produce",
            "household",
            "Bread 3 for 2",
            "Household 10% off",
            "bread-3for2",
            "household-10",
            "\"price\"",
            "\"name\"",
            "\"currency\"",
            "Test Store",
            "leaking carton",
            "dropped on the floor",
            "walrus",
        ]
        .map(String::from),
    );
    let readable: Vec<&String> = needles.iter().filter(|n| find(&bytes, n)).collect();
    assert!(
        readable.is_empty(),
        "readable in the data dir: {readable:?}"
    );
    // The search would find a string that is there: SKUs stay in clear as keys
    // (docs/storage.md).
    assert!(find(&bytes, "MILK"));
}
