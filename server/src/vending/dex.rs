//! The DEX audit of this machine, from the sales journal and the vend records.
//!
//! Totals come from the journal's sales sold by the vending service (terminal id
//! `vending`), so they are the journal's by construction; events from the finished
//! vend records. "Since reset" counts what came after the last audit read with reset:
//! the reset stores a UUIDv7 mark (`v/r`), and every sale and vend id after it is
//! newer.
//!
//! Event ids (EA2) are Outpost's own: `OVF` vends that failed (nothing sold, nothing
//! charged), `OND` of those, the ones the drop sensor did not confirm, `OUP` unpaid
//! vends (a product out with no charge recorded).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::flow::VENDING_TERMINAL;
use super::records::finished;
use super::slots;
use crate::domain::sale::TenderMethod;
use crate::domain::vending::dex::{Audit, EventAudit, Identity, Pair, SlotAudit, write};
use crate::domain::vending::vend::VendFault;
use crate::domain::vending::{SlotId, VendState};
use crate::store::{Store, StoreError, from_json, to_json};

const RESET: &[u8] = b"v/r";
/// Sales read per page.
const PAGE: usize = 1000;

/// The last audit reset.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ResetMark {
    /// Every sale and vend with a greater id came after the reset.
    after: Uuid,
}

/// Who the file says it is from.
#[derive(Debug, Clone, Default)]
pub struct DexIdentity {
    /// The unit (DXS01, ID101).
    pub unit: String,
    /// Where the machine stands (ID105).
    pub location: String,
}

pub(super) fn reset_mark(store: &Store) -> Result<Option<Uuid>, StoreError> {
    Ok(store
        .journal_get(RESET)?
        .map(|v| from_json::<ResetMark>(&v, "DEX reset mark"))
        .transpose()?
        .map(|m| m.after))
}

/// The audit as of now.
pub fn audit(store: &Store, who: &DexIdentity) -> Result<Audit, StoreError> {
    audit_upto(store, who, None)
}

/// The audit of every sale and vend up to `upto` (inclusive; `None`: all).
fn audit_upto(store: &Store, who: &DexIdentity, upto: Option<Uuid>) -> Result<Audit, StoreError> {
    let mark = reset_mark(store)?;
    let since = |id: Uuid| mark.is_none_or(|m| id > m);
    let counted = |id: Uuid| upto.is_none_or(|u| id <= u);
    let add = |p: &mut Pair, id: Uuid, value: i64| {
        if !counted(id) {
            return;
        }
        p.init.add(value);
        if since(id) {
            p.reset.add(value);
        }
    };
    let mut a = Audit {
        communication_id: who.unit.clone(),
        machine: Identity {
            serial: who.unit.clone(),
            model: "Outpost vending".into(),
            software: env!("CARGO_PKG_VERSION").into(),
        },
        location: who.location.clone(),
        control_board: Identity {
            serial: who.unit.clone(),
            model: "Outpost".into(),
            software: env!("CARGO_PKG_VERSION").into(),
        },
        ..Audit::default()
    };
    let mut per_slot: BTreeMap<SlotId, Pair> = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store.sales_after(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for sale in &page {
            if sale.terminal_id.as_str() != VENDING_TERMINAL {
                continue;
            }
            let total = sale.cart.total.minor();
            add(&mut a.paid, sale.id, total);
            match sale.tenders.first().map(|t| t.method) {
                Some(TenderMethod::Cash) => add(&mut a.cash, sale.id, total),
                Some(TenderMethod::Card | TenderMethod::Wallet | TenderMethod::Qr) => {
                    add(&mut a.cashless, sale.id, total)
                }
                // A vending machine takes neither points nor vouchers.
                Some(TenderMethod::Points | TenderMethod::Voucher) => {}
                None => {}
            }
            for line in &sale.cart.lines {
                if let Some(slot) = line.slot.as_deref().and_then(|s| SlotId::parse(s).ok()) {
                    add(
                        per_slot.entry(slot).or_default(),
                        sale.id,
                        line.total.minor(),
                    );
                }
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    let current = slots::all(store)?;
    for s in &current {
        a.slots.push(SlotAudit {
            selection: s.config.slot.to_string(),
            price: s.config.price.minor(),
            product: s.config.sku.as_str().to_owned(),
            paid: per_slot.remove(&s.config.slot).unwrap_or_default(),
        });
    }
    // Slots sold from and since removed still count.
    for (slot, paid) in per_slot {
        a.slots.push(SlotAudit {
            selection: slot.to_string(),
            price: 0,
            product: String::new(),
            paid,
        });
    }
    cash_part(store, &mut a, &since, &counted)?;
    let mut events = [("OVF", 0u64, 0u64), ("OND", 0, 0), ("OUP", 0, 0)];
    for r in finished(store)?.into_iter().filter(|r| counted(r.id)) {
        let hits = [
            r.state() == VendState::Failed,
            r.state() == VendState::Failed && r.fault == Some(VendFault::NotDispensed),
            r.state() == VendState::Unpaid,
        ];
        for (e, hit) in events.iter_mut().zip(hits) {
            if hit {
                e.1 += 1;
                if since(r.id) {
                    e.2 += 1;
                }
            }
        }
    }
    a.events = events
        .into_iter()
        .map(|(id, init, reset)| EventAudit {
            id: id.into(),
            init,
            reset,
            active: false,
        })
        .collect();
    Ok(a)
}

/// The cash devices (BA1, CA1) and the cash in and out (CA3, CA4) from the cash
/// movements, when a changer or validator is fitted or any cash moved.
fn cash_part(
    store: &Store,
    a: &mut Audit,
    since: &dyn Fn(Uuid) -> bool,
    counted: &dyn Fn(Uuid) -> bool,
) -> Result<(), StoreError> {
    use super::cash::{CashMove, fitted, movements};
    use crate::domain::vending::dex::CashAudit;
    let f = fitted(store)?;
    let moves = movements(store)?;
    let identity = |d: super::cash::CashDeviceId| Identity {
        serial: d.serial,
        model: d.model,
        software: d.software,
    };
    a.bill_validator = f.validator.map(identity);
    if f.changer.is_none() && a.bill_validator.is_none() && moves.is_empty() {
        return Ok(());
    }
    let mut c = CashAudit {
        changer: f.changer.map(identity),
        ..CashAudit::default()
    };
    for m in moves.iter().filter(|m| counted(m.id)) {
        for (i, on) in [(0, since(m.id)), (1, true)] {
            if !on {
                continue;
            }
            let (cin, cout) = (&mut c.cash_in[i], &mut c.cash_out[i]);
            match m.kind {
                CashMove::CoinToTube => {
                    cin.total += m.value;
                    cin.to_tubes += m.value;
                }
                CashMove::CoinToCashBox => {
                    cin.total += m.value;
                    cin.to_box += m.value;
                }
                CashMove::NoteStacked => {
                    cin.total += m.value;
                    cin.bills += m.value;
                }
                CashMove::PaidOut => cout.dispensed += m.value,
                CashMove::ManualPaidOut => cout.manual += m.value,
            }
        }
    }
    a.cash_devices = Some(c);
    Ok(())
}

/// The DEX file as of now.
pub fn export(store: &Store, who: &DexIdentity) -> Result<String, StoreError> {
    Ok(write(&audit(store, who)?))
}

/// Reset the "since reset" totals and return the file that closes the interval: it
/// counts every sale and vend up to the new mark, and the next interval everything
/// after it, so no vend is in two intervals or in none.
pub async fn export_and_reset(store: &Store, who: &DexIdentity) -> Result<String, StoreError> {
    let mark = crate::domain::ids::next();
    let file = write(&audit_upto(store, who, Some(mark))?);
    store
        .write(move |tx| {
            tx.put(RESET.to_vec(), to_json(&ResetMark { after: mark }));
            Ok::<(), StoreError>(())
        })
        .await??;
    Ok(file)
}
