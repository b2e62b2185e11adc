//! A trait-level scale.

use std::time::Duration;

use async_trait::async_trait;
use outpost_peripherals::event::{DataEvent, EventBody};
use outpost_peripherals::scale::{Scale, WeightReading};
use outpost_peripherals::{
    Condition, Device, DeviceCore, DeviceFault, DeviceKind, ErrorKind, Health, HealthLevel,
    HealthReport,
};
use tokio::time::Instant;

use super::{Mock, Model, Step};

/// How often `stable_weight` looks at the mock load again.
const POLL: Duration = Duration::from_millis(10);

/// The scale behind a [`MockScale`]: the load on its pan.
#[derive(Debug)]
pub struct ScaleModel {
    gross: i64,
    zero: i64,
    /// Readings left before the load settles.
    moving: u32,
    capacity: i64,
    last: Option<WeightReading>,
}

impl Model for ScaleModel {
    type Step = Step;
    const NAME: &'static str = "MockScale";
}

/// A scale whose load the test places: [`place`](Self::place) puts grams on the
/// pan, moving for a number of readings, like the MT-SICS simulator. Each command
/// takes the next queued [`Step`] (default: ok). Clones share it. Counters:
/// `stable_weighings`, `unstable_refusals`, `zeroings`.
pub type MockScale = Mock<ScaleModel>;

impl MockScale {
    /// A working scale of `capacity_g`, already opened, claimed and enabled.
    pub fn new(id: &str, capacity_g: i64) -> Self {
        Self::build(id, capacity_g, true)
    }

    /// A closed, unclaimed scale.
    pub fn closed(id: &str, capacity_g: i64) -> Self {
        Self::build(id, capacity_g, false)
    }

    fn build(id: &str, capacity: i64, ready: bool) -> Self {
        let model = ScaleModel {
            gross: 0,
            zero: 0,
            moving: 0,
            capacity,
            last: None,
        };
        Mock::scripted(id, DeviceKind::Scale, ready, Step::Ok, model)
    }

    /// Put `grams` on the pan; it moves for `settle_readings` readings.
    pub fn place(&self, grams: i64, settle_readings: u32) {
        let mut l = self.state();
        l.gross = grams;
        l.moving = settle_readings;
    }

    /// One reading, counting towards settling.
    fn reading(&self) -> Result<WeightReading, DeviceFault> {
        let r = {
            let mut l = self.state();
            if l.gross > l.capacity {
                return Err(DeviceFault::condition(
                    Condition::OverWeight,
                    "scale overloaded: take weight off",
                ));
            }
            if l.gross < -(l.capacity / 50) {
                return Err(DeviceFault::condition(
                    Condition::UnderWeight,
                    "scale underloaded: is the pan in place?",
                ));
            }
            let stable = l.moving == 0;
            l.moving = l.moving.saturating_sub(1);
            let r = WeightReading {
                grams: l.gross - l.zero,
                stable,
            };
            if l.last == Some(r) {
                return Ok(r);
            }
            l.last = Some(r);
            r
        };
        self.core.events().publish(EventBody::Data {
            data: DataEvent::Weight(r),
        });
        Ok(r)
    }

    async fn stable(&self, limit: Duration) -> Result<u32, DeviceFault> {
        self.step()?;
        let deadline = Instant::now() + limit;
        loop {
            let r = self.reading()?;
            if r.stable {
                if r.grams <= 0 {
                    return Err(DeviceFault::condition(
                        Condition::UnderWeight,
                        format!("stable weight is {} g: nothing to sell", r.grams),
                    ));
                }
                self.core.count("stable_weighings", 1);
                return Ok(u32::try_from(r.grams).unwrap_or(u32::MAX));
            }
            if Instant::now() + POLL > deadline {
                self.core.count("unstable_refusals", 1);
                return Err(DeviceFault::condition(
                    Condition::Unstable,
                    format!("weight did not settle within {limit:?}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[async_trait]
impl Device for MockScale {
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
        self.checked_health("scale", |_| {
            HealthReport::now(Health::Ok, "mock scale answers")
        })
    }
}

#[async_trait]
impl Scale for MockScale {
    async fn stable_weight(&self, timeout: Duration) -> Result<u32, DeviceFault> {
        let result = self.stable(timeout).await;
        self.record(result)
    }

    async fn live_weight(&self) -> Result<WeightReading, DeviceFault> {
        let result = self.step().and_then(|()| self.reading());
        self.record(result)
    }

    async fn zero(&self) -> Result<(), DeviceFault> {
        let result = self.step().and_then(|()| {
            let mut l = self.state();
            if l.moving > 0 {
                l.moving -= 1;
                return Err(DeviceFault::condition(
                    Condition::Unstable,
                    "scale did not zero: the weight is moving",
                ));
            }
            if (l.gross).abs() > l.capacity / 50 {
                return Err(
                    DeviceFault::new(ErrorKind::Illegal, "load is outside the zero range")
                        .with_condition(if l.gross > 0 {
                            Condition::OverWeight
                        } else {
                            Condition::UnderWeight
                        }),
                );
            }
            l.zero = l.gross;
            drop(l);
            self.core.count("zeroings", 1);
            Ok(())
        });
        self.record(result)
    }
}
