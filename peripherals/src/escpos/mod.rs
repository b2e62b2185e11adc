//! ESC/POS receipt printers (Epson TM series and the many compatibles) and the cash
//! drawer on their kick port.
//!
//! # Layout
//! - [`encode`](mod@encode): a [`PrintJob`](crate::printer::PrintJob) to ESC/POS bytes.
//! - [`codepage`]: PC858, the code page the encoder selects, and Unicode to it.
//! - [`status`]: `DLE EOT` real-time status answers and their parser
//!   ([`parse_status_bytes`] is the fuzz entry point).
//! - [`decode`]: ESC/POS bytes back to commands, for the simulator and the tests.
//! - [`driver`]: [`EscPosPrinter`] over TCP, serial or any byte stream, and
//!   [`EscPosDrawer`] on its kick port.
//!
//! `docs/escpos.md` lists the command subset and the status bits.

pub mod codepage;
pub mod decode;
pub mod driver;
pub mod encode;
pub mod status;

pub use driver::{
    Connector, DEFAULT_PORT, EscPosConfig, EscPosDrawer, EscPosPrinter, SerialConnector,
    TcpConnector,
};
pub use encode::{EncodeError, EncodeOptions, encode};
pub use status::{RealTimeStatus, StatusError, StatusReader, parse_status_bytes};
