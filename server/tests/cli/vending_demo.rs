//! `outpost demo --vending` as a user runs it: a 6x8 machine with its slots filled,
//! selling one product over HTTP through the simulated MDB cashless reader and OSB/1
//! spiral board.

use std::process::Command;

use serde_json::{Value, json};

use crate::Serving;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vending_demo_sells_a_drink_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_outpost"));
    demo.args(["demo", "--vending", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_ALLOW_SOFTWARE_SEALER");
    let server = Serving::spawn(demo);
    let creds: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo-credentials.json")).unwrap())
            .unwrap();
    let token = creds["terminal_token"].as_str().unwrap();
    let client = reqwest::Client::new();
    let auth = format!("Bearer {token}");

    let slots: Value = client
        .get(format!("{}/api/v1/vending/slots", server.base))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let slots = slots["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 48, "{slots:?}");
    assert!(slots.iter().all(|s| s["count"] == 10), "{slots:?}");
    let d1 = slots.iter().find(|s| s["slot"] == "D1").unwrap();
    assert_eq!(
        (d1["sku"].as_str(), d1["climate"].as_str()),
        (Some("VEND-COLA"), Some("chilled"))
    );

    let r = client
        .post(format!("{}/api/v1/vending/vends", server.base))
        .header("authorization", &auth)
        .header("Idempotency-Key", "demo-vend-1")
        .json(&json!({"slot": "D1"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (status, v["state"].as_str()),
        (201, Some("completed")),
        "{v}"
    );
    assert_eq!(
        (v["sku"].as_str(), v["price"].as_i64()),
        (Some("VEND-COLA"), Some(180))
    );
    let sale: Value = client
        .get(format!(
            "{}/api/v1/sales/{}",
            server.base,
            v["id"].as_str().unwrap()
        ))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sale["lines"][0]["slot"], "D1", "{sale}");
    let d1: Value = client
        .get(format!("{}/api/v1/vending/slots/D1", server.base))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d1["count"], 9, "{d1}");
    server.stop();
}
