//! Inventory and catalog: products with their stock, the promotions in force, the
//! latest stock movements with their reasons, stock adjustments and stock counts (the
//! API's, same permission and idempotency). HQ owns the catalog and promotions.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use maud::html;
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::page::{ConsoleError, api_failed, csrf_field, notice, shell};
use super::super::session::{ConsoleForm, Posted, Staff};
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
    done: Option<String>,
    sku: Option<String>,
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
        @match query.done.as_deref() {
            Some("adjusted") => { (notice(true, l.t(Msg::DoneAdjusted), query.sku.as_deref())) }
            Some("counted") => { (notice(true, l.t(Msg::DoneCounted), query.sku.as_deref())) }
            Some("count_same") => { (notice(true, l.t(Msg::DoneCountSame), query.sku.as_deref())) }
            _ => {}
        }
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
        @if staff.may(Permission::Configure) {
            section.card.mt aria-labelledby="h-adjust" {
                h2 #h-adjust { (l.t(Msg::AdjustStock)) }
                form #adjust.filters method="post" action="/console/stock/adjust" data-once {
                    (csrf_field(&staff.csrf()))
                    input type="hidden" name="key" value=(format!("console-{}", uuid::Uuid::now_v7()));
                    div { label for="adj-sku" { (l.t(Msg::Sku)) } input #adj-sku name="sku" required size="14" value=(q.unwrap_or_default()); }
                    div { label for="adj-delta" { (l.t(Msg::Delta)) } input #adj-delta name="delta" required inputmode="numeric" size="8"; }
                    div { label for="adj-reason" { (l.t(Msg::Why)) } input #adj-reason name="reason" required maxlength="200" size="24"; }
                    div { label for="adj-receipt" { input #adj-receipt type="checkbox" name="receipt" value="1"; " " (l.t(Msg::IsDelivery)) } }
                    div { button type="submit" { (l.t(Msg::Record)) } }
                }
            }
            section.card.mt aria-labelledby="h-count" {
                h2 #h-count { (l.t(Msg::CountStock)) }
                p.muted { (l.t(Msg::CountHelp)) }
                form #count.filters method="post" action="/console/stock/count" data-once {
                    (csrf_field(&staff.csrf()))
                    input type="hidden" name="key" value=(format!("console-{}", uuid::Uuid::now_v7()));
                    div { label for="count-sku" { (l.t(Msg::Sku)) } input #count-sku name="sku" required size="14" value=(q.unwrap_or_default()); }
                    div { label for="count-stock" { (l.t(Msg::Counted)) } input #count-stock name="stock" required inputmode="numeric" size="8"; }
                    div { label for="count-reason" { (l.t(Msg::Why)) } input #count-reason name="reason" required maxlength="200" size="24"; }
                    div { button #count-button type="submit" { (l.t(Msg::RecordCount)) } }
                }
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

/// Back to the stock page on `sku`, saying what was `done`.
fn back_to_stock(sku: &str, done: &str) -> HttpResponse {
    let query =
        serde_urlencoded::to_string([("q", sku), ("done", done), ("sku", sku)]).unwrap_or_default();
    HttpResponse::SeeOther()
        .insert_header(("location", format!("/console/stock?{query}")))
        .finish()
}

#[derive(Deserialize)]
struct AdjustForm {
    key: String,
    sku: String,
    delta: String,
    reason: String,
    receipt: Option<String>,
}
impl ConsoleForm for AdjustForm {}

/// Record a stock adjustment: the API's adjustment (permission `configure`, the form's
/// idempotency key: posted twice, it is one movement).
#[post("/console/stock/adjust")]
pub async fn adjust(
    state: web::Data<AppState>,
    posted: Posted<AdjustForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Configure)?;
    let l = staff.lang;
    let f = posted.form;
    let bad = |msg: Msg, field: &str| {
        ConsoleError::new(StatusCode::BAD_REQUEST, msg)
            .detail(field.to_owned())
            .lang(l)
    };
    let delta: i64 = f
        .delta
        .trim()
        .trim_start_matches('+')
        .parse()
        .map_err(|_| bad(Msg::BadDelta, &f.delta))?;
    let key = crate::domain::sale::IdempotencyKey::parse(&f.key)
        .map_err(|_| bad(Msg::ErrBadForm, "key"))?;
    let sku = f.sku.trim().to_owned();
    let adjustment = crate::http::inventory::Adjustment {
        delta,
        reason: f.reason,
        receipt: f.receipt.is_some(),
    };
    crate::http::inventory::adjust(&state, staff.name(), key, sku.clone(), adjustment)
        .await
        .map_err(api_failed(Msg::AdjustFailed, l))?;
    Ok(back_to_stock(&sku, "adjusted"))
}

#[derive(Deserialize)]
struct CountForm {
    key: String,
    sku: String,
    stock: String,
    reason: String,
}
impl ConsoleForm for CountForm {}

/// Record a stock count: the API's count (permission `configure`), the difference
/// journaled as a `count` movement with the reason, under the form's idempotency key:
/// posted twice, it is one movement.
#[post("/console/stock/count")]
pub async fn count(
    state: web::Data<AppState>,
    posted: Posted<CountForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Configure)?;
    let l = staff.lang;
    let f = posted.form;
    let bad = |msg: Msg, field: &str| {
        ConsoleError::new(StatusCode::BAD_REQUEST, msg)
            .detail(field.to_owned())
            .lang(l)
    };
    let counted_stock: i64 = f
        .stock
        .trim()
        .parse()
        .map_err(|_| bad(Msg::BadCount, &f.stock))?;
    let key = crate::domain::sale::IdempotencyKey::parse(&f.key)
        .map_err(|_| bad(Msg::ErrBadForm, "key"))?;
    let sku = f.sku.trim().to_owned();
    let counted = crate::http::inventory::StockCount {
        stock: counted_stock,
        reason: Some(f.reason),
    };
    let (movement, _) =
        crate::http::inventory::count(&state, staff.name(), Some(key), sku.clone(), counted)
            .await
            .map_err(api_failed(Msg::CountFailed, l))?;
    let done = if movement.is_some() {
        "counted"
    } else {
        "count_same"
    };
    Ok(back_to_stock(&sku, done))
}
