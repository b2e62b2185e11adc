//! Wire-level device simulators: real drivers are tested against them, and a
//! technician runs them on a bench through `outpost-sim`.
//!
//! - [`escpos`]: an ESC/POS receipt printer on TCP.
//! - [`payment`]: a nexo-style payment terminal on TCP ([`PaymentSim`]).
//! - [`scanner`]: a serial barcode scanner ([`ScannerSim`]), over TCP or in memory.
//! - [`scale`]: an MT-SICS scale ([`ScaleSim`]), over TCP or in memory.
//! - [`mdb`]: an MDB cashless reader behind a serial bridge ([`MdbSim`]).

pub mod escpos;
pub mod mdb;
pub mod payment;
pub mod scale;
pub mod scanner;

pub use mdb::MdbSim;
pub use payment::PaymentSim;
pub use scale::ScaleSim;
pub use scanner::ScannerSim;
