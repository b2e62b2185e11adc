//! The planogram drift report: every technician's count of a slot against the model,
//! per slot over a time window (`docs/vending.md`, "Drift"). The same counts go to HQ
//! as `slot_count` events.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::domain::vending::SlotId;
use crate::vending::drift;
use outpost_security::auth::roles::Permission;

/// Which counts the report covers.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DriftQuery {
    /// Only this slot (tray letter and column, e.g. B7).
    #[param(pattern = "^[A-Z][1-9][0-9]?$")]
    pub slot: Option<String>,
    /// Counts at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub since: Option<String>,
}

/// The drift report: per slot, how often it was counted, how many of those counts
/// found the model right, the units found missing and beyond the model, and the
/// newest counts.
#[utoipa::path(
    tag = "vending",
    params(DriftQuery),
    responses((status = 200, body = drift::DriftReport), (status = 400, body = super::ErrorBody))
)]
#[get("/api/v1/vending/drift")]
pub async fn get_drift(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<DriftQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    let q = query.into_inner();
    let slot = q
        .slot
        .as_deref()
        .map(|s| {
            SlotId::parse(s)
                .map_err(|e| ApiError::bad_request("invalid_slot", e.to_string()).field("slot"))
        })
        .transpose()?;
    let since = q
        .since
        .as_deref()
        .map(|s| {
            OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
                ApiError::bad_request(
                    "invalid_time",
                    format!("since is not an RFC 3339 time: {e}"),
                )
                .field("since")
            })
        })
        .transpose()?;
    Ok(HttpResponse::Ok().json(drift::report(state.sales.store(), slot, since)?))
}
