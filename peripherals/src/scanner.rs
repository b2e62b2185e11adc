//! The barcode scanner.

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;

/// The symbology a scanner says it read (from its prefix), when it says.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Symbology {
    /// EAN-13.
    Ean13,
    /// EAN-8.
    Ean8,
    /// UPC-A.
    UpcA,
    /// UPC-E.
    UpcE,
    /// Code 128 (and GS1-128).
    Code128,
    /// Code 39.
    Code39,
    /// Interleaved 2 of 5.
    Itf,
    /// GS1 DataBar.
    DataBar,
    /// QR code.
    Qr,
    /// Data Matrix.
    DataMatrix,
    /// The scanner did not say.
    Unknown,
}

/// One scan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scan {
    /// The decoded data without its symbology identifier: printable ASCII, plus GS
    /// (0x1D) separators in GS1 data and any non-control Unicode in QR and Data Matrix.
    pub data: String,
    /// What it was read from.
    pub symbology: Symbology,
}

/// A barcode scanner. Scans also arrive as data events on the device's bus; input
/// that is not a valid scan is dropped with an error event.
#[async_trait]
pub trait BarcodeScanner: Device {
    /// The next scan. Cancel-safe: a scan is never lost by dropping this future.
    async fn next_scan(&self) -> Result<Scan, DeviceFault>;
}
