//! The customer-facing display (pole display or second screen).

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;

/// A customer display.
#[async_trait]
pub trait CustomerDisplay: Device {
    /// Lines and columns it shows.
    fn geometry(&self) -> (u8, u8);

    /// Show these lines, replacing what was shown; longer lines are cut to fit.
    async fn show(&self, lines: &[String]) -> Result<(), DeviceFault>;

    /// Blank the display.
    async fn clear(&self) -> Result<(), DeviceFault>;
}
