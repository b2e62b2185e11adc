//! The machine's cash: the customer's credit from coins and notes, the note held in
//! escrow, and the two cash operations that move money out of the controller's
//! sight (stacking or returning the note, paying coins out), each journaled before
//! and after its device call so a power cut neither loses credit nor pays twice.
//!
//! | key | value |
//! |---|---|
//! | `v/c` | [`CashState`]: credit, the price a cash vend holds, the note in escrow, the operation in flight |
//! | `v/k/` movement id | [`CashMovement`]: coin in (tube or cash box), note stacked, coins paid out (for DEX) |
//!
//! - **Credit** grows only in the write that records a coin or a stacked note
//!   (a [`CashMovement`]), and shrinks only in the write that records coins paid
//!   out or a cash vend's price held ([`Reserved`]).
//! - **Stacking** (ESCROW): the operation is written (with the stacker count
//!   before) before the validator is told; its outcome (stacked: credit; returned:
//!   nothing) in the write that closes it. After a cut, the validator is asked about
//!   the key, else the stacker count decides.
//! - **Paying out** (DISPENSE): the operation is written (with the tube counts
//!   before) before the changer is told; what left the tubes comes off the credit
//!   in the write that closes it. After a cut, the changer is asked about the key,
//!   else the tube counts decide. What is due and was not paid stays credit.
//! - A payout due (change after a cash vend, the coin return lever) is written as
//!   an intent in the same write as its cause, so a cut between the two still pays.

use std::sync::Arc;

use outpost_peripherals::change::{Tube, make_change};
use outpost_peripherals::changer::{
    ChangerEvent, ChangerStatus, CoinChanger, CoinRoute, PayoutStatus, TubeLevel,
};
use outpost_peripherals::mdb::changer::paid_between;
use outpost_peripherals::validator::{
    BillRoute, BillValidator, EscrowOutcome, EscrowStatus, ValidatorEvent, ValidatorStatus,
};
use outpost_peripherals::{CommandKey, Condition, DeviceError, ErrorKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{VendError, Vending, alerts};
use crate::domain::vending::{VendRecord, VendState};
use crate::store::{Store, StoreError, Tx, from_json, to_json};

const STATE: &[u8] = b"v/c";
const MOVES: &[u8] = b"v/k/";
const FITTED: &[u8] = b"v/f";

/// Who a cash device says it is, for the DEX audit (CA1, BA1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashDeviceId {
    /// Serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Software version.
    pub software: String,
}

/// The cash devices fitted, as they last said at open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fitted {
    /// The coin changer.
    pub changer: Option<CashDeviceId>,
    /// The bill validator.
    pub validator: Option<CashDeviceId>,
}

/// The cash devices fitted.
pub fn fitted(store: &Store) -> Result<Fitted, StoreError> {
    Ok(store
        .journal_get(FITTED)?
        .map(|v| from_json(&v, "cash devices"))
        .transpose()?
        .unwrap_or_default())
}

fn id_of(d: &dyn outpost_peripherals::Device) -> CashDeviceId {
    let i = d.core().info();
    CashDeviceId {
        serial: i.serial.unwrap_or_else(|| i.id.clone()),
        model: i.model.unwrap_or_default(),
        software: i.firmware.unwrap_or_default(),
    }
}

/// A cash vend's price, taken from the credit while the vend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    /// The vend.
    pub vend: Uuid,
    /// Minor units.
    pub amount: i64,
}

/// A note, as the validator reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its type.
    pub bill_type: u8,
    /// Minor units.
    pub value: i64,
}

/// An ESCROW that may have reached the validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackOp {
    /// The validator's key.
    pub key: String,
    /// The note.
    pub value: i64,
    /// Stack (or return).
    pub stack: bool,
    /// Notes in the stacker before.
    pub stacker_before: u32,
}

/// Why coins are paid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum PayReason {
    /// Change after a cash vend.
    Change {
        /// The vend.
        vend: Uuid,
    },
    /// The customer pressed the coin return lever.
    Return,
}

/// A payout that may have reached the changer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutOp {
    /// The changer's key.
    pub key: String,
    /// Minor units asked.
    pub amount: i64,
    /// Coins in each tube before, by coin type.
    pub tubes_before: Vec<u32>,
    /// Why.
    pub reason: PayReason,
}

/// The machine's cash, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashState {
    /// The customer's credit, minor units: coins and stacked notes not spent yet.
    pub credit: i64,
    /// The price a running cash vend holds.
    #[serde(default)]
    pub reserved: Option<Reserved>,
    /// The note the validator holds in escrow (not credit until stacked).
    #[serde(default)]
    pub escrow: Option<Note>,
    /// An ESCROW in flight.
    #[serde(default)]
    pub stacking: Option<StackOp>,
    /// A payout in flight.
    #[serde(default)]
    pub payout: Option<PayoutOp>,
    /// A payout due and not started.
    #[serde(default)]
    pub pay_due: Option<PayReason>,
    /// The validator reported its cash box out of position.
    #[serde(default)]
    pub cash_box_out: bool,
}

/// What moved, for the audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CashMove {
    /// A coin into its tube.
    CoinToTube,
    /// A coin into the cash box.
    CoinToCashBox,
    /// A note into the stacker.
    NoteStacked,
    /// Coins paid out by Outpost (change, coin return).
    PaidOut,
    /// Coins a technician paid out with the changer's buttons.
    ManualPaidOut,
}

/// One movement of cash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashMovement {
    /// Time-ordered id (UUIDv7).
    pub id: Uuid,
    /// What.
    pub kind: CashMove,
    /// Minor units.
    pub value: i64,
    /// The vend it was change for.
    #[serde(default)]
    pub vend: Option<Uuid>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The cash state, as the writer sees it.
pub(crate) fn state_tx(tx: &Tx<'_>) -> Result<CashState, StoreError> {
    Ok(tx
        .get(STATE)?
        .map(|v| from_json(&v, "cash state"))
        .transpose()?
        .unwrap_or_default())
}

pub(crate) fn put_state(tx: &mut Tx<'_>, s: &CashState) {
    tx.put(STATE.to_vec(), to_json(s));
}

/// The cash state.
pub fn state(store: &Store) -> Result<CashState, StoreError> {
    Ok(store
        .journal_get(STATE)?
        .map(|v| from_json(&v, "cash state"))
        .transpose()?
        .unwrap_or_default())
}

/// Every cash movement, oldest first.
pub fn movements(store: &Store) -> Result<Vec<CashMovement>, StoreError> {
    store
        .journal_scan_from(MOVES, MOVES)
        .map(|kv| kv.and_then(|(_, v)| from_json(&v, "cash movement")))
        .collect()
}

fn movement(tx: &mut Tx<'_>, kind: CashMove, value: i64, vend: Option<Uuid>) {
    let m = CashMovement {
        id: Uuid::now_v7(),
        kind,
        value,
        vend,
        at: OffsetDateTime::now_utc(),
    };
    let mut k = MOVES.to_vec();
    k.extend_from_slice(m.id.as_bytes());
    tx.put(k, to_json(&m));
}

/// The end of a cash vend, in the write that ends it: a sold vend spent its
/// price, and what credit is left is due as change; a failed one gives its price
/// back to the credit.
pub(crate) fn end_of_vend(tx: &mut Tx<'_>, r: &VendRecord) -> Result<(), StoreError> {
    let mut s = state_tx(tx)?;
    let Some(held) = s.reserved.filter(|h| h.vend == r.id) else {
        return Ok(());
    };
    s.reserved = None;
    match r.state() {
        VendState::Failed => s.credit += held.amount,
        _ => {
            if s.credit > 0 && s.pay_due.is_none() {
                s.pay_due = Some(PayReason::Change { vend: r.id });
            }
        }
    }
    put_state(tx, &s);
    Ok(())
}

/// Take a cash vend's price from the credit, in the write that moves it to
/// `authorized`. Refused (nothing written) when the credit no longer covers it.
pub(crate) fn reserve(tx: &mut Tx<'_>, r: &VendRecord) -> Result<bool, StoreError> {
    let mut s = state_tx(tx)?;
    let price = r.price.minor();
    if s.reserved.is_some() || s.credit < price {
        return Ok(false);
    }
    s.credit -= price;
    s.reserved = Some(Reserved {
        vend: r.id,
        amount: price,
    });
    put_state(tx, &s);
    Ok(true)
}

/// Coins in each tube, by coin type.
fn counts(levels: &[TubeLevel]) -> Vec<u32> {
    let mut v = vec![0u32; 16];
    for l in levels {
        if let Some(c) = v.get_mut(usize::from(l.coin_type)) {
            *c = l.count;
        }
    }
    v
}

/// Whether the tubes can pay `amount` exactly.
pub fn can_pay(levels: &[TubeLevel], amount: i64) -> bool {
    let tubes: Vec<Tube> = levels
        .iter()
        .map(|l| Tube {
            value: l.value_minor,
            count: l.count,
        })
        .collect();
    matches!(make_change(amount, &tubes), Ok(Some(_)))
}

/// A device fault as a vend error: the device cannot be used now.
fn unavailable(what: &str, e: &outpost_peripherals::DeviceFault) -> VendError {
    VendError::DeviceUnavailable(format!("the {what} cannot be used: {e}"))
}

impl Vending {
    pub(crate) fn changer(&self) -> Option<&Arc<dyn CoinChanger>> {
        self.devices.changer.as_ref()
    }

    pub(crate) fn validator(&self) -> Option<&Arc<dyn BillValidator>> {
        self.devices.validator.as_ref()
    }

    /// The machine's cash now.
    pub fn cash(&self) -> Result<CashState, VendError> {
        Ok(state(self.store())?)
    }

    /// After the controller (re)started: the validator's RESET at open gave back a
    /// note left in escrow, so it is no longer there.
    pub async fn cash_restarted(&self) -> Result<(), VendError> {
        self.store()
            .write(|tx| {
                let mut s = state_tx(tx)?;
                if s.escrow.take().is_some() {
                    put_state(tx, &s);
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        Ok(())
    }

    /// Record the cash devices fitted (what the DEX audit names), once they are
    /// open.
    pub async fn record_fitted(&self) -> Result<(), VendError> {
        let f = Fitted {
            changer: self.changer().map(|c| id_of(c.as_ref())),
            validator: self.validator().map(|v| id_of(v.as_ref())),
        };
        self.store()
            .write(move |tx| {
                let now: Option<Fitted> = tx
                    .get(FITTED)?
                    .map(|v| from_json(&v, "cash devices"))
                    .transpose()?;
                if now.as_ref() != Some(&f) {
                    tx.put(FITTED.to_vec(), to_json(&f));
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        Ok(())
    }

    /// Start (or stop) taking coins and notes.
    pub async fn accept_cash(&self, accept: bool) -> Result<(), VendError> {
        if let Some(c) = self.changer() {
            c.accept_coins(accept)
                .await
                .map_err(|e| unavailable("coin changer", &e))?;
        }
        if let Some(v) = self.validator() {
            v.accept_bills(accept)
                .await
                .map_err(|e| unavailable("bill validator", &e))?;
        }
        Ok(())
    }

    /// Poll the changer and the validator once and record what they report: coins
    /// and notes as credit, the note in escrow, faults as alerts. A press of the
    /// coin return lever pays the credit back (unless a vend is running). Returns the
    /// credit after.
    pub async fn poll_cash(&self) -> Result<i64, VendError> {
        let coins = match self.changer() {
            Some(c) => c
                .poll()
                .await
                .map_err(|e| unavailable("coin changer", &e))?,
            None => Vec::new(),
        };
        let notes = match self.validator() {
            Some(v) => v
                .poll()
                .await
                .map_err(|e| unavailable("bill validator", &e))?,
            None => Vec::new(),
        };
        let (credit, wants_return) = self
            .store()
            .write(move |tx| apply(tx, &coins, &notes))
            .await??;
        if wants_return && let Ok(_machine) = self.machine.try_lock() {
            self.settle_cash().await?;
        }
        Ok(credit)
    }

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
            let amount = s.credit;
            let paid = if amount > 0 && self.changer().is_some() {
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

    /// Raise or clear a device alert in a write of its own.
    pub(crate) async fn device_alert(
        &self,
        alert: &'static str,
        subject: &'static str,
        active: bool,
        message: String,
    ) -> Result<(), VendError> {
        self.store()
            .write(move |tx| alerts::set(tx, alert, subject, active, || message))
            .await??;
        Ok(())
    }

    /// Check the tubes and the stacker against the slots' prices: raise or clear
    /// `exact_change` (some accepted coin or note, for some price below it, leaves
    /// change the tubes cannot pay) and `cash_box` (the stacker nearly full, or the
    /// cash box out).
    pub async fn check_cash_levels(&self) -> Result<(), VendError> {
        let mut prices: Vec<i64> = super::slots::all(self.store())?
            .iter()
            .map(|s| s.config.price.minor())
            .collect();
        prices.sort_unstable();
        prices.dedup();
        if let Some(c) = self.changer() {
            let levels = c
                .tubes()
                .await
                .map_err(|e| unavailable("coin changer", &e))?;
            let mut accepted: Vec<i64> = c.coin_types().iter().map(|t| t.value_minor).collect();
            if let Some(v) = self.validator() {
                accepted.extend(v.bill_types().iter().map(|b| b.value_minor));
            }
            let tubes: Vec<Tube> = levels
                .iter()
                .map(|l| Tube {
                    value: l.value_minor,
                    count: l.count,
                })
                .collect();
            let exact = outpost_peripherals::change::exact_change_only(&tubes, &accepted, &prices);
            self.device_alert(
                "exact_change",
                "changer",
                exact,
                if exact {
                    "the tubes cannot make change for every coin or note and price: exact change \
                     only"
                        .into()
                } else {
                    "the tubes make change again".into()
                },
            )
            .await?;
        }
        if let Some(v) = self.validator() {
            let st = v
                .stacker()
                .await
                .map_err(|e| unavailable("bill validator", &e))?;
            let out = self.cash()?.cash_box_out && st.bills > 0;
            let nearly = st.full || st.capacity.is_some_and(|c| st.bills * 10 >= c * 9);
            let bills = st.bills;
            self.device_alert(
                "cash_box",
                "validator",
                out || nearly,
                if out {
                    "the cash box is out of position".into()
                } else if nearly {
                    format!("the cash box is nearly full ({bills} notes)")
                } else {
                    "the cash box has room".into()
                },
            )
            .await?;
            if !out && self.cash()?.cash_box_out {
                // Put back emptied.
                self.store()
                    .write(|tx| {
                        let mut s = state_tx(tx)?;
                        s.cash_box_out = false;
                        put_state(tx, &s);
                        Ok::<(), StoreError>(())
                    })
                    .await??;
            }
        }
        Ok(())
    }
}

/// Record one poll's events in one write. Returns the credit after, and whether
/// the customer asked for the credit back.
fn apply(
    tx: &mut Tx<'_>,
    coins: &[ChangerEvent],
    notes: &[ValidatorEvent],
) -> Result<(i64, bool), StoreError> {
    let mut s = state_tx(tx)?;
    let before = s.clone();
    let mut wants_return = false;
    for e in coins {
        match e.clone() {
            ChangerEvent::Deposited {
                value_minor, route, ..
            } => {
                let kind = match route {
                    CoinRoute::Tube => CashMove::CoinToTube,
                    CoinRoute::CashBox => CashMove::CoinToCashBox,
                    CoinRoute::Returned => continue,
                };
                s.credit += value_minor;
                movement(tx, kind, value_minor, None);
                alerts::set(tx, "changer_fault", "changer", false, || {
                    "the coin changer takes coins again".into()
                })?;
            }
            ChangerEvent::ManualDispense {
                value_minor, count, ..
            } => movement(
                tx,
                CashMove::ManualPaidOut,
                value_minor * i64::from(count),
                None,
            ),
            ChangerEvent::Slugs { .. } => {}
            ChangerEvent::Status { status } => {
                if status == ChangerStatus::EscrowRequest {
                    wants_return = true;
                } else if status.is_fault() {
                    alerts::set(tx, "changer_fault", "changer", true, || {
                        format!("the coin changer reports {status:?}")
                    })?;
                }
            }
        }
    }
    for e in notes {
        match e.clone() {
            ValidatorEvent::Bill {
                bill_type,
                value_minor,
                route,
            } => match route {
                BillRoute::Escrowed => {
                    s.escrow = Some(Note {
                        bill_type,
                        value: value_minor,
                    });
                }
                BillRoute::Stacked => {
                    s.credit += value_minor;
                    s.cash_box_out = false;
                    movement(tx, CashMove::NoteStacked, value_minor, None);
                    alerts::set(tx, "validator_fault", "validator", false, || {
                        "the bill validator takes notes again".into()
                    })?;
                }
                BillRoute::Returned => {
                    if s.escrow.is_some_and(|n| n.bill_type == bill_type) {
                        s.escrow = None;
                    }
                }
                BillRoute::Rejected => {}
            },
            ValidatorEvent::DisabledAttempts { .. } => {}
            ValidatorEvent::Status { status } => match status {
                ValidatorStatus::JustReset => s.escrow = None,
                ValidatorStatus::CashBoxOut => {
                    s.cash_box_out = true;
                    alerts::set(tx, "cash_box", "validator", true, || {
                        "the cash box is out of position".into()
                    })?;
                }
                st if st.is_fault() => {
                    alerts::set(tx, "validator_fault", "validator", true, || {
                        format!("the bill validator reports {st:?}")
                    })?;
                }
                _ => {}
            },
        }
    }
    if wants_return && s.pay_due.is_none() && s.payout.is_none() {
        s.pay_due = Some(PayReason::Return);
    }
    if s != before {
        put_state(tx, &s);
    }
    Ok((s.credit, wants_return))
}
