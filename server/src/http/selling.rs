//! Pricing carts, checkout, sales and refunds.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Caller;
use super::body::JsonBody;
use super::{ApiError, AppState, idempotency_key, terminal_id};
use crate::devices::receipts::ReceiptStatus;
use crate::domain::money::Money;
use crate::domain::pricing::{PricedCart, PricedLine, TaxLine};
use crate::domain::receipt::Receipt;
use crate::domain::sale::{Refund, Sale, Tender};
use crate::sales::RefundSummary;
use crate::sales::checkout::{CartRequest, CheckoutRequest};
use crate::sales::refund::RefundRequest;
use outpost_security::auth::roles::Permission;

/// Price a cart without selling it.
#[utoipa::path(tag = "selling", request_body = CartRequest, responses((status = 200, body = PricedCart), (status = 422, body = super::ErrorBody)))]
#[post("/api/v1/carts/price")]
pub async fn price_cart(
    caller: Caller,
    state: web::Data<AppState>,
    body: JsonBody<CartRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    Ok(HttpResponse::Ok().json(state.sales.price(&body.0.lines)?))
}

/// A sale as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SaleView {
    /// Time-ordered sale id.
    pub sale_id: Uuid,
    /// `completed`, `partially_refunded` or `refunded`.
    pub status: &'static str,
    /// Which terminal sold it.
    pub terminal_id: String,
    /// The checkout's `Idempotency-Key`.
    pub idempotency_key: String,
    /// When the checkout started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the sale was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
    /// ISO 4217 currency.
    pub currency: String,
    /// Lines with their discounts.
    pub lines: Vec<PricedLine>,
    /// Sum of line prices before discounts.
    pub subtotal: Money,
    /// Sum of discounts.
    pub discount_total: Money,
    /// Tax per class.
    pub taxes: Vec<TaxLine>,
    /// Sum of taxes.
    pub tax_total: Money,
    /// Whether shelf prices included tax.
    pub prices_include_tax: bool,
    /// What the customer paid.
    pub total: Money,
    /// How.
    pub tenders: Vec<Tender>,
    /// Cash given back.
    pub change: Money,
    /// Structured receipt.
    pub receipt: Receipt,
    /// The receipt as printed.
    pub receipt_text: String,
    /// Refunds made against it.
    pub refunds: Vec<RefundSummary>,
    /// Where its receipt is: `printed`, `queued` (reprint queue) or `not_queued`.
    pub receipt_status: Option<ReceiptStatus>,
    /// Checkout only: `opened`, `failed`, `not_configured` or `not_needed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drawer_status: Option<&'static str>,
    /// Checkout only: `shown`, `failed` or `not_configured`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_status: Option<&'static str>,
    /// Checkout only: why a device did not do its part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_errors: Vec<String>,
    /// The loyalty customer the checkout named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Points earned and redeemed, vouchers used (`docs/loyalty.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loyalty: Option<crate::domain::loyalty::SaleLoyalty>,
}

impl SaleView {
    fn new(sale: Sale, refunds: &[Refund], width: usize) -> Self {
        let refunded: i64 = refunds.iter().map(|r| r.total.0).sum();
        let status = match refunded {
            0 => "completed",
            n if n >= sale.cart.total.0 => "refunded",
            _ => "partially_refunded",
        };
        let cart = sale.cart;
        SaleView {
            sale_id: sale.id,
            status,
            terminal_id: sale.terminal_id.into(),
            idempotency_key: sale.idempotency_key.into(),
            created_at: sale.created_at,
            completed_at: sale.completed_at,
            currency: cart.currency.code().to_owned(),
            lines: cart.lines,
            subtotal: cart.subtotal,
            discount_total: cart.discount_total,
            taxes: cart.taxes,
            tax_total: cart.tax_total,
            prices_include_tax: cart.prices_include_tax,
            total: cart.total,
            tenders: sale.tenders,
            change: sale.change,
            receipt_text: sale.receipt.render_text(width),
            receipt: sale.receipt,
            refunds: refunds
                .iter()
                .map(|r| RefundSummary {
                    id: r.id,
                    total: r.total,
                })
                .collect(),
            receipt_status: None,
            drawer_status: None,
            display_status: None,
            device_errors: Vec::new(),
            customer_id: sale.customer_id,
            loyalty: sale.loyalty,
        }
    }
}

/// A sale as the API shows it, with its refunds and where its receipt is.
pub fn sale_view(state: &AppState, sale: Sale) -> Result<SaleView, ApiError> {
    let refunds = state.sales.store().refunds_of(sale.id)?;
    let receipt = state.devices.spooler().queue().status(sale.id)?;
    let mut view = SaleView::new(sale, &refunds, state.settings.store.receipt_width);
    view.receipt_status = Some(receipt);
    Ok(view)
}

/// Sell a cart. Needs an `Idempotency-Key`: a retry with the same key and body returns
/// the first sale with `Idempotent-Replayed: true`.
#[utoipa::path(
    tag = "selling",
    params(("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters, unique per operation, reused on retry"), ("X-Terminal-Id" = Option<String>, Header)),
    request_body = CheckoutRequest,
    responses(
        (status = 201, body = SaleView),
        (status = 400, body = super::ErrorBody),
        (status = 402, body = super::ErrorBody, description = "card or wallet declined (`payment_declined`), or the terminal cannot reach its acquirer and the store's or the card's offline limit is reached (`offline_limit_reached`: nothing stays charged, cash still works)"),
        (status = 409, body = super::ErrorBody, description = "a request with this key is in progress, or a line's scale is unstable (`scale_unstable`) or over capacity (`scale_overload`)"),
        (status = 422, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody, description = "payment outcome not known yet, no terminal, or a line's scale cannot be reached (`device_unavailable`)"),
    )
)]
#[post("/api/v1/checkout")]
pub async fn checkout(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<CheckoutRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    super::require_unlocked(&state)?;
    let key = idempotency_key(&req)?;
    let terminal = terminal_id(&req, &caller)?;
    let weigher: &dyn crate::sales::checkout::Weigher = state.devices.as_ref();
    let asked = super::observe::tender_asked(body.0.payment.as_ref(), body.0.payments.as_deref());
    let result = match state
        .sales
        .checkout_weighed(&key, &terminal, body.0, Some(weigher))
        .await
    {
        Ok(r) => {
            let outcome = if r.replayed { "replayed" } else { "completed" };
            super::observe::record_outcome(
                "checkout",
                outcome,
                super::observe::tender_of(&r.sale.tenders),
            );
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            super::observe::record_outcome("checkout", &e.code, asked);
            return Err(e);
        }
    };
    let mut r = HttpResponse::Created();
    if result.replayed {
        r.insert_header(("Idempotent-Replayed", "true"));
    }
    r.insert_header(("Location", format!("/api/v1/sales/{}", result.sale.id)));
    if result.replayed {
        return Ok(r.json(sale_view(&state, result.sale)?));
    }
    // The sale is durable: whatever the devices do now cannot undo it.
    let wait = std::time::Duration::from_millis(state.settings.receipts.print_wait_ms);
    let done = state.devices.after_sale(&result.sale, wait).await;
    let mut view = sale_view(&state, result.sale)?;
    view.receipt_status = Some(done.receipt_status);
    view.drawer_status = Some(done.drawer_status);
    view.display_status = Some(done.display_status);
    view.device_errors = done.device_errors;
    Ok(r.json(view))
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::not_found("sale_not_found", format!("no sale with id {s}")))
}

/// A sale by id.
#[utoipa::path(tag = "selling", params(("id" = String, Path)), responses((status = 200, body = SaleView), (status = 404, body = super::ErrorBody)))]
#[get("/api/v1/sales/{id}")]
pub async fn get_sale(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    let id = parse_id(&id)?;
    let sale =
        state.sales.store().sale(id)?.ok_or_else(|| {
            ApiError::not_found("sale_not_found", format!("no sale with id {id}"))
        })?;
    Ok(HttpResponse::Ok().json(sale_view(&state, sale)?))
}

/// Which sales to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SalesQuery {
    /// Sales recorded at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page (a sale id, 16 bytes in unpadded base64url):
    /// the page starts after it.
    #[param(pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

/// A page of sales.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalePage {
    /// Sales, oldest first.
    pub items: Vec<SaleView>,
    /// Pass as `cursor` for the next page; null at the end.
    pub next_cursor: Option<String>,
}

/// Sales, oldest first, from `since` or a cursor.
#[utoipa::path(tag = "selling", params(SalesQuery), responses((status = 200, body = SalePage), (status = 400, body = super::ErrorBody)))]
#[get("/api/v1/sales")]
pub async fn list_sales(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<SalesQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=super::catalog::MAX_LIMIT).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_limit", "limit must be between 1 and 200")
                .field("limit"),
        );
    }
    // Both are checked; the cursor, when given, says where the page starts.
    let since = q
        .since
        .as_deref()
        .map(|s| {
            let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    ApiError::bad_request(
                        "invalid_time",
                        format!("since is not an RFC 3339 time: {e}"),
                    )
                    .field("since")
                })?;
            // The largest UUIDv7 of the millisecond before `since`: the scan starts
            // with the first sale at or after it.
            let ms = (t.unix_timestamp_nanos() / 1_000_000).max(1) as u64 - 1;
            Ok::<_, ApiError>(Uuid::from_u128(((ms as u128) << 80) | ((1u128 << 80) - 1)))
        })
        .transpose()?;
    let cursor = q
        .cursor
        .as_deref()
        .map(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| Uuid::from_slice(&b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "cursor is not a sale id in unpadded base64url (22 characters): pass the next_cursor this server gave",
                    )
                    .field("cursor")
                })
        })
        .transpose()?;
    let after = cursor.or(since);
    let sales = state.sales.store().sales_after(after, limit + 1)?;
    let more = sales.len() > limit;
    let mut items = Vec::with_capacity(limit);
    for s in sales.into_iter().take(limit) {
        items.push(sale_view(&state, s)?);
    }
    let next_cursor = if more {
        items
            .last()
            .map(|s| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.sale_id.as_bytes()))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(SalePage { items, next_cursor }))
}

/// Refund some lines of a sale, or all of what is left. Needs an `Idempotency-Key`.
#[utoipa::path(
    tag = "selling",
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,255}$", description = "1 to 255 visible ASCII characters, unique per operation, reused on retry"), ("X-Terminal-Id" = Option<String>, Header)),
    request_body = RefundRequest,
    responses(
        (status = 201, body = Refund),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    )
)]
#[post("/api/v1/sales/{id}/refunds")]
pub async fn post_refund(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: JsonBody<RefundRequest>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Refund)?;
    super::require_unlocked(&state)?;
    let key = idempotency_key(&req)?;
    let terminal = terminal_id(&req, &caller)?;
    let id = parse_id(&id)?;
    let result = match state.sales.refund(id, &key, &terminal, body.0).await {
        Ok(r) => {
            let outcome = if r.replayed { "replayed" } else { "completed" };
            super::observe::record_outcome(
                "refund",
                outcome,
                super::observe::tender_of(&r.refund.tenders),
            );
            r
        }
        Err(e) => {
            let e = ApiError::from(e);
            super::observe::record_outcome("refund", &e.code, "unknown");
            return Err(e);
        }
    };
    if !result.replayed {
        state.security.audit(
            caller.name(),
            "refund",
            &format!("sale {id} refund {} at {terminal}", result.refund.id),
        );
    }
    let mut r = HttpResponse::Created();
    if result.replayed {
        r.insert_header(("Idempotent-Replayed", "true"));
    }
    Ok(r.json(result.refund))
}
