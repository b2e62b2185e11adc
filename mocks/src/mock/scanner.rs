//! A trait-level barcode scanner.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::scanner::{BarcodeScanner, Scan};
use outpost_peripherals::scanner_serial::parse_scan;
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};
use tokio::sync::Notify;

use super::{Mock, Model, Step, keep};

/// The scanner behind a [`MockScanner`]: the scans not taken yet.
#[derive(Debug, Default)]
pub struct ScannerModel {
    scans: VecDeque<Scan>,
    /// Wakes a waiting `next_scan` when a scan arrives or the scanner closes. Taken
    /// out of the lock before waiting on it.
    arrived: Arc<Notify>,
}

impl Model for ScannerModel {
    type Step = Step;
    const NAME: &'static str = "MockScanner";
}

/// A barcode scanner fed by the test: [`scan`](Self::scan) is a person scanning,
/// [`feed_frame`](Self::feed_frame) is raw bytes from the wire, checked by the
/// serial driver's own parser. Each `next_scan` takes the next queued [`Step`]
/// (default: ok, which waits for a scan). Clones share it. Counters: `scans`,
/// `scans_rejected`, `scans_discarded`.
pub type MockScanner = Mock<ScannerModel>;

impl MockScanner {
    /// A working scanner, already opened, claimed and enabled.
    pub fn new(id: &str) -> Self {
        Self::build(id, true)
    }

    /// A closed, unclaimed scanner.
    pub fn closed(id: &str) -> Self {
        Self::build(id, false)
    }

    fn build(id: &str, ready: bool) -> Self {
        let model = ScannerModel::default();
        Mock::scripted(id, DeviceKind::BarcodeScanner, ready, Step::Ok, model)
    }

    /// Wake whoever waits in `next_scan`.
    fn wake(&self) {
        let arrived = Arc::clone(&self.state().arrived);
        arrived.notify_waiters();
    }

    /// Someone scans: delivered (and raised as a data event) when enabled, else
    /// discarded, as a real scanner does.
    pub fn scan(&self, scan: Scan) {
        if !self.core.is_enabled() {
            self.core.count("scans_discarded", 1);
            return;
        }
        keep(&mut self.state().scans, scan.clone());
        self.core.count("scans", 1);
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Scan(scan),
        });
        self.wake();
    }

    /// One frame off the wire (terminator removed), checked like the serial driver
    /// checks it: a scan, or rejected with an error event.
    pub fn feed_frame(&self, frame: &[u8]) {
        match parse_scan(frame, false) {
            Ok(scan) => self.scan(scan),
            Err(e) => {
                self.core.count("scans_rejected", 1);
                self.core.raise_error(&DeviceFault::failure(format!(
                    "scanner input rejected: {e}"
                )));
            }
        }
    }
}

#[async_trait]
impl Device for MockScanner {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        self.open_device()
    }

    async fn close(&self) {
        self.state().scans.clear();
        self.close_device();
        self.wake();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        self.checked_health("scanner", |_| {
            HealthReport::now(Health::Ok, "mock scanner link up")
        })
    }
}

#[async_trait]
impl BarcodeScanner for MockScanner {
    async fn next_scan(&self) -> Result<Scan, DeviceFault> {
        let result = async {
            self.step()?;
            let notify = Arc::clone(&self.state().arrived);
            loop {
                let arrived = notify.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(s) = self.state().scans.pop_front() {
                    return Ok(s);
                }
                if self.is_closed() {
                    return Err(DeviceFault::offline("scanner is closed"));
                }
                arrived.await;
            }
        }
        .await;
        self.record(result)
    }
}
