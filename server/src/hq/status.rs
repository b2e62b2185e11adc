//! The sync status: what is waiting for HQ, whether the link works, and the versions
//! of what HQ pushed. The REST API, gRPC `GetStatus`, the metrics and the event
//! watcher all read it from here.

use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::uplink::SyncState;
use crate::config::Settings;
use crate::store::outbox;
use crate::store::{PROMOTIONS_VERSION, Store, StoreError, keys};

/// The sync status the REST API, gRPC `GetStatus` and the metrics share.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    /// Whether an uplink to HQ is configured.
    pub uplink_enabled: bool,
    /// Whether a session with HQ is up now.
    pub connected: bool,
    /// Outbox entries not yet acknowledged by HQ.
    pub outbox_pending: u64,
    /// Bytes of their records.
    pub outbox_bytes: u64,
    /// Age of the oldest, in seconds (0 when none).
    pub outbox_oldest_age_secs: u64,
    /// Highest sequence HQ acknowledged this run (0: none yet).
    pub acked_seq: u64,
    /// Unix milliseconds of the last acknowledgment (0: never this run).
    pub last_sync_unix_ms: i64,
    /// Whether the backlog alert is raised (oldest entry older than the limit).
    pub alert: bool,
    /// `ok` or `degraded`.
    pub health: &'static str,
    /// Why not ok.
    pub reasons: Vec<String>,
    /// Why the last uplink session failed, if it did.
    pub last_error: Option<String>,
    /// Envelopes sent this run (including resends after reconnects).
    pub sent: u64,
    /// Uplink sessions started this run.
    pub sessions: u64,
    /// The versions of what HQ pushed that are live now.
    pub versions: PushedVersions,
    /// Device events, alerts and telemetry among `outbox_pending` (each kind is
    /// capped: `[events] max_pending_*`).
    pub events_pending: outbox::events::EventsPending,
}

/// The live version of each thing HQ pushes (0: never pushed; the catalog's is 0
/// when it did not come from HQ).
#[derive(Debug, Clone, Copy, Default, serde::Serialize, utoipa::ToSchema)]
pub struct PushedVersions {
    /// Catalog.
    pub catalog: u64,
    /// Promotions.
    pub promotions: u64,
    /// Tax table.
    pub tax_rates: u64,
    /// Planogram.
    pub planogram: u64,
    /// Store profile (name, receipt header).
    pub store_config: u64,
    /// Device set stored (it applies at the next start).
    pub device_config: u64,
    /// Device set the running devices were opened with (0: the config file's).
    pub device_config_applied: u64,
    /// Stock counts.
    pub stock_counts: u64,
}

/// The versions of what HQ pushed.
pub fn pushed_versions(store: &Store, sync: &SyncState) -> Result<PushedVersions, StoreError> {
    use crate::hq::records as hs;
    let meta = |key: &str| -> Result<u64, StoreError> {
        match store.meta_get(key)? {
            Some(v) => keys::decode_u64(&v),
            None => Ok(0),
        }
    };
    Ok(PushedVersions {
        catalog: store.catalog().version.parse().unwrap_or(0),
        promotions: meta(PROMOTIONS_VERSION)?,
        tax_rates: hs::version(store, hs::TAX)?,
        planogram: hs::version(store, hs::PLANOGRAM)?,
        store_config: hs::version(store, hs::PROFILE)?,
        device_config: hs::version(store, hs::DEVICES)?,
        device_config_applied: sync.device_config_applied.load(Ordering::Relaxed),
        stock_counts: meta("stock_counts_version")?,
    })
}

/// Compute the sync status now.
pub fn sync_status(
    store: &Store,
    settings: &Settings,
    sync: &SyncState,
) -> Result<SyncStatus, StoreError> {
    let backlog = outbox::backlog(store)?;
    let age = backlog
        .oldest_at
        .map(|t| (OffsetDateTime::now_utc() - t).whole_seconds().max(0) as u64)
        .unwrap_or(0);
    let enabled = sync.enabled.load(Ordering::Relaxed);
    let alert = backlog.pending > 0 && age > settings.sync.alert_after_secs;
    let mut reasons = Vec::new();
    if alert {
        reasons.push(format!(
            "the oldest of {} entries waiting for HQ is {age} s old (limit {} s)",
            backlog.pending, settings.sync.alert_after_secs
        ));
    }
    if !enabled && backlog.pending > 0 {
        reasons.push("no HQ URL is configured: sales are kept here until one is".into());
    }
    let last_error = sync.last_error();
    if enabled && !sync.connected.load(Ordering::Relaxed) {
        reasons.push(match &last_error {
            Some(e) => format!("not connected to HQ: {e}"),
            None => "not connected to HQ yet".into(),
        });
    }
    Ok(SyncStatus {
        uplink_enabled: enabled,
        connected: sync.connected.load(Ordering::Relaxed),
        outbox_pending: backlog.pending,
        outbox_bytes: backlog.bytes,
        outbox_oldest_age_secs: age,
        acked_seq: sync.acked_seq.load(Ordering::Relaxed),
        last_sync_unix_ms: sync.last_sync_ms.load(Ordering::Relaxed),
        alert,
        health: if reasons.is_empty() { "ok" } else { "degraded" },
        reasons,
        last_error,
        sent: sync.sent.load(Ordering::Relaxed),
        sessions: sync.sessions.load(Ordering::Relaxed),
        versions: unless_locked(pushed_versions(store, sync))?,
        events_pending: unless_locked(outbox::events::events_pending(store))?,
    })
}

/// While the device is locked its data key is wiped and encrypted counters cannot be
/// read: the status still answers (it says why it is locked), with these at zero.
fn unless_locked<T: Default>(r: Result<T, StoreError>) -> Result<T, StoreError> {
    match r {
        Err(StoreError::DeviceLocked) => Ok(T::default()),
        other => other,
    }
}
