//! The vend dispenser: drops one product from a slot, under the caller's key.

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;
use crate::key::CommandKey;

/// The definite outcome of a vend.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum VendOutcome {
    /// The drop sensor saw the product fall.
    Dispensed,
    /// Nothing left the machine.
    NotDispensed {
        /// Why, for the technician.
        reason: String,
    },
}

/// What the dispenser knows about a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum VendStatus {
    /// The vend under the key finished.
    Done(VendOutcome),
    /// The vend under the key is still running.
    InProgress,
    /// The dispenser never saw the key: nothing was dispensed.
    Unknown,
}

/// A vend dispenser.
#[async_trait]
pub trait VendDispenser: Device {
    /// Vend one product from `slot` under `key`. A lost answer or power loss is
    /// [`OutcomeUnknown`](crate::ErrorKind::OutcomeUnknown): ask [`Self::vend_status`]
    /// before anything else. A key already used is refused, never vended twice.
    async fn vend(&self, key: &CommandKey, slot: &str) -> Result<VendOutcome, DeviceFault>;

    /// What happened under `key`.
    async fn vend_status(&self, key: &CommandKey) -> Result<VendStatus, DeviceFault>;
}
