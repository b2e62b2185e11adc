//! A payment terminal speaking a nexo-style JSON protocol over TCP (nexo Retailer /
//! Sale-to-POI, as Adyen's Terminal API shapes it). The exact subset is in
//! `docs/nexo.md`.
//!
//! - [`message`]: the messages as serde types and [`message::parse_message`].
//! - [`codec`]: length-prefixed framing, bounded to [`codec::MAX_FRAME`], and
//!   [`codec::parse_frames`], the entry point for fuzzing.
//! - [`driver`]: [`NexoTerminal`], the driver.

pub mod codec;
pub mod driver;
pub mod message;

pub use driver::{NexoConfig, NexoTerminal};
