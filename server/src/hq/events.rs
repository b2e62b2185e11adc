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
//!   covers any sample that was never written);
//! - the **audit head** (the audit chain's last sequence and hash) every
//!   `audit_head_ms`, at the first look after start and right after an unlock, each
//!   time only when it changed since the last one queued. Each carries `since`: that
//!   last head, with the hash the chain has at its sequence now, so HQ (which keeps
//!   the last head per unit) sees a log that was cut, even when it has grown past the
//!   cut since. While locked nothing is queued: the outbox is sealed with the data
//!   key too; the head written right after the unlock covers the lockdown, what was
//!   spooled meanwhile and the unlock.
//!
//! # Bounds
//! Each kind has a cap on the entries waiting for HQ (`max_pending_*`); the records and
//! their caps are kept by [`crate::store::outbox::events`]. A week offline therefore
//! queues at most `max_pending_telemetry` samples (default 288: one day at 5 min),
//! and the totals are not lost because the counters are cumulative. Audit heads are
//! capped at [`MAX_PENDING_AUDIT_HEADS`]; one not written is covered by the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::uplink::SyncState;
use crate::config::{EventSettings, Settings};
use crate::devices::{DeviceView, Registry};
use crate::store::Store;
use crate::store::outbox::OutboxKind;
use crate::store::outbox::events::{
    AuditCheckpoint, AuditHead, Enqueued, EventBody, Telemetry, enqueue, last_audit_head,
};

/// Most audit heads waiting for HQ (one day at the default 5 min). Only the newest
/// matters: a head not written is covered by the next one queued, whose `since` is
/// the last one queued before it.
pub const MAX_PENDING_AUDIT_HEADS: u64 = 288;

/// The cap of `kind` in `cfg`.
fn cap(cfg: &EventSettings, kind: OutboxKind) -> u64 {
    match kind {
        OutboxKind::Telemetry => cfg.max_pending_telemetry,
        OutboxKind::Alert => cfg.max_pending_alerts,
        OutboxKind::AuditHead => MAX_PENDING_AUDIT_HEADS,
        // Money to give back is never dropped.
        OutboxKind::PaymentReturn => u64::MAX,
        // Stock facts, like movements, are never dropped.
        OutboxKind::SlotCount => u64::MAX,
        _ => cfg.max_pending_device_events,
    }
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
    audit: AuditWatch,
}

/// The audit head as last queued, and when it is due again.
#[derive(Default)]
struct AuditWatch {
    /// The last head queued for HQ; `None` until read from the store.
    queued: Option<Option<AuditCheckpoint>>,
    /// When the periodic report is due; `None`: at the next look.
    next_due: Option<std::time::Instant>,
    /// The unlocks counted at the last look (`Access::unlocks`).
    unlocks: u64,
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
    pub security: Arc<crate::access::Access>,
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
    let audit_every = Duration::from_millis(cfg.audit_head_ms);
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
            let cap = cap(&cfg, body.kind());
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
        report_audit_head(&w, &mut seen.audit, audit_every).await;
    }
}

/// Queue the audit head when it is due (every `every`, at the first look, right after
/// an unlock) and changed since the last one queued. A look that cannot finish (the
/// unit locked meanwhile, a store error) is retried at the next poll.
async fn report_audit_head(w: &Watched, a: &mut AuditWatch, every: Duration) {
    let unlocks = w.security.unlocks();
    if unlocks != a.unlocks {
        // Unlocked since the last look (however short the lockdown was): due at the
        // next poll, once the unlock has appended its own entry after the spooled ones.
        a.unlocks = unlocks;
        a.next_due = None;
        return;
    }
    let now = std::time::Instant::now();
    if w.security.is_locked_down() || a.next_due.is_some_and(|due| now < due) {
        return;
    }
    let queued = match &a.queued {
        Some(q) => q.clone(),
        None => match last_audit_head(&w.store) {
            Ok(q) => a.queued.insert(q).clone(),
            Err(e) => {
                tracing::debug!(error = %e, "Failed to read the last audit head queued; retrying");
                return;
            }
        },
    };
    let Some((seq, hash)) = w.security.audit_head() else {
        // An empty log (or locked since the look above): nothing to report yet.
        return;
    };
    if queued
        .as_ref()
        .is_some_and(|q| q.seq == seq && q.hash.as_deref() == Some(hash.as_str()))
    {
        a.next_due = Some(now + every);
        return;
    }
    let since = match queued {
        None => None,
        Some(q) => match w.security.audit_hash_at(q.seq) {
            Ok(now_hash) => {
                if now_hash != q.hash {
                    tracing::error!(
                        reported_seq = q.seq,
                        "The audit log no longer holds the head last reported to HQ: entries were cut or rewritten"
                    );
                }
                Some(AuditCheckpoint {
                    seq: q.seq,
                    hash: now_hash,
                })
            }
            Err(crate::access::AccessError::Locked) => return,
            Err(e) => {
                tracing::error!(error = %e, reported_seq = q.seq, "The audit entry last reported to HQ does not read");
                Some(AuditCheckpoint {
                    seq: q.seq,
                    hash: None,
                })
            }
        },
    };
    let body = EventBody::AuditHead(AuditHead {
        seq,
        hash: hash.clone(),
        since,
    });
    match enqueue(&w.store, body, MAX_PENDING_AUDIT_HEADS).await {
        Ok(Enqueued::Queued(_)) => {
            a.queued = Some(Some(AuditCheckpoint {
                seq,
                hash: Some(hash),
            }));
            a.next_due = Some(now + every);
        }
        Ok(Enqueued::Dropped) => a.next_due = Some(now + every),
        Err(e) => tracing::warn!(error = %e, "Failed to queue the audit head for HQ"),
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
    let Ok(status) = crate::hq::status::sync_status(&w.store, &w.settings, &w.sync) else {
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
