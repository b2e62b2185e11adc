//! Outpost's unified peripheral layer: every store device behind one family of small
//! capability traits.
//!
//! Every device embeds a [`DeviceCore`] (identity, UnifiedPOS lifecycle of open,
//! claim, enable, release; health; statistics; a numbered, bounded event stream) and
//! implements [`Device`] plus the capability trait of its kind. Every error carries an
//! [`ErrorKind`] that generic code acts on (the embedded-hal pattern), including
//! [`ErrorKind::OutcomeUnknown`] for a command that may or may not have happened.
//! Every command that moves money or goods takes the caller's key, so its outcome
//! can be asked about later instead of repeating it.
//!
//! # Layout
//! - [`error`]: [`ErrorKind`] and the [`DeviceError`] trait.
//! - [`fault`]: [`DeviceFault`], the error of the capability traits, and
//!   [`Condition`] for device-specific states.
//! - [`device`]: [`Device`], [`DeviceCore`], kinds, states, health and statistics.
//! - [`event`]: [`DeviceEvent`]s and the per-device [`EventBus`].
//! - [`key`]: [`CommandKey`], the caller's key for vends and deposits.
//! - [`escpos`] (feature `escpos`): the ESC/POS receipt printer driver and its drawer.
//! - Capability traits, one module each: [`printer`], [`drawer`], [`scanner`],
//!   [`scale`], [`display`], [`payment`], [`cash`], [`changer`], [`validator`],
//!   [`vend`], [`sensor`].
//! - [`change`]: paying an amount with the fewest coins the tubes hold (pure).
//! - Drivers, one module each behind a cargo feature: `nexo` (feature `nexo`), the
//!   nexo-style payment terminal over TCP; `scanner_serial` (feature
//!   `scanner-serial`), line-framed scanners with AIM symbology identifiers; `sics`
//!   (feature `scale-serial`), Mettler-Toledo MT-SICS scales; `mdb` (feature `mdb`),
//!   MDB cashless readers through a serial MDB bridge; `spiral` (feature `spiral`),
//!   spiral-motor vending boards speaking OSB/1 (described in the module and in
//!   `docs/vending.md`); `sensor_sysfs` (feature `sensor-sysfs`), temperature probes
//!   and door switches the kernel drives (1-Wire, hwmon, GPIO). `docs/devices-serial.md`
//!   describes the scanner, scale and MDB protocols.
//! - `transport` (any driver feature): TCP, serial and in-memory byte streams, and
//!   the bounded line framer the line-based protocols share.
//! - `link` (any driver feature, private): the one connection a request-then-reply
//!   driver (ESC/POS, MT-SICS, MDB) keeps to its device: connect and reconnect,
//!   bounded reads and writes, and the dirty mark that keeps a late answer from
//!   being read as the next one. The scanner opens its stream through it too.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cash;
pub mod change;
pub mod changer;
pub mod device;
pub mod display;
pub mod drawer;
pub mod error;
#[cfg(feature = "escpos")]
pub mod escpos;
pub mod event;
pub mod fault;
pub mod key;
#[cfg(feature = "transport")]
mod link;
#[cfg(feature = "mdb")]
pub mod mdb;
#[cfg(feature = "nexo")]
pub mod nexo;
pub mod payment;
pub mod printer;
pub mod scale;
pub mod scanner;
#[cfg(feature = "scanner-serial")]
pub mod scanner_serial;
pub mod sensor;
#[cfg(feature = "sensor-sysfs")]
pub mod sensor_sysfs;
#[cfg(feature = "scale-serial")]
pub mod sics;
#[cfg(feature = "spiral")]
pub mod spiral;
#[cfg(feature = "transport")]
pub mod transport;
pub mod validator;
pub mod vend;

pub use device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState, Statistics,
};
pub use error::{DeviceError, ErrorKind};
pub use event::{DataEvent, DeviceEvent, EventBody, EventBus};
pub use fault::{Condition, DeviceFault};
pub use key::CommandKey;
