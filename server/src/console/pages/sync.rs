//! Sync and mesh: the HQ link and the outbox backlog by kind, pushed versions, the
//! store mesh's peers and artifacts with their bytes from origin and from peers.

use actix_web::{HttpResponse, get, web};
use maud::html;
use outpost_security::auth::roles::Permission;

use super::super::catalogue::Msg;
use super::super::page::{ConsoleError, shell};
use super::super::session::Staff;
use super::super::{label, snake};
use crate::http::AppState;

/// The sync and mesh page.
#[get("/console/sync")]
pub async fn sync(staff: Staff, state: web::Data<AppState>) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadLogs)?;
    let l = staff.lang;
    let facts = super::super::facts::Facts::gather(&state).await;
    let artifacts = crate::hq::artifacts::list(state.sales.store()).map_err(|e| e.to_string());
    let body = html! {
        div.grid {
            section.card aria-labelledby="h-hq" {
                h2 #h-hq { (l.t(Msg::HqLink)) }
                @match &facts.sync {
                    Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                    Ok(s) => {
                        dl {
                            dt { (l.t(Msg::Connection)) }
                            dd {
                                @if !s.uplink_enabled { (l.t(Msg::NotConfigured)) }
                                @else if s.connected { span.good { (l.t(Msg::Connected)) } }
                                @else { span.bad { (l.t(Msg::Disconnected)) } }
                            }
                            dt { (l.t(Msg::Health)) } dd { (label(l, "sync", s.health)) }
                            dt { (l.t(Msg::Backlog)) } dd { (l.number(s.outbox_pending as i64)) " · " (l.bytes(s.outbox_bytes)) }
                            dt { (l.t(Msg::OldestEntry)) } dd { @if s.outbox_pending == 0 { "—" } @else { (l.duration(s.outbox_oldest_age_secs)) } }
                            dt { (l.t(Msg::LastSync)) } dd { (l.datetime_ms(s.last_sync_unix_ms)) }
                            dt { (l.t(Msg::AckedSeq)) } dd { (l.number(s.acked_seq as i64)) }
                            dt { (l.t(Msg::Sent)) } dd { (l.number(s.sent as i64)) }
                            dt { (l.t(Msg::Sessions)) } dd { (l.number(s.sessions as i64)) }
                            @if let Some(e) = &s.last_error { dt { (l.t(Msg::LastError)) } dd.raw.bad translate="no" { (e) } }
                        }
                        @if !s.reasons.is_empty() {
                            ul { @for r in &s.reasons { li.raw translate="no" { (r) } } }
                        }
                    }
                }
            }
            @if let Ok(s) = &facts.sync {
                section.card aria-labelledby="h-kinds" {
                    h2 #h-kinds { (l.t(Msg::BacklogByKind)) }
                    dl {
                        dt { (l.t(Msg::KindDeviceEvents)) } dd { (l.number(s.events_pending.device_event as i64)) }
                        dt { (l.t(Msg::KindAlerts)) } dd { (l.number(s.events_pending.alert as i64)) }
                        dt { (l.t(Msg::KindTelemetry)) } dd { (l.number(s.events_pending.telemetry as i64)) }
                    }
                }
                section.card aria-labelledby="h-versions" {
                    h2 #h-versions { (l.t(Msg::PushedVersions)) }
                    dl {
                        dt { (l.t(Msg::CatalogVersion)) } dd { (l.number(s.versions.catalog as i64)) }
                        dt { (l.t(Msg::PromotionsVersion)) } dd { (l.number(s.versions.promotions as i64)) }
                        dt { (l.t(Msg::TaxVersion)) } dd { (l.number(s.versions.tax_rates as i64)) }
                        dt { (l.t(Msg::PlanogramVersion)) } dd { (l.number(s.versions.planogram as i64)) }
                        dt { (l.t(Msg::StoreConfigVersion)) } dd { (l.number(s.versions.store_config as i64)) }
                        dt { (l.t(Msg::DeviceConfigVersion)) } dd { (l.number(s.versions.device_config as i64)) " / " (l.number(s.versions.device_config_applied as i64)) }
                    }
                }
            }
        }
        section.card.mt aria-labelledby="h-mesh" {
            h2 #h-mesh { (l.t(Msg::StoreMesh)) }
            @match &facts.mesh {
                Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                Ok(m) if !m.enabled => { p { (l.t(Msg::MeshOff)) } }
                Ok(m) => {
                    p { (l.t(Msg::ThisNode)) " " span.raw translate="no" { (m.peer_id.as_deref().unwrap_or("—")) } }
                    @if m.peers.is_empty() { p { (l.t(Msg::NoPeers)) } }
                    @else {
                        table {
                            thead { tr { th scope="col" { (l.t(Msg::Peer)) } th scope="col" { (l.t(Msg::State)) } th scope="col" { (l.t(Msg::LastSeen)) } th.num scope="col" { (l.t(Msg::Artifacts)) } } }
                            tbody {
                                @for p in &m.peers {
                                    tr {
                                        td.raw translate="no" { (p.peer_id) }
                                        td { (label(l, "peer", &snake(&p.state))) }
                                        td { @match p.last_seen_ms_ago { Some(ms) => { (l.duration(ms / 1000)) } None => { "—" } } }
                                        td.num { (l.number(p.artifacts as i64)) }
                                    }
                                }
                            }
                        }
                    }
                    h2 { (l.t(Msg::Artifacts)) }
                    @if m.artifacts.is_empty() { p { (l.t(Msg::None)) } }
                    @else {
                        table {
                            thead { tr { th scope="col" { (l.t(Msg::Artifact)) } th.num scope="col" { (l.t(Msg::Size)) } th.num scope="col" { (l.t(Msg::FromOrigin)) } th.num scope="col" { (l.t(Msg::FromPeers)) } th.num scope="col" { (l.t(Msg::ServedToPeers)) } } }
                            tbody {
                                @for a in &m.artifacts {
                                    tr {
                                        td.raw translate="no" { (a.root.to_string()) }
                                        td.num { (l.bytes(a.size)) }
                                        td.num { (l.bytes(a.origin_bytes)) }
                                        td.num { (l.bytes(a.peer_bytes)) }
                                        td.num { (l.bytes(a.served_bytes)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card.mt aria-labelledby="h-snap" {
            h2 #h-snap { (l.t(Msg::CatalogSnapshots)) }
            @match &artifacts {
                Err(e) => { p.bad { (l.t(Msg::Unavailable)) " " span.raw translate="no" { (e) } } }
                Ok(list) if list.is_empty() => { p { (l.t(Msg::None)) } }
                Ok(list) => {
                    table {
                        thead { tr { th scope="col" { (l.t(Msg::CatalogVersion)) } th scope="col" { (l.t(Msg::State)) } th.num scope="col" { (l.t(Msg::Size)) } th scope="col" { (l.t(Msg::When)) } } }
                        tbody {
                            @for a in list {
                                tr {
                                    td { (l.number(a.catalog_version as i64)) }
                                    td { (label(l, "artifact", &snake(&a.stage))) @if let Some(e) = &a.error { " " span.raw.bad translate="no" { (e) } } }
                                    td.num { (l.bytes(a.size)) }
                                    td { (l.datetime_ms(a.offered_at_ms)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell(&staff, "/console/sync", Msg::NavSync, body))
}
