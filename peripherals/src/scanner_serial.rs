//! Barcode scanners that send each scan as one terminated line (CR, LF or CR LF) over
//! a serial port or a serial-to-IP converter, optionally prefixed with the AIM
//! symbology identifier (`]E0`, `]C1`, `]Q1`, ...). `docs/devices-serial.md` lists
//! the identifiers and the checks.
//!
//! - [`parse_scan`] turns one frame into a [`Scan`] or a [`ScanError`];
//!   [`parse_stream`] frames and parses a whole byte buffer (the fuzz entry point).
//! - [`SerialScanner`] is the driver.
//!
//! # Concurrency: an owner task per link
//!
//! A scanner speaks unasked, so one reader task per connection owns the stream: it
//! frames, checks and delivers scans to a bounded queue and to the event bus, and
//! rejects bad input with an error event without stopping. Callers only ever touch
//! the queue (a std mutex, held to push or pop, never across an await) and wait on a
//! [`Notify`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;
use tokio::time::timeout;

use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, Health, HealthLevel, HealthReport, PowerState,
};
use crate::event::{DataEvent, EventBody};
use crate::fault::DeviceFault;
use crate::scanner::{BarcodeScanner, Scan, Symbology};
use crate::transport::{Connector, LineFramer, SerialConnector, Stream, TcpConnector};

/// The longest scan accepted by default, in bytes (a QR code can carry more; raise
/// [`ScannerConfig::max_frame`] for those).
pub const MAX_FRAME: usize = 512;

/// The TCP port of serial-to-IP converters when the address has none (the raw TCP
/// port of the common Moxa/Lantronix converters).
pub const DEFAULT_PORT: u16 = 4001;

/// Why input from a scanner is not a scan.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A terminator with only an identifier before it.
    #[error("scan has no data")]
    Empty,
    /// More bytes than [`ScannerConfig::max_frame`] before a terminator.
    #[error("scan longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Bytes and then silence or the end of the stream, without a terminator.
    #[error("scan cut short: {len} bytes and no terminator")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Not UTF-8 text.
    #[error("scan is not UTF-8 (bad byte at {at})")]
    NotUtf8 {
        /// Offset of the first bad byte.
        at: usize,
    },
    /// A control character where the symbology allows none.
    #[error("control byte 0x{byte:02X} at {at} in the scan")]
    Control {
        /// Offset in the frame.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// Starts with `]` but is not `]` + letter + modifier.
    #[error("malformed AIM symbology identifier {0:?}")]
    BadIdentifier(String),
    /// No identifier, and the configuration requires one.
    #[error("scan has no AIM symbology identifier and one is required")]
    NoIdentifier,
    /// The data cannot be a barcode of the symbology it claims.
    #[error("{symbology:?} scan {data:?} is invalid: {why}")]
    BadData {
        /// What the identifier claimed.
        symbology: Symbology,
        /// The data.
        data: String,
        /// Which check failed.
        why: &'static str,
    },
}

/// The EAN/UPC check digit rule: weights 3 and 1 from the right, check digit last.
fn gtin_check_ok(digits: &[u8]) -> bool {
    let Some((&check, body)) = digits.split_last() else {
        return false;
    };
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check - b'0')
}

/// What an AIM code character says, and which data it allows.
fn symbology_of(code: u8, modifier: u8) -> Symbology {
    match (code, modifier) {
        (b'E', b'4') => Symbology::Ean8,
        (b'E', _) => Symbology::Ean13,
        (b'A', _) => Symbology::Code39,
        (b'C', _) => Symbology::Code128,
        (b'I', _) => Symbology::Itf,
        (b'e', _) => Symbology::DataBar,
        (b'Q', _) => Symbology::Qr,
        (b'd', _) => Symbology::DataMatrix,
        _ => Symbology::Unknown,
    }
}

/// Check one frame (terminator already removed) and make it a scan.
///
/// `require_identifier` refuses frames without an AIM prefix. Never panics, whatever
/// the bytes.
pub fn parse_scan(frame: &[u8], require_identifier: bool) -> Result<Scan, ScanError> {
    let (symbology, gs_allowed, unicode, body) = if frame.first() == Some(&b']') {
        let ok =
            frame.len() >= 3 && frame[1].is_ascii_alphabetic() && frame[2].is_ascii_alphanumeric();
        if !ok {
            let shown = String::from_utf8_lossy(&frame[..frame.len().min(3)]).into_owned();
            return Err(ScanError::BadIdentifier(shown));
        }
        let (code, modifier) = (frame[1], frame[2]);
        let sym = symbology_of(code, modifier);
        // GS1 variants carry FNC1 as GS (0x1D) between element strings.
        let gs = matches!(
            (code, modifier),
            (b'C', b'1') | (b'e', _) | (b'Q', b'3' | b'4') | (b'd', b'2')
        );
        let unicode = matches!(sym, Symbology::Qr | Symbology::DataMatrix);
        (sym, gs, unicode, &frame[3..])
    } else if require_identifier {
        return Err(ScanError::NoIdentifier);
    } else {
        (Symbology::Unknown, false, false, frame)
    };
    if body.is_empty() {
        return Err(ScanError::Empty);
    }
    let offset = frame.len() - body.len();
    let text = std::str::from_utf8(body).map_err(|e| ScanError::NotUtf8 {
        at: offset + e.valid_up_to(),
    })?;
    for (i, b) in body.iter().enumerate() {
        let control = *b < 0x20 || *b == 0x7F;
        if (control && !(gs_allowed && *b == 0x1D)) || (!unicode && *b >= 0x80) {
            return Err(ScanError::Control {
                at: offset + i,
                byte: *b,
            });
        }
    }
    let bad = |why| ScanError::BadData {
        symbology,
        data: text.to_owned(),
        why,
    };
    let digits = body.iter().all(u8::is_ascii_digit);
    let symbology = match symbology {
        Symbology::Ean13 | Symbology::Ean8 => {
            if !digits {
                return Err(bad("EAN/UPC data must be digits"));
            }
            let (sym, len) = match (symbology, body.len()) {
                (Symbology::Ean8, 8) => (Symbology::Ean8, 8),
                (Symbology::Ean8, _) => return Err(bad("EAN-8 has 8 digits")),
                (_, 12) => (Symbology::UpcA, 12),
                (_, 13) => (Symbology::Ean13, 13),
                // EAN-13 with a 2 or 5 digit add-on (]E3): check the main code.
                (_, 15 | 18) => (Symbology::Ean13, 13),
                _ => return Err(bad("EAN-13 has 13 digits (UPC-A 12)")),
            };
            if !gtin_check_ok(&body[..len]) {
                return Err(bad("check digit does not match"));
            }
            sym
        }
        Symbology::Itf if !digits || body.len() % 2 != 0 => {
            return Err(bad("Interleaved 2 of 5 is an even number of digits"));
        }
        s => s,
    };
    Ok(Scan {
        data: text.to_owned(),
        symbology,
    })
}

/// Frame `bytes` into lines of at most `max` bytes and parse each; a trailing
/// unterminated line is reported as truncated. The fuzz entry point.
pub fn parse_stream(
    bytes: &[u8],
    max: usize,
    require_identifier: bool,
) -> Vec<Result<Scan, ScanError>> {
    let mut framer = LineFramer::new(max);
    let mut out: Vec<_> = framer
        .feed(bytes)
        .into_iter()
        .map(|r| match r {
            Ok(line) => parse_scan(&line, require_identifier),
            Err(o) => Err(ScanError::TooLong { max: o.max }),
        })
        .collect();
    if let Some(rest) = framer.take_partial() {
        out.push(Err(ScanError::Truncated { len: rest.len() }));
    }
    out
}

/// Settings of one scanner.
#[derive(Debug, Clone)]
pub struct ScannerConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Longest frame accepted, in bytes.
    pub max_frame: usize,
    /// Silence after part of a frame that makes it truncated. Scanners send a whole
    /// scan in one burst, so a gap this long means the rest was lost.
    pub frame_timeout: Duration,
    /// Refuse scans without an AIM identifier (turn on when the scanner is set to
    /// send them, so line noise cannot pass as an unknown-symbology scan).
    pub require_identifier: bool,
    /// Scans kept for [`BarcodeScanner::next_scan`]; past it the oldest unread scan
    /// is dropped with an error event.
    pub queue: usize,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            max_frame: MAX_FRAME,
            frame_timeout: Duration::from_millis(300),
            require_identifier: false,
            queue: 64,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    scans: VecDeque<Scan>,
    connected: bool,
    /// Bumped at every connect, so a stale reader task cannot mark a newer link down.
    generation: u64,
}

#[derive(Debug)]
struct Shared {
    connector: Arc<dyn Connector>,
    config: ScannerConfig,
    core: DeviceCore,
    queue: StdMutex<Queue>,
    arrived: Notify,
    reader: StdMutex<Option<tokio::task::JoinHandle<()>>>,
    /// One open at a time (a tokio mutex: held across the connect).
    opening: tokio::sync::Mutex<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.reader).take() {
            h.abort();
        }
    }
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn reject(&self, e: &ScanError) {
        tracing::warn!(device = %self.core.id(), error = %e, "Scanner input rejected.");
        self.core.count("scans_rejected", 1);
        self.core.raise_error(&DeviceFault::failure(format!(
            "scanner input rejected: {e}"
        )));
    }

    fn deliver(&self, scan: Scan) {
        if !self.core.is_enabled() {
            // UnifiedPOS: a disabled scanner delivers nothing.
            self.core.count("scans_discarded", 1);
            return;
        }
        let overflowed = {
            let mut q = lock(&self.queue);
            let full = q.scans.len() >= self.config.queue.max(1);
            if full {
                q.scans.pop_front();
            }
            q.scans.push_back(scan.clone());
            full
        };
        if overflowed {
            self.core.count("scans_overflowed", 1);
            self.core.raise_error(&DeviceFault::failure(
                "scan queue full: the oldest unread scan was dropped",
            ));
        }
        self.core.count("scans", 1);
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Scan(scan),
        });
        self.arrived.notify_waiters();
    }

    fn frame(&self, r: Result<Vec<u8>, crate::transport::Overlong>) {
        let parsed = match r {
            Ok(line) => parse_scan(&line, self.config.require_identifier),
            Err(o) => Err(ScanError::TooLong { max: o.max }),
        };
        match parsed {
            Ok(scan) => self.deliver(scan),
            Err(e) => self.reject(&e),
        }
    }

    fn link_lost(&self, generation: u64, why: &str) {
        {
            let mut q = lock(&self.queue);
            if q.generation != generation || !q.connected {
                return;
            }
            q.connected = false;
        }
        tracing::warn!(device = %self.core.id(), reason = why, "Scanner link lost.");
        self.core
            .raise_error(&DeviceFault::offline(format!("scanner link lost: {why}")));
        self.core.mark_closed(PowerState::Offline);
        self.arrived.notify_waiters();
    }
}

/// The reader task of one connection. Holds the scanner weakly, so dropping the
/// last handle ends it.
async fn read_loop(shared: Weak<Shared>, mut stream: Box<dyn Stream>, generation: u64) {
    let (max, gap) = match shared.upgrade() {
        Some(s) => (s.config.max_frame, s.config.frame_timeout),
        None => return,
    };
    let mut framer = LineFramer::new(max);
    let mut buf = [0u8; 256];
    loop {
        let read = if framer.pending() > 0 {
            timeout(gap, stream.read(&mut buf)).await.ok()
        } else {
            Some(stream.read(&mut buf).await)
        };
        let Some(s) = shared.upgrade() else { return };
        match read {
            None => {
                if let Some(rest) = framer.take_partial() {
                    s.reject(&ScanError::Truncated { len: rest.len() });
                }
            }
            Some(Ok(0)) => {
                if let Some(rest) = framer.take_partial() {
                    s.reject(&ScanError::Truncated { len: rest.len() });
                }
                s.link_lost(generation, "the scanner closed the connection");
                return;
            }
            Some(Ok(n)) => {
                s.core.count("bytes_received", n as u64);
                for r in framer.feed(&buf[..n]) {
                    s.frame(r);
                }
            }
            Some(Err(e)) => {
                s.link_lost(generation, &e.to_string());
                return;
            }
        }
    }
}

/// A line-framed barcode scanner over serial, TCP or any byte stream.
///
/// Clones share the scanner. Counters: `scans`, `scans_rejected`, `scans_discarded`
/// (arrived while disabled), `scans_overflowed`, `bytes_received`.
#[derive(Debug, Clone)]
pub struct SerialScanner {
    shared: Arc<Shared>,
}

impl SerialScanner {
    /// A scanner on serial port `path` at `baud` (9600 is the usual default).
    pub fn serial(id: &str, path: &str, baud: u32, config: ScannerConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A scanner behind a serial-to-IP converter at `address` (`host` means port
    /// [`DEFAULT_PORT`]).
    pub fn tcp(id: &str, address: &str, config: ScannerConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, DEFAULT_PORT)),
            config,
        )
    }

    /// A scanner over any transport.
    pub fn with_connector(id: &str, connector: Arc<dyn Connector>, config: ScannerConfig) -> Self {
        let info = DeviceInfo::new(
            id,
            DeviceKind::BarcodeScanner,
            "scanner-serial",
            connector.describe(),
        );
        Self {
            shared: Arc::new(Shared {
                connector,
                config,
                core: DeviceCore::new(info),
                queue: StdMutex::new(Queue::default()),
                arrived: Notify::new(),
                reader: StdMutex::new(None),
                opening: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn connected(&self) -> bool {
        lock(&self.shared.queue).connected
    }
}

#[async_trait]
impl Device for SerialScanner {
    fn core(&self) -> &DeviceCore {
        &self.shared.core
    }

    /// Connects and starts the reader task, unless connected. Cancel-safe.
    async fn open(&self) -> Result<(), DeviceFault> {
        let _one = self.shared.opening.lock().await;
        if self.connected() {
            return Ok(());
        }
        let limit = self.shared.config.connect_timeout;
        let stream = crate::link::connect(&*self.shared.connector, limit).await?;
        let generation = {
            let mut q = lock(&self.shared.queue);
            q.generation += 1;
            q.connected = true;
            q.generation
        };
        let task = tokio::spawn(read_loop(Arc::downgrade(&self.shared), stream, generation));
        if let Some(old) = lock(&self.shared.reader).replace(task) {
            old.abort();
        }
        self.shared.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        if let Some(h) = lock(&self.shared.reader).take() {
            h.abort();
        }
        {
            let mut q = lock(&self.shared.queue);
            q.connected = false;
            q.scans.clear();
        }
        self.shared.arrived.notify_waiters();
        self.shared.core.mark_closed(PowerState::Unknown);
    }

    /// A scanner has no self-test that needs no person, so both levels check that
    /// the link is up and report what was rejected.
    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let stats = self.shared.core.statistics();
        let rejected = stats.counters.get("scans_rejected").copied().unwrap_or(0);
        let scans = stats.counters.get("scans").copied().unwrap_or(0);
        let report = if self.connected() {
            HealthReport::now(
                Health::Ok,
                format!("scanner link up; {scans} scans, {rejected} rejected inputs"),
            )
        } else {
            HealthReport::now(Health::Failed, "scanner link is down")
        };
        self.shared.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl BarcodeScanner for SerialScanner {
    /// Waits for the next scan; fails as offline when the link goes down with no
    /// scan left. Cancel-safe: a scan is taken from the queue only when returned.
    async fn next_scan(&self) -> Result<Scan, DeviceFault> {
        let result = async {
            self.shared.core.ensure_ready()?;
            loop {
                let arrived = self.shared.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                {
                    let mut q = lock(&self.shared.queue);
                    if let Some(scan) = q.scans.pop_front() {
                        return Ok(scan);
                    }
                    if !q.connected {
                        return Err(DeviceFault::offline("scanner link is down"));
                    }
                }
                arrived.await;
            }
        }
        .await;
        self.shared.core.record(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(frame: &[u8]) -> Scan {
        parse_scan(frame, false).unwrap_or_else(|e| panic!("{frame:?}: {e}"))
    }

    #[test]
    fn aim_identifiers_name_the_symbology() {
        assert_eq!(ok(b"]E04006381333931").symbology, Symbology::Ean13);
        assert_eq!(ok(b"]E04006381333931").data, "4006381333931");
        assert_eq!(ok(b"]E496385074").symbology, Symbology::Ean8);
        assert_eq!(ok(b"]E0036000291452").symbology, Symbology::UpcA);
        assert_eq!(ok(b"]A0CODE-39 X").symbology, Symbology::Code39);
        assert_eq!(ok(b"]C0ABC123").symbology, Symbology::Code128);
        assert_eq!(
            ok(b"]C101095011010209\x1d10ABC").symbology,
            Symbology::Code128
        );
        assert_eq!(
            ok(b"]Q1https://ex.invalid/\xc3\xa9").symbology,
            Symbology::Qr
        );
        assert_eq!(ok(b"]d1DM").symbology, Symbology::DataMatrix);
        assert_eq!(ok(b"]I01234").symbology, Symbology::Itf);
        assert_eq!(ok(b"]Z0anything").symbology, Symbology::Unknown);
        assert_eq!(ok(b"4006381333931").symbology, Symbology::Unknown);
    }

    #[test]
    fn garbage_is_rejected_with_the_reason() {
        let bad = |f: &[u8]| parse_scan(f, false).unwrap_err();
        assert!(matches!(
            bad(b"]E04006381333932"),
            ScanError::BadData { .. }
        ));
        assert!(matches!(bad(b"]E0400638133393"), ScanError::BadData { .. }));
        assert!(matches!(
            bad(b"]E0ABCDEFGHIJKLM"),
            ScanError::BadData { .. }
        ));
        assert!(matches!(bad(b"]E412345678"), ScanError::BadData { .. }));
        assert!(matches!(bad(b"]I0123"), ScanError::BadData { .. }));
        assert!(matches!(bad(b"]E0"), ScanError::Empty));
        assert!(matches!(bad(b"]"), ScanError::BadIdentifier(_)));
        assert!(matches!(bad(b"]1x"), ScanError::BadIdentifier(_)));
        assert!(matches!(bad(b"\xff\xfe"), ScanError::NotUtf8 { at: 0 }));
        assert!(matches!(
            bad(b"]C0ab\x00c"),
            ScanError::Control { at: 5, byte: 0 }
        ));
        assert!(matches!(
            bad(b"]C0a\x1dc"),
            ScanError::Control { byte: 0x1d, .. }
        ));
        assert!(matches!(
            bad(b"caf\xc3\xa9"),
            ScanError::Control { byte: 0xc3, .. }
        ));
        assert_eq!(
            parse_scan(b"123", true).unwrap_err(),
            ScanError::NoIdentifier
        );
    }

    #[test]
    fn streams_report_overlong_and_truncated_frames_and_go_on() {
        let mut input = b"]E04006381333931\r\n".to_vec();
        input.extend(vec![b'x'; 40]);
        input.extend(b"\r\n]A0OK\r\n]C0cut sh");
        let out = parse_stream(&input, 32, false);
        assert_eq!(out.len(), 4);
        assert!(out[0].is_ok());
        assert_eq!(out[1], Err(ScanError::TooLong { max: 32 }));
        assert_eq!(out[2].as_ref().unwrap().data, "OK");
        assert_eq!(out[3], Err(ScanError::Truncated { len: 9 }));
    }

    #[test]
    fn malformed_and_truncated_input_never_panics() {
        // Bounded property loop: every prefix of valid frames, and pseudo-random bytes.
        let good: &[&[u8]] = &[b"]E04006381333931\r\n", b"]C101095011010209\x1d10AB\n"];
        for frame in good {
            for cut in 0..frame.len() {
                let _ = parse_stream(&frame[..cut], 64, false);
                let _ = parse_scan(&frame[..cut], true);
            }
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 48) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push((x >> 24) as u8);
            }
            x = x.wrapping_add(1);
            for r in parse_stream(&bytes, 32, false).into_iter().flatten() {
                assert!(!r.data.is_empty() && r.data.len() <= 32);
            }
        }
    }
}
