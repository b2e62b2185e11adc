//! Secrets never reach the logs of a running server: terminal tokens, staff passwords
//! (right or wrong), tokens and passwords set through the admin API. The real binary
//! runs at `trace` for every crate (actix, h2, rustls, sled included), the test drives
//! every flow that handles a secret, then searches everything the process logged.

use serde_json::{Value, json};

use crate::{created, outpost};

#[tokio::test]
async fn no_token_or_password_appears_in_the_logs_of_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let catalog = tmp.path().join("c.jsonl");
    std::fs::write(&catalog, format!("{}\n", crate::GOOD)).unwrap();
    created(&outpost(
        &["import", "catalog", catalog.to_str().unwrap()],
        &data,
    ));
    let token = created(&outpost(&["terminals", "add", "till-1"], &data));
    let root_pw = created(&outpost(
        &["users", "add", "root", "--role", "admin"],
        &data,
    ));
    let mut secrets = vec![token.clone(), root_pw.clone()];

    let server = crate::Serving::start(&data, &[]);
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let bearer = |t: &str| format!("Bearer {t}");

    // The terminal sells; wrong tokens that contain the right one are refused.
    let r = http
        .post(format!("{base}/api/v1/checkout"))
        .header("authorization", bearer(&token))
        .header("Idempotency-Key", "logs-1")
        .json(&json!({"lines":[{"sku":"A","quantity":1}],"payment":{"method":"cash","tendered":1000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    for bad in [
        format!("{token}x"),
        format!("x{token}"),
        token.to_uppercase(),
    ] {
        let r = http
            .get(format!("{base}/api/v1/products/A"))
            .header("authorization", bearer(&bad))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
    }

    // Staff: a wrong password (which contains the right one), then the right one.
    let login = |pw: String| {
        http.post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username":"root","password":pw}))
            .send()
    };
    assert_eq!(
        login(format!("{root_pw}!"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let r = login(root_pw.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    secrets.push(cookie.split_once('=').unwrap().1.to_owned());

    // The admin API: a new terminal token and a new account's password.
    let r = http
        .post(format!("{base}/api/v1/terminals"))
        .header("cookie", &cookie)
        .json(&json!({"name":"till-2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    secrets.push(v["token"].as_str().unwrap().to_owned());
    let ada_pw = "ada's long secret password 42";
    secrets.push(ada_pw.to_owned());
    let r = http
        .put(format!("{base}/api/v1/users/ada"))
        .header("cookie", &cookie)
        .json(&json!({"password": ada_pw, "roles": ["supervisor"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // A refused body carrying a password.
    let r = http
        .put(format!("{base}/api/v1/users/ada"))
        .header("cookie", &cookie)
        .json(&json!({"password": ada_pw, "roles": ["owner"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let logs = server.stop();
    // The capture saw the requests being decoded and handled at trace level.
    assert!(logs.contains("Outpost is listening"), "{logs}");
    let decoded = logs
        .lines()
        .filter(|l| l.contains("actix_http::h1::decoder"))
        .count();
    assert!(
        decoded >= 6,
        "{decoded} request bodies decoded in the trace: {logs}"
    );
    for secret in &secrets {
        assert!(secret.len() >= 20, "{secret}");
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a secret leaked into the logs: {line}");
        }
    }
}
