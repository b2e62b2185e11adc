//! Card data never lands anywhere: a payment terminal that misbehaves and reports the
//! whole card number instead of a masked one still leaves only the last four digits in
//! the sale, its receipt, the logs (at `trace` for every crate) and the data dir.

use std::net::SocketAddr;

use outpost_mocks::sim::payment::{PaymentSim, SimOptions};
use outpost_security::testing::{all_bytes, contains};
use serde_json::{Value, json};

use crate::{GOOD, Serving, created, outpost};

/// A Visa test number (Luhn-valid, so it is shaped like a real card number).
const PAN: &str = "4263982640269299";

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// Multi-threaded: the simulator's tasks must run while this thread waits for the
// server to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_that_sends_the_whole_card_number_leaves_only_the_last_four() {
    assert!(luhn_valid(PAN) && !luhn_valid("4263982640269298"));
    // What must never appear: the number, and anything of it beyond the last four.
    let forbidden = [PAN, &PAN[..12], &PAN[..8]];

    let sim = PaymentSim::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SimOptions {
            masked_pan: PAN.into(),
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let catalog = tmp.path().join("c.jsonl");
    std::fs::write(&catalog, format!("{GOOD}\n")).unwrap();
    created(&outpost(
        &["import", "catalog", catalog.to_str().unwrap()],
        &data,
    ));
    let token = created(&outpost(&["terminals", "add", "till-1"], &data));
    let config = tmp.path().join("outpost.toml");
    std::fs::write(
        &config,
        format!(
            "[[devices]]\nid = \"pay-1\"\nkind = \"payment\"\ndriver = \"nexo-tcp\"\naddress = \"{}\"\nrequest_timeout_secs = 20\n",
            sim.local_addr()
        ),
    )
    .unwrap();

    let server = Serving::start(&data, &["--config", config.to_str().unwrap()]);
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let auth = format!("Bearer {token}");
    let mut ids = Vec::new();
    for (key, body) in [
        (
            "card-1",
            json!({"lines":[{"sku":"A","quantity":1}],"payment":{"method":"card"}}),
        ),
        (
            "split-1",
            json!({"lines":[{"sku":"A","quantity":2}],"payments":[{"method":"card","amount":200},{"method":"cash","tendered":500}]}),
        ),
    ] {
        let r = http
            .post(format!("{}/api/v1/checkout", server.base))
            .header("authorization", &auth)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        ids.push(v["sale_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sim.total_charges(), 2);

    // The sales as stored (decrypted by the server): the last four, nothing more.
    let mut stored = String::new();
    for id in &ids {
        let r = http
            .get(format!("{}/api/v1/sales/{id}", server.base))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        stored.push_str(&r.text().await.unwrap());
    }
    // Each card tender: `last4` in the tender, `card_last4` in the structured receipt.
    assert_eq!(stored.matches("\"9299\"").count(), 4, "{stored}");
    assert_eq!(stored.matches("****9299").count(), 2, "{stored}");
    let logs = server.stop();
    // The capture saw the nexo exchange at trace level.
    assert!(logs.contains("Outpost is listening"), "{logs}");
    assert!(
        logs.lines()
            .any(|l| l.contains("Device opened") && l.contains("pay-1")),
        "{logs}"
    );
    assert!(!logs.contains("Device not usable"), "{logs}");
    let disk = all_bytes(&data);
    for bad in forbidden {
        assert!(
            !stored.contains(bad),
            "card digits {bad} in a sale: {stored}"
        );
        if let Some(line) = logs.lines().find(|l| l.contains(bad)) {
            panic!("card digits {bad} in the logs: {line}");
        }
        assert!(!contains(&disk, bad), "card digits {bad} in the data dir");
    }
}
