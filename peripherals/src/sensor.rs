//! Environment sensors: temperature, door and case.

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;

/// One reading of every sensor the device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SensorReading {
    /// Thousandths of a degree Celsius, if the device measures temperature.
    pub milli_celsius: Option<i32>,
    /// Whether the door is open, if the device has a door switch.
    pub door_open: Option<bool>,
    /// Whether the case was opened, if the device has a tamper switch.
    pub case_open: Option<bool>,
}

/// An environment sensor. Door and case changes also arrive as data events, which
/// is what the security layer listens to for tampering.
#[async_trait]
pub trait EnvironmentSensor: Device {
    /// Read every sensor now.
    async fn read(&self) -> Result<SensorReading, DeviceFault>;
}
