//! Devices: the list with states and health, health checks on demand, receipt
//! reprints and the reprint queue.

use actix_web::{HttpResponse, get, post, web};
use outpost_peripherals::HealthLevel;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::devices::DeviceView;
use crate::devices::receipts::{QueueError, QueuedReceipt, ReceiptStatus};
use outpost_security::auth::roles::Permission;

/// Every configured device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    /// In configuration order, printers first.
    pub items: Vec<DeviceView>,
}

/// The devices with their state, health, last error and statistics.
#[utoipa::path(tag = "devices", responses((status = 200, body = DeviceList)))]
#[get("/api/v1/devices")]
pub async fn list_devices(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageDevices)?;
    Ok(HttpResponse::Ok().json(DeviceList {
        items: state.devices.views(),
    }))
}

/// How far a health check goes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HealthQuery {
    /// `internal` (ask the device; default) or `external` (exercise it, e.g. a test
    /// page on a printer).
    #[param(pattern = "^(internal|external)$")]
    pub level: Option<String>,
}

/// Check a device now (opening it first if it is closed) and return it.
#[utoipa::path(tag = "devices", params(("id" = String, Path), HealthQuery), responses((status = 200, body = DeviceView), (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
#[post("/api/v1/devices/{id}/health-check")]
pub async fn health_check(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<HealthQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageDevices)?;
    let level = match query.level.as_deref() {
        None | Some("internal") => HealthLevel::Internal,
        Some("external") => HealthLevel::External,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_level",
                format!("level {other:?}: use internal or external"),
            )
            .field("level"));
        }
    };
    state.security.audit(
        caller.name(),
        "device.health_check",
        &format!("device {id}"),
    );
    let view = state
        .devices
        .health_check(&id, level)
        .await
        .ok_or_else(|| {
            ApiError::not_found("device_not_found", format!("no device with id {id}"))
        })?;
    Ok(HttpResponse::Ok().json(view))
}

/// The answer to a reprint.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReprintView {
    /// The sale.
    pub sale_id: Uuid,
    /// `printed` or `queued` (the printer prints it when it can).
    pub receipt_status: ReceiptStatus,
    /// Why it did not print now, when it did not.
    pub error: Option<String>,
}

/// Print a sale's receipt again (one more copy). Answers once it printed, or once it
/// is safely queued when the printer cannot print now.
#[utoipa::path(tag = "devices", params(("id" = String, Path)), responses((status = 202, body = ReprintView), (status = 404, body = super::ErrorBody), (status = 503, body = super::ErrorBody, description = "the receipt queue is full")))]
#[post("/api/v1/sales/{id}/reprint")]
pub async fn reprint(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    let not_found = || ApiError::not_found("sale_not_found", format!("no sale with id {id}"));
    let sale_id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    if state.sales.store().sale(sale_id)?.is_none() {
        return Err(not_found());
    }
    state
        .security
        .audit(caller.name(), "device.reprint", &format!("sale {sale_id}"));
    let spooler = state.devices.spooler();
    match spooler.queue().enqueue_reprint(sale_id).await {
        Ok(_) => {}
        Err(QueueError::Full(n)) => {
            return Err(ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "receipt_queue_full",
                format!("{n} receipts already wait for the printer; fix the printer first"),
            )
            .header("retry-after", "30"));
        }
        Err(QueueError::Store(e)) => return Err(e.into()),
    }
    let wait = std::time::Duration::from_millis(state.settings.receipts.print_wait_ms);
    let (receipt_status, error) = match spooler.wait_printed(sale_id, wait).await {
        crate::devices::receipts::PrintOutcome::Printed => (ReceiptStatus::Printed, None),
        crate::devices::receipts::PrintOutcome::Queued(why) => (ReceiptStatus::Queued, Some(why)),
    };
    Ok(HttpResponse::Accepted().json(ReprintView {
        sale_id,
        receipt_status,
        error,
    }))
}

/// The reprint queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptQueueView {
    /// Receipts waiting, oldest first (at most 500 shown).
    pub items: Vec<QueuedReceipt>,
    /// How many wait in all.
    pub total: usize,
    /// Why the printer is not printing them, while it is not.
    pub printer_error: Option<String>,
}

/// Receipts waiting for the printer, oldest first.
#[utoipa::path(tag = "devices", responses((status = 200, body = ReceiptQueueView)))]
#[get("/api/v1/receipts/queue")]
pub async fn receipt_queue(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageDevices)?;
    let spooler = state.devices.spooler();
    Ok(HttpResponse::Ok().json(ReceiptQueueView {
        items: spooler.queue().list(500)?,
        total: spooler.queue().len(),
        printer_error: spooler.last_error(),
    }))
}

/// What a simulated printer printed last.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastReceipt {
    /// The printer.
    pub device: String,
    /// The receipt as the simulator rendered it from the ESC/POS bytes it received.
    pub text: String,
}

/// The last receipt a simulated printer (`driver = "sim"`, as in `outpost demo`)
/// printed, rendered from the bytes it received. Real printers keep no copy.
#[utoipa::path(tag = "devices", params(("id" = String, Path)), responses((status = 200, body = LastReceipt), (status = 404, body = super::ErrorBody)))]
#[get("/api/v1/devices/{id}/last-receipt")]
pub async fn last_receipt(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageDevices)?;
    match state.devices.simulated_last_receipt(&id) {
        Some(Some(text)) => Ok(HttpResponse::Ok().json(LastReceipt {
            device: id.into_inner(),
            text,
        })),
        Some(None) => Err(ApiError::not_found(
            "no_receipt_yet",
            format!("printer {id} has printed nothing yet"),
        )),
        None => Err(ApiError::not_found(
            "not_a_simulated_printer",
            format!("{id} is not a simulated printer; only those keep what they printed"),
        )),
    }
}
