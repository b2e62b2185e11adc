//! Vending: the machine's slots and the vend state machine.
//!
//! # Layout
//! - [`slot`]: [`SlotId`] (`B7`), a slot's configuration and count, and the checks of
//!   what HQ or a technician sends.
//! - [`climate`]: the chilled compartment's temperature watch, with hysteresis.
//! - [`dex`]: the DEX/UCS audit file's writer and its CRC.
//! - [`vend`]: [`VendRecord`] and its only moves ([`vend::EDGES`]).

pub mod climate;
pub mod dex;
pub mod slot;
pub mod vend;

pub use slot::{Climate, RawSlot, Slot, SlotConfig, SlotError, SlotId};
pub use vend::{PayMethod, VendRecord, VendState};
