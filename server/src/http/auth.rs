//! Who is calling: terminal bearer tokens and staff session cookies, staff login and
//! logout, and the audit log.
//!
//! Every handler except `/healthz` and `/api/v1/openapi.json` takes a [`Caller`] and
//! asks it for the permission it needs (`caller.require(Permission::Sell)?`): no or bad
//! credentials answer `401 unauthorized`, the wrong role `403 forbidden`.

use std::future::{Ready, ready};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, get, post, web};
use outpost_security::auth::AuthError;
use outpost_security::auth::audit::AuditEntry;
use outpost_security::auth::roles::{Permission, Principal, Role};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::access::SESSION_COOKIE;
use crate::access::staff::LoginError;

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "credentials are missing or not valid: send `Authorization: Bearer <terminal token>` or log in at /api/v1/auth/login",
            )
            .header("www-authenticate", "Bearer"),
            AuthError::Forbidden { role, permission } => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("role {role} may not {permission}"),
            ),
            AuthError::RateLimited { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many failed logins; retry in {retry_after_secs} s"),
            )
            .header("retry-after", retry_after_secs.to_string()),
            AuthError::Invalid { field, reason } => {
                ApiError::unprocessable("invalid_credential", reason).field(field)
            }
            other => {
                tracing::error!(error = %other, "Credential store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "credentials_unavailable",
                    "the credential store is unavailable",
                )
            }
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Auth(e) => e.into(),
            // 429 rather than 503: the server is healthy, this caller (and every
            // other) is asked to slow down; the same code as the throttle, so a
            // terminal needs one retry rule.
            LoginError::Busy { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many logins are being checked at once; retry in {retry_after_secs} s"),
            )
            .header("retry-after", retry_after_secs.to_string()),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who, with which roles.
    pub principal: Principal,
    /// Whether a terminal token (not a staff session) authenticated the request.
    pub is_terminal: bool,
    /// Whether a shopper session authenticated the request: a principal with no role,
    /// refused by every permission check (it uses `/api/v1/shopper/…` routes only).
    pub is_shopper: bool,
}

impl Caller {
    /// `Ok` when the caller holds `permission`, else `403`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.is_shopper {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "a shopper session may not {}: it may only use the /api/v1/shopper/ routes",
                    permission.as_str()
                ),
            ));
        }
        Ok(self.principal.require(permission)?)
    }

    /// The caller's name (terminal name or username).
    pub fn name(&self) -> &str {
        &self.principal.name
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no state"))?;
    if let Some(h) = req.headers().get("authorization") {
        let token = h
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(AuthError::Unauthorized)?;
        let principal = state.security.terminal(token.trim())?;
        return Ok(Caller {
            principal,
            is_terminal: true,
            is_shopper: false,
        });
    }
    if let Some(c) = req.cookie(SESSION_COOKIE) {
        let principal = state.security.session(c.value())?;
        return Ok(Caller {
            principal,
            is_terminal: false,
            is_shopper: false,
        });
    }
    if let Some(c) = req.cookie(crate::shopper::SHOPPER_COOKIE) {
        // Counted against the session's request budget like its own routes, so
        // probing staff routes is rate-limited too.
        let session = state.shoppers.touch(c.value(), std::time::Instant::now())?;
        let number = session.lock().unwrap_or_else(|p| p.into_inner()).number;
        return Ok(Caller {
            principal: Principal {
                name: format!("shopper-{number}"),
                roles: Vec::new(),
            },
            is_terminal: false,
            is_shopper: true,
        });
    }
    Err(AuthError::Unauthorized.into())
}

/// Who may read `/metrics`: Prometheus with the scrape token (`[metrics] token_file`),
/// or a staff member who may read logs.
#[derive(Debug)]
pub struct MetricsReader;

/// The shortest scrape token accepted (`outpost metrics-token` makes 64 characters).
pub const MIN_SCRAPE_TOKEN: usize = 32;

fn authenticate_metrics(req: &HttpRequest) -> Result<MetricsReader, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no state"))?;
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let (Some(file), Some(bearer)) = (&state.settings.metrics.token_file, bearer) {
        match std::fs::read_to_string(file) {
            Ok(token) if token.trim().len() >= MIN_SCRAPE_TOKEN => {
                use subtle::ConstantTimeEq as _;
                if bool::from(token.trim().as_bytes().ct_eq(bearer.as_bytes())) {
                    return Ok(MetricsReader);
                }
            }
            Ok(_) => tracing::warn!(
                file = %file.display(),
                "The metrics scrape token file holds fewer than {MIN_SCRAPE_TOKEN} characters; make one with `outpost metrics-token`"
            ),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "Cannot read the metrics scrape token file")
            }
        }
    }
    authenticate(req)?.require(Permission::ReadLogs)?;
    Ok(MetricsReader)
}

impl FromRequest for MetricsReader {
    type Error = ApiError;
    type Future = Ready<Result<MetricsReader, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate_metrics(req))
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// A staff login.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username.
    pub username: String,
    /// Password (10 to 256 characters).
    pub password: String,
}

/// Who is logged in.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    /// Username.
    pub username: String,
    /// Roles held.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// Seconds until the session expires.
    pub expires_in_secs: u64,
}

fn session_cookie<'a>(state: &AppState, value: String) -> Cookie<'a> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.tls)
        .finish()
}

/// Log in with a username and password; sets the session cookie (HttpOnly,
/// SameSite=Strict, Secure on TLS). Throttled per username and client address and per
/// client address; `429 rate_limited` with `Retry-After` also when too many logins are
/// being checked at once.
#[utoipa::path(tag = "auth", security(()), request_body = LoginRequest, responses((status = 200, body = LoginView), (status = 401, body = super::ErrorBody), (status = 429, body = super::ErrorBody)))]
#[post("/api/v1/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let ip = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let LoginRequest { username, password } = body.0;
    let password = SecretString::from(password);
    // Throttle slot and queue place first (refused at once when either is full), then
    // a hashing permit (waiting here is cheap: no thread is held).
    let turn = state.security.begin_login(&username, ip)?.turn().await?;
    let security = state.security.clone();
    // argon2 is deliberately slow: keep it off the async workers. The turn moves into
    // the job, so its permit is held until argon2 ends even if this request is dropped.
    let (session, principal) = web::block(move || security.finish_login(turn, &password))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "login could not run",
            )
        })??;
    let mut cookie = session_cookie(&state, session);
    let ttl = state.settings.security.session_ttl_secs;
    cookie.set_max_age(actix_web::cookie::time::Duration::seconds(ttl as i64));
    Ok(HttpResponse::Ok().cookie(cookie).json(LoginView {
        username: principal.name,
        roles: principal.roles,
        expires_in_secs: ttl,
    }))
}

/// End the caller's session and clear the cookie.
#[utoipa::path(tag = "auth", responses((status = 204), (status = 401, body = super::ErrorBody)))]
#[post("/api/v1/auth/logout")]
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let c = req.cookie(SESSION_COOKIE).ok_or(AuthError::Unauthorized)?;
    let who = state
        .security
        .end_session(c.value())
        .ok_or(AuthError::Unauthorized)?;
    state.security.audit(&who.name, "logout", "");
    let mut gone = session_cookie(&state, String::new());
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

/// Audit log paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Entries after this sequence number (default 0).
    #[param(maximum = 18446744073709551615_u64)]
    pub after: Option<u64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of the audit log and the chain's verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<AuditEntry>,
    /// `true` when the whole chain verifies.
    pub verified: bool,
    /// Entries in the chain (when verified).
    pub count: Option<u64>,
    /// Where and why the chain breaks (when not).
    pub error: Option<String>,
    /// Sequence and hash of the last entry this process wrote or read.
    pub head: Option<(u64, String)>,
}

/// The hash-chained audit log (admin), with a verification of the whole chain.
#[utoipa::path(tag = "auth", params(AuditQuery), responses((status = 200, body = AuditPage), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
#[get("/api/v1/audit")]
pub async fn audit(
    state: web::Data<AppState>,
    caller: Caller,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(
            ApiError::bad_request("invalid_query", "limit must be 1 to 1000").field("limit"),
        );
    }
    let entries = state
        .security
        .audit_entries(q.after.unwrap_or(0), limit)
        .map_err(|e| {
            if matches!(e, crate::access::AccessError::Locked) {
                return ApiError::new(
                    StatusCode::LOCKED,
                    "device_locked",
                    "the device is locked: the audit log cannot be read until a signed unlock",
                );
            }
            tracing::error!(error = %e, "Failed to read the audit log");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log could not be read",
            )
        })?;
    let (verified, count, error) = match state.security.audit_verify() {
        Ok(n) => (true, Some(n), None),
        Err(e) => (false, None, Some(e.to_string())),
    };
    Ok(HttpResponse::Ok().json(AuditPage {
        entries,
        verified,
        count,
        error,
        head: state.security.audit_head(),
    }))
}
