//! Products and promotions.

use actix_web::{HttpResponse, get, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Cursors as clients send them back: unpadded base64url, unused trailing bits
/// ignored, so every string of the documented pattern is a cursor.
const CURSOR: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::domain::gtin::Gtin;
use crate::domain::product::Product;
use crate::domain::promotion::Promotion;
use outpost_security::auth::roles::Permission;

/// Most items one page may have.
pub const MAX_LIMIT: usize = 200;
/// Index entries one search request may read (see `Catalog::search`).
const MAX_SCAN: usize = 20_000;

/// A product by SKU.
#[utoipa::path(
    tag = "catalog",
    params(("sku" = String, Path, description = "The product's SKU")),
    responses((status = 200, body = Product), (status = 404, body = super::ErrorBody))
)]
#[get("/api/v1/products/{sku}")]
pub async fn get_product(
    caller: Caller,
    state: web::Data<AppState>,
    sku: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    match state.sales.store().catalog().product_json(&sku)? {
        // The stored bytes are the API's JSON: serve them as they are.
        Some(json) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json.to_vec())),
        None => Err(ApiError::not_found(
            "product_not_found",
            format!("no product with SKU {sku}"),
        )),
    }
}

/// Filters for listing products.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProductQuery {
    /// Exact barcode (GTIN-8/12/13/14, with its check digit); other filters are
    /// ignored when given.
    #[param(pattern = "^([0-9]{8}|[0-9]{12,14})$")]
    pub barcode: Option<String>,
    /// Words that start words of the product name.
    #[param(min_length = 1, max_length = 200)]
    pub q: Option<String>,
    /// Exact category.
    #[param(min_length = 1, max_length = 200)]
    pub category: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (unpadded base64url; any such string is a
    /// position in the listing).
    #[param(pattern = "^([A-Za-z0-9_-]{4})*([A-Za-z0-9_-]{2,3})?$", min_length = 1)]
    pub cursor: Option<String>,
}

/// A page of products: `{"items":[…],"next_cursor":…}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ProductPage {
    /// Products.
    pub items: Vec<Product>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// Find products by barcode, or search by name and category.
#[utoipa::path(tag = "catalog", params(ProductQuery), responses((status = 200, body = ProductPage), (status = 400, body = super::ErrorBody)))]
#[get("/api/v1/products")]
pub async fn list_products(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ProductQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    product_page(&state, query.into_inner())
}

/// The page of products `q` asks for (also what a shopper's search answers).
pub fn product_page(state: &AppState, q: ProductQuery) -> Result<HttpResponse, ApiError> {
    let catalog = state.sales.store().catalog();
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )
        .field("limit"));
    }
    // Every filter given is checked, also those a barcode makes moot.
    let cursor = q
        .cursor
        .map(|c| {
            if c.is_empty() {
                Err(base64::DecodeError::InvalidLength(0))
            } else {
                CURSOR.decode(c.as_bytes())
            }
        })
        .transpose()
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "cursor is not unpadded base64url: pass the next_cursor this server gave",
            )
            .field("cursor")
        })?;
    for (name, v) in [("q", &q.q), ("category", &q.category)] {
        if v.as_ref().is_some_and(String::is_empty) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("{name} is empty: leave it out to list everything"),
            )
            .field(name));
        }
        if v.as_ref().is_some_and(|s| s.chars().count() > 200) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("{name} is longer than 200 characters"),
            )
            .field(name));
        }
    }
    let (items, next) = if let Some(code) = q.barcode {
        let gtin = Gtin::parse(&code).map_err(|e| {
            ApiError::bad_request("invalid_barcode", e.to_string()).field("barcode")
        })?;
        let item = match catalog.sku_by_gtin14(&gtin.to_gtin14())? {
            Some(sku) => catalog.product_json(&sku)?,
            None => None,
        };
        (item.into_iter().collect(), None)
    } else {
        catalog.search(
            q.q.as_deref().filter(|s| !s.trim().is_empty()),
            q.category.as_deref(),
            limit,
            cursor.as_deref(),
            MAX_SCAN,
        )?
    };
    // Assemble the page from the stored JSON without decoding the products.
    let mut body = Vec::with_capacity(64 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    match next {
        Some(c) => body.extend_from_slice(format!("\"{}\"", URL_SAFE_NO_PAD.encode(c)).as_bytes()),
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// When to look at promotions.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PromotionQuery {
    /// RFC 3339 time (default: now).
    #[param(format = DateTime)]
    pub at: Option<String>,
}

/// Promotions active at a time.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PromotionList {
    /// The promotions, by id.
    pub items: Vec<Promotion>,
}

/// Promotions active now, or at `?at=`.
#[utoipa::path(tag = "catalog", params(PromotionQuery), responses((status = 200, body = PromotionList), (status = 400, body = super::ErrorBody)))]
#[get("/api/v1/promotions")]
pub async fn list_promotions(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<PromotionQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ReadCatalog)?;
    let at = match &query.at {
        Some(s) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                ApiError::bad_request("invalid_time", format!("at is not an RFC 3339 time: {e}"))
                    .field("at")
            })?,
        None => OffsetDateTime::now_utc(),
    };
    let set = state.sales.store().promotions();
    let items = set.active_at(at).into_iter().cloned().collect();
    Ok(HttpResponse::Ok().json(PromotionList { items }))
}
