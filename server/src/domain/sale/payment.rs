//! The payment state machine: one payment operation with the terminal, where it
//! stands, and the only moves it may make.
//!
//! A payment's state is private: it changes only through
//! [`PaymentRecord::transition`], which refuses every move that is not an [`Edge`] of
//! [`EDGES`]. Each edge names the [`Cause`] that allows it, so the moves only recovery
//! may make (a payment the terminal never charged going back to `pending`, a refund
//! never started being declined) cannot be taken by a live path by accident.
//! `docs/payments.md` shows the same table; a test keeps the two equal.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{CardSummary, Tender, TenderMethod};
use crate::domain::money::Money;

/// The states of one payment operation with the terminal.
///
/// The state is written to disk *before* each call to the terminal, so after a crash
/// the recovery task knows which keys to ask the terminal about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Planned; the terminal has not been called.
    Pending,
    /// The terminal is being asked to move money under this key.
    Authorizing,
    /// The terminal approved.
    Authorized,
    /// The sale that uses it is recorded.
    Completed,
    /// The terminal declined, or never saw the key: no money moved.
    Declined,
    /// The outcome is unknown; resolved only by asking the terminal about the key.
    InDoubt,
    /// Approved, then reversed because the sale could not complete.
    Voided,
}

impl PaymentState {
    /// Every state, for tables and tests.
    pub const ALL: [PaymentState; 7] = [
        PaymentState::Pending,
        PaymentState::Authorizing,
        PaymentState::Authorized,
        PaymentState::Completed,
        PaymentState::Declined,
        PaymentState::InDoubt,
        PaymentState::Voided,
    ];

    /// The state as stored and documented (`in_doubt`).
    pub fn name(self) -> &'static str {
        match self {
            PaymentState::Pending => "pending",
            PaymentState::Authorizing => "authorizing",
            PaymentState::Authorized => "authorized",
            PaymentState::Completed => "completed",
            PaymentState::Declined => "declined",
            PaymentState::InDoubt => "in_doubt",
            PaymentState::Voided => "voided",
        }
    }

    /// Whether nothing more will happen to this payment.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentState::Completed | PaymentState::Declined | PaymentState::Voided
        )
    }
}

/// Why a payment changes state: what happened, or who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The new state is persisted, then the terminal is called under the key.
    Call,
    /// The terminal answered the call (approved or declined), or the call provably
    /// never reached it.
    Answer,
    /// The call failed or timed out, or asking could not tell: the outcome is unknown.
    NoAnswer,
    /// The terminal's status for the key: done (approved or declined), never seen, or
    /// reversed.
    Status,
    /// The sale that uses the payment is recorded.
    Record,
    /// The terminal reversed the approved payment.
    Void,
    /// Recovery only: the terminal never saw the key or reversed it, so the payment
    /// counts as never started (the checkout then releases its key).
    RecoveryNeverCharged,
    /// Recovery only: a refund payment not started before a restart is never started
    /// (the customer is no longer there).
    RecoveryNotStarted,
}

impl Cause {
    /// Every cause, for tables and tests.
    pub const ALL: [Cause; 8] = [
        Cause::Call,
        Cause::Answer,
        Cause::NoAnswer,
        Cause::Status,
        Cause::Record,
        Cause::Void,
        Cause::RecoveryNeverCharged,
        Cause::RecoveryNotStarted,
    ];

    /// The cause as documented (`no_answer`).
    pub fn name(self) -> &'static str {
        match self {
            Cause::Call => "call",
            Cause::Answer => "answer",
            Cause::NoAnswer => "no_answer",
            Cause::Status => "status",
            Cause::Record => "record",
            Cause::Void => "void",
            Cause::RecoveryNeverCharged => "recovery_never_charged",
            Cause::RecoveryNotStarted => "recovery_not_started",
        }
    }

    /// Whether only the recovery task may give this cause.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            Cause::RecoveryNeverCharged | Cause::RecoveryNotStarted
        )
    }
}

/// One legal move of the payment state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The state it leaves.
    pub from: PaymentState,
    /// The state it enters.
    pub to: PaymentState,
    /// What allows it.
    pub cause: Cause,
}

const fn edge(from: PaymentState, to: PaymentState, cause: Cause) -> Edge {
    Edge { from, to, cause }
}

/// Every legal move, in the order `docs/payments.md` lists them. Anything else is a
/// bug and [`PaymentRecord::transition`] refuses it.
pub const EDGES: &[Edge] = {
    use Cause::*;
    use PaymentState::*;
    &[
        edge(Pending, Authorizing, Call),
        edge(Authorizing, Authorized, Answer),
        edge(Authorizing, Declined, Answer),
        edge(Authorizing, InDoubt, NoAnswer),
        edge(Authorizing, Authorized, Status),
        edge(Authorizing, Declined, Status),
        edge(InDoubt, Authorized, Status),
        edge(InDoubt, Declined, Status),
        edge(InDoubt, InDoubt, NoAnswer),
        edge(Authorized, Completed, Record),
        edge(Authorized, Voided, Void),
        edge(Authorized, Declined, Status),
        edge(Authorizing, Pending, RecoveryNeverCharged),
        edge(InDoubt, Pending, RecoveryNeverCharged),
        edge(Pending, Declined, RecoveryNotStarted),
    ]
};

/// Whether the state machine moves from `from` to `to` for `cause`.
pub fn allowed(from: PaymentState, to: PaymentState, cause: Cause) -> bool {
    EDGES
        .iter()
        .any(|e| e.from == from && e.to == to && e.cause == cause)
}

/// Whether a payment operation charges or refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    /// Money from the customer.
    Charge,
    /// Money back to the customer.
    Refund,
}

fn card_method() -> TenderMethod {
    TenderMethod::Card
}

/// Card records are written as before QR payments existed, so an older version can
/// still read a data dir this one wrote (an update can be rolled back).
fn is_card(m: &TenderMethod) -> bool {
    *m == TenderMethod::Card
}

/// One payment operation with the terminal and where it stands.
///
/// Stored inside the pending records (`p/`); the JSON has the state as a plain field
/// (`"state": "in_doubt"`), read back as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentRecord {
    /// The key the terminal knows it by.
    pub key: String,
    /// Charge or refund.
    pub kind: PaymentKind,
    /// What moves the money: the payment terminal (`card`) or the QR provider (`qr`).
    /// Records written before QR payments existed are card payments.
    #[serde(default = "card_method", skip_serializing_if = "is_card")]
    pub method: TenderMethod,
    /// Amount in minor units.
    pub amount: Money,
    /// Where it stands; changed only by [`PaymentRecord::transition`].
    state: PaymentState,
    /// What the terminal approved.
    #[serde(default)]
    pub card: Option<CardSummary>,
    /// Why it was declined (or why the terminal never charged it).
    #[serde(default)]
    pub decline_reason: Option<String>,
}

impl PaymentRecord {
    /// A planned payment: `pending`, the terminal not called yet.
    pub fn new(key: String, kind: PaymentKind, amount: Money) -> Self {
        PaymentRecord {
            key,
            kind,
            method: TenderMethod::Card,
            amount,
            state: PaymentState::Pending,
            card: None,
            decline_reason: None,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> PaymentState {
        self.state
    }

    /// Move to `to` for `cause`, refusing (and changing nothing) when that is not an
    /// edge of [`EDGES`].
    pub fn transition(&mut self, to: PaymentState, cause: Cause) -> Result<(), IllegalTransition> {
        if allowed(self.state, to, cause) {
            self.state = to;
            Ok(())
        } else {
            Err(IllegalTransition {
                key: self.key.clone(),
                from: self.state,
                to,
                cause,
            })
        }
    }

    /// Move to `authorized` with what the terminal approved.
    pub fn approve(&mut self, card: CardSummary, cause: Cause) -> Result<(), IllegalTransition> {
        self.transition(PaymentState::Authorized, cause)?;
        self.card = Some(card);
        Ok(())
    }

    /// Move to `declined`, saying why.
    pub fn decline(&mut self, reason: String, cause: Cause) -> Result<(), IllegalTransition> {
        self.transition(PaymentState::Declined, cause)?;
        self.decline_reason = Some(reason);
        Ok(())
    }
}

/// A move the payment state machine does not allow: a bug in the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment {key} cannot go from {from:?} to {to:?} for {cause:?}")]
pub struct IllegalTransition {
    /// The payment's key.
    pub key: String,
    /// Current state.
    pub from: PaymentState,
    /// Requested state.
    pub to: PaymentState,
    /// The cause given.
    pub cause: Cause,
}

/// Give each card and wallet tender its terminal key (`<id>-<tender index>`, unique to this sale
/// or refund) and a `pending` payment record, in tender order.
pub fn card_payments(id: Uuid, tenders: &mut [Tender], kind: PaymentKind) -> Vec<PaymentRecord> {
    let mut payments = Vec::new();
    for (i, t) in tenders
        .iter_mut()
        .enumerate()
        .filter(|(_, t)| t.method.is_electronic())
    {
        let key = format!("{id}-{i}");
        t.payment_key = Some(key.clone());
        let mut p = PaymentRecord::new(key, kind, t.amount);
        p.method = t.method;
        payments.push(p);
    }
    payments
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored record in `state`, read the way recovery reads one.
    fn stored(state: PaymentState) -> PaymentRecord {
        serde_json::from_value(serde_json::json!({
            "key": "k-0", "kind": "charge", "amount": 100, "state": state.name(),
            "card": null, "decline_reason": null,
        }))
        .unwrap()
    }

    #[test]
    fn every_move_is_legal_exactly_when_the_table_lists_it() {
        let mut legal = 0;
        for from in PaymentState::ALL {
            for to in PaymentState::ALL {
                for cause in Cause::ALL {
                    let listed = EDGES.contains(&Edge { from, to, cause });
                    let mut p = stored(from);
                    let r = p.transition(to, cause);
                    assert_eq!(r.is_ok(), listed, "{from:?} -> {to:?} for {cause:?}");
                    if listed {
                        legal += 1;
                        assert_eq!(p.state(), to);
                    } else {
                        assert_eq!(
                            r,
                            Err(IllegalTransition {
                                key: "k-0".into(),
                                from,
                                to,
                                cause
                            })
                        );
                        assert_eq!(p.state(), from, "a refused move changes nothing");
                    }
                }
            }
        }
        assert_eq!(legal, EDGES.len(), "the table lists an edge twice");
    }

    #[test]
    fn the_table_keeps_invariant_3() {
        use PaymentState::*;
        for e in EDGES {
            // A key is called once: only a planned payment starts a call.
            if e.to == Authorizing {
                assert_eq!((e.from, e.cause), (Pending, Cause::Call), "{e:?}");
            }
            // Nothing happens to a finished payment.
            assert!(!e.from.is_final(), "{e:?} leaves a final state");
            // An approval is never forgotten: it is recorded, voided, or the terminal
            // itself says it did not go through.
            if e.from == Authorized {
                assert!(
                    matches!(
                        (e.to, e.cause),
                        (Completed, Cause::Record)
                            | (Voided, Cause::Void)
                            | (Declined, Cause::Status)
                    ),
                    "{e:?}"
                );
            }
            // Back to planned, or a plan dropped without a call: recovery's decisions.
            let recovery_move = e.to == Pending || (e.from == Pending && e.to != Authorizing);
            assert_eq!(recovery_move, e.cause.is_recovery(), "{e:?}");
            // An unknown outcome is resolved only by asking about the same key.
            if e.from == InDoubt && e.to != InDoubt {
                assert!(
                    matches!(e.cause, Cause::Status | Cause::RecoveryNeverCharged),
                    "{e:?}"
                );
            }
        }
    }

    #[test]
    fn payment_state_machine_refuses_skips() {
        use PaymentState::*;
        let any = |from, to| Cause::ALL.iter().any(|c| allowed(from, to, *c));
        assert!(allowed(Pending, Authorizing, Cause::Call));
        assert!(
            !any(Pending, Authorized),
            "must persist Authorizing before calling"
        );
        assert!(
            !any(Declined, Authorizing),
            "a declined key is never charged again"
        );
        assert!(!any(Completed, Voided));
        assert!(allowed(InDoubt, Authorized, Cause::Status));
        let mut p = stored(Authorized);
        for cause in Cause::ALL {
            assert!(p.transition(Authorizing, cause).is_err());
        }
        assert!(p.transition(Completed, Cause::Record).is_ok());
        assert!(p.state().is_final());
    }

    /// Symptom: recovery assigned `pending` to `authorizing`/`in_doubt` payments
    /// directly, a move the state machine's `can_become` forbade, so any path could.
    #[test]
    fn recovery_set_in_doubt_back_to_pending_outside_the_state_machine() {
        for from in [PaymentState::Authorizing, PaymentState::InDoubt] {
            for cause in Cause::ALL {
                let mut p = stored(from);
                let ok = p.transition(PaymentState::Pending, cause).is_ok();
                assert_eq!(
                    ok,
                    cause == Cause::RecoveryNeverCharged,
                    "{from:?} {cause:?}"
                );
            }
        }
        for cause in Cause::ALL {
            let mut p = stored(PaymentState::Pending);
            let ok = p.decline("not started".into(), cause).is_ok();
            assert_eq!(ok, cause == Cause::RecoveryNotStarted, "{cause:?}");
            assert_eq!(p.decline_reason.is_some(), ok);
        }
    }

    #[test]
    fn a_stored_record_reads_and_writes_the_same_json() {
        let json = r#"{"key":"0190-1","kind":"refund","amount":250,"state":"in_doubt","card":{"auth_code":"A1","brand":"VISA","last4":"4242"},"decline_reason":null}"#;
        let p: PaymentRecord = serde_json::from_str(json).unwrap();
        assert_eq!(p.state(), PaymentState::InDoubt);
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
        for s in PaymentState::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.name())
            );
        }
    }

    /// The rows of the table under "## The state machine" in docs/payments.md.
    fn documented_edges() -> Vec<(String, String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/payments.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let section = doc
            .split("\n## ")
            .find(|s| s.starts_with("The state machine"))
            .expect("docs/payments.md has a section \"The state machine\"");
        let unquote = |c: &str| c.trim().trim_matches('`').to_owned();
        section
            .lines()
            .skip_while(|l| !l.starts_with("| from | to | cause |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').collect();
                (unquote(cells[1]), unquote(cells[2]), unquote(cells[3]))
            })
            .collect()
    }

    #[test]
    fn the_table_in_docs_payments_md_is_the_table_in_the_code() {
        let code: Vec<(String, String, String)> = EDGES
            .iter()
            .map(|e| {
                (
                    e.from.name().to_owned(),
                    e.to.name().to_owned(),
                    e.cause.name().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            documented_edges(),
            code,
            "regenerate the table in docs/payments.md from EDGES"
        );
        for c in Cause::ALL {
            assert_eq!(c.is_recovery(), c.name().starts_with("recovery_"), "{c:?}");
        }
    }
}
