//! A trait-level barcode scanner.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::scanner::{BarcodeScanner, Scan};
use outpost_peripherals::scanner_serial::parse_scan;
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use tokio::sync::Notify;

use super::{Step, core, keep};
use crate::Expectations;

/// A barcode scanner fed by the test: [`scan`](Self::scan) is a person scanning,
/// [`feed_frame`](Self::feed_frame) is raw bytes from the wire, checked by the
/// serial driver's own parser. Each `next_scan` takes the next queued [`Step`]
/// (default: ok, which waits for a scan). Clones share it. Counters: `scans`,
/// `scans_rejected`, `scans_discarded`.
#[derive(Debug, Clone)]
pub struct MockScanner {
    core: Arc<DeviceCore>,
    steps: Expectations<Step>,
    scans: Arc<Mutex<VecDeque<Scan>>>,
    arrived: Arc<Notify>,
}

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
        Self {
            core: core(id, DeviceKind::BarcodeScanner, ready),
            steps: Expectations::new(Some(Step::Ok)),
            scans: Arc::new(Mutex::new(VecDeque::new())),
            arrived: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Scan>> {
        // Held only to push or pop, never across an await.
        self.scans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue what the next `next_scan` calls do.
    pub fn expect(&self, steps: impl IntoIterator<Item = Step>) -> &Self {
        self.steps.expect(steps);
        self
    }

    /// Fail the test if a queued step was never used.
    ///
    /// # Panics
    /// When steps are left.
    #[track_caller]
    pub fn done(&self) {
        self.steps.done();
    }

    /// Someone scans: delivered (and raised as a data event) when enabled, else
    /// discarded, as a real scanner does.
    pub fn scan(&self, scan: Scan) {
        if !self.core.is_enabled() {
            self.core.count("scans_discarded", 1);
            return;
        }
        keep(&mut self.lock(), scan.clone());
        self.core.count("scans", 1);
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Scan(scan),
        });
        self.arrived.notify_waiters();
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
        if self.core.state() == DeviceState::Closed {
            self.core.mark_opened();
        }
        Ok(())
    }

    async fn close(&self) {
        self.lock().clear();
        self.core.mark_closed(PowerState::Unknown);
        self.arrived.notify_waiters();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = if self.core.state() == DeviceState::Closed {
            HealthReport::now(Health::Failed, "mock scanner is not open")
        } else {
            HealthReport::now(Health::Ok, "mock scanner link up")
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl BarcodeScanner for MockScanner {
    async fn next_scan(&self) -> Result<Scan, DeviceFault> {
        let result = async {
            self.core.ensure_ready()?;
            if let Some(Step::Fail(f)) = self.steps.next() {
                return Err(f);
            }
            loop {
                let arrived = self.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(s) = self.lock().pop_front() {
                    return Ok(s);
                }
                if self.core.state() == DeviceState::Closed {
                    return Err(DeviceFault::offline("scanner is closed"));
                }
                arrived.await;
            }
        }
        .await;
        self.core.record(&result);
        result
    }
}
