//! A trait-level environment sensor (temperature, door, case tamper switch).

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::sensor::{EnvironmentSensor, SensorReading};
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};

use super::{Step, core};
use crate::Expectations;

/// Sensors the test sets; door and case changes raise data events, as the security
/// layer expects. Each `read` takes the next queued [`Step`] (default: ok).
/// Clones share it.
#[derive(Debug, Clone)]
pub struct MockSensor {
    core: Arc<DeviceCore>,
    steps: Expectations<Step>,
    reading: Arc<Mutex<SensorReading>>,
}

impl MockSensor {
    /// A working sensor, opened, claimed and enabled, reading `initial`.
    pub fn new(id: &str, initial: SensorReading) -> Self {
        Self {
            core: core(id, DeviceKind::EnvironmentSensor, true),
            steps: Expectations::new(Some(Step::Ok)),
            reading: Arc::new(Mutex::new(initial)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SensorReading> {
        // Held only to read or set, never across an await.
        self.reading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue what the next `read` calls do.
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

    /// Set the temperature; raises a temperature event.
    pub fn set_temperature(&self, milli_celsius: i32) {
        self.lock().milli_celsius = Some(milli_celsius);
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Temperature { milli_celsius },
        });
    }

    /// Open or shut the door; raises a door event when it changes.
    pub fn set_door(&self, open: bool) {
        let changed = self.lock().door_open.replace(open) != Some(open);
        if changed {
            self.core.events().publish(EventBody::Data {
                data: DataEvent::Door { open },
            });
        }
    }

    /// Open or shut the case (tamper switch); raises a door event when it changes,
    /// and counts `tamper` on opening.
    pub fn set_case(&self, open: bool) {
        let changed = self.lock().case_open.replace(open) != Some(open);
        if changed {
            if open {
                self.core.count("tamper", 1);
            }
            self.core.events().publish(EventBody::Data {
                data: DataEvent::Door { open },
            });
        }
    }
}

#[async_trait]
impl Device for MockSensor {
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
        let case_open = self.lock().case_open == Some(true);
        let report = if self.core.state() == DeviceState::Closed {
            HealthReport::now(Health::Failed, "mock sensor is not open")
        } else if case_open {
            HealthReport::now(Health::Degraded, "case is open (tamper)")
        } else {
            HealthReport::now(Health::Ok, "mock sensor reads")
        };
        self.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl EnvironmentSensor for MockSensor {
    async fn read(&self) -> Result<SensorReading, DeviceFault> {
        let result = self
            .core
            .ensure_ready()
            .and_then(|()| match self.steps.next() {
                Some(Step::Fail(f)) => Err(f),
                _ => Ok(*self.lock()),
            });
        self.core.record(&result);
        result
    }
}
