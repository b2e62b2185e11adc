//! Mock devices for Outpost's tests and for `outpost demo`.
//!
//! # Layout
//! - [`expect`]: [`Expectations`], the expectation queue every trait-level mock uses.
//! - [`payment`]: [`MockTerminal`], a scripted payment terminal that keeps the truth
//!   about every key (what it charged, declined, reversed) so tests can check that
//!   nothing was charged twice.
//! - [`sim`]: wire-level simulators real drivers are tested against
//!   ([`sim::PaymentSim`], a nexo payment terminal on TCP).
//! - [`compliance`]: the suites every backend of a capability trait must pass.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod compliance;
pub mod expect;
pub mod payment;
pub mod sim;

pub use expect::Expectations;

pub use payment::{MockTerminal, Script};
