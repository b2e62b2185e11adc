//! The exit check: staff or a gate scan a paid shopper's exit code and see what was
//! paid, whether the basket is picked for a re-scan, and whether the code was already
//! used to leave (docs/self-checkout.md).
//!
//! | key | value |
//! |---|---|
//! | `xp/` sale id | [`Passed`]: when and by whom the code let the basket out |

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use outpost_security::auth::roles::Permission;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::domain::money::Money;
use crate::domain::pricing::PricedCart;
use crate::shopper::exit;
use crate::store::{StoreError, from_json, to_json};

const PASSED: &[u8] = b"xp/";

fn passed_key(sale: Uuid) -> Vec<u8> {
    let mut k = PASSED.to_vec();
    k.extend_from_slice(sale.as_bytes());
    k
}

/// When an exit code let its basket out.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Passed {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who let it out (the staff member or terminal).
    pub by: String,
}

/// What an exit code stands for.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExitCheck {
    /// The sale.
    pub sale_id: Uuid,
    /// When it was paid.
    #[serde(with = "time::serde::rfc3339")]
    pub paid_at: OffsetDateTime,
    /// What was paid.
    pub total: Money,
    /// What was bought, as sold.
    pub cart: PricedCart,
    /// Whether the basket is picked for a re-scan (`[shopper] audit_percent` of
    /// baskets, drawn when the code was made).
    pub audit: bool,
    /// Whether any of it was refunded since.
    pub refunded: bool,
    /// When the code was already used to leave (a second use is suspect).
    pub passed: Option<Passed>,
}

fn open(state: &AppState, code: &str) -> Result<Uuid, ApiError> {
    super::require_unlocked(state)?;
    let cipher = state.security.cipher(exit::PURPOSE).map_err(|e| {
        tracing::error!(error = %e, "Failed to derive the exit code key");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "exit_code_unavailable",
            "the exit code key is not available (the data key is locked)",
        )
    })?;
    exit::open(&cipher, code).map_err(|e| ApiError::not_found("exit_code_invalid", e.to_string()))
}

fn check(state: &AppState, code: &str, sale_id: Uuid) -> Result<ExitCheck, ApiError> {
    let sale = state.sales.store().sale(sale_id)?.ok_or_else(|| {
        ApiError::not_found(
            "exit_code_invalid",
            "the code's sale is not in this store's journal",
        )
    })?;
    let store = state.sales.store();
    let passed = store
        .journal_get(&passed_key(sale_id))?
        .map(|raw| from_json::<Passed>(&raw, "exit pass"))
        .transpose()?;
    let refunded = !store.refunds_of(sale_id)?.is_empty();
    Ok(ExitCheck {
        sale_id,
        paid_at: sale.completed_at,
        total: sale.cart.total,
        cart: sale.cart,
        audit: exit::audited(code, state.shoppers.settings().audit_percent),
        refunded,
        passed,
    })
}

/// What a paid shopper's exit code stands for (staff and gate terminals).
#[utoipa::path(
    tag = "shopper",
    params(("code" = String, Path, description = "the exit code the shopper's phone shows")),
    responses(
        (status = 200, body = ExitCheck),
        (status = 404, body = super::ErrorBody, description = "not an exit code of this store (`exit_code_invalid`)"),
        (status = 423, body = super::ErrorBody),
    )
)]
#[get("/api/v1/exit-checks/{code}")]
pub async fn get_exit_check(
    caller: Caller,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    let sale_id = open(&state, &code)?;
    Ok(HttpResponse::Ok().json(check(&state, &code, sale_id)?))
}

/// Let the basket of an exit code out: recorded once; a code used before answers
/// `409 exit_code_used` with when.
#[utoipa::path(
    tag = "shopper",
    params(("code" = String, Path, description = "the exit code the shopper's phone shows")),
    responses(
        (status = 200, body = ExitCheck, description = "let out now"),
        (status = 404, body = super::ErrorBody, description = "not an exit code of this store (`exit_code_invalid`)"),
        (status = 409, body = super::ErrorBody, description = "the code already let its basket out (`exit_code_used`)"),
        (status = 423, body = super::ErrorBody),
    )
)]
#[post("/api/v1/exit-checks/{code}/pass")]
pub async fn pass_exit_check(
    caller: Caller,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    let sale_id = open(&state, &code)?;
    // The sale must exist before its pass is written.
    check(&state, &code, sale_id)?;
    let by = caller.name().to_owned();
    let earlier = state
        .sales
        .store()
        .write(move |tx| {
            let k = passed_key(sale_id);
            if let Some(raw) = tx.get(&k)? {
                return Ok(Some(from_json::<Passed>(&raw, "exit pass")?));
            }
            let p = Passed {
                at: OffsetDateTime::now_utc(),
                by,
            };
            tx.put(k, to_json(&p));
            Ok::<_, StoreError>(None)
        })
        .await??;
    if let Some(p) = earlier {
        let at =
            p.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exit_code_used",
            format!("this code already let its basket out at {at} ({})", p.by),
        ));
    }
    tracing::info!(%sale_id, "Shopper basket let out");
    Ok(HttpResponse::Ok().json(check(&state, &code, sale_id)?))
}
