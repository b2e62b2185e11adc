//! What the dashboard shows, gathered from the services the REST handlers call.

use std::time::Duration;

use outpost_security::lease::LeaseState;
use time::OffsetDateTime;

use crate::access::LeaseStatus;
use crate::devices::DeviceView;
use crate::domain::sale::Sale;
use crate::hq::status::SyncStatus;
use crate::http::AppState;
pub use crate::http::process::Disk;
use crate::http::updates::UpdateStatus;
use crate::mesh::PeersView;
use crate::store::Store;

/// One read of the unit's state. A part that could not be read holds why (a locked
/// unit cannot read its journal, a mesh node may not answer).
pub struct Facts {
    /// The running release.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// The store's name.
    pub store_name: String,
    /// The data dir's file system.
    pub disk: Option<Disk>,
    /// The presence lease as status pages show it.
    pub lease: LeaseStatus,
    /// The lease's state machine, for the time left.
    pub lease_state: Option<LeaseState>,
    /// The HQ link and the outbox.
    pub sync: Result<SyncStatus, String>,
    /// The store mesh.
    pub mesh: Result<PeersView, String>,
    /// Every device.
    pub devices: Vec<DeviceView>,
    /// Receipts waiting for the printer.
    pub receipt_queue: usize,
    /// Why the printer is not printing them.
    pub printer_error: Option<String>,
    /// The most recent sale.
    pub last_sale: Result<Option<Sale>, String>,
    /// Releases and the last update.
    pub update: Result<UpdateStatus, String>,
    /// Card and wallet money approved offline and not yet forwarded, with its caps.
    pub exposure: Option<crate::sales::exposure::ExposureView>,
    /// The store's currency, for the amounts above.
    pub currency: crate::domain::money::Currency,
    /// The vending machine's raised alerts (none where the unit runs no machine).
    pub vending_alerts: Result<Vec<crate::vending::alerts::ActiveAlert>, String>,
}

/// How long the mesh node may take to answer before the dashboard shows it as not
/// answering.
const MESH_WAIT: Duration = Duration::from_secs(2);

impl Facts {
    /// Reads everything now.
    pub async fn gather(state: &AppState) -> Facts {
        let store = state.sales.store();
        let mesh =
            match tokio::time::timeout(MESH_WAIT, crate::mesh::view(state.mesh.as_ref())).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the mesh node did not answer in time".to_owned()),
            };
        let spooler = state.devices.spooler();
        // Bounded by the exposure's own report timeout; keeps the line current.
        state.sales.refresh_exposure().await;
        Facts {
            version: outpost_updater::stamp::running_version().to_string(),
            uptime_secs: state.started.elapsed().as_secs(),
            store_name: state.settings.store.name.clone(),
            disk: Disk::of(&state.settings.data_dir),
            lease: state.security.lease_status(),
            lease_state: state.security.lease_state(),
            sync: crate::hq::status::sync_status(store, &state.settings, &state.sync)
                .map_err(|e| e.to_string()),
            mesh,
            devices: state.devices.views(),
            receipt_queue: spooler.queue().len(),
            printer_error: spooler.last_error(),
            last_sale: last_sale(store).map_err(|e| e.to_string()),
            update: update_status(state),
            exposure: state.sales.exposure().map(|x| x.view()),
            currency: state.settings.currency(),
            vending_alerts: if super::session::is_vending_site(state) {
                crate::vending::alerts::active(store).map_err(|e| e.to_string())
            } else {
                Ok(Vec::new())
            },
        }
    }

    /// Seconds until the lease expires (active) or the unit locks (grace).
    pub fn lease_left_secs(&self, now: OffsetDateTime) -> Option<u64> {
        left_secs(self.lease_state.as_ref(), now)
    }
}

/// Seconds until the lease expires (active) or the unit locks (grace); `None` when
/// locked or not enrolled.
pub fn left_secs(state: Option<&LeaseState>, now: OffsetDateTime) -> Option<u64> {
    let until = match state? {
        LeaseState::Active { expires_at } => *expires_at,
        LeaseState::Grace { locks_at, .. } => *locks_at,
        // Locked, or a state this version does not know: no time left to show.
        _ => return None,
    };
    Some((until - now).whole_seconds().max(0) as u64)
}

/// This unit's releases and the last update, as `GET /api/v1/update` answers.
pub fn update_status(state: &AppState) -> Result<UpdateStatus, String> {
    let floor = crate::access::releases::floor(state.sales.store())
        .map_err(|e| e.to_string())?
        .map(|v| v.to_string());
    crate::http::updates::update_status(state.settings.updates.releases_dir.as_deref(), floor)
        .map_err(|e| e.to_string())
}

/// The most recent sale of the last 30 days: the journal is ordered by time-ordered
/// ids, so it looks in ever wider windows back from now and takes the last of the
/// first window that holds any. Bounded (the dashboard asks every few seconds): at most
/// [`PROBE`] sales read per window; a store selling more than that in its narrowest
/// window, one minute, does not exist.
pub fn last_sale(store: &Store) -> Result<Option<Sale>, crate::store::StoreError> {
    let now_ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    for window_ms in [60_000i128, 3_600_000, 86_400_000, 30 * 86_400_000] {
        let from = (now_ms - window_ms).max(1) as u64;
        let mut sales = store.sales_after(Some(uuid_floor(from)), PROBE)?;
        if let Some(s) = sales.pop() {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// Sales [`last_sale`] reads per window at most.
const PROBE: usize = 500;

/// The largest UUIDv7 of the millisecond before `ms`: a scan after it starts with the
/// first sale at or after `ms`.
pub fn uuid_floor(ms: u64) -> uuid::Uuid {
    let ms = ms.saturating_sub(1);
    uuid::Uuid::from_u128((u128::from(ms) << 80) | ((1u128 << 80) - 1))
}
