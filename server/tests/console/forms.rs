//! The console's stock count and per-line refund forms, over plain HTTP.

use outpost_security::auth::roles::Role;
use serde_json::json;

use crate::client::{Console, field};
use crate::helpers::{TestApp, spawn_app};

/// The form fields as the client posts them.
fn fields<'a>(f: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    f.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The value of `name` in the form `form_id` of a page (pages hold several forms
/// with a `key` field).
fn form_field(page: &str, form_id: &str, name: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{form_id}\""))?;
    let form = &page[at..at + page[at..].find("</form>")?];
    field(form, name)
}

/// The stock movements of `sku` as the API shows them.
async fn movements(app: &TestApp, sku: &str) -> Vec<serde_json::Value> {
    let (_, v) = app.get(&format!("/api/v1/inventory/{sku}")).await;
    v["movements"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_stock_count_from_the_console_journals_the_difference_once() {
    let app = spawn_app().await;
    let before = app.stock("MILK").await;
    let tech = Console::open(&app, "tech", vec![Role::Technician]);
    let (_, page) = tech.get("/console/stock?q=MILK").await;
    assert!(page.contains("id=\"count\""), "the count form is offered");
    let key = form_field(&page, "count", "key").unwrap();
    let csrf = form_field(&page, "count", "csrf").unwrap();
    assert_ne!(
        Some(key.clone()),
        form_field(&page, "adjust", "key"),
        "each form has its own key"
    );
    let count = |stock: &str, sku: &str, key: &str, reason: &str| {
        let f = vec![
            ("csrf", csrf.clone()),
            ("key", key.to_owned()),
            ("sku", sku.to_owned()),
            ("stock", stock.to_owned()),
            ("reason", reason.to_owned()),
        ];
        let tech = &tech;
        async move { tech.post("/console/stock/count", &fields(&f)).await }
    };
    let counted = (before + 7).to_string();
    // Pressed twice at once, then once more: one movement of the difference.
    let (a, b) = tokio::join!(
        count(&counted, "MILK", &key, "shelf count"),
        count(&counted, "MILK", &key, "shelf count")
    );
    assert_eq!((a.0, b.0), (303, 303), "{a:?} {b:?}");
    assert!(
        a.1.starts_with("/console/stock?q=MILK&done=counted"),
        "{}",
        a.1
    );
    // A sale between a press and its resubmission: the key replays the first count
    // instead of counting again over the sale.
    let (s, v, _) = app
        .checkout(
            "count-sale",
            &json!({"lines":[{"sku":"MILK","quantity":1}],"payment":{"method":"cash","tendered":500}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(count(&counted, "MILK", &key, "shelf count").await.0, 303);
    assert_eq!(app.stock("MILK").await, before + 6);
    let counts: Vec<_> = movements(&app, "MILK")
        .await
        .into_iter()
        .filter(|m| m["kind"] == "count")
        .collect();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert_eq!(counts[0]["delta"], 7);
    assert_eq!(counts[0]["reason"], "shelf count");
    let (_, page) = tech.get(&a.1).await;
    assert!(page.contains("Stock counted"), "{page}");
    assert!(
        page.contains("shelf count"),
        "the reason is in the movements"
    );
    // A count equal to the stock records nothing, and says so.
    let now = app.stock("MILK").await.to_string();
    let (status, location, _) = count(&now, "MILK", "console-same", "recount").await;
    assert_eq!(status, 303);
    assert!(location.contains("done=count_same"), "{location}");
    let (_, page) = tech.get(&location).await;
    assert!(page.contains("The count matches the stock"), "{page}");
    // Audited under the technician's name, as the API's count.
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    assert!(
        audit.contains(&("tech".into(), "inventory.count".into())),
        "{audit:?}"
    );
    // Bad input: a clear page, nothing changed.
    let (status, _, page) = count("seven", "MILK", "c-1", "x").await;
    assert_eq!(status, 400);
    assert!(page.contains("The count is not a whole number"), "{page}");
    let (status, _, page) = count("-1", "MILK", "c-2", "x").await;
    assert_eq!(status, 422);
    assert!(page.contains("invalid_stock"), "{page}");
    let (status, _, page) = count("3", "MILK", "c-3", "   ").await;
    assert_eq!(status, 422, "a blank reason");
    assert!(page.contains("invalid_reason"), "{page}");
    let (status, _, page) = count("3", "MILK", "c-4", &"x".repeat(201)).await;
    assert_eq!(status, 422, "a reason too long");
    assert!(page.contains("invalid_reason"), "{page}");
    assert_eq!(count("3", "NOPE", "c-5", "x").await.0, 404);
    assert_eq!(count("3", "MILK", "", "x").await.0, 400, "an empty key");
    let (status, _, _) = count("3", "MILK", &key, "another count").await;
    assert_eq!(status, 422, "the key of another count");
    assert_eq!(app.stock("MILK").await, before + 6);
    // Without the CSRF token: refused.
    let f = [
        ("key", "c-6"),
        ("sku", "MILK"),
        ("stock", "3"),
        ("reason", "x"),
    ];
    assert_eq!(tech.post("/console/stock/count", &f).await.0, 403);
    // A supervisor may not count (the API's `configure`) and is not offered the form.
    let sup = Console::open(&app, "sup", vec![Role::Supervisor]);
    let (_, page) = sup.get("/console/stock").await;
    assert!(!page.contains("id=\"count\""));
    let csrf = sup.csrf().await;
    let mut f = f.to_vec();
    f.push(("csrf", &csrf));
    assert_eq!(sup.post("/console/stock/count", &f).await.0, 403);
    assert_eq!(app.stock("MILK").await, before + 6);
}

#[tokio::test]
async fn the_api_count_takes_a_reason_and_an_optional_key() {
    let app = spawn_app().await;
    let put = |key: Option<&'static str>, body: serde_json::Value| {
        let mut r = app
            .client
            .put(app.url("/api/v1/inventory/MILK"))
            .json(&body);
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        async move {
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (s, v) = put(
        Some("api-count-1"),
        json!({"stock": 40, "reason": "yearly count"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stock"], 40);
    let last = v["movements"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].clone(), last["reason"].clone()),
        (json!("count"), json!("yearly count"))
    );
    // The same key and body replay; another body with it is refused.
    assert_eq!(
        put(
            Some("api-count-1"),
            json!({"stock": 40, "reason": "yearly count"})
        )
        .await
        .0,
        200
    );
    let (s, v) = put(Some("api-count-1"), json!({"stock": 41})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "idempotency_key_reused");
    let (s, v) = put(None, json!({"stock": 40, "reason": ""})).await;
    assert_eq!((s, v["code"].clone()), (422, json!("invalid_reason")));
    // Without a key or a reason, as before.
    assert_eq!(put(None, json!({"stock": 12})).await.0, 200);
    assert_eq!(app.stock("MILK").await, 12);
}

#[tokio::test]
async fn a_refund_of_chosen_lines_is_one_refund_and_never_more_than_is_left() {
    let app = spawn_app().await;
    let (s, v, _) = app
        .checkout(
            "lines-sale",
            &json!({"lines":[{"sku":"MILK","quantity":3},{"sku":"APPLES","weight_grams":500},{"sku":"SOAP","quantity":1}],
                    "payment":{"method":"cash","tendered":2000}}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sale = v["sale_id"].as_str().unwrap().to_owned();
    let path = format!("/console/sales/{sale}/refund");
    let sup = Console::open(&app, "sup", vec![Role::Supervisor]);
    let (_, page) = sup.get(&format!("/console/sales/{sale}")).await;
    assert!(
        page.contains("id=\"lines-form\""),
        "the lines form is offered"
    );
    for n in 1..=3 {
        assert!(page.contains(&format!("id=\"line-{n}\"")), "line {n}");
    }
    let key = form_field(&page, "lines-form", "key").unwrap();
    let csrf = form_field(&page, "lines-form", "csrf").unwrap();
    let refund = |key: String, lines: &[(&'static str, &'static str)]| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("key", key),
            ("part", "lines".to_owned()),
            ("reason", "dented".to_owned()),
        ];
        f.extend(lines.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let (sup, path) = (&sup, &path);
        async move { sup.post(path, &fields(&f)).await }
    };
    // Two milks and 200 g of apples, posted twice at once and once more: one refund.
    let chosen = [("line-1", "2"), ("line-2", "200"), ("line-3", "")];
    let (a, b) = tokio::join!(refund(key.clone(), &chosen), refund(key.clone(), &chosen));
    assert_eq!((a.0, b.0), (303, 303), "{a:?} {b:?}");
    assert_eq!(a.1, format!("/console/sales/{sale}?done=refund"));
    assert_eq!(refund(key.clone(), &chosen).await.0, 303);
    let (_, v) = app.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(v["refunds"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["status"], "partially_refunded");
    // The stock came back by what was refunded: milk -3 + 2, apples -500 + 200.
    assert_eq!(app.stock("MILK").await, -1);
    assert_eq!(app.stock("APPLES").await, -300);
    assert_eq!(app.stock("SOAP").await, -1);
    // The page shows what is left: one milk, 300 g of apples, the soap.
    let (_, page) = sup.get(&format!("/console/sales/{sale}")).await;
    assert!(page.contains("Refund recorded") || page.contains("data-refund="));
    for (n, left) in [(1, 1), (2, 300), (3, 1)] {
        let row = &page[page.find(&format!("data-line=\"{n}\"")).unwrap()..];
        assert!(
            row.contains(&format!("data-left=\"{left}\"")),
            "line {n}: {}",
            &row[..300.min(row.len())]
        );
    }
    // More than is left of a line: refused with a clear message, nothing refunded.
    let key2 = form_field(&page, "lines-form", "key").unwrap();
    let (status, _, page) = refund(key2.clone(), &[("line-1", "2")]).await;
    assert_eq!(status, 422, "{page}");
    assert!(
        page.contains("That is more than is left to refund of a line"),
        "{page}"
    );
    assert!(page.contains("only 1 left"), "{page}");
    // Bad input: nothing chosen, not a number, not a line; nothing refunded.
    let (status, _, page) = refund(key2.clone(), &[("line-1", ""), ("line-2", "0")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("Choose a quantity to refund on at least one line"));
    let (status, _, page) = refund(key2.clone(), &[("line-1", "one")]).await;
    assert_eq!(status, 400);
    assert!(page.contains("A quantity to refund is not a whole number"));
    assert_eq!(refund(key2.clone(), &[("line-1", "-1")]).await.0, 400);
    assert_eq!(refund(key2.clone(), &[("line-x", "1")]).await.0, 400);
    let (status, _, page) = refund(key2.clone(), &[("line-9", "1")]).await;
    assert_eq!(status, 422, "no such line: {page}");
    let (status, _, _) = refund(key2.clone(), &[("line-2", "1"), ("line-1", "1")]).await;
    assert_eq!(
        status, 303,
        "the rest of the form still works after refusals"
    );
    let (_, v) = app.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(v["refunds"].as_array().unwrap().len(), 2, "{v}");
    // Refund everything left with the other form; the sale is refunded and no form
    // is offered any more.
    let (_, page) = sup.get(&format!("/console/sales/{sale}")).await;
    let key3 = form_field(&page, "refund-form", "key").unwrap();
    let (status, _, _) = sup.post(&path, &[("csrf", &csrf), ("key", &key3)]).await;
    assert_eq!(status, 303);
    let (_, v) = app.get(&format!("/api/v1/sales/{sale}")).await;
    assert_eq!(v["status"], "refunded", "{v}");
    let (_, page) = sup.get(&format!("/console/sales/{sale}")).await;
    assert!(!page.contains("id=\"lines-form\""));
    assert!(page.contains("data-left=\"0\""));
    // A technician may not refund lines either.
    let tech = Console::open(&app, "tech", vec![Role::Technician]);
    let csrf = tech.csrf().await;
    let (status, _, _) = tech
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("key", "tech-lines"),
                ("part", "lines"),
                ("line-1", "1"),
            ],
        )
        .await;
    assert_eq!(status, 403);
}
