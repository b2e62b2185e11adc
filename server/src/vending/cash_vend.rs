//! A vend paid with the machine's cash credit.
//!
//! Before anything is written: the credit (with the note in escrow) must cover the
//! price, and the tubes must be able to pay the change. The note in escrow is
//! stacked only then, and returned otherwise. The price is taken from the credit in
//! the same write that moves the vend to `authorized`; the product drops as in a
//! cashless vend; the write that ends the vend either spends the price (sold: the
//! rest of the credit is due as change, paid right after) or gives it back to the
//! credit (not dispensed: kept for another selection or the coin return lever).

use super::cash::{self, can_pay};
use super::flow::Dropped;
use super::records::put_open;
use super::{VendError, VendRequestKey, Vending};
use crate::domain::money::Money;
use crate::domain::vending::vend::VendFault;
use crate::domain::vending::{PayMethod, SlotId, VendRecord, VendState};
use crate::store::StoreError;

fn short(credit: i64, price: i64) -> VendError {
    VendError::Invalid {
        code: "insufficient_credit",
        message: format!("the credit is {credit} and the price {price}: insert more"),
        field: Some("method".into()),
    }
}

fn no_change(change: i64) -> VendError {
    VendError::Invalid {
        code: "no_change",
        message: format!(
            "the coin tubes cannot pay {change} in change: exact change only, or another \
             selection"
        ),
        field: Some("method".into()),
    }
}

impl Vending {
    /// Sell one unit from `slot` against the cash credit. The caller holds the
    /// machine. Refused, with nothing written and nothing moved, when the credit is
    /// short (`insufficient_credit`) or the change cannot be paid (`no_change`).
    pub(crate) async fn vend_cash(
        &self,
        slot: SlotId,
        request: Option<VendRequestKey>,
    ) -> Result<VendRecord, VendError> {
        // Coins and notes not recorded yet, and any cash operation a cut left open.
        if self.changer().is_some() || self.validator().is_some() {
            self.poll_cash().await?;
        }
        self.settle_cash().await?;
        let (_, cart) = self.quote(slot)?;
        let price = cart.total.minor();
        let state = self.cash()?;
        if state.payout.is_some() || state.stacking.is_some() || state.reserved.is_some() {
            return Err(VendError::Busy);
        }
        let tubes = match self.changer() {
            Some(c) => c.tubes().await.map_err(|e| {
                VendError::DeviceUnavailable(format!("the coin changer cannot be used: {e}"))
            })?,
            None => Vec::new(),
        };
        let mut credit = state.credit;
        // The change the note would have needed, when that is why it went back.
        let mut unchangeable = None;
        if let Some(note) = state.escrow {
            let with = credit + note.value;
            let stack = with >= price && can_pay(&tubes, with - price);
            if with >= price && !stack {
                unchangeable = Some(with - price);
            }
            if self.move_note(note, stack).await? {
                credit = with;
            }
        }
        if credit < price {
            return Err(match unchangeable {
                Some(change) => no_change(change),
                None => short(credit, price),
            });
        }
        if !can_pay(&tubes, credit - price) {
            return Err(no_change(credit - price));
        }
        let mut r = self.select(slot, PayMethod::Cash, request).await?;
        r.cash_tendered = Some(Money(credit));
        // Authorized: the price comes off the credit in the same write.
        r.transition(VendState::Authorized, now())?;
        let rec = r.clone();
        let held = self
            .store()
            .write(move |tx| {
                let ok = cash::reserve(tx, &rec)?;
                if ok {
                    put_open(tx, &rec);
                }
                Ok::<bool, StoreError>(ok)
            })
            .await??;
        if !held {
            // The credit changed since it was read: nothing was taken. The record
            // left `selected` ends failed; recovery would say the same.
            let mut r = super::get(self.store(), r.id)?.ok_or_else(|| {
                VendError::Internal(format!("vend {} vanished after selection", r.id))
            })?;
            r.fail("the credit no longer covers the price", None);
            return self.end(r, VendState::Failed).await;
        }
        r.transition(VendState::Dispensing, now())?;
        self.persist(&r).await?;
        let ended = match self.dispense(&r).await {
            Dropped::Yes => self.dropped(r).await?,
            Dropped::No(reason) => {
                r.fail(
                    format!("not dispensed: {reason}"),
                    Some(VendFault::NotDispensed),
                );
                r.transition(VendState::Voiding, now())?;
                self.persist(&r).await?;
                self.void(r).await?
            }
            Dropped::NotKnown => return Err(VendError::OutcomeUnknown),
        };
        // The change: a failure leaves it due, for recovery.
        if let Err(e) = self.settle_cash().await {
            tracing::warn!(vend = %ended.id, error = %e, "The change is not paid yet");
        }
        Ok(ended)
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
