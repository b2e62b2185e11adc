//! What HQ pushed that terminals and staff read: the tax table and the planogram.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::domain::planogram::ShelfLocation;
use crate::domain::product::Sku;
use crate::hq::records;
use outpost_security::auth::roles::Permission;

/// Most locations one page may have (a page holds whole SKUs, so it may have a few
/// more).
pub const MAX_LIMIT: usize = 1000;

/// The tax table checkouts use now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TaxRates {
    /// HQ's version of it (0: the config file's table, never pushed).
    pub version: u64,
    /// `hq` or `config`.
    pub source: &'static str,
    /// Whether shelf prices include tax.
    pub prices_include_tax: bool,
    /// Rate per tax class in basis points (2000 = 20 %).
    pub rates_bp: std::collections::BTreeMap<String, u32>,
}

/// The tax rates the next checkout prices with.
#[utoipa::path(tag = "catalog", responses((status = 200, body = TaxRates)))]
#[get("/api/v1/tax-rates")]
pub async fn get_tax_rates(
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    let version = records::version(state.sales.store(), records::TAX)?;
    let tax = state.sales.config().tax.clone();
    Ok(HttpResponse::Ok().json(TaxRates {
        version,
        source: if version == 0 { "config" } else { "hq" },
        prices_include_tax: tax.prices_include_tax,
        rates_bp: tax.rates_bp,
    }))
}

/// Which shelf locations to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlanogramQuery {
    /// Only this SKU's locations (all on one page: `limit` and `cursor` do not apply).
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: Option<String>,
    /// Page size, 1 to 1000 (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page: the page starts after this SKU.
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub cursor: Option<String>,
}

/// A page of shelf locations, in SKU order.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PlanogramPage {
    /// HQ's version of the planogram (0: none pushed).
    pub version: u64,
    /// Locations.
    pub items: Vec<ShelfLocation>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

fn sku_param(name: &str, v: &str) -> Result<Sku, ApiError> {
    Sku::parse(v).map_err(|e| {
        ApiError::bad_request("invalid_sku", format!("{name}: {e}")).field(name.to_owned())
    })
}

/// Where products are on the shelves: all of them page by page, or one SKU's.
#[utoipa::path(tag = "catalog", params(PlanogramQuery), responses((status = 200, body = PlanogramPage), (status = 400, body = super::ErrorBody)))]
#[get("/api/v1/planogram")]
pub async fn get_planogram(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<PlanogramQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    let q = query.into_inner();
    let store = state.sales.store();
    let version = records::version(store, records::PLANOGRAM)?;
    let limit = q.limit.unwrap_or(200);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )
        .field("limit"));
    }
    // A cursor beside a SKU does not apply, but it must still be one.
    let cursor = q.cursor.map(|c| sku_param("cursor", &c)).transpose()?;
    let (items, next_cursor) = match (q.sku, cursor) {
        (Some(sku), _) => {
            let sku = sku_param("sku", &sku)?;
            (records::locations_of(store, sku.as_str())?, None)
        }
        (None, after) => records::locations_page(store, after.as_ref().map(Sku::as_str), limit)?,
    };
    Ok(HttpResponse::Ok().json(PlanogramPage {
        version,
        items,
        next_cursor,
    }))
}
