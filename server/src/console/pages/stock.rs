//! Inventory and catalog: products with their stock, the promotions in force, and
//! the latest stock movements with their reasons. Read-only: HQ owns the catalog and
//! promotions, and stock changes go through the API's adjustments and counts.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, web};
use maud::html;
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::page::{ConsoleError, notice, shell};
use super::super::session::Staff;
use super::super::{label, snake};
use crate::domain::money::{Currency, Money};
use crate::http::AppState;

/// Products shown per search.
const SHOW: usize = 50;
/// Catalog entries a search looks at at most (as the API's product search).
const MAX_SCAN: usize = 20_000;

#[derive(Deserialize)]
struct StockQuery {
    q: Option<String>,
}

/// The inventory and catalog page.
#[get("/console/stock")]
pub async fn stock(
    staff: Staff,
    state: web::Data<AppState>,
    query: web::Query<StockQuery>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadCatalog)?;
    let l = staff.lang;
    let unavailable = |e: crate::store::StoreError| {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
            .detail(e.to_string())
            .lang(l)
    };
    let store = state.sales.store();
    let q = query.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let too_long = q.is_some_and(|s| s.len() > 200);
    let (items, more) = if too_long {
        (Vec::new(), None)
    } else {
        store
            .catalog()
            .search(q, None, SHOW, None, MAX_SCAN)
            .map_err(unavailable)?
    };
    let mut products = Vec::with_capacity(items.len());
    for raw in items {
        let p: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        let sku = p["sku"].as_str().unwrap_or_default().to_owned();
        let stock = store.stock(&sku).map_err(unavailable)?;
        products.push((p, sku, stock));
    }
    let movements = store.movements(None, 50).map_err(unavailable)?;
    let promotions = store.promotions();
    let now = time::OffsetDateTime::now_utc();
    let body = html! {
        p.muted { (l.t(Msg::StockReadOnly)) }
        form.filters method="get" action="/console/stock" role="search" {
            div { label for="q" { (l.t(Msg::SearchProducts)) } input #q name="q" value=(q.unwrap_or_default()); }
            div { button type="submit" { (l.t(Msg::Search)) } }
        }
        @if too_long { (notice(false, l.t(Msg::QueryTooLong), None)) }
        section.card aria-labelledby="h-products" {
            h2 #h-products { (l.t(Msg::Products)) " (" (l.number(store.catalog().len as i64)) ")" }
            @if products.is_empty() { p { (l.t(Msg::NoProductsFound)) } }
            @else {
                table {
                    thead { tr {
                        th scope="col" { (l.t(Msg::Sku)) } th scope="col" { (l.t(Msg::Product)) }
                        th scope="col" { (l.t(Msg::Category)) } th.num scope="col" { (l.t(Msg::Price)) }
                        th.num scope="col" { (l.t(Msg::InStock)) }
                    } }
                    tbody {
                        @for (p, sku, stock) in &products {
                            tr {
                                td translate="no" { (sku) }
                                td translate="no" { (p["name"].as_str().unwrap_or_default()) }
                                td translate="no" { (p["category"].as_str().unwrap_or_default()) }
                                td.num {
                                    @match (p["price"].as_i64(), p["currency"].as_str().and_then(|c| Currency::parse(c).ok())) {
                                        (Some(price), Some(c)) => { (l.money(Money(price), &c)) }
                                        _ => { "—" }
                                    }
                                }
                                td.num.bad[*stock < 0] { (l.number(*stock)) }
                            }
                        }
                    }
                }
                @if more.is_some() { p.muted { (l.t(Msg::MoreProducts)) } }
            }
        }
        div.grid.mt {
            section.card aria-labelledby="h-promos" {
                h2 #h-promos { (l.t(Msg::PromotionsNow)) }
                @let active = promotions.active_at(now);
                @if active.is_empty() { p { (l.t(Msg::None)) } }
                ul {
                    @for p in active {
                        li { span translate="no" { (p.name) } " — " span.muted { (l.t(Msg::Until)) " " (l.datetime(p.ends_at)) } }
                    }
                }
            }
            section.card.wide aria-labelledby="h-moves" {
                h2 #h-moves { (l.t(Msg::RecentMovements)) }
                @if movements.is_empty() { p { (l.t(Msg::None)) } }
                @else {
                    table {
                        thead { tr {
                            th scope="col" { (l.t(Msg::When)) } th scope="col" { (l.t(Msg::Sku)) }
                            th scope="col" { (l.t(Msg::Kind)) } th.num scope="col" { (l.t(Msg::Change)) }
                            th.num scope="col" { (l.t(Msg::InStock)) } th scope="col" { (l.t(Msg::Why)) }
                        } }
                        tbody {
                            @for m in &movements {
                                tr {
                                    td { (l.datetime(m.at)) }
                                    td translate="no" { (m.sku) }
                                    td { (label(l, "movement", &snake(&m.kind))) }
                                    td.num { (l.number(m.delta)) }
                                    td.num { (l.number(m.stock_after)) }
                                    td translate="no" { (m.reason.as_deref().unwrap_or("—")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell(&staff, "/console/stock", Msg::NavStock, body))
}
