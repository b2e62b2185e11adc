//! Paying on the shopper's phone with a QR code through the wallet provider, the exit
//! check, the provider's notifications, and a till's QR tender.

use outpost_mocks::wallet::WalletProvider;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::shopper::{call, shopper};

const SECRET: &str = crate::helpers::WALLET_SECRET;

async fn app_with_wallet() -> (TestApp, WalletProvider, tempfile::TempDir) {
    crate::helpers::spawn_with_wallet().await
}

/// A till's checkout of `body` under `key`, sent in its own task (it waits while the
/// customer pays a QR tender): the status and body it ends with.
fn till_checkout(app: &TestApp, key: &str, body: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let (client, url, key) = (
        app.client.clone(),
        app.url("/api/v1/checkout"),
        key.to_owned(),
    );
    tokio::spawn(async move {
        let r = client
            .post(url)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    })
}

/// The QR code a till's checkout under `key` waits on, once it is shown (404
/// `no_qr_code` until then).
async fn till_code(app: &TestApp, key: &str) -> Value {
    for _ in 0..200 {
        let (s, v) = app
            .get(&format!("/api/v1/payments/qr/code?checkout_key={key}"))
            .await;
        if s == 200 {
            return v;
        }
        assert_eq!((s, v["code"].as_str()), (404, Some("no_qr_code")), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no code shown for {key}");
}

/// The session's checkout once its status is `status` (or as it stands after 5 s).
async fn settled(app: &TestApp, c: &reqwest::Client, status: &str) -> Value {
    let mut v = Value::Null;
    for _ in 0..100 {
        let (s, now) = call(app, c, "GET", "/api/v1/shopper/checkout", None).await;
        assert_eq!(s, 200, "{now}");
        v = now;
        if v["status"] == status {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    v
}

async fn add(app: &TestApp, c: &reqwest::Client, barcode: &str, quantity: u32) {
    let (s, v) = call(
        app,
        c,
        "POST",
        "/api/v1/shopper/cart/lines",
        Some(json!({"barcode": barcode, "quantity": quantity})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

/// Post a notification as a provider would, signed with `secret`.
async fn notify(app: &TestApp, body: &str, sig: Option<String>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(app.url("/api/v1/payments/qr/notifications"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(sig) = sig {
        req = req.header("x-outpost-signature", sig);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn sign(secret: &str, body: &str) -> String {
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&secret[2 * i..2 * i + 2], 16).unwrap();
    }
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(b"outpost-qr-notify-v1\n");
    h.update(body.as_bytes());
    h.finalize().to_hex().to_string()
}

#[tokio::test]
async fn a_shopper_pays_the_cart_in_the_wallet_and_leaves_with_an_exit_code() {
    let (app, wallet, _dir) = app_with_wallet().await;
    let c = shopper(&app).await;
    add(&app, &c, "96385074", 3).await;
    add(&app, &c, "4006381333931", 1).await;
    let (s, v) = call(&app, &c, "GET", "/api/v1/shopper/checkout", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("none")), "{v}");
    let (s, v) = call(&app, &c, "DELETE", "/api/v1/shopper/checkout", None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("no_checkout")), "{v}");

    let (s, paying) = call(&app, &c, "POST", "/api/v1/shopper/checkout", None).await;
    assert_eq!(s, 202, "{paying}");
    assert_eq!(paying["status"], "paying", "{paying}");
    // 3 breads for the price of 2 and a milk.
    assert_eq!(paying["amount"], 2 * 250 + 129);
    let url = paying["pay_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&wallet.pay_url()), "{url}");
    assert!(url.contains("&return="), "{url}");
    // Asked again while paying: the same checkout, the same code.
    let (s, again) = call(&app, &c, "POST", "/api/v1/shopper/checkout", None).await;
    assert_eq!((s, &again["pay_url"]), (202, &paying["pay_url"]));
    // The cart cannot change while it is being paid.
    let (s, v) = call(
        &app,
        &c,
        "POST",
        "/api/v1/shopper/cart/lines",
        Some(json!({"barcode": "96385074"})),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("checkout_in_progress")));
    // A link changed by the shopper is refused by the provider.
    let forged = url.replace("amount=629", "amount=1");
    assert!(wallet.pay(&forged).await.is_err());

    let sent = wallet.pay(&url).await.unwrap();
    assert_eq!(sent.status, 204, "{sent:?}");
    let paid = settled(&app, &c, "paid").await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["total"], 629);
    let code = paid["exit_code"].as_str().unwrap().to_owned();
    assert!(paid["exit_svg"].as_str().unwrap().starts_with("<svg "));
    let sale_id = paid["sale_id"].as_str().unwrap().to_owned();

    // The sale is in the journal, sold by the shopper terminal, paid by QR.
    let (s, sale) = app.get(&format!("/api/v1/sales/{sale_id}")).await;
    assert_eq!(s, 200, "{sale}");
    assert_eq!(sale["terminal_id"], "shopper");
    assert_eq!(sale["tenders"][0]["method"], "qr");
    assert_eq!(sale["tenders"][0]["card"]["brand"], "DemoPay");
    assert_eq!(app.stock("BREAD").await, -3);

    // The cart was sold: it is empty, and the same code is shown again.
    let (_, cart) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!(cart["lines"], json!([]), "{cart}");
    let (_, again) = call(&app, &c, "GET", "/api/v1/shopper/checkout", None).await;
    assert_eq!(again["exit_code"].as_str(), Some(code.as_str()));

    // The provider tells it again: nothing changes.
    assert_eq!(wallet.repeat().await.unwrap().status, 204);
    let (_, sales) = app.get("/api/v1/sales").await;
    let shopper_sales = sales["items"]
        .as_array()
        .map(|a| a.iter().filter(|s| s["terminal_id"] == "shopper").count());
    assert_eq!(shopper_sales, Some(1), "{sales}");

    // At the exit.
    let (s, check) = app.get(&format!("/api/v1/exit-checks/{code}")).await;
    assert_eq!(s, 200, "{check}");
    assert_eq!(check["sale_id"], sale_id.as_str());
    assert_eq!(check["total"], 629);
    assert_eq!(check["audit"], true, "audit_percent is 100");
    assert_eq!(check["passed"], Value::Null);
    assert_eq!(check["cart"]["lines"].as_array().unwrap().len(), 2);
    let (s, v, _) = app
        .post(
            &format!("/api/v1/exit-checks/{code}/pass"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["passed"]["by"], "tester");
    let (s, v, _) = app
        .post(
            &format!("/api/v1/exit-checks/{code}/pass"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("exit_code_used")),
        "{v}"
    );
    let mut altered = code.clone().into_bytes();
    altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
    let (s, v) = app
        .get(&format!(
            "/api/v1/exit-checks/{}",
            String::from_utf8(altered).unwrap()
        ))
        .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("exit_code_invalid")));

    // A shopper cannot read exit checks or a till's codes.
    for path in [
        format!("/api/v1/exit-checks/{code}"),
        "/api/v1/payments/qr/code?checkout_key=x".to_owned(),
    ] {
        let (s, _) = call(&app, &c, "GET", &path, None).await;
        assert_eq!(s, 403, "{path}");
    }
    // Adding after paying starts a new cart.
    add(&app, &c, "96385074", 1).await;
    let (s, v) = call(&app, &c, "GET", "/api/v1/shopper/checkout", None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("none")), "{v}");
}

#[tokio::test]
async fn a_shopper_with_a_loyalty_card_buys_as_that_customer_and_earns_points() {
    let (app, wallet, _dir) = app_with_wallet().await;
    crate::helpers::seed_loyalty(&app.store).await;
    let c = shopper(&app).await;
    for (card, status, code) in [
        ("NOPE-9", 404, Some("unknown_customer")),
        ("   ", 422, Some("invalid_card")),
        ("K 1", 422, Some("invalid_card")),
    ] {
        let (s, v) = call(
            &app,
            &c,
            "PUT",
            "/api/v1/shopper/customer",
            Some(json!({ "card": card })),
        )
        .await;
        assert_eq!((s, v["code"].as_str()), (status, code), "{card}: {v}");
    }
    let (s, v) = call(
        &app,
        &c,
        "PUT",
        "/api/v1/shopper/customer",
        Some(json!({"card": "K-1"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["points"], 1000);
    add(&app, &c, "96385074", 3).await;
    let (_, paying) = call(&app, &c, "POST", "/api/v1/shopper/checkout", None).await;
    let url = paying["pay_url"].as_str().unwrap().to_owned();
    assert_eq!(wallet.pay(&url).await.unwrap().status, 204);
    let paid = settled(&app, &c, "paid").await;
    // 3 breads for the price of 2: 5.00, 1 point per euro.
    assert_eq!(paid["points_earned"], 5, "{paid}");
    let (_, sale) = app
        .get(&format!(
            "/api/v1/sales/{}",
            paid["sale_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(sale["customer_id"], "c-1", "{sale}");
    let (_, who) = app.get("/api/v1/customers?card=K-1").await;
    assert_eq!(who["points"]["balance"], 1005, "{who}");
    // Forgotten: the next cart is nobody's.
    let (s, _) = call(&app, &c, "DELETE", "/api/v1/shopper/customer", None).await;
    assert_eq!(s, 204);
}

#[tokio::test]
async fn a_cancelled_code_ends_the_checkout_and_money_paid_for_it_anyway_is_not_sold() {
    let (app, wallet, _dir) = app_with_wallet().await;
    let c = shopper(&app).await;
    add(&app, &c, "4006381333931", 2).await;
    let (s, paying) = call(&app, &c, "POST", "/api/v1/shopper/checkout", None).await;
    assert_eq!(s, 202, "{paying}");
    let url = paying["pay_url"].as_str().unwrap().to_owned();
    let (s, v) = call(&app, &c, "DELETE", "/api/v1/shopper/checkout", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "failed", "{v}");
    // The cart is the shopper's again; the late payment is accepted and not sold.
    assert_eq!(wallet.pay(&url).await.unwrap().status, 204);
    add(&app, &c, "4006381333931", 1).await;
    let (_, cart) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!(cart["lines"][0]["quantity"], 3, "{cart}");
    assert_eq!(app.stock("MILK").await, 0);

    // Paying it again works with a new code; cancelling in the wallet fails it.
    let (_, p2) = call(&app, &c, "POST", "/api/v1/shopper/checkout", None).await;
    let url2 = p2["pay_url"].as_str().unwrap().to_owned();
    assert_ne!(url2, url);
    assert_eq!(wallet.cancel(&url2).await.unwrap().status, 204);
    let v = settled(&app, &c, "failed").await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "payment_declined", "{v}");
    assert_eq!(app.stock("MILK").await, 0);
}

#[tokio::test]
async fn a_till_sells_with_a_qr_tender_shown_on_its_display() {
    let (app, wallet, _dir) = app_with_wallet().await;
    let till = till_checkout(
        &app,
        "till-qr-1",
        json!({"lines":[{"sku":"SOAP"}],"payment":{"method":"qr"}}),
    );
    let code = till_code(&app, "till-qr-1").await;
    // Soap is 10 % off.
    assert_eq!(code["amount"], 359, "{}", code["url"]);
    assert!(code["svg"].as_str().unwrap().starts_with("<svg "));
    assert_eq!(
        wallet
            .pay(code["url"].as_str().unwrap())
            .await
            .unwrap()
            .status,
        204
    );
    let (s, sale) = till.await.unwrap();
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["tenders"][0]["method"], "qr");
    assert_eq!(sale["tenders"][0]["amount"], 359);
    // Split: cash and QR in one sale.
    let till = till_checkout(
        &app,
        "till-qr-2",
        json!({"lines":[{"sku":"SOAP"}],"payments":[{"method":"cash","tendered":100},{"method":"qr"}]}),
    );
    let code = till_code(&app, "till-qr-2").await;
    assert_eq!(code["amount"], 259, "{}", code["url"]);
    wallet.pay(code["url"].as_str().unwrap()).await.unwrap();
    let (s, sale) = till.await.unwrap();
    assert_eq!(s, 201, "{sale}");
    let methods: Vec<&str> = sale["tenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["cash", "qr"]);
    // Refunding the QR part gives it back through HQ; the refund is recorded.
    let sale_id = sale["sale_id"].as_str().unwrap();
    let (s, refund, _) = app
        .post(
            &format!("/api/v1/sales/{sale_id}/refunds"),
            Some("refund-qr-2"),
            &json!({"reason":"changed mind"}),
        )
        .await;
    assert_eq!(s, 201, "{refund}");
    let qr_back: i64 = refund["tenders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["method"] == "qr")
        .map(|t| t["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(qr_back, 259, "{refund}");
}

#[tokio::test]
async fn notifications_must_be_signed_well_formed_and_for_this_store() {
    let (app, _wallet, _dir) = app_with_wallet().await;
    let body = json!({"merchant":"store-1","reference":"abc-0","status":"paid","amount":100,"currency":"EUR","provider_ref":"x"}).to_string();
    let (s, v) = notify(&app, &body, None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (401, Some("signature_invalid")),
        "{v}"
    );
    let (s, _) = notify(&app, &body, Some(sign(&"00".repeat(32), &body))).await;
    assert_eq!(s, 401);
    let bad = json!({"merchant":"store-1","reference":"abc-0","status":"maybe"}).to_string();
    let (s, v) = notify(&app, &bad, Some(sign(SECRET, &bad))).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("invalid_notification")),
        "{v}"
    );
    let other = json!({"merchant":"store-9","reference":"abc-0","status":"failed"}).to_string();
    let (s, v) = notify(&app, &other, Some(sign(SECRET, &other))).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (422, Some("wrong_merchant")),
        "{v}"
    );
    let junk = "{\"merchant\":";
    let (s, _) = notify(&app, junk, Some(sign(SECRET, junk))).await;
    assert_eq!(s, 422);
    // A signed payment for a code never issued is accepted (to be given back).
    let (s, v) = notify(&app, &body, Some(sign(SECRET, &body))).await;
    assert_eq!(s, 204, "{v}");
}

#[tokio::test]
async fn without_qr_payments_the_phone_is_told_to_pay_at_a_till() {
    let app = spawn_app().await;
    let c = shopper(&app).await;
    add(&app, &c, "4006381333931", 1).await;
    let (s, v) = call(&app, &c, "POST", "/api/v1/shopper/checkout", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (503, Some("payment_terminal_unavailable")),
        "{v}"
    );
    let (s, v) = notify(&app, "{}", Some("00".into())).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (404, Some("qr_payments_off")),
        "{v}"
    );
    let (s, v, _) = app
        .checkout(
            "qr-off",
            &json!({"lines":[{"sku":"SOAP"}],"payment":{"method":"qr"}}),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert!(v["message"].as_str().unwrap().contains("QR"), "{v}");
    // An empty cart cannot be paid.
    let c2 = shopper(&app).await;
    let (s, v) = call(&app, &c2, "POST", "/api/v1/shopper/checkout", None).await;
    assert_eq!(s, 503, "{v}");
}

#[tokio::test]
async fn one_sale_is_split_across_every_way_to_pay() {
    let (app, wallet, _dir) = app_with_wallet().await;
    crate::helpers::seed_loyalty(&app.store).await;
    // 4 soaps at 3.59 (10 % off) = 14.36: points 1.00, voucher 2.00, cash 3.00, card
    // 3.00, wallet 3.00, and the QR code the rest, 2.36.
    let till = till_checkout(
        &app,
        "split-all-1",
        json!({
            "lines": [{"sku": "SOAP", "quantity": 4}],
            "customer": {"card": "K-1"},
            "payments": [
                {"method": "points", "amount": 100},
                {"method": "voucher", "code": "GIFT-1", "amount": 200},
                {"method": "cash", "tendered": 300},
                {"method": "card", "amount": 300},
                {"method": "wallet", "amount": 300},
                {"method": "qr"}
            ]
        }),
    );
    let code = till_code(&app, "split-all-1").await;
    assert_eq!(code["amount"], 236, "{}", code["url"]);
    wallet.pay(code["url"].as_str().unwrap()).await.unwrap();
    let (s, sale) = till.await.unwrap();
    assert_eq!(s, 201, "{sale}");
    let tenders: Vec<(String, i64)> = sale["tenders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["method"].as_str().unwrap().to_owned(),
                t["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, i64)> = [
        ("points", 100),
        ("voucher", 200),
        ("cash", 300),
        ("card", 300),
        ("wallet", 300),
        ("qr", 236),
    ]
    .iter()
    .map(|(m, a)| (m.to_string(), *a))
    .collect();
    assert_eq!(tenders, want);
    assert_eq!(sale["customer_id"], "c-1");
    // Each charged once: the terminal saw the card and the wallet, the provider the code.
    assert_eq!(app.terminal.net_charged(), 600);
    assert_eq!(app.terminal.double_charges(), 0);
    assert_eq!(wallet.sent().len(), 1);
}
