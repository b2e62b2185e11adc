//! The bill validator: takes notes, holds one in escrow until the caller stacks it
//! (keeps the money) or returns it to the customer, under the caller's key.

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;
use crate::key::CommandKey;

/// One bill type the validator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BillType {
    /// The validator's number for it (MDB: 0 to 15).
    pub bill_type: u8,
    /// Value of one note, in minor units.
    pub value_minor: i64,
}

/// Where a note went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillRoute {
    /// Into the cash box (stacker): the money is kept.
    Stacked,
    /// Held in escrow: the caller decides, stack or return.
    Escrowed,
    /// Given back to the customer.
    Returned,
    /// Refused: its type is not accepted now.
    Rejected,
}

/// A condition the validator reports on its own (MDB bill validator status codes).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidatorStatus {
    /// A motor failed.
    DefectiveMotor,
    /// A sensor failed.
    SensorProblem,
    /// Busy with a note.
    Busy,
    /// The firmware failed its checksum.
    RomChecksumError,
    /// A note jammed.
    Jammed,
    /// The validator was reset (power-up, or a RESET).
    JustReset,
    /// A note was pulled back out.
    BillRemoved,
    /// The cash box is out of position (removed).
    CashBoxOut,
    /// The validator is disabled.
    Disabled,
    /// ESCROW with no note in escrow.
    InvalidEscrowRequest,
    /// A note was rejected as not genuine.
    BillRejected,
    /// A credited note may have been pulled back out (fishing).
    CreditedBillRemoval,
}

impl ValidatorStatus {
    /// Whether it is a fault a technician must see.
    pub fn is_fault(self) -> bool {
        matches!(
            self,
            ValidatorStatus::DefectiveMotor
                | ValidatorStatus::SensorProblem
                | ValidatorStatus::RomChecksumError
                | ValidatorStatus::Jammed
                | ValidatorStatus::CashBoxOut
        )
    }
}

/// Something the validator reports between commands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ValidatorEvent {
    /// A note moved.
    Bill {
        /// Its type.
        bill_type: u8,
        /// Its value, minor units.
        value_minor: i64,
        /// Where it went.
        route: BillRoute,
    },
    /// Notes put in while the validator was disabled.
    DisabledAttempts {
        /// How many.
        count: u8,
    },
    /// A condition.
    Status {
        /// Which.
        status: ValidatorStatus,
    },
}

/// The cash box's stacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stacker {
    /// Notes in it.
    pub bills: u32,
    /// It is full: no note can be stacked.
    pub full: bool,
    /// Notes it holds, when the validator says.
    pub capacity: Option<u32>,
}

/// Where the note in escrow went under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EscrowOutcome {
    /// Into the cash box.
    Stacked {
        /// Its value, minor units.
        value_minor: i64,
    },
    /// Back to the customer.
    Returned {
        /// Its value, minor units.
        value_minor: i64,
    },
}

/// What the validator knows about an escrow key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum EscrowStatus {
    /// The note under the key went there.
    Done(EscrowOutcome),
    /// Nothing was ever done under the key.
    Unknown,
}

/// A bill validator with escrow.
///
/// Notes are reported by [`poll`](Self::poll): one `Escrowed` note waits for
/// [`escrow`](Self::escrow), which stacks it (the money is kept) or returns it,
/// under a key. A key already used is refused with
/// [`Illegal`](crate::ErrorKind::Illegal); no note in escrow is `Illegal` too; a lost
/// answer is [`OutcomeUnknown`](crate::ErrorKind::OutcomeUnknown), and
/// [`escrow_status`](Self::escrow_status) says where the note went. A note asked to
/// be stacked may still come back `Returned` (the stacker is full): the outcome says.
#[async_trait]
pub trait BillValidator: Device {
    /// The bill types, as the validator reported them at open (empty before).
    fn bill_types(&self) -> Vec<BillType>;

    /// Start (`true`) or stop taking notes, every note held in escrow.
    async fn accept_bills(&self, accept: bool) -> Result<(), DeviceFault>;

    /// What happened since the last poll, oldest first.
    async fn poll(&self) -> Result<Vec<ValidatorEvent>, DeviceFault>;

    /// Stack (`true`) or return the note in escrow, under `key`.
    async fn escrow(&self, key: &CommandKey, stack: bool) -> Result<EscrowOutcome, DeviceFault>;

    /// Where the note under `key` went.
    async fn escrow_status(&self, key: &CommandKey) -> Result<EscrowStatus, DeviceFault>;

    /// The stacker, counted now.
    async fn stacker(&self) -> Result<Stacker, DeviceFault>;
}
