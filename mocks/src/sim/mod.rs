//! Wire-level device simulators: real drivers are tested against them, and a
//! technician runs them on a bench through `outpost-sim`.
//!
//! - [`payment`]: a nexo-style payment terminal on TCP ([`PaymentSim`]).

pub mod payment;

pub use payment::PaymentSim;
