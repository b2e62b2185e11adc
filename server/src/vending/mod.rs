//! The vending site: Outpost as the vending machine's controller. It keeps the slots
//! and their counts, and runs each vend as one persisted state machine over the
//! cashless reader and the dispenser (`docs/vending.md`).
//!
//! # Layout
//! - [`slots`]: slots and slot movements in the journal tree; HQ's push, a
//!   technician's edits, refills and counts.
//! - [`cash`]: the customer's credit from coins and notes, the note in escrow, and
//!   the journaled stacking and payout operations.
//! - `cash_poll` (private): polling the changer and validator into the credit, and
//!   the tube and cash box checks; `cash_ops` (private): the journaled stacking and
//!   payout operations and the payouts due; `cash_vend` (private): a vend paid with
//!   the cash credit.
//! - [`flow`]: one vend, from selection to the sale in the journal, writing the vend
//!   record before every device call.
//! - [`recovery`]: finishing every vend a power cut left open, by asking the devices
//!   about its key.
//! - [`alerts`]: the machine's alerts (temperature, door, slot levels, dispense and
//!   payment faults), raised and cleared once through the outbox.
//! - [`demo`]: the vending demo's catalog of snacks and drinks and its filled 6x8
//!   machine.
//! - [`dex`]: the DEX/EVA-DTS audit file from the journal, and its reset.
//! - [`drift`]: every count of a slot against the model, for HQ and the drift report.
//! - [`upkeep`]: the running machine's background tasks: recovery of open vends, and
//!   the sensors' readings into the alerts.
//! - `records` (private): the vend records in the journal tree and the final writes
//!   (the sale with its slot movement, or the failure).

pub mod alerts;
pub mod cash;
mod cash_ops;
mod cash_poll;
mod cash_vend;
pub mod demo;
pub mod dex;
pub mod drift;
pub mod flow;
mod records;
pub mod recovery;
pub mod slots;
pub mod upkeep;

#[cfg(test)]
mod alert_tests;
#[cfg(test)]
mod cash_crash_tests;
#[cfg(test)]
mod cash_tests;
#[cfg(test)]
mod dex_tests;
#[cfg(test)]
mod mixed_crash_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use outpost_peripherals::changer::CoinChanger;
use outpost_peripherals::payment::PaymentTerminal;
use outpost_peripherals::validator::BillValidator;
use outpost_peripherals::vend::VendDispenser;

use crate::domain::pricing::PricingError;
use crate::domain::vending::SlotId;
use crate::domain::vending::vend::IllegalVendMove;
use crate::sales::Sales;
use crate::store::StoreError;

pub use records::{by_request_key, finished, get, open_vends};

/// Why a vend or a slot change was refused or could not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VendError {
    /// The request is not valid (the field says where).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Message for people.
        message: String,
        /// The field at fault.
        field: Option<String>,
    },
    /// The machine has no such slot.
    #[error("no slot {0}")]
    NoSlot(SlotId),
    /// The slot exists but cannot sell now (empty, needs a count, product unknown).
    #[error("slot {slot} cannot sell: {reason}")]
    NotSellable {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
    },
    /// Another vend is running: the machine serves one customer at a time.
    #[error("another vend is in progress")]
    Busy,
    /// The request's idempotency key already started this vend: it is not run again.
    #[error("this Idempotency-Key already started vend {0}")]
    KeyUsed(uuid::Uuid),
    /// The request's idempotency key was used for a different request.
    #[error("this Idempotency-Key was used for a different vend request")]
    KeyReused,
    /// A device this vend needs is not configured or cannot be reached; nothing was
    /// charged.
    #[error("{0}")]
    DeviceUnavailable(String),
    /// A device's answer was lost and it could not be asked yet: the vend stays open
    /// and recovery finishes it by asking the device about its key.
    #[error("the vend's outcome is not known yet; recovery will finish it")]
    OutcomeUnknown,
    /// Pricing refused the product (unknown tax class, inactive product).
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// A bug: a move the vend state machine does not allow. Nothing more was done.
    #[error("internal error: {0}")]
    Internal(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IllegalVendMove> for VendError {
    fn from(e: IllegalVendMove) -> Self {
        VendError::Internal(e.to_string())
    }
}

/// The machine's payment and dispensing devices.
#[derive(Clone, Default)]
pub struct VendDevices {
    /// The MDB cashless reader (or any payment terminal that holds, captures and
    /// voids under a key).
    pub cashless: Option<Arc<dyn PaymentTerminal>>,
    /// The spiral motors with their drop sensor.
    pub dispenser: Option<Arc<dyn VendDispenser>>,
    /// The MDB coin changer: coins in, change out.
    pub changer: Option<Arc<dyn CoinChanger>>,
    /// The MDB bill validator: notes in, through escrow.
    pub validator: Option<Arc<dyn BillValidator>>,
}

/// The caller's key for one vend request: a retry with it finds the vend it started
/// instead of starting another.
#[derive(Debug, Clone)]
pub struct VendRequestKey {
    /// The `Idempotency-Key`.
    pub key: crate::domain::sale::IdempotencyKey,
    /// What the request asked for (a retry must ask the same).
    pub fingerprint: String,
}

/// Idempotency records of vend requests live in this scope.
pub const VEND_SCOPE: &str = "vend";

/// Timing of device calls.
#[derive(Debug, Clone)]
pub struct VendTimeouts {
    /// Bound on waiting for the customer's card and the reader's approval.
    pub authorize: Duration,
    /// Bound on one motor run with its drop check.
    pub dispense: Duration,
    /// Bound on any other device call (status, capture, void).
    pub call: Duration,
}

impl Default for VendTimeouts {
    fn default() -> Self {
        Self {
            authorize: Duration::from_secs(60),
            dispense: Duration::from_secs(20),
            call: Duration::from_secs(5),
        }
    }
}

/// The vending service. Cheap to clone.
#[derive(Clone)]
pub struct Vending {
    pub(crate) sales: Sales,
    pub(crate) devices: VendDevices,
    pub(crate) timeouts: VendTimeouts,
    /// Held for a whole vend: the machine has one delivery bin and one reader session.
    /// A tokio mutex because it is held across device calls.
    pub(crate) machine: Arc<tokio::sync::Mutex<()>>,
    /// When chilled goods are too warm.
    pub(crate) temp_policy: crate::domain::vending::climate::TempPolicy,
}

impl Vending {
    /// A vending service selling through `sales` (its store, currency and taxes).
    pub fn new(sales: Sales, devices: VendDevices, timeouts: VendTimeouts) -> Self {
        if let Err(e) = raise_id_floor(sales.store()) {
            tracing::warn!(error = %e, "Cannot read the newest vending ids: ids made before the clock was set back may sort after new ones");
        }
        Vending {
            sales,
            devices,
            timeouts,
            machine: Arc::new(tokio::sync::Mutex::new(())),
            temp_policy: Default::default(),
        }
    }

    /// Use these temperature thresholds instead of 8 °C for 15 minutes.
    pub fn with_temp_policy(mut self, p: crate::domain::vending::climate::TempPolicy) -> Self {
        self.temp_policy = p;
        self
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<crate::store::Store> {
        self.sales.store()
    }
}

/// Ids of slot and cash movements, and the DEX reset mark, stay below every id made
/// from now on, after a restart with the clock set back too (`domain::ids`).
fn raise_id_floor(store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
    store.raise_id_floor(slots::MOVEMENT)?;
    store.raise_id_floor(cash::MOVES)?;
    if let Some(mark) = dex::reset_mark(store)? {
        crate::domain::ids::at_least(mark);
    }
    Ok(())
}
