//! Real-time status: `DLE EOT n` and the one-byte answers (Epson ESC/POS reference,
//! "DLE EOT").
//!
//! Every answer byte has bit 1 and bit 4 set and bit 0 and bit 7 clear; that fixed
//! pattern is how a byte is told from noise. The driver asks `n` = 1, 2 and 4 in one
//! write and reads the three answers in that order with a [`StatusReader`], which
//! takes them however the link splits them and skips a bounded amount of noise.
//!
//! | n | bit | meaning when set |
//! |---|-----|------------------|
//! | 1 printer | 2 | drawer kick connector pin 3 is high |
//! | 1 printer | 3 | offline |
//! | 2 offline cause | 2 | cover open |
//! | 2 offline cause | 3 | paper being fed by the feed button |
//! | 2 offline cause | 5 | printing stopped at paper end |
//! | 2 offline cause | 6 | an error occurred |
//! | 4 paper | 2, 3 | paper near end |
//! | 4 paper | 5, 6 | paper end |

use crate::printer::{PaperLevel, PrinterStatus};

/// The `n` of each `DLE EOT` the driver sends, in the order it sends them.
pub const QUERIES: [u8; 3] = [1, 2, 4];

/// How many bytes that are not status answers the reader skips before giving up on
/// the printer: a few stray bytes are tolerated, a stream of noise is an error.
pub const MAX_NOISE: usize = 64;

/// Mask of the bits whose values are fixed in every answer.
const FIXED_MASK: u8 = 0b1001_0011;
/// Their values: bits 1 and 4 set, bits 0 and 7 clear.
const FIXED_BITS: u8 = 0b0001_0010;

/// Whether `b` has the fixed bits of a real-time status answer.
pub fn is_status_byte(b: u8) -> bool {
    b & FIXED_MASK == FIXED_BITS
}

/// Why status answers could not be read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// The printer sent more than [`MAX_NOISE`] bytes that are not status answers.
    #[error("printer sent {skipped} bytes that are not status answers (first {first:#04x})")]
    Noise {
        /// Bytes skipped.
        skipped: usize,
        /// The first of them, for the technician.
        first: u8,
    },
    /// The answers stopped before all three arrived.
    #[error("status cut short: {got} of {want} answers")]
    Truncated {
        /// Answers read.
        got: usize,
        /// Answers expected.
        want: usize,
    },
}

/// `DLE EOT 1`: printer status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrinterByte {
    /// Drawer kick connector pin 3 is high.
    pub drawer_pin3_high: bool,
    /// The printer is offline.
    pub offline: bool,
}

/// `DLE EOT 2`: why the printer is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OfflineByte {
    /// The cover is open.
    pub cover_open: bool,
    /// Paper is being fed with the feed button.
    pub feed_button: bool,
    /// Printing stopped at the end of the paper.
    pub paper_end_stop: bool,
    /// An error occurred (cutter, mechanism, head temperature).
    pub error: bool,
}

/// `DLE EOT 4`: the roll paper sensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaperByte {
    /// The near-end sensor sees little paper left.
    pub near_end: bool,
    /// The end sensor sees no paper.
    pub end: bool,
}

impl PrinterByte {
    /// Decode an answer byte (its fixed bits already checked).
    pub fn from_byte(b: u8) -> Self {
        Self {
            drawer_pin3_high: b & 0x04 != 0,
            offline: b & 0x08 != 0,
        }
    }

    /// The byte a printer in this state sends.
    pub fn to_byte(self) -> u8 {
        FIXED_BITS | (u8::from(self.drawer_pin3_high) << 2) | (u8::from(self.offline) << 3)
    }
}

impl OfflineByte {
    /// Decode an answer byte.
    pub fn from_byte(b: u8) -> Self {
        Self {
            cover_open: b & 0x04 != 0,
            feed_button: b & 0x08 != 0,
            paper_end_stop: b & 0x20 != 0,
            error: b & 0x40 != 0,
        }
    }

    /// The byte a printer in this state sends.
    pub fn to_byte(self) -> u8 {
        FIXED_BITS
            | (u8::from(self.cover_open) << 2)
            | (u8::from(self.feed_button) << 3)
            | (u8::from(self.paper_end_stop) << 5)
            | (u8::from(self.error) << 6)
    }
}

impl PaperByte {
    /// Decode an answer byte. Either bit of a sensor pair counts: some printers set
    /// only one of the two.
    pub fn from_byte(b: u8) -> Self {
        Self {
            near_end: b & 0x0C != 0,
            end: b & 0x60 != 0,
        }
    }

    /// The byte a printer in this state sends (both bits of each pair, as Epson's do).
    pub fn to_byte(self) -> u8 {
        FIXED_BITS | if self.near_end { 0x0C } else { 0 } | if self.end { 0x60 } else { 0 }
    }
}

/// The three answers together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RealTimeStatus {
    /// `DLE EOT 1`.
    pub printer: PrinterByte,
    /// `DLE EOT 2`.
    pub offline: OfflineByte,
    /// `DLE EOT 4`.
    pub paper: PaperByte,
}

impl RealTimeStatus {
    /// The device-independent status. Whether pin 3 high means the drawer is open
    /// depends on the drawer's switch, hence `drawer_open_when_high`.
    pub fn to_printer_status(self, drawer_open_when_high: bool) -> PrinterStatus {
        let paper = if self.paper.end || self.offline.paper_end_stop {
            PaperLevel::Empty
        } else if self.paper.near_end {
            PaperLevel::NearEnd
        } else {
            PaperLevel::Ok
        };
        PrinterStatus {
            online: !self.printer.offline,
            cover_open: self.offline.cover_open,
            paper,
            drawer_open: self.printer.drawer_pin3_high == drawer_open_when_high,
            error: self.offline.error,
        }
    }
}

/// Collects the three answers to [`QUERIES`] from reads of any size.
#[derive(Debug, Clone, Default)]
pub struct StatusReader {
    got: [u8; 3],
    count: usize,
    skipped: usize,
    first_noise: Option<u8>,
}

impl StatusReader {
    /// A reader waiting for the three answers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take the bytes of one read. Returns the status once all three answers are in,
    /// and how many bytes of `bytes` it used (bytes after the third answer are left
    /// for the caller, who treats them as noise of the next exchange).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<(RealTimeStatus, usize)>, StatusError> {
        for (i, &b) in bytes.iter().enumerate() {
            if is_status_byte(b) {
                self.got[self.count] = b;
                self.count += 1;
                if self.count == self.got.len() {
                    return Ok(Some((self.status(), i + 1)));
                }
            } else {
                self.first_noise.get_or_insert(b);
                self.skipped += 1;
                if self.skipped > MAX_NOISE {
                    return Err(StatusError::Noise {
                        skipped: self.skipped,
                        first: self.first_noise.unwrap_or(b),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Answers received so far.
    pub fn received(&self) -> usize {
        self.count
    }

    fn status(&self) -> RealTimeStatus {
        RealTimeStatus {
            printer: PrinterByte::from_byte(self.got[0]),
            offline: OfflineByte::from_byte(self.got[1]),
            paper: PaperByte::from_byte(self.got[2]),
        }
    }
}

/// Parse the complete answers to [`QUERIES`] from `bytes`: the entry point for a
/// fuzzer (`cargo fuzz`), and for tests. Never panics; bounded by [`MAX_NOISE`].
pub fn parse_status_bytes(bytes: &[u8]) -> Result<RealTimeStatus, StatusError> {
    let mut reader = StatusReader::new();
    match reader.feed(bytes)? {
        Some((status, _)) => Ok(status),
        None => Err(StatusError::Truncated {
            got: reader.received(),
            want: QUERIES.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: [u8; 3] = [0x16, 0x12, 0x12];

    #[test]
    fn an_idle_printer_with_the_drawer_pin_high() {
        let s = parse_status_bytes(&IDLE).unwrap();
        assert!(s.printer.drawer_pin3_high && !s.printer.offline);
        let p = s.to_printer_status(true);
        assert!(p.online && !p.cover_open && p.drawer_open && !p.error);
        assert_eq!(p.paper, PaperLevel::Ok);
        assert!(!s.to_printer_status(false).drawer_open);
    }

    #[test]
    fn cover_open_and_paper_states_decode_per_the_spec() {
        // Offline (bit 3), cover open (bit 2 of n=2), paper near end (bits 2,3 of n=4).
        let s = parse_status_bytes(&[0x1A, 0x16, 0x1E]).unwrap();
        let p = s.to_printer_status(true);
        assert!(!p.online && p.cover_open);
        assert_eq!(p.paper, PaperLevel::NearEnd);
        // Paper end (bits 5,6 of n=4) and "stopped at paper end" (bit 5 of n=2).
        let s = parse_status_bytes(&[0x1A, 0x32, 0x72]).unwrap();
        assert!(s.offline.paper_end_stop && s.paper.end);
        assert_eq!(s.to_printer_status(true).paper, PaperLevel::Empty);
        // Error bit of n=2.
        assert!(
            parse_status_bytes(&[0x1A, 0x52, 0x12])
                .unwrap()
                .offline
                .error
        );
    }

    #[test]
    fn bytes_encode_back_to_what_they_decode_from() {
        for b in 0..=255u8 {
            if !is_status_byte(b) {
                continue;
            }
            assert_eq!(PrinterByte::from_byte(b).to_byte(), b & 0b0001_1110);
            let o = OfflineByte::from_byte(b);
            assert_eq!(OfflineByte::from_byte(o.to_byte()), o);
            let p = PaperByte::from_byte(b);
            assert_eq!(PaperByte::from_byte(p.to_byte()), p);
        }
    }

    #[test]
    fn answers_split_across_reads_are_joined() {
        let mut r = StatusReader::new();
        assert_eq!(r.feed(&IDLE[..1]).unwrap(), None);
        assert_eq!(r.feed(&[]).unwrap(), None);
        assert_eq!(r.feed(&IDLE[1..2]).unwrap(), None);
        let (s, used) = r.feed(&[IDLE[2], 0x99]).unwrap().unwrap();
        assert_eq!(used, 1);
        assert!(s.printer.drawer_pin3_high);
    }

    #[test]
    fn a_little_noise_is_skipped_and_a_lot_is_an_error() {
        let mut noisy = vec![0xFF, 0x00, 0x41];
        noisy.extend_from_slice(&IDLE);
        assert!(parse_status_bytes(&noisy).is_ok());
        let garbage = vec![0xAA; MAX_NOISE + 1];
        assert_eq!(
            parse_status_bytes(&garbage),
            Err(StatusError::Noise {
                skipped: MAX_NOISE + 1,
                first: 0xAA
            })
        );
    }

    #[test]
    fn truncated_answers_are_an_error() {
        for n in 0..3 {
            assert_eq!(
                parse_status_bytes(&IDLE[..n]),
                Err(StatusError::Truncated { got: n, want: 3 })
            );
        }
    }

    #[test]
    fn every_short_input_parses_or_fails_without_panicking() {
        // A cheap stand-in for the fuzzer: every 1- and 2-byte input, and 3-byte
        // inputs over a spread of values.
        for a in 0..=255u8 {
            let _ = parse_status_bytes(&[a]);
            for b in 0..=255u8 {
                let _ = parse_status_bytes(&[a, b]);
                let _ = parse_status_bytes(&[a, b, a ^ b]);
            }
        }
    }
}
