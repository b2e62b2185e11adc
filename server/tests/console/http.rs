//! The console's HTTP contract, without a browser.

use outpost_security::auth::roles::Role;
use secrecy::SecretString;
use serde_json::json;

use crate::client::{Console, field, no_redirects, set_cookie};
use crate::helpers::{TestApp, spawn_app, spawn_configured, test_settings};

const ALL_STAFF: [Role; 3] = [Role::Supervisor, Role::Technician, Role::Admin];

/// A cash sale of two milks through the API; its id.
async fn sell(app: &TestApp, key: &str) -> String {
    let (s, v, _) = app
        .checkout(
            key,
            &json!({"lines":[{"sku":"MILK","quantity":2}],"payment":{"method":"cash","tendered":500}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["sale_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn logging_in_and_out_through_the_login_form() {
    let app = spawn_app().await;
    app.security
        .set_user(
            "test",
            "tech",
            &SecretString::from("correct horse battery"),
            vec![Role::Technician],
        )
        .unwrap();
    let http = no_redirects();
    let r = http
        .get(app.url("/console/login?next=%2Fconsole%2Flogs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (nonce, _) = set_cookie(&r, "outpost_console_login").expect("a nonce cookie");
    let page = r.text().await.unwrap();
    let csrf = field(&page, "csrf").unwrap();
    assert_eq!(field(&page, "next").as_deref(), Some("/console/logs"));
    assert!(page.contains("<label for=\"username\">"), "labelled fields");
    let login = |password: &'static str, token: String| {
        let http = http.clone();
        let url = app.url("/console/login");
        let nonce = nonce.clone();
        async move {
            http.post(url)
                .header("cookie", format!("outpost_console_login={nonce}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    serde_urlencoded::to_string([
                        ("csrf", token.as_str()),
                        ("username", "tech"),
                        ("password", password),
                        ("next", "/console/logs"),
                    ])
                    .unwrap(),
                )
                .send()
                .await
                .unwrap()
        }
    };
    // Wrong password: the form again, with why.
    let r = login("wrong password!!", csrf.clone()).await;
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Wrong username or password")
    );
    // No token, or another one: refused before the password is even checked.
    let r = login("correct horse battery", "00".repeat(32)).await;
    assert_eq!(r.status(), 403);
    // Right: the session cookie (HttpOnly, SameSite=Strict) and back to `next`.
    let r = login("correct horse battery", csrf).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/logs");
    let (session, header) = set_cookie(&r, "outpost_session").expect("a session cookie");
    assert!(header.contains("HttpOnly"), "{header}");
    assert!(header.contains("SameSite=Strict"), "{header}");
    let console = Console {
        base: app.base.clone(),
        cookie: format!("outpost_session={session}"),
        http: no_redirects(),
    };
    let (status, page) = console.get("/console/").await;
    assert_eq!(status, 200);
    assert!(page.contains("Dashboard"));
    // The login is audited as the API's is, and as a console login.
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    assert!(
        audit.contains(&("tech".into(), "console.login".into())),
        "{audit:?}"
    );
    // Logging out ends the session: the next page asks to log in.
    let csrf = console.csrf().await;
    let (status, location, _) = console.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!((status, location.as_str()), (303, "/console/login"));
    let (status, _) = console.get("/console/").await;
    assert_eq!(status, 303);
}

#[tokio::test]
async fn a_page_without_a_session_sends_to_the_login_page() {
    let app = spawn_app().await;
    let r = no_redirects()
        .get(app.url("/console/sales?from=2026-01-01T00%3A00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with("/console/login?next=%2Fconsole%2Fsales"),
        "{to}"
    );
}

#[tokio::test]
async fn terminal_tokens_get_no_console_page() {
    let app = spawn_app().await;
    let (_, token) = app.security.add_terminal("test", "till-1").unwrap();
    use secrecy::ExposeSecret as _;
    let bearer = format!("Bearer {}", token.expose_secret());
    let staff = Console::open(&app, "boss", ALL_STAFF.to_vec());
    for path in [
        "/console/",
        "/console/devices",
        "/console/sales",
        "/console/logs",
    ] {
        // The token alone, and the token beside a valid staff session.
        for cookie in ["", staff.cookie.as_str()] {
            let r = no_redirects()
                .get(app.url(path))
                .header("authorization", &bearer)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{path}");
            assert!(
                r.text()
                    .await
                    .unwrap()
                    .contains("Terminal tokens cannot use the console")
            );
        }
    }
    // The token still sells through the API.
    let r = reqwest::Client::new()
        .get(app.url("/api/v1/products/MILK"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A session of an account that holds only the terminal role gets nothing either.
    let till = Console::open(&app, "till", vec![Role::CashierTerminal]);
    assert_eq!(till.get("/console/").await.0, 403);
}

/// Every state-changing console route, with the form fields it needs.
fn posts(sale: &str) -> Vec<(String, Vec<(&'static str, String)>)> {
    vec![
        ("/console/logout".into(), vec![]),
        ("/console/devices/printer-1/health_check".into(), vec![]),
        ("/console/devices/printer-1/test_print".into(), vec![]),
        ("/console/devices/drawer-1/open_drawer".into(), vec![]),
        (
            format!("/console/sales/{sale}/refund"),
            vec![("key", "console-csrf-test".into())],
        ),
        (format!("/console/sales/{sale}/reprint"), vec![]),
        (
            "/console/updates/apply".into(),
            vec![("bundle", "/nonexistent".into())],
        ),
        (
            "/console/stock/adjust".into(),
            vec![
                ("key", "console-csrf-adjust".into()),
                ("sku", "MILK".into()),
                ("delta", "5".into()),
                ("reason", "csrf test".into()),
            ],
        ),
        (
            "/console/stock/count".into(),
            vec![
                ("key", "console-csrf-count".into()),
                ("sku", "MILK".into()),
                ("stock", "5".into()),
                ("reason", "csrf test".into()),
            ],
        ),
        ("/console/security/terminals/till-1/revoke".into(), vec![]),
        (
            "/console/security/terminals".into(),
            vec![("name", "csrf-till".into())],
        ),
        (
            "/console/security/users".into(),
            vec![("username", "csrf-user".into()), ("admin", "on".into())],
        ),
        ("/console/lang".into(), vec![("lang", "ru".into())]),
        (
            "/console/login".into(),
            vec![
                ("username", "boss".into()),
                ("password", "whatever123".into()),
            ],
        ),
    ]
}

#[tokio::test]
async fn a_form_posted_without_its_csrf_token_is_refused() {
    let app = spawn_app().await;
    let sale = sell(&app, "csrf-sale").await;
    app.security.add_terminal("test", "till-1").unwrap();
    let staff = Console::open(&app, "boss", ALL_STAFF.to_vec());
    let other = Console::open(&app, "other", ALL_STAFF.to_vec());
    let foreign = other.csrf().await;
    for (path, fields) in posts(&sale) {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = staff.post(&path, &fields).await;
        assert_eq!(status, 403, "{path} without a token: {body}");
        let mut with_foreign = fields.clone();
        with_foreign.push(("csrf", &foreign));
        let (status, _, _) = staff.post(&path, &with_foreign).await;
        assert_eq!(status, 403, "{path} with another session's token");
    }
    // Nothing happened: no refund, no stock change, the terminal keeps its token, the
    // session lives.
    let (_, v) = app.get("/api/v1/inventory/MILK").await;
    assert!(
        v["movements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] != "adjustment" && m["kind"] != "count"),
        "{v}"
    );
    let (_, v) = app.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(v["refunds"], json!([]), "{v}");
    assert!(
        app.security
            .terminals()
            .iter()
            .all(|t| t.revoked_at.is_none())
    );
    assert_eq!(staff.get("/console/").await.0, 200);
    // Refusals are audited.
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    assert!(
        audit
            .iter()
            .any(|(who, what)| who == "boss" && what == "console.csrf_refused"),
        "{audit:?}"
    );
    // With the session's own token the same form goes through.
    let csrf = staff.csrf().await;
    let (status, location, _) = staff
        .post(
            &format!("/console/sales/{sale}/refund"),
            &[("csrf", &csrf), ("key", "console-csrf-ok")],
        )
        .await;
    assert_eq!(status, 303, "{location}");
}

#[tokio::test]
async fn roles_decide_which_pages_and_actions_a_user_gets() {
    let app = spawn_app().await;
    let sale = sell(&app, "roles-sale").await;
    let supervisor = Console::open(&app, "sup", vec![Role::Supervisor]);
    let technician = Console::open(&app, "tech", vec![Role::Technician]);
    let admin = Console::open(&app, "adm", vec![Role::Admin]);
    for (c, path, status) in [
        (&supervisor, "/console/sales", 200),
        (&supervisor, "/console/devices", 403),
        (&supervisor, "/console/logs", 403),
        (&technician, "/console/devices", 200),
        (&technician, "/console/logs", 200),
        (&technician, "/console/sales", 403),
        (&admin, "/console/security", 200),
        (&admin, "/console/devices", 403),
    ] {
        assert_eq!(c.get(path).await.0, status, "{path}");
    }
    // The navigation shows only what the role may open.
    let (_, page) = supervisor.get("/console/").await;
    assert!(page.contains("href=\"/console/sales\""));
    assert!(!page.contains("href=\"/console/devices\""));
    // The audit log and accounts are for admins only.
    let (_, page) = technician.get("/console/security").await;
    assert!(!page.contains("Audit log"));
    let (_, page) = admin.get("/console/security").await;
    assert!(page.contains("Audit log"));
    assert!(page.contains("The hash chain verifies"), "{page}");
    // A technician may not refund: the server refuses, whatever the page shows.
    let csrf = technician.csrf().await;
    let (status, _, _) = technician
        .post(
            &format!("/console/sales/{sale}/refund"),
            &[("csrf", &csrf), ("key", "tech-refund")],
        )
        .await;
    assert_eq!(status, 403);
    // A supervisor sees the refund button; the refund goes through and is audited.
    let (_, page) = supervisor.get(&format!("/console/sales/{sale}")).await;
    assert!(page.contains("id=\"refund-button\""));
    let key = field(&page, "key").unwrap();
    let csrf = field(&page, "csrf").unwrap();
    let (status, location, _) = supervisor
        .post(
            &format!("/console/sales/{sale}/refund"),
            &[("csrf", &csrf), ("key", &key)],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(location, format!("/console/sales/{sale}?done=refund"));
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    assert!(
        audit.contains(&("sup".into(), "refund".into())),
        "{audit:?}"
    );
}

#[tokio::test]
async fn a_refund_form_posted_twice_is_one_refund() {
    let app = spawn_app().await;
    let sale = sell(&app, "twice-sale").await;
    let sup = Console::open(&app, "sup", vec![Role::Supervisor]);
    let (_, page) = sup.get(&format!("/console/sales/{sale}")).await;
    let (key, csrf) = (field(&page, "key").unwrap(), field(&page, "csrf").unwrap());
    let path = format!("/console/sales/{sale}/refund");
    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("reason", "broken"),
    ];
    let (a, b) = tokio::join!(sup.post(&path, &form), sup.post(&path, &form));
    assert_eq!((a.0, b.0), (303, 303), "{a:?} {b:?}");
    // A resubmission later (the browser's back button) replays the same refund.
    assert_eq!(sup.post(&path, &form).await.0, 303);
    let (_, v) = app.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(v["refunds"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["status"], "refunded");
    // A fresh form for a refunded sale offers no refund.
    let (_, page) = sup.get(&format!("/console/sales/{sale}")).await;
    assert!(!page.contains("id=\"refund-button\""));
    assert_eq!(page.matches("data-refund=").count(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_changes_nothing() {
    let app = spawn_app().await;
    let sale = sell(&app, "bad-sale").await;
    let c = Console::open(&app, "boss", ALL_STAFF.to_vec());
    let csrf = c.csrf().await;
    // A search with a bad field: 400, the field named, the values kept.
    let (status, page) = c.get("/console/sales?from=yesterday&min=abc").await;
    assert_eq!(status, 400);
    assert!(
        page.contains("The start time is not a date and time"),
        "{page}"
    );
    assert!(page.contains("value=\"yesterday\""));
    let (status, page) = c.get("/console/sales?min=1%2C234").await;
    assert_eq!(status, 400, "more decimals than the currency has");
    assert!(page.contains("An amount is not a number"));
    // Amount filters: the sale is 2.58; at least 3 finds nothing, at most 3 finds it.
    let (_, page) = c.get("/console/sales?min=3").await;
    assert!(page.contains("No sales match"));
    let (_, page) = c.get("/console/sales?max=3&terminal=tester").await;
    assert!(page.contains(&sale[..8]), "{page}");
    let (_, page) = c.get("/console/sales?terminal=someone-else").await;
    assert!(page.contains("No sales match"));
    // Unknown things: 404 pages.
    assert_eq!(c.get("/console/sales/not-a-uuid").await.0, 404);
    assert_eq!(
        c.get(&format!("/console/sales/{}", uuid::Uuid::now_v7()))
            .await
            .0,
        404
    );
    let (status, _, _) = c
        .post("/console/devices/nope/health_check", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = c
        .post("/console/devices/printer-1/dance", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 404);
    // A malformed form body, a missing field, a bad idempotency key.
    let (status, _, _) = c
        .post(&format!("/console/sales/{sale}/refund"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 400, "the key is missing");
    let (status, _, _) = c
        .post(
            &format!("/console/sales/{sale}/refund"),
            &[("csrf", &csrf), ("key", "")],
        )
        .await;
    assert_eq!(status, 400, "an empty key");
    let (status, _, _) = c
        .post("/console/lang", &[("csrf", &csrf), ("lang", "xx")])
        .await;
    assert_eq!(status, 400);
    let (_, v) = app.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(v["refunds"], json!([]));
    // An update bundle that is not there: refused with the updater's reason.
    let (status, _, page) = c
        .post(
            "/console/updates/apply",
            &[("csrf", &csrf), ("bundle", "/nonexistent")],
        )
        .await;
    assert!(status == 422 || status == 409, "{status} {page}");
    // Unknown assets: 404; known ones are served with their type.
    assert_eq!(c.get("/console/assets/console-0.css").await.0, 404);
}

#[tokio::test]
async fn every_page_renders_for_staff_with_every_role() {
    let app = spawn_app().await;
    let sale = sell(&app, "pages-sale").await;
    let c = Console::open(&app, "boss", ALL_STAFF.to_vec());
    for path in [
        "/console/",
        "/console/devices",
        "/console/sales",
        "/console/stock",
        "/console/stock?q=milk",
        "/console/sync",
        "/console/updates",
        "/console/logs",
        "/console/security",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([format!("/console/sales/{sale}")])
    {
        let (status, page) = c.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert!(
            page.starts_with("<!DOCTYPE html><html lang=\"en\">"),
            "{path}"
        );
        // Every form field has its label.
        for id in page.split("<input id=\"").skip(1) {
            let id = &id[..id.find('"').unwrap()];
            assert!(
                page.contains(&format!("for=\"{id}\"")),
                "{path}: #{id} has no label"
            );
        }
    }
    // The stylesheet and script the pages name are served, and small.
    let (_, page) = c.get("/console/").await;
    for ext in ["css", "js"] {
        let name = page
            .split("/console/assets/")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .find(|n| n.ends_with(ext))
            .unwrap()
            .to_owned();
        let r = reqwest::get(app.url(&format!("/console/assets/{name}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert!(r.bytes().await.unwrap().len() < 20_000);
    }
    // The dashboard's panel refreshes alone.
    let r = no_redirects()
        .get(app.url("/console/"))
        .header("cookie", &c.cookie)
        .header("x-console-partial", "live")
        .send()
        .await
        .unwrap();
    let panel = r.text().await.unwrap();
    assert!(
        panel.contains("Active alerts") && !panel.contains("<html"),
        "{panel}"
    );
    // The product search shows the product with its stock.
    let (_, page) = c.get("/console/stock?q=milk").await;
    assert!(page.contains("Whole Milk 1 L"));
}

#[tokio::test]
async fn the_browser_language_and_the_switch_pick_russian() {
    let app = spawn_app().await;
    let c = Console::open(&app, "boss", ALL_STAFF.to_vec());
    let r = no_redirects()
        .get(app.url("/console/"))
        .header("cookie", &c.cookie)
        .header("accept-language", "ru-RU,ru;q=0.9,en;q=0.5")
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("<html lang=\"ru\">"));
    assert!(page.contains("Обзор"));
    // The switch sets a cookie that wins over the browser's language.
    let csrf = c.csrf().await;
    let r = no_redirects()
        .post(app.url("/console/lang"))
        .header("cookie", &c.cookie)
        .header("referer", app.url("/console/devices"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&lang=en"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/devices");
    let (lang, header) = set_cookie(&r, "outpost_lang").unwrap();
    assert_eq!(lang, "en");
    assert!(header.contains("SameSite=Strict"));
    let page = no_redirects()
        .get(app.url("/console/"))
        .header("cookie", format!("{}; outpost_lang=en", c.cookie))
        .header("accept-language", "ru")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<html lang=\"en\">"));
}

#[tokio::test]
async fn the_log_tail_streams_and_a_window_downloads() {
    let app = spawn_app().await;
    let c = Console::open(&app, "boss", ALL_STAFF.to_vec());
    let r = no_redirects()
        .get(app.url("/console/logs/stream?level=info"))
        .header("cookie", &c.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), r.bytes_stream_first())
        .await
        .expect("the stream sends at once");
    assert!(
        first.starts_with("data: ") || first.starts_with(": ."),
        "{first}"
    );
    let r = no_redirects()
        .get(app.url("/console/logs/download?minutes=5"))
        .header("cookie", &c.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    assert!(audit.contains(&("boss".into(), "logs.download".into())));
}

/// The first chunk of a streamed body.
trait FirstChunk {
    async fn bytes_stream_first(self) -> String;
}

impl FirstChunk for reqwest::Response {
    async fn bytes_stream_first(mut self) -> String {
        String::from_utf8_lossy(&self.chunk().await.unwrap().unwrap_or_default()).into_owned()
    }
}

#[tokio::test]
async fn a_locked_unit_shows_its_lock_and_refuses_actions() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = test_settings(dir.path());
    // Enrolled with an HQ that never sent a lease: the unit starts locked.
    let hq = outpost_security::lease::HqSigner::generate();
    enroll(&mut s, &hq);
    let app = spawn_configured(s, None, false).await;
    let c = Console::open(&app, "boss", ALL_STAFF.to_vec());
    let (status, page) = c.get("/console/").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("The unit is locked"), "{page}");
    assert!(page.contains("follow the unlock procedure"));
    let (_, page) = c.get("/console/security").await;
    assert!(page.contains("data-state=\"locked\""), "{page}");
    assert!(page.contains("Unlocking a locked unit"));
    let csrf = c.csrf().await;
    for path in [
        "/console/devices/printer-1/health_check",
        "/console/security/terminals/x/revoke",
        "/console/updates/apply",
    ] {
        let (status, _, page) = c.post(path, &[("csrf", &csrf), ("bundle", "/x")]).await;
        assert_eq!(status, 423, "{path}");
        assert!(page.contains("This unit is locked"), "{page}");
    }
    // Logging out and switching the language still work.
    let (status, _, _) = c
        .post("/console/lang", &[("csrf", &csrf), ("lang", "ru")])
        .await;
    assert_eq!(status, 303);
    let (status, _, _) = c.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
}

/// Enrols the unit of `s` with a bundle `hq` signs (as tests/hq's `enroll_signed`).
pub fn enroll(s: &mut outpost_server::config::Settings, hq: &outpost_security::lease::HqSigner) {
    use outpost_security::enroll::{Enrollment, LeasePolicy, SecondFactors, to_hex};
    use outpost_security::escrow::EscrowSecret;
    let bundle = Enrollment {
        store_id: s.store.id.clone(),
        unit_id: s.sync.unit_id.clone(),
        hq_public_key: to_hex(hq.verifying_key().as_bytes()),
        escrow_share_key: None,
        escrow_recovery_key: Some(EscrowSecret::generate().public().to_hex()),
        lease: LeasePolicy::default(),
        unlock: SecondFactors::default(),
        issued_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    }
    .sign(hq)
    .unwrap();
    std::fs::create_dir_all(&s.data_dir).unwrap();
    let path = s.data_dir.join("hq-bundle.json");
    std::fs::write(&path, bundle).unwrap();
    s.security.enrollment = Some(path);
}

#[test]
fn outpost_demo_prints_the_console_and_its_login_and_the_console_shows_the_store() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args([
            "demo",
            "--products",
            "30",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .env_remove("OUTPOST_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut url, mut password, mut seen) = (None, None, Vec::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while url.is_none() || password.is_none() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!(
                "outpost demo did not print its console and login:\n{}",
                seen.join("\n")
            );
        };
        if let Some(rest) = line.strip_prefix("Technician console: ") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("technician:") {
            password = rest.split(" / ").nth(1).map(|p| p.trim().to_owned());
        }
        seen.push(line);
    }
    let (url, password) = (url.unwrap(), password.unwrap());
    assert!(url.ends_with("/console/"), "{url}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let http = no_redirects();
        let r = http.get(format!("{url}login")).send().await.unwrap();
        let (nonce, _) = set_cookie(&r, "outpost_console_login").unwrap();
        let csrf = field(&r.text().await.unwrap(), "csrf").unwrap();
        let r = http
            .post(format!("{url}login"))
            .header("cookie", format!("outpost_console_login={nonce}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("csrf", csrf.as_str()),
                    ("username", "demo-tech"),
                    ("password", password.as_str()),
                ])
                .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let (session, _) = set_cookie(&r, "outpost_session").unwrap();
        let base = url.trim_end_matches("/console/").to_owned();
        let c = Console {
            base,
            cookie: format!("outpost_session={session}"),
            http,
        };
        let (status, dashboard) = c.get("/console/").await;
        let (_, devices) = c.get("/console/devices").await;
        let (_, stock) = c.get("/console/stock").await;
        (status, dashboard, devices, stock)
    });
    let _ = child.kill();
    let _ = child.wait();
    let (status, dashboard, devices, stock) = result;
    assert_eq!(status, 200);
    assert!(dashboard.contains("Outpost Demo Store"), "{dashboard}");
    assert!(devices.contains("printer-1") && devices.contains("Receipt printer"));
    assert!(stock.contains("Products (30)"), "{stock}");
}

#[tokio::test]
async fn a_stock_adjustment_from_the_console_is_recorded_once() {
    let app = spawn_app().await;
    let before = app.stock("MILK").await;
    let tech = Console::open(&app, "tech", vec![Role::Technician]);
    let (_, page) = tech.get("/console/stock?q=milk").await;
    assert!(
        page.contains("id=\"adjust\""),
        "the form is offered to a technician"
    );
    let (key, csrf) = (field(&page, "key").unwrap(), field(&page, "csrf").unwrap());
    let adjust = |delta: &str, sku: &str, key: &str| {
        let fields = [
            ("csrf", csrf.clone()),
            ("key", key.to_owned()),
            ("sku", sku.to_owned()),
            ("delta", delta.to_owned()),
            ("reason", "damaged in transit".to_owned()),
        ];
        let tech = &tech;
        async move {
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            tech.post("/console/stock/adjust", &f).await
        }
    };
    // Posted twice with the same form: one movement.
    let (status, location, _) = adjust("-3", "MILK", &key).await;
    assert_eq!(status, 303);
    assert!(
        location.starts_with("/console/stock?q=MILK&done=adjusted"),
        "{location}"
    );
    assert_eq!(adjust("-3", "MILK", &key).await.0, 303);
    assert_eq!(app.stock("MILK").await, before - 3);
    let (_, page) = tech.get(&location).await;
    assert!(page.contains("Stock adjusted"));
    assert!(
        page.contains("damaged in transit"),
        "the reason is in the movements"
    );
    // Bad input: a clear page, no change.
    let (status, _, page) = adjust("three", "MILK", "k-1").await;
    assert_eq!(status, 400);
    assert!(page.contains("The change is not a whole number"));
    let (status, _, page) = adjust("0", "MILK", "k-2").await;
    assert_eq!(status, 422);
    assert!(page.contains("invalid_delta"), "{page}");
    assert_eq!(adjust("1", "NOPE", "k-3").await.0, 404);
    assert_eq!(adjust("1", "MILK", "").await.0, 400, "an empty key");
    assert_eq!(app.stock("MILK").await, before - 3);
    // A supervisor may not adjust stock and is not offered the form.
    let sup = Console::open(&app, "sup", vec![Role::Supervisor]);
    let (_, page) = sup.get("/console/stock").await;
    assert!(!page.contains("id=\"adjust\""));
    let csrf = sup.csrf().await;
    let (status, _, _) = sup
        .post(
            "/console/stock/adjust",
            &[
                ("csrf", &csrf),
                ("key", "sup-1"),
                ("sku", "MILK"),
                ("delta", "1"),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn an_admin_issues_a_terminal_token_and_adds_staff_each_secret_shown_once() {
    let app = spawn_app().await;
    let admin = Console::open(&app, "adm", vec![Role::Admin]);
    let (_, page) = admin.get("/console/security").await;
    assert!(page.contains("id=\"issue-token\"") && page.contains("id=\"add-staff\""));
    let csrf = admin.csrf().await;

    // A terminal token: shown once on the answer, never cached, and it sells.
    let (status, _, page) = admin
        .post(
            "/console/security/terminals",
            &[("csrf", &csrf), ("name", "till-7")],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let token = page
        .split("id=\"secret\"")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_owned();
    assert!(token.starts_with("opt_"), "{token}");
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/products/MILK", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, page) = admin.get("/console/security").await;
    assert!(
        page.contains("till-7") && !page.contains(&token),
        "the list never shows it"
    );
    // A second token for the same active terminal is refused, clearly.
    let (status, _, page) = admin
        .post(
            "/console/security/terminals",
            &[("csrf", &csrf), ("name", "till-7")],
        )
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("already has an active token"), "{page}");

    // A staff account: a generated password, shown once, that logs in with its roles.
    let (status, _, page) = admin
        .post(
            "/console/security/users",
            &[
                ("csrf", &csrf),
                ("username", "newtech"),
                ("technician", "on"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let password = page
        .split("id=\"secret\"")
        .nth(1)
        .and_then(|s| s.split('>').nth(1))
        .and_then(|s| s.split('<').next())
        .unwrap()
        .to_owned();
    assert!(password.len() >= 20, "{password}");
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", app.base))
        .json(&json!({"username": "newtech", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let v: serde_json::Value = login.json().await.unwrap();
    assert_eq!(v["roles"], json!(["technician"]));
    // An existing account is not replaced, and a role is needed.
    let (status, _, page) = admin
        .post(
            "/console/security/users",
            &[("csrf", &csrf), ("username", "newtech"), ("admin", "on")],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    let (status, _, _) = admin
        .post(
            "/console/security/users",
            &[("csrf", &csrf), ("username", "norole")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(app.security.users().iter().all(|u| u.username != "norole"));
    // Only an admin: a technician's session is refused both.
    let technician = Console::open(&app, "tech", vec![Role::Technician]);
    let tcsrf = technician.csrf().await;
    let (status, _, _) = technician
        .post(
            "/console/security/terminals",
            &[("csrf", &tcsrf), ("name", "till-8")],
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = technician
        .post(
            "/console/security/users",
            &[("csrf", &tcsrf), ("username", "sneaky"), ("admin", "on")],
        )
        .await;
    assert_eq!(status, 403);
    // Both are in the audit log under the admin's name.
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    for action in ["terminal.add", "user.set"] {
        assert!(
            audit.contains(&("adm".into(), action.into())),
            "{action}: {audit:?}"
        );
    }
}
