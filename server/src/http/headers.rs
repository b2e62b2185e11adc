//! The request identifiers a state-changing route reads from its headers, each parsed
//! once here into its domain type: `Idempotency-Key` ([`IdempotencyKey`]) and
//! `X-Terminal-Id` ([`TerminalId`]). Everything past the handler takes the types.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;

use super::ApiError;
use super::auth::Caller;
use crate::domain::sale::{IdempotencyKey, TerminalId};

/// The request's `Idempotency-Key`, which checkout, refunds and stock adjustments
/// require: 400 `idempotency_key_required` when absent, 400 `invalid_idempotency_key`
/// when it is not 1 to 255 visible ASCII characters.
pub fn idempotency_key(req: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    let missing = || {
        ApiError::bad_request("idempotency_key_required", "this request needs an Idempotency-Key header: a unique value per operation, reused on retry")
            .field("Idempotency-Key")
    };
    let v = req.headers().get("idempotency-key").ok_or_else(missing)?;
    let s = v.to_str().map_err(|_| missing())?;
    IdempotencyKey::parse(s).map_err(|_| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {} visible ASCII characters",
                IdempotencyKey::MAX_LEN
            ),
        )
        .field("Idempotency-Key")
    })
}

/// The terminal that sent a request: the authenticated terminal's name; for staff
/// sessions, the `X-Terminal-Id` header (the till they work at), else their username.
/// 400 `invalid_terminal_id` when the header is not 1 to 64 visible ASCII characters.
pub fn terminal_id(req: &HttpRequest, caller: &Caller) -> Result<TerminalId, ApiError> {
    let header = if caller.is_terminal {
        None
    } else {
        req.headers().get("x-terminal-id")
    };
    match header {
        // Terminal and user names are checked when they are made (1 to 64 of A-Z a-z
        // 0-9 - _ . @), so a name that is no terminal id is a bug or a corrupt store.
        None => TerminalId::parse(caller.name()).map_err(|e| {
            tracing::error!(caller = caller.name(), error = %e, "A caller's name is not a valid terminal id");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the caller's name cannot identify a terminal",
            )
        }),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| TerminalId::parse(s).ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_terminal_id",
                    format!(
                        "X-Terminal-Id must be 1 to {} visible ASCII characters",
                        TerminalId::MAX_LEN
                    ),
                )
                .field("X-Terminal-Id")
            }),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use outpost_security::auth::roles::Principal;

    use super::*;

    fn caller(name: &str, is_terminal: bool) -> Caller {
        Caller {
            principal: Principal {
                name: name.into(),
                roles: Vec::new(),
            },
            is_terminal,
            is_shopper: false,
        }
    }

    #[test]
    fn the_idempotency_key_is_required_and_checked_once_here() {
        let err = |r: TestRequest| idempotency_key(&r.to_http_request()).unwrap_err();
        let e = err(TestRequest::default());
        assert_eq!(
            (e.status.as_u16(), &*e.code),
            (400, "idempotency_key_required")
        );
        for bad in ["", "has space", &"k".repeat(256)] {
            let e = err(TestRequest::default().insert_header(("Idempotency-Key", bad)));
            assert_eq!(
                (e.status.as_u16(), &*e.code),
                (400, "invalid_idempotency_key")
            );
            assert_eq!(e.field.as_deref(), Some("Idempotency-Key"));
        }
        let e = err(TestRequest::default().insert_header((
            "Idempotency-Key",
            actix_web::http::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )));
        assert_eq!(&*e.code, "idempotency_key_required");
        let r = TestRequest::default()
            .insert_header(("Idempotency-Key", "k-1"))
            .to_http_request();
        assert_eq!(idempotency_key(&r).unwrap().as_str(), "k-1");
    }

    #[test]
    fn the_terminal_id_is_the_terminal_or_the_staff_members_till() {
        let till = |v: &str| TestRequest::default().insert_header(("X-Terminal-Id", v));
        // A terminal is who it authenticated as, whatever the header says.
        let r = till("till-9").to_http_request();
        assert_eq!(
            terminal_id(&r, &caller("till-1", true)).unwrap().as_str(),
            "till-1"
        );
        // Staff: the header, else their username.
        assert_eq!(
            terminal_id(&r, &caller("ann", false)).unwrap().as_str(),
            "till-9"
        );
        let r = TestRequest::default().to_http_request();
        assert_eq!(
            terminal_id(&r, &caller("ann", false)).unwrap().as_str(),
            "ann"
        );
        for bad in ["has space", &"t".repeat(65)] {
            let e = terminal_id(&till(bad).to_http_request(), &caller("ann", false)).unwrap_err();
            assert_eq!((e.status.as_u16(), &*e.code), (400, "invalid_terminal_id"));
            assert_eq!(e.field.as_deref(), Some("X-Terminal-Id"));
        }
        let e = terminal_id(&r, &caller("", false)).unwrap_err();
        assert_eq!((e.status.as_u16(), &*e.code), (500, "internal_error"));
    }
}
