//! Loyalty customers for staff and terminals: who a card belongs to and the points as
//! this unit knows them (`docs/loyalty.md`).

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::loyalty::{self, CustomerView, LoyaltyError};
use outpost_security::auth::roles::Permission;

/// Which customer to look up: by card or by id, exactly one.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CustomerQuery {
    /// A loyalty card number, or the barcode scanned from the card.
    #[param(pattern = "^[!-~]{1,64}$")]
    pub card: Option<String>,
    /// HQ's customer id.
    #[param(pattern = "^[!-~]{1,64}$")]
    pub id: Option<String>,
}

fn lookup_error(e: LoyaltyError) -> ApiError {
    match e {
        LoyaltyError::Invalid { field, reason } => {
            ApiError::bad_request("invalid_query", format!("{field}: {reason}")).field(field)
        }
        LoyaltyError::Store(e) => e.into(),
        other => ApiError::unprocessable("invalid_query", other.to_string()),
    }
}

/// The loyalty customer a card (or HQ id) names, with the points as this unit knows
/// them: HQ's last balance, plus what this unit earned and minus what it redeemed
/// since, and what a redemption may take now (the offline limit).
#[utoipa::path(tag = "customers", params(CustomerQuery), responses((status = 200, body = CustomerView), (status = 404, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
#[get("/api/v1/customers")]
pub async fn get_customer(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<CustomerQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    let store = state.sales.store();
    let found = match query.into_inner() {
        CustomerQuery {
            card: Some(card),
            id: None,
        } => loyalty::customer_by_card(store, &card),
        CustomerQuery {
            card: None,
            id: Some(id),
        } => loyalty::customer_by_id(store, &id),
        _ => {
            // Each parameter alone is well formed: the pair is what is refused.
            return Err(
                ApiError::unprocessable("invalid_query", "give card or id, exactly one")
                    .field("card"),
            );
        }
    }
    .map_err(lookup_error)?;
    match found {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::not_found(
            "unknown_customer",
            "no customer with that card or id on this unit (HQ has not pushed it)",
        )),
    }
}
