//! Staff accounts and terminal tokens, for admins: what `outpost users` and
//! `outpost terminals` do on the unit's shell, over the API.
//!
//! A terminal token is shown once, in the answer that issues it, and never again
//! (only its hash is kept). Issuing is not replayed by `Idempotency-Key` on purpose: a
//! replay would have to store the token. A retry finds the name taken (`409
//! terminal_exists`); revoke that token and issue another. Account changes are
//! naturally idempotent (`PUT` sets, `DELETE` disables). No change may leave the store
//! without an enabled admin (`409 last_admin`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, delete, get, post, put, web};
use outpost_security::auth::roles::{Permission, Role};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::auth::Caller;
use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::access::AccessError;

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Auth(a) => a.into(),
            AccessError::Locked => ApiError::new(
                StatusCode::LOCKED,
                "device_locked",
                "the device is locked: accounts and terminals cannot change until HQ unlocks it",
            ),
            AccessError::LastAdmin(_) => {
                ApiError::new(StatusCode::CONFLICT, "last_admin", e.to_string())
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

fn rfc3339(unix: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// A terminal token as listed: never the token or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TerminalView {
    /// The token's public id (16 hex characters; the token starts `opt_<id>_`).
    pub id: String,
    /// The terminal's name.
    pub name: String,
    /// When issued (RFC 3339).
    pub created_at: Option<String>,
    /// When revoked (RFC 3339); `null` while the token is valid.
    pub revoked_at: Option<String>,
    /// Whether the token still authenticates.
    pub active: bool,
}

/// Every terminal token ever issued.
#[derive(Debug, Serialize, ToSchema)]
pub struct TerminalList {
    /// Oldest id first; revoked tokens included.
    pub items: Vec<TerminalView>,
}

/// A terminal to issue a token for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTerminal {
    /// 1 to 64 of A-Z a-z 0-9 - _ . @; no other active token may have it.
    pub name: String,
}

/// A new terminal token: the only time the token is shown.
#[derive(Serialize, ToSchema)]
pub struct IssuedTerminal {
    /// The token's public id.
    pub id: String,
    /// The terminal's name.
    pub name: String,
    /// The bearer token (`Authorization: Bearer <token>`). Not stored: keep it now.
    pub token: String,
    /// When issued (RFC 3339).
    pub created_at: Option<String>,
}

/// Every terminal token, revoked ones included; never a token or its hash.
#[utoipa::path(tag = "admin", responses((status = 200, body = TerminalList), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
#[get("/api/v1/terminals")]
pub async fn list_terminals(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTerminals)?;
    let items = state
        .security
        .terminals()
        .into_iter()
        .map(|t| TerminalView {
            active: t.revoked_at.is_none(),
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.and_then(rfc3339),
            id: t.id,
            name: t.name,
        })
        .collect();
    Ok(HttpResponse::Ok().json(TerminalList { items }))
}

/// Issue a token for a terminal; the answer holds the token, shown this once.
#[utoipa::path(tag = "admin", request_body = NewTerminal, responses((status = 201, body = IssuedTerminal), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody), (status = 423, body = super::ErrorBody)))]
#[post("/api/v1/terminals")]
pub async fn add_terminal(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonBody<NewTerminal>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTerminals)?;
    let name = body.0.name;
    if state
        .security
        .terminals()
        .iter()
        .any(|t| t.name == name && t.revoked_at.is_none())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "terminal_exists",
            format!("terminal {name:?} already has an active token: revoke it first (DELETE /api/v1/terminals/{name}), then issue a new one"),
        )
        .field("name"));
    }
    let (record, token) = state.security.add_terminal(caller.name(), &name)?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(IssuedTerminal {
            created_at: rfc3339(record.created_at),
            id: record.id,
            name: record.name,
            token: token.expose_secret().to_owned(),
        }))
}

/// Revoke a terminal's token: it stops authenticating at once.
#[utoipa::path(tag = "admin", params(("name" = String, Path, description = "Terminal name")), responses((status = 204), (status = 404, body = super::ErrorBody), (status = 423, body = super::ErrorBody)))]
#[delete("/api/v1/terminals/{name}")]
pub async fn revoke_terminal(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTerminals)?;
    if state.security.revoke_terminal(caller.name(), &name)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(
            "terminal_not_found",
            format!("terminal {:?} has no active token", name.as_str()),
        ))
    }
}

/// A staff account as listed: never its password hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Login name.
    pub username: String,
    /// Roles held.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<Role>,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
}

/// Every staff account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// In username order; disabled accounts included.
    pub items: Vec<UserView>,
}

/// A staff account to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetUser {
    /// 10 to 256 characters.
    pub password: String,
    /// One or more of `supervisor`, `technician`, `admin`.
    #[schema(value_type = Vec<RoleName>, min_items = 1)]
    pub roles: Vec<Role>,
}

/// Every staff account, disabled ones included; never a password hash.
#[utoipa::path(tag = "admin", responses((status = 200, body = UserList), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
#[get("/api/v1/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let items = state
        .security
        .users()
        .into_iter()
        .map(|u| UserView {
            username: u.username,
            roles: u.roles,
            disabled: u.disabled,
        })
        .collect();
    Ok(HttpResponse::Ok().json(UserList { items }))
}

/// Create or replace a staff account (password and roles; enables a disabled one).
/// Replacing ends the account's open sessions.
#[utoipa::path(tag = "admin", params(("username" = String, Path, description = "1 to 64 of A-Z a-z 0-9 - _ . @")), request_body = SetUser, responses((status = 201, body = UserView), (status = 200, body = UserView), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody), (status = 423, body = super::ErrorBody)))]
#[put("/api/v1/users/{username}")]
pub async fn put_user(
    state: web::Data<AppState>,
    caller: Caller,
    username: web::Path<String>,
    body: JsonBody<SetUser>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let SetUser { password, roles } = body.0;
    let password = SecretString::from(password);
    let security = state.security.clone();
    let actor = caller.name().to_owned();
    let (name, view_roles) = (username.into_inner(), roles.clone());
    let who = name.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let created = web::block(move || security.set_user(&actor, &who, &password, roles))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "the account could not be saved",
            )
        })??;
    let view = UserView {
        username: name,
        roles: view_roles,
        disabled: false,
    };
    Ok(if created {
        HttpResponse::Created().json(view)
    } else {
        HttpResponse::Ok().json(view)
    })
}

/// Disable a staff account: it cannot log in and its sessions end at once. The
/// account stays listed; `PUT` with a new password enables it again.
#[utoipa::path(tag = "admin", params(("username" = String, Path, description = "Username")), responses((status = 204), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 423, body = super::ErrorBody)))]
#[delete("/api/v1/users/{username}")]
pub async fn disable_user(
    state: web::Data<AppState>,
    caller: Caller,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageUsers)?;
    if state.security.disable_user(caller.name(), &username)? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(
            "user_not_found",
            format!("no staff account {:?}", username.as_str()),
        ))
    }
}

/// A staff role, as the API names it.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum RoleName {
    Supervisor,
    Technician,
    Admin,
}
