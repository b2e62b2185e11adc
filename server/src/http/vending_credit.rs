//! The customer's cash credit on a vending machine, for the machine's screen: what it
//! shows (`GET /api/v1/vending/credit`) and the coin return button
//! (`POST /api/v1/vending/credit/return`), the same as the changer's return lever.

use actix_web::{HttpResponse, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::vending::VendError;
use outpost_security::auth::roles::Permission;

/// What the machine's screen shows of the cash.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditView {
    /// The credit, minor units: coins and stacked notes not spent yet.
    pub credit: i64,
    /// A note held in escrow (not credit until a vend stacks it), minor units.
    pub in_escrow: Option<i64>,
    /// The price a running cash vend holds, minor units.
    pub held_for_vend: Option<i64>,
    /// Coins are being paid out (change or a return).
    pub paying_out: bool,
    /// The machine takes cash (a coin changer or a bill validator is fitted).
    pub accepts_cash: bool,
    /// "Exact change only": the tubes cannot change some coin or note for some price.
    pub exact_change_only: bool,
}

/// What a return gave back.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreditReturned {
    /// Paid out in coins, minor units.
    pub coins: i64,
    /// The note in escrow handed back, minor units.
    pub note: Option<i64>,
    /// Credit left: what no coin in the tubes can pay (a technician pays it by hand).
    pub credit: i64,
}

fn view(state: &AppState) -> Result<CreditView, ApiError> {
    let v = &state.vending;
    let s = v.cash()?;
    let exact = crate::vending::alerts::active(state.sales.store())?
        .iter()
        .any(|a| a.alert == "exact_change");
    Ok(CreditView {
        credit: s.credit,
        in_escrow: s.escrow.map(|n| n.value),
        held_for_vend: s.reserved.map(|r| r.amount),
        paying_out: s.payout.is_some() || s.pay_due.is_some(),
        accepts_cash: v.takes_cash(),
        exact_change_only: exact,
    })
}

/// The customer's credit, for the machine's screen.
#[utoipa::path(tag = "vending", responses((status = 200, body = CreditView)))]
#[get("/api/v1/vending/credit")]
pub async fn get_credit(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    Ok(HttpResponse::Ok().json(view(&state)?))
}

/// The coin return button: the note in escrow goes back and the credit is paid out in
/// coins (the largest part of it the tubes can pay exactly; the rest stays credit).
/// Pressed again, it returns what is left (nothing, usually): no idempotency key.
#[utoipa::path(
    tag = "vending",
    responses(
        (status = 200, body = CreditReturned),
        (status = 409, body = super::ErrorBody, description = "a vend is running (`vend_in_progress`): press again after it"),
        (status = 422, body = super::ErrorBody, description = "the machine takes no cash (`method_not_supported`)"),
        (status = 423, body = super::ErrorBody, description = "the unit is locked (`device_locked`)"),
        (status = 503, body = super::ErrorBody, description = "the coin changer cannot be reached (`device_unavailable`): the credit stays"),
    )
)]
#[post("/api/v1/vending/credit/return")]
pub async fn return_credit(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    super::require_unlocked(&state)?;
    let v = &state.vending;
    if !v.takes_cash() {
        return Err(VendError::Invalid {
            code: "method_not_supported",
            message: "this machine takes no cash: no coin changer or bill validator is configured"
                .into(),
            field: None,
        }
        .into());
    }
    let before = v.cash()?;
    let credit = v.return_credit().await?;
    let after = v.cash()?;
    let note = match (before.escrow, after.escrow) {
        (Some(n), None) => Some(n.value),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(CreditReturned {
        coins: (before.credit - credit).max(0),
        note,
        credit,
    }))
}
