//! The scale. Selling needs a *stable* weight; the live weight is only for display.

use std::time::Duration;

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightReading {
    /// Net weight in grams (may be negative just after zeroing).
    pub grams: i64,
    /// The scale says the weight has settled.
    pub stable: bool,
}

/// A scale.
#[async_trait]
pub trait Scale: Device {
    /// A settled weight to sell by, waiting up to `timeout` for it to settle. Refuses
    /// with [`Unstable`](crate::fault::Condition::Unstable) when it does not,
    /// [`OverWeight`](crate::fault::Condition::OverWeight) above capacity and
    /// [`UnderWeight`](crate::fault::Condition::UnderWeight) at or below zero.
    async fn stable_weight(&self, timeout: Duration) -> Result<u32, DeviceFault>;

    /// The weight now, settled or not.
    async fn live_weight(&self) -> Result<WeightReading, DeviceFault>;

    /// Set the current load as zero.
    async fn zero(&self) -> Result<(), DeviceFault>;
}
