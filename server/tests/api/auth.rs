//! Authentication and roles on the REST API: every route against every role and no
//! credentials, staff login and logout, the login rate limit, revoked terminal tokens
//! and the audit log.

use std::collections::BTreeSet;

use outpost_security::auth::roles::Role;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::helpers::{TestApp, audit_page, client_with, session_for, spawn_app};

const ZERO: &str = "00000000-0000-0000-0000-000000000000";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Cashier,
    Supervisor,
    Technician,
    Admin,
}

use Who::*;

const CALLERS: [Who; 5] = [Nobody, Cashier, Supervisor, Technician, Admin];

/// One row of the matrix: a route (as documented), a concrete request, and the roles
/// that may call it.
pub(crate) struct Row {
    pub(crate) method: &'static str,
    pub(crate) doc_path: &'static str,
    pub(crate) path: String,
    pub(crate) body: Option<Value>,
    allowed: &'static [Who],
}

fn row(
    method: &'static str,
    doc_path: &'static str,
    path: &str,
    body: Option<Value>,
    allowed: &'static [Who],
) -> Row {
    Row {
        method,
        doc_path,
        path: path.to_owned(),
        body,
        allowed,
    }
}

/// Every staff route (also what a shopper session is refused on, in `shopper.rs`).
pub(crate) fn matrix() -> Vec<Row> {
    let everyone: &'static [Who] = &[Cashier, Supervisor, Technician, Admin];
    let sellers: &'static [Who] = &[Cashier, Supervisor];
    let tech_admin: &'static [Who] = &[Technician, Admin];
    let sale =
        json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"cash","tendered":1000}});
    vec![
        row("GET", "/metrics", "/metrics", None, tech_admin),
        row(
            "GET",
            "/api/v1/sync/status",
            "/api/v1/sync/status",
            None,
            tech_admin,
        ),
        row("GET", "/api/v1/audit", "/api/v1/audit", None, &[Admin]),
        row(
            "GET",
            "/api/v1/terminals",
            "/api/v1/terminals",
            None,
            &[Admin],
        ),
        row(
            "POST",
            "/api/v1/terminals",
            "/api/v1/terminals",
            Some(json!({"name": "till-matrix-2"})),
            &[Admin],
        ),
        row(
            "DELETE",
            "/api/v1/terminals/{name}",
            "/api/v1/terminals/none",
            None,
            &[Admin],
        ),
        row("GET", "/api/v1/users", "/api/v1/users", None, &[Admin]),
        row(
            "PUT",
            "/api/v1/users/{username}",
            "/api/v1/users/matrix-user",
            Some(json!({"password": "a long matrix password", "roles": ["supervisor"]})),
            &[Admin],
        ),
        row(
            "DELETE",
            "/api/v1/users/{username}",
            "/api/v1/users/none",
            None,
            &[Admin],
        ),
        row("GET", "/api/v1/peers", "/api/v1/peers", None, tech_admin),
        row("GET", "/api/v1/update", "/api/v1/update", None, tech_admin),
        row(
            "POST",
            "/api/v1/update",
            "/api/v1/update",
            Some(json!({"bundle": "/nonexistent"})),
            tech_admin,
        ),
        row(
            "POST",
            "/api/v1/update/rollback",
            "/api/v1/update/rollback",
            None,
            tech_admin,
        ),
        row(
            "GET",
            "/api/v1/security/status",
            "/api/v1/security/status",
            None,
            tech_admin,
        ),
        row(
            "GET",
            "/api/v1/products/{sku}",
            "/api/v1/products/MILK",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/products",
            "/api/v1/products",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/promotions",
            "/api/v1/promotions",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/tax-rates",
            "/api/v1/tax-rates",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/planogram",
            "/api/v1/planogram",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/inventory/{sku}",
            "/api/v1/inventory/MILK",
            None,
            everyone,
        ),
        row(
            "PUT",
            "/api/v1/inventory/{sku}",
            "/api/v1/inventory/MILK",
            Some(json!({"stock": 50})),
            tech_admin,
        ),
        row(
            "POST",
            "/api/v1/inventory/{sku}/adjustments",
            "/api/v1/inventory/MILK/adjustments",
            Some(json!({"delta": 1, "reason": "found one"})),
            tech_admin,
        ),
        row(
            "POST",
            "/api/v1/carts/price",
            "/api/v1/carts/price",
            Some(json!({"lines":[{"sku":"MILK","quantity":1}]})),
            sellers,
        ),
        row(
            "POST",
            "/api/v1/checkout",
            "/api/v1/checkout",
            Some(sale),
            sellers,
        ),
        row(
            "GET",
            "/api/v1/sales/{id}",
            &format!("/api/v1/sales/{ZERO}"),
            None,
            sellers,
        ),
        row("GET", "/api/v1/sales", "/api/v1/sales", None, sellers),
        row(
            "GET",
            "/api/v1/customers",
            "/api/v1/customers?card=K-0",
            None,
            sellers,
        ),
        row(
            "POST",
            "/api/v1/sales/{id}/refunds",
            &format!("/api/v1/sales/{ZERO}/refunds"),
            Some(json!({"lines":[{"line":1,"quantity":1}],"reason":"test"})),
            &[Supervisor],
        ),
        row(
            "POST",
            "/api/v1/sales/{id}/reprint",
            &format!("/api/v1/sales/{ZERO}/reprint"),
            None,
            sellers,
        ),
        row(
            "GET",
            "/api/v1/shopper/store-qr",
            "/api/v1/shopper/store-qr",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/exit-checks/{code}",
            "/api/v1/exit-checks/not-a-code",
            None,
            sellers,
        ),
        row(
            "POST",
            "/api/v1/exit-checks/{code}/pass",
            "/api/v1/exit-checks/not-a-code/pass",
            None,
            sellers,
        ),
        row(
            "GET",
            "/api/v1/payments/qr/code",
            "/api/v1/payments/qr/code?checkout_key=k-1",
            None,
            sellers,
        ),
        row(
            "GET",
            "/api/v1/devices",
            "/api/v1/devices",
            None,
            &[Technician],
        ),
        row(
            "POST",
            "/api/v1/devices/{id}/health-check",
            "/api/v1/devices/none/health-check",
            None,
            &[Technician],
        ),
        row(
            "GET",
            "/api/v1/receipts/queue",
            "/api/v1/receipts/queue",
            None,
            &[Technician],
        ),
        row(
            "GET",
            "/api/v1/devices/{id}/weight",
            "/api/v1/devices/none/weight",
            None,
            sellers,
        ),
        row(
            "GET",
            "/api/v1/devices/{id}/scans",
            "/api/v1/devices/none/scans",
            None,
            sellers,
        ),
        row(
            "GET",
            "/api/v1/devices/{id}/last-receipt",
            "/api/v1/devices/none/last-receipt",
            None,
            &[Technician],
        ),
        row(
            "GET",
            "/api/v1/vending/slots",
            "/api/v1/vending/slots",
            None,
            everyone,
        ),
        row(
            "PUT",
            "/api/v1/vending/slots/{slot}",
            "/api/v1/vending/slots/A1",
            Some(json!({"sku": "MILK", "price": 120, "capacity": 10, "par": 4})),
            tech_admin,
        ),
        row(
            "GET",
            "/api/v1/vending/slots/{slot}",
            "/api/v1/vending/slots/A1",
            None,
            everyone,
        ),
        row(
            "POST",
            "/api/v1/vending/slots/{slot}/refill",
            "/api/v1/vending/slots/A1/refill",
            Some(json!({"units": 1})),
            tech_admin,
        ),
        row(
            "PUT",
            "/api/v1/vending/slots/{slot}/count",
            "/api/v1/vending/slots/A1/count",
            Some(json!({"count": 0})),
            tech_admin,
        ),
        row(
            "DELETE",
            "/api/v1/vending/slots/{slot}",
            "/api/v1/vending/slots/Z9",
            None,
            tech_admin,
        ),
        row(
            "GET",
            "/api/v1/vending/dex",
            "/api/v1/vending/dex",
            None,
            tech_admin,
        ),
        row(
            "POST",
            "/api/v1/vending/dex/reset",
            "/api/v1/vending/dex/reset",
            None,
            tech_admin,
        ),
        row(
            "GET",
            "/api/v1/vending/alerts",
            "/api/v1/vending/alerts",
            None,
            everyone,
        ),
        row(
            "POST",
            "/api/v1/vending/vends",
            "/api/v1/vending/vends",
            // Refused after the permission check, before any device is needed (a
            // slot that cannot exist: 400).
            Some(json!({"slot": "A0", "method": "cash"})),
            sellers,
        ),
        row(
            "POST",
            "/api/v1/vending/alerts/temperature/clear",
            "/api/v1/vending/alerts/temperature/clear",
            None,
            tech_admin,
        ),
        row(
            "GET",
            "/api/v1/vending/drift",
            "/api/v1/vending/drift",
            None,
            everyone,
        ),
        row(
            "GET",
            "/api/v1/vending/credit",
            "/api/v1/vending/credit",
            None,
            sellers,
        ),
        row(
            "POST",
            "/api/v1/vending/credit/return",
            "/api/v1/vending/credit/return",
            // Refused after the permission check: this machine takes no cash (422).
            None,
            sellers,
        ),
    ]
}

/// Clients for each caller: a real terminal token, and one staff session per role.
fn clients(app: &TestApp) -> Vec<(Who, reqwest::Client)> {
    let (_, token) = app.security.add_terminal("test", "till-matrix").unwrap();
    CALLERS
        .iter()
        .map(|&who| {
            let client = match who {
                Nobody => reqwest::Client::new(),
                Cashier => client_with(
                    "authorization",
                    &format!("Bearer {}", token.expose_secret()),
                ),
                Supervisor => client_with(
                    "cookie",
                    &session_for(&app.security, "sup", vec![Role::Supervisor]),
                ),
                Technician => client_with(
                    "cookie",
                    &session_for(&app.security, "tech", vec![Role::Technician]),
                ),
                Admin => client_with(
                    "cookie",
                    &session_for(&app.security, "adm", vec![Role::Admin]),
                ),
            };
            (who, client)
        })
        .collect()
}

#[tokio::test]
async fn every_route_against_every_role_and_no_credentials() {
    let app = spawn_app().await;
    let rows = matrix();
    // The table covers every documented route except the public ones and logout
    // (which needs a session, not a role: tested below).
    let (_, doc) = app.get("/api/v1/openapi.json").await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let exempt: BTreeSet<(String, String)> = [
        ("GET", "/healthz"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        // Shopper routes: a store token or a shopper session, not a role (shopper.rs).
        ("POST", "/api/v1/shopper/sessions"),
        ("GET", "/api/v1/shopper/products"),
        ("GET", "/api/v1/shopper/cart"),
        ("POST", "/api/v1/shopper/cart/lines"),
        ("DELETE", "/api/v1/shopper/cart/lines/{line}"),
        ("POST", "/api/v1/shopper/checkout"),
        ("GET", "/api/v1/shopper/checkout"),
        ("DELETE", "/api/v1/shopper/checkout"),
        ("PUT", "/api/v1/shopper/customer"),
        ("DELETE", "/api/v1/shopper/customer"),
        // The payment provider's notifications: signed, not a role (shopper_pay.rs).
        ("POST", "/api/v1/payments/qr/notifications"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.method.to_owned(), r.doc_path.to_owned()))
        .collect();
    let missing: Vec<_> = documented
        .difference(&covered)
        .filter(|r| !exempt.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the matrix: {missing:?}"
    );

    let clients = clients(&app);
    let mut n = 0;
    for r in &rows {
        for (who, client) in &clients {
            n += 1;
            let mut req = client
                .request(r.method.parse().unwrap(), app.url(&r.path))
                .header("Idempotency-Key", format!("matrix-{n}"));
            if let Some(b) = &r.body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let what = format!("{} {} as {who:?}: {status} {body}", r.method, r.path);
            if *who == Nobody {
                assert_eq!(status, 401, "{what}");
                assert_eq!(body["code"], "unauthorized", "{what}");
                assert!(
                    body["message"].is_string() && body.get("field").is_some(),
                    "{what}"
                );
            } else if r.allowed.contains(who) {
                assert!(status != 401 && status != 403 && status < 500, "{what}");
            } else {
                assert_eq!(status, 403, "{what}");
                assert_eq!(body["code"], "forbidden", "{what}");
            }
        }
    }
    // Public routes answer without credentials.
    for path in ["/healthz", "/api/v1/openapi.json"] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn bad_credentials_are_401() {
    let app = spawn_app().await;
    let (_, token) = app.security.add_terminal("test", "till-bad").unwrap();
    let good = token.expose_secret().to_owned();
    for header in [
        ("authorization", format!("Bearer {good}x")),
        ("authorization", format!("Basic {good}")),
        ("authorization", "Bearer ".to_owned()),
        ("authorization", good.clone()),
        ("cookie", "outpost_session=not-a-session".to_owned()),
    ] {
        let r = client_with(header.0, &header.1)
            .get(app.url("/api/v1/products"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{header:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "unauthorized");
    }
}

#[tokio::test]
async fn a_revoked_terminal_token_is_refused() {
    let app = spawn_app().await;
    let (_, token) = app.security.add_terminal("test", "till-9").unwrap();
    let till = client_with(
        "authorization",
        &format!("Bearer {}", token.expose_secret()),
    );
    let r = till.get(app.url("/api/v1/products")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(app.security.revoke_terminal("test", "till-9").unwrap());
    let r = till.get(app.url("/api/v1/products")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        app.security
            .terminals()
            .iter()
            .any(|t| t.name == "till-9" && t.revoked_at.is_some())
    );
}

fn cookie_of(r: &reqwest::Response) -> (String, String) {
    let raw = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let pair = raw.split(';').next().unwrap().to_owned();
    (pair, raw)
}

#[tokio::test]
async fn staff_log_in_to_a_strict_http_only_session_and_log_out() {
    let app = spawn_app().await;
    let pw = SecretString::from("correct horse battery".to_owned());
    app.security
        .set_user("test", "sam", &pw, vec![Role::Supervisor])
        .unwrap();
    let anon = reqwest::Client::new();
    let r = anon
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username":"sam","password":"correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (pair, raw) = cookie_of(&r);
    assert!(raw.contains("HttpOnly"), "{raw}");
    assert!(raw.contains("SameSite=Strict"), "{raw}");
    assert!(!raw.contains("Secure"), "plain HTTP on loopback: {raw}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["roles"], json!(["supervisor"]));
    let sam = client_with("cookie", &pair);
    assert_eq!(
        sam.get(app.url("/api/v1/sales"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        sam.get(app.url("/api/v1/devices"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    let r = sam
        .post(app.url("/api/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        sam.get(app.url("/api/v1/sales"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        sam.post(app.url("/api/v1/auth/logout"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    // A wrong password and an unknown user look the same.
    for body in [
        json!({"username":"sam","password":"wrong password!"}),
        json!({"username":"nobody","password":"correct horse battery"}),
    ] {
        let r = anon
            .post(app.url("/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        assert!(r.headers().get("set-cookie").is_none());
    }
    // Bad input is a clear 4xx, not a crash.
    let r = anon
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username":"sam"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn login_is_rate_limited() {
    let app = spawn_app().await;
    let pw = SecretString::from("correct horse battery".to_owned());
    app.security
        .set_user("test", "tina", &pw, vec![Role::Technician])
        .unwrap();
    let anon = reqwest::Client::new();
    let login = |password: &'static str| {
        let (anon, url) = (anon.clone(), app.url("/api/v1/auth/login"));
        async move {
            anon.post(url)
                .json(&json!({"username":"tina","password":password}))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        assert_eq!(login("wrong password!").await.status().as_u16(), 401);
    }
    let r = login("wrong password!").await;
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    // Even the right password waits out the window.
    assert_eq!(login("correct horse battery").await.status().as_u16(), 429);
}

#[tokio::test]
async fn the_audit_log_records_logins_refunds_terminals_and_verifies() {
    let app = spawn_app().await;
    let pw = SecretString::from("correct horse battery".to_owned());
    app.security
        .set_user("test", "ada", &pw, vec![Role::Admin])
        .unwrap();
    app.security.add_terminal("test", "till-a").unwrap();
    app.security.revoke_terminal("test", "till-a").unwrap();
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username":"ada","password":"correct horse battery"}))
        .send()
        .await
        .unwrap();
    let (pair, _) = cookie_of(&r);
    // A sale and a refund by the all-roles tester.
    let (s, sale, _) = app
        .checkout("audit-sale", &json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"cash","tendered":1000}}))
        .await;
    assert_eq!(s, 201, "{sale}");
    let id = sale["sale_id"].as_str().unwrap();
    let (s, refund, _) = app
        .post(
            &format!("/api/v1/sales/{id}/refunds"),
            Some("audit-refund"),
            &json!({"lines":[{"line":1,"quantity":1}],"reason":"test"}),
        )
        .await;
    assert_eq!(s, 201, "{refund}");
    let ada = client_with("cookie", &pair);
    let (page, actions) = audit_page(&app, &ada).await;
    for want in [
        ("test", "user.set"),
        ("test", "terminal.add"),
        ("test", "terminal.revoke"),
        ("ada", "login"),
        ("tester", "refund"),
    ] {
        assert!(
            actions.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} not in {actions:?}"
        );
    }
    assert_eq!(page["count"].as_u64().unwrap() as usize, actions.len());
    // No secret reaches the log.
    assert!(!page.to_string().contains("correct horse battery"));
    // Bad paging is a clear 400.
    let r = ada
        .get(app.url("/api/v1/audit?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

/// Fires `usernames` as parallel wrong logins; the statuses, in any order.
async fn parallel_wrong_logins(app: &TestApp, usernames: Vec<String>) -> Vec<(u16, Value)> {
    let anon = reqwest::Client::new();
    let mut tasks = tokio::task::JoinSet::new();
    for username in usernames {
        let (anon, url) = (anon.clone(), app.url("/api/v1/auth/login"));
        tasks.spawn(async move {
            let r = anon
                .post(url)
                .json(&json!({"username": username, "password": "wrong password!"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        });
    }
    let mut answers = Vec::new();
    while let Some(a) = tasks.join_next().await {
        answers.push(a.unwrap());
    }
    answers
}

// Check-then-record let every parallel guess pass the check before the first failure
// was recorded, so each of them had its password checked.
#[tokio::test]
async fn parallel_wrong_logins_each_count_and_only_the_allowed_ones_are_checked() {
    let app = spawn_app().await;
    let pw = SecretString::from("correct horse battery".to_owned());
    app.security
        .set_user("test", "tina", &pw, vec![Role::Technician])
        .unwrap();
    let count = |answers: &[(u16, Value)], status: u16| {
        answers.iter().filter(|(s, _)| *s == status).count()
    };

    // 50 at one account from one address: 5 (login_max_failures) are checked.
    let answers = parallel_wrong_logins(&app, vec!["tina".to_owned(); 50]).await;
    assert_eq!((count(&answers, 401), count(&answers, 429)), (5, 45));
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == 401 || v["code"] == "rate_limited")
    );

    // 30 unknown usernames from the same address: the address has 15 of its 20
    // failures (login_max_failures_per_source) left.
    let others = (0..30).map(|i| format!("nobody{i}")).collect();
    let answers = parallel_wrong_logins(&app, others).await;
    assert_eq!((count(&answers, 401), count(&answers, 429)), (15, 15));
}
