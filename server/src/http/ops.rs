//! Health, metrics and the OpenAPI document.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState};
use outpost_security::auth::roles::Permission;

/// Liveness and what is running.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: &'static str,
    /// Outpost version (the binary's release stamp).
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Products in the live catalog.
    pub catalog_products: u64,
}

/// Is the server up.
#[utoipa::path(tag = "ops", security(()), responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: outpost_updater::stamp::running_version().to_string(),
        uptime_secs: state.started.elapsed().as_secs(),
        catalog_products: state.sales.store().catalog().len,
    })
}

/// What is waiting for HQ, and how the link to HQ is doing.
#[utoipa::path(tag = "ops", responses((status = 200, body = crate::hq::status::SyncStatus)))]
#[get("/api/v1/sync/status")]
pub async fn sync_status(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadLogs)?;
    let status = crate::hq::status::sync_status(state.sales.store(), &state.settings, &state.sync)?;
    Ok(HttpResponse::Ok().json(status))
}

/// The presence lease: `off`, `active`, `grace` or `locked`, and why.
#[utoipa::path(tag = "ops", responses((status = 200, body = crate::access::LeaseStatus)))]
#[get("/api/v1/security/status")]
pub async fn security_status(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadLogs)?;
    Ok(HttpResponse::Ok().json(state.security.lease_status()))
}

/// Prometheus metrics.
#[utoipa::path(
    tag = "ops",
    security(("metrics_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(
    _reader: super::auth::MetricsReader,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let store = state.sales.store();
    let w = store.writer_stats();
    let sync = crate::hq::status::sync_status(store, &state.settings, &state.sync)?;
    let outbox = sync.outbox_pending;
    let pending = store.pending_ids()?.len();
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "outpost_storage_flushes_total",
        "counter",
        "Group commits flushed to disk (one fsync each).",
        w.flushes.load(Ordering::Relaxed),
    );
    metric(
        "outpost_storage_jobs_total",
        "counter",
        "Writer jobs run.",
        w.jobs.load(Ordering::Relaxed),
    );
    metric(
        "outpost_storage_committed_jobs_total",
        "counter",
        "Writer jobs whose writes were kept.",
        w.committed_jobs.load(Ordering::Relaxed),
    );
    metric(
        "outpost_outbox_pending",
        "gauge",
        "Outbox entries waiting for HQ.",
        outbox,
    );
    metric(
        "outpost_outbox_bytes",
        "gauge",
        "Bytes of the records waiting for HQ.",
        sync.outbox_bytes,
    );
    metric(
        "outpost_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest entry waiting for HQ.",
        sync.outbox_oldest_age_secs,
    );
    let lease = state.security.lease_status();
    metric(
        "outpost_lease_grace",
        "gauge",
        "1 while the presence lease has expired and the offline grace runs.",
        u64::from(lease.state == "grace"),
    );
    metric(
        "outpost_locked",
        "gauge",
        "1 while the device is locked (no lease, lease and grace expired, HQ lock or tamper).",
        u64::from(!lease.can_transact),
    );
    metric(
        "outpost_outbox_alert",
        "gauge",
        "1 when the oldest entry waiting for HQ is older than sync.alert_after_secs.",
        u64::from(sync.alert),
    );
    metric(
        "outpost_uplink_connected",
        "gauge",
        "1 while a session with HQ is up.",
        u64::from(sync.connected),
    );
    metric(
        "outpost_uplink_acked_seq",
        "gauge",
        "Highest outbox sequence HQ acknowledged this run.",
        sync.acked_seq,
    );
    metric(
        "outpost_uplink_sent_total",
        "counter",
        "Envelopes sent to HQ, resends included.",
        sync.sent,
    );
    metric(
        "outpost_uplink_sessions_total",
        "counter",
        "Uplink sessions started.",
        sync.sessions,
    );
    for (kind, n) in [
        ("device_event", sync.events_pending.device_event),
        ("alert", sync.events_pending.alert),
        ("telemetry", sync.events_pending.telemetry),
    ] {
        metric(
            &format!("outpost_outbox_events_pending_{kind}"),
            "gauge",
            "Entries of this event kind among those waiting for HQ (capped by [events] max_pending_*).",
            n,
        );
    }
    metric(
        "outpost_payments_pending",
        "gauge",
        "Checkouts and refunds waiting on the payment terminal.",
        pending as u64,
    );
    if let Some(x) = state.sales.exposure().map(|x| x.view()) {
        let minor = |m: crate::domain::money::Money| u64::try_from(m.0).unwrap_or(0);
        for (name, help, value) in [
            (
                "outpost_offline_exposure_minor",
                "Card and wallet money the terminal approved offline and has not forwarded yet, in minor units.",
                minor(x.used),
            ),
            (
                "outpost_offline_exposure_cap_minor",
                "The store's offline exposure cap, in minor units.",
                minor(x.store_cap),
            ),
            (
                "outpost_offline_exposure_largest_card_minor",
                "The most offline-approved money not yet forwarded on one card, in minor units.",
                minor(x.largest_card),
            ),
            (
                "outpost_offline_exposure_card_cap_minor",
                "The per-card offline exposure cap, in minor units.",
                minor(x.per_card_cap),
            ),
            (
                "outpost_offline_approvals",
                "Payments the terminal approved offline and has not forwarded yet.",
                x.approvals as u64,
            ),
        ] {
            metric(name, "gauge", help, value);
        }
    }
    metric(
        "outpost_catalog_products",
        "gauge",
        "Products in the live catalog.",
        store.catalog().len,
    );
    metric(
        "outpost_uptime_seconds",
        "gauge",
        "Seconds since start.",
        state.started.elapsed().as_secs(),
    );
    let journal = outpost_updater::state::UpdateState::of_releases(
        state.settings.updates.releases_dir.as_deref(),
    );
    metric(
        "outpost_update_on_probation",
        "gauge",
        "1 while a release switched to by an update waits for its health gate.",
        u64::from(journal.pending.is_some()),
    );
    metric(
        "outpost_update_last_rolled_back",
        "gauge",
        "1 when the last update was rolled back.",
        u64::from(
            journal
                .last
                .as_ref()
                .is_some_and(|l| l.result != outpost_updater::state::Result::Installed),
        ),
    );
    let _ = writeln!(
        out,
        "# HELP outpost_release_info The running release.\n# TYPE outpost_release_info gauge\noutpost_release_info{{version=\"{}\"}} 1",
        outpost_updater::stamp::running_version()
    );
    more_metrics(&state, &mut out).await;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

/// The families Prometheus users look for first: build, devices, mesh bytes, disk,
/// the process, requests, checkouts and refunds.
async fn more_metrics(state: &AppState, out: &mut String) {
    use super::observe::label;
    let _ = writeln!(
        out,
        "# HELP outpost_build_info The running build (always 1).\n# TYPE outpost_build_info gauge\noutpost_build_info{{version=\"{}\",target=\"{}\",profile=\"{}\"}} 1",
        label(&outpost_updater::stamp::running_version().to_string()),
        label(outpost_updater::target()),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let left = match state.security.lease_state() {
        Some(outpost_security::lease::LeaseState::Active { expires_at }) => Some(expires_at),
        Some(outpost_security::lease::LeaseState::Grace { locks_at, .. }) => Some(locks_at),
        _ => None,
    };
    if let Some(until) = left {
        let secs = (until - time::OffsetDateTime::now_utc())
            .whole_seconds()
            .max(0);
        let _ = writeln!(
            out,
            "# HELP outpost_lease_expires_in_seconds Seconds until the presence lease expires (active) or the unit locks (grace); absent when not enrolled or locked.\n# TYPE outpost_lease_expires_in_seconds gauge\noutpost_lease_expires_in_seconds {secs}"
        );
    }
    let devices = state.devices.views();
    let _ = writeln!(
        out,
        "# HELP outpost_device_up 1 while the device is usable.\n# TYPE outpost_device_up gauge"
    );
    for d in &devices {
        let kind = serde_json::to_value(d.kind).unwrap_or_default();
        let _ = writeln!(
            out,
            "outpost_device_up{{device=\"{}\",kind=\"{}\"}} {}",
            label(&d.id),
            label(kind.as_str().unwrap_or_default()),
            u8::from(d.usable)
        );
    }
    let _ = writeln!(
        out,
        "# HELP outpost_device_health The last health check's verdict: 1 on the label it gave.\n# TYPE outpost_device_health gauge"
    );
    for d in &devices {
        let verdict = serde_json::to_value(d.health.health).unwrap_or_default();
        for health in ["unknown", "ok", "degraded", "failed"] {
            let _ = writeln!(
                out,
                "outpost_device_health{{device=\"{}\",health=\"{health}\"}} {}",
                label(&d.id),
                u8::from(verdict.as_str() == Some(health))
            );
        }
    }
    if let Ok(Ok(mesh)) = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        crate::mesh::view(state.mesh.as_ref()),
    )
    .await
        && mesh.enabled
    {
        let sum = |f: fn(&outpost_p2p::ArtifactStatus) -> u64| -> u64 {
            mesh.artifacts.iter().map(f).sum()
        };
        let _ = writeln!(
            out,
            "# HELP outpost_mesh_received_bytes Artifact bytes this unit received, from HQ (origin) or from store peers.\n# TYPE outpost_mesh_received_bytes counter"
        );
        for (source, bytes) in [
            ("origin", sum(|a| a.origin_bytes)),
            ("peers", sum(|a| a.peer_bytes)),
        ] {
            let _ = writeln!(
                out,
                "outpost_mesh_received_bytes{{source=\"{source}\"}} {bytes}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP outpost_mesh_served_bytes Artifact bytes this unit gave its peers.\n# TYPE outpost_mesh_served_bytes counter\noutpost_mesh_served_bytes {}",
            sum(|a| a.served_bytes)
        );
        let _ = writeln!(
            out,
            "# HELP outpost_mesh_peers_connected Store peers connected now.\n# TYPE outpost_mesh_peers_connected gauge\noutpost_mesh_peers_connected {}",
            mesh.peers
                .iter()
                .filter(|p| p.state == outpost_p2p::PeerState::Connected)
                .count()
        );
    }
    if let Some(d) = super::process::Disk::of(&state.settings.data_dir) {
        let _ = writeln!(
            out,
            "# HELP outpost_data_disk_free_bytes Free space for the data dir.\n# TYPE outpost_data_disk_free_bytes gauge\noutpost_data_disk_free_bytes {}\n# HELP outpost_data_disk_size_bytes Size of the data dir's file system.\n# TYPE outpost_data_disk_size_bytes gauge\noutpost_data_disk_size_bytes {}",
            d.free, d.total
        );
    }
    if let Some(p) = super::process::ProcessStats::read() {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}\n# HELP process_cpu_seconds_total User and system CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n# HELP process_threads Threads.\n# TYPE process_threads gauge\nprocess_threads {}",
            p.rss_bytes, p.open_fds, p.cpu_seconds, p.threads
        );
    }
    super::observe::render(out);
}

/// This document.
#[utoipa::path(tag = "ops", security(()), responses((status = 200, description = "OpenAPI 3.1 document")))]
#[get("/api/v1/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::exact::document())
}
