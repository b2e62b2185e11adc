//! The one error type device backends report through the capability traits.
//!
//! Backends keep their rich errors internally (a parse error of a status byte, an
//! I/O error) and turn them into a [`DeviceFault`] at the trait boundary: a
//! [`kind`](crate::DeviceError::kind) generic code acts on, an optional
//! [`Condition`] for device-specific states, and a message for the technician.

use crate::{DeviceError, ErrorKind};

/// A device-specific condition behind [`ErrorKind::DeviceSpecific`] (and sometimes
/// reported alongside another kind, e.g. a jam that took a printer offline).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The printer's cover is open.
    CoverOpen,
    /// The printer is out of paper.
    PaperEmpty,
    /// The paper roll is nearly used up; printing still works.
    PaperNearEnd,
    /// Paper, coin, note or product jam.
    Jam,
    /// More weight on the scale than it can weigh.
    OverWeight,
    /// Less than the scale's minimum weight (or below zero).
    UnderWeight,
    /// The weight is still moving.
    Unstable,
    /// A cash box, coin tube or stacker is full.
    Full,
    /// The drawer is open when the command needs it closed (or the other way round).
    DrawerOpen,
    /// A vend slot is empty.
    SlotEmpty,
    /// The device's own cutter, motor or mechanism reported an error.
    Mechanical,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Condition::CoverOpen => "cover open",
            Condition::PaperEmpty => "paper empty",
            Condition::PaperNearEnd => "paper near end",
            Condition::Jam => "jam",
            Condition::OverWeight => "over weight",
            Condition::UnderWeight => "under weight",
            Condition::Unstable => "weight unstable",
            Condition::Full => "full",
            Condition::DrawerOpen => "drawer open",
            Condition::SlotEmpty => "slot empty",
            Condition::Mechanical => "mechanical error",
        };
        f.write_str(s)
    }
}

/// Why a device command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeviceFault {
    kind: ErrorKind,
    condition: Option<Condition>,
    message: String,
}

impl DeviceFault {
    /// A fault of `kind` with a message for the technician.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            condition: None,
            message: message.into(),
        }
    }

    /// A device-specific fault.
    pub fn condition(condition: Condition, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::DeviceSpecific,
            condition: Some(condition),
            message: message.into(),
        }
    }

    /// The device is unreachable.
    pub fn offline(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Offline, message)
    }

    /// The device did not answer in time and the command did not take effect.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }

    /// The command is not allowed now.
    pub fn illegal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Illegal, message)
    }

    /// The device reported a failure.
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failure, message)
    }

    /// The command may or may not have happened.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::OutcomeUnknown, message)
    }

    /// Attach a device-specific condition to a fault of another kind.
    pub fn with_condition(mut self, condition: Condition) -> Self {
        self.condition = Some(condition);
        self
    }

    /// The device-specific condition, if any.
    pub fn device_condition(&self) -> Option<Condition> {
        self.condition
    }

    /// The message for the technician.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl DeviceError for DeviceFault {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<std::io::Error> for DeviceFault {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match e.kind() {
            Io::TimedOut | Io::WouldBlock => ErrorKind::Timeout,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::AddrNotAvailable
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::NotFound => ErrorKind::Offline,
            Io::PermissionDenied => ErrorKind::NoHardware,
            _ => ErrorKind::Failure,
        };
        Self::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_kinds_generic_code_acts_on() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(DeviceFault::from(refused).kind(), ErrorKind::Offline);
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(DeviceFault::from(timed_out).kind(), ErrorKind::Timeout);
    }

    #[test]
    fn a_condition_is_device_specific() {
        let f = DeviceFault::condition(Condition::PaperEmpty, "no paper");
        assert_eq!(f.kind(), ErrorKind::DeviceSpecific);
        assert_eq!(f.device_condition(), Some(Condition::PaperEmpty));
        let g =
            DeviceFault::offline("cover open took it offline").with_condition(Condition::CoverOpen);
        assert_eq!(g.kind(), ErrorKind::Offline);
        assert_eq!(g.device_condition(), Some(Condition::CoverOpen));
    }
}
