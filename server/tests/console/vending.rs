//! The console's vending page over plain HTTP: the demo machine's slots, alerts and
//! cash, hidden on a unit without a machine, and clearing the temperature alert.

use outpost_security::auth::roles::Role;
use outpost_server::domain::vending::climate::TempPolicy;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::client::Console;
use crate::helpers::{TestApp, spawn_app, spawn_configured, test_settings};

/// The vending demo's machine (6x8 slots, reader, changer, validator and board
/// simulators), without its sensor so the test alone decides the temperature.
pub async fn vending_demo(dir: &std::path::Path, sensor: bool) -> TestApp {
    let mut s = test_settings(dir);
    s.devices = outpost_server::devices::demo_vending_devices()
        .into_iter()
        .filter(|d| sensor || d.kind != "sensor")
        .collect();
    let app = spawn_configured(s, None, false).await;
    let seeded = outpost_server::vending::demo::seed(&app.store)
        .await
        .unwrap()
        .expect("an empty store is seeded");
    assert_eq!(seeded.slots, 48);
    app
}

/// Chilled goods above the limit for longer than the hold: the alert is raised.
pub async fn too_warm(app: &TestApp) {
    let now = OffsetDateTime::now_utc();
    for at in [now - Duration::minutes(20), now - Duration::minutes(1)] {
        outpost_server::vending::alerts::observe(
            &app.store,
            TempPolicy::default(),
            Some(12_000),
            None,
            at,
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn the_vending_page_shows_the_machine_and_clears_the_temperature_alert() {
    let dir = tempfile::tempdir().unwrap();
    let app = vending_demo(dir.path(), false).await;
    let tech = Console::open(&app, "tech", vec![Role::Technician]);
    let (status, page) = tech.get("/console/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("href=\"/console/vending\""),
        "in the navigation"
    );
    let (status, page) = tech.get("/console/vending").await;
    assert_eq!(status, 200, "{page}");
    // Every slot with its product, price and count against capacity.
    assert_eq!(page.matches("data-slot=").count(), 48);
    let d1 = &page[page.find("data-slot=\"D1\"").unwrap()..];
    let d1 = &d1[..d1.find("</tr>").unwrap()];
    assert!(d1.contains("Cola"), "{d1}");
    assert!(d1.contains("data-count=\"10\""), "{d1}");
    assert!(d1.contains("10 / 10"), "{d1}");
    assert!(d1.contains("Chilled") && d1.contains("Sells"), "{d1}");
    // The cash: the credit, the changer's tubes and the validator's cash box.
    assert!(page.contains("id=\"credit\""), "{page}");
    assert!(page.contains("id=\"tubes\""), "{page}");
    assert!(page.contains("id=\"cash-box\""), "{page}");
    assert!(!page.contains("Cannot be read now"), "{page}");

    // An empty slot: the alert in plain words, naming it, and the row says so.
    let r = app
        .client
        .put(app.url("/api/v1/vending/slots/A1/count"))
        .json(&json!({"count": 0, "reason": "taken out for the test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (_, page) = tech.get("/console/vending").await;
    let alerts = &page[page.find("id=\"vending-alerts\"").expect("alerts listed")..];
    assert!(alerts.contains("A slot is empty:"), "{alerts}");
    assert!(alerts.contains(">A1<"), "{alerts}");
    assert!(alerts.contains("Refill it"), "{alerts}");
    let a1 = &page[page.find("data-slot=\"A1\"").unwrap()..];
    assert!(a1[..a1.find("</tr>").unwrap()].contains("Empty"));
    // The dashboard names it among its alerts and sends to the page.
    let (_, page) = tech.get("/console/").await;
    assert!(page.contains("The vending machine raised alerts"), "{page}");
    assert!(page.contains("slot_empty A1"), "{page}");

    // Too warm: the alert with what to do and its clear button; chilled slots stop.
    too_warm(&app).await;
    let (_, page) = tech.get("/console/vending").await;
    assert!(page.contains("Chilled goods were too warm"), "{page}");
    assert!(page.contains("id=\"clear-temperature\""));
    let d1 = &page[page.find("data-slot=\"D1\"").unwrap()..];
    assert!(d1[..d1.find("</tr>").unwrap()].contains("Not selling: too warm"));
    let csrf = crate::client::field(&page, "csrf").unwrap();
    let clear = "/console/vending/temperature/clear";
    // Still warm: refused with the reason, the alert stays.
    let (status, _, body) = tech.post(clear, &[("csrf", &csrf)]).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cannot be cleared now"), "{body}");
    assert!(body.contains("cannot_clear"), "{body}");
    // Without the token: refused.
    assert_eq!(tech.post(clear, &[]).await.0, 403);
    // A supervisor sees the page without the button and may not clear.
    let sup = Console::open(&app, "sup", vec![Role::Supervisor]);
    let (status, page) = sup.get("/console/vending").await;
    assert_eq!(status, 200);
    assert!(page.contains("Chilled goods were too warm"));
    assert!(!page.contains("id=\"clear-temperature\""));
    let sup_csrf = sup.csrf().await;
    assert_eq!(sup.post(clear, &[("csrf", &sup_csrf)]).await.0, 403);
    // Cold again: the technician clears it, audited; chilled slots sell again.
    outpost_server::vending::alerts::observe(
        &app.store,
        TempPolicy::default(),
        Some(4_000),
        None,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let (status, location, _) = tech.post(clear, &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(location, "/console/vending?done=temperature_cleared");
    let (_, page) = tech.get(&location).await;
    assert!(page.contains("Temperature alert cleared"), "{page}");
    assert!(!page.contains("Chilled goods were too warm"));
    let d1 = &page[page.find("data-slot=\"D1\"").unwrap()..];
    assert!(d1[..d1.find("</tr>").unwrap()].contains("Sells"));
    let (_, v) = app.get("/api/v1/vending/alerts").await;
    assert!(
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["alert"] != "temperature"),
        "{v}"
    );
    let (_, audit) = crate::helpers::audit_page(&app, &app.client).await;
    assert!(
        audit.contains(&("tech".into(), "vending.temperature_cleared".into())),
        "{audit:?}"
    );
    // In Russian the alerts and states are translated.
    let ru = Console::open(&app, "tech-ru", vec![Role::Technician]);
    let r = ru
        .http
        .get(app.url("/console/vending"))
        .header("cookie", format!("{}; outpost_lang=ru", ru.cookie))
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("Ячейка пуста:"), "{page}");
    assert!(page.contains("Торговый автомат"));
}

#[tokio::test]
async fn a_unit_without_a_machine_has_no_vending_page() {
    let app = spawn_app().await;
    let c = Console::open(
        &app,
        "boss",
        vec![Role::Supervisor, Role::Technician, Role::Admin],
    );
    let (_, page) = c.get("/console/").await;
    assert!(!page.contains("/console/vending"), "not in the navigation");
    let (status, page) = c.get("/console/vending").await;
    assert_eq!(status, 404);
    assert!(page.contains("This unit runs no vending machine"), "{page}");
    let csrf = c.csrf().await;
    let (status, _, _) = c
        .post("/console/vending/temperature/clear", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, 404);
}
