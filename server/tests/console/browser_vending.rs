//! The vending page in a real headless Chromium, on the vending demo's machine (its
//! reader, changer, validator and board simulators and its sensor): no console error
//! or failed request, the alerts with what to do, the temperature alert cleared from
//! its button, and every visible string in Russian.

use outpost_security::auth::roles::Role;
use outpost_server::domain::vending::climate::TempPolicy;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::browser::{VISIBLE_TEXT, english_left, log_in, screenshots, visit};
use crate::vending::{too_warm, vending_demo};
use crate::webdriver::{Browser, available};

#[tokio::test]
async fn the_vending_page_in_chromium() {
    if !available("the_vending_page_in_chromium") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let app = vending_demo(dir.path(), true).await;
    app.security
        .set_user(
            "test",
            "boss",
            &SecretString::from(crate::browser::PASSWORD),
            vec![Role::Supervisor, Role::Technician, Role::Admin],
        )
        .unwrap();
    let shots = screenshots();
    let b = Browser::start("en-US").await;
    log_in(&b, &app).await;
    assert_eq!(
        b.count("nav a[href='/console/vending']").await,
        1,
        "the navigation offers the machine"
    );
    visit(&b, &app, "/console/vending").await;
    assert_eq!(b.text("main h1").await, "Vending machine");
    assert_eq!(b.count("#slots tr[data-slot]").await, 48);
    assert!(b.count("#tubes table").await == 1, "the changer's tubes");
    b.screenshot(&shots.join("en-vending.png")).await;

    // An emptied slot and chilled goods too warm: each alert in plain words with what
    // to do, and the button that clears the temperature alert.
    let r = app
        .client
        .put(app.url("/api/v1/vending/slots/A1/count"))
        .json(&json!({"count": 0, "reason": "taken out for the test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    too_warm(&app).await;
    visit(&b, &app, "/console/vending").await;
    let alerts = b.text("#vending-alerts").await;
    assert!(alerts.contains("A slot is empty: A1"), "{alerts}");
    assert!(alerts.contains("Chilled goods were too warm"), "{alerts}");
    assert!(
        b.text("tr[data-slot='D1']")
            .await
            .contains("Not selling: too warm")
    );
    b.screenshot(&shots.join("en-vending-alerts.png")).await;
    // Cold again (the sensor reads 4 °C; this reading makes it now): cleared.
    outpost_server::vending::alerts::observe(
        &app.store,
        TempPolicy::default(),
        Some(4_000),
        None,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    b.click(&b.find("#clear-temperature button").await).await;
    assert!(
        b.wait_for("location.search.includes('done=temperature_cleared')", 10)
            .await
    );
    crate::browser::assert_no_errors(&b, "clear the temperature alert").await;
    assert!(
        b.text("p.notice.ok")
            .await
            .contains("Temperature alert cleared")
    );
    assert_eq!(b.count("[data-alert='temperature']").await, 0);
    assert!(b.text("tr[data-slot='D1']").await.contains("Sells"));

    // In Russian: every visible string.
    b.click(&b.find("form.lang button[value='ru']").await).await;
    assert!(
        b.wait_for("document.documentElement.lang === 'ru'", 10)
            .await
    );
    visit(&b, &app, "/console/vending").await;
    let texts: Vec<String> = match b.script(VISIBLE_TEXT).await {
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        other => panic!("{other}"),
    };
    assert!(texts.len() > 20, "{texts:?}");
    let left = english_left(&texts);
    assert!(
        left.is_empty(),
        "the vending page in Russian still shows English: {left:?}"
    );
    assert_eq!(b.text("main h1").await, "Торговый автомат");
    b.screenshot(&shots.join("ru-vending.png")).await;
}
