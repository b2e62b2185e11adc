//! The technician console: server-rendered pages under `/console/` on the REST port,
//! for the staff who look after a store's unit (docs/console.md).
//!
//! It logs in with the same staff accounts, sessions and roles as the API, refuses
//! terminal tokens, checks a per-session CSRF token on every form, and calls the
//! same services the REST handlers call; every action is audited.
//!
//! # Layout
//! - [`session`]: the staff extractor, CSRF tokens, posted forms.
//! - [`i18n`] and [`catalogue`]: English and Russian, numbers, money and dates.
//! - [`page`]: the page shell; [`document`]: `<head>`, headers, the CSRF field;
//!   [`error`]: the error page; [`assets`]: CSS and JS.
//! - [`facts`] and [`alerts`]: what the dashboard reads and the alerts it raises.
//! - [`pages`]: one file per page.

pub mod alerts;
pub mod assets;
pub mod catalogue;
pub mod document;
pub mod error;
pub mod facts;
pub mod i18n;
pub mod page;
pub mod pages;
pub mod session;

use actix_web::{HttpRequest, web};
use maud::{Markup, html};
use serde::Serialize;

use catalogue::Msg;
use i18n::Lang;

/// Register every console route.
pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(assets::asset)
        .service(pages::login::login_page)
        .service(pages::login::login)
        .service(pages::login::logout)
        .service(pages::login::set_lang)
        .service(pages::dashboard::dashboard)
        .service(pages::devices::devices)
        .service(pages::devices::device_action)
        .service(pages::sales::sales)
        .service(pages::sales::sale)
        .service(pages::sales::refund)
        .service(pages::sales::reprint)
        .service(pages::stock::stock)
        .service(pages::stock::adjust)
        .service(pages::stock::count)
        .service(pages::sync::sync)
        .service(pages::updates::updates)
        .service(pages::updates::apply)
        .service(pages::updates::rollback)
        .service(pages::vending::vending)
        .service(pages::vending::clear_temperature)
        .service(pages::logs::logs)
        .service(pages::logs::stream)
        .service(pages::logs::download)
        .service(pages::security::security)
        .service(pages::security::revoke_terminal)
        .service(pages::accounts::issue_terminal)
        .service(pages::accounts::add_staff)
        .route("/console", web::get().to(to_dashboard));
}

async fn to_dashboard() -> actix_web::HttpResponse {
    actix_web::HttpResponse::PermanentRedirect()
        .insert_header(("location", "/console/"))
        .finish()
}

/// The panel a self-refreshing page asked for (`X-Console-Partial`), if any.
pub fn partial(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("x-console-partial")
        .and_then(|v| v.to_str().ok())
}

/// The snake_case name serde gives an enum value (`receipt_printer`).
pub fn snake<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The catalogue's word for `group.value` (a device kind, a state), else the value
/// itself marked as untranslated data.
pub fn label(l: Lang, group: &str, value: &str) -> Markup {
    match Msg::lookup(&format!("{group}.{value}")) {
        Some(m) => html! { (l.t(m)) },
        None => html! { span.raw translate="no" { (value) } },
    }
}
