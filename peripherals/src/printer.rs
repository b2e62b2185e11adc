//! The receipt printer.
//!
//! A receipt is a [`PrintJob`]: a list of device-independent operations the driver
//! turns into its command language (ESC/POS for the real driver). Text is Unicode; the
//! driver maps it to the printer's code page and replaces what the page cannot show.

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;

/// Horizontal alignment of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// Flush left.
    #[default]
    Left,
    /// Centred.
    Center,
    /// Flush right.
    Right,
}

/// How a piece of text is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct TextStyle {
    /// Emphasised.
    pub bold: bool,
    /// Underlined.
    pub underline: bool,
    /// Twice as wide.
    pub double_width: bool,
    /// Twice as tall.
    pub double_height: bool,
    /// White on black.
    pub invert: bool,
    /// Alignment of the line.
    pub align: Align,
}

/// 1D barcode symbologies a receipt printer prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarcodeKind {
    /// EAN-13 / GTIN-13 (12 or 13 digits).
    Ean13,
    /// EAN-8.
    Ean8,
    /// UPC-A.
    UpcA,
    /// Code 39.
    Code39,
    /// Code 128.
    Code128,
    /// Interleaved 2 of 5.
    Itf,
}

/// One operation of a print job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PrintOp {
    /// Text, in a style. A `\n` ends a line.
    Text {
        /// The text.
        text: String,
        /// Its style.
        style: TextStyle,
    },
    /// Feed this many blank lines.
    Feed {
        /// Lines.
        lines: u8,
    },
    /// A 1D barcode on its own line.
    Barcode {
        /// Symbology.
        kind: BarcodeKind,
        /// The data to encode.
        data: String,
        /// Print the human-readable digits below it.
        hri: bool,
    },
    /// A QR code on its own line.
    Qr {
        /// The data to encode.
        data: String,
        /// Module size in dots (1 to 16).
        module: u8,
    },
    /// Cut the paper.
    Cut {
        /// Leave a small tab uncut.
        partial: bool,
    },
}

/// A whole receipt or report, printed as one job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrintJob {
    /// The caller's id of the job (e.g. `receipt:<sale id>`), reported in the
    /// output-complete event and used by the reprint queue.
    pub id: String,
    /// The operations, in order.
    pub ops: Vec<PrintOp>,
}

/// How much paper is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperLevel {
    /// Enough.
    Ok,
    /// The near-end sensor tripped.
    NearEnd,
    /// None: printing stops.
    Empty,
}

/// What the printer reports about itself (ESC/POS real-time status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PrinterStatus {
    /// The printer accepts data.
    pub online: bool,
    /// The cover is open.
    pub cover_open: bool,
    /// Paper left.
    pub paper: PaperLevel,
    /// The drawer connected to the printer's kick port is open.
    pub drawer_open: bool,
    /// The printer reports an error (cutter, mechanism, over-temperature).
    pub error: bool,
}

/// A receipt printer.
#[async_trait]
pub trait ReceiptPrinter: Device {
    /// Print a job. Returns once the printer has accepted the whole job and reports it
    /// can print (an output-complete event follows). A printer out of paper or with
    /// its cover open refuses with that condition; a job cut short by a dropped link
    /// is an error, and the caller reprints the whole job.
    async fn print(&self, job: &PrintJob) -> Result<(), DeviceFault>;

    /// Ask the printer its status now.
    async fn status(&self) -> Result<PrinterStatus, DeviceFault>;
}
