//! The page shell every console page shares: header, navigation, language switch,
//! logout.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use outpost_security::auth::roles::Permission;

use super::catalogue::Msg;
pub use super::document::{csrf_field, head, html_response};
pub use super::error::{ConsoleError, api_failed};
use super::i18n::Lang;
use super::session::Staff;

/// The vending machine's page; the navigation shows it only on a unit that runs one.
pub const VENDING_PATH: &str = "/console/vending";

/// The console's pages, in navigation order, with the permission each needs. The
/// vending page is shown only on a unit that runs a vending machine.
pub const PAGES: &[(&str, Msg, Option<Permission>)] = &[
    ("/console/", Msg::NavDashboard, None),
    (
        "/console/devices",
        Msg::NavDevices,
        Some(Permission::ManageDevices),
    ),
    ("/console/sales", Msg::NavSales, Some(Permission::Sell)),
    (
        "/console/stock",
        Msg::NavStock,
        Some(Permission::ReadCatalog),
    ),
    (VENDING_PATH, Msg::NavVending, Some(Permission::ReadCatalog)),
    ("/console/sync", Msg::NavSync, Some(Permission::ReadLogs)),
    (
        "/console/updates",
        Msg::NavUpdates,
        Some(Permission::ReadLogs),
    ),
    ("/console/logs", Msg::NavLogs, Some(Permission::ReadLogs)),
    ("/console/security", Msg::NavSecurity, None),
];

/// A whole page: `<head>`, the header with navigation, `main`.
pub fn shell(staff: &Staff, active: &str, title: Msg, main: Markup) -> HttpResponse {
    let l = staff.lang;
    let body = html! {
        (DOCTYPE)
        html lang=(l.tag()) {
            (head(l, title))
            body {
                a.skip href="#main" { (l.t(Msg::SkipToContent)) }
                header.top {
                    span.brand translate="no" { "Outpost" }
                    nav aria-label=(l.t(Msg::NavLabel)) {
                        ul {
                            @for (href, msg, perm) in PAGES {
                                @if perm.is_none_or(|p| staff.may(p)) && (*href != VENDING_PATH || staff.vending) {
                                    li { a href=(href) aria-current=[(*href == active).then_some("page")] { (l.t(*msg)) } }
                                }
                            }
                        }
                    }
                    div.who {
                        span translate="no" { (staff.name()) }
                        (lang_switch(l, &staff.csrf()))
                        form method="post" action="/console/logout" {
                            (csrf_field(&staff.csrf()))
                            button type="submit" { (l.t(Msg::LogOut)) }
                        }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (l.t(title)) }
                    (main)
                }
            }
        }
    };
    html_response(StatusCode::OK, body)
}

/// The language switch: one button per language, posting to `/console/lang`.
pub fn lang_switch(l: Lang, csrf: &str) -> Markup {
    html! {
        form.lang method="post" action="/console/lang" {
            (csrf_field(csrf))
            @for other in Lang::ALL {
                @if other != l {
                    button type="submit" name="lang" value=(other.tag()) lang=(other.tag()) translate="no" { (other.native_name()) }
                }
            }
        }
    }
}

/// A flash line above a page's content: what the last action did.
pub fn notice(ok: bool, text: &str, raw: Option<&str>) -> Markup {
    html! {
        p.notice.ok[ok].bad[!ok] role="status" {
            (text)
            @if let Some(r) = raw { " " span.raw translate="no" { (r) } }
        }
    }
}
