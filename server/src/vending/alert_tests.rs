//! Alerts raised once and cleared once, each with exactly one outbox entry for HQ.

use outpost_mocks::sim::spiral::SlotTrouble;
use time::{Duration, OffsetDateTime};

use super::alerts::active;
use super::slots;
use super::tests::{site, slot};
use crate::domain::money::Money;
use crate::domain::product::Sku;
use crate::domain::vending::{Climate, PayMethod, SlotConfig, VendState};
use crate::store::Store;
use crate::store::outbox::events::{EventBody, HqEvent};

/// Every alert change in the outbox for `subject`, in order: (alert, state).
fn sent(store: &Store, subject: &str) -> Vec<(String, String)> {
    let mut events: Vec<HqEvent> = store
        .journal_scan_from(b"e/r/", b"e/r/")
        .map(|kv| crate::store::from_json(&kv.unwrap().1, "event").unwrap())
        .collect();
    events.sort_by_key(|e| e.id);
    events
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::Alert {
                alert,
                state,
                subject: Some(s),
                ..
            } if s == subject => Some((alert, state)),
            _ => None,
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
        .collect()
}

#[tokio::test]
async fn a_temperature_excursion_stops_chilled_slots_once_until_a_technician_clears_it() {
    let s = site().await;
    slots::put_one(
        &s.store,
        SlotConfig {
            slot: slot("A1"),
            sku: Sku::parse("COLA").unwrap(),
            price: Money(250),
            capacity: 10,
            par: 2,
            climate: Climate::Chilled,
        },
    )
    .await
    .unwrap();
    let t0 = OffsetDateTime::now_utc();
    let m = |n: i64| t0 + Duration::minutes(n);
    let v = &s.vending;
    assert_eq!(v.observe(Some(9_000), Some(false), m(0)).await.unwrap(), 0);
    assert_eq!(v.observe(Some(7_800), None, m(8)).await.unwrap(), 0);
    assert_eq!(v.observe(Some(8_600), None, m(15)).await.unwrap(), 1);
    for i in 16..20 {
        assert_eq!(v.observe(Some(9_500), None, m(i)).await.unwrap(), 0);
    }
    let e = v.vend(slot("A1"), PayMethod::Cashless).await.unwrap_err();
    assert!(e.to_string().contains("too warm"), "{e}");
    assert!(s.sim.ledger().is_empty(), "refused before the reader");
    // Ambient slots still sell... (A2 is empty here, so none to try) and clearing
    // while warm is refused.
    assert!(v.clear_temperature().await.is_err());
    v.observe(Some(5_000), None, m(30)).await.unwrap();
    v.clear_temperature().await.unwrap();
    assert!(v.clear_temperature().await.is_err(), "cleared once");
    let r = v.vend(slot("A1"), PayMethod::Cashless).await.unwrap();
    assert_eq!(r.state(), VendState::Completed);
    assert_eq!(
        sent(&s.store, "chilled"),
        pairs(&[("temperature", "raised"), ("temperature", "cleared")])
    );

    // The door: repeated readings change nothing.
    for open in [true, true, false, false, true] {
        v.observe(None, Some(open), m(40)).await.unwrap();
    }
    assert_eq!(
        sent(&s.store, "door"),
        pairs(&[
            ("door_open", "raised"),
            ("door_open", "cleared"),
            ("door_open", "raised")
        ])
    );
    let now: Vec<String> = active(&s.store)
        .unwrap()
        .into_iter()
        .map(|a| a.alert)
        .collect();
    assert!(now.contains(&"door_open".to_owned()), "{now:?}");
    assert!(!now.contains(&"temperature".to_owned()));
}

#[tokio::test]
async fn slot_levels_and_dispense_failures_are_raised_and_cleared_once() {
    let s = site().await;
    let v = &s.vending;
    // A1 was created empty (raised) and refilled to 6 (cleared); par is 4.
    let setup = pairs(&[("slot_empty", "raised"), ("slot_empty", "cleared")]);
    assert_eq!(sent(&s.store, "A1"), setup);
    for _ in 0..3 {
        v.vend(slot("A1"), PayMethod::Cashless).await.unwrap();
    }
    s.disp.trouble("A1", [SlotTrouble::Jam]);
    assert_eq!(
        v.vend(slot("A1"), PayMethod::Cashless)
            .await
            .unwrap()
            .state(),
        VendState::Failed
    );
    for _ in 0..3 {
        assert_eq!(
            v.vend(slot("A1"), PayMethod::Cashless)
                .await
                .unwrap()
                .state(),
            VendState::Completed
        );
    }
    slots::refill(&s.store, slot("A1"), 3).await.unwrap();
    let mut want = setup;
    want.extend(pairs(&[
        ("slot_low", "raised"),
        ("dispense_failure", "raised"),
        ("dispense_failure", "cleared"),
        ("slot_empty", "raised"),
        ("slot_low", "cleared"),
        ("slot_empty", "cleared"),
        ("slot_low", "raised"),
    ]));
    assert_eq!(sent(&s.store, "A1"), want);
}
