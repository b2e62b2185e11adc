//! Asking the payment terminal what happened under a key, and what its answers mean
//! for a payment. Shared by live checkouts, refunds and recovery: an unknown outcome
//! is only ever resolved here, by asking about the same key, never by calling again.

use outpost_peripherals::payment::{
    Approval, Instrument, KeyStatus, Outcome, PaymentError, PaymentKey,
};
use outpost_peripherals::{DeviceError, ErrorKind};

use super::Sales;
use crate::domain::sale::{
    CardSummary, Cause, IllegalTransition, PaymentRecord, Tender, TenderMethod,
};

/// What the terminal says about a key once asked.
#[derive(Debug, Clone)]
pub(crate) enum Asked {
    /// Money moved.
    Approved(Approval),
    /// The terminal declined it.
    Declined(String),
    /// The terminal never took it, or it was reversed: no money moved.
    NotCharged(String),
}

impl Asked {
    /// As a terminal outcome: anything but an approval moved no money.
    pub(crate) fn into_outcome(self) -> Outcome {
        match self {
            Asked::Approved(a) => Outcome::Approved(a),
            Asked::Declined(reason) | Asked::NotCharged(reason) => Outcome::Declined { reason },
        }
    }
}

/// What a key's status says, or `None` while the terminal is still at it.
pub(crate) fn asked_from(status: KeyStatus) -> Option<Asked> {
    match status {
        KeyStatus::Done(Outcome::Approved(a)) => Some(Asked::Approved(a)),
        KeyStatus::Done(Outcome::Declined { reason }) => Some(Asked::Declined(reason)),
        KeyStatus::Unknown => Some(Asked::NotCharged(
            "the terminal never received the payment".into(),
        )),
        KeyStatus::Reversed => Some(Asked::NotCharged("the payment was reversed".into())),
        KeyStatus::InProgress => None,
    }
}

/// Errors that prove the terminal never acted on the command.
pub(crate) fn not_delivered(e: &PaymentError) -> bool {
    // `Illegal` is not here: a terminal refusing a key may have used it before, so
    // that case is resolved by asking, like any other doubt.
    matches!(
        e.kind(),
        ErrorKind::Offline | ErrorKind::Busy | ErrorKind::NoHardware
    )
}

/// What the terminal may take for the payment under `key`: only a wallet for a
/// wallet tender (a refund to a wallet included), anything it accepts otherwise.
pub(crate) fn instrument_of(tenders: &[Tender], key: &str) -> Instrument {
    match tenders
        .iter()
        .find(|t| t.payment_key.as_deref() == Some(key))
        .map(|t| t.method)
    {
        Some(TenderMethod::Wallet) => Instrument::Wallet,
        _ => Instrument::Any,
    }
}

/// Move `pay` to `authorized` with the card the terminal approved, and show that card
/// on the tender it pays (in `tenders`, a sale's or a refund's).
pub(crate) fn approve(
    tenders: &mut [Tender],
    pay: &mut PaymentRecord,
    a: Approval,
    cause: Cause,
) -> Result<(), IllegalTransition> {
    let card = CardSummary {
        auth_code: a.auth_code,
        brand: a.brand,
        last4: a.last4,
    };
    pay.approve(card.clone(), cause)?;
    if let Some(t) = tenders
        .iter_mut()
        .find(|t| t.payment_key.as_deref() == Some(pay.key.as_str()))
    {
        t.card = Some(card);
    }
    Ok(())
}

impl Sales {
    /// Ask the terminal about a key a few times, for the live path. `None`: still unknown.
    pub(crate) async fn ask_until_known(
        &self,
        method: TenderMethod,
        key: &PaymentKey,
    ) -> Option<Asked> {
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..4 {
            if let Some(o) = self.ask(method, key).await {
                return Some(o);
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        None
    }

    /// Ask the terminal (of a payment by `method`) once what happened under `key`.
    /// `None` when it cannot say yet.
    pub(crate) async fn ask(&self, method: TenderMethod, key: &PaymentKey) -> Option<Asked> {
        let terminal = self.terminal_for(method)?;
        match tokio::time::timeout(self.config().payment_timeout, terminal.status(key)).await {
            Ok(Ok(status)) => asked_from(status),
            Ok(Err(_)) | Err(_) => None,
        }
    }
}
