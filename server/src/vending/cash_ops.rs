//! The cash operations that move money out of the controller's sight, each
//! journaled before and after its device call: stacking or returning the note in
//! escrow (ESCROW, settled by the stacker count after a restart) and paying coins
//! out (DISPENSE, settled by the tube counts), and the payouts due (change, the coin
//! return lever).

use outpost_peripherals::change::{MAX_CHANGE, max_payable};
use outpost_peripherals::changer::PayoutStatus;
use outpost_peripherals::mdb::changer::paid_between;
use outpost_peripherals::validator::{EscrowOutcome, EscrowStatus};
use outpost_peripherals::{CommandKey, Condition, DeviceError, ErrorKind};
use uuid::Uuid;

use super::cash::{
    CashMove, Note, PayReason, PayoutOp, StackOp, can_pay, counts, movement, put_state, state_tx,
    tubes_of, unavailable,
};
use super::{VendError, Vending, alerts};
use crate::store::StoreError;

impl Vending {
    /// Give the customer's credit back: the note in escrow returned, the credit
    /// paid out in coins (what the tubes cannot pay stays credit).
    pub async fn return_credit(&self) -> Result<i64, VendError> {
        let _machine = self.machine.try_lock().map_err(|_| VendError::Busy)?;
        self.store()
            .write(|tx| {
                let mut s = state_tx(tx)?;
                if s.pay_due.is_none() && s.payout.is_none() {
                    s.pay_due = Some(PayReason::Return);
                    put_state(tx, &s);
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        self.settle_cash().await?;
        Ok(self.cash()?.credit)
    }

    /// Finish every cash operation in flight and every payout due, asking the
    /// devices about their keys. The caller holds the machine.
    /// [`VendError::OutcomeUnknown`]: a device cannot say yet; the operation stays.
    pub(crate) async fn settle_cash(&self) -> Result<(), VendError> {
        let s = self.cash()?;
        if let Some(op) = s.stacking {
            self.finish_stacking(op).await?;
        }
        if let Some(op) = s.payout {
            self.finish_payout(op).await?;
        }
        let s = self.cash()?;
        if let Some(reason) = s.pay_due {
            if reason == PayReason::Return
                && let Some(note) = s.escrow
            {
                // The note goes back first; a failure leaves it for the next try.
                let _ = self.move_note(note, false).await;
            }
            let s = self.cash()?;
            // All of the credit the tubes can pay; what no coin can pay stays credit.
            let amount = match self.changer() {
                Some(c) if s.credit > 0 => {
                    let levels = c
                        .tubes()
                        .await
                        .map_err(|e| unavailable("coin changer", &e))?;
                    max_payable(s.credit.min(MAX_CHANGE), &tubes_of(&levels)).unwrap_or(0)
                }
                _ => 0,
            };
            let paid = if amount > 0 {
                self.pay_out(amount, reason).await?
            } else {
                0
            };
            tracing::info!(amount, paid, ?reason, "Paid out the credit");
            self.store()
                .write(move |tx| {
                    let mut s = state_tx(tx)?;
                    if s.pay_due == Some(reason) {
                        s.pay_due = None;
                        put_state(tx, &s);
                    }
                    Ok::<(), StoreError>(())
                })
                .await??;
        }
        Ok(())
    }

    /// Pay `amount` in coins under a new key, journaled before and after. Returns
    /// what left the tubes. Pays nothing when the tubes cannot pay it exactly.
    pub(crate) async fn pay_out(&self, amount: i64, reason: PayReason) -> Result<i64, VendError> {
        let Some(changer) = self.changer() else {
            return Ok(0);
        };
        let levels = changer
            .tubes()
            .await
            .map_err(|e| unavailable("coin changer", &e))?;
        if !can_pay(&levels, amount) {
            tracing::warn!(amount, "The tubes cannot pay the credit back exactly");
            return Ok(0);
        }
        let op = PayoutOp {
            key: format!("pay-{}", Uuid::now_v7()),
            amount,
            tubes_before: counts(&levels),
            reason,
        };
        let written = op.clone();
        self.store()
            .write(move |tx| {
                let mut s = state_tx(tx)?;
                if s.payout.is_some() {
                    return Err(VendError::Busy);
                }
                s.payout = Some(written);
                put_state(tx, &s);
                Ok(())
            })
            .await??;
        let key = CommandKey(op.key.clone());
        let answer = tokio::time::timeout(self.timeouts.dispense, changer.pay_out(&key, amount))
            .await
            .unwrap_or_else(|_| Err(outpost_peripherals::DeviceFault::outcome_unknown("timeout")));
        let paid = match answer {
            Ok(p) => Some(p.paid_minor),
            // Refused before any coin moved.
            Err(e) if e.kind() == ErrorKind::Illegal => Some(0),
            Err(e) => {
                if e.device_condition() == Some(Condition::Jam) {
                    self.device_alert("changer_fault", "changer", true, e.to_string())
                        .await?;
                }
                None
            }
        };
        match paid {
            Some(paid) => {
                self.close_payout(op, paid).await?;
                Ok(paid)
            }
            None => {
                let paid = self.payout_paid(&op).await?;
                self.close_payout(op, paid).await?;
                Ok(paid)
            }
        }
    }

    /// What left the tubes under the payout `op`: the changer's answer about the
    /// key, else the tube counts against those before.
    async fn payout_paid(&self, op: &PayoutOp) -> Result<i64, VendError> {
        let changer = self.changer().ok_or(VendError::OutcomeUnknown)?;
        let key = CommandKey(op.key.clone());
        match tokio::time::timeout(self.timeouts.call, changer.payout_status(&key)).await {
            Ok(Ok(PayoutStatus::Done(p))) => return Ok(p.paid_minor),
            Ok(Ok(PayoutStatus::Unknown)) => {}
            Ok(Err(_)) | Err(_) => return Err(VendError::OutcomeUnknown),
        }
        let levels = tokio::time::timeout(self.timeouts.call, changer.tubes())
            .await
            .map_err(|_| VendError::OutcomeUnknown)?
            .map_err(|_| VendError::OutcomeUnknown)?;
        let now = counts(&levels);
        let paid = paid_between(&op.tubes_before, &now, &[], &[]);
        Ok(levels
            .iter()
            .map(|l| {
                l.value_minor * i64::from(paid.get(usize::from(l.coin_type)).copied().unwrap_or(0))
            })
            .sum())
    }

    /// Close the payout `op`: what was paid comes off the credit.
    async fn close_payout(&self, op: PayoutOp, paid: i64) -> Result<(), VendError> {
        self.store()
            .write(move |tx| {
                let mut s = state_tx(tx)?;
                if s.payout.as_ref().map(|p| &p.key) != Some(&op.key) {
                    return Ok::<(), StoreError>(());
                }
                s.payout = None;
                s.credit = (s.credit - paid).max(0);
                put_state(tx, &s);
                if paid > 0 {
                    let vend = match op.reason {
                        PayReason::Change { vend } => Some(vend),
                        PayReason::Return => None,
                    };
                    movement(tx, CashMove::PaidOut, paid, vend);
                    alerts::set(tx, "changer_fault", "changer", false, || {
                        "the coin changer pays out again".into()
                    })?;
                }
                Ok(())
            })
            .await??;
        Ok(())
    }

    async fn finish_payout(&self, op: PayoutOp) -> Result<(), VendError> {
        let paid = self.payout_paid(&op).await?;
        tracing::info!(key = %op.key, asked = op.amount, paid, "Finished a payout left open");
        self.close_payout(op, paid).await
    }

    /// Stack (or return) the note in escrow, journaled before and after. Returns
    /// whether it was stacked.
    pub(crate) async fn move_note(&self, note: Note, stack: bool) -> Result<bool, VendError> {
        let v = self
            .validator()
            .ok_or_else(|| VendError::DeviceUnavailable("no bill validator".into()))?;
        let before = v
            .stacker()
            .await
            .map_err(|e| unavailable("bill validator", &e))?;
        let op = StackOp {
            key: format!("note-{}", Uuid::now_v7()),
            value: note.value,
            stack,
            stacker_before: before.bills,
        };
        let written = op.clone();
        self.store()
            .write(move |tx| {
                let mut s = state_tx(tx)?;
                if s.stacking.is_some() {
                    return Err(VendError::Busy);
                }
                s.stacking = Some(written);
                put_state(tx, &s);
                Ok(())
            })
            .await??;
        let key = CommandKey(op.key.clone());
        let answer = tokio::time::timeout(self.timeouts.dispense, v.escrow(&key, stack))
            .await
            .unwrap_or_else(|_| Err(outpost_peripherals::DeviceFault::outcome_unknown("timeout")));
        let outcome = match answer {
            Ok(o) => Some(o),
            // The validator never acted: the note is still in escrow.
            Err(e) if e.kind() == ErrorKind::Timeout => None,
            // It holds no note (given back, pulled out): gone, not stacked.
            Err(e) if e.kind() == ErrorKind::Illegal => Some(EscrowOutcome::Returned {
                value_minor: note.value,
            }),
            Err(_) => return self.finish_stacking(op).await,
        };
        self.close_stacking(op, outcome).await
    }

    /// Close the stacking `op` with its outcome (`None`: nothing moved).
    async fn close_stacking(
        &self,
        op: StackOp,
        outcome: Option<EscrowOutcome>,
    ) -> Result<bool, VendError> {
        let stacked = matches!(outcome, Some(EscrowOutcome::Stacked { .. }));
        self.store()
            .write(move |tx| {
                let mut s = state_tx(tx)?;
                if s.stacking.as_ref().map(|p| &p.key) != Some(&op.key) {
                    return Ok::<(), StoreError>(());
                }
                s.stacking = None;
                if outcome.is_some() {
                    s.escrow = None;
                }
                if stacked {
                    s.credit += op.value;
                    s.cash_box_out = false;
                    movement(tx, CashMove::NoteStacked, op.value, None);
                }
                put_state(tx, &s);
                Ok(())
            })
            .await??;
        Ok(stacked)
    }

    async fn finish_stacking(&self, op: StackOp) -> Result<bool, VendError> {
        let v = self.validator().ok_or(VendError::OutcomeUnknown)?;
        let key = CommandKey(op.key.clone());
        let outcome = match tokio::time::timeout(self.timeouts.call, v.escrow_status(&key)).await {
            Ok(Ok(EscrowStatus::Done(o))) => Some(o),
            Ok(Ok(EscrowStatus::Unknown)) => {
                // The validator does not know the key (it restarted, or never acted):
                // one more note in the stacker means it was stacked.
                let now = tokio::time::timeout(self.timeouts.call, v.stacker())
                    .await
                    .map_err(|_| VendError::OutcomeUnknown)?
                    .map_err(|_| VendError::OutcomeUnknown)?;
                (now.bills > op.stacker_before).then_some(EscrowOutcome::Stacked {
                    value_minor: op.value,
                })
            }
            Ok(Err(_)) | Err(_) => return Err(VendError::OutcomeUnknown),
        };
        tracing::info!(key = %op.key, ?outcome, "Finished a note left in escrow");
        self.close_stacking(op, outcome).await
    }
}
