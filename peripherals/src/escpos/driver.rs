//! The ESC/POS printer driver and the cash drawer on its kick port.
//!
//! # Concurrency: a tokio `Mutex` around the link, not an owner task
//!
//! Every exchange with the printer is strictly request then answer, started by a
//! caller: with automatic status back left off, the printer never speaks unasked, so
//! an owner task would have nothing to do between commands but wait on its channel.
//! A `tokio::sync::Mutex` held for one whole exchange (status, job, status) gives the
//! same one-at-a-time order, FIFO fairness between the printer and the drawer that
//! share the link, and no extra task to supervise. It is held across awaits, which is
//! what a tokio mutex is for; no std lock is held across an await.
//!
//! Cancel safety: a caller dropped mid-exchange would leave half a job or an unread
//! answer on the link. Every exchange marks the link dirty before its first byte and
//! clean after its last; whoever next takes the lock finds it dirty and drops the
//! connection instead of reading someone else's answer. So every public async fn
//! here is cancel-safe in the sense that cancelling it never corrupts a later
//! command, but a cancelled print may have printed part of its job.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::drawer::CashDrawer;
use crate::event::EventBody;
use crate::fault::{Condition, DeviceFault};
use crate::link::{Failure, Link, io_kind};
use crate::printer::{PaperLevel, PrintJob, PrintOp, PrinterStatus, ReceiptPrinter, TextStyle};

use super::encode::{self, DRAWER_KICK, EncodeOptions};
use super::status::{QUERIES, RealTimeStatus, StatusError, StatusReader};

/// The raw TCP port of network receipt printers.
pub const DEFAULT_PORT: u16 = 9100;

pub use crate::transport::{Connector, SerialConnector, Stream, TcpConnector};

/// Settings of one printer.
#[derive(Debug, Clone)]
pub struct EscPosConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Bound on every read and every write.
    pub io_timeout: Duration,
    /// How often `wait_closed` asks the drawer sensor.
    pub drawer_poll: Duration,
    /// Whether drawer pin 3 high means open (true for most drawers).
    pub drawer_open_when_high: bool,
    /// Encoder knobs.
    pub encode: EncodeOptions,
}

impl Default for EscPosConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(2),
            drawer_poll: Duration::from_millis(200),
            drawer_open_when_high: true,
            encode: EncodeOptions::default(),
        }
    }
}

/// Why an exchange with the printer failed; turned into a [`DeviceFault`] at the
/// trait boundary.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("printer link is down; open the device again")]
    NotConnected,
    #[error("printer did not answer within {0:?} while {1}")]
    Timeout(Duration, &'static str),
    #[error("printer closed the connection while {0}")]
    Eof(&'static str),
    #[error("I/O error while {1}: {0}")]
    Io(#[source] std::io::Error, &'static str),
    #[error("bad status answer: {0}")]
    Status(#[from] StatusError),
}

impl LinkError {
    /// A link failure while `doing`, after waiting `t` at most.
    fn at(f: Failure, t: Duration, doing: &'static str) -> Self {
        match f {
            Failure::NotConnected => LinkError::NotConnected,
            Failure::Timeout => LinkError::Timeout(t, doing),
            Failure::Eof => LinkError::Eof(doing),
            Failure::Io(e) => LinkError::Io(e, doing),
        }
    }

    fn fault(&self) -> DeviceFault {
        let msg = self.to_string();
        match self {
            LinkError::NotConnected | LinkError::Eof(_) => DeviceFault::offline(msg),
            LinkError::Timeout(..) => DeviceFault::timeout(msg),
            LinkError::Io(e, _) => DeviceFault::new(io_kind(e), msg),
            LinkError::Status(_) => DeviceFault::failure(msg),
        }
    }
}

/// What the printer and its drawers share: one link, one set of settings.
#[derive(Debug)]
struct Shared {
    config: EscPosConfig,
    /// A dirty link is never used again: the status bytes of a late answer cannot be
    /// told apart from the answer to the next query, so it is dropped instead.
    link: Mutex<Link>,
    printer: DeviceCore,
    /// Drawers on this printer's kick port; told when the link goes down. A std
    /// mutex: held only to push or iterate, never across an await.
    drawers: StdMutex<Vec<Arc<DeviceCore>>>,
}

/// An exclusive hold on the link for one exchange.
struct Exchange<'a> {
    shared: &'a Shared,
    link: MutexGuard<'a, Link>,
}

impl Shared {
    /// Take the link for an exchange; a dirty link is dropped first.
    async fn exchange(&self) -> Result<Exchange<'_>, LinkError> {
        let mut link = self.link.lock().await;
        if link.is_dirty() {
            link.disconnect();
            self.link_lost();
        }
        if !link.is_connected() {
            return Err(LinkError::NotConnected);
        }
        Ok(Exchange { shared: self, link })
    }

    /// Connect unless connected and clean. Returns whether a new link was made.
    async fn connect(&self) -> Result<bool, DeviceFault> {
        let mut link = self.link.lock().await;
        if link.is_connected() && !link.is_dirty() {
            return Ok(false);
        }
        link.disconnect();
        link.connect().await?;
        Ok(true)
    }

    /// Drop the link (by us).
    async fn disconnect(&self) {
        self.link.lock().await.disconnect();
    }

    /// The link failed: every device on it is closed and offline.
    fn link_lost(&self) {
        tracing::warn!(device = %self.printer.id(), "Printer link lost.");
        self.printer.mark_closed(PowerState::Offline);
        for d in self.drawer_cores() {
            d.mark_closed(PowerState::Offline);
        }
    }

    fn drawer_cores(&self) -> Vec<Arc<DeviceCore>> {
        self.drawers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The refusal a printer in this status gives a job, if it cannot print.
    fn refusal(&self, status: &PrinterStatus) -> Option<DeviceFault> {
        if status.cover_open {
            Some(DeviceFault::condition(
                Condition::CoverOpen,
                "printer cover is open",
            ))
        } else if status.paper == PaperLevel::Empty {
            Some(DeviceFault::condition(
                Condition::PaperEmpty,
                "printer is out of paper",
            ))
        } else if status.error {
            Some(
                DeviceFault::failure("printer reports an error (cutter or mechanism)")
                    .with_condition(Condition::Mechanical),
            )
        } else if !status.online {
            Some(DeviceFault::offline("printer reports it is offline"))
        } else {
            None
        }
    }

    /// Record what a status says about the printer's state.
    fn note_status(&self, status: &PrinterStatus) {
        if self.printer.state() == DeviceState::Closed {
            return;
        }
        if self.refusal(status).is_some() {
            self.printer.set_state(DeviceState::Error);
        } else if self.printer.state() == DeviceState::Error {
            self.printer.set_state(DeviceState::Idle);
        }
    }
}

impl Exchange<'_> {
    /// A step failed: the link is dropped and every device on it is offline.
    fn fail(&mut self, e: LinkError) -> LinkError {
        self.link.disconnect();
        self.shared.link_lost();
        e
    }

    /// A link failure while `doing`: fails the link unless there was none.
    fn failed(&mut self, f: Failure, doing: &'static str) -> LinkError {
        match f {
            Failure::NotConnected => LinkError::NotConnected,
            f => self.fail(LinkError::at(f, self.shared.config.io_timeout, doing)),
        }
    }

    async fn write(&mut self, bytes: &[u8], doing: &'static str) -> Result<(), LinkError> {
        let t = self.shared.config.io_timeout;
        let shared = self.shared;
        let link = &mut *self.link;
        if link.begin().is_err() {
            return Err(LinkError::NotConnected);
        }
        let sent = async {
            // Bounded per chunk, so a slow serial link may take longer than one
            // timeout for a whole job but never stalls longer than one in a row.
            for chunk in bytes.chunks(4096) {
                link.send(chunk, t).await?;
                shared.printer.count("bytes_sent", chunk.len() as u64);
            }
            link.flush(t).await
        }
        .await;
        sent.map_err(|f| self.failed(f, doing))
    }

    /// `DLE EOT 1, 2, 4` and their three answers.
    async fn status(&mut self) -> Result<RealTimeStatus, LinkError> {
        let mut q = Vec::with_capacity(9);
        for n in QUERIES {
            q.extend_from_slice(&encode::status_query(n));
        }
        self.write(&q, "asking for status").await?;
        let mut reader = StatusReader::new();
        let mut buf = [0u8; 64];
        // One deadline for the whole answer: split bytes cannot stretch it.
        let deadline = Instant::now() + self.shared.config.io_timeout;
        loop {
            let n = match self.link.read(&mut buf, deadline).await {
                Ok(n) => n,
                Err(f) => return Err(self.failed(f, "reading status")),
            };
            match reader.feed(&buf[..n]) {
                Ok(Some((status, used))) => {
                    if used < n {
                        // More than three answers: something else is talking. The
                        // link is out of step, so the next exchange starts afresh.
                        return Err(self.fail(LinkError::Status(StatusError::Noise {
                            skipped: n - used,
                            first: buf[used],
                        })));
                    }
                    self.link.end();
                    return Ok(status);
                }
                Ok(None) => {}
                Err(e) => return Err(self.fail(LinkError::Status(e))),
            }
        }
    }

    async fn printer_status(&mut self) -> Result<PrinterStatus, LinkError> {
        let raw = self.status().await?;
        let st = raw.to_printer_status(self.shared.config.drawer_open_when_high);
        self.shared.note_status(&st);
        Ok(st)
    }

    /// Status check, the job, and a status check after it: the second answer proves
    /// the whole job crossed the link and says whether the paper ran out on the way
    /// (as far as the printer has got: it answers on receipt, maybe before it has
    /// printed all it buffered).
    async fn print(&mut self, bytes: &[u8]) -> Result<(), DeviceFault> {
        let before = self.printer_status().await.map_err(|e| e.fault())?;
        if let Some(refusal) = self.shared.refusal(&before) {
            return Err(refusal);
        }
        self.write(bytes, "sending the print job")
            .await
            .map_err(|e| reword(&e.fault(), "print job cut short, reprint it"))?;
        let after = self
            .printer_status()
            .await
            .map_err(|e| reword(&e.fault(), "print job sent but not confirmed, reprint it"))?;
        if let Some(f) = self.shared.refusal(&after) {
            return Err(reword(
                &f,
                "while printing; the receipt is incomplete, reprint it",
            ));
        }
        Ok(())
    }
}

/// Puts a printer that is still `Busy` back to `Idle` when dropped.
struct BusyGuard<'a>(&'a DeviceCore);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        if self.0.state() == DeviceState::Busy {
            self.0.set_state(DeviceState::Idle);
        }
    }
}

/// The same fault with more said about it.
fn reword(f: &DeviceFault, context: &str) -> DeviceFault {
    let g = DeviceFault::new(crate::DeviceError::kind(f), format!("{f}: {context}"));
    match f.device_condition() {
        Some(c) => g.with_condition(c),
        None => g,
    }
}

/// An ESC/POS receipt printer over TCP, serial or any byte stream.
///
/// Clones share the printer. Counters: `receipts_printed`, `cuts`, `bytes_sent`,
/// `test_pages`.
#[derive(Debug, Clone)]
pub struct EscPosPrinter {
    shared: Arc<Shared>,
}

impl EscPosPrinter {
    /// A network printer at `address` (`host` means port 9100).
    pub fn tcp(id: &str, address: &str, config: EscPosConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, DEFAULT_PORT)),
            config,
        )
    }

    /// A serial printer on `path` at `baud`.
    pub fn serial(id: &str, path: &str, baud: u32, config: EscPosConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A printer over any transport.
    pub fn with_connector(id: &str, connector: Arc<dyn Connector>, config: EscPosConfig) -> Self {
        let info = DeviceInfo::new(
            id,
            DeviceKind::ReceiptPrinter,
            "escpos",
            connector.describe(),
        );
        Self {
            shared: Arc::new(Shared {
                link: Mutex::new(Link::new(connector, config.connect_timeout)),
                config,
                printer: DeviceCore::new(info),
                drawers: StdMutex::new(Vec::new()),
            }),
        }
    }

    /// The cash drawer on this printer's kick port, sharing its link.
    pub fn drawer(&self, id: &str) -> EscPosDrawer {
        let info = DeviceInfo::new(
            id,
            DeviceKind::CashDrawer,
            "escpos",
            format!("kick port of {}", self.shared.printer.id()),
        );
        let core = Arc::new(DeviceCore::new(info));
        self.shared
            .drawers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&core));
        EscPosDrawer {
            shared: Arc::clone(&self.shared),
            core,
        }
    }

    async fn print_job(&self, job: &PrintJob) -> Result<(), DeviceFault> {
        let core = &self.shared.printer;
        core.ensure_ready()?;
        let bytes = encode::encode(job, &self.shared.config.encode)
            .map_err(|e| DeviceFault::illegal(format!("job {}: {e}", job.id)))?;
        let mut ex = self.shared.exchange().await.map_err(|e| e.fault())?;
        core.set_state(DeviceState::Busy);
        // Leaves `Busy` however the job ends, a cancelled future included.
        let busy = BusyGuard(core);
        let result = ex.print(&bytes).await;
        drop(ex);
        drop(busy);
        result?;
        let cuts = job
            .ops
            .iter()
            .filter(|op| matches!(op, PrintOp::Cut { .. }))
            .count();
        core.count("receipts_printed", 1);
        core.count("cuts", cuts as u64);
        core.events().publish(EventBody::OutputComplete {
            job: job.id.clone(),
        });
        Ok(())
    }

    async fn health(&self, level: HealthLevel) -> HealthReport {
        let status = match self.shared.exchange().await {
            Ok(mut ex) => ex.printer_status().await.map_err(|e| e.fault()),
            Err(e) => Err(e.fault()),
        };
        let status = match status {
            Ok(s) => s,
            Err(f) => return HealthReport::now(Health::Failed, f.to_string()),
        };
        if let Some(f) = self.shared.refusal(&status) {
            return HealthReport::now(Health::Failed, f.to_string());
        }
        let (health, detail) = if status.paper == PaperLevel::NearEnd {
            (Health::Degraded, "printer answers; paper near end")
        } else {
            (Health::Ok, "printer answers; paper, cover and mechanism ok")
        };
        if level == HealthLevel::External {
            let page = test_page(&self.shared.printer.id());
            let sent = match encode::encode(&page, &self.shared.config.encode) {
                Ok(bytes) => match self.shared.exchange().await {
                    Ok(mut ex) => ex.print(&bytes).await,
                    Err(e) => Err(e.fault()),
                },
                Err(e) => Err(DeviceFault::failure(e.to_string())),
            };
            if let Err(f) = sent {
                return HealthReport::now(Health::Failed, format!("test page failed: {f}"));
            }
            self.shared.printer.count("test_pages", 1);
            return HealthReport::now(health, format!("{detail}; test page printed"));
        }
        HealthReport::now(health, detail)
    }
}

fn test_page(id: &str) -> PrintJob {
    let text = |t: String| PrintOp::Text {
        text: t,
        style: TextStyle::default(),
    };
    PrintJob {
        id: format!("health-check:{id}"),
        ops: vec![
            PrintOp::Text {
                text: "OUTPOST TEST PAGE\n".into(),
                style: TextStyle {
                    bold: true,
                    ..TextStyle::default()
                },
            },
            text(format!("Printer {id}\n")),
            text("Code page: àéîõü ÄÖÜ ß €\n".into()),
            PrintOp::Cut { partial: true },
        ],
    }
}

#[async_trait]
impl Device for EscPosPrinter {
    fn core(&self) -> &DeviceCore {
        &self.shared.printer
    }

    /// Connects (or reconnects after a failure) and asks for status, so an open
    /// printer is one that answers. Cancel-safe.
    async fn open(&self) -> Result<(), DeviceFault> {
        let fresh = self.shared.connect().await?;
        let status = match self.shared.exchange().await {
            Ok(mut ex) => ex.printer_status().await.map_err(|e| e.fault())?,
            Err(e) => return Err(e.fault()),
        };
        // Marked open only once it answered, so a printer that does not answer
        // never looks open.
        if fresh || self.shared.printer.state() == DeviceState::Closed {
            self.shared.printer.mark_opened();
        }
        self.shared.note_status(&status);
        Ok(())
    }

    async fn close(&self) {
        self.shared.disconnect().await;
        self.shared.printer.mark_closed(PowerState::Unknown);
        for d in self.shared.drawer_cores() {
            d.mark_closed(PowerState::Unknown);
        }
    }

    async fn check_health(&self, level: HealthLevel) -> HealthReport {
        let report = self.health(level).await;
        self.shared.printer.set_health(report.clone());
        report
    }
}

#[async_trait]
impl ReceiptPrinter for EscPosPrinter {
    async fn print(&self, job: &PrintJob) -> Result<(), DeviceFault> {
        let result = self.print_job(job).await;
        self.shared.printer.record(&result);
        result
    }

    async fn status(&self) -> Result<PrinterStatus, DeviceFault> {
        let result = async {
            self.shared.printer.ensure_ready()?;
            let mut ex = self.shared.exchange().await.map_err(|e| e.fault())?;
            ex.printer_status().await.map_err(|e| e.fault())
        }
        .await;
        self.shared.printer.record(&result);
        result
    }
}

/// A cash drawer opened by the printer's kick pulse (`ESC p`), its sensor read from
/// the printer's status (`DLE EOT 1`, bit 2). Shares the printer's link: opening it
/// connects the link if the printer has not. Counter: `kicks`.
#[derive(Debug, Clone)]
pub struct EscPosDrawer {
    shared: Arc<Shared>,
    core: Arc<DeviceCore>,
}

impl EscPosDrawer {
    async fn sensor(&self) -> Result<bool, DeviceFault> {
        self.core.ensure_ready()?;
        let mut ex = self.shared.exchange().await.map_err(|e| e.fault())?;
        let st = ex.printer_status().await.map_err(|e| e.fault())?;
        Ok(st.drawer_open)
    }
}

#[async_trait]
impl Device for EscPosDrawer {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        // Reconnects the shared link if it is down. The printer stays closed until it
        // is opened itself, which then finds the link up.
        self.shared.connect().await?;
        let mut ex = self.shared.exchange().await.map_err(|e| e.fault())?;
        ex.printer_status().await.map_err(|e| e.fault())?;
        drop(ex);
        if self.core.state() == DeviceState::Closed {
            self.core.mark_opened();
        }
        Ok(())
    }

    async fn close(&self) {
        self.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        // A drawer's only external check would open it: not something to do unasked.
        let report = match self.shared.exchange().await {
            Ok(mut ex) => match ex.status().await {
                Ok(_) => HealthReport::now(Health::Ok, "drawer sensor readable"),
                Err(e) => HealthReport::now(Health::Failed, e.to_string()),
            },
            Err(e) => HealthReport::now(Health::Failed, e.to_string()),
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl CashDrawer for EscPosDrawer {
    async fn open_drawer(&self) -> Result<(), DeviceFault> {
        let result = async {
            self.core.ensure_ready()?;
            let mut ex = self.shared.exchange().await.map_err(|e| e.fault())?;
            ex.write(&DRAWER_KICK, "sending the drawer kick")
                .await
                .map_err(|e| e.fault())?;
            // The status answer proves the kick arrived (the printer handles its
            // input in order) and leaves the link clean.
            ex.status().await.map_err(|e| e.fault())?;
            self.core.count("kicks", 1);
            Ok(())
        }
        .await;
        self.core.record(&result);
        result
    }

    async fn is_open(&self) -> Result<bool, DeviceFault> {
        let result = self.sensor().await;
        self.core.record(&result);
        result
    }

    /// Polls every `drawer_poll`; bounded by `limit`. Cancel-safe.
    async fn wait_closed(&self, limit: Duration) -> Result<(), DeviceFault> {
        let deadline = Instant::now() + limit;
        let result = loop {
            match self.sensor().await {
                Ok(false) => break Ok(()),
                Ok(true) => {}
                Err(f) => break Err(f),
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(
                    DeviceFault::timeout(format!("drawer still open after {limit:?}"))
                        .with_condition(Condition::DrawerOpen),
                );
            }
            tokio::time::sleep(self.shared.config.drawer_poll.min(deadline - now)).await;
        };
        self.core.record(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Debug)]
    struct Duplex(StdMutex<Option<tokio::io::DuplexStream>>);

    #[async_trait]
    impl Connector for Duplex {
        async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
            match self.0.lock().unwrap().take() {
                Some(s) => Ok(Box::new(s)),
                None => Err(std::io::ErrorKind::ConnectionRefused.into()),
            }
        }
        fn describe(&self) -> String {
            "duplex".into()
        }
    }

    #[tokio::test]
    async fn any_byte_stream_works_and_noise_before_the_answer_is_skipped() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let p = EscPosPrinter::with_connector(
            "p",
            Arc::new(Duplex(StdMutex::new(Some(ours)))),
            EscPosConfig::default(),
        );
        let printer = tokio::spawn(async move {
            // Answer the status queries of open(), with noise in front.
            let mut q = [0u8; 9];
            theirs.read_exact(&mut q).await.unwrap();
            assert_eq!(q, [16, 4, 1, 16, 4, 2, 16, 4, 4]);
            theirs.write_all(&[0xFF, 0x00, 0x12]).await.unwrap();
            theirs.write_all(&[0x12, 0x12]).await.unwrap();
            theirs
        });
        p.open().await.unwrap();
        assert_eq!(p.core().state(), DeviceState::Idle);
        let mut theirs = printer.await.unwrap();
        // A printer that closes the link makes the next command fail as offline.
        p.core().claim().unwrap();
        p.core().enable().unwrap();
        let mut q = [0u8; 9];
        let (st, _) = tokio::join!(p.status(), async {
            theirs.read_exact(&mut q).await.unwrap();
            drop(theirs);
        });
        assert_eq!(
            crate::DeviceError::kind(&st.unwrap_err()),
            crate::ErrorKind::Offline
        );
        assert_eq!(p.core().state(), DeviceState::Closed);
        // Reconnecting fails cleanly when the transport cannot be opened again.
        assert!(p.open().await.is_err());
    }

    #[tokio::test]
    async fn a_missing_serial_port_fails_to_open_without_panicking() {
        let p = EscPosPrinter::serial(
            "p",
            "/dev/outpost-no-such-tty",
            19200,
            EscPosConfig::default(),
        );
        let f = p.open().await.unwrap_err();
        assert!(f.message().contains("/dev/outpost-no-such-tty"), "{f}");
        assert_eq!(p.core().state(), DeviceState::Closed);
    }
}
