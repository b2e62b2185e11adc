//! Self-checkout on the shopper's phone: the store QR for staff, shopper sessions,
//! product look-up and the shopper's own cart (docs/self-checkout.md).
//!
//! The cart routes take no cart id: a session reaches its own cart through its cookie
//! and no other. Staff routes refuse a shopper session (see [`super::auth::Caller`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, delete, get, post, put, web};
use outpost_security::auth::roles::Permission;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::catalog::ProductQuery;
use super::{ApiError, AppState};
use crate::shopper::cart::{self, AddLine, CartError, CartView};
use crate::shopper::{
    PAGE_PATH, SHOPPER_COOKIE, Session, SessionError, StoreToken, TokenError, token,
};

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        let message = e.to_string();
        match e {
            SessionError::Unknown => {
                ApiError::new(StatusCode::UNAUTHORIZED, "shopper_session_unknown", message)
            }
            SessionError::Full(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shopper_sessions_full",
                message,
            )
            .header("retry-after", "60"),
            SessionError::RateLimited { retry_after_secs } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
                    .header("retry-after", retry_after_secs.to_string())
            }
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        let code = match e {
            TokenError::Expired { .. } => "store_token_expired",
            _ => "store_token_invalid",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string()).field("store_token")
    }
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> Self {
        match e {
            CartError::Invalid {
                code,
                message,
                field,
            } => ApiError::unprocessable(code, message).field(field),
            CartError::Full(_) => ApiError::unprocessable("cart_full", e.to_string()),
            CartError::NoSuchLine(_) => ApiError::not_found("line_not_found", e.to_string()),
            CartError::Sell(e) => e.into(),
        }
    }
}

/// The session named by `secret`, counted against its budget (also used by
/// [`Caller`] for a shopper calling a staff route).
pub fn touch(state: &AppState, secret: &str) -> Result<Arc<Mutex<Session>>, ApiError> {
    Ok(state.shoppers.touch(secret, Instant::now())?)
}

/// The shopper session of a request (its `outpost_shopper` cookie).
pub struct Shopper(Arc<Mutex<Session>>);

impl Shopper {
    /// The session, locked (never across an await).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Session> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The address shoppers' phones reach this unit at: `[shopper] public_url`, or the
/// scheme and host `req` came in on.
pub fn page_base(req: &HttpRequest, state: &AppState) -> String {
    match &state.shoppers.settings().public_url {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => {
            let info = req.connection_info();
            format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// A cart may change unless it is being paid. A checkout that ended (paid, or failed)
/// is put away: a paid cart was emptied, a failed one is the shopper's again.
fn editable(state: &AppState, s: &mut Session) -> Result<(), ApiError> {
    let Some(started) = s.checkout.clone() else {
        return Ok(());
    };
    match crate::shopper::checkout::stage(&state.sales, &started, "")? {
        crate::shopper::checkout::Stage::Paid(_) => {
            if s.exit_code.is_none() {
                // Sold before the phone saw it: the cart was sold.
                s.lines.clear();
            }
        }
        crate::shopper::checkout::Stage::Failed { .. } => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "checkout_in_progress",
                "the cart is being paid: finish or cancel the payment first",
            ));
        }
    }
    s.checkout = None;
    s.exit_code = None;
    Ok(())
}

impl FromRequest for Shopper {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Shopper, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let found = (|| {
            let state = req.app_data::<web::Data<AppState>>().ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no state")
            })?;
            let c = req
                .cookie(SHOPPER_COOKIE)
                .ok_or(SessionError::Unknown)
                .map_err(ApiError::from)?;
            touch(state, c.value()).map(Shopper)
        })();
        std::future::ready(found)
    }
}

fn unix_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

fn cipher(state: &AppState) -> Result<outpost_security::vault::Cipher, ApiError> {
    super::require_unlocked(state)?;
    state.security.cipher(token::PURPOSE).map_err(|e| {
        tracing::error!(error = %e, "Failed to derive the store token key");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_token_unavailable",
            "the store token key is not available (the data key is locked)",
        )
    })
}

/// The store QR: where a shopper's phone starts self-checkout.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreQr {
    /// The address the QR encodes: the shopper page with the store token.
    pub url: String,
    /// The store token alone (for a kiosk that draws its own QR).
    pub store_token: String,
    /// When the token stops opening sessions.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The QR code of `url` as an SVG image, to print or show.
    pub svg: String,
}

/// A fresh store token and its QR, for a technician to print or a kiosk to show (staff
/// and terminals; valid `[shopper] store_token_ttl_secs`).
#[utoipa::path(tag = "shopper", responses((status = 200, body = StoreQr)))]
#[get("/api/v1/shopper/store-qr")]
pub async fn store_qr(
    caller: Caller,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // A technician prints it (configure), a kiosk terminal shows it (sell).
    caller
        .require(Permission::Configure)
        .or_else(|_| caller.require(Permission::Sell))?;
    let cipher = cipher(&state)?;
    let now = unix_now();
    let settings = state.shoppers.settings();
    let t = StoreToken {
        issued_at: now,
        expires_at: now + settings.store_token_ttl_secs,
    };
    let store_token = t.seal(&cipher);
    let url = format!("{}{PAGE_PATH}?t={store_token}", page_base(&req, &state));
    let svg = crate::shopper::qr::svg(&url).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "qr_failed",
            e.to_string(),
        )
    })?;
    let expires_at = OffsetDateTime::from_unix_timestamp(t.expires_at as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    Ok(HttpResponse::Ok().json(StoreQr {
        url,
        store_token,
        expires_at,
        svg,
    }))
}

/// A store token to exchange for a shopper session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The token from the store QR (its `t` parameter).
    #[schema(min_length = 1, max_length = 512)]
    pub store_token: String,
}

/// A shopper session just opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// Seconds the session lives at most.
    pub expires_in_secs: u64,
    /// Seconds it lives without a request.
    pub idle_secs: u64,
}

/// Exchange a store token for a shopper session; sets the `outpost_shopper` cookie
/// (HttpOnly, SameSite=Strict, Secure on TLS). Bounded (`503 shopper_sessions_full`)
/// and rate-limited per client address (`429 rate_limited` with `Retry-After`).
#[utoipa::path(
    tag = "shopper",
    security(()),
    request_body = SessionRequest,
    responses(
        (status = 201, body = SessionView),
        (status = 401, body = super::ErrorBody, description = "the store token is forged, altered or expired (`store_token_invalid`, `store_token_expired`)"),
        (status = 429, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody, description = "too many sessions are open, or the data key is locked"),
    )
)]
#[post("/api/v1/shopper/sessions")]
pub async fn open_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: JsonBody<SessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let cipher = cipher(&state)?;
    StoreToken::open(&cipher, &body.0.store_token, unix_now())?;
    let ip = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let opened = state.shoppers.open(ip, Instant::now())?;
    tracing::info!(shopper = opened.number, %ip, "Shopper session opened");
    let settings = state.shoppers.settings();
    let mut cookie = Cookie::build(SHOPPER_COOKIE, opened.secret)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.tls)
        .finish();
    cookie.set_max_age(actix_web::cookie::time::Duration::seconds(
        opened.expires_in_secs as i64,
    ));
    Ok(HttpResponse::Created().cookie(cookie).json(SessionView {
        expires_in_secs: opened.expires_in_secs,
        idle_secs: settings.idle_secs,
    }))
}

/// Find products by barcode, or search by name and category (a shopper session).
#[utoipa::path(tag = "shopper", security(("shopper_cookie" = [])), params(ProductQuery), responses((status = 200, body = super::catalog::ProductPage), (status = 429, body = super::ErrorBody)))]
#[get("/api/v1/shopper/products")]
pub async fn products(
    _shopper: Shopper,
    state: web::Data<AppState>,
    query: web::Query<ProductQuery>,
) -> Result<HttpResponse, ApiError> {
    super::catalog::product_page(&state, query.into_inner())
}

/// The session's own cart, priced with the store's promotions.
#[utoipa::path(tag = "shopper", security(("shopper_cookie" = [])), responses((status = 200, body = CartView), (status = 429, body = super::ErrorBody)))]
#[get("/api/v1/shopper/cart")]
pub async fn get_cart(
    shopper: Shopper,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let s = shopper.0.lock().unwrap_or_else(|p| p.into_inner());
    Ok(HttpResponse::Ok().json(cart::view(&state.sales, &s.lines)?))
}

/// Add a product by barcode or SKU to the session's cart (merged into its line when
/// the product is already there); answers the priced cart.
#[utoipa::path(
    tag = "shopper",
    security(("shopper_cookie" = [])),
    request_body = AddLine,
    responses(
        (status = 200, body = CartView),
        (status = 409, body = super::ErrorBody, description = "the cart is being paid (`checkout_in_progress`)"),
        (status = 422, body = super::ErrorBody, description = "unknown product, bad quantity, a full cart, or a product a shopper cannot add (e.g. sold by weight)"),
        (status = 429, body = super::ErrorBody),
    )
)]
#[post("/api/v1/shopper/cart/lines")]
pub async fn add_line(
    shopper: Shopper,
    state: web::Data<AppState>,
    body: JsonBody<AddLine>,
) -> Result<HttpResponse, ApiError> {
    let mut s = shopper.lock();
    editable(&state, &mut s)?;
    let view = cart::add(
        &state.sales,
        state.shoppers.settings(),
        &mut s.lines,
        body.0,
    )?;
    Ok(HttpResponse::Ok().json(view))
}

/// Remove line `line` (1-based, as the cart lists it) from the session's cart.
#[utoipa::path(
    tag = "shopper",
    security(("shopper_cookie" = [])),
    params(("line" = u32, Path, minimum = 1, description = "1-based line number")),
    responses((status = 200, body = CartView), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody, description = "the cart is being paid (`checkout_in_progress`)"), (status = 429, body = super::ErrorBody))
)]
#[delete("/api/v1/shopper/cart/lines/{line}")]
pub async fn remove_line(
    shopper: Shopper,
    state: web::Data<AppState>,
    line: web::Path<u32>,
) -> Result<HttpResponse, ApiError> {
    let mut s = shopper.lock();
    editable(&state, &mut s)?;
    let view = cart::remove(&state.sales, &mut s.lines, *line as usize)?;
    Ok(HttpResponse::Ok().json(view))
}

/// The loyalty card a shopper gives.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoyaltyCard {
    /// The card's number, typed or scanned from its barcode.
    #[schema(min_length = 1, max_length = 64)]
    pub card: String,
}

/// The loyalty customer a shopper's carts are sold to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopperCustomer {
    /// The customer's tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The points as this unit knows them.
    pub points: i64,
}

/// Sell the session's carts to the loyalty customer of `card` (their points accrue on
/// each sale, offline); answers the customer's tier and points.
#[utoipa::path(
    tag = "shopper",
    security(("shopper_cookie" = [])),
    request_body = LoyaltyCard,
    responses(
        (status = 200, body = ShopperCustomer),
        (status = 404, body = super::ErrorBody, description = "no loyalty card with that number here (`unknown_customer`)"),
        (status = 422, body = super::ErrorBody, description = "not a card number (`invalid_card`)"),
        (status = 429, body = super::ErrorBody),
    )
)]
#[put("/api/v1/shopper/customer")]
pub async fn put_customer(
    shopper: Shopper,
    state: web::Data<AppState>,
    body: JsonBody<LoyaltyCard>,
) -> Result<HttpResponse, ApiError> {
    let card = body.0.card.trim().to_owned();
    if card.is_empty() || card.len() > 64 || !card.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::unprocessable(
            "invalid_card",
            "a loyalty card number is 1 to 64 letters, digits or signs",
        )
        .field("card"));
    }
    let found =
        crate::loyalty::customer_by_card(state.sales.store(), &card).map_err(|e| match e {
            crate::loyalty::LoyaltyError::Store(e) => ApiError::from(e),
            other => ApiError::unprocessable("invalid_card", other.to_string()).field("card"),
        })?;
    let Some(c) = found else {
        return Err(ApiError::not_found(
            "unknown_customer",
            "no loyalty card with that number in this store",
        ));
    };
    let view = ShopperCustomer {
        tier: c.tier.clone(),
        points: c.points.balance,
    };
    shopper.lock().customer = Some(c.id);
    Ok(HttpResponse::Ok().json(view))
}

/// Stop selling the session's carts to a loyalty customer.
#[utoipa::path(tag = "shopper", security(("shopper_cookie" = [])), responses((status = 204), (status = 429, body = super::ErrorBody)))]
#[delete("/api/v1/shopper/customer")]
pub async fn delete_customer(shopper: Shopper) -> Result<HttpResponse, ApiError> {
    shopper.lock().customer = None;
    Ok(HttpResponse::NoContent().finish())
}
