//! Input devices over the API: a scale's weight and a scanner's scans.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use outpost_security::auth::roles::Permission;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::devices::inputs::{ScanPage, WeighError, WeightView};

/// Most scans one request returns.
const MAX_SCANS: usize = 100;

impl From<WeighError> for ApiError {
    fn from(e: WeighError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let r = ApiError::new(status, e.code, e.message);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.header("retry-after", "5")
        } else {
            r
        }
    }
}

/// The scale's weight now: live (`grams`, `stable`) and the stable weight a
/// checkout would sell by (`stable_grams`, absent while the weight moves).
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = WeightView),
        (status = 404, body = super::ErrorBody, description = "no such device"),
        (status = 409, body = super::ErrorBody, description = "`scale_overload` or `scale_underload`"),
        (status = 422, body = super::ErrorBody, description = "`not_a_scale`"),
        (status = 503, body = super::ErrorBody, description = "`device_unavailable`: the scale cannot be reached"),
    )
)]
#[get("/api/v1/devices/{id}/weight")]
pub async fn get_weight(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Terminals read the scale while selling.
    caller.require(Permission::Sell)?;
    Ok(HttpResponse::Ok().json(state.devices.weight(&id).await?))
}

/// Which scans to return.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ScansQuery {
    /// Scans after this sequence number (default 0: every scan kept).
    #[param(maximum = 18446744073709551615_u64)]
    pub after: Option<u64>,
    /// Wait up to this many ms for a scan when there is none yet (default 0, at most
    /// 30000): a long poll.
    #[param(maximum = 30000)]
    pub wait_ms: Option<u64>,
    /// Most scans returned (default and at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// A scanner's latest scans, each with its symbology and the product its barcode
/// resolves to; optionally waits for the next one. Rejected input is counted
/// (`rejected`) and its latest error shown (`last_event_error`).
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path), ScansQuery),
    responses(
        (status = 200, body = ScanPage),
        (status = 400, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody, description = "no such device"),
        (status = 422, body = super::ErrorBody, description = "`not_a_scanner`"),
    )
)]
#[get("/api/v1/devices/{id}/scans")]
pub async fn get_scans(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<ScansQuery>,
) -> Result<HttpResponse, ApiError> {
    // Terminals (and self-checkout kiosks) read the store's scanners while selling.
    caller.require(Permission::Sell)?;
    let wait = query.wait_ms.unwrap_or(0);
    if wait > 30_000 {
        return Err(
            ApiError::bad_request("invalid_wait", "wait_ms must be at most 30000").field("wait_ms"),
        );
    }
    let limit = match query.limit {
        None => MAX_SCANS,
        Some(n) if (1..=MAX_SCANS).contains(&n) => n,
        Some(_) => {
            return Err(
                ApiError::bad_request("invalid_limit", "limit must be 1 to 100").field("limit"),
            );
        }
    };
    let page = state
        .devices
        .scans(
            &id,
            query.after.unwrap_or(0),
            limit,
            std::time::Duration::from_millis(wait),
        )
        .await
        .map_err(|exists| {
            if exists {
                ApiError::unprocessable("not_a_scanner", format!("device {id} is not a scanner"))
            } else {
                ApiError::not_found("device_not_found", format!("no device with id {id}"))
            }
        })?;
    Ok(HttpResponse::Ok().json(page))
}
