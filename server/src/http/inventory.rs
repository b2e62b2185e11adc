//! Stock levels: counts and adjustments, each journaled as a movement.

use actix_web::{HttpRequest, HttpResponse, get, post, put, web};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::{ApiError, AppState, idempotency_key};
use crate::domain::sale::{Movement, MovementKind};
use crate::sales::SellError;
use crate::sales::idempotency::{IdemOutcome, IdemRecord, IdemState, fingerprint};
use crate::sales::journal;
use outpost_security::auth::roles::Permission;

/// Stock of one product and its latest movements.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockView {
    /// The product.
    pub sku: String,
    /// Units, or grams for weight items. May be negative until the next count.
    pub stock: i64,
    /// Latest movements, oldest first (at most 50).
    pub movements: Vec<Movement>,
}

/// A stock count.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockCount {
    /// The counted stock (units, or grams for weight items), 0 to 1,000,000,000.
    pub stock: i64,
    /// Why the count differs (found, stolen, miscounted): 1 to 200 characters, kept on
    /// the movement.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub reason: Option<String>,
}

/// A correction of stock.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    /// Change, non-zero, at most 1,000,000,000 either way.
    pub delta: i64,
    /// Why (damaged, expired, found, delivery...): 1 to 200 characters.
    pub reason: String,
    /// A delivery rather than a correction.
    #[serde(default)]
    pub receipt: bool,
}

const MAX_STOCK: i64 = 1_000_000_000;

fn known(state: &AppState, sku: &str) -> Result<(), ApiError> {
    if state.sales.store().catalog().product_json(sku)?.is_none() {
        return Err(ApiError::not_found(
            "product_not_found",
            format!("no product with SKU {sku}"),
        ));
    }
    Ok(())
}

/// Stock of a product.
#[utoipa::path(tag = "inventory", params(("sku" = String, Path)), responses((status = 200, body = StockView), (status = 404, body = super::ErrorBody)))]
#[get("/api/v1/inventory/{sku}")]
pub async fn get_inventory(
    caller: Caller,
    state: web::Data<AppState>,
    sku: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    known(&state, &sku)?;
    stock_view(&state, sku.into_inner())
}

fn stock_view(state: &AppState, sku: String) -> Result<HttpResponse, ApiError> {
    let store = state.sales.store();
    Ok(HttpResponse::Ok().json(StockView {
        stock: store.stock(&sku)?,
        movements: store.movements(Some(&sku), 50)?,
        sku,
    }))
}

/// Set stock after a count. Setting the same count again records no movement. An
/// optional `Idempotency-Key` makes a retry replay the first count's answer.
#[utoipa::path(
    tag = "inventory",
    params(("sku" = String, Path), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "optional: 1 to 255 visible ASCII characters, unique per count, reused on retry")),
    request_body = StockCount,
    responses((status = 200, body = StockView), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody))
)]
#[put("/api/v1/inventory/{sku}")]
pub async fn put_inventory(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    sku: web::Path<String>,
    body: JsonBody<StockCount>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let key = req
        .headers()
        .contains_key("idempotency-key")
        .then(|| idempotency_key(&req))
        .transpose()?;
    count(&state, caller.name(), key, sku.clone(), body.0).await?;
    stock_view(&state, sku.into_inner())
}

/// Sets the stock of `sku` to a count as `actor`: the movement of the difference
/// (`None` when the stock already had that value: nothing moves, and the key keeps
/// that answer, so the same count sent again after a sale stays this count), and
/// whether it is the replay of an earlier count with the same `key`.
/// The API's handler and the technician console both count through it.
pub async fn count(
    state: &AppState,
    actor: &str,
    key: Option<crate::domain::sale::IdempotencyKey>,
    sku: String,
    count: StockCount,
) -> Result<(Option<Movement>, bool), ApiError> {
    let stock = count.stock;
    if !(0..=MAX_STOCK).contains(&stock) {
        return Err(ApiError::unprocessable(
            "invalid_stock",
            format!("stock must be between 0 and {MAX_STOCK}"),
        )
        .field("stock"));
    }
    let reason = count.reason.as_deref().map(str::trim).map(str::to_owned);
    if reason
        .as_deref()
        .is_some_and(|r| r.is_empty() || r.chars().count() > 200)
    {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            "reason must be 1 to 200 characters",
        )
        .field("reason"));
    }
    known(state, &sku)?;
    state.security.audit(
        actor,
        "inventory.count",
        &format!("sku {sku} stock {stock}"),
    );
    let fp = fingerprint(&sku, &count);
    let scope = "count";
    let s = sku;
    let written = state
        .sales
        .store()
        .write(move |tx| -> Result<(Option<Movement>, bool), SellError> {
            if let Some(key) = &key
                && let Some(rec) = journal::idem_get(tx, scope, key)?
            {
                if journal::idem_unchanged(&rec, &fp) {
                    return Ok((None, true));
                }
                let id = journal::idem_existing(&rec, &fp)?;
                let raw = tx
                    .get(&crate::store::keys::movement(id))?
                    .ok_or(SellError::InProgress)?;
                return Ok((Some(crate::store::from_json(&raw, "movement")?), true));
            }
            // The key keeps the count's outcome, a count that moved nothing too: sent
            // again after a sale, it stays this count.
            let remember = |tx: &mut crate::store::Tx<'_>, outcome: IdemOutcome| {
                if let Some(key) = &key {
                    let state = IdemState::Done { outcome };
                    let fingerprint = fp.clone();
                    journal::idem_put(tx, scope, key, &IdemRecord { fingerprint, state });
                }
            };
            let current = match tx.get(&crate::store::keys::stock(&s))? {
                Some(v) => crate::store::keys::decode_i64(&v)?,
                None => 0,
            };
            if current == stock {
                remember(tx, IdemOutcome::Unchanged);
                return Ok((None, false));
            }
            let m = journal::move_stock(
                tx,
                &s,
                stock - current,
                MovementKind::Count,
                reason,
                None,
                OffsetDateTime::now_utc(),
            )?;
            remember(tx, IdemOutcome::Movement { id: m.id });
            Ok((Some(m), false))
        })
        .await??;
    Ok(written)
}

/// Adjust stock by a delta with a reason. Needs an `Idempotency-Key`.
#[utoipa::path(
    tag = "inventory",
    params(("sku" = String, Path), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters, unique per operation, reused on retry")),
    request_body = Adjustment,
    responses((status = 201, body = Movement), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody))
)]
#[post("/api/v1/inventory/{sku}/adjustments")]
pub async fn post_adjustment(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    sku: web::Path<String>,
    body: JsonBody<Adjustment>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Configure)?;
    let key = idempotency_key(&req)?;
    let (movement, replayed) = adjust(&state, caller.name(), key, sku.into_inner(), body.0).await?;
    let mut r = HttpResponse::Created();
    if replayed {
        r.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(r.json(movement))
}

/// Adjusts the stock of `sku` as `actor` under idempotency `key`: the movement, and
/// whether it is the replay of an earlier one with the same key. The API's handler and
/// the technician console both adjust through it.
pub async fn adjust(
    state: &AppState,
    actor: &str,
    key: crate::domain::sale::IdempotencyKey,
    sku: String,
    adj: Adjustment,
) -> Result<(Movement, bool), ApiError> {
    if adj.delta == 0 || adj.delta.unsigned_abs() > MAX_STOCK as u64 {
        return Err(ApiError::unprocessable(
            "invalid_delta",
            format!("delta must be non-zero and at most {MAX_STOCK} either way"),
        )
        .field("delta"));
    }
    let reason = adj.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_reason",
            "reason must be 1 to 200 characters",
        )
        .field("reason"));
    }
    known(state, &sku)?;
    state.security.audit(
        actor,
        "inventory.adjust",
        &format!("sku {} delta {}", sku, adj.delta),
    );
    let fp = fingerprint(&sku, &adj);
    let scope = "adjustment";
    let s = sku;
    let written = state
        .sales
        .store()
        .write(move |tx| -> Result<(Movement, bool), SellError> {
            if let Some(rec) = journal::idem_get(tx, scope, &key)? {
                let id = journal::idem_existing(&rec, &fp)?;
                let raw = tx
                    .get(&crate::store::keys::movement(id))?
                    .ok_or(SellError::InProgress)?;
                return Ok((crate::store::from_json(&raw, "movement")?, true));
            }
            let kind = if adj.receipt {
                MovementKind::Receipt
            } else {
                MovementKind::Adjustment
            };
            let m = journal::move_stock(
                tx,
                &s,
                adj.delta,
                kind,
                Some(reason),
                None,
                OffsetDateTime::now_utc(),
            )?;
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
        .await??;
    Ok(written)
}
