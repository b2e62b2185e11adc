//! The vending machine, on a unit that runs one: its raised alerts in plain words with
//! what to do, its cash (credit, coin tubes, cash box) when cash devices are fitted,
//! and its slots with count against capacity and par. Read-only, except clearing the
//! temperature alert (the API's clear, same permission).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use maud::{Markup, html};
use outpost_security::auth::roles::Permission;
use serde::Deserialize;

use super::super::catalogue::Msg;
use super::super::i18n::Lang;
use super::super::page::{
    ConsoleError, VENDING_PATH as PATH, api_failed, csrf_field, notice, shell,
};
use super::super::session::{ConsoleForm, Posted, Staff, is_vending_site};
use super::super::{label, snake};
use crate::domain::money::{Currency, Money};
use crate::domain::vending::{Climate, Slot};
use crate::http::AppState;
use crate::vending::alerts::ActiveAlert;

/// Bound on asking the changer for its tubes and the validator for its stacker: the
/// page shows what it could not read rather than wait for a device.
const DEVICE_WAIT: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// The catalogue's plain words for a vending alert and what to do about it, if it
/// has them.
fn alert_words(alert: &str) -> Option<(Msg, Msg)> {
    Some(match alert {
        "temperature" => (Msg::VAlertTemperature, Msg::VTodoTemperature),
        "door_open" => (Msg::VAlertDoor, Msg::VTodoDoor),
        "slot_low" => (Msg::VAlertSlotLow, Msg::VTodoSlotLow),
        "slot_empty" => (Msg::VAlertSlotEmpty, Msg::VTodoSlotEmpty),
        "dispense_failure" => (Msg::VAlertDispense, Msg::VTodoDispense),
        "payment_device" => (Msg::VAlertPayment, Msg::VTodoPayment),
        "exact_change" => (Msg::VAlertExactChange, Msg::VTodoExactChange),
        "cash_box" => (Msg::VAlertCashBox, Msg::VTodoCashBox),
        "changer_fault" => (Msg::VAlertChanger, Msg::VTodoChanger),
        "validator_fault" => (Msg::VAlertValidator, Msg::VTodoValidator),
        _ => return None,
    })
}

/// What a slot can do now, as the page says it.
fn slot_state(s: &Slot, too_warm: bool) -> (Msg, bool) {
    if s.needs_count {
        (Msg::SlotNeedsCount, true)
    } else if s.count == 0 {
        (Msg::SlotEmpty, true)
    } else if too_warm && s.config.climate == Climate::Chilled {
        (Msg::SlotTooWarm, true)
    } else if s.is_low() {
        (Msg::SlotLow, true)
    } else {
        (Msg::SlotOk, false)
    }
}

fn unavailable(l: Lang) -> impl Fn(crate::store::StoreError) -> ConsoleError {
    move |e| {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, Msg::Unavailable)
            .detail(e.to_string())
            .lang(l)
    }
}

/// The vending page: `404` on a unit that runs no machine.
#[get("/console/vending")]
pub async fn vending(
    staff: Staff,
    state: web::Data<AppState>,
    q: web::Query<Done>,
) -> Result<HttpResponse, ConsoleError> {
    staff.require(Permission::ReadCatalog)?;
    let l = staff.lang;
    if !is_vending_site(&state) {
        return Err(ConsoleError::new(StatusCode::NOT_FOUND, Msg::NoVendingMachine).lang(l));
    }
    let store = state.sales.store();
    let alerts = crate::vending::alerts::active(store).map_err(unavailable(l))?;
    let slots = crate::vending::slots::all(store).map_err(unavailable(l))?;
    let currency = state.settings.currency();
    let too_warm = alerts.iter().any(|a| a.alert == "temperature");
    let mut names = Vec::with_capacity(slots.len());
    for s in &slots {
        let name = store
            .catalog()
            .product_json(s.config.sku.as_str())
            .map_err(unavailable(l))?
            .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
            .and_then(|p| p["name"].as_str().map(str::to_owned));
        names.push(name);
    }
    let cash = cash_panel(&state, l, &currency).await?;
    let may_clear = staff.may(Permission::Configure);
    let done = q
        .done
        .as_deref()
        .and_then(|d| Msg::lookup(&format!("done.{d}")));
    let body = html! {
        @if let Some(m) = done { (notice(true, l.t(m), None)) }
        section.card aria-labelledby="h-valerts" {
            h2 #h-valerts { (l.t(Msg::MachineAlerts)) }
            @if alerts.is_empty() { p #no-vending-alerts { (l.t(Msg::VAlertNone)) } }
            @else {
                ul.alerts #vending-alerts {
                    @for a in &alerts { (alert_item(l, a, may_clear, &staff.csrf())) }
                }
            }
        }
        @if let Some(cash) = cash { (cash) }
        section.card.mt aria-labelledby="h-slots" {
            h2 #h-slots { (l.t(Msg::Slots)) " (" (l.number(slots.len() as i64)) ")" }
            @if slots.is_empty() { p { (l.t(Msg::NoSlots)) } }
            @else {
                table #slots {
                    thead { tr {
                        th scope="col" { (l.t(Msg::Slot)) } th scope="col" { (l.t(Msg::Product)) }
                        th.num scope="col" { (l.t(Msg::Price)) } th.num scope="col" { (l.t(Msg::CountOfCapacity)) }
                        th.num scope="col" { (l.t(Msg::Par)) } th scope="col" { (l.t(Msg::Climate)) }
                        th scope="col" { (l.t(Msg::State)) }
                    } }
                    tbody {
                        @for (s, name) in slots.iter().zip(&names) {
                            @let (st, bad) = slot_state(s, too_warm);
                            tr data-slot=(s.config.slot.to_string()) {
                                td translate="no" { (s.config.slot.to_string()) }
                                td translate="no" { (name.as_deref().unwrap_or(s.config.sku.as_str())) }
                                td.num { (l.money(s.config.price, &currency)) }
                                td.num data-count=(s.count) { (l.number(i64::from(s.count))) " / " (l.number(i64::from(s.config.capacity))) }
                                td.num { (l.number(i64::from(s.config.par))) }
                                td { (label(l, "climate", &snake(&s.config.climate))) }
                                td.bad[bad] { (l.t(st)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(shell(&staff, PATH, Msg::NavVending, body))
}

fn alert_item(l: Lang, a: &ActiveAlert, may_clear: bool, csrf: &str) -> Markup {
    html! {
        li.warn[matches!(a.alert.as_str(), "slot_low" | "exact_change")] data-alert=(a.alert) {
            @match alert_words(&a.alert) {
                Some((what, todo)) => {
                    strong {
                        (l.t(what))
                        // Slot alerts name their slot; the others' subjects (`chilled`,
                        // `door`, `changer`) are what the words already say.
                        @if crate::domain::vending::SlotId::parse(&a.subject).is_ok() {
                            " " span.raw translate="no" { (a.subject) }
                        }
                    }
                    (l.t(todo))
                    " · " span.muted { (l.t(Msg::Since)) " " (l.datetime(a.raised_at)) }
                }
                None => {
                    strong translate="no" { (a.alert) " " (a.subject) }
                    span translate="no" { (a.message) }
                    " · " span.muted { (l.t(Msg::Since)) " " (l.datetime(a.raised_at)) }
                }
            }
            @if a.alert == "temperature" && may_clear {
                form #clear-temperature method="post" action="/console/vending/temperature/clear" data-once {
                    (csrf_field(csrf))
                    button type="submit" { (l.t(Msg::ClearTemperature)) }
                }
            }
        }
    }
}

/// The cash card, when a coin changer or a bill validator is fitted: the credit and
/// what is held, the tubes and the cash box as the devices say now.
async fn cash_panel(
    state: &AppState,
    l: Lang,
    currency: &Currency,
) -> Result<Option<Markup>, ConsoleError> {
    let changer = state.devices.changer();
    let validator = state.devices.validator();
    if changer.is_none() && validator.is_none() {
        return Ok(None);
    }
    let cash = crate::vending::cash::state(state.sales.store()).map_err(unavailable(l))?;
    let tubes = match &changer {
        Some(c) => Some(match tokio::time::timeout(DEVICE_WAIT, c.tubes()).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {} s", DEVICE_WAIT.as_secs())),
        }),
        None => None,
    };
    let stacker = match &validator {
        Some(v) => Some(match tokio::time::timeout(DEVICE_WAIT, v.stacker()).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {} s", DEVICE_WAIT.as_secs())),
        }),
        None => None,
    };
    let money = |m: i64| l.money(Money(m), currency);
    Ok(Some(html! {
        section.card.mt aria-labelledby="h-cash" {
            h2 #h-cash { (l.t(Msg::Cash)) }
            div.grid {
                div { dl {
                    dt { (l.t(Msg::Credit)) } dd #credit { (money(cash.credit)) }
                    dt { (l.t(Msg::NoteInEscrow)) } dd { @match cash.escrow { Some(n) => { (money(n.value)) } None => { (l.t(Msg::None)) } } }
                    dt { (l.t(Msg::HeldForVend)) } dd { @match cash.reserved { Some(r) => { (money(r.amount)) } None => { (l.t(Msg::None)) } } }
                    dt { (l.t(Msg::ChangeDue)) } dd { @if cash.pay_due.is_some() || cash.payout.is_some() { (l.t(Msg::Yes)) } @else { (l.t(Msg::No)) } }
                } }
                @if let Some(t) = &tubes {
                    div #tubes {
                        h3 { (l.t(Msg::CoinTubes)) }
                        @match t {
                            Ok(levels) => {
                                table {
                                    thead { tr { th scope="col" { (l.t(Msg::Coin)) } th.num scope="col" { (l.t(Msg::Coins)) } th.num scope="col" { (l.t(Msg::Value)) } th scope="col" { (l.t(Msg::State)) } } }
                                    tbody {
                                        @for t in levels {
                                            tr {
                                                td { (money(t.value_minor)) }
                                                td.num { (l.number(i64::from(t.count))) }
                                                td.num { (money(t.value_minor.saturating_mul(i64::from(t.count)))) }
                                                td { @if t.full { (l.t(Msg::TubeFull)) } @else if t.count == 0 { span.bad { (l.t(Msg::TubeEmpty)) } } }
                                            }
                                        }
                                    }
                                }
                            }
                            Err(e) => { (notice(false, l.t(Msg::Unavailable), Some(e))) }
                        }
                    }
                }
                @if let Some(s) = &stacker {
                    div #cash-box {
                        h3 { (l.t(Msg::CashBox)) }
                        @match s {
                            Ok(st) => {
                                dl {
                                    dt { (l.t(Msg::Notes)) } dd {
                                        (l.number(i64::from(st.bills)))
                                        @if let Some(c) = st.capacity { " / " (l.number(i64::from(c))) }
                                    }
                                    dt { (l.t(Msg::State)) } dd {
                                        @if cash.cash_box_out { span.bad { (l.t(Msg::CashBoxOut)) } }
                                        @else if st.full { span.bad { (l.t(Msg::CashBoxFull)) } }
                                        @else { (l.t(Msg::CashBoxInPlace)) }
                                    }
                                }
                            }
                            Err(e) => { (notice(false, l.t(Msg::Unavailable), Some(e))) }
                        }
                    }
                }
            }
        }
    }))
}

#[derive(Deserialize)]
struct NoFields {}
impl ConsoleForm for NoFields {}

/// Clear the temperature alert once the chilled compartment is cold again: the API's
/// clear (permission `configure`), audited as `vending.temperature_cleared`.
#[post("/console/vending/temperature/clear")]
pub async fn clear_temperature(
    state: web::Data<AppState>,
    posted: Posted<NoFields>,
) -> Result<HttpResponse, ConsoleError> {
    let staff = posted.staff;
    staff.require(Permission::Configure)?;
    let l = staff.lang;
    if !is_vending_site(&state) {
        return Err(ConsoleError::new(StatusCode::NOT_FOUND, Msg::NoVendingMachine).lang(l));
    }
    state
        .vending
        .clear_temperature()
        .await
        .map_err(|e| api_failed(Msg::ClearRefused, l)(e.into()))?;
    state.security.audit(
        staff.name(),
        "vending.temperature_cleared",
        "temperature excursion cleared (console)",
    );
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", format!("{PATH}?done=temperature_cleared")))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alert `docs/vending.md` lists has its plain words and what to do.
    #[test]
    fn every_vending_alert_has_words() {
        for a in [
            "temperature",
            "door_open",
            "slot_low",
            "slot_empty",
            "dispense_failure",
            "payment_device",
            "exact_change",
            "cash_box",
            "changer_fault",
            "validator_fault",
        ] {
            assert!(alert_words(a).is_some(), "{a}");
        }
        assert!(alert_words("something_new").is_none());
    }
}
