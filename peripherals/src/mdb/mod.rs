//! MDB (Multi-Drop Bus, NAMA/EVA MDB/ICP 4.x) peripherals through a serial MDB
//! bridge: Outpost is the vending machine controller (VMC). The cashless reader
//! (level 1) is cashless device #1 (address `0x10`), the coin changer (levels 2
//! and 3) is at `0x08`, the bill validator (level 1) at `0x30`. The exact subsets and the bridge's line framing are in
//! `docs/devices-serial.md`.
//!
//! - [`protocol`]: VMC commands, reader responses, the bridge's lines, and their
//!   parsers ([`protocol::parse_bridge_line`], [`protocol::parse_responses`] and
//!   [`protocol::parse_command`] are the fuzz entry points).
//! - [`driver`]: [`MdbCashless`], a [`PaymentTerminal`](crate::payment::PaymentTerminal),
//!   its settings and its opening handshake. Inside it, private: `bridge` (one
//!   command and its reply line over the link, and what the reader's responses say),
//!   `journal` (where the vend under each key stands) and `session` (the authorize,
//!   settle and status flows).
//! - [`coin`]: the coin changer's commands and answers, and their parsers.
//! - [`changer`]: [`MdbChanger`], a [`CoinChanger`](crate::changer::CoinChanger).
//! - [`bill`]: the bill validator's commands and answers, and their parsers.
//! - [`validator`]: [`MdbValidator`], a
//!   [`BillValidator`](crate::validator::BillValidator).
//! - `bus` (private): one block and its reply line over the link, for the devices
//!   whose answers the caller parses (changer, validator).

pub mod bill;
mod bridge;
mod bus;
pub mod changer;
pub mod coin;
pub mod driver;
mod journal;
pub mod protocol;
mod session;
pub mod validator;

pub use changer::{ChangerConfig, MdbChanger};
pub use driver::{MdbCashless, MdbConfig};
pub use validator::{MdbValidator, ValidatorConfig};
