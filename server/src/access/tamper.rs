//! Tamper sensors: a door or case opening on one of the sensors named in
//! `[security] tamper_sensors` locks the device at once (`Access::tamper`), and only a
//! signed unlock from HQ lifts it (docs/security.md, "Tamper").
//!
//! One task per sensor follows the sensor's event bus. A subscriber that falls behind
//! the bus (more events than its buffer while it was not scheduled) does not trust the
//! gap: it looks through the bus's recent events for an opening it missed and, if the
//! gap is too old to see, locks anyway, since a lost tamper signal is worse than a
//! spurious lock.

use std::sync::Arc;

use anyhow::Context as _;
use outpost_peripherals::{DataEvent, DeviceEvent, DeviceKind, EventBody};
use tokio::sync::broadcast::error::RecvError;

use crate::access::Access;
use crate::devices::Registry;

fn is_opening(e: &DeviceEvent) -> bool {
    matches!(
        e.body,
        EventBody::Data {
            data: DataEvent::Door { open: true }
        }
    )
}

/// Check that every id of `ids` is a configured sensor.
pub fn check(registry: &Registry, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let entry = registry.entry(id).with_context(|| {
            format!("setting security.tamper_sensors: no device {id:?} in [[devices]]")
        })?;
        anyhow::ensure!(
            entry.kind == DeviceKind::EnvironmentSensor,
            "setting security.tamper_sensors: device {id:?} is a {:?}, not a sensor",
            entry.kind
        );
    }
    Ok(())
}

/// Follow each sensor of `ids` and lock on the first opening.
pub fn spawn(
    registry: &Registry,
    ids: &[String],
    security: Arc<Access>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for id in ids {
        let Some(entry) = registry.entry(id).cloned() else {
            continue;
        };
        let security = security.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let bus = entry.device.core().events();
            let mut rx = bus.subscribe();
            let mut seen = bus.next_seq().saturating_sub(1);
            loop {
                let opened = match rx.recv().await {
                    Ok(e) => {
                        seen = e.seq;
                        is_opening(&e).then(|| format!("sensor {id}: door or case opened"))
                    }
                    Err(RecvError::Lagged(n)) => {
                        let recent = bus.recent();
                        let oldest = recent.first().map_or(u64::MAX, |e| e.seq);
                        let missed_opening = recent.iter().any(|e| e.seq > seen && is_opening(e));
                        let unseen_gap = oldest > seen + 1;
                        seen = recent.last().map_or(seen, |e| e.seq);
                        tracing::warn!(sensor = %id, missed = n, "The tamper watch fell behind its sensor's events");
                        (missed_opening || unseen_gap).then(|| {
                            format!("sensor {id}: door or case opened (or {n} events were missed)")
                        })
                    }
                    Err(RecvError::Closed) => return,
                };
                if let Some(detail) = opened
                    && let Err(e) = security.tamper(&detail).await
                {
                    tracing::error!(sensor = %id, error = %e, "Failed to lock on a tamper signal");
                }
            }
        }));
    }
    tasks
}
