//! MDB (Multi-Drop Bus, NAMA/EVA MDB/ICP 4.x) cashless readers, level 1, through a
//! serial MDB bridge: Outpost is the vending machine controller (VMC), the card
//! reader is cashless device #1 (address `0x10`). The exact subset and the bridge's
//! line framing are in `docs/devices-serial.md`.
//!
//! - [`protocol`]: VMC commands, reader responses, the bridge's lines, and their
//!   parsers ([`protocol::parse_bridge_line`], [`protocol::parse_responses`] and
//!   [`protocol::parse_command`] are the fuzz entry points).
//! - [`driver`]: [`MdbCashless`], a [`PaymentTerminal`](crate::payment::PaymentTerminal),
//!   its settings and its opening handshake. Inside it, private: `bridge` (one
//!   command and its reply line over the link, and what the reader's responses say),
//!   `journal` (where the vend under each key stands) and `session` (the authorize,
//!   settle and status flows).

mod bridge;
pub mod driver;
mod journal;
pub mod protocol;
mod session;

pub use driver::{MdbCashless, MdbConfig};
