//! A trait-level cash drawer.

use std::time::Duration;

use async_trait::async_trait;
use outpost_peripherals::drawer::CashDrawer;
use outpost_peripherals::{
    Condition, Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};
use tokio::time::Instant;

use super::{Mock, Model, Step};

/// How often `wait_closed` looks at the mock drawer.
const POLL: Duration = Duration::from_millis(10);

/// The drawer behind a [`MockDrawer`]: open or shut.
#[derive(Debug, Default)]
pub struct DrawerModel {
    open: bool,
}

impl Model for DrawerModel {
    type Step = Step;
    const NAME: &'static str = "MockDrawer";
}

/// A cash drawer: `open_drawer` takes the next queued [`Step`] (default: ok) and
/// opens it; the test closes it with [`close_drawer`](Self::close_drawer), as a
/// cashier would. Clones share it. Counter: `kicks`.
pub type MockDrawer = Mock<DrawerModel>;

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
        Mock::scripted(
            id,
            DeviceKind::CashDrawer,
            ready,
            Step::Ok,
            DrawerModel::default(),
        )
    }

    /// Push the drawer shut.
    pub fn close_drawer(&self) {
        self.state().open = false;
    }

    /// Whether the drawer is open, without going through the device.
    pub fn drawer_open(&self) -> bool {
        self.state().open
    }
}

#[async_trait]
impl Device for MockDrawer {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        self.open_device()
    }

    async fn close(&self) {
        self.close_device();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        self.checked_health("drawer", |_| {
            HealthReport::now(Health::Ok, "mock drawer sensor readable")
        })
    }
}

#[async_trait]
impl CashDrawer for MockDrawer {
    async fn open_drawer(&self) -> Result<(), DeviceFault> {
        let result = self.step().map(|()| {
            self.state().open = true;
            self.core.count("kicks", 1);
        });
        self.record(result)
    }

    async fn is_open(&self) -> Result<bool, DeviceFault> {
        let result = self.core.ensure_ready().map(|()| self.drawer_open());
        self.record(result)
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
        self.record(result)
    }
}
