//! Mock devices for Outpost's tests and for `outpost demo`.
//!
//! # Layout
//! - [`payment`]: [`MockTerminal`], a scripted payment terminal that keeps the truth
//!   about every key (what it charged, declined, reversed) so tests can check that
//!   nothing was charged twice.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod payment;

pub use payment::{MockTerminal, Script};
