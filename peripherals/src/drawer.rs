//! The cash drawer: opened by a pulse, through the printer's kick port or its own.

use std::time::Duration;

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;

/// A cash drawer.
#[async_trait]
pub trait CashDrawer: Device {
    /// Send the opening pulse.
    async fn open_drawer(&self) -> Result<(), DeviceFault>;

    /// Whether the drawer is open now.
    async fn is_open(&self) -> Result<bool, DeviceFault>;

    /// Wait until the drawer is closed, polling its sensor; times out with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) and the
    /// [`DrawerOpen`](crate::fault::Condition::DrawerOpen) condition.
    async fn wait_closed(&self, timeout: Duration) -> Result<(), DeviceFault>;
}
