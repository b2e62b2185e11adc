//! Updates: running, staged and previous releases and the last update's result;
//! applying a release bundle and rolling back to the previous release (the API's
//! `POST /api/v1/update` and `POST /api/v1/update/rollback`, same permission).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use maud::html;
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::facts::update_status;
use super::super::label;
use super::super::page::{ConsoleError, csrf_field, notice, shell};
use super::super::session::{ConsoleForm, Posted, Staff};
use crate::http::AppState;

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    to: Option<String>,
}

/// The updates page.
#[get("/console/updates")]
pub async fn updates(
    staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<Done>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadLogs)?;
    let l = staff.lang;
    let status = update_status(&state);
    let body = html! {
        @if q.done.as_deref() == Some("applied") { (notice(true, l.t(Msg::UpdateApplied), q.to.as_deref())) }
        @if q.done.as_deref() == Some("rolling_back") { (notice(true, l.t(Msg::RollbackStarted), q.to.as_deref())) }
        @match &status {
            Err(e) => { (notice(false, l.t(Msg::Unavailable), Some(e))) }
            Ok(s) => {
                div.grid {
                    section.card aria-labelledby="h-rel" {
                        h2 #h-rel { (l.t(Msg::Releases)) }
                        dl {
                            dt { (l.t(Msg::Running)) } dd translate="no" { (s.running) }
                            dt { (l.t(Msg::Target)) } dd translate="no" { (s.target) }
                            dt { (l.t(Msg::Current)) } dd translate="no" { (s.current.as_deref().unwrap_or("—")) }
                            dt { (l.t(Msg::Previous)) } dd translate="no" { (s.previous.as_deref().unwrap_or("—")) }
                            dt { (l.t(Msg::Installed)) } dd translate="no" { @if s.installed.is_empty() { "—" } @else { (s.installed.join(", ")) } }
                            dt { (l.t(Msg::Floor)) } dd translate="no" { (s.highest_installed.as_deref().unwrap_or("—")) }
                        }
                        @if s.releases_dir.is_none() { p.muted { (l.t(Msg::NoReleasesDir)) } }
                    }
                    section.card aria-labelledby="h-staged" {
                        h2 #h-staged { (l.t(Msg::OnProbation)) }
                        @match &s.pending {
                            None => { p { (l.t(Msg::None)) } }
                            Some(p) => {
                                dl {
                                    dt { (l.t(Msg::From)) } dd translate="no" { (p.from) }
                                    dt { (l.t(Msg::To)) } dd translate="no" { (p.to) }
                                    dt { (l.t(Msg::When)) } dd { (l.datetime_ms(p.switched_at.saturating_mul(1000))) }
                                    dt { (l.t(Msg::Starts)) } dd { (l.number(i64::from(p.starts))) }
                                    @if let Some(g) = &p.gate_failed { dt { (l.t(Msg::LastError)) } dd.raw.bad translate="no" { (g) } }
                                }
                            }
                        }
                    }
                    section.card aria-labelledby="h-last" {
                        h2 #h-last { (l.t(Msg::LastUpdate)) }
                        @match &s.last {
                            None => { p { (l.t(Msg::None)) } }
                            Some(o) => {
                                dl {
                                    dt { (l.t(Msg::Version)) } dd translate="no" { (o.version) }
                                    dt { (l.t(Msg::From)) } dd translate="no" { (o.from) }
                                    dt { (l.t(Msg::Result)) } dd { (label(l, "update", &o.result)) }
                                    dt { (l.t(Msg::When)) } dd { (l.datetime_ms(o.at.saturating_mul(1000))) }
                                    @if !o.reason.is_empty() { dt { (l.t(Msg::Why)) } dd.raw translate="no" { (o.reason) } }
                                }
                            }
                        }
                    }
                }
                section.card.mt aria-labelledby="h-apply" {
                    h2 #h-apply { (l.t(Msg::ApplyUpdate)) }
                    p.muted { (l.t(Msg::ApplyHelp)) }
                    p.muted { (l.t(Msg::RollbackHelp)) " " code translate="no" { "outpost update rollback" } }
                    @if staff.may(Permission::Configure) && s.releases_dir.is_some()
                        && let Some(prev) = s.previous.as_deref().filter(|p| Some(*p) != s.current.as_deref())
                    {
                        form method="post" action="/console/updates/rollback" data-once {
                            (csrf_field(&staff.csrf()))
                            span { (l.t(Msg::RollbackTo)) ": " span translate="no" { (prev) } }
                            " "
                            button.danger type="submit" { (l.t(Msg::RollbackNow)) }
                        }
                    }
                    @if staff.may(Permission::Configure) && s.releases_dir.is_some() {
                        form method="post" action="/console/updates/apply" data-once {
                            (csrf_field(&staff.csrf()))
                            label for="bundle" { (l.t(Msg::BundleDir)) }
                            input #bundle name="bundle" required size="50";
                            " "
                            button.danger type="submit" { (l.t(Msg::Apply)) }
                        }
                    }
                }
            }
        }
    };
    Ok(shell(&staff, "/console/updates", Msg::NavUpdates, body))
}

#[derive(Deserialize)]
struct ApplyForm {
    bundle: String,
}
impl ConsoleForm for ApplyForm {}

/// Apply a release bundle: the updater verifies, stages, self-tests and switches; the
/// server then restarts into the new release.
#[post("/console/updates/apply")]
pub async fn apply(
    state: web::Data<AppState>,
    posted: Posted<ApplyForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Configure)?;
    let l = staff.lang;
    let bundle = posted.form.bundle.trim().to_owned();
    if bundle.is_empty() {
        return Err(ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm)
            .detail("bundle")
            .lang(l));
    }
    let (store, access, settings) = (
        state.sales.store().clone(),
        state.security.clone(),
        state.settings.clone(),
    );
    let actor = staff.name().to_owned();
    let path = std::path::PathBuf::from(bundle);
    let result = web::block(move || {
        crate::update::live::apply_bundle(&store, &access, &settings, &path, &actor)
    })
    .await
    .map_err(|e| {
        ConsoleError::new(StatusCode::INTERNAL_SERVER_ERROR, Msg::ErrInternal)
            .detail(e.to_string())
            .lang(l)
    })?;
    let switched = result.map_err(|e| {
        ConsoleError::new(StatusCode::UNPROCESSABLE_ENTITY, Msg::UpdateRefused)
            .detail(format!("{}: {e}", e.code()))
            .lang(l)
    })?;
    crate::update::live::restart_soon(&state.restart);
    Ok(HttpResponse::SeeOther()
        .insert_header((
            "location",
            format!("/console/updates?done=applied&to={}", switched.to),
        ))
        .finish())
}

#[derive(Deserialize)]
struct RollbackForm {}
impl ConsoleForm for RollbackForm {}

/// Roll back to the previous release: the guard switches back before the server
/// starts again.
#[post("/console/updates/rollback")]
pub async fn rollback(
    state: web::Data<AppState>,
    posted: Posted<RollbackForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Configure)?;
    let l = staff.lang;
    let (access, settings) = (state.security.clone(), state.settings.clone());
    let actor = staff.name().to_owned();
    let result =
        web::block(move || crate::update::live::request_rollback(&access, &settings, &actor))
            .await
            .map_err(|e| {
                ConsoleError::new(StatusCode::INTERNAL_SERVER_ERROR, Msg::ErrInternal)
                    .detail(e.to_string())
                    .lang(l)
            })?;
    let (_, to) = result.map_err(|e| {
        ConsoleError::new(StatusCode::CONFLICT, Msg::RollbackRefused)
            .detail(format!("{}: {e}", e.code()))
            .lang(l)
    })?;
    crate::update::live::restart_soon(&state.restart);
    Ok(HttpResponse::SeeOther()
        .insert_header((
            actix_web::http::header::LOCATION,
            format!("/console/updates?done=rolling_back&to={to}"),
        ))
        .finish())
}
