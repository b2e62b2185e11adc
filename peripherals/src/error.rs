//! The error kinds shared by every device family.

/// What generic code needs to know about a device failure to decide what to do next.
///
/// Backends keep their own detailed errors; this is the part the server acts on.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The device is not reachable (powered off, unplugged, link down).
    Offline,
    /// The device did not answer in time; the command was never sent or was refused
    /// before it could have taken effect.
    Timeout,
    /// The device is busy with another command.
    Busy,
    /// No device of this kind is configured.
    NoHardware,
    /// The command is not allowed in the device's current state.
    Illegal,
    /// The device reported a failure.
    Failure,
    /// The command may or may not have taken effect (response lost, timeout after the
    /// request was sent, power lost mid-command). The caller must ask the device about
    /// the command's key before doing anything that could repeat it.
    OutcomeUnknown,
    /// A device-specific condition (cover open, paper empty, jam, ...).
    DeviceSpecific,
}

/// An error from a device backend.
pub trait DeviceError: std::error::Error {
    /// The kind of failure, for generic handling.
    fn kind(&self) -> ErrorKind;
}
