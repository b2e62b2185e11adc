//! A trait-level environment sensor (temperature, door, case tamper switch).

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::sensor::{EnvironmentSensor, SensorReading};
use outpost_peripherals::{
    Device, DeviceCore, DeviceFault, DeviceKind, Health, HealthLevel, HealthReport,
};

use super::{Mock, Model, Step};

/// The sensors behind a [`MockSensor`]: what they read now.
#[derive(Debug)]
pub struct SensorModel {
    reading: SensorReading,
}

impl Model for SensorModel {
    type Step = Step;
    const NAME: &'static str = "MockSensor";
}

/// Sensors the test sets; door and case changes raise data events, as the security
/// layer expects. Each `read` takes the next queued [`Step`] (default: ok).
/// Clones share it.
pub type MockSensor = Mock<SensorModel>;

impl MockSensor {
    /// A working sensor, opened, claimed and enabled, reading `initial`.
    pub fn new(id: &str, initial: SensorReading) -> Self {
        let model = SensorModel { reading: initial };
        Mock::scripted(id, DeviceKind::EnvironmentSensor, true, Step::Ok, model)
    }

    /// Set the temperature; raises a temperature event.
    pub fn set_temperature(&self, milli_celsius: i32) {
        self.state().reading.milli_celsius = Some(milli_celsius);
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Temperature { milli_celsius },
        });
    }

    /// Open or shut the door; raises a door event when it changes.
    pub fn set_door(&self, open: bool) {
        let changed = self.state().reading.door_open.replace(open) != Some(open);
        if changed {
            self.core.events().publish(EventBody::Data {
                data: DataEvent::Door { open },
            });
        }
    }

    /// Open or shut the case (tamper switch); raises a door event when it changes,
    /// and counts `tamper` on opening.
    pub fn set_case(&self, open: bool) {
        let changed = self.state().reading.case_open.replace(open) != Some(open);
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
        self.open_device()
    }

    async fn close(&self) {
        self.close_device();
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        self.checked_health("sensor", |m| {
            if m.reading.case_open == Some(true) {
                HealthReport::now(Health::Degraded, "case is open (tamper)")
            } else {
                HealthReport::now(Health::Ok, "mock sensor reads")
            }
        })
    }
}

#[async_trait]
impl EnvironmentSensor for MockSensor {
    async fn read(&self) -> Result<SensorReading, DeviceFault> {
        let result = self.step().map(|()| self.state().reading);
        self.record(result)
    }
}
