//! A trait-level cash drawer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::{
    Condition, Device, DeviceCore, DeviceFault, DeviceKind, DeviceState, Health, HealthLevel,
    HealthReport, PowerState,
};
use tokio::time::Instant;

use super::{Step, core};
use crate::Expectations;

/// How often `wait_closed` looks at the mock drawer.
const POLL: Duration = Duration::from_millis(10);

/// A cash drawer: `open_drawer` takes the next queued [`Step`] (default: ok) and
/// opens it; the test closes it with [`close_drawer`](Self::close_drawer), as a
/// cashier would. Clones share it. Counter: `kicks`.
#[derive(Debug, Clone)]
pub struct MockDrawer {
    core: Arc<DeviceCore>,
    steps: Expectations<Step>,
    open: Arc<AtomicBool>,
}

impl MockDrawer {
    /// A working drawer, already opened, claimed and enabled.
    pub fn new(id: &str) -> Self {
        Self::build(id, true)
    }

    /// A closed, unclaimed drawer.
    pub fn closed(id: &str) -> Self {
        Self::build(id, false)
    }

    fn build(id: &str, ready: bool) -> Self {
        Self {
            core: core(id, DeviceKind::CashDrawer, ready),
            steps: Expectations::new(Some(Step::Ok)),
            open: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queue what the next `open_drawer` calls do.
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

    /// Push the drawer shut.
    pub fn close_drawer(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    /// Whether the drawer is open, without going through the device.
    pub fn drawer_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Device for MockDrawer {
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
        self.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = if self.core.state() == DeviceState::Closed {
            HealthReport::now(Health::Failed, "mock drawer is not open")
        } else {
            HealthReport::now(Health::Ok, "mock drawer sensor readable")
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl CashDrawer for MockDrawer {
    async fn open_drawer(&self) -> Result<(), DeviceFault> {
        let result = self
            .core
            .ensure_ready()
            .and_then(|()| match self.steps.next() {
                Some(Step::Fail(f)) => Err(f),
                _ => {
                    self.open.store(true, Ordering::SeqCst);
                    self.core.count("kicks", 1);
                    Ok(())
                }
            });
        self.core.record(&result);
        result
    }

    async fn is_open(&self) -> Result<bool, DeviceFault> {
        let result = self.core.ensure_ready().map(|()| self.drawer_open());
        self.core.record(&result);
        result
    }

    async fn wait_closed(&self, limit: Duration) -> Result<(), DeviceFault> {
        let deadline = Instant::now() + limit;
        let result = loop {
            if let Err(f) = self.core.ensure_ready() {
                break Err(f);
            }
            if !self.drawer_open() {
                break Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(
                    DeviceFault::timeout(format!("drawer still open after {limit:?}"))
                        .with_condition(Condition::DrawerOpen),
                );
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        };
        self.core.record(&result);
        result
    }
}
