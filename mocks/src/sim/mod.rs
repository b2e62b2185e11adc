//! Wire-level device simulators: real drivers are tested against them, and
//! `outpost-sim` runs them on a technician's bench.
//!
//! - [`escpos`]: an ESC/POS receipt printer on TCP.

pub mod escpos;
