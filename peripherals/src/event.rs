//! Device events: what a device says without being asked.
//!
//! Each device has one [`EventBus`]. Events carry a per-device sequence number, so a
//! subscriber that fell behind (the bus is bounded and drops the oldest events for
//! slow subscribers) sees the gap instead of silently missing something. The bus also
//! keeps the last few events for the status API and the console.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::ErrorKind;
use crate::device::{DeviceState, PowerState};
use crate::fault::Condition;
use crate::scale::WeightReading;
use crate::scanner::Scan;

/// How many events a slow subscriber may fall behind before it loses the oldest.
pub const EVENT_CAPACITY: usize = 256;
/// How many recent events each device keeps for the status API.
pub const RECENT_EVENTS: usize = 32;

/// One event from one device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceEvent {
    /// Per-device sequence number, starting at 1, without gaps at the source.
    pub seq: u64,
    /// The configured id of the device.
    pub device: String,
    /// When the event was raised.
    #[serde(with = "time_millis")]
    pub at: SystemTime,
    /// What happened.
    pub body: EventBody,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// Input from the device (a scan, a weight, a coin, a door).
    Data {
        /// The input.
        data: DataEvent,
    },
    /// The device reported an error, or its input was rejected.
    Error {
        /// What generic code acts on.
        kind: ErrorKind,
        /// The device-specific condition, if any.
        condition: Option<Condition>,
        /// For the technician.
        message: String,
    },
    /// The device changed state.
    Status {
        /// The state before.
        from: DeviceState,
        /// The state now.
        to: DeviceState,
    },
    /// An output job (a receipt, a display update) finished.
    OutputComplete {
        /// The caller's id of the job.
        job: String,
    },
    /// The device's power state changed.
    Power {
        /// The power state now.
        state: PowerState,
    },
}

/// Input a device delivers on its own.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum DataEvent {
    /// A barcode was scanned.
    Scan(Scan),
    /// The scale's reading changed.
    Weight(WeightReading),
    /// A coin or note was accepted.
    Cash {
        /// Its value in minor units.
        denomination_minor: i64,
    },
    /// The drop sensor saw a product fall from a slot.
    Drop {
        /// The slot.
        slot: String,
    },
    /// A door or case opened or closed.
    Door {
        /// True when open.
        open: bool,
    },
    /// A temperature reading.
    Temperature {
        /// Thousandths of a degree Celsius.
        milli_celsius: i32,
    },
}

/// A device's event publisher. Cheap to share behind the device.
#[derive(Debug)]
pub struct EventBus {
    device: String,
    tx: broadcast::Sender<DeviceEvent>,
    /// Guards the sequence counter and the recent ring together, so the ring is in
    /// sequence order. Held only for a push, never across an await.
    inner: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    next_seq: u64,
    recent: VecDeque<DeviceEvent>,
}

impl EventBus {
    /// A bus for the device with this id.
    pub fn new(device: impl Into<String>) -> Self {
        let (tx, _) = broadcast::channel(EVENT_CAPACITY);
        Self {
            device: device.into(),
            tx,
            inner: Mutex::new(Ring {
                next_seq: 1,
                recent: VecDeque::with_capacity(RECENT_EVENTS),
            }),
        }
    }

    /// Raise an event and return its sequence number. Never blocks: subscribers that
    /// are too slow lose their oldest events and learn how many with `Lagged`.
    pub fn publish(&self, body: EventBody) -> u64 {
        let mut ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let event = DeviceEvent {
            seq: ring.next_seq,
            device: self.device.clone(),
            at: SystemTime::now(),
            body,
        };
        ring.next_seq += 1;
        if ring.recent.len() == RECENT_EVENTS {
            ring.recent.pop_front();
        }
        ring.recent.push_back(event.clone());
        let seq = event.seq;
        // An error only means nobody is subscribed right now.
        let _ = self.tx.send(event);
        seq
    }

    /// A new subscription that sees every event raised from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.tx.subscribe()
    }

    /// The most recent events, oldest first.
    pub fn recent(&self) -> Vec<DeviceEvent> {
        let ring = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        ring.recent.iter().cloned().collect()
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_seq
    }
}

mod time_millis {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        s.serialize_u64(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn door(open: bool) -> EventBody {
        EventBody::Data {
            data: DataEvent::Door { open },
        }
    }

    #[tokio::test]
    async fn events_are_numbered_and_a_slow_subscriber_sees_the_gap() {
        let bus = EventBus::new("door-1");
        let mut rx = bus.subscribe();
        for i in 0..(EVENT_CAPACITY as u64 + 10) {
            assert_eq!(bus.publish(door(i % 2 == 0)), i + 1);
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected a lag, got {other:?}"),
        }
        assert_eq!(rx.recv().await.unwrap().seq, 11);
    }

    #[test]
    fn recent_is_bounded_and_in_order() {
        let bus = EventBus::new("d");
        for _ in 0..(RECENT_EVENTS + 5) {
            bus.publish(door(true));
        }
        let recent = bus.recent();
        assert_eq!(recent.len(), RECENT_EVENTS);
        assert_eq!(recent[0].seq, 6);
        assert!(recent.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert_eq!(bus.next_seq(), RECENT_EVENTS as u64 + 6);
    }
}
