//! Sales: the journal searched by time, terminal and amount; one sale with its
//! receipt as printed; refunds (supervisors) with the API's idempotency; reprints.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use maud::html;
use outpost_security::auth::roles::Permission;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::catalogue::Msg;
use super::super::facts::uuid_floor;
use super::super::i18n::Lang;
use super::super::page::{ConsoleError, api_failed, csrf_field, notice, shell};
use super::super::session::{ConsoleForm, Posted, Staff};
use super::super::{label, snake};
use crate::domain::product::Quantity;
use crate::domain::sale::{IdempotencyKey, RefundLineRequest, Sale};
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::observe;
use crate::sales::refund::RefundRequest;

/// Sales looked at per search at most; a wider window asks to be narrowed.
const SCAN_MAX: usize = 5000;
/// Matches shown per search, newest first.
const SHOW_MAX: usize = 100;
/// How often and how long a refund whose key is in progress waits for it (a card
/// refund can take the payment terminal's timeout).
const IN_PROGRESS_TRIES: u32 = 300;
const IN_PROGRESS_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
/// The default window of a search without a start: this many days back.
const DEFAULT_DAYS: i64 = 7;

/// The search form as the query holds it: every field optional, kept as typed so a
/// bad value is shown back with its error.
#[derive(Debug, Default, Deserialize)]
pub struct SalesQuery {
    from: Option<String>,
    to: Option<String>,
    terminal: Option<String>,
    min: Option<String>,
    max: Option<String>,
}

/// A `datetime-local` value (`2026-12-07T15:21`, seconds optional) read as UTC.
fn parse_local(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let fmt_s = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, &fmt)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &fmt_s))
        .ok()
        .map(|t| t.assume_utc())
}

fn format_local(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// An amount typed in major units (`12.5`, `12,50`, `1 200`) in minor units of a
/// currency with `exponent` decimals; `None` when it is not one.
fn parse_amount(s: &str, exponent: u8) -> Option<i64> {
    let cleaned: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('-') {
        return None;
    }
    let (whole, frac) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > usize::from(exponent)
    {
        return None;
    }
    let scale = 10i64.checked_pow(u32::from(exponent))?;
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut frac_v: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..usize::from(exponent) {
        frac_v *= 10;
    }
    whole.checked_mul(scale)?.checked_add(frac_v)
}

/// A search, checked.
struct Search {
    from: OffsetDateTime,
    to: Option<OffsetDateTime>,
    terminal: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
}

fn check(q: &SalesQuery, exponent: u8) -> Result<Search, Msg> {
    let nonempty = |o: &Option<String>| {
        o.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let from = match nonempty(&q.from) {
        Some(s) => parse_local(&s).ok_or(Msg::BadFrom)?,
        None => OffsetDateTime::now_utc() - time::Duration::days(DEFAULT_DAYS),
    };
    let to = nonempty(&q.to)
        .map(|s| parse_local(&s).ok_or(Msg::BadTo))
        .transpose()?;
    let min = nonempty(&q.min)
        .map(|s| parse_amount(&s, exponent).ok_or(Msg::BadAmount))
        .transpose()?;
    let max = nonempty(&q.max)
        .map(|s| parse_amount(&s, exponent).ok_or(Msg::BadAmount))
        .transpose()?;
    Ok(Search {
        from,
        to,
        terminal: nonempty(&q.terminal),
        min,
        max,
    })
}

impl Search {
    fn matches(&self, s: &Sale) -> bool {
        let total = s.cart.total.minor();
        self.to.is_none_or(|t| s.completed_at <= t)
            && self
                .terminal
                .as_deref()
                .is_none_or(|t| s.terminal_id.as_str().eq_ignore_ascii_case(t))
            && self.min.is_none_or(|m| total >= m)
            && self.max.is_none_or(|m| total <= m)
    }
}

/// The journal search.
#[get("/console/sales")]
pub async fn sales(
    staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<SalesQuery>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::Sell)?;
    let l = staff.lang;
    let q = q.into_inner();
    let exponent = state.settings.currency().exponent();
    let checked = check(&q, exponent);
    let mut found: Vec<Sale> = Vec::new();
    let mut truncated = false;
    if let Ok(search) = &checked {
        let store = state.sales.store();
        let ms = (search.from.unix_timestamp_nanos() / 1_000_000).max(1) as u64;
        let mut after = Some(uuid_floor(ms));
        let mut seen = 0;
        'scan: loop {
            let page = store.sales_after(after, 500).map_err(|e| {
                ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
                    .detail(e.to_string())
                    .lang(l)
            })?;
            let full = page.len() == 500;
            for s in page {
                seen += 1;
                after = Some(s.id);
                if search.to.is_some_and(|t| s.completed_at > t) {
                    break 'scan;
                }
                if search.matches(&s) {
                    found.push(s);
                    if found.len() > SHOW_MAX {
                        found.remove(0);
                    }
                }
                if seen >= SCAN_MAX {
                    truncated = true;
                    break 'scan;
                }
            }
            if !full {
                break;
            }
        }
    }
    found.reverse();
    let from_value = q.from.clone().unwrap_or_else(|| {
        checked
            .as_ref()
            .map(|s| format_local(s.from))
            .unwrap_or_default()
    });
    let body = html! {
        form.filters method="get" action="/console/sales" role="search" {
            div { label for="from" { (l.t(Msg::From)) } input #from type="datetime-local" name="from" value=(from_value); }
            div { label for="to" { (l.t(Msg::To)) } input #to type="datetime-local" name="to" value=(q.to.as_deref().unwrap_or_default()); }
            div { label for="terminal" { (l.t(Msg::Terminal)) } input #terminal name="terminal" value=(q.terminal.as_deref().unwrap_or_default()); }
            div { label for="min" { (l.t(Msg::MinAmount)) } input #min name="min" inputmode="decimal" size="8" value=(q.min.as_deref().unwrap_or_default()); }
            div { label for="max" { (l.t(Msg::MaxAmount)) } input #max name="max" inputmode="decimal" size="8" value=(q.max.as_deref().unwrap_or_default()); }
            div { button type="submit" { (l.t(Msg::Search)) } }
        }
        p.muted { (l.t(Msg::TimesInUtc)) }
        @match &checked {
            Err(m) => { (notice(false, l.t(*m), None)) }
            Ok(_) => {
                @if truncated { (notice(false, l.t(Msg::SearchTruncated), None)) }
                @if found.is_empty() {
                    p { (l.t(Msg::NoSalesFound)) }
                } @else {
                    table {
                        thead { tr {
                            th scope="col" { (l.t(Msg::When)) }
                            th scope="col" { (l.t(Msg::Terminal)) }
                            th scope="col" { (l.t(Msg::Items)) }
                            th.num scope="col" { (l.t(Msg::Total)) }
                            th scope="col" { (l.t(Msg::Sale)) }
                        } }
                        tbody {
                            @for s in &found {
                                tr {
                                    td { (l.datetime(s.completed_at)) }
                                    td translate="no" { (s.terminal_id.as_str()) }
                                    td.num { (l.number(s.cart.lines.len() as i64)) }
                                    td.num { (l.money(s.cart.total, &s.cart.currency)) }
                                    td { a.raw translate="no" href=(format!("/console/sales/{}", s.id)) { (s.id.to_string()[..8]) "…" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let status = if checked.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut r = shell(&staff, "/console/sales", Msg::NavSales, body);
    *r.status_mut() = status;
    Ok(r)
}

fn quantity(l: Lang, q: &Quantity) -> String {
    match q {
        Quantity::Units(n) => l.number(i64::from(*n)),
        Quantity::Grams(g) => format!("{} {}", l.number(i64::from(*g)), l.t(Msg::Grams)),
    }
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

fn parse_sale_id(id: &str, l: Lang) -> Result<Uuid, ConsoleError> {
    Uuid::parse_str(id).map_err(|_| {
        ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNoSale)
            .detail(id.to_owned())
            .lang(l)
    })
}

/// One sale with its receipt, its refunds, and the refund and reprint buttons.
#[get("/console/sales/{id}")]
pub async fn sale(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<String>,
    q: web::Query<Done>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::Sell)?;
    let l = staff.lang;
    let sale_id = parse_sale_id(&id, l)?;
    let sale = state
        .sales
        .store()
        .sale(sale_id)
        .map_err(|e| {
            ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
                .detail(e.to_string())
                .lang(l)
        })?
        .ok_or_else(|| {
            ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNoSale)
                .detail(sale_id.to_string())
                .lang(l)
        })?;
    let currency = sale.cart.currency;
    let refunds = state.sales.store().refunds_of(sale_id).map_err(|e| {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
            .detail(e.to_string())
            .lang(l)
    })?;
    let left = left_per_line(&sale, &refunds);
    let v =
        crate::http::selling::sale_view(&state, sale).map_err(api_failed(Msg::Unavailable, l))?;
    let may_refund = staff.may(Permission::Refund) && v.status != "refunded";
    let csrf = staff.csrf();
    // A fresh key per rendered form: the same form posted twice is one refund.
    let key = format!("console-{}", Uuid::now_v7());
    let done = q
        .done
        .as_deref()
        .and_then(|d| Msg::lookup(&format!("done.{d}")));
    let body = html! {
        @if let Some(m) = done { (notice(true, l.t(m), None)) }
        div.grid {
            section.card aria-labelledby="h-sale" {
                h2 #h-sale { (l.t(Msg::Sale)) " " span.raw translate="no" { (v.sale_id) } }
                dl {
                    dt { (l.t(Msg::State)) } dd #sale-status data-status=(v.status) { (label(l, "sale", v.status)) }
                    dt { (l.t(Msg::When)) } dd { (l.datetime(v.completed_at)) }
                    dt { (l.t(Msg::Terminal)) } dd translate="no" { (v.terminal_id) }
                    dt { (l.t(Msg::Subtotal)) } dd { (l.money(v.subtotal, &currency)) }
                    dt { (l.t(Msg::Discounts)) } dd { (l.money(v.discount_total, &currency)) }
                    dt { (l.t(Msg::Tax)) } dd { (l.money(v.tax_total, &currency)) }
                    dt { (l.t(Msg::Total)) } dd { strong { (l.money(v.total, &currency)) } }
                    @for t in &v.tenders {
                        dt { (label(l, "tender", &snake(&t.method))) } dd { (l.money(t.amount, &currency)) }
                    }
                    dt { (l.t(Msg::Change)) } dd { (l.money(v.change, &currency)) }
                    dt { (l.t(Msg::Receipt)) } dd { @if let Some(r) = &v.receipt_status { (label(l, "receipt", &snake(r))) } }
                }
            }
            section.card.span2 aria-labelledby="h-receipt" {
                h2 #h-receipt { (l.t(Msg::ReceiptAsPrinted)) }
                pre.receipt translate="no" { (v.receipt_text) }
            }
        }
        section.card.mt aria-labelledby="h-lines" {
            h2 #h-lines { (l.t(Msg::Items)) }
            @let table = html! {
                table {
                    thead { tr {
                        th scope="col" { (l.t(Msg::Sku)) } th scope="col" { (l.t(Msg::Product)) } th.num scope="col" { (l.t(Msg::Quantity)) } th.num scope="col" { (l.t(Msg::Price)) } th.num scope="col" { (l.t(Msg::Discounts)) }
                        th.num scope="col" { (l.t(Msg::LeftToRefund)) }
                        @if may_refund { th.num scope="col" { (l.t(Msg::RefundNow)) } }
                    } }
                    tbody {
                        @for (i, line) in v.lines.iter().enumerate() {
                            @let n = i + 1;
                            @let left = left.get(i).copied().unwrap_or(0);
                            tr data-line=(n) {
                                td translate="no" { (line.sku) }
                                td translate="no" { (line.name) }
                                td.num { (quantity(l, &line.quantity)) }
                                td.num { (l.money(line.gross, &currency)) }
                                td.num { (l.money(line.discount, &currency)) }
                                td.num data-left=(left) { (quantity(l, &with_value(&line.quantity, left))) }
                                @if may_refund {
                                    td.num {
                                        @if left > 0 {
                                            label.vh for=(format!("line-{n}")) { (l.t(Msg::RefundNow)) " " span translate="no" { (line.sku) } }
                                            input id=(format!("line-{n}")) name=(format!("line-{n}")) type="number" min="0" max=(left) step="1" inputmode="numeric" size="6";
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            };
            @if may_refund {
                form #lines-form method="post" action=(format!("/console/sales/{}/refund", v.sale_id)) data-once {
                    (csrf_field(&csrf))
                    input type="hidden" name="key" value=(key);
                    input type="hidden" name="part" value="lines";
                    (table)
                    p.muted { (l.t(Msg::RefundLinesHelp)) }
                    div.actions {
                        label for="lines-reason" { (l.t(Msg::RefundReason)) }
                        input #lines-reason name="reason" maxlength="500" size="30";
                        " "
                        button.danger #refund-lines-button type="submit" { (l.t(Msg::RefundChosen)) }
                    }
                }
            } @else {
                (table)
            }
        }
        section.card.mt aria-labelledby="h-refunds" {
            h2 #h-refunds { (l.t(Msg::Refunds)) }
            @if v.refunds.is_empty() { p { (l.t(Msg::NoRefunds)) } }
            @else {
                ul #refunds {
                    @for r in &v.refunds {
                        li data-refund=(r.id) { span.raw translate="no" { (r.id) } " · " (l.money(r.total, &currency)) }
                    }
                }
            }
            div.actions {
                @if may_refund {
                    form #refund-form method="post" action=(format!("/console/sales/{}/refund", v.sale_id)) data-once {
                        (csrf_field(&csrf))
                        input type="hidden" name="key" value=(key);
                        label for="reason" { (l.t(Msg::RefundReason)) }
                        input #reason name="reason" maxlength="500" size="30";
                        " "
                        button.danger #refund-button type="submit" { (l.t(Msg::RefundAll)) }
                    }
                }
                form method="post" action=(format!("/console/sales/{}/reprint", v.sale_id)) data-once {
                    (csrf_field(&csrf))
                    button.secondary type="submit" { (l.t(Msg::Reprint)) }
                }
            }
        }
    };
    Ok(shell(&staff, "/console/sales", Msg::NavSales, body))
}

/// What is left to refund of each line of `sale` (units or grams), given its refunds.
fn left_per_line(sold: &Sale, refunds: &[crate::domain::sale::Refund]) -> Vec<u32> {
    let mut left: Vec<u32> = sold
        .cart
        .lines
        .iter()
        .map(|l| quantity_value(&l.quantity))
        .collect();
    for r in refunds {
        for line in &r.lines {
            if let Some(v) = line.line.checked_sub(1).and_then(|i| left.get_mut(i)) {
                *v = v.saturating_sub(quantity_value(&line.quantity));
            }
        }
    }
    left
}

fn quantity_value(q: &Quantity) -> u32 {
    match q {
        Quantity::Units(n) | Quantity::Grams(n) => *n,
    }
}

/// `n` in the unit of `q`.
fn with_value(q: &Quantity, n: u32) -> Quantity {
    match q {
        Quantity::Units(_) => Quantity::Units(n),
        Quantity::Grams(_) => Quantity::Grams(n),
    }
}

#[derive(Deserialize)]
struct RefundForm {
    key: String,
    reason: Option<String>,
    /// `lines`: the form of chosen lines (`line-N` = quantity); else everything left.
    part: Option<String>,
    #[serde(flatten)]
    fields: std::collections::BTreeMap<String, String>,
}
impl ConsoleForm for RefundForm {}

/// The lines a refund form chose, as the API's refund takes them: `line-N` fields
/// with a quantity (units, or grams for a weight line); empty and `0` fields choose
/// nothing. `Err` names the field that is not a line and a whole number.
fn chosen_lines(
    sold: &Sale,
    fields: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<RefundLineRequest>, String> {
    let mut out = Vec::new();
    for (name, value) in fields {
        let Some(n) = name.strip_prefix("line-") else {
            return Err(name.clone());
        };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let line: usize = n.parse().map_err(|_| name.clone())?;
        let q: u32 = value.parse().map_err(|_| format!("{name}={value}"))?;
        if q == 0 {
            continue;
        }
        let weight = sold
            .cart
            .lines
            .get(line.wrapping_sub(1))
            .is_some_and(|l| matches!(l.quantity, Quantity::Grams(_)));
        out.push(RefundLineRequest {
            line,
            quantity: (!weight).then_some(q),
            weight_grams: weight.then_some(q),
        });
    }
    Ok(out)
}

/// Refund a sale (supervisor): what is left of it, or the lines and quantities the
/// form chose, through the API's refund. The form's key is the refund's idempotency
/// key: posted twice, it is one refund.
#[post("/console/sales/{id}/refund")]
pub async fn refund(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    posted: Posted<RefundForm>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Refund)?;
    let l = staff.lang;
    let sale_id = parse_sale_id(&id, l)?;
    let key = IdempotencyKey::parse(&posted.form.key).map_err(|_| {
        ConsoleError::new(StatusCode::BAD_REQUEST, Msg::ErrBadForm)
            .detail("key")
            .lang(l)
    })?;
    let caller = Caller {
        principal: staff.principal.clone(),
        is_terminal: false,
        is_shopper: false,
    };
    let terminal =
        crate::http::terminal_id(&req, &caller).map_err(api_failed(Msg::RefundFailed, l))?;
    let form = posted.form;
    let lines = if form.part.as_deref() == Some("lines") {
        let sold = state
            .sales
            .store()
            .sale(sale_id)
            .map_err(|e| {
                ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
                    .detail(e.to_string())
                    .lang(l)
            })?
            .ok_or_else(|| ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNoSale).lang(l))?;
        let lines = chosen_lines(&sold, &form.fields).map_err(|field| {
            ConsoleError::new(StatusCode::BAD_REQUEST, Msg::BadRefundQuantity)
                .detail(field)
                .lang(l)
        })?;
        if lines.is_empty() {
            return Err(ConsoleError::new(StatusCode::BAD_REQUEST, Msg::NoLinesChosen).lang(l));
        }
        lines
    } else {
        Vec::new()
    };
    let reason = form.reason.filter(|r| !r.trim().is_empty());
    let request = RefundRequest { lines, reason };
    // The same form posted twice at once (a double click without the script): the
    // second finds the key in progress; it waits for the first and replays its answer.
    let mut tries = 0;
    let result = loop {
        match state
            .sales
            .refund(sale_id, &key, &terminal, request.clone())
            .await
        {
            Ok(r) => {
                let outcome = if r.replayed { "replayed" } else { "completed" };
                observe::record_outcome("refund", outcome, observe::tender_of(&r.refund.tenders));
                break r;
            }
            Err(e) => {
                let e: crate::http::ApiError = e.into();
                if e.code == "in_progress" && tries < IN_PROGRESS_TRIES {
                    tries += 1;
                    tokio::time::sleep(IN_PROGRESS_WAIT).await;
                    continue;
                }
                observe::record_outcome("refund", &e.code, "unknown");
                let msg = match e.code.as_ref() {
                    "refund_exceeds_sale" => Msg::RefundExceeds,
                    _ => Msg::RefundFailed,
                };
                return Err(api_failed(msg, l)(e));
            }
        }
    };
    if !result.replayed {
        state.security.audit(
            staff.name(),
            "refund",
            &format!(
                "sale {sale_id} refund {} at {terminal} (console)",
                result.refund.id
            ),
        );
    }
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", format!("/console/sales/{sale_id}?done=refund")))
        .finish())
}

#[derive(Deserialize)]
struct NoFields {}
impl ConsoleForm for NoFields {}

/// Print a sale's receipt again; it queues when the printer cannot print now.
#[post("/console/sales/{id}/reprint")]
pub async fn reprint(
    state: web::Data<AppState>,
    id: web::Path<String>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Sell)?;
    let l = staff.lang;
    let sale_id = parse_sale_id(&id, l)?;
    let known = state.sales.store().sale(sale_id).map_err(|e| {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
            .detail(e.to_string())
            .lang(l)
    })?;
    if known.is_none() {
        return Err(ConsoleError::new(StatusCode::NOT_FOUND, Msg::ErrNoSale).lang(l));
    }
    state.security.audit(
        staff.name(),
        "device.reprint",
        &format!("sale {sale_id} (console)"),
    );
    let spooler = state.devices.spooler();
    spooler
        .queue()
        .enqueue_reprint(sale_id)
        .await
        .map_err(|e| {
            ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::ActionFailed)
                .detail(e.to_string())
                .lang(l)
        })?;
    let wait = std::time::Duration::from_millis(state.settings.receipts.print_wait_ms);
    let done = match spooler.wait_printed(sale_id, wait).await {
        crate::devices::receipts::PrintOutcome::Printed => "reprinted",
        crate::devices::receipts::PrintOutcome::Queued(_) => "reprint_queued",
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", format!("/console/sales/{sale_id}?done={done}")))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_in_either_decimal_mark() {
        assert_eq!(parse_amount("12.5", 2), Some(1250));
        assert_eq!(parse_amount("12,50", 2), Some(1250));
        assert_eq!(parse_amount("1 200", 2), Some(120_000));
        assert_eq!(parse_amount(".5", 2), Some(50));
        assert_eq!(parse_amount("1200", 0), Some(1200));
        assert_eq!(
            parse_amount("1.234", 2),
            None,
            "more decimals than the currency has"
        );
        assert_eq!(parse_amount("-1", 2), None);
        assert_eq!(parse_amount("abc", 2), None);
        assert_eq!(parse_amount(".", 2), None);
        assert_eq!(parse_amount("99999999999999999999", 2), None);
    }

    #[test]
    fn times_parse_as_utc() {
        let t = parse_local("2026-12-07T15:21").unwrap();
        assert_eq!(t, time::macros::datetime!(2026-12-07 15:21 UTC));
        assert_eq!(format_local(t), "2026-12-07T15:21");
        assert!(parse_local("2026-12-07T15:21:30").is_some());
        assert!(parse_local("yesterday").is_none());
    }

    #[test]
    fn bad_search_fields_are_named() {
        let q = |f: &str, v: &str| {
            let mut q = SalesQuery::default();
            match f {
                "from" => q.from = Some(v.into()),
                "to" => q.to = Some(v.into()),
                _ => q.min = Some(v.into()),
            }
            check(&q, 2).err()
        };
        assert_eq!(q("from", "x"), Some(Msg::BadFrom));
        assert_eq!(q("to", "x"), Some(Msg::BadTo));
        assert_eq!(q("min", "x"), Some(Msg::BadAmount));
        assert_eq!(q("min", "3"), None);
    }
}
