//! Wire-level device simulators: real drivers are tested against them, and a
//! technician runs them on a bench through `outpost-sim`.
//!
//! - [`escpos`]: an ESC/POS receipt printer on TCP.
//! - [`payment`]: a nexo-style payment terminal on TCP ([`PaymentSim`]).

pub mod escpos;
pub mod payment;

pub use payment::PaymentSim;
