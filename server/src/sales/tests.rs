//! Selling against a real store and a mock terminal, below the HTTP layer.

use std::sync::Arc;
use std::time::Duration;

use outpost_mocks::payment::MockTerminal;
use outpost_peripherals::payment::PaymentTerminal;
use time::OffsetDateTime;
use uuid::Uuid;

use super::idempotency::{IdemRecord, IdemState};
use super::journal::{self, CheckoutPending, Pending};
use super::{Sales, SalesConfig, SellError};
use crate::domain::money::{Currency, Money};
use crate::domain::pricing::{CartItem, Quantity, TaxConfig, price_cart};
use crate::domain::product::parse_product_json;
use crate::domain::promotion::PromotionSet;
use crate::domain::receipt::Receipt;
use crate::domain::sale::{
    Cause, IdempotencyKey, PaymentKind, PaymentRecord, PaymentState, Sale, SaleStatus,
    TenderMethod, TenderRequest, TerminalId, allocate_tenders, card_payments,
};

fn sales(dir: &std::path::Path, terminal: Arc<MockTerminal>) -> Sales {
    let tax = TaxConfig {
        prices_include_tax: true,
        rates_bp: [("standard".to_owned(), 1900)].into(),
    };
    let terminal: Arc<dyn PaymentTerminal> = terminal;
    Sales::new(
        crate::store::crypt::test_store(dir),
        Some(terminal),
        SalesConfig {
            store_name: "Test".into(),
            currency: Currency::parse("EUR").unwrap(),
            tax,
            payment_timeout: Duration::from_secs(2),
            receipt_width: 40,
            receipt_header: Vec::new(),
            variable_measure: Vec::new(),
        },
    )
}

/// A card checkout of one item, as written before the terminal is called.
fn card_checkout(key: &str) -> CheckoutPending {
    let p = parse_product_json(br#"{"sku":"A","name":"Item","category":"c","price":333,"currency":"EUR","tax_class":"standard"}"#).unwrap();
    let tax = TaxConfig {
        prices_include_tax: true,
        rates_bp: [("standard".to_owned(), 1900)].into(),
    };
    let now = OffsetDateTime::now_utc();
    let cart = price_cart(
        &[CartItem {
            product: p,
            quantity: Quantity::Units(1),
        }],
        &PromotionSet::new(vec![]),
        &tax,
        now,
    )
    .unwrap();
    let (mut tenders, change) =
        allocate_tenders(cart.total, &[TenderRequest::Card { amount: None }]).unwrap();
    let id = Uuid::now_v7();
    let payments = card_payments(id, &mut tenders, PaymentKind::Charge);
    assert_eq!(tenders[0].method, TenderMethod::Card);
    let sale = Sale {
        id,
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        terminal_id: TerminalId::parse("till-1").unwrap(),
        status: SaleStatus::Completed,
        created_at: now,
        completed_at: now,
        receipt: Receipt::from_priced("Test", id.to_string(), "till-1", now, &cart, vec![], change),
        cart,
        tenders,
        change,
        customer_id: None,
        loyalty: None,
    };
    CheckoutPending::new(sale, "fp".into(), payments)
}

/// Write `c` as a live checkout leaves it: key in progress, pending record.
async fn begin(s: &Sales, c: &CheckoutPending) {
    let (key, id, p) = (
        c.sale.idempotency_key.clone(),
        c.sale.id,
        Pending::Checkout(c.clone()),
    );
    s.store()
        .write(move |tx| {
            journal::idem_put(
                tx,
                "checkout",
                &key,
                &IdemRecord {
                    fingerprint: "fp".into(),
                    state: IdemState::InProgress { id },
                },
            );
            journal::pending_put(tx, &p);
            Ok::<(), SellError>(())
        })
        .await
        .unwrap()
        .unwrap();
}

fn stored(s: &Sales, id: Uuid) -> Option<CheckoutPending> {
    let raw = s
        .store()
        .journal_get(&crate::store::keys::pending(id))
        .unwrap()?;
    match crate::store::from_json::<Pending>(&raw, "pending payment").unwrap() {
        Pending::Checkout(c) => Some(c),
        Pending::Refund(_) => panic!("not a checkout"),
    }
}

#[tokio::test]
async fn an_illegal_transition_is_an_internal_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = sales(dir.path(), Arc::new(MockTerminal::new()));
    let mut c = card_checkout("illegal-1");
    // A bug's state: a declined payment handed to the step that records the sale.
    c.payments[0]
        .decline("declined".into(), Cause::RecoveryNotStarted)
        .unwrap();
    begin(&s, &c).await;
    match s.finish_checkout(c.clone()).await {
        Err(SellError::Internal(m)) => assert!(m.contains("Declined"), "{m}"),
        other => panic!("not an internal error: {other:?}"),
    }
    // Nothing recorded; the pending record is as it was, for a fix and recovery.
    assert!(s.store().sale(c.sale.id).unwrap().is_none());
    let left = stored(&s, c.sale.id).expect("the pending record stays");
    assert_eq!(left.payments[0].state(), PaymentState::Declined);
}

/// Symptom: recovery set `in_doubt` payments back to `pending` by assignment, around
/// the state machine. It now takes the recovery edge, and the checkout still unwinds.
#[tokio::test]
async fn recovery_set_in_doubt_back_to_pending_outside_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    // The mock never saw the key: its status is `Unknown`, nothing was charged.
    let terminal = Arc::new(MockTerminal::new());
    let s = sales(dir.path(), terminal.clone());
    let mut c = card_checkout("doubt-1");
    c.payments[0]
        .transition(PaymentState::Authorizing, Cause::Call)
        .unwrap();
    c.payments[0]
        .transition(PaymentState::InDoubt, Cause::NoAnswer)
        .unwrap();
    begin(&s, &c).await;
    let report = s.recover().await.unwrap();
    assert_eq!((report.aborted, report.errors), (1, 0), "{report:?}");
    assert!(
        stored(&s, c.sale.id).is_none(),
        "the pending record is gone"
    );
    let key = crate::store::keys::idem("checkout", "doubt-1");
    assert!(
        s.store().journal_get(&key).unwrap().is_none(),
        "the key is released: nothing was charged"
    );
    assert_eq!(terminal.charge_count(&c.payments[0].key), 0);
    assert_eq!(terminal.net_charged(), 0);
}

#[test]
fn a_new_payment_record_is_pending_and_starts_only_with_a_call() {
    let mut p = PaymentRecord::new("k-0".into(), PaymentKind::Charge, Money(5));
    assert_eq!(p.state(), PaymentState::Pending);
    assert!(
        p.transition(PaymentState::Authorizing, Cause::Answer)
            .is_err()
    );
    assert!(p.transition(PaymentState::Authorizing, Cause::Call).is_ok());
}
