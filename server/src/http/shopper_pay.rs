//! Paying on the shopper's phone: the session's cart becomes a checkout paid with a
//! QR code (docs/self-checkout.md). The phone opens the code's pay link in the wallet;
//! the provider's notification completes the sale; the phone then shows the exit code.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::shopper::{Shopper, page_base};
use super::{ApiError, AppState};
use crate::domain::money::Money;
use crate::domain::pricing::PricedCart;
use crate::shopper::checkout::{self, Stage, Started};
use crate::shopper::{PAGE_PATH, Session, exit};

/// Where the session's checkout stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopperCheckout {
    /// `none` (no checkout started), `starting` (the code is being made), `paying`
    /// (open `pay_url`), `paid` (show `exit_code`), or `failed` (`error` says why; the
    /// cart can be changed and paid again).
    pub status: &'static str,
    /// Minor units to pay (while paying).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// The pay link to open in the wallet (while paying).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_url: Option<String>,
    /// When the code stops being valid (while paying).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub expires_at: Option<OffsetDateTime>,
    /// The sale (once paid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_id: Option<Uuid>,
    /// What was bought (once paid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cart: Option<PricedCart>,
    /// What was paid (once paid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Money>,
    /// Loyalty points the sale earned (once paid, when the shopper gave their card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points_earned: Option<i64>,
    /// The code to show at the exit (once paid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
    /// The exit code as an SVG QR code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_svg: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::ErrorBody>,
}

fn empty(status: &'static str) -> ShopperCheckout {
    ShopperCheckout {
        status,
        amount: None,
        pay_url: None,
        expires_at: None,
        sale_id: None,
        cart: None,
        total: None,
        points_earned: None,
        exit_code: None,
        exit_svg: None,
        error: None,
    }
}

fn exit_cipher(state: &AppState) -> Result<outpost_security::vault::Cipher, ApiError> {
    state.security.cipher(exit::PURPOSE).map_err(|e| {
        tracing::error!(error = %e, "Failed to derive the exit code key");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "exit_code_unavailable",
            "the exit code key is not available (the data key is locked)",
        )
    })
}

/// Where `started` stands, as the phone sees it. A paid checkout empties the cart it
/// sold and gets its exit code once.
fn view(
    state: &AppState,
    session: &mut Session,
    started: &Started,
    return_to: &str,
) -> Result<ShopperCheckout, ApiError> {
    Ok(match checkout::stage(&state.sales, started, return_to)? {
        Stage::Starting => empty("starting"),
        Stage::Paying {
            url,
            expires_at,
            amount,
        } => ShopperCheckout {
            amount: Some(amount),
            pay_url: Some(url),
            expires_at: Some(expires_at),
            ..empty("paying")
        },
        Stage::Paid(sale) => {
            let code = match &session.exit_code {
                Some(c) => c.clone(),
                None => {
                    let c = exit::seal(&exit_cipher(state)?, sale.id);
                    session.exit_code = Some(c.clone());
                    // Sold: the cart is what the sale is now.
                    session.lines.clear();
                    c
                }
            };
            let svg = crate::shopper::qr::svg(&code).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "qr_failed",
                    e.to_string(),
                )
            })?;
            ShopperCheckout {
                sale_id: Some(sale.id),
                total: Some(sale.cart.total),
                points_earned: sale.loyalty.as_ref().map(|l| l.points_earned),
                cart: Some(sale.cart.clone()),
                exit_code: Some(code),
                exit_svg: Some(svg),
                ..empty("paid")
            }
        }
        Stage::Failed { code, message } => ShopperCheckout {
            error: Some(super::ErrorBody {
                code,
                message,
                field: None,
            }),
            ..empty("failed")
        },
    })
}

/// The session's checkout as it stands (`None`: no checkout started).
fn current(
    state: &AppState,
    shopper: &Shopper,
    return_to: &str,
) -> Result<Option<ShopperCheckout>, ApiError> {
    let mut s = shopper.lock();
    let Some(started) = s.checkout.clone() else {
        return Ok(None);
    };
    view(state, &mut s, &started, return_to).map(Some)
}

/// Wait a little for a starting checkout to show its code (or end), so the phone
/// gets the pay link in the answer to its request.
async fn settled(
    state: &AppState,
    shopper: &Shopper,
    return_to: &str,
) -> Result<Option<ShopperCheckout>, ApiError> {
    // The code is usually written within a millisecond or two: look often at first,
    // then every 20 ms, 3 s at most.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut pause = Duration::from_millis(1);
    while tokio::time::Instant::now() < deadline {
        let v = current(state, shopper, return_to)?;
        if v.as_ref().is_none_or(|v| v.status != "starting") {
            return Ok(v);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    current(state, shopper, return_to)
}

fn return_to(req: &HttpRequest, state: &AppState) -> String {
    format!("{}{PAGE_PATH}?paid=1", page_base(req, state))
}

/// Pay the session's cart with a QR code: answers the pay link to open in the wallet
/// (`paying`). Asking again while a checkout is under way answers it again; after a
/// failed one, a new checkout of the cart starts.
#[utoipa::path(
    tag = "shopper",
    security(("shopper_cookie" = [])),
    responses(
        (status = 202, body = ShopperCheckout, description = "the checkout and where it stands: `paying` with the pay link, or already `paid`/`failed`"),
        (status = 422, body = super::ErrorBody, description = "the cart is empty (`cart_empty`), or cannot be sold as it is"),
        (status = 423, body = super::ErrorBody),
        (status = 429, body = super::ErrorBody),
        (status = 503, body = super::ErrorBody, description = "paying on the phone is not set up in this store (`payment_terminal_unavailable`): pay at a till"),
    )
)]
#[post("/api/v1/shopper/checkout")]
pub async fn start_checkout(
    shopper: Shopper,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::require_unlocked(&state)?;
    let back = return_to(&req, &state);
    {
        let mut s = shopper.lock();
        if let Some(started) = s.checkout.clone() {
            let v = view(&state, &mut s, &started, &back)?;
            // A failed checkout, or a paid one the shopper started a new cart after,
            // is put away; anything else is the checkout to answer.
            let ended = v.status == "failed" || (v.status == "paid" && !s.lines.is_empty());
            if !ended {
                return Ok(HttpResponse::Accepted().json(v));
            }
            s.checkout = None;
            s.exit_code = None;
        }
        let lines = s.lines.clone();
        let (started, terminal, request) =
            checkout::prepare(&state.sales, lines, s.customer.clone())?;
        let (sales, key, refused) = (
            state.sales.clone(),
            started.key.clone(),
            started.refused.clone(),
        );
        tracing::info!(shopper = s.number, key = %key.as_str(), "Shopper checkout started");
        s.checkout = Some(started);
        tokio::spawn(async move {
            match sales.checkout(&key, &terminal, request).await {
                Ok(r) => super::observe::record_outcome(
                    "checkout",
                    "completed",
                    super::observe::tender_of(&r.sale.tenders),
                ),
                Err(e) => {
                    let e = ApiError::from(e);
                    super::observe::record_outcome("checkout", &e.code, "qr");
                    tracing::info!(key = %key.as_str(), code = %e.code, error = %e.message, "Shopper checkout ended without a sale");
                    *refused.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((e.code.into_owned(), e.message));
                }
            }
        });
    }
    let v = settled(&state, &shopper, &back)
        .await?
        .unwrap_or_else(|| empty("starting"));
    Ok(HttpResponse::Accepted().json(v))
}

/// Where the session's checkout stands (the phone asks after paying in the wallet);
/// `none` before one is started.
#[utoipa::path(
    tag = "shopper",
    security(("shopper_cookie" = [])),
    responses(
        (status = 200, body = ShopperCheckout),
        (status = 429, body = super::ErrorBody),
    )
)]
#[get("/api/v1/shopper/checkout")]
pub async fn get_checkout(
    shopper: Shopper,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let back = return_to(&req, &state);
    let v = current(&state, &shopper, &back)?.unwrap_or_else(|| empty("none"));
    Ok(HttpResponse::Ok().json(v))
}

/// Stop paying: the code stops being valid (money paid for it anyway is given back)
/// and the cart can be changed again.
#[utoipa::path(
    tag = "shopper",
    security(("shopper_cookie" = [])),
    responses(
        (status = 200, body = ShopperCheckout, description = "where the checkout ended: `failed` (cancelled), or `paid` when the payment came first"),
        (status = 404, body = super::ErrorBody, description = "no checkout started (`no_checkout`)"),
        (status = 429, body = super::ErrorBody),
    )
)]
#[delete("/api/v1/shopper/checkout")]
pub async fn cancel_checkout(
    shopper: Shopper,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let back = return_to(&req, &state);
    let no_checkout =
        || ApiError::not_found("no_checkout", "no checkout was started in this session");
    let started = shopper.lock().checkout.clone().ok_or_else(no_checkout)?;
    if let (Some(qr), crate::sales::qr::progress::Progress::Paying { sale_id, .. }) = (
        state.sales.qr(),
        state.sales.checkout_progress(&started.key, None)?,
    ) {
        // The checkout's one QR tender is its first payment.
        let key = outpost_peripherals::payment::PaymentKey(format!("{sale_id}-0"));
        use outpost_peripherals::payment::PaymentTerminal as _;
        if let Err(e) = qr.abort(&key).await {
            tracing::warn!(error = %e, "Failed to cancel a shopper's QR code");
        }
    }
    for _ in 0..150 {
        let v = current(&state, &shopper, &back)?.ok_or_else(no_checkout)?;
        if matches!(v.status, "failed" | "paid") {
            return Ok(HttpResponse::Ok().json(v));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(HttpResponse::Ok().json(current(&state, &shopper, &back)?.ok_or_else(no_checkout)?))
}
