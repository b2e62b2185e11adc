//! What every payment terminal backend must do.
//!
//! Each check is an async function over a [`PaymentHarness`], which gives the
//! backend and scripts its faults; a check panics with a message naming the rule it
//! found broken. [`run_all`] runs every check on one harness. Checks use their own
//! keys (prefixed by the harness's [`PaymentHarness::key_prefix`]), so they can share
//! one terminal.

use async_trait::async_trait;
use outpost_peripherals::DeviceError;
use outpost_peripherals::ErrorKind;
use outpost_peripherals::payment::{
    Approval, Instrument, KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest,
    PaymentTerminal, WALLET_BRANDS,
};

/// A fault a harness can make the backend's next money-moving call suffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Charge and answer approved.
    Approve,
    /// Do not charge; answer declined.
    Decline,
    /// Charge, then lose the answer.
    LoseResponse,
}

/// Gives the compliance checks a backend and a way to script it.
#[async_trait]
pub trait PaymentHarness: Send + Sync {
    /// The backend, open, claimed and enabled.
    fn terminal(&self) -> &dyn PaymentTerminal;
    /// A second instance of the backend that is not ready (not opened, or not
    /// claimed and enabled), talking to the same terminal.
    async fn unready(&self) -> Box<dyn PaymentTerminal>;
    /// Make the next money-moving call (authorize or refund) suffer `fault`.
    fn next(&self, fault: Fault);
    /// How many times money really moved under `key`, by the terminal's own count.
    fn charge_count(&self, key: &str) -> u32;
    /// A prefix that keeps this run's keys apart from other runs on the same terminal.
    fn key_prefix(&self) -> String;
}

fn key(h: &dyn PaymentHarness, name: &str) -> PaymentKey {
    PaymentKey(format!("{}-{name}", h.key_prefix()))
}

fn request(key: &PaymentKey, amount_minor: i64) -> PaymentRequest {
    PaymentRequest {
        key: key.clone(),
        amount_minor,
        currency: "EUR".into(),
        instrument: outpost_peripherals::payment::Instrument::Any,
    }
}

/// A backend refuses to move money before it is ready, as offline or illegal, and
/// charges nothing.
pub async fn refuses_before_ready(h: &dyn PaymentHarness) {
    let k = key(h, "unready");
    let t = h.unready().await;
    let err = t
        .authorize(&request(&k, 100))
        .await
        .expect_err("an unready terminal must refuse to authorize");
    assert!(
        matches!(err.kind(), ErrorKind::Offline | ErrorKind::Illegal),
        "an unready terminal must refuse as offline or illegal, not {err:?}"
    );
    assert!(
        t.void(&k).await.is_err(),
        "an unready terminal must refuse to void"
    );
    assert_eq!(h.charge_count(&k.0), 0, "an unready terminal charged");
}

/// An approved payment is approved, charged once, and its status says so.
pub async fn approve(h: &dyn PaymentHarness) {
    let k = key(h, "approve");
    h.next(Fault::Approve);
    let t = h.terminal();
    let out = t.authorize(&request(&k, 1250)).await;
    let Ok(Outcome::Approved(a)) = out else {
        panic!("an approving terminal must answer approved, not {out:?}");
    };
    assert!(!a.auth_code.is_empty(), "an approval needs an auth code");
    if let Some(l4) = &a.last4 {
        assert!(
            l4.len() == 4 && l4.bytes().all(|b| b.is_ascii_digit()),
            "last4 must be four digits, not {l4:?}"
        );
    }
    assert_eq!(
        h.charge_count(&k.0),
        1,
        "an approval must charge exactly once"
    );
    let st = t.status(&k).await;
    assert!(
        matches!(&st, Ok(KeyStatus::Done(Outcome::Approved(b))) if b.auth_code == a.auth_code),
        "status after an approval must repeat it, not {st:?}"
    );
    t.complete(&k)
        .await
        .expect("completing an approved payment must succeed");
    t.complete(&k)
        .await
        .expect("completing a completed payment must succeed");
}

/// A declined payment charges nothing and its status says declined; it cannot be
/// completed or voided.
pub async fn decline(h: &dyn PaymentHarness) {
    let k = key(h, "decline");
    h.next(Fault::Decline);
    let t = h.terminal();
    let out = t.authorize(&request(&k, 990)).await;
    assert!(
        matches!(out, Ok(Outcome::Declined { .. })),
        "a declining terminal must answer declined, not {out:?}"
    );
    assert_eq!(h.charge_count(&k.0), 0, "a decline charged");
    let st = t.status(&k).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Declined { .. }))),
        "status after a decline must say declined, not {st:?}"
    );
    let c = t.complete(&k).await;
    assert!(
        matches!(c, Err(PaymentError::Illegal(_))),
        "completing a declined payment must be illegal, not {c:?}"
    );
    let v = t.void(&k).await;
    assert!(
        matches!(v, Err(PaymentError::Illegal(_))),
        "voiding a declined payment must be illegal, not {v:?}"
    );
}

/// A response lost after charging is `OutcomeUnknown` (never offline, never a
/// decline); status then says approved, and the charge count stays one.
pub async fn lost_response_is_resolved_by_status(h: &dyn PaymentHarness) {
    let k = key(h, "lost");
    h.next(Fault::LoseResponse);
    let t = h.terminal();
    let out = t.authorize(&request(&k, 700)).await;
    assert!(
        matches!(out, Err(PaymentError::OutcomeUnknown(_))),
        "a lost response must be outcome unknown, not {out:?}"
    );
    let st = t.status(&k).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "status after a lost approval must say approved, not {st:?}"
    );
    assert_eq!(
        h.charge_count(&k.0),
        1,
        "a lost response must charge exactly once"
    );
}

/// A key already used is refused without charging again.
pub async fn reused_key_is_refused(h: &dyn PaymentHarness) {
    let k = key(h, "reused");
    h.next(Fault::Approve);
    let t = h.terminal();
    let first = t.authorize(&request(&k, 300)).await;
    assert!(matches!(first, Ok(Outcome::Approved(_))), "{first:?}");
    // No fault is queued for the second call: a refused request is no transaction.
    let again = t.authorize(&request(&k, 300)).await;
    assert!(
        matches!(again, Err(PaymentError::Illegal(_))),
        "a reused key must be refused as illegal, not {again:?}"
    );
    assert_eq!(h.charge_count(&k.0), 1, "a reused key charged again");
    let st = t.status(&k).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "the refusal must not change the first payment: {st:?}"
    );
}

/// Voiding an approved payment reverses it; voiding it again succeeds; status says
/// reversed; completing it is illegal.
pub async fn void_then_status_reversed(h: &dyn PaymentHarness) {
    let k = key(h, "void");
    h.next(Fault::Approve);
    let t = h.terminal();
    let out = t.authorize(&request(&k, 450)).await;
    assert!(matches!(out, Ok(Outcome::Approved(_))), "{out:?}");
    t.void(&k).await.expect("voiding an approved payment");
    t.void(&k)
        .await
        .expect("voiding a voided payment must succeed");
    let st = t.status(&k).await;
    assert_eq!(st, Ok(KeyStatus::Reversed), "status after a void");
    assert!(
        matches!(t.complete(&k).await, Err(PaymentError::Illegal(_))),
        "completing a reversed payment must be illegal"
    );
    let unknown = key(h, "void-unknown");
    assert!(
        matches!(t.void(&unknown).await, Err(PaymentError::Illegal(_))),
        "voiding a key never used must be illegal"
    );
    assert_eq!(h.charge_count(&k.0), 1);
}

/// A refund under its own key is approved once and its status says so.
pub async fn refund(h: &dyn PaymentHarness) {
    let k = key(h, "refund");
    h.next(Fault::Approve);
    let t = h.terminal();
    let out = t.refund(&request(&k, 500)).await;
    assert!(
        matches!(out, Ok(Outcome::Approved(_))),
        "a refund must be approved, not {out:?}"
    );
    assert_eq!(h.charge_count(&k.0), 1, "a refund must move money once");
    let st = t.status(&k).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "status after a refund: {st:?}"
    );
    assert!(
        matches!(
            t.refund(&request(&k, 500)).await,
            Err(PaymentError::Illegal(_))
        ),
        "a refund under a used key must be refused"
    );
    assert_eq!(h.charge_count(&k.0), 1);
}

/// A wallet-only payment and its refund are made with a wallet brand, and the
/// payment's status repeats that brand.
pub async fn wallet(h: &dyn PaymentHarness) {
    let t = h.terminal();
    let wallet = |k: &PaymentKey, amount| PaymentRequest {
        instrument: Instrument::Wallet,
        ..request(k, amount)
    };
    let is_wallet = |a: &Approval| {
        a.brand
            .as_deref()
            .is_some_and(|b| WALLET_BRANDS.contains(&b))
    };
    let k = key(h, "wallet");
    h.next(Fault::Approve);
    let out = t.authorize(&wallet(&k, 1500)).await;
    let Ok(Outcome::Approved(a)) = out else {
        panic!("a wallet payment must be approved, not {out:?}");
    };
    assert!(
        is_wallet(&a),
        "a wallet payment was made with {:?}",
        a.brand
    );
    assert_eq!(h.charge_count(&k.0), 1, "a wallet payment must charge once");
    let st = t.status(&k).await;
    assert!(
        matches!(&st, Ok(KeyStatus::Done(Outcome::Approved(b))) if b.brand == a.brand),
        "status after a wallet payment must repeat its brand, not {st:?}"
    );
    let r = key(h, "wallet-refund");
    h.next(Fault::Approve);
    let out = t.refund(&wallet(&r, 500)).await;
    assert!(
        matches!(&out, Ok(Outcome::Approved(b)) if is_wallet(b)),
        "a wallet refund must go back to a wallet, not {out:?}"
    );
}

/// Aborting a finished payment changes nothing and reports it; aborting a key never
/// used leaves it declined or unknown, and nothing is charged under it.
pub async fn abort(h: &dyn PaymentHarness) {
    let t = h.terminal();
    let k = key(h, "abort-done");
    h.next(Fault::Approve);
    assert!(matches!(
        t.authorize(&request(&k, 100)).await,
        Ok(Outcome::Approved(_))
    ));
    let st = t.abort(&k).await;
    assert!(
        matches!(st, Ok(KeyStatus::Done(Outcome::Approved(_)))),
        "aborting a finished payment must report it, not {st:?}"
    );
    assert!(matches!(
        t.status(&k).await,
        Ok(KeyStatus::Done(Outcome::Approved(_)))
    ));
    assert_eq!(h.charge_count(&k.0), 1);

    let n = key(h, "abort-never");
    let st = t.abort(&n).await;
    assert!(
        matches!(
            st,
            Ok(KeyStatus::Unknown | KeyStatus::Done(Outcome::Declined { .. }))
        ),
        "aborting an unknown key leaves it declined or unknown, not {st:?}"
    );
    assert_eq!(h.charge_count(&n.0), 0);
}

/// A key the terminal never saw has status unknown (nothing charged), and cannot be
/// completed.
pub async fn unknown_key(h: &dyn PaymentHarness) {
    let t = h.terminal();
    let k = key(h, "never-used");
    assert_eq!(
        t.status(&k).await,
        Ok(KeyStatus::Unknown),
        "status of a key never used"
    );
    assert!(
        matches!(t.complete(&k).await, Err(PaymentError::Illegal(_))),
        "completing a key never used must be illegal"
    );
    assert_eq!(h.charge_count(&k.0), 0);
}

/// Every check, in order.
pub async fn run_all(h: &dyn PaymentHarness) {
    refuses_before_ready(h).await;
    unknown_key(h).await;
    approve(h).await;
    decline(h).await;
    lost_response_is_resolved_by_status(h).await;
    reused_key_is_refused(h).await;
    void_then_status_reversed(h).await;
    refund(h).await;
    wallet(h).await;
    abort(h).await;
}
