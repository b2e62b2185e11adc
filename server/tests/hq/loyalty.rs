//! Loyalty offline (docs/loyalty.md): HQ's rules, customers and vouchers pushed to
//! units, sales that earn and redeem against them, the offline limit across two units
//! while HQ is down, and HQ's ledger reconciling every unit after the outage.

use outpost_mocks::hq::{AccountId, LoyaltyLedger, MockHqHandle};
use outpost_proto::hq;
use outpost_proto::hq::EnvelopeKind;
use serde_json::{Value, json};

use crate::helpers::*;

const CARD: &str = "2900000000017";

fn rules(version: u64) -> hq::LoyaltyRulesPush {
    hq::LoyaltyRulesPush {
        version,
        points_per_unit: 1,
        categories: vec![hq::LoyaltyCategoryRate {
            category: "even".into(),
            points_per_unit: 2,
        }],
        tiers: vec![hq::LoyaltyTier {
            tier: "gold".into(),
            multiplier_bp: 20_000,
        }],
        point_value: 1,
    }
}

async fn checkout(app: &HqTestApp, key: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/checkout", app.base))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn points(app: &HqTestApp, card: &str) -> Value {
    let (status, v) = app
        .get_json(&format!("/api/v1/customers?card={card}"))
        .await;
    assert_eq!(status, 200, "{v}");
    v["points"].clone()
}

async fn push_accounts(
    app: &HqTestApp,
    push: hq::LoyaltyAccountsPush,
) -> Result<u64, tonic::Status> {
    let mut c = app.client().await;
    c.push_loyalty_accounts(push)
        .await
        .map(|r| r.into_inner().version)
}

/// Sales with a customer carry its id to HQ; points accrue by the rules and are
/// redeemed with a voucher and cash in one sale; the receipt shows them; a retry
/// changes nothing; bad input is refused with its code and loses nothing; HQ's
/// balance, pushed back, is what the unit then shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_earns_redeems_and_hq_balance_wins() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let app = spawn(Some(hq.url())).await;
    let unit = "unit-1";
    snapshot(&app, 1, 4).await;
    let mut ledger = LoyaltyLedger::new();
    ledger.add_customer("c-1", &[CARD], "gold", 1_000, 500);
    ledger.add_voucher("v-1", "GIFT-0001", 2_000, 1_000);
    let mut c = app.client().await;
    c.push_loyalty_rules(rules(1)).await.unwrap();
    assert_eq!(
        push_accounts(&app, ledger.snapshot_for(unit, &[unit], 1))
            .await
            .unwrap(),
        1
    );

    let p = points(&app, CARD).await;
    assert_eq!(
        (p["balance"].as_i64(), p["redeemable"].as_i64()),
        (Some(1_000), Some(500))
    );

    // 3 x P0000000 (100, category "even": 2 points per EUR): 6 points, gold doubles.
    let body = json!({
        "lines": [{"sku": "P0000000", "quantity": 3}],
        "customer": {"card": CARD},
        "payments": [
            {"method": "points", "amount": 100},
            {"method": "voucher", "code": "GIFT-0001", "amount": 150},
            {"method": "cash", "tendered": 50}
        ]
    });
    let (status, sale) = checkout(&app, "loyal-1", body.clone()).await;
    assert_eq!(status, 201, "{sale}");
    assert_eq!(sale["customer_id"], "c-1");
    let l = &sale["loyalty"];
    assert_eq!(l["points_earned"], 12);
    assert_eq!(l["points_redeemed"], 100);
    assert_eq!(l["points_balance"], 1_000 - 100 + 12);
    assert_eq!(l["vouchers"][0]["voucher_id"], "v-1");
    assert_eq!(l["vouchers"][0]["balance"], 1_850);
    let methods: Vec<&str> = sale["tenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["points", "voucher", "cash"]);
    let text = sale["receipt_text"].as_str().unwrap();
    assert!(
        text.contains("Points earned") && text.contains("912"),
        "{text}"
    );
    assert!(
        text.contains("Voucher balance") && text.contains("18.50"),
        "{text}"
    );

    // The same key again: the same sale, nothing redeemed twice.
    let (status, again) = checkout(&app, "loyal-1", body).await;
    assert_eq!(status, 201);
    assert_eq!(again["sale_id"], sale["sale_id"]);
    let p = points(&app, CARD).await;
    assert_eq!(
        (p["balance"].as_i64(), p["unseen_redeemed"].as_i64()),
        (Some(912), Some(100))
    );

    // Bad input: a clear 4xx, and nothing changes.
    let line = json!([{"sku": "P0000001", "quantity": 1}]);
    let cases = [
        (
            json!({"lines": line, "customer": {"card": "0000"}, "payment": {"method": "cash", "tendered": 500}}),
            "unknown_customer",
        ),
        (
            json!({"lines": line, "customer": {"id": "c-404"}, "payment": {"method": "cash", "tendered": 500}}),
            "unknown_customer",
        ),
        (
            json!({"lines": line, "customer": {"id": "c-1", "card": CARD}, "payment": {"method": "cash", "tendered": 500}}),
            "invalid_customer",
        ),
        (
            json!({"lines": line, "payments": [{"method": "voucher", "code": "NOPE", "amount": 101}]}),
            "unknown_voucher",
        ),
        (
            json!({"lines": line, "payments": [{"method": "points", "amount": 101}]}),
            "invalid_customer",
        ),
        (
            json!({"lines": line, "payments": [{"method": "voucher", "code": "GIFT-0001", "amount": 50}, {"method": "voucher", "code": "GIFT-0001", "amount": 51}]}),
            "invalid_payment",
        ),
        (
            json!({"lines": line, "customer": {"card": CARD}, "payments": [{"method": "points", "amount": 0}, {"method": "cash", "tendered": 500}]}),
            "invalid_payment",
        ),
        // 100 already redeemed on this unit, allowance 500: 401 more is over it.
        (
            json!({"lines": [{"sku": "P0000001", "quantity": 5}], "customer": {"card": CARD}, "payments": [{"method": "points", "amount": 401}, {"method": "cash", "tendered": 500}]}),
            "offline_limit_reached",
        ),
        (
            json!({"lines": [{"sku": "P0000001", "quantity": 30}], "payments": [{"method": "voucher", "code": "GIFT-0001", "amount": 1_851}, {"method": "cash", "tendered": 5000}]}),
            "insufficient_balance",
        ),
        (
            json!({"lines": [{"sku": "P0000001", "quantity": 30}], "payments": [{"method": "voucher", "code": "GIFT-0001", "amount": 1_001}, {"method": "cash", "tendered": 5000}]}),
            "offline_limit_reached",
        ),
    ];
    for (i, (body, code)) in cases.into_iter().enumerate() {
        let (status, v) = checkout(&app, &format!("bad-{i}"), body).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (422, Some(code)),
            "case {i}: {v}"
        );
    }
    let p = points(&app, CARD).await;
    assert_eq!(p["balance"], 912);
    let (status, v) = app.get_json("/api/v1/customers?card=0000").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("unknown_customer"))
    );
    let (status, _) = app.get_json("/api/v1/customers").await;
    assert_eq!(status, 422);
    let (status, _) = app.get_json("/api/v1/customers?card=1&id=2").await;
    assert_eq!(status, 422);
    let (status, _) = app.get_json("/api/v1/customers?card=%20").await;
    assert_eq!(status, 400);
    let (status, v) = app.get_json("/api/v1/customers?id=c-1").await;
    assert_eq!((status, v["tier"].as_str()), (200, Some("gold")));

    // Malformed and stale pushes are refused whole.
    let mut bad = ledger.snapshot_for(unit, &[unit], 5);
    bad.customers[0].cards = vec![String::new()];
    let e = push_accounts(&app, bad).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("customers[0].cards[0]"), "{e:?}");
    let mut bad = ledger.snapshot_for(unit, &[unit], 5);
    bad.kind = 0;
    assert_eq!(
        push_accounts(&app, bad).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let stale = ledger.snapshot_for(unit, &[unit], 1);
    assert_eq!(
        push_accounts(&app, stale).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    let delta = hq::LoyaltyAccountsPush {
        version: 9,
        kind: hq::LoyaltyPushKind::Delta as i32,
        base_version: 4,
        ..Default::default()
    };
    assert_eq!(
        push_accounts(&app, delta).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    let mut r = rules(2);
    r.point_value = 0;
    let e = c.push_loyalty_rules(r).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("point_value"), "{e:?}");
    assert_eq!(
        c.push_loyalty_rules(rules(1)).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    assert_eq!(points(&app, CARD).await["balance"], 912);

    // The sale reaches HQ once, with its customer; HQ's ledger counts it and its
    // balance, pushed back, is the unit's.
    let sale_id = sale["sale_id"].as_str().unwrap().to_owned();
    eventually(30, "the sale at HQ", || {
        let got = hq.received_kind(unit, EnvelopeKind::Sale);
        let id = sale_id.clone();
        async move { got.iter().any(|e| e.id == id) }
    })
    .await;
    let got = hq.received_kind(unit, EnvelopeKind::Sale);
    assert_eq!(got.len(), 1, "one sale, once");
    let record: Value = serde_json::from_slice(&got[0].json).unwrap();
    assert_eq!(record["customer_id"], "c-1");
    ledger.sync(&hq, &[unit]);
    assert_eq!(
        ledger.balance(&AccountId::Customer("c-1".into())),
        Some(912)
    );
    assert_eq!(
        ledger.balance(&AccountId::Voucher("v-1".into())),
        Some(1_850)
    );
    push_accounts(&app, ledger.snapshot_for(unit, &[unit], 2))
        .await
        .unwrap();
    let p = points(&app, CARD).await;
    assert_eq!(
        (
            p["balance"].as_i64(),
            p["unseen_redeemed"].as_i64(),
            p["redeemable"].as_i64()
        ),
        (Some(912), Some(0), Some(500))
    );
    app.stop().await;
    hq.shutdown().await.unwrap();
}

async fn unit(hq: &MockHqHandle, dir: &std::path::Path, id: &str) -> HqTestApp {
    let mut s = settings(dir, Some(hq.url()));
    s.sync.unit_id = id.into();
    spawn_with(s).await
}

/// Redeem 100 points with cash for the rest of one P0000001 (101, category "odd":
/// 1 point), `n` times; the codes the unit answered.
async fn redeem(app: &HqTestApp, card: &str, n: usize, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let body = json!({
            "lines": [{"sku": "P0000001", "quantity": 1}],
            "customer": {"card": card},
            "payments": [{"method": "points", "amount": 100}, {"method": "cash", "tendered": 1}]
        });
        let (status, v) = checkout(app, &format!("{prefix}-{i}"), body).await;
        out.push(if status == 201 {
            "ok".to_owned()
        } else {
            assert_eq!(status, 422, "{v}");
            v["code"].as_str().unwrap().to_owned()
        });
    }
    out
}

/// Two units of a store lose HQ and keep selling: together they redeem no more than
/// the customer's offline limit (each its half), and a card whose balance is small
/// overspends by less than the limit. When HQ comes back its ledger counts every
/// sale once, and the balance it pushes is what both units then show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_units_offline_stay_within_the_limit_and_converge_on_hq_balance() {
    let hq_dir = tempfile::tempdir().unwrap();
    let hq = mock_hq(hq_dir.path()).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = unit(&hq, da.path(), "unit-a").await;
    let b = unit(&hq, db.path(), "unit-b").await;
    let units = ["unit-a", "unit-b"];
    let mut ledger = LoyaltyLedger::new();
    // Plenty of points, limit 600: 300 per unit.
    ledger.add_customer("rich", &["1001"], "", 1_000, 600);
    // 100 points, limit 600: each unit may spend what it saw, 100.
    ledger.add_customer("poor", &["1002"], "", 100, 600);
    for (app, u) in [(&a, units[0]), (&b, units[1])] {
        snapshot(app, 1, 4).await;
        app.client()
            .await
            .push_loyalty_rules(rules(1))
            .await
            .unwrap();
        push_accounts(app, ledger.snapshot_for(u, &units, 1))
            .await
            .unwrap();
    }

    hq.stop().await;
    let got_a = redeem(&a, "1001", 4, "a-rich").await;
    let got_b = redeem(&b, "1001", 4, "b-rich").await;
    let limited = ["ok", "ok", "ok", "offline_limit_reached"];
    assert_eq!(got_a, limited);
    assert_eq!(got_b, limited);
    assert_eq!(
        redeem(&a, "1002", 2, "a-poor").await,
        ["ok", "insufficient_balance"]
    );
    assert_eq!(
        redeem(&b, "1002", 2, "b-poor").await,
        ["ok", "insufficient_balance"]
    );
    // Each unit sees its own redemptions only.
    assert_eq!(points(&a, "1001").await["balance"], 1_000 - 300 + 3);

    hq.start().await.unwrap();
    eventually(60, "every sale at HQ", || {
        let n = units
            .iter()
            .map(|u| hq.received_kind(u, EnvelopeKind::Sale).len())
            .sum::<usize>();
        async move { n == 8 }
    })
    .await;
    ledger.sync(&hq, &units);
    let rich = ledger.balance(&AccountId::Customer("rich".into())).unwrap();
    let poor = ledger.balance(&AccountId::Customer("poor".into())).unwrap();
    // 600 redeemed together (the limit), 6 points earned.
    assert_eq!(rich, 1_000 - 600 + 6);
    // 200 redeemed on a balance of 100: 100 overspent, less than the limit of 600.
    assert_eq!(poor, 100 - 200 + 2);
    for (app, u) in [(&a, units[0]), (&b, units[1])] {
        push_accounts(app, ledger.snapshot_for(u, &units, 2))
            .await
            .unwrap();
        let p = points(app, "1001").await;
        assert_eq!(
            (p["balance"].as_i64(), p["unseen_redeemed"].as_i64()),
            (Some(rich), Some(0))
        );
        assert_eq!(p["redeemable"], 300);
        let p = points(app, "1002").await;
        assert_eq!(
            (p["balance"].as_i64(), p["redeemable"].as_i64()),
            (Some(poor), Some(0))
        );
    }
    a.stop().await;
    b.stop().await;
    hq.shutdown().await.unwrap();
}

/// Ten checkouts redeeming the same card at once on one unit: the writer orders them,
/// each checks what the ones before it recorded, and exactly the allowance is redeemed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redemptions_on_one_unit_stop_at_the_allowance() {
    let app = spawn(None).await;
    let u = "unit-1";
    snapshot(&app, 1, 4).await;
    let mut ledger = LoyaltyLedger::new();
    ledger.add_customer("c-1", &[CARD], "", 1_000, 300);
    app.client()
        .await
        .push_loyalty_rules(rules(1))
        .await
        .unwrap();
    push_accounts(&app, ledger.snapshot_for(u, &[u], 1))
        .await
        .unwrap();
    let body = json!({
        "lines": [{"sku": "P0000001", "quantity": 1}],
        "customer": {"card": CARD},
        "payments": [{"method": "points", "amount": 100}, {"method": "cash", "tendered": 1}]
    });
    let shared = &app;
    let answers = futures::future::join_all((0..10).map(|i| {
        let body = body.clone();
        async move { checkout(shared, &format!("race-{i}"), body).await }
    }))
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == 201).count();
    let limited = answers
        .iter()
        .filter(|(s, v)| *s == 422 && v["code"] == "offline_limit_reached")
        .count();
    assert_eq!((ok, limited), (3, 7), "{answers:?}");
    let p = points(&app, CARD).await;
    assert_eq!(
        (p["unseen_redeemed"].as_i64(), p["redeemable"].as_i64()),
        (Some(300), Some(0))
    );
    app.stop().await;
}
