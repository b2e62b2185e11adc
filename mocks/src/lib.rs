//! Mock devices for Outpost's tests and for `outpost demo`.
//!
//! # Layout
//! - [`expect`]: [`Expectations`], the expectation queue every trait-level mock uses.
//! - [`payment`]: [`MockTerminal`], a scripted payment terminal that keeps the truth
//!   about every key (what it charged, declined, reversed) so tests can check that
//!   nothing was charged twice.
//! - [`hq`] (feature `hq`): the mock HQ, a tonic `HqService` server with fault
//!   injection, and HQ's catalog push client; the `outpost-hq` binary wraps it.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod expect;
#[cfg(feature = "hq")]
pub mod hq;
pub mod payment;

pub use expect::Expectations;

pub use payment::{MockTerminal, Script};
