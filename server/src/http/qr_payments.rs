//! QR payments over HTTP (docs/qr-payments.md): the provider's signed notifications,
//! and the code a till shows while its checkout waits for the customer's wallet.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use outpost_security::auth::roles::Permission;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::domain::sale::IdempotencyKey;
use crate::sales::qr::progress::Progress;
use crate::sales::qr::{NotificationError, QrPayments};

/// The header the provider signs a notification in.
pub const SIGNATURE_HEADER: &str = "x-outpost-signature";

fn qr(state: &AppState) -> Result<&std::sync::Arc<QrPayments>, ApiError> {
    state.sales.qr().ok_or_else(|| {
        ApiError::not_found(
            "qr_payments_off",
            "QR payments are not set up in this store ([payment.qr])",
        )
    })
}

impl From<NotificationError> for ApiError {
    fn from(e: NotificationError) -> Self {
        let message = e.to_string();
        match e {
            NotificationError::BadSignature => {
                ApiError::new(StatusCode::UNAUTHORIZED, "signature_invalid", message)
                    .field(SIGNATURE_HEADER)
            }
            NotificationError::OtherMerchant(_) => {
                ApiError::unprocessable("wrong_merchant", message).field("merchant")
            }
            _ => ApiError::unprocessable("invalid_notification", message),
        }
    }
}

/// A provider's notification that a code was paid or failed, as JSON signed in the
/// `X-Outpost-Signature` header (docs/qr-payments.md).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct QrNotification {
    /// The store's merchant id at the provider.
    pub merchant: String,
    /// The code's reference.
    pub reference: String,
    /// `paid` or `failed`.
    pub status: String,
    /// Minor units paid (`paid`).
    pub amount: Option<i64>,
    /// ISO 4217 (`paid`).
    pub currency: Option<String>,
    /// The provider's id of the payment (`paid`).
    pub provider_ref: Option<String>,
    /// The wallet used.
    pub wallet: Option<String>,
    /// Why it failed (`failed`).
    pub reason: Option<String>,
}

/// The payment provider tells the unit a code was paid or failed. Recorded durably
/// before the answer; told again, nothing changes. Money the unit no longer waits for
/// is given back through HQ.
#[utoipa::path(
    tag = "payments",
    security(()),
    request_body = QrNotification,
    responses(
        (status = 204, description = "recorded"),
        (status = 401, body = super::ErrorBody, description = "the signature is missing or wrong (`signature_invalid`)"),
        (status = 404, body = super::ErrorBody, description = "QR payments are not set up (`qr_payments_off`)"),
        (status = 422, body = super::ErrorBody, description = "not a notification of this store (`invalid_notification`, `wrong_merchant`)"),
    )
)]
#[post("/api/v1/payments/qr/notifications")]
pub async fn notify(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let qr = qr(&state)?;
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    qr.notify(&body, signature).await??;
    Ok(HttpResponse::NoContent().finish())
}

/// Which checkout's code to show.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CodeQuery {
    /// The `Idempotency-Key` of the checkout (sent with a `qr` tender) waiting for
    /// the customer.
    pub checkout_key: String,
}

/// A QR code to show.
#[derive(Debug, Serialize, ToSchema)]
pub struct QrCode {
    /// The payment's reference.
    pub reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The signed pay link the code encodes.
    pub url: String,
    /// When it stops being valid.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// The code as an SVG image, for the customer display.
    pub svg: String,
}

/// The QR code a till's checkout is waiting on: the till sends the checkout with a
/// `qr` tender (the request waits for the payment) and shows this meanwhile.
#[utoipa::path(
    tag = "payments",
    params(CodeQuery),
    responses(
        (status = 200, body = QrCode),
        (status = 404, body = super::ErrorBody, description = "no code is waiting for that checkout now (`no_qr_code`), or QR payments are off (`qr_payments_off`)"),
        (status = 422, body = super::ErrorBody, description = "`checkout_key` is not an idempotency key (`invalid_key`)"),
    )
)]
#[get("/api/v1/payments/qr/code")]
pub async fn code(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<CodeQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::Sell)?;
    qr(&state)?;
    let key = IdempotencyKey::parse(&query.checkout_key)
        .map_err(|e| ApiError::unprocessable("invalid_key", e.to_string()).field("checkout_key"))?;
    let Progress::Paying {
        code: Some(code), ..
    } = state.sales.checkout_progress(&key, None)?
    else {
        return Err(ApiError::not_found(
            "no_qr_code",
            "no QR code is waiting for that checkout now",
        ));
    };
    let svg = crate::shopper::qr::svg(&code.url).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "qr_failed",
            e.to_string(),
        )
    })?;
    Ok(HttpResponse::Ok().json(QrCode {
        reference: code.reference,
        amount: code.amount,
        currency: code.currency,
        url: code.url,
        expires_at: code.expires_at,
        svg,
    }))
}
