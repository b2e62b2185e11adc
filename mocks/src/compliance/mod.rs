//! The compliance suites: what every backend of a capability trait must do, real
//! driver against its simulator and mock alike (vector's component specs).
//!
//! - [`payment`]: every [`PaymentTerminal`](outpost_peripherals::payment::PaymentTerminal).

pub mod payment;
