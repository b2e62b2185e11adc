//! A vending site's slots: read by anyone who reads the catalog, edited, refilled and
//! counted by a technician or an admin (`configure`).

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::{ApiError, AppState, idempotency_key};
use crate::domain::vending::slot::{MAX_SLOT_CAPACITY, RawSlot, parse_slot};
use crate::domain::vending::{Climate, Slot, SlotId};
use crate::sales::SellError;
use crate::sales::idempotency::{IdemOutcome, IdemRecord, IdemState, fingerprint};
use crate::sales::journal;
use crate::vending::VendError;
use crate::vending::slots::{self, SlotMovement};
use outpost_security::auth::roles::Permission;

/// Movements shown with one slot.
const MOVEMENTS_SHOWN: usize = 50;

/// A slot and whether it is below par.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotView {
    /// The slot.
    #[serde(flatten)]
    pub slot: Slot,
    /// Below par: worth a refill visit.
    pub low: bool,
}

impl From<Slot> for SlotView {
    fn from(slot: Slot) -> Self {
        SlotView {
            low: slot.is_low(),
            slot,
        }
    }
}

/// Every slot of the machine.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotList {
    /// HQ's planogram version that last set the slots (0: only local edits).
    pub version: u64,
    /// In slot order (`A1`, `A2`, ..., `B1`).
    pub slots: Vec<SlotView>,
}

/// One slot with its latest movements.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotDetail {
    /// The slot.
    #[serde(flatten)]
    pub slot: SlotView,
    /// Its latest movements, oldest first (at most 50).
    pub movements: Vec<SlotMovement>,
}

/// A slot's configuration as a technician sets it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotBody {
    /// The product (a SKU of the catalog).
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    /// Price of one vend in minor units, 1 to 65,000.
    #[schema(minimum = 1, maximum = 65000)]
    pub price: i64,
    /// Most units the slot holds, 1 to 200.
    #[schema(minimum = 1, maximum = 200)]
    pub capacity: u32,
    /// Refill level and low mark, 0 to `capacity`.
    #[schema(minimum = 0, maximum = 200)]
    pub par: u32,
    /// Ambient (default) or chilled.
    #[serde(default)]
    pub climate: Climate,
}

/// Units put into a slot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillBody {
    /// 1 to 200, and at most what the slot has room for.
    #[schema(minimum = 1, maximum = 200)]
    pub units: u32,
}

/// A technician's count of a slot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountBody {
    /// Units counted, 0 to 200.
    #[schema(minimum = 0, maximum = 200)]
    pub count: u32,
    /// Why it differs (found, stolen, damaged): 1 to 200 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub reason: Option<String>,
}

impl From<VendError> for ApiError {
    fn from(e: VendError) -> Self {
        use actix_web::http::StatusCode;
        match e {
            VendError::Invalid {
                code,
                message,
                field,
            } => {
                let a = ApiError::unprocessable(code, message);
                match field {
                    Some(f) => a.field(f),
                    None => a,
                }
            }
            VendError::NoSlot(s) => ApiError::not_found("slot_not_found", format!("no slot {s}")),
            e @ VendError::NotSellable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "slot_not_sellable", e.to_string())
            }
            e @ VendError::Busy => {
                ApiError::new(StatusCode::CONFLICT, "vend_in_progress", e.to_string())
                    .header("retry-after", "2")
            }
            e @ VendError::KeyUsed(_) => {
                ApiError::new(StatusCode::CONFLICT, "in_progress", e.to_string())
                    .header("retry-after", "1")
            }
            e @ VendError::KeyReused => {
                ApiError::unprocessable("idempotency_key_reused", e.to_string())
                    .field("Idempotency-Key")
            }
            e @ VendError::DeviceUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "device_unavailable",
                e.to_string(),
            ),
            e @ VendError::OutcomeUnknown => {
                ApiError::new(StatusCode::ACCEPTED, "vend_outcome_unknown", e.to_string())
            }
            VendError::Pricing(p) => ApiError::unprocessable("pricing_failed", p.to_string()),
            VendError::Store(s) => s.into(),
            e @ VendError::Internal(_) => {
                tracing::error!(error = %e, "A vend failed inside Outpost");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

fn slot_id(raw: &str) -> Result<SlotId, ApiError> {
    SlotId::parse(raw)
        .map_err(|e| ApiError::bad_request("invalid_slot", e.to_string()).field("slot"))
}

/// Every slot of the machine.
#[utoipa::path(tag = "vending", responses((status = 200, body = SlotList)))]
#[get("/api/v1/vending/slots")]
pub async fn list_slots(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    let store = state.sales.store();
    Ok(HttpResponse::Ok().json(SlotList {
        version: slots::head(store)?.version,
        slots: slots::all(store)?.into_iter().map(SlotView::from).collect(),
    }))
}

/// One slot with its latest movements.
#[utoipa::path(
    tag = "vending",
    params(("slot" = String, Path, pattern = "^[A-Z][1-9][0-9]?$", description = "Tray letter and column, e.g. B7")),
    responses((status = 200, body = SlotDetail), (status = 404, body = super::ErrorBody))
)]
#[get("/api/v1/vending/slots/{slot}")]
pub async fn get_slot(
    caller: Caller,
    state: web::Data<AppState>,
    slot: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    let id = slot_id(&slot)?;
    detail(&state, id)
}

fn detail(state: &AppState, id: SlotId) -> Result<HttpResponse, ApiError> {
    let store = state.sales.store();
    let slot = slots::one(store, id)?.ok_or(VendError::NoSlot(id))?;
    Ok(HttpResponse::Ok().json(SlotDetail {
        slot: slot.into(),
        movements: slots::movements(store, Some(id), MOVEMENTS_SHOWN)?,
    }))
}

/// Create or reconfigure a slot. Its count stays; a new product over units of the old
/// one stops the slot selling until it is counted.
#[utoipa::path(
    tag = "vending",
    params(("slot" = String, Path, pattern = "^[A-Z][1-9][0-9]?$", description = "Tray letter and column, e.g. B7")),
    request_body = SlotBody,
    responses((status = 200, body = SlotView), (status = 422, body = super::ErrorBody))
)]
#[put("/api/v1/vending/slots/{slot}")]
pub async fn put_slot(
    caller: Caller,
    state: web::Data<AppState>,
    slot: web::Path<String>,
    body: JsonBody<SlotBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let id = slot_id(&slot)?;
    let b = body.0;
    let config = parse_slot(
        RawSlot {
            slot: id.to_string(),
            sku: b.sku,
            price: b.price,
            capacity: b.capacity,
            par: b.par,
            chilled: b.climate == Climate::Chilled,
        },
        "",
    )
    .map_err(|e| ApiError::unprocessable("invalid_slot_config", e.message).field(e.field))?;
    let store = state.sales.store();
    if store.catalog().product_json(config.sku.as_str())?.is_none() {
        return Err(ApiError::unprocessable(
            "product_not_found",
            format!("no product with SKU {}", config.sku.as_str()),
        )
        .field("sku"));
    }
    state.security.audit(
        caller.name(),
        "vending.slot",
        &format!(
            "slot {id} sku {} price {} capacity {} par {}",
            config.sku.as_str(),
            config.price.minor(),
            config.capacity,
            config.par
        ),
    );
    let s = slots::put_one(store, config).await?;
    Ok(HttpResponse::Ok().json(SlotView::from(s)))
}

/// Remove an empty slot.
#[utoipa::path(
    tag = "vending",
    params(("slot" = String, Path, pattern = "^[A-Z][1-9][0-9]?$", description = "Tray letter and column, e.g. B7")),
    responses((status = 204), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody))
)]
#[delete("/api/v1/vending/slots/{slot}")]
pub async fn delete_slot(
    caller: Caller,
    state: web::Data<AppState>,
    slot: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let id = slot_id(&slot)?;
    state
        .security
        .audit(caller.name(), "vending.slot_removed", &format!("slot {id}"));
    slots::remove_one(state.sales.store(), id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Put units into a slot. Needs an `Idempotency-Key`: a retry adds nothing twice.
#[utoipa::path(
    tag = "vending",
    params(
        ("slot" = String, Path, pattern = "^[A-Z][1-9][0-9]?$", description = "Tray letter and column, e.g. B7"),
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters, unique per operation, reused on retry")
    ),
    request_body = RefillBody,
    responses((status = 201, body = SlotMovement), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody))
)]
#[post("/api/v1/vending/slots/{slot}/refill")]
pub async fn refill_slot(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    slot: web::Path<String>,
    body: JsonBody<RefillBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let key = idempotency_key(&req)?;
    let id = slot_id(&slot)?;
    let units = body.0.units;
    if !(1..=MAX_SLOT_CAPACITY).contains(&units) {
        return Err(ApiError::unprocessable(
            "invalid_refill",
            format!("units must be between 1 and {MAX_SLOT_CAPACITY}"),
        )
        .field("units"));
    }
    let fp = fingerprint(&id.to_string(), &units);
    let scope = "slot_refill";
    let written = state
        .sales
        .store()
        .write(move |tx| -> Result<(SlotMovement, bool), RefillFailed> {
            if let Some(rec) = journal::idem_get(tx, scope, &key)? {
                let mid = journal::idem_existing(&rec, &fp)?;
                let m = slots::movement_get(tx, mid)?.ok_or(SellError::InProgress)?;
                return Ok((m, true));
            }
            let (_, m) = slots::refill_tx(tx, id, units)?;
            journal::idem_put(
                tx,
                scope,
                &key,
                &IdemRecord {
                    fingerprint: fp,
                    state: IdemState::Done {
                        outcome: IdemOutcome::Movement { id: m.id },
                    },
                },
            );
            Ok((m, false))
        })
        .await?;
    let (movement, replayed) = match written {
        Ok(w) => w,
        Err(RefillFailed::Sell(e)) => return Err(e.into()),
        Err(RefillFailed::Vend(e)) => return Err(e.into()),
    };
    state.security.audit(
        caller.name(),
        "vending.refill",
        &format!("slot {id} units {units}"),
    );
    let mut r = HttpResponse::Created();
    if replayed {
        r.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(r.json(movement))
}

/// What can refuse a refill inside its write.
enum RefillFailed {
    Sell(SellError),
    Vend(VendError),
}

impl From<SellError> for RefillFailed {
    fn from(e: SellError) -> Self {
        RefillFailed::Sell(e)
    }
}

impl From<VendError> for RefillFailed {
    fn from(e: VendError) -> Self {
        RefillFailed::Vend(e)
    }
}

impl From<crate::store::StoreError> for RefillFailed {
    fn from(e: crate::store::StoreError) -> Self {
        RefillFailed::Vend(e.into())
    }
}

/// Set a slot's count after counting it: the difference is journaled with the reason,
/// on the slot and on the product's stock. Setting the same count again moves nothing.
#[utoipa::path(
    tag = "vending",
    params(("slot" = String, Path, pattern = "^[A-Z][1-9][0-9]?$", description = "Tray letter and column, e.g. B7")),
    request_body = CountBody,
    responses((status = 200, body = SlotDetail), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody))
)]
#[put("/api/v1/vending/slots/{slot}/count")]
pub async fn count_slot(
    caller: Caller,
    state: web::Data<AppState>,
    slot: web::Path<String>,
    body: JsonBody<CountBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let id = slot_id(&slot)?;
    let b = body.0;
    if b.count > MAX_SLOT_CAPACITY {
        return Err(ApiError::unprocessable(
            "invalid_count",
            format!("count must be between 0 and {MAX_SLOT_CAPACITY}"),
        )
        .field("count"));
    }
    let reason = match b.reason.map(|r| r.trim().to_owned()) {
        Some(r) if r.is_empty() || r.chars().count() > 200 => {
            return Err(ApiError::unprocessable(
                "invalid_reason",
                "reason must be 1 to 200 characters",
            )
            .field("reason"));
        }
        r => r,
    };
    state.security.audit(
        caller.name(),
        "vending.count",
        &format!("slot {id} count {}", b.count),
    );
    slots::count(state.sales.store(), id, b.count, reason).await?;
    detail(&state, id)
}

fn dex_identity(state: &AppState) -> crate::vending::dex::DexIdentity {
    crate::vending::dex::DexIdentity {
        unit: state.settings.store.id.clone(),
        location: state.sales.config().store_name.clone(),
    }
}

fn dex_response(file: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=us-ascii")
        .body(file)
}

/// The DEX/UCS audit file (EVA-DTS): paid, cash and cashless totals, per slot, since
/// initialisation and since the last reset, with its G85 CRC (`docs/vending.md`).
#[utoipa::path(
    tag = "vending",
    responses((status = 200, description = "The DEX file, CR LF separated segments", content_type = "text/plain", body = String))
)]
#[get("/api/v1/vending/dex")]
pub async fn get_dex(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let store = state.sales.store().clone();
    let who = dex_identity(&state);
    let file = web::block(move || crate::vending::dex::export(&store, &who))
        .await
        .map_err(|e| {
            ApiError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                e.to_string(),
            )
        })??;
    Ok(dex_response(file))
}

/// Close the audit interval: the DEX file up to now, then the "since reset" totals
/// start again at zero (a route driver's read with reset).
#[utoipa::path(
    tag = "vending",
    responses((status = 200, description = "The DEX file closing the interval", content_type = "text/plain", body = String))
)]
#[post("/api/v1/vending/dex/reset")]
pub async fn reset_dex(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    state.security.audit(
        caller.name(),
        "vending.dex_reset",
        "DEX interim totals reset",
    );
    let file =
        crate::vending::dex::export_and_reset(state.sales.store(), &dex_identity(&state)).await?;
    Ok(dex_response(file))
}

/// The machine's raised alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    /// Raised now, by alert then subject.
    pub alerts: Vec<crate::vending::alerts::ActiveAlert>,
}

/// The machine's raised alerts (temperature, door, slot levels, dispense and payment
/// faults).
#[utoipa::path(tag = "vending", responses((status = 200, body = AlertList)))]
#[get("/api/v1/vending/alerts")]
pub async fn list_alerts(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    Ok(HttpResponse::Ok().json(AlertList {
        alerts: crate::vending::alerts::active(state.sales.store())?,
    }))
}

/// Clear the temperature excursion once the chilled compartment is cold again:
/// chilled slots sell again. Refused (422 `cannot_clear`) while none is raised or it
/// is still too warm.
#[utoipa::path(
    tag = "vending",
    responses((status = 204), (status = 422, body = super::ErrorBody))
)]
#[post("/api/v1/vending/alerts/temperature/clear")]
pub async fn clear_temperature(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    state.vending.clear_temperature().await?;
    state.security.audit(
        caller.name(),
        "vending.temperature_cleared",
        "temperature excursion cleared",
    );
    Ok(HttpResponse::NoContent().finish())
}
