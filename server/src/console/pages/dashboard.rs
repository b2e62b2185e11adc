//! The dashboard: one glance at the unit, alerts first, refreshing itself.

use actix_web::{HttpRequest, HttpResponse, get, web};
use maud::{Markup, html};
use time::OffsetDateTime;

use super::super::alerts::{Alert, Level, alerts};
use super::super::catalogue::Msg;
use super::super::i18n::Lang;
use super::super::page::{ConsoleError, html_response, shell};
use super::super::session::Staff;
use super::super::{facts::Facts, label};
use crate::http::AppState;

/// The id of the panel the page refreshes.
const LIVE: &str = "live";

/// The dashboard.
#[get("/console/")]
pub async fn dashboard(
    staff: Staff,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ConsoleError> {
    let facts = Facts::gather(&state).await;
    let live = panel(staff.lang, &facts, &alerts(&facts));
    if super::super::partial(&req) == Some(LIVE) {
        return Ok(html_response(actix_web::http::StatusCode::OK, live));
    }
    let body = html! {
        div #live data-refresh="5" aria-live="polite" { (live) }
    };
    Ok(shell(&staff, "/console/", Msg::NavDashboard, body))
}

fn alert_list(l: Lang, list: &[Alert]) -> Markup {
    html! {
        h2 { (l.t(Msg::Alerts)) }
        ul.alerts {
            @if list.is_empty() {
                li.none { strong { (l.t(Msg::AlertNone)) } }
            }
            @for a in list {
                li.warn[a.level == Level::Warning] {
                    strong { (l.t(a.what)) }
                    (l.t(a.todo))
                    @if let Some(d) = &a.detail { " " span.raw translate="no" { "(" (d) ")" } }
                }
            }
        }
    }
}

fn panel(l: Lang, f: &Facts, list: &[Alert]) -> Markup {
    let now = OffsetDateTime::now_utc();
    html! {
        (alert_list(l, list))
        div.grid {
            section.card aria-labelledby="h-unit" {
                h2 #h-unit { (l.t(Msg::ThisUnit)) }
                dl {
                    dt { (l.t(Msg::Version)) } dd translate="no" { (f.version) }
                    dt { (l.t(Msg::Uptime)) } dd { (l.duration(f.uptime_secs)) }
                    dt { (l.t(Msg::StoreName)) } dd translate="no" { (f.store_name) }
                    dt { (l.t(Msg::Disk)) }
                    dd {
                        @match &f.disk {
                            Some(d) => { (l.bytes(d.free)) " " (l.t(Msg::FreeOf)) " " (l.bytes(d.total)) }
                            None => { (l.t(Msg::Unknown)) }
                        }
                    }
                }
            }
            section.card aria-labelledby="h-lock" {
                h2 #h-lock { (l.t(Msg::LockAndLease)) }
                dl {
                    dt { (l.t(Msg::State)) } dd { (label(l, "lease", &f.lease.state)) }
                    @if let Some(left) = f.lease_left_secs(now) {
                        dt { (l.t(Msg::TimeLeft)) } dd { (l.duration(left)) }
                    }
                    dt { (l.t(Msg::Transactions)) }
                    dd { @if f.lease.can_transact { span.good { (l.t(Msg::Allowed)) } } @else { span.bad { (l.t(Msg::Refused)) } } }
                    dt { (l.t(Msg::Why)) } dd.raw translate="no" { (f.lease.reason) }
                }
            }
            section.card aria-labelledby="h-hq" {
                h2 #h-hq { (l.t(Msg::HqLink)) }
                @match &f.sync {
                    Ok(s) => {
                        dl {
                            dt { (l.t(Msg::Connection)) }
                            dd {
                                @if !s.uplink_enabled { (l.t(Msg::NotConfigured)) }
                                @else if s.connected { span.good { (l.t(Msg::Connected)) } }
                                @else { span.bad { (l.t(Msg::Disconnected)) } }
                            }
                            dt { (l.t(Msg::Backlog)) } dd { (l.number(s.outbox_pending as i64)) " · " (l.bytes(s.outbox_bytes)) }
                            dt { (l.t(Msg::OldestEntry)) } dd { @if s.outbox_pending == 0 { "—" } @else { (l.duration(s.outbox_oldest_age_secs)) } }
                            dt { (l.t(Msg::LastSync)) } dd { (l.datetime_ms(s.last_sync_unix_ms)) }
                            dt { (l.t(Msg::CatalogVersion)) } dd { (l.number(s.versions.catalog as i64)) }
                            dt { (l.t(Msg::PromotionsVersion)) } dd { (l.number(s.versions.promotions as i64)) }
                        }
                    }
                    Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                }
            }
            section.card aria-labelledby="h-mesh" {
                h2 #h-mesh { (l.t(Msg::StoreMesh)) }
                @match &f.mesh {
                    Ok(m) if !m.enabled => { p { (l.t(Msg::MeshOff)) } }
                    Ok(m) => {
                        dl {
                            dt { (l.t(Msg::Peers)) } dd { (l.number(m.peers.len() as i64)) }
                            dt { (l.t(Msg::Artifacts)) } dd { (l.number(m.artifacts.len() as i64)) }
                        }
                    }
                    Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                }
            }
            section.card aria-labelledby="h-devices" {
                h2 #h-devices { (l.t(Msg::NavDevices)) }
                dl {
                    dt { (l.t(Msg::Working)) } dd { (l.number(f.devices.iter().filter(|d| d.usable).count() as i64)) " / " (l.number(f.devices.len() as i64)) }
                    dt { (l.t(Msg::ReceiptQueue)) } dd { (l.number(f.receipt_queue as i64)) }
                    @if let Some(x) = &f.exposure {
                        dt { (l.t(Msg::OfflineCardPayments)) }
                        dd #offline-exposure .bad[x.used > x.store_cap || x.largest_card > x.per_card_cap] {
                            (l.money(x.used, &f.currency)) " / " (l.money(x.store_cap, &f.currency))
                            " · " (l.money(x.largest_card, &f.currency)) " / " (l.money(x.per_card_cap, &f.currency))
                        }
                    }
                }
            }
            section.card aria-labelledby="h-sale" {
                h2 #h-sale { (l.t(Msg::LastSale)) }
                @match &f.last_sale {
                    Ok(Some(s)) => {
                        dl {
                            dt { (l.t(Msg::When)) } dd { (l.datetime(s.completed_at)) }
                            dt { (l.t(Msg::Terminal)) } dd translate="no" { (s.terminal_id.as_str()) }
                            dt { (l.t(Msg::Total)) } dd { (l.money(s.cart.total, &s.cart.currency)) }
                        }
                        p { a href=(format!("/console/sales/{}", s.id)) { (l.t(Msg::OpenSale)) } }
                    }
                    Ok(None) => { p { (l.t(Msg::NoSalesYet)) } }
                    Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                }
            }
        }
    }
}
