//! Who is using the console, and the checks every request passes: a staff session
//! (the same sessions and roles as the API), no terminal token, and on every form a
//! CSRF token bound to the session.
//!
//! The CSRF token is a keyed BLAKE3 hash of the session id under a key drawn at
//! start: it needs no storage, differs per session, and cannot be computed by a page
//! that does not know the key. The session cookie is `SameSite=Strict` too, so a
//! cross-site form does not even carry it; the token is the second line.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, web};
use outpost_security::auth::roles::{Permission, Principal, Role};
use serde::de::DeserializeOwned;

use super::catalogue::Msg;
pub use super::document::CSRF_FIELD;
use super::error::ConsoleError;
use super::i18n::Lang;
use crate::access::SESSION_COOKIE;
use crate::http::AppState;

/// Largest form body the console accepts.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The per-process key of the CSRF tokens.
fn csrf_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

/// The CSRF token of a session (or of a login page's pre-session nonce).
pub fn csrf_token(session_id: &str) -> String {
    blake3::keyed_hash(csrf_key(), session_id.as_bytes())
        .to_hex()
        .to_string()
}

/// Whether `token` is the CSRF token of `session_id`, compared in constant time.
pub fn csrf_ok(session_id: &str, token: &str) -> bool {
    blake3::Hash::from_hex(token)
        .is_ok_and(|t| t == blake3::keyed_hash(csrf_key(), session_id.as_bytes()))
}

/// The session cookie the console and the API share (HttpOnly, SameSite=Strict,
/// Secure on TLS).
pub fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.tls)
        .finish()
}

/// A staff member using the console.
#[derive(Debug, Clone)]
pub struct Staff {
    /// Who, with which roles.
    pub principal: Principal,
    /// The session id (the CSRF token derives from it).
    session: String,
    /// The language of this request.
    pub lang: Lang,
    /// This unit runs a vending machine (the navigation shows its page).
    pub vending: bool,
}

impl Staff {
    /// `Ok` when the staff member holds `permission`, else a `403` page.
    pub fn require(&self, permission: Permission) -> Result<(), ConsoleError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrForbidden))
        }
    }

    /// Whether the staff member holds `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.principal.require(permission).is_ok()
    }

    /// The username.
    pub fn name(&self) -> &str {
        &self.principal.name
    }

    /// The token every form of this session carries.
    pub fn csrf(&self) -> String {
        csrf_token(&self.session)
    }

    /// The session id, to end it at logout.
    pub fn session_id(&self) -> &str {
        &self.session
    }
}

/// Whether this unit runs a vending machine: a vend dispenser is configured (what
/// makes a unit a vending site, `docs/vending.md`).
pub fn is_vending_site(state: &AppState) -> bool {
    state.devices.dispenser().is_some()
}

/// The app state of a request.
pub fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, ConsoleError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ConsoleError::new(StatusCode::INTERNAL_SERVER_ERROR, Msg::ErrInternal))
}

fn authenticate(req: &HttpRequest) -> Result<Staff, ConsoleError> {
    let lang = Lang::of(req);
    // A terminal authenticates with its bearer token: it sells through the API and
    // has no business in the console, whatever else the request carries.
    if req.headers().contains_key("authorization") {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrTerminal).lang(lang));
    }
    let state = state_of(req)?;
    let login = || ConsoleError::login(req).lang(lang);
    let session = req.cookie(SESSION_COOKIE).ok_or_else(login)?;
    let principal = state
        .security
        .session(session.value())
        .map_err(|_| login())?;
    // Staff only: a session of an account that holds no staff role gets no page.
    if !principal
        .roles
        .iter()
        .any(|r| matches!(r, Role::Supervisor | Role::Technician | Role::Admin))
    {
        return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrForbidden).lang(lang));
    }
    Ok(Staff {
        principal,
        session: session.value().to_owned(),
        lang,
        vending: is_vending_site(&state),
    })
}

impl FromRequest for Staff {
    type Error = ConsoleError;
    type Future = std::future::Ready<Result<Staff, ConsoleError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(authenticate(req))
    }
}

/// A console form: what it may do while the unit is locked.
pub trait ConsoleForm: DeserializeOwned {
    /// `true` for the forms a locked unit still takes (logout, the language switch);
    /// every other action is refused while the unit is locked.
    const WHILE_LOCKED: bool = false;
}

/// A posted form of a logged-in staff member whose CSRF token checked out (else
/// `403`), refused with the lock's page while the unit is locked unless the form
/// says it may run then.
pub struct Posted<T> {
    /// Who posted it.
    pub staff: Staff,
    /// The form's fields, the token removed.
    pub form: T,
}

/// Splits the CSRF field off a url-encoded body and decodes the rest as `T`.
pub fn split_form<T: DeserializeOwned>(body: &[u8]) -> Result<(Option<String>, T), String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())?;
    let mut token = None;
    let mut rest = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        if k == CSRF_FIELD {
            token = Some(v);
        } else {
            rest.push((k, v));
        }
    }
    let encoded = serde_urlencoded::to_string(&rest).map_err(|e| e.to_string())?;
    let form = serde_urlencoded::from_str(&encoded).map_err(|e| e.to_string())?;
    Ok((token, form))
}

impl<T: ConsoleForm + 'static> FromRequest for Posted<T> {
    type Error = ConsoleError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ConsoleError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        let body = web::Bytes::from_request(&req, payload);
        Box::pin(async move {
            let staff = authenticate(&req)?;
            let body = body
                .await
                .map_err(|_| ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm))?;
            if body.len() > MAX_FORM_BYTES {
                return Err(ConsoleError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Msg::ErrBadForm,
                ));
            }
            let (token, form) = split_form::<T>(&body).map_err(|e| {
                ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm)
                    .detail(e)
                    .lang(staff.lang)
            })?;
            if !token.is_some_and(|t| csrf_ok(&staff.session, &t)) {
                let state = state_of(&req)?;
                state
                    .security
                    .audit(staff.name(), "console.csrf_refused", req.path());
                return Err(ConsoleError::new(StatusCode::FORBIDDEN, Msg::ErrCsrf).lang(staff.lang));
            }
            if !T::WHILE_LOCKED {
                let state = state_of(&req)?;
                if let Err(locked) = state.security.check_transact() {
                    return Err(ConsoleError::new(StatusCode::LOCKED, Msg::ErrLocked)
                        .detail(locked.reason)
                        .lang(staff.lang));
                }
            }
            Ok(Posted { staff, form })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct F {
        a: String,
        n: Option<u32>,
    }

    #[test]
    fn csrf_tokens_are_per_session_and_checked() {
        let t = csrf_token("s1");
        assert!(csrf_ok("s1", &t));
        assert!(!csrf_ok("s2", &t));
        assert!(!csrf_ok("s1", ""));
        assert!(!csrf_ok("s1", "not hex"));
        assert_ne!(csrf_token("s1"), csrf_token("s2"));
    }

    #[test]
    fn the_token_is_split_off_the_form() {
        let (token, f) = split_form::<F>(b"a=x+y&csrf=abc&n=3").unwrap();
        assert_eq!(token.as_deref(), Some("abc"));
        assert_eq!(
            f,
            F {
                a: "x y".into(),
                n: Some(3)
            }
        );
        let (token, _) = split_form::<F>(b"a=1").unwrap();
        assert_eq!(token, None);
        assert!(
            split_form::<F>(b"n=1").is_err(),
            "a missing field is an error"
        );
        assert!(
            split_form::<F>(b"a=1&n=x").is_err(),
            "a bad number is an error"
        );
    }
}
