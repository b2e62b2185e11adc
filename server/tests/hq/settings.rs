//! Tax rates, store profile, planogram and device set pushes: versioned, applied
//! whole or not at all, durable across a restart.

use outpost_proto::hq;
use tonic::Code;

use crate::helpers::*;

fn rate(class: &str, bp: i32) -> hq::TaxRate {
    hq::TaxRate {
        tax_class: class.into(),
        rate_bp: bp,
    }
}

fn tax_push(version: u64, rates: Vec<hq::TaxRate>, mode: hq::TaxMode) -> hq::TaxRatesPush {
    hq::TaxRatesPush {
        version,
        rates,
        mode: mode as i32,
    }
}

async fn price(app: &HqTestApp, sku: &str) -> serde_json::Value {
    let r = app
        .http
        .post(format!("{}/api/v1/carts/price", app.base))
        .json(&serde_json::json!({"lines":[{"sku": sku, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

async fn status(app: &HqTestApp) -> hq::StoreStatus {
    app.client()
        .await
        .get_status(hq::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// A message whose field 2 is bytes no push message can decode there (a repeated
/// message that is not one, or a string that is not UTF-8).
#[derive(Clone, PartialEq, prost::Message)]
struct Garbage {
    #[prost(bytes = "vec", tag = "2")]
    junk: Vec<u8>,
}

async fn garbage(app: &HqTestApp, method: &'static str) -> tonic::Status {
    let channel = tonic::transport::Channel::from_shared(app.grpc.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path =
        http::uri::PathAndQuery::from_maybe_shared(format!("/outpost.hq.v1.StoreService/{method}"))
            .unwrap();
    grpc.unary::<Garbage, hq::PushReply, _>(
        app.authorize(tonic::Request::new(Garbage {
            junk: vec![0xff; 64],
        })),
        path,
        tonic_prost::ProstCodec::default(),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_tax_table_prices_the_next_checkout_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_at(dir.path(), None).await;
    snapshot(&app, 1, 3).await;
    let before = price(&app, "P0000001").await;
    assert_eq!(
        before["taxes"][0]["rate_bp"], 1900,
        "the config file's rate"
    );
    let (_, rest) = app.get_json("/api/v1/tax-rates").await;
    assert_eq!(
        (rest["source"].as_str(), rest["version"].as_u64()),
        (Some("config"), Some(0))
    );
    let reply = app
        .client()
        .await
        .push_tax_rates(tax_push(
            4,
            vec![
                rate("standard", 2000),
                rate("reduced", 550),
                rate("zero", 0),
            ],
            hq::TaxMode::Exclusive,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.version, 4);
    let after = price(&app, "P0000001").await;
    assert_eq!(after["taxes"][0]["rate_bp"], 2000);
    assert_eq!(after["prices_include_tax"], false);
    // 101 plus 20 % added at the till.
    assert_eq!(after["total"], 121, "{after}");
    assert_eq!(status(&app).await.tax_rates_version, 4);
    let (_, rest) = app.get_json("/api/v1/tax-rates").await;
    assert_eq!(rest["source"], "hq");
    assert_eq!(rest["rates_bp"]["reduced"], 550);
    let (_, sync) = app.get_json("/api/v1/sync/status").await;
    assert_eq!(sync["versions"]["tax_rates"], 4);
    app.stop().await;
    // The pushed table wins over the config file's at the next start.
    let app = spawn_at(dir.path(), None).await;
    let again = price(&app, "P0000001").await;
    assert_eq!(again["taxes"][0]["rate_bp"], 2000);
    assert_eq!(again["total"], 121);
    assert_eq!(status(&app).await.tax_rates_version, 4);
    // UNSPECIFIED keeps the mode.
    app.client()
        .await
        .push_tax_rates(tax_push(
            5,
            vec![rate("standard", 1000)],
            hq::TaxMode::Unspecified,
        ))
        .await
        .unwrap();
    let kept = price(&app, "P0000001").await;
    assert_eq!(
        (kept["prices_include_tax"].as_bool(), kept["total"].as_i64()),
        (Some(false), Some(111))
    );
    app.stop().await;
}

#[tokio::test]
async fn each_bad_tax_table_is_refused_and_changes_nothing() {
    let app = spawn(None).await;
    snapshot(&app, 1, 3).await;
    let mut c = app.client().await;
    c.push_tax_rates(tax_push(
        2,
        vec![rate("standard", 2000)],
        hq::TaxMode::Inclusive,
    ))
    .await
    .unwrap();
    let many: Vec<hq::TaxRate> = (0..257).map(|i| rate(&format!("c{i}"), 1)).collect();
    let cases: Vec<(hq::TaxRatesPush, Code, &str)> = vec![
        (
            tax_push(3, vec![rate("Standard!", 100)], hq::TaxMode::Inclusive),
            Code::InvalidArgument,
            "rates[0].tax_class",
        ),
        (
            tax_push(3, vec![rate("standard", -100)], hq::TaxMode::Inclusive),
            Code::InvalidArgument,
            "negative",
        ),
        (
            tax_push(3, vec![rate("standard", 200_000)], hq::TaxMode::Inclusive),
            Code::InvalidArgument,
            "over 100 %",
        ),
        (
            tax_push(
                3,
                vec![rate("standard", 1), rate("standard", 2)],
                hq::TaxMode::Inclusive,
            ),
            Code::InvalidArgument,
            "twice",
        ),
        (
            tax_push(3, vec![], hq::TaxMode::Inclusive),
            Code::InvalidArgument,
            "empty",
        ),
        (
            hq::TaxRatesPush {
                version: 3,
                rates: vec![rate("standard", 1)],
                mode: 9,
            },
            Code::InvalidArgument,
            "mode",
        ),
        (
            tax_push(3, many, hq::TaxMode::Inclusive),
            Code::ResourceExhausted,
            "limit",
        ),
        // Out of order: older and equal versions.
        (
            tax_push(1, vec![rate("standard", 1)], hq::TaxMode::Inclusive),
            Code::FailedPrecondition,
            "not newer",
        ),
        (
            tax_push(2, vec![rate("standard", 1)], hq::TaxMode::Inclusive),
            Code::FailedPrecondition,
            "not newer",
        ),
    ];
    for (push, code, says) in cases {
        let e = c.push_tax_rates(push).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    let g = garbage(&app, "PushTaxRates").await;
    assert!(
        matches!(g.code(), Code::Internal | Code::InvalidArgument),
        "{g:?}"
    );
    let (_, rest) = app.get_json("/api/v1/tax-rates").await;
    assert_eq!(
        (
            rest["version"].as_u64(),
            rest["rates_bp"]["standard"].as_u64()
        ),
        (Some(2), Some(2000))
    );
    assert_eq!(price(&app, "P0000001").await["taxes"][0]["rate_bp"], 2000);
    app.stop().await;
}

fn profile(version: u64, name: &str, header: &[&str]) -> hq::StoreConfigPush {
    hq::StoreConfigPush {
        version,
        store_name: name.into(),
        receipt_header: header.iter().map(|s| s.to_string()).collect(),
        offline_exposure: None,
    }
}

async fn sell_one(app: &HqTestApp, key: &str) -> serde_json::Value {
    let r = app
        .http
        .post(format!("{}/api/v1/checkout", app.base))
        .header("Idempotency-Key", key)
        .json(&serde_json::json!({"lines":[{"sku":"P0000001","quantity":1}],"payment":{"method":"cash","tendered":1000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_store_profile_heads_the_next_receipt_and_bad_ones_change_nothing() {
    let app = spawn(None).await;
    snapshot(&app, 1, 3).await;
    let mut c = app.client().await;
    c.push_store_config(profile(
        1,
        "Corner Shop Nord",
        &["Hauptstr. 1, Berlin", "USt-IdNr DE123456789"],
    ))
    .await
    .unwrap();
    let sale = sell_one(&app, "k1").await;
    let text = sale["receipt_text"].as_str().unwrap();
    assert!(text.contains("Corner Shop Nord"), "{text}");
    assert!(text.contains("USt-IdNr DE123456789"), "{text}");
    assert_eq!(status(&app).await.store_config_version, 1);
    let cases: Vec<(hq::StoreConfigPush, &str)> = vec![
        (profile(2, " ", &[]), "store_name"),
        (profile(2, &"x".repeat(65), &[]), "store_name"),
        (profile(2, "A\u{1b}@", &[]), "control"),
        (profile(2, "A", &["ok", "\u{1b}d0"]), "receipt_header[1]"),
        (
            profile(2, "A", &["a", "b", "c", "d", "e", "f", "g"]),
            "7 lines",
        ),
    ];
    for (push, says) in cases {
        let e = c.push_store_config(push).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    // A message over the store's 16 MiB limit is refused before it is decoded.
    let huge = "x".repeat(17 * 1024 * 1024);
    let e = c
        .push_store_config(profile(2, &huge, &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{}", e.message());
    let e = c
        .push_store_config(profile(1, "Older", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let g = garbage(&app, "PushStoreConfig").await;
    assert!(
        matches!(g.code(), Code::Internal | Code::InvalidArgument),
        "{g:?}"
    );
    let sale = sell_one(&app, "k2").await;
    assert!(
        sale["receipt_text"]
            .as_str()
            .unwrap()
            .contains("Corner Shop Nord")
    );
    assert_eq!(status(&app).await.store_config_version, 1);
    app.stop().await;
}

async fn sell_by(app: &HqTestApp, key: &str, method: &str) -> (u16, serde_json::Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/checkout", app.base))
        .header("Idempotency-Key", key)
        .json(&serde_json::json!({"lines":[{"sku":"P0000001","quantity":1}],"payment":{"method":method}}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn offline_caps_from_hq_apply_at_once_and_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let terminal = outpost_mocks::MockTerminal::new();
    let app = spawn_with_terminal(settings(tmp.path(), None), terminal.clone()).await;
    snapshot(&app, 1, 3).await;
    terminal.set_host_reachable(false);
    // The config file's caps (500.00 / 100.00) take one product offline.
    let (s, v) = sell_by(&app, "o1", "card").await;
    assert_eq!(s, 201, "{v}");
    let mut c = app.client().await;
    let capped = |version, store, per_card| hq::StoreConfigPush {
        offline_exposure: Some(hq::OfflineExposureCaps { store, per_card }),
        ..profile(version, "Corner Shop", &[])
    };
    for (push, says) in [
        (capped(1, -1, 5), "offline_exposure.store"),
        (capped(1, 5, 1_000_000_000_001), "offline_exposure.per_card"),
    ] {
        let e = c.push_store_config(push).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    c.push_store_config(capped(1, 150, 10_000)).await.unwrap();
    let (s, v) = sell_by(&app, "o2", "wallet").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (402, Some("offline_limit_reached")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("limit 1.50 EUR"),
        "{v}"
    );
    let r = app
        .http
        .post(format!("{}/api/v1/checkout", app.base))
        .header("Idempotency-Key", "o2-cash")
        .json(&serde_json::json!({"lines":[{"sku":"P0000001","quantity":1}],"payment":{"method":"cash","tendered":100000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "cash sells above the cap");
    app.stop().await;

    // HQ's caps and the exposure are both still there after a restart.
    let app = spawn_with_terminal(settings(tmp.path(), None), terminal.clone()).await;
    let (s, v) = sell_by(&app, "o3", "card").await;
    assert_eq!(s, 402, "{v}");
    // A profile without caps goes back to the config file's.
    let mut c = app.client().await;
    c.push_store_config(profile(2, "Corner Shop", &[]))
        .await
        .unwrap();
    let (s, v) = sell_by(&app, "o3", "card").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(terminal.stored().len(), 2);
    app.stop().await;
}

fn loc(sku: &str, aisle: &str, bay: u32, shelf: u32, position: u32) -> hq::ShelfLocation {
    hq::ShelfLocation {
        sku: sku.into(),
        aisle: aisle.into(),
        bay,
        shelf,
        position,
        facings: 2,
        capacity: 24,
    }
}

#[tokio::test]
async fn a_planogram_is_served_and_bad_ones_change_nothing() {
    let app = spawn(None).await;
    let mut c = app.client().await;
    let (_, empty) = app.get_json("/api/v1/planogram").await;
    assert_eq!(
        (
            empty["version"].as_u64(),
            empty["items"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    c.push_planogram(hq::PlanogramPush {
        slots: vec![],
        version: 3,
        locations: vec![
            loc("MILK", "A07", 3, 2, 1),
            loc("MILK", "END-1", 1, 3, 1),
            loc("BREAD", "B01", 1, 1, 4),
        ],
    })
    .await
    .unwrap();
    let (s, milk) = app.get_json("/api/v1/planogram?sku=MILK").await;
    assert_eq!(s, 200);
    assert_eq!(milk["version"], 3);
    assert_eq!(milk["items"].as_array().unwrap().len(), 2);
    assert_eq!(milk["items"][0]["aisle"], "A07");
    assert_eq!(milk["items"][0]["capacity"], 24);
    let (_, page) = app.get_json("/api/v1/planogram?limit=1").await;
    assert_eq!(page["items"][0]["sku"], "BREAD");
    assert_eq!(page["next_cursor"], "BREAD");
    let (_, page2) = app.get_json("/api/v1/planogram?limit=1&cursor=BREAD").await;
    assert_eq!(
        page2["items"].as_array().unwrap().len(),
        2,
        "MILK's two locations"
    );
    let (s, bad) = app.get_json("/api/v1/planogram?sku=no%20spaces").await;
    assert_eq!((s, bad["code"].as_str()), (400, Some("invalid_sku")));
    assert_eq!(status(&app).await.planogram_version, 3);

    let too_many: Vec<hq::ShelfLocation> = (0..500_001).map(|_| loc("X", "A", 1, 1, 1)).collect();
    let cases: Vec<(hq::PlanogramPush, Code, &str)> = vec![
        (
            hq::PlanogramPush {
                slots: vec![],
                version: 4,
                locations: vec![loc("MILK", "A07", 3, 0, 1)],
            },
            Code::InvalidArgument,
            "locations[0].shelf",
        ),
        (
            hq::PlanogramPush {
                slots: vec![],
                version: 4,
                locations: vec![loc("MILK", "", 3, 1, 1)],
            },
            Code::InvalidArgument,
            "locations[0].aisle",
        ),
        (
            hq::PlanogramPush {
                slots: vec![],
                version: 4,
                locations: vec![loc("bad sku", "A", 3, 1, 1)],
            },
            Code::InvalidArgument,
            "locations[0].sku",
        ),
        (
            hq::PlanogramPush {
                slots: vec![],
                version: 4,
                locations: vec![loc("A", "A", 1, 1, 1), loc("B", "A", 1, 1, 1)],
            },
            Code::InvalidArgument,
            "twice",
        ),
        (
            hq::PlanogramPush {
                slots: vec![],
                version: 4,
                locations: too_many,
            },
            Code::ResourceExhausted,
            "limit",
        ),
        (
            hq::PlanogramPush {
                slots: vec![],
                version: 3,
                locations: vec![],
            },
            Code::FailedPrecondition,
            "not newer",
        ),
    ];
    for (push, code, says) in cases {
        let e = c.push_planogram(push).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    let g = garbage(&app, "PushPlanogram").await;
    assert!(
        matches!(g.code(), Code::Internal | Code::InvalidArgument),
        "{g:?}"
    );
    let (_, milk) = app.get_json("/api/v1/planogram?sku=MILK").await;
    assert_eq!(
        (
            milk["version"].as_u64(),
            milk["items"].as_array().map(Vec::len)
        ),
        (Some(3), Some(2))
    );
    // A newer planogram replaces the whole set.
    c.push_planogram(hq::PlanogramPush {
        slots: vec![],
        version: 4,
        locations: vec![loc("EGGS", "C01", 1, 1, 1)],
    })
    .await
    .unwrap();
    let (_, all) = app.get_json("/api/v1/planogram").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(all["items"][0]["sku"], "EGGS");
    app.stop().await;
}

const DISPLAY: &str = "[[devices]]\nid = \"display-hq\"\nkind = \"display\"\ndriver = \"mock\"\n";

#[tokio::test]
async fn a_device_set_is_checked_stored_and_opened_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_at(dir.path(), None).await;
    let mut c = app.client().await;
    let push = |version: u64, toml: &str| hq::DeviceConfigPush {
        version,
        devices_toml: toml.into(),
    };
    let cases: Vec<(hq::DeviceConfigPush, Code, &str)> = vec![
        (
            push(2, "[[devices]\n"),
            Code::InvalidArgument,
            "devices_toml",
        ),
        (
            push(
                2,
                "[[devices]]\nid = \"x\"\nkind = \"toaster\"\ndriver = \"mock\"\n",
            ),
            Code::InvalidArgument,
            "kind",
        ),
        (
            push(2, "listen = \"0.0.0.0:80\"\n"),
            Code::InvalidArgument,
            "unknown field",
        ),
        (
            push(2, &format!("# {}\n{DISPLAY}", "x".repeat(70_000))),
            Code::ResourceExhausted,
            "limit",
        ),
    ];
    for (p, code, says) in cases {
        let e = c.push_device_config(p).await.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    let g = garbage(&app, "PushDeviceConfig").await;
    assert!(
        matches!(g.code(), Code::Internal | Code::InvalidArgument),
        "{g:?}"
    );
    assert_eq!(
        status(&app).await.device_config_version,
        0,
        "nothing was stored"
    );
    c.push_device_config(push(2, DISPLAY)).await.unwrap();
    let e = c.push_device_config(push(2, DISPLAY)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let s = status(&app).await;
    assert_eq!(
        (s.device_config_version, s.device_config_applied_version),
        (2, 0)
    );
    let (_, devices) = app.get_json("/api/v1/devices").await;
    assert!(
        !devices.to_string().contains("display-hq"),
        "not before a restart"
    );
    app.stop().await;
    let app = spawn_at(dir.path(), None).await;
    let s = status(&app).await;
    assert_eq!(
        (s.device_config_version, s.device_config_applied_version),
        (2, 2)
    );
    let (_, devices) = app.get_json("/api/v1/devices").await;
    assert!(devices.to_string().contains("display-hq"), "{devices}");
    app.stop().await;
}

fn vslot(slot: &str, sku: &str, price: i64) -> hq::VendingSlot {
    hq::VendingSlot {
        slot: slot.into(),
        sku: sku.into(),
        price,
        capacity: 10,
        par: 5,
        chilled: sku == "COLA",
    }
}

#[tokio::test]
async fn vending_slots_come_with_the_planogram_and_keep_their_counts() {
    use outpost_server::domain::vending::SlotId;
    use outpost_server::vending::slots;
    let app = spawn(None).await;
    let mut c = app.client().await;
    c.push_planogram(hq::PlanogramPush {
        version: 1,
        locations: vec![],
        slots: vec![vslot("A2", "CRISPS", 120), vslot("A1", "COLA", 250)],
    })
    .await
    .unwrap();
    let (s, list) = app.get_json("/api/v1/vending/slots").await;
    assert_eq!(s, 200);
    assert_eq!(list["version"], 1);
    assert_eq!(list["slots"][0]["slot"], "A1");
    assert_eq!(list["slots"][0]["climate"], "chilled");
    assert_eq!(list["slots"][1]["price"], 120);
    let a1 = SlotId::parse("A1").unwrap();
    let a2 = SlotId::parse("A2").unwrap();
    slots::refill(&app.store, a1, 7).await.unwrap();
    slots::refill(&app.store, a2, 3).await.unwrap();

    // Bad slots are named and change nothing.
    for (slots, says) in [
        (vec![vslot("A1", "COLA", 0)], "slots[0].price"),
        (
            vec![vslot("A1", "COLA", 100), vslot("A1", "COLA", 100)],
            "slots[1].slot",
        ),
        (vec![vslot("AA1", "COLA", 100)], "slots[0].slot"),
    ] {
        let e = c
            .push_planogram(hq::PlanogramPush {
                version: 2,
                locations: vec![],
                slots,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(says), "{says}: {}", e.message());
    }
    // A new price keeps the count; a new product over units needs a count; a slot
    // left out is removed.
    c.push_planogram(hq::PlanogramPush {
        version: 2,
        locations: vec![],
        slots: vec![vslot("A1", "COLA", 260), vslot("A3", "WATER", 90)],
    })
    .await
    .unwrap();
    let s1 = slots::one(&app.store, a1).unwrap().unwrap();
    assert_eq!(
        (s1.count, s1.config.price.minor(), s1.needs_count),
        (7, 260, false)
    );
    assert!(slots::one(&app.store, a2).unwrap().is_none());
    c.push_planogram(hq::PlanogramPush {
        version: 3,
        locations: vec![],
        slots: vec![vslot("A1", "WATER", 90)],
    })
    .await
    .unwrap();
    let s1 = slots::one(&app.store, a1).unwrap().unwrap();
    assert_eq!((s1.count, s1.needs_count), (7, true));
    // A planogram without slots (a shop's) leaves them as they are.
    c.push_planogram(hq::PlanogramPush {
        version: 4,
        locations: vec![loc("EGGS", "C01", 1, 1, 1)],
        slots: vec![],
    })
    .await
    .unwrap();
    let (_, list) = app.get_json("/api/v1/vending/slots").await;
    assert_eq!(list["slots"].as_array().unwrap().len(), 1);
    assert_eq!(list["version"], 3);
    app.stop().await;
}
