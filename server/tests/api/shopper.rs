//! Self-checkout on the shopper's phone: the store QR, shopper sessions and their
//! carts, and a shopper session refused everywhere else.

use outpost_server::shopper::{StoreToken, token};
use serde_json::{Value, json};

use crate::helpers::{TestApp, client_with, spawn_app, spawn_configured, test_settings};

/// A fresh store token from the staff route.
async fn store_token(app: &TestApp) -> String {
    let (s, v) = app.get("/api/v1/shopper/store-qr").await;
    assert_eq!(s, 200, "{v}");
    v["store_token"].as_str().unwrap().to_owned()
}

/// Open a session with `store_token`: the status, body and cookie (when set).
async fn open(app: &TestApp, store_token: &str) -> (u16, Value, Option<String>) {
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/shopper/sessions"))
        .json(&json!({ "store_token": store_token }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().to_owned());
    (status, r.json().await.unwrap_or(Value::Null), cookie)
}

/// A client holding a new shopper session.
pub(crate) async fn shopper(app: &TestApp) -> reqwest::Client {
    let t = store_token(app).await;
    let (s, v, cookie) = open(app, &t).await;
    assert_eq!(s, 201, "{v}");
    let cookie = cookie.unwrap();
    let pair = cookie.split(';').next().unwrap();
    client_with("cookie", pair)
}

pub(crate) async fn call(
    app: &TestApp,
    c: &reqwest::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), app.url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_store_qr_opens_a_session_that_builds_and_prices_its_own_cart() {
    let app = spawn_app().await;
    let (s, qr) = app.get("/api/v1/shopper/store-qr").await;
    assert_eq!(s, 200, "{qr}");
    let t = qr["store_token"].as_str().unwrap();
    assert_eq!(
        qr["url"].as_str().unwrap(),
        format!("{}/shop/?t={t}", app.base)
    );
    assert!(qr["svg"].as_str().unwrap().starts_with("<svg "), "{qr}");
    assert!(qr["expires_at"].is_string());

    let (s, v, cookie) = open(&app, t).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["expires_in_secs"], 7200);
    let cookie = cookie.unwrap();
    assert!(cookie.starts_with("outpost_shopper="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let c = client_with("cookie", cookie.split(';').next().unwrap());

    // Look-up by barcode and search.
    let (s, v) = call(
        &app,
        &c,
        "GET",
        "/api/v1/shopper/products?barcode=96385074",
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"][0]["sku"], "BREAD");
    let (s, v) = call(&app, &c, "GET", "/api/v1/shopper/products?q=milk", None).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["items"].as_array().unwrap().len() >= 2, "{v}");

    // An empty cart has no price.
    let (s, v) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!(
        (s, &v["lines"], &v["priced"]),
        (200, &json!([]), &Value::Null),
        "{v}"
    );

    // Three breads scanned one by one: one line of 3, "3 for 2" applied.
    for _ in 0..3 {
        let (s, v) = call(
            &app,
            &c,
            "POST",
            "/api/v1/shopper/cart/lines",
            Some(json!({"barcode":"96385074"})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = call(
        &app,
        &c,
        "POST",
        "/api/v1/shopper/cart/lines",
        Some(json!({"sku":"SOAP","quantity":2})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let p = &v["priced"];
    assert_eq!(p["lines"][0]["quantity"]["units"], 3, "{v}");
    assert_eq!(p["lines"][0]["promotion_id"], "bread-3for2", "{v}");
    assert_eq!(p["lines"][0]["discount"], 250, "{v}");
    assert_eq!(p["lines"][1]["promotion_id"], "household-10", "{v}");
    assert_eq!(p["lines"][1]["discount"], 80, "{v}");
    assert_eq!(p["total"], 750 - 250 + 798 - 80, "{v}");

    // Remove the bread: the soap is left, as line 1.
    let (s, v) = call(&app, &c, "DELETE", "/api/v1/shopper/cart/lines/1", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lines"], json!([{"sku":"SOAP","quantity":2}]));
    let (_, again) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!(again, v);
}

#[tokio::test]
async fn bad_lines_are_refused_and_leave_the_cart_as_it_was() {
    let app = spawn_app().await;
    let c = shopper(&app).await;
    let (s, before) = call(
        &app,
        &c,
        "POST",
        "/api/v1/shopper/cart/lines",
        Some(json!({"barcode":"4006381333931"})),
    )
    .await;
    assert_eq!(s, 200, "{before}");
    let cases = [
        (json!({"barcode":"0000000000000"}), 422, "unknown_product"),
        (json!({"sku":"NOPE"}), 422, "unknown_product"),
        (
            json!({"barcode":"96385074","sku":"BREAD"}),
            422,
            "invalid_line",
        ),
        (json!({}), 422, "invalid_line"),
        (json!({"barcode":"  "}), 422, "invalid_line"),
        (
            json!({"barcode":"96385074","quantity":0}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"barcode":"96385074","quantity":100}),
            422,
            "invalid_quantity",
        ),
        (
            json!({"barcode":"4006381333931","quantity":99}),
            422,
            "invalid_quantity",
        ),
        (json!({"sku":"OLD"}), 422, ""),
        (json!({"sku":"APPLES"}), 422, ""),
        (json!({"barcode":"96385074","price":1}), 400, ""),
    ];
    for (body, status, code) in cases {
        let (s, v) = call(
            &app,
            &c,
            "POST",
            "/api/v1/shopper/cart/lines",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, status, "{body}: {v}");
        if !code.is_empty() {
            assert_eq!(v["code"], code, "{body}: {v}");
        }
        let (_, now) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
        assert_eq!(now, before, "{body} changed the cart");
    }
    for path in [
        "/api/v1/shopper/cart/lines/2",
        "/api/v1/shopper/cart/lines/0",
    ] {
        let (s, v) = call(&app, &c, "DELETE", path, None).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (404, Some("line_not_found")),
            "{path}: {v}"
        );
    }
    let (s, v) = call(&app, &c, "DELETE", "/api/v1/shopper/cart/lines/x", None).await;
    assert_eq!(s, 400, "{v}");
    let (_, now) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!(now, before);
}

#[tokio::test]
async fn one_session_cannot_reach_another_sessions_cart() {
    let app = spawn_app().await;
    let a = shopper(&app).await;
    let b = shopper(&app).await;
    let (s, mine) = call(
        &app,
        &a,
        "POST",
        "/api/v1/shopper/cart/lines",
        Some(json!({"sku":"MILK"})),
    )
    .await;
    assert_eq!(s, 200);
    let (s, theirs) = call(&app, &b, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!((s, &theirs["lines"]), (200, &json!([])), "{theirs}");
    // B's line 1 does not exist; A's stays.
    let (s, _) = call(&app, &b, "DELETE", "/api/v1/shopper/cart/lines/1", None).await;
    assert_eq!(s, 404);
    let (_, still) = call(&app, &a, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!(still, mine);
    // No cookie, an unknown or a staff session: no cart at all.
    for c in [
        reqwest::Client::new(),
        client_with("cookie", "outpost_shopper=made-up"),
        app.client.clone(),
    ] {
        let (s, v) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (401, Some("shopper_session_unknown")),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_shopper_session_is_refused_on_every_staff_route_and_the_console() {
    let app = spawn_app().await;
    let c = shopper(&app).await;
    let mut n = 0;
    for r in crate::auth::matrix() {
        n += 1;
        let mut req = c
            .request(r.method.parse().unwrap(), app.url(&r.path))
            .header("Idempotency-Key", format!("shopper-{n}"));
        if let Some(b) = &r.body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let what = format!("{} {}: {status} {body}", r.method, r.path);
        assert_eq!(status, 403, "{what}");
        assert_eq!(body["code"], "forbidden", "{what}");
        assert!(
            body["message"].as_str().unwrap().contains("shopper"),
            "{what}"
        );
    }
    assert!(n > 30, "the matrix has {n} routes");
    // Nothing was sold, counted or changed meanwhile.
    let (_, sales) = app.get("/api/v1/sales").await;
    assert_eq!(sales["items"], json!([]));
    assert_eq!(app.stock("MILK").await, 0);
    // The console knows no shopper: every page sends it to the staff login.
    let cookie = {
        let t = store_token(&app).await;
        let (_, _, cookie) = open(&app, &t).await;
        cookie.unwrap().split(';').next().unwrap().to_owned()
    };
    let console = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for page in [
        "/console/",
        "/console/sales",
        "/console/stock",
        "/console/devices",
        "/console/security",
        "/console/logs",
    ] {
        let r = console
            .get(app.url(page))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            status != 200 && location.contains("/console/login"),
            "{page}: {status} {location}"
        );
    }
}

#[tokio::test]
async fn forged_expired_and_malformed_store_tokens_are_refused() {
    let app = spawn_app().await;
    let good = store_token(&app).await;
    let mut altered = good.clone().into_bytes();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let cipher = app.security.cipher(token::PURPOSE).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
    let expired = StoreToken {
        issued_at: now - 100,
        expires_at: now - 10,
    }
    .seal(&cipher);
    // Sealed for another purpose under the same data key: not a store token.
    let other = app.security.cipher("token:something-else").unwrap();
    let foreign = StoreToken {
        issued_at: now,
        expires_at: now + 100,
    }
    .seal(&other);
    for (t, code) in [
        (altered.as_str(), "store_token_invalid"),
        (foreign.as_str(), "store_token_invalid"),
        ("", "store_token_invalid"),
        ("not a token", "store_token_invalid"),
        (expired.as_str(), "store_token_expired"),
    ] {
        let (s, v, cookie) = open(&app, t).await;
        assert_eq!((s, v["code"].as_str()), (401, Some(code)), "{t}: {v}");
        assert_eq!(v["field"], "store_token");
        assert!(cookie.is_none(), "{t}: a cookie was set");
    }
    for body in [
        json!({}),
        json!({"store_token": 5}),
        json!({"store_token": good, "x": 1}),
    ] {
        let r = reqwest::Client::new()
            .post(app.url("/api/v1/shopper/sessions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 400 | 422),
            "{body}: {}",
            r.status()
        );
        assert!(r.headers().get("set-cookie").is_none());
    }
    // The good one still works.
    let (s, _, _) = open(&app, &good).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn sessions_are_bounded_and_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.shopper.max_sessions = 3;
    settings.shopper.sessions_per_minute_per_ip = 2;
    settings.shopper.requests_per_minute = 4;
    let app = spawn_configured(settings, None, true).await;
    let t = store_token(&app).await;
    let (s, _, cookie) = open(&app, &t).await;
    assert_eq!(s, 201);
    let (s, _, _) = open(&app, &t).await;
    assert_eq!(s, 201);
    // A third from the same address within the minute: rate-limited.
    let (s, v, none) = open(&app, &t).await;
    assert_eq!((s, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(none.is_none());
    // Another address (loopback has many) gets the last place, then the store is full.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let r = other
            .post(app.url("/api/v1/shopper/sessions"))
            .json(&json!({ "store_token": t }))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status().as_u16() == 503 {
            assert_eq!(r.headers()["retry-after"], "60");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "shopper_sessions_full", "{v}");
        }
    }
    assert_eq!(statuses, [201, 503]);

    // Four requests a minute per session, then 429 (staff routes count too).
    let c = client_with("cookie", cookie.unwrap().split(';').next().unwrap());
    for _ in 0..3 {
        let (s, _) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
        assert_eq!(s, 200);
    }
    let (s, _) = call(&app, &c, "GET", "/api/v1/sales", None).await;
    assert_eq!(s, 403);
    let (s, v) = call(&app, &c, "GET", "/api/v1/shopper/cart", None).await;
    assert_eq!((s, v["code"].as_str()), (429, Some("rate_limited")), "{v}");
    drop(dir);
}
