//! Issuing terminal tokens and adding staff accounts from the console (admin): each
//! secret is shown once, on the page that answers the form, never in a URL or a log;
//! the audit log names who issued what.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post, web};
use maud::html;
use outpost_security::auth::roles::{Permission, Role};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::error::api_failed;
use super::super::page::{ConsoleError, shell};
use super::super::session::{ConsoleForm, Posted, Staff};
use crate::http::{ApiError, AppState};

#[derive(Deserialize)]
struct TerminalForm {
    name: String,
}
impl ConsoleForm for TerminalForm {}

#[derive(Deserialize)]
struct StaffForm {
    username: String,
    supervisor: Option<String>,
    technician: Option<String>,
    admin: Option<String>,
}
impl ConsoleForm for StaffForm {}

/// The page that shows a new secret once.
fn shown_once(
    staff: &Staff,
    title: Msg,
    who: &str,
    secret_label: Msg,
    secret: &str,
) -> HttpResponse {
    let l = staff.lang;
    let body = html! {
        section.card aria-labelledby="h-secret" {
            h2 #h-secret { (l.t(title)) " " span translate="no" { (who) } }
            p { (l.t(secret_label)) }
            p { code #secret.secret translate="no" { (secret) } }
            p.bad { (l.t(Msg::ShownOnce)) }
            p { a href="/console/security" { (l.t(Msg::BackToSecurity)) } }
        }
    };
    let mut page = shell(staff, "/console/security", Msg::NavSecurity, body);
    // Never cached, never stored by a proxy or the browser's history.
    page.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    page
}

/// Issue a token for a new terminal (admin), as `outpost terminals add NAME` does.
#[post("/console/security/terminals")]
pub async fn issue_terminal(
    state: web::Data<AppState>,
    posted: Posted<TerminalForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::ManageTerminals)?;
    let l = staff.lang;
    let name = posted.form.name.trim().to_owned();
    let (_, token) = state
        .security
        .add_terminal(staff.name(), &name)
        .map_err(|e| api_failed(Msg::ActionFailed, l)(ApiError::from(e)))?;
    Ok(shown_once(
        &staff,
        Msg::TokenIssued,
        &name,
        Msg::TheToken,
        token.expose_secret(),
    ))
}

/// Add a staff account with a generated password (admin). An existing account is not
/// touched: changing one is the admin API's or `outpost users`'.
#[post("/console/security/users")]
pub async fn add_staff(
    state: web::Data<AppState>,
    posted: Posted<StaffForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::ManageUsers)?;
    let l = staff.lang;
    let f = posted.form;
    let username = f.username.trim().to_owned();
    let roles: Vec<Role> = [
        (f.supervisor.is_some(), Role::Supervisor),
        (f.technician.is_some(), Role::Technician),
        (f.admin.is_some(), Role::Admin),
    ]
    .into_iter()
    .filter_map(|(on, r)| on.then_some(r))
    .collect();
    if roles.is_empty() {
        return Err(ConsoleError::new(StatusCode::UNPROCESSABLE_ENTITY, Msg::NoRoleChosen).lang(l));
    }
    if state
        .security
        .users()
        .iter()
        .any(|u| u.username == username)
    {
        return Err(ConsoleError::new(StatusCode::CONFLICT, Msg::AccountExists)
            .detail(username)
            .lang(l));
    }
    let password = outpost_security::auth::password::generate_password();
    let security = state.security.clone();
    let actor = staff.name().to_owned();
    let (who, secret) = (username.clone(), password.clone());
    // argon2 is deliberately slow: keep it off the async workers.
    web::block(move || security.set_user(&actor, &who, &secret, roles))
        .await
        .map_err(|e| {
            ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::ActionFailed)
                .detail(e.to_string())
                .lang(l)
        })?
        .map_err(|e| api_failed(Msg::ActionFailed, l)(ApiError::from(e)))?;
    Ok(shown_once(
        &staff,
        Msg::StaffAdded,
        &username,
        Msg::FirstPassword,
        password.expose_secret(),
    ))
}
