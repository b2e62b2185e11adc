//! Outpost's device traits: what the server asks of store hardware.
//!
//! Every device family is a small capability trait whose errors carry a
//! [`ErrorKind`] that generic code acts on (the embedded-hal pattern), while each
//! backend keeps its own rich error type.
//!
//! # Layout
//! - [`error`]: the shared [`ErrorKind`] and the [`DeviceError`] trait.
//! - [`payment`]: the payment terminal: authorize, void, refund and the status of a
//!   caller's key, so an in-doubt outcome is resolved by asking, never by charging again.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod error;
pub mod payment;

pub use error::{DeviceError, ErrorKind};
