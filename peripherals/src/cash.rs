//! The coin and note acceptor.

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;
use crate::key::CommandKey;

/// How many of one denomination were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DenominationCount {
    /// Value of one piece, in minor units.
    pub denomination_minor: i64,
    /// Pieces taken.
    pub count: u32,
}

/// What a deposit took in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Deposit {
    /// The key the deposit was begun under.
    pub key: CommandKey,
    /// ISO 4217 code.
    pub currency: String,
    /// Total in minor units.
    pub total_minor: i64,
    /// Per denomination.
    pub counts: Vec<DenominationCount>,
}

/// A coin or note acceptor. A jam or a full cash box refuses with the
/// [`Jam`](crate::fault::Condition::Jam) or [`Full`](crate::fault::Condition::Full)
/// condition; what was taken before stays counted.
#[async_trait]
pub trait CashAcceptor: Device {
    /// Start taking money under `key`.
    async fn begin_deposit(&self, key: &CommandKey) -> Result<(), DeviceFault>;

    /// What the deposit under `key` has taken so far.
    async fn deposit_status(&self, key: &CommandKey) -> Result<Deposit, DeviceFault>;

    /// Stop taking money and return what the deposit under `key` took. Ending a deposit
    /// that already ended returns the same result.
    async fn end_deposit(&self, key: &CommandKey) -> Result<Deposit, DeviceFault>;
}
