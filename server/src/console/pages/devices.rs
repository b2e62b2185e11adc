//! Devices: each with kind, status, health and last error; health check, test print,
//! open drawer; the receipt queue.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use maud::html;
use outpost_peripherals::{DeviceKind, HealthLevel};
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::page::{ConsoleError, csrf_field, notice, shell};
use super::super::session::{ConsoleForm, Posted, Staff};
use super::super::{label, snake};
use crate::http::AppState;

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
    device: Option<String>,
    error: Option<String>,
}

/// The devices page.
#[get("/console/devices")]
pub async fn devices(
    staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<Done>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ManageDevices)?;
    let l = staff.lang;
    let csrf = staff.csrf();
    let spooler = state.devices.spooler();
    let queue = spooler.queue().list(100).map_err(|e| {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
            .detail(e.to_string())
            .lang(l)
    })?;
    let done = q
        .done
        .as_deref()
        .and_then(|d| Msg::lookup(&format!("done.{d}")));
    let body = html! {
        @if let Some(m) = done {
            (notice(q.error.is_none(), l.t(m), q.device.as_deref()))
            @if let Some(e) = &q.error { (notice(false, l.t(Msg::ActionFailed), Some(e))) }
        }
        table {
            caption.muted { (l.t(Msg::DevicesCaption)) }
            thead { tr {
                th scope="col" { (l.t(Msg::Device)) }
                th scope="col" { (l.t(Msg::Kind)) }
                th scope="col" { (l.t(Msg::State)) }
                th scope="col" { (l.t(Msg::Health)) }
                th scope="col" { (l.t(Msg::LastError)) }
                th scope="col" { (l.t(Msg::Actions)) }
            } }
            tbody {
                @for d in state.devices.views() {
                    tr data-device=(d.id) {
                        th scope="row" translate="no" { (d.id) br; span.muted.raw { (d.driver) " · " (d.transport) } }
                        td { (label(l, "kind", &snake(&d.kind))) }
                        td {
                            span.badge.good[d.usable].bad[!d.usable] { (label(l, "state", &snake(&d.state))) }
                        }
                        td {
                            (label(l, "health", &snake(&d.health.health)))
                            @if !d.health.detail.is_empty() { br; span.raw.muted translate="no" { (d.health.detail) } }
                            br; span.muted { (l.datetime_ms(d.health.checked_at_ms as i64)) }
                        }
                        td {
                            @match &d.last_error {
                                Some(e) => { span.raw.bad translate="no" { (e) } br; span.muted { (l.datetime_ms(d.last_error_at_ms as i64)) } }
                                None => { "—" }
                            }
                        }
                        td { div.actions {
                            (action(&csrf, &d.id, "health_check", l.t(Msg::HealthCheck)))
                            @if d.kind == DeviceKind::ReceiptPrinter {
                                (action(&csrf, &d.id, "test_print", l.t(Msg::TestPrint)))
                            }
                            @if d.kind == DeviceKind::CashDrawer {
                                (action(&csrf, &d.id, "open_drawer", l.t(Msg::OpenDrawer)))
                            }
                        } }
                    }
                }
            }
        }
        section.card.mt aria-labelledby="h-queue" {
            h2 #h-queue { (l.t(Msg::ReceiptQueue)) " (" (l.number(spooler.queue().len() as i64)) ")" }
            @if let Some(e) = spooler.last_error() { p.bad { (l.t(Msg::PrinterNotPrinting)) " " span.raw translate="no" { (e) } } }
            @if queue.is_empty() {
                p { (l.t(Msg::QueueEmpty)) }
            } @else {
                table {
                    thead { tr { th scope="col" { (l.t(Msg::Sale)) } th scope="col" { (l.t(Msg::Queued)) } th scope="col" { (l.t(Msg::Why)) } } }
                    tbody {
                        @for r in &queue {
                            tr {
                                td { a.raw translate="no" href=(format!("/console/sales/{}", r.sale_id)) { (r.sale_id) } }
                                td { (l.datetime_ms(r.queued_at_ms as i64)) }
                                td.raw translate="no" { (r.reason) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell(&staff, "/console/devices", Msg::NavDevices, body))
}

fn action(csrf: &str, id: &str, what: &str, text: &str) -> maud::Markup {
    html! {
        form.inline method="post" action=(format!("/console/devices/{id}/{what}")) data-once {
            (csrf_field(csrf))
            button.secondary type="submit" { (text) }
        }
    }
}

#[derive(Deserialize)]
struct NoFields {}
impl ConsoleForm for NoFields {}

/// A device action: `health_check`, `test_print` (an external health check: the
/// printer prints its test page) or `open_drawer`.
#[post("/console/devices/{id}/{action}")]
pub async fn device_action(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::ManageDevices)?;
    let l = staff.lang;
    let (id, action) = path.into_inner();
    let not_found = || {
        ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNoDevice)
            .detail(id.clone())
            .lang(l)
    };
    let entry = state.devices.entry(&id).ok_or_else(not_found)?;
    let kind = entry.kind;
    let error = match action.as_str() {
        "health_check" | "test_print" => {
            let level = if action == "test_print" {
                if kind != DeviceKind::ReceiptPrinter {
                    return Err(not_found());
                }
                HealthLevel::External
            } else {
                HealthLevel::Internal
            };
            state.security.audit(
                staff.name(),
                "device.health_check",
                &format!("device {id} level {} (console)", snake(&level)),
            );
            let view = state
                .devices
                .health_check(&id, level)
                .await
                .ok_or_else(not_found)?;
            (view.health.health != outpost_peripherals::Health::Ok).then(|| {
                if view.health.detail.is_empty() {
                    snake(&view.health.health)
                } else {
                    view.health.detail
                }
            })
        }
        "open_drawer" => {
            let drawer = state
                .devices
                .drawer()
                .filter(|_| kind == DeviceKind::CashDrawer)
                .ok_or_else(not_found)?;
            state.security.audit(
                staff.name(),
                "device.open_drawer",
                &format!("device {id} (console)"),
            );
            drawer.open_drawer().await.err().map(|e| e.to_string())
        }
        _ => return Err(ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNotFound).lang(l)),
    };
    let mut to = format!(
        "/console/devices?{}",
        serde_urlencoded::to_string([("done", action.as_str()), ("device", id.as_str())])
            .unwrap_or_default()
    );
    if let Some(e) = error {
        to.push('&');
        to.push_str(&serde_urlencoded::to_string([("error", e)]).unwrap_or_default());
    }
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", to))
        .finish())
}
