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
//!
//! This file holds the persisted model; `cash_poll` takes cash in, `cash_ops` runs
//! the operations, `cash_vend` sells against the credit.

use std::sync::Arc;

use outpost_peripherals::change::{Tube, make_change};
use outpost_peripherals::changer::{CoinChanger, TubeLevel};
use outpost_peripherals::validator::BillValidator;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{VendError, Vending};
use crate::domain::vending::{VendRecord, VendState};
use crate::store::{Store, StoreError, Tx, from_json, to_json};

const STATE: &[u8] = b"v/c";
pub(super) const MOVES: &[u8] = b"v/k/";
pub(super) const FITTED: &[u8] = b"v/f";

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

pub(super) fn id_of(d: &dyn outpost_peripherals::Device) -> CashDeviceId {
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

pub(super) fn movement(tx: &mut Tx<'_>, kind: CashMove, value: i64, vend: Option<Uuid>) {
    let m = CashMovement {
        id: crate::domain::ids::next(),
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
pub(super) fn counts(levels: &[TubeLevel]) -> Vec<u32> {
    let mut v = vec![0u32; 16];
    for l in levels {
        if let Some(c) = v.get_mut(usize::from(l.coin_type)) {
            *c = l.count;
        }
    }
    v
}

/// The tubes as change-making sees them.
pub(super) fn tubes_of(levels: &[TubeLevel]) -> Vec<Tube> {
    levels
        .iter()
        .map(|l| Tube {
            value: l.value_minor,
            count: l.count,
        })
        .collect()
}

/// Whether the tubes can pay `amount` exactly.
pub fn can_pay(levels: &[TubeLevel], amount: i64) -> bool {
    matches!(make_change(amount, &tubes_of(levels)), Ok(Some(_)))
}

/// A device fault as a vend error: the device cannot be used now.
pub(super) fn unavailable(what: &str, e: &outpost_peripherals::DeviceFault) -> VendError {
    VendError::DeviceUnavailable(format!("the {what} cannot be used: {e}"))
}

impl Vending {
    pub(crate) fn changer(&self) -> Option<&Arc<dyn CoinChanger>> {
        self.devices.changer.as_ref()
    }

    pub(crate) fn validator(&self) -> Option<&Arc<dyn BillValidator>> {
        self.devices.validator.as_ref()
    }

    /// Whether the machine takes cash (a coin changer or a bill validator is fitted).
    pub fn takes_cash(&self) -> bool {
        self.devices.changer.is_some() || self.devices.validator.is_some()
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
}
