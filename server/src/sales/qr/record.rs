//! What the unit knows about each QR payment, and how a provider's notification or
//! the unit's own decision moves it. Pure: the writer jobs in [`super`] store what
//! these functions decide.
//!
//! | key | value |
//! |---|---|
//! | `qp/` reference | [`QrPayment`] |
//!
//! A payment is `awaiting` from the moment its code is shown until the provider says
//! it was paid or failed, or the unit gives up (it expired, or the till cancelled).
//! Money that arrives for a payment the unit no longer waits for (late, a second
//! payment, a wrong amount, a reference it never issued) is never kept: it is
//! `returned`, and a return goes to HQ in the outbox, which pays it back through
//! the provider.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::sale::PaymentKind;

/// Key prefix of QR payment records.
pub const PREFIX: &[u8] = b"qp/";

/// Key of the record of `reference`.
pub fn key(reference: &str) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(reference.as_bytes());
    k
}

/// One QR payment (a charge shown as a code, or a refund sent back through HQ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QrPayment {
    /// The payment key, which is the reference the code carries.
    pub reference: String,
    /// Charge or refund.
    pub kind: PaymentKind,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// When the code was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the unit stops waiting for it.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Where it stands.
    pub state: QrState,
    /// The provider's ids of further payments of this code already given back, so a
    /// provider telling one again gives nothing back twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub returned: Vec<String>,
}

/// Where a QR payment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum QrState {
    /// Shown; not paid yet.
    Awaiting,
    /// The provider says the customer paid.
    Paid {
        /// The provider's id of the payment.
        provider_ref: String,
        /// The wallet the customer paid with, as the provider names it.
        wallet: Option<String>,
    },
    /// Not paid: the provider said it failed, it expired, or the till cancelled it.
    Declined {
        /// Why.
        reason: String,
    },
    /// Paid, then given back (a void, a refund, or money the unit did not wait for).
    Returned {
        /// The provider's id of the payment returned, when known.
        provider_ref: Option<String>,
        /// Why.
        reason: String,
    },
}

/// What a provider says about a reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The customer paid `amount` in `currency`.
    Paid {
        /// Minor units.
        amount: i64,
        /// ISO 4217.
        currency: String,
        /// The provider's id of the payment.
        provider_ref: String,
        /// The wallet used.
        wallet: Option<String>,
    },
    /// The payment failed (cancelled by the customer, refused by the wallet).
    Failed {
        /// Why, as the provider says.
        reason: String,
    },
}

/// What a notice does: the record to store (if it changes) and money to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The record after the notice (`None`: unchanged).
    pub record: Option<QrPayment>,
    /// Money to return to the payer: (provider_ref, amount, currency, reason).
    pub give_back: Option<GiveBack>,
}

/// Money the unit does not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveBack {
    /// The provider's id of the payment.
    pub provider_ref: Option<String>,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Why.
    pub reason: String,
}

/// Apply `notice` about `reference` to its record (`None`: never issued here), at `now`.
pub fn apply(
    reference: &str,
    record: Option<&QrPayment>,
    notice: Notice,
    now: OffsetDateTime,
) -> Applied {
    let unchanged = Applied {
        record: None,
        give_back: None,
    };
    let Notice::Paid {
        amount,
        currency,
        provider_ref,
        wallet,
    } = notice
    else {
        // A failure ends a payment still awaited; anything else already ended.
        let Notice::Failed { reason } = notice else {
            return unchanged;
        };
        return match record {
            Some(r) if r.state == QrState::Awaiting => Applied {
                record: Some(QrPayment {
                    state: QrState::Declined {
                        reason: format!("the wallet payment failed: {reason}"),
                    },
                    ..r.clone()
                }),
                give_back: None,
            },
            _ => unchanged,
        };
    };
    let give_back = |reason: String| GiveBack {
        provider_ref: Some(provider_ref.clone()),
        amount,
        currency: currency.clone(),
        reason,
    };
    // A further payment given back already, told again: nothing new.
    if record.is_some_and(|r| r.returned.contains(&provider_ref)) {
        return unchanged;
    }
    // A further payment of a code that keeps its state: given back, and remembered.
    let remember = |r: &QrPayment, reason: &str| {
        let mut kept = r.clone();
        kept.returned.push(provider_ref.clone());
        Applied {
            record: Some(kept),
            give_back: Some(give_back(reason.to_owned())),
        }
    };
    let Some(r) = record else {
        return Applied {
            record: Some(QrPayment {
                reference: reference.to_owned(),
                kind: PaymentKind::Charge,
                amount,
                currency: currency.clone(),
                created_at: now,
                expires_at: now,
                state: QrState::Returned {
                    provider_ref: Some(provider_ref.clone()),
                    reason: "paid for a code this unit never issued".into(),
                },
                returned: Vec::new(),
            }),
            give_back: Some(give_back("paid for a code this unit never issued".into())),
        };
    };
    // This payment given back, and the code ended with it.
    let returned = |why: String| Applied {
        record: Some(QrPayment {
            state: QrState::Returned {
                provider_ref: Some(provider_ref.clone()),
                reason: why.clone(),
            },
            ..r.clone()
        }),
        give_back: Some(give_back(why)),
    };
    match &r.state {
        QrState::Awaiting if r.kind == PaymentKind::Charge => {
            if amount == r.amount && currency == r.currency {
                Applied {
                    record: Some(QrPayment {
                        state: QrState::Paid {
                            provider_ref: provider_ref.clone(),
                            wallet,
                        },
                        ..r.clone()
                    }),
                    give_back: None,
                }
            } else {
                returned(format!(
                    "paid {amount} {currency} for a code of {} {}",
                    r.amount, r.currency
                ))
            }
        }
        // The same payment told again: nothing new.
        QrState::Paid {
            provider_ref: known,
            ..
        }
        | QrState::Returned {
            provider_ref: Some(known),
            ..
        } if *known == provider_ref => unchanged,
        QrState::Paid { .. } => remember(r, "a second payment of a code already paid"),
        QrState::Declined { .. } | QrState::Awaiting => {
            returned("paid after the code was no longer valid".to_owned())
        }
        QrState::Returned { .. } => remember(r, "paid after the code was no longer valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn awaiting() -> QrPayment {
        let now = OffsetDateTime::now_utc();
        QrPayment {
            reference: "s-0".into(),
            kind: PaymentKind::Charge,
            amount: 500,
            currency: "EUR".into(),
            created_at: now,
            expires_at: now + time::Duration::minutes(5),
            state: QrState::Awaiting,
            returned: Vec::new(),
        }
    }

    fn paid(amount: i64, provider_ref: &str) -> Notice {
        Notice::Paid {
            amount,
            currency: "EUR".into(),
            provider_ref: provider_ref.into(),
            wallet: Some("DemoPay".into()),
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn the_right_amount_pays_an_awaited_code() {
        let a = apply("s-0", Some(&awaiting()), paid(500, "p1"), now());
        assert!(matches!(a.record.unwrap().state, QrState::Paid { .. }));
        assert_eq!(a.give_back, None);
    }

    #[test]
    fn a_wrong_amount_is_returned_and_the_code_not_paid() {
        let a = apply("s-0", Some(&awaiting()), paid(400, "p1"), now());
        assert!(matches!(a.record.unwrap().state, QrState::Returned { .. }));
        assert_eq!(a.give_back.unwrap().amount, 400);
    }

    #[test]
    fn the_same_payment_told_twice_changes_nothing() {
        let once = apply("s-0", Some(&awaiting()), paid(500, "p1"), now())
            .record
            .unwrap();
        let twice = apply("s-0", Some(&once), paid(500, "p1"), now());
        assert_eq!(twice.record, None);
        assert_eq!(twice.give_back, None);
    }

    #[test]
    fn a_second_payment_of_a_paid_code_is_returned() {
        let once = apply("s-0", Some(&awaiting()), paid(500, "p1"), now())
            .record
            .unwrap();
        let second = apply("s-0", Some(&once), paid(500, "p2"), now());
        let kept = second.record.unwrap();
        assert!(
            matches!(&kept.state, QrState::Paid { provider_ref, .. } if provider_ref == "p1"),
            "the first payment stands"
        );
        assert_eq!(
            second.give_back.unwrap().provider_ref.as_deref(),
            Some("p2")
        );
        // The second payment told again: given back once only.
        let again = apply("s-0", Some(&kept), paid(500, "p2"), now());
        assert_eq!((again.record, again.give_back), (None, None));
    }

    #[test]
    fn money_for_a_code_no_longer_awaited_or_never_issued_is_returned() {
        let mut declined = awaiting();
        declined.state = QrState::Declined {
            reason: "expired".into(),
        };
        let late = apply("s-0", Some(&declined), paid(500, "p1"), now());
        assert!(matches!(
            late.record.unwrap().state,
            QrState::Returned { .. }
        ));
        assert!(late.give_back.is_some());
        let stray = apply("zz-9", None, paid(700, "p9"), now());
        assert_eq!(stray.record.unwrap().reference, "zz-9");
        assert_eq!(stray.give_back.unwrap().amount, 700);
    }

    #[test]
    fn a_failure_ends_only_an_awaited_code() {
        let f = || Notice::Failed {
            reason: "cancelled".into(),
        };
        let a = apply("s-0", Some(&awaiting()), f(), now());
        assert!(matches!(a.record.unwrap().state, QrState::Declined { .. }));
        let once = apply("s-0", Some(&awaiting()), paid(500, "p1"), now())
            .record
            .unwrap();
        assert_eq!(apply("s-0", Some(&once), f(), now()).record, None);
        assert_eq!(apply("s-0", None, f(), now()).record, None);
    }
}
