//! Pushes against a real store: snapshots and deltas keep cards and codes pointing at
//! one record each, refuse what would not, and never touch this unit's totals.

use super::push::{self, AccountsPush, PushError};
use super::*;
use crate::domain::loyalty::HqBalance;

fn customer(id: &str, cards: &[&str], balance: i64) -> Customer {
    Customer {
        id: id.into(),
        cards: cards.iter().map(|c| (*c).to_owned()).collect(),
        tier: None,
        points: HqBalance {
            balance,
            allowance: 100,
            ..HqBalance::default()
        },
    }
}

fn voucher(id: &str, code: &str) -> Voucher {
    Voucher {
        id: id.into(),
        code: code.into(),
        balance: HqBalance {
            balance: 500,
            allowance: 500,
            ..HqBalance::default()
        },
    }
}

fn snapshot(version: u64, customers: Vec<Customer>, vouchers: Vec<Voucher>) -> AccountsPush {
    AccountsPush {
        version,
        snapshot: true,
        customers,
        vouchers,
        ..AccountsPush::default()
    }
}

fn delta(base: u64, customers: Vec<Customer>, removed: Vec<&str>) -> AccountsPush {
    AccountsPush {
        version: base + 1,
        base_version: base,
        customers,
        removed_customers: removed.into_iter().map(Into::into).collect(),
        ..AccountsPush::default()
    }
}

fn card_owner(store: &Store, card: &str) -> Option<String> {
    customer_by_card(store, card).unwrap().map(|c| c.id)
}

#[tokio::test]
async fn deltas_move_cards_only_when_their_owner_lets_go_and_snapshots_keep_totals() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::crypt::test_store(dir.path());
    push::accounts(
        &store,
        snapshot(
            1,
            vec![customer("c1", &["K1", "K2"], 10)],
            vec![voucher("v1", "CODE-A")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(card_owner(&store, "K2").as_deref(), Some("c1"));

    // c2 takes K2 while c1 still holds it: refused, nothing applied.
    let e = push::accounts(&store, delta(1, vec![customer("c2", &["K2"], 5)], vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, PushError::Invalid { ref field, .. } if field == "customers[0].cards[0]"),
        "{e}"
    );
    assert_eq!(versions(&store).unwrap().0, 1);
    assert!(customer_by_id(&store, "c2").unwrap().is_none());

    // c1 lets go of K2 in the same delta: K2 is c2's, K1 stays c1's.
    push::accounts(
        &store,
        delta(
            1,
            vec![customer("c1", &["K1"], 10), customer("c2", &["K2"], 5)],
            vec![],
        ),
    )
    .await
    .unwrap();
    assert_eq!(card_owner(&store, "K2").as_deref(), Some("c2"));
    assert_eq!(card_owner(&store, "K1").as_deref(), Some("c1"));

    // This unit's totals for c1 (as a recorded sale leaves them).
    store
        .write(|tx| {
            put(
                tx,
                customer_totals_key("c1"),
                &Stored::Totals(LocalTotals {
                    redeemed: 7,
                    earned: 2,
                    reserved: 0,
                }),
            );
            Ok::<(), ()>(())
        })
        .await
        .unwrap()
        .unwrap();

    // A delta removes c2 and its card; a stale delta is refused.
    push::accounts(&store, delta(2, vec![], vec!["c2"]))
        .await
        .unwrap();
    assert_eq!(card_owner(&store, "K2"), None);
    assert!(matches!(
        push::accounts(&store, delta(2, vec![], vec![])).await,
        Err(PushError::Stale(_))
    ));

    // A snapshot without c1 removes it; c1 back in a later snapshot still has the
    // totals this unit recorded, on top of HQ's new balance.
    push::accounts(&store, snapshot(4, vec![], vec![voucher("v1", "CODE-B")]))
        .await
        .unwrap();
    assert_eq!(card_owner(&store, "K1"), None);
    let v = store
        .write(|tx| Ok::<_, StoreError>((voucher_in(tx, "CODE-A")?, voucher_in(tx, "CODE-B")?)))
        .await
        .unwrap()
        .unwrap();
    assert!(v.0.is_none(), "the old code no longer pays");
    assert_eq!(v.1.unwrap().id, "v1");
    push::accounts(
        &store,
        snapshot(5, vec![customer("c1", &["K1"], 40)], vec![]),
    )
    .await
    .unwrap();
    let c = customer_by_card(&store, "K1").unwrap().unwrap();
    assert_eq!(
        (c.points.balance, c.points.unseen_redeemed),
        (40 - 7 + 2, 7)
    );
    assert!(matches!(
        push::accounts(&store, snapshot(5, vec![], vec![])).await,
        Err(PushError::Stale(_))
    ));
}

#[test]
fn a_push_is_checked_whole_before_the_store_sees_it() {
    let twice = snapshot(
        1,
        vec![customer("c1", &["K"], 0), customer("c1", &["L"], 0)],
        vec![],
    );
    assert!(
        matches!(push::check(&twice), Err(PushError::Invalid { ref field, .. }) if field == "customers[1].id")
    );
    let shared = snapshot(
        1,
        vec![customer("c1", &["K"], 0), customer("c2", &["K"], 0)],
        vec![],
    );
    assert!(
        matches!(push::check(&shared), Err(PushError::Invalid { ref field, .. }) if field == "customers[1].cards[0]")
    );
    let codes = snapshot(1, vec![], vec![voucher("v1", "X"), voucher("v2", "X")]);
    assert!(
        matches!(push::check(&codes), Err(PushError::Invalid { ref field, .. }) if field == "vouchers[1].code")
    );
    let mut removes = snapshot(1, vec![], vec![]);
    removes.removed_customers = vec!["c1".into()];
    assert!(matches!(
        push::check(&removes),
        Err(PushError::Invalid { .. })
    ));
    let both = delta(1, vec![customer("c1", &[], 0)], vec!["c1"]);
    assert!(
        matches!(push::check(&both), Err(PushError::Invalid { ref field, .. }) if field == "removed_customers[0]")
    );
    let mut backwards = delta(3, vec![], vec![]);
    backwards.version = 2;
    assert!(
        matches!(push::check(&backwards), Err(PushError::Invalid { ref field, .. }) if field == "version")
    );
    let big = snapshot(1, vec![customer("c", &[], 0); push::MAX_PUSH + 1], vec![]);
    assert!(matches!(push::check(&big), Err(PushError::TooLarge(_))));
}
