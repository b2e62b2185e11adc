//! API errors: a status, a stable `code`, a message for people, and the field at fault.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::pricing::PricingError;
use crate::domain::sale::{RefundError, TenderError};
use crate::sales::SellError;
use crate::sales::idempotency::Failure;

/// The JSON body of every error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable code (e.g. `unknown_product`).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, when there is one (e.g. `lines[2].quantity`).
    pub field: Option<String>,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: Cow<'static, str>,
    /// Message.
    pub message: String,
    /// Field at fault.
    pub field: Option<String>,
    /// Extra headers (e.g. `Idempotent-Replayed`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error with no field.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    /// Name the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Add a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 422.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                r.insert_header((HeaderName::from_static(name), v));
            }
        }
        r.json(ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            field: self.field.clone(),
        })
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        if matches!(e, crate::store::StoreError::DeviceLocked) {
            return ApiError::new(
                StatusCode::LOCKED,
                "device_locked",
                "the device is locked: its data key is wiped from memory until a signed unlock",
            );
        }
        if let crate::store::StoreError::DiskFull { .. } = e {
            return ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_full",
                format!("{e}; retry with the same Idempotency-Key"),
            )
            .header("retry-after", "30");
        }
        tracing::error!(error = %e, "Storage failed while answering a request");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "storage is unavailable; retry with the same Idempotency-Key",
        )
        .header("retry-after", "5")
    }
}

fn line_field(line: Option<usize>) -> Option<String> {
    line.map(|l| format!("lines[{l}]"))
}

impl From<SellError> for ApiError {
    fn from(e: SellError) -> Self {
        let msg = e.to_string();
        match e {
            SellError::Invalid { code, field, .. } => ApiError {
                field,
                ..ApiError::unprocessable(code, msg)
            },
            SellError::UnknownProduct { line, .. } => {
                ApiError::unprocessable("unknown_product", msg).field(format!("lines[{line}]"))
            }
            SellError::Pricing(p) => {
                let code = match &p {
                    PricingError::EmptyCart => "empty_cart",
                    PricingError::TooManyLines { .. } => "too_many_lines",
                    PricingError::Quantity { .. } | PricingError::QuantityKind { .. } => {
                        "invalid_quantity"
                    }
                    PricingError::Inactive { .. } => "product_inactive",
                    PricingError::UnknownTaxClass { .. } => "unknown_tax_class",
                    PricingError::MixedCurrency { .. } => "currency_mismatch",
                    PricingError::Overflow { .. } => "amount_too_large",
                    _ => "pricing_failed",
                };
                ApiError {
                    field: line_field(p.line()),
                    ..ApiError::unprocessable(code, msg)
                }
            }
            SellError::Tender(t) => {
                let code = match t {
                    TenderError::Insufficient { .. } | TenderError::Missing => {
                        "insufficient_payment"
                    }
                    TenderError::Overpaid { .. } => "overpayment",
                    _ => "invalid_payment",
                };
                ApiError::unprocessable(code, msg).field("payment")
            }
            SellError::Refund(r) => {
                let code = match r {
                    RefundError::NoSuchLine { .. } => "no_such_line",
                    RefundError::Exceeds { .. } => "refund_exceeds_sale",
                    RefundError::BadQuantity { .. } => "invalid_quantity",
                    _ => "nothing_to_refund",
                };
                ApiError::unprocessable(code, msg).field("lines")
            }
            SellError::KeyReused => {
                ApiError::unprocessable("idempotency_key_reused", msg).field("Idempotency-Key")
            }
            SellError::InProgress => {
                ApiError::new(StatusCode::CONFLICT, "in_progress", msg).header("retry-after", "1")
            }
            SellError::SaleNotFound(_) => ApiError::not_found("sale_not_found", msg),
            SellError::Declined(_) => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "payment_declined", msg)
            }
            SellError::OfflineLimit(_) => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "offline_limit_reached", msg)
            }
            SellError::OutcomeUnknown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_outcome_unknown",
                msg,
            )
            .header("retry-after", "5"),
            SellError::TerminalUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment_terminal_unavailable",
                msg,
            )
            .header("retry-after", "5"),
            SellError::Replayed { failure, message } => {
                let (status, code) = match failure {
                    Failure::PaymentDeclined => (StatusCode::PAYMENT_REQUIRED, "payment_declined"),
                    Failure::RefundDeclined => (StatusCode::PAYMENT_REQUIRED, "refund_declined"),
                };
                ApiError::new(status, code, message).header("idempotent-replayed", "true")
            }
            SellError::Scale { line, error } => {
                // The device registry's status: 409 fix it at the scale, 503 unusable,
                // 404/422 the line names no scale.
                let mut e = ApiError::from(error);
                e.message = msg;
                e.field(format!("lines[{line}].scale"))
            }
            SellError::NoScale { line } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "device_unavailable", msg)
                    .field(format!("lines[{line}].scale"))
                    .header("retry-after", "5")
            }
            SellError::Internal(m) => {
                tracing::error!(error = %m, "Internal error while selling");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", msg)
            }
            SellError::Store(s) => s.into(),
        }
    }
}

impl From<TenderError> for ApiError {
    fn from(e: TenderError) -> Self {
        SellError::Tender(e).into()
    }
}

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        SellError::Refund(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sale::{Cause, IllegalTransition, PaymentState};

    #[test]
    fn an_illegal_transition_answers_500_internal_error() {
        let e = SellError::from(IllegalTransition {
            key: "k-0".into(),
            from: PaymentState::Declined,
            to: PaymentState::Completed,
            cause: Cause::Record,
        });
        assert!(matches!(e, SellError::Internal(_)), "{e:?}");
        let a = ApiError::from(e);
        assert_eq!((a.status.as_u16(), &*a.code), (500, "internal_error"));
    }

    #[test]
    fn stored_failures_replay_as_402_with_their_code() {
        for (failure, code) in [
            (Failure::PaymentDeclined, "payment_declined"),
            (Failure::RefundDeclined, "refund_declined"),
        ] {
            let a = ApiError::from(SellError::Replayed {
                failure,
                message: "m".into(),
            });
            assert_eq!((a.status.as_u16(), &*a.code, &*a.message), (402, code, "m"));
            assert!(
                a.headers
                    .contains(&("idempotent-replayed", "true".to_owned()))
            );
        }
    }

    #[test]
    fn a_scale_refusal_keeps_the_registrys_status_and_names_the_line() {
        let a = ApiError::from(SellError::Scale {
            line: 2,
            error: crate::devices::inputs::WeighError {
                status: 409,
                code: "scale_unstable",
                message: "scale s1: moving".into(),
            },
        });
        assert_eq!(
            (a.status.as_u16(), &*a.code, &*a.message),
            (409, "scale_unstable", "line 2: scale s1: moving")
        );
        assert_eq!(a.field.as_deref(), Some("lines[2].scale"));
        let a = ApiError::from(SellError::NoScale { line: 0 });
        assert_eq!((a.status.as_u16(), &*a.code), (503, "device_unavailable"));
        assert!(a.headers.contains(&("retry-after", "5".to_owned())));
    }
}
