//! Device events, alerts and telemetry for HQ: written to the outbox like sales, so
//! they reach HQ exactly once, in order, after any outage.
//!
//! When an HQ URL is configured (there is nobody to deliver them to otherwise), one
//! task ([`run`]) watches the device registry, the uplink's backlog and the
//! presence lease once per `poll_ms`, and writes a record when something changes:
//!
//! - a **device event** when a device's status changes (`usable`, `failing`,
//!   `closed`) or it raises a new error event (a rejected scan, a lost link);
//! - an **alert** when a condition starts or ends (`raised` / `cleared`): the outbox's
//!   oldest entry older than `sync.alert_after_secs`, a device not usable, the
//!   presence lease in `grace` or `locked`;
//! - **telemetry** every `telemetry_ms`: cumulative counters (so a later sample
//!   covers any sample that was never written).
//!
//! # Bounds
//! Each kind has a cap on the entries waiting for HQ (`max_pending_*`). While a kind
//! is at its cap, new records of that kind are not written, only counted; the next
//! record written carries that count as `dropped_before`. A week offline therefore
//! queues at most `max_pending_telemetry` samples (default 288: one day at 5 min),
//! and the totals are not lost because the counters are cumulative. Sales, refunds
//! and movements are never capped. A record's id is a UUIDv7; records are deleted
//! with their outbox entry once HQ acknowledged them.
//!
//! | key | value |
//! |---|---|
//! | `e/r/` id | [`HqEvent`] |
//! | `e/n/` kind | entries of that kind waiting for HQ, u64 BE |
//! | `e/d/` kind | records of that kind not written since the last one, u64 BE |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::Settings;
use crate::devices::{DeviceView, Registry};
use crate::grpc::uplink::SyncState;
use crate::sales::journal::{OutboxKind, put_outbox};
use crate::store::{Store, StoreError, Tx, keys, to_json};

/// Records.
const RECORD: &[u8] = b"e/r/";
/// Pending counts per kind.
const PENDING: &[u8] = b"e/n/";
/// Dropped counts per kind.
const DROPPED: &[u8] = b"e/d/";

/// `[events]`: what the event watcher writes and how much may wait for HQ.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventSettings {
    /// Write device events, alerts and telemetry at all.
    pub enabled: bool,
    /// How often devices, backlog and lease are looked at, in milliseconds.
    pub poll_ms: u64,
    /// Milliseconds between telemetry samples (default 300,000: 5 minutes).
    pub telemetry_ms: u64,
    /// Telemetry samples that may wait for HQ.
    pub max_pending_telemetry: u64,
    /// Device events that may wait for HQ.
    pub max_pending_device_events: u64,
    /// Alerts that may wait for HQ.
    pub max_pending_alerts: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            enabled: true,
            poll_ms: 1000,
            telemetry_ms: 300_000,
            max_pending_telemetry: 288,
            max_pending_device_events: 1000,
            max_pending_alerts: 200,
        }
    }
}

impl EventSettings {
    /// Check values the types cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.poll_ms == 0 || self.telemetry_ms == 0 {
            return Err("poll_ms and telemetry_ms must be positive".into());
        }
        let caps = [
            self.max_pending_telemetry,
            self.max_pending_device_events,
            self.max_pending_alerts,
        ];
        if caps.iter().any(|c| !(1..=100_000).contains(c)) {
            return Err("max_pending_* must be between 1 and 100000".into());
        }
        Ok(())
    }

    fn cap(&self, kind: OutboxKind) -> u64 {
        match kind {
            OutboxKind::Telemetry => self.max_pending_telemetry,
            OutboxKind::Alert => self.max_pending_alerts,
            _ => self.max_pending_device_events,
        }
    }
}

/// One record for HQ (the envelope's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HqEvent {
    /// UUIDv7.
    pub id: Uuid,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Records of this kind not written (the cap was reached) since the previous one.
    pub dropped_before: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// A device's status changed, or it raised an error event.
    DeviceEvent {
        /// Device id.
        device: String,
        /// `receipt_printer`, `scanner`, ...
        device_kind: String,
        /// `status_changed` or `error`.
        event: String,
        /// Status before (`usable`, `failing`, `closed`; none for an error event).
        from: Option<String>,
        /// Status now.
        to: String,
        /// The device's latest error, when there is one.
        error: Option<String>,
    },
    /// A condition HQ should act on started or ended.
    Alert {
        /// `outbox_age`, `device_offline`, `lease`.
        alert: String,
        /// `raised` or `cleared`.
        state: String,
        /// What it is about (a device id, the lease state), when it applies.
        subject: Option<String>,
        /// For people.
        message: String,
    },
    /// Cumulative counters.
    Telemetry(Telemetry),
}

/// Counters since the unit started (cumulative) and gauges now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Writer jobs committed (sales, refunds, movements, ...), cumulative.
    pub writer_jobs_committed: u64,
    /// Group flushes (fsyncs), cumulative.
    pub writer_flushes: u64,
    /// Envelopes sent to HQ (with resends), cumulative.
    pub uplink_sent: u64,
    /// Uplink sessions, cumulative.
    pub uplink_sessions: u64,
    /// Uplink sessions that failed, cumulative.
    pub uplink_failures: u64,
    /// Entries waiting for HQ now.
    pub outbox_pending: u64,
    /// Bytes waiting for HQ now.
    pub outbox_bytes: u64,
    /// Products in the live catalog.
    pub catalog_products: u64,
    /// Devices configured.
    pub devices: u64,
    /// Devices usable now.
    pub devices_usable: u64,
}

impl EventBody {
    fn kind(&self) -> OutboxKind {
        match self {
            EventBody::DeviceEvent { .. } => OutboxKind::DeviceEvent,
            EventBody::Alert { .. } => OutboxKind::Alert,
            EventBody::Telemetry(_) => OutboxKind::Telemetry,
        }
    }
}

fn kind_name(kind: OutboxKind) -> &'static str {
    match kind {
        OutboxKind::DeviceEvent => "device_event",
        OutboxKind::Alert => "alert",
        OutboxKind::Telemetry => "telemetry",
        OutboxKind::Sale => "sale",
        OutboxKind::Refund => "refund",
        OutboxKind::InventoryMovement => "inventory_movement",
    }
}

fn counter_key(prefix: &[u8], kind: OutboxKind) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(kind_name(kind).as_bytes());
    k
}

/// Key of an event record.
pub fn record_key(id: Uuid) -> Vec<u8> {
    let mut k = RECORD.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn counter(tx: &Tx<'_>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(match tx.get(key)? {
        Some(v) => keys::decode_u64(&v)?,
        None => 0,
    })
}

/// Whether the outbox entries of `kind` are event records (deleted once acknowledged).
pub fn is_event(kind: OutboxKind) -> bool {
    matches!(
        kind,
        OutboxKind::DeviceEvent | OutboxKind::Alert | OutboxKind::Telemetry
    )
}

/// In the writer job that deletes acknowledged entries: forget the record of an
/// acknowledged event entry and count it out of its kind's pending count.
pub fn acknowledged(tx: &mut Tx<'_>, kind: OutboxKind, id: Uuid) -> Result<(), StoreError> {
    if !is_event(kind) {
        return Ok(());
    }
    tx.remove(record_key(id));
    let key = counter_key(PENDING, kind);
    let n = counter(tx, &key)?;
    tx.put(key, n.saturating_sub(1).to_be_bytes().to_vec());
    Ok(())
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Written with this outbox sequence.
    Queued(u64),
    /// The kind is at its cap: counted, not written.
    Dropped,
}

/// Write `body` to the outbox (durably, with its record), unless its kind already
/// has `cap` entries waiting for HQ.
pub async fn enqueue(store: &Store, body: EventBody, cap: u64) -> Result<Enqueued, StoreError> {
    store
        .write(move |tx| {
            let kind = body.kind();
            let pending_key = counter_key(PENDING, kind);
            let dropped_key = counter_key(DROPPED, kind);
            let pending = counter(tx, &pending_key)?;
            let dropped = counter(tx, &dropped_key)?;
            if pending >= cap {
                tx.put(dropped_key, (dropped + 1).to_be_bytes().to_vec());
                return Ok(Enqueued::Dropped);
            }
            let ev = HqEvent {
                id: Uuid::now_v7(),
                at: OffsetDateTime::now_utc(),
                dropped_before: dropped,
                body,
            };
            let json = to_json(&ev);
            let seq = put_outbox(tx, kind, ev.id, ev.at, &json);
            tx.put(record_key(ev.id), json);
            tx.put(pending_key, (pending + 1).to_be_bytes().to_vec());
            if dropped > 0 {
                tx.remove(dropped_key);
            }
            Ok::<Enqueued, StoreError>(Enqueued::Queued(seq))
        })
        .await?
}

/// Entries of each event kind waiting for HQ, for the sync status.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct EventsPending {
    /// Device events.
    pub device_event: u64,
    /// Alerts.
    pub alert: u64,
    /// Telemetry samples.
    pub telemetry: u64,
}

/// Entries of each event kind waiting for HQ.
pub fn events_pending(store: &Store) -> Result<EventsPending, StoreError> {
    let [(_, device_event), (_, alert), (_, telemetry)] = pending(store)?;
    Ok(EventsPending {
        device_event,
        alert,
        telemetry,
    })
}

/// Entries of each event kind waiting for HQ (for status and tests).
pub fn pending(store: &Store) -> Result<[(&'static str, u64); 3], StoreError> {
    let get = |kind| -> Result<u64, StoreError> {
        Ok(match store.journal_get(&counter_key(PENDING, kind))? {
            Some(v) => keys::decode_u64(&v)?,
            None => 0,
        })
    };
    Ok([
        ("device_event", get(OutboxKind::DeviceEvent)?),
        ("alert", get(OutboxKind::Alert)?),
        ("telemetry", get(OutboxKind::Telemetry)?),
    ])
}

fn device_status(v: &DeviceView) -> &'static str {
    if v.usable {
        "usable"
    } else if v.state == outpost_peripherals::DeviceState::Closed && v.consecutive_failures == 0 {
        "closed"
    } else {
        "failing"
    }
}

/// What the watcher saw last, to write only changes.
#[derive(Default)]
struct Seen {
    devices: HashMap<String, (&'static str, u64)>,
    outbox_alert: bool,
    lease: Option<String>,
}

/// Everything the watcher reads.
pub struct Watched {
    /// The store.
    pub store: Arc<Store>,
    /// The settings (alert age, unit).
    pub settings: Arc<Settings>,
    /// The uplink's counters and backlog state.
    pub sync: Arc<SyncState>,
    /// The devices.
    pub registry: Arc<Registry>,
    /// The presence lease.
    pub security: Arc<crate::security::Security>,
}

/// Watch and write until the task is dropped. Cancel-safe: every record is one
/// durable writer job; a record being written when the task is dropped is written or
/// not, never half.
pub async fn run(w: Watched, cfg: EventSettings) {
    let started = std::time::Instant::now();
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let telemetry_every = Duration::from_millis(cfg.telemetry_ms);
    let mut next_telemetry = started + telemetry_every;
    loop {
        tick.tick().await;
        let mut out = Vec::new();
        watch_devices(&w, &mut seen, &mut out);
        watch_backlog(&w, &mut seen, &mut out);
        watch_lease(&w, &mut seen, &mut out);
        if std::time::Instant::now() >= next_telemetry {
            next_telemetry += telemetry_every;
            out.push(EventBody::Telemetry(telemetry(&w, started)));
        }
        for body in out {
            let cap = cfg.cap(body.kind());
            match enqueue(&w.store, body, cap).await {
                Ok(Enqueued::Queued(_)) => {}
                Ok(Enqueued::Dropped) => {
                    tracing::debug!(
                        cap,
                        "An event kind is at its outbox cap; counted, not queued"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "Failed to queue an event for HQ"),
            }
        }
    }
}

fn watch_devices(w: &Watched, seen: &mut Seen, out: &mut Vec<EventBody>) {
    for v in w.registry.views() {
        let status = device_status(&v);
        let kind = v.kind.to_string();
        let prev = seen
            .devices
            .insert(v.id.clone(), (status, v.last_event_error_at_ms));
        match prev {
            None => {
                // First look: only a device that is not usable is worth an alert.
                if status != "usable" {
                    out.push(device_alert(&v, "raised"));
                }
            }
            Some((was, last_event_at)) => {
                if was != status {
                    out.push(EventBody::DeviceEvent {
                        device: v.id.clone(),
                        device_kind: kind.clone(),
                        event: "status_changed".into(),
                        from: Some(was.into()),
                        to: status.into(),
                        error: v.last_error.clone(),
                    });
                    if was == "usable" {
                        out.push(device_alert(&v, "raised"));
                    } else if status == "usable" {
                        out.push(device_alert(&v, "cleared"));
                    }
                }
                if v.last_event_error_at_ms > last_event_at {
                    out.push(EventBody::DeviceEvent {
                        device: v.id.clone(),
                        device_kind: kind,
                        event: "error".into(),
                        from: None,
                        to: status.into(),
                        error: v.last_event_error.clone(),
                    });
                }
            }
        }
    }
}

fn device_alert(v: &DeviceView, state: &str) -> EventBody {
    EventBody::Alert {
        alert: "device_offline".into(),
        state: state.into(),
        subject: Some(v.id.clone()),
        message: match state {
            "raised" => format!(
                "device {} is not usable: {}",
                v.id,
                v.last_error.as_deref().unwrap_or("closed")
            ),
            _ => format!("device {} is usable again", v.id),
        },
    }
}

fn watch_backlog(w: &Watched, seen: &mut Seen, out: &mut Vec<EventBody>) {
    let Ok(status) = crate::grpc::store_service::sync_status(&w.store, &w.settings, &w.sync) else {
        return;
    };
    if status.alert != seen.outbox_alert {
        seen.outbox_alert = status.alert;
        out.push(EventBody::Alert {
            alert: "outbox_age".into(),
            state: if status.alert { "raised" } else { "cleared" }.into(),
            subject: None,
            message: if status.alert {
                format!(
                    "the oldest of {} entries waiting for HQ is {} s old (limit {} s)",
                    status.outbox_pending,
                    status.outbox_oldest_age_secs,
                    w.settings.sync.alert_after_secs
                )
            } else {
                "the outbox backlog is within its age limit again".into()
            },
        });
    }
}

fn watch_lease(w: &Watched, seen: &mut Seen, out: &mut Vec<EventBody>) {
    let lease = w.security.lease_status();
    let bad = |s: &str| s == "grace" || s == "locked";
    let prev = seen.lease.replace(lease.state.clone());
    let was_bad = prev.as_deref().is_some_and(bad);
    if prev.as_deref() == Some(lease.state.as_str()) {
        return;
    }
    if bad(&lease.state) {
        out.push(EventBody::Alert {
            alert: "lease".into(),
            state: "raised".into(),
            subject: Some(lease.state.clone()),
            message: lease.reason,
        });
    } else if was_bad {
        out.push(EventBody::Alert {
            alert: "lease".into(),
            state: "cleared".into(),
            subject: Some(lease.state.clone()),
            message: lease.reason,
        });
    }
}

fn telemetry(w: &Watched, started: std::time::Instant) -> Telemetry {
    let stats = w.store.writer_stats();
    let views = w.registry.views();
    Telemetry {
        uptime_secs: started.elapsed().as_secs(),
        writer_jobs_committed: stats.committed_jobs.load(Ordering::Relaxed),
        writer_flushes: stats.flushes.load(Ordering::Relaxed),
        uplink_sent: w.sync.sent.load(Ordering::Relaxed),
        uplink_sessions: w.sync.sessions.load(Ordering::Relaxed),
        uplink_failures: w.sync.failures.load(Ordering::Relaxed),
        outbox_pending: w.store.outbox_pending().unwrap_or(0),
        outbox_bytes: stats.outbox_bytes.load(Ordering::Relaxed),
        catalog_products: w.store.catalog().len,
        devices: views.len() as u64,
        devices_usable: views.iter().filter(|v| v.usable).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_event_settings_are_refused() {
        assert!(EventSettings::default().validate().is_ok());
        type Break = fn(&mut EventSettings);
        let cases: [Break; 5] = [
            |s| s.poll_ms = 0,
            |s| s.telemetry_ms = 0,
            |s| s.max_pending_telemetry = 0,
            |s| s.max_pending_alerts = 100_001,
            |s| s.max_pending_device_events = 0,
        ];
        for break_it in cases {
            let mut s = EventSettings::default();
            break_it(&mut s);
            assert!(s.validate().is_err(), "{s:?}");
        }
        let toml = "[events]\ntelemetry_ms = 0\n";
        let settings = crate::config::Settings::from_toml(toml).unwrap();
        let e = settings.validate().unwrap_err().to_string();
        assert!(e.contains("events"), "{e}");
    }

    #[test]
    fn records_are_the_envelope_json_with_a_type() {
        let ev = HqEvent {
            id: Uuid::now_v7(),
            at: OffsetDateTime::UNIX_EPOCH,
            dropped_before: 3,
            body: EventBody::Alert {
                alert: "outbox_age".into(),
                state: "raised".into(),
                subject: None,
                message: "m".into(),
            },
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&ev)).unwrap();
        assert_eq!(v["type"], "alert");
        assert_eq!(v["dropped_before"], 3);
        let back: HqEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[tokio::test]
    async fn a_kind_at_its_cap_is_counted_and_the_next_record_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let alert = || EventBody::Alert {
            alert: "a".into(),
            state: "raised".into(),
            subject: None,
            message: "m".into(),
        };
        assert!(matches!(
            enqueue(&store, alert(), 2).await.unwrap(),
            Enqueued::Queued(1)
        ));
        assert!(matches!(
            enqueue(&store, alert(), 2).await.unwrap(),
            Enqueued::Queued(2)
        ));
        for _ in 0..5 {
            assert_eq!(
                enqueue(&store, alert(), 2).await.unwrap(),
                Enqueued::Dropped
            );
        }
        assert_eq!(pending(&store).unwrap()[1], ("alert", 2));
        // Other kinds have their own cap.
        let t = EventBody::Telemetry(Telemetry {
            uptime_secs: 1,
            writer_jobs_committed: 0,
            writer_flushes: 0,
            uplink_sent: 0,
            uplink_sessions: 0,
            uplink_failures: 0,
            outbox_pending: 0,
            outbox_bytes: 0,
            catalog_products: 0,
            devices: 0,
            devices_usable: 0,
        });
        assert_eq!(enqueue(&store, t, 2).await.unwrap(), Enqueued::Queued(3));
        // HQ acknowledges the first two: the alert cap has room again, and the next
        // alert carries the count of those not written.
        crate::sales::outbox::ack_through(&store, 2).await.unwrap();
        assert_eq!(pending(&store).unwrap()[1], ("alert", 0));
        assert_eq!(
            enqueue(&store, alert(), 2).await.unwrap(),
            Enqueued::Queued(4)
        );
        let sent = crate::sales::outbox::read_from(&store, 4, 10, 1 << 20).unwrap();
        let ev: HqEvent = serde_json::from_slice(&sent[0].record).unwrap();
        assert_eq!(ev.dropped_before, 5);
        // The acknowledged records are gone with their entries.
        assert!(store.journal_get(&record_key(ev.id)).unwrap().is_some());
        let first = crate::sales::outbox::read_from(&store, 1, 10, 1 << 20).unwrap();
        assert_eq!(
            first[0].entry.seq, 3,
            "1 and 2 were acknowledged and deleted"
        );
    }
}
