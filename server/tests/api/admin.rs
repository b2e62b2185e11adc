//! Staff accounts and terminal tokens managed over the API by an admin: issue, use,
//! list and revoke a terminal token; create, log in, narrow, disable an account; the
//! last admin is kept; every change is in the audit log; bad input changes nothing.

use outpost_security::auth::roles::Role;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{TestApp, audit_page, client_with, session_for, spawn_app};

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn admin(app: &TestApp, name: &str) -> reqwest::Client {
    client_with(
        "cookie",
        &session_for(&app.security, name, vec![Role::Admin]),
    )
}

async fn login(app: &TestApp, username: &str, password: &str) -> Result<String, u16> {
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    if r.status().as_u16() != 200 {
        return Err(r.status().as_u16());
    }
    let raw = r.headers()["set-cookie"].to_str().unwrap();
    Ok(raw.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn an_admin_issues_a_terminal_token_that_sells_until_it_is_revoked() {
    let app = spawn_app().await;
    let ada = admin(&app, "ada");

    let (s, v) = send(
        ada.post(app.url("/api/v1/terminals"))
            .json(&json!({"name": "till-7"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&format!("opt_{id}_")), "{v}");
    assert_eq!(v["name"], "till-7");

    // The token sells.
    let till = client_with("authorization", &format!("Bearer {token}"));
    let (s, v) = send(
        till.post(app.url("/api/v1/checkout"))
            .header("Idempotency-Key", "admin-till-7-1")
            .json(&json!({"lines":[{"sku":"MILK","quantity":1}],
                          "payment":{"method":"cash","tendered":1000}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["terminal_id"], "till-7", "{v}");

    // Listed without the token or its hash; a second token for the name is refused.
    let (s, list) = send(ada.get(app.url("/api/v1/terminals"))).await;
    assert_eq!(s, 200);
    let text = list.to_string();
    assert!(!text.contains(&token[token.len() - 43..]), "{text}");
    assert!(!text.contains("hash"), "{text}");
    let row = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "till-7")
        .unwrap()
        .clone();
    assert_eq!(row["active"], true);
    assert_eq!(row["revoked_at"], Value::Null);
    assert!(row["created_at"].as_str().unwrap().ends_with('Z'), "{row}");
    let (s, v) = send(
        ada.post(app.url("/api/v1/terminals"))
            .json(&json!({"name": "till-7"})),
    )
    .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (409, Some("terminal_exists")),
        "{v}"
    );

    // Revoked: the token stops at once; a second revoke finds nothing.
    let r = ada
        .delete(app.url("/api/v1/terminals/till-7"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (s, v) = send(till.get(app.url("/api/v1/products/MILK"))).await;
    assert_eq!((s, v["code"].as_str()), (401, Some("unauthorized")));
    let (s, v) = send(ada.delete(app.url("/api/v1/terminals/till-7"))).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("terminal_not_found")));
    let (_, list) = send(ada.get(app.url("/api/v1/terminals"))).await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "till-7" && t["active"] == false && t["revoked_at"].is_string()),
        "{list}"
    );

    // A new token under the same name works after the revocation.
    let (s, v) = send(
        ada.post(app.url("/api/v1/terminals"))
            .json(&json!({"name": "till-7"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_ne!(v["token"].as_str().unwrap(), token);

    let actions = audit_page(&app, &ada).await.1;
    for want in ["terminal.add", "terminal.revoke"] {
        assert!(
            actions
                .iter()
                .any(|(who, what)| who == "ada" && what == want),
            "{want} by ada in {actions:?}"
        );
    }
}

#[tokio::test]
async fn bad_terminal_requests_change_nothing() {
    let app = spawn_app().await;
    let ada = admin(&app, "ada");
    let before = app.security.terminals().len();
    for (body, status) in [
        (json!({"name": ""}), 422),
        (json!({"name": "till 1"}), 422),
        (json!({"name": "x".repeat(65)}), 422),
        (json!({"name": "till-1", "role": "admin"}), 400),
        (json!({}), 400),
        (json!("till-1"), 400),
    ] {
        let (s, v) = send(ada.post(app.url("/api/v1/terminals")).json(&body)).await;
        assert_eq!(s, status, "{body} -> {v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
    }
    let r = ada
        .post(app.url("/api/v1/terminals"))
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(app.security.terminals().len(), before);
}

#[tokio::test]
async fn an_admin_manages_staff_accounts_and_changes_apply_to_open_sessions() {
    let app = spawn_app().await;
    let ada = admin(&app, "ada");

    // Created: 201, then the account logs in with the roles it was given.
    let (s, v) = send(
        ada.put(app.url("/api/v1/users/sam"))
            .json(&json!({"password": "correct horse battery", "roles": ["supervisor"]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        v,
        json!({"username":"sam","roles":["supervisor"],"disabled":false})
    );
    let cookie = login(&app, "sam", "correct horse battery").await.unwrap();
    let sam = client_with("cookie", &cookie);
    let (s, _) = send(sam.get(app.url("/api/v1/sales"))).await;
    assert_eq!(s, 200);

    // Replaced (other password, technician only): 200, the old session ends, the old
    // password stops working, the new roles apply.
    let (s, v) = send(
        ada.put(app.url("/api/v1/users/sam"))
            .json(&json!({"password": "another long password", "roles": ["technician"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = send(sam.get(app.url("/api/v1/sales"))).await;
    assert_eq!(s, 401, "the session opened before the change ended");
    assert_eq!(login(&app, "sam", "correct horse battery").await, Err(401));
    let cookie = login(&app, "sam", "another long password").await.unwrap();
    let sam = client_with("cookie", &cookie);
    assert_eq!(send(sam.get(app.url("/api/v1/sales"))).await.0, 403);
    assert_eq!(send(sam.get(app.url("/api/v1/devices"))).await.0, 200);

    // Listed without hashes.
    let (s, list) = send(ada.get(app.url("/api/v1/users"))).await;
    assert_eq!(s, 200);
    assert!(!list.to_string().contains("argon2"), "{list}");
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .contains(&json!({"username":"sam","roles":["technician"],"disabled":false})),
        "{list}"
    );

    // Disabled: the session ends, login fails, the account stays listed.
    let r = ada
        .delete(app.url("/api/v1/users/sam"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(send(sam.get(app.url("/api/v1/devices"))).await.0, 401);
    assert_eq!(login(&app, "sam", "another long password").await, Err(401));
    let (_, list) = send(ada.get(app.url("/api/v1/users"))).await;
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "sam" && u["disabled"] == true),
        "{list}"
    );
    let (s, v) = send(ada.delete(app.url("/api/v1/users/nobody"))).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("user_not_found")));

    // A new password enables it again.
    let (s, v) = send(
        ada.put(app.url("/api/v1/users/sam"))
            .json(&json!({"password": "a third long password", "roles": ["technician"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(login(&app, "sam", "a third long password").await.is_ok());

    let actions = audit_page(&app, &ada).await.1;
    for want in ["user.set", "user.disable"] {
        assert!(
            actions
                .iter()
                .any(|(who, what)| who == "ada" && what == want),
            "{want} by ada in {actions:?}"
        );
    }
}

#[tokio::test]
async fn the_last_enabled_admin_cannot_be_disabled_or_demoted() {
    let app = spawn_app().await;
    app.security
        .set_user(
            "test",
            "root",
            &SecretString::from("root password long".to_owned()),
            vec![Role::Admin],
        )
        .unwrap();
    let cookie = login(&app, "root", "root password long").await.unwrap();
    let root = client_with("cookie", &cookie);

    let (s, v) = send(root.delete(app.url("/api/v1/users/root"))).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("last_admin")), "{v}");
    let (s, v) = send(
        root.put(app.url("/api/v1/users/root"))
            .json(&json!({"password": "root password long", "roles": ["technician"]})),
    )
    .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("last_admin")), "{v}");
    // Nothing changed: root still logs in as admin, its session still works.
    assert_eq!(send(root.get(app.url("/api/v1/users"))).await.0, 200);
    assert!(login(&app, "root", "root password long").await.is_ok());

    // With a second admin, root may go.
    let (s, _) = send(
        root.put(app.url("/api/v1/users/ada"))
            .json(&json!({"password": "ada password long", "roles": ["admin"]})),
    )
    .await;
    assert_eq!(s, 201);
    let r = root
        .delete(app.url("/api/v1/users/root"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(send(root.get(app.url("/api/v1/users"))).await.0, 401);
}

#[tokio::test]
async fn bad_account_requests_change_nothing() {
    let app = spawn_app().await;
    let ada = admin(&app, "ada");
    // Values the checks refuse are 422; bodies of the wrong shape are 400.
    for (user, body, status) in [
        (
            "sam",
            json!({"password": "short", "roles": ["supervisor"]}),
            422,
        ),
        (
            "sam",
            json!({"password": "x".repeat(300), "roles": ["supervisor"]}),
            422,
        ),
        (
            "sam",
            json!({"password": "long enough pw", "roles": []}),
            422,
        ),
        (
            "sam",
            json!({"password": "long enough pw", "roles": ["cashier_terminal"]}),
            422,
        ),
        (
            "bad%20name",
            json!({"password": "long enough pw", "roles": ["admin"]}),
            422,
        ),
        (
            "sam",
            json!({"password": "long enough pw", "roles": ["owner"]}),
            400,
        ),
        (
            "sam",
            json!({"password": "long enough pw", "roles": ["admin"], "x": 1}),
            400,
        ),
        ("sam", json!({"roles": ["admin"]}), 400),
    ] {
        let (s, v) = send(
            ada.put(app.url(&format!("/api/v1/users/{user}")))
                .json(&body),
        )
        .await;
        assert_eq!(s, status, "{user} {body} -> {v}");
        assert!(v["code"].is_string() && v["message"].is_string(), "{v}");
        assert!(!v.to_string().contains("long enough pw"), "{v}");
    }
    let (_, list) = send(ada.get(app.url("/api/v1/users"))).await;
    assert_eq!(list["items"], json!([]), "{list}");
}
