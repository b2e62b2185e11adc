//! Mock devices for Outpost's tests and for `outpost demo`.
//!
//! # Layout
//! - [`expect`]: [`Expectations`], the expectation queue every trait-level mock uses.
//! - [`payment`]: [`MockTerminal`], a scripted payment terminal that keeps the truth
//!   about every key (what it charged, declined, reversed) so tests can check that
//!   nothing was charged twice.
//! - [`mock`]: trait-level mocks of every other device trait (printer, drawer,
//!   display, scanner, scale, cash acceptor, vend dispenser, sensors), each a
//!   [`mock::Mock`] of its model.
//! - [`sim`]: wire-level simulators real drivers are tested against (the ESC/POS
//!   printer, [`sim::PaymentSim`] a nexo payment terminal, the scanner, the MT-SICS
//!   scale, the MDB reader), each started as a [`sim::Handle`] of its model.
//! - [`compliance`]: the suites every backend of a capability trait must pass.
//! - [`wallet`] (feature `wallet`): a QR payment provider with a wallet page, the
//!   other side of the unit's QR payments.
//! - [`hq`] (feature `hq`): the mock HQ, a tonic `HqService` server with fault
//!   injection, and HQ's catalog push client; the `outpost-hq` binary wraps it.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod compliance;
pub mod expect;
#[cfg(feature = "hq")]
pub mod hq;
pub mod mock;
pub mod payment;
pub mod sim;
#[cfg(feature = "wallet")]
pub mod wallet;

pub use expect::Expectations;

pub use payment::{MockTerminal, Script};
