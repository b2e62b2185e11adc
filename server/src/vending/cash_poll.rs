//! Taking cash: polling the coin changer and the bill validator into the credit
//! (one write per poll: coins and stacked notes with their movements, the note in
//! escrow, faults as alerts, a press of the coin return lever as a payout due), and
//! the checks of the tubes and the cash box behind the `exact_change` and
//! `cash_box` alerts.

use outpost_peripherals::changer::{ChangerEvent, ChangerStatus, CoinRoute};
use outpost_peripherals::validator::{BillRoute, ValidatorEvent, ValidatorStatus};

use super::cash::{
    CashMove, FITTED, Fitted, Note, PayReason, id_of, movement, put_state, state_tx, tubes_of,
    unavailable,
};
use super::{VendError, Vending, alerts};
use crate::store::{StoreError, Tx, from_json, to_json};

impl Vending {
    /// Record the cash devices fitted (what the DEX audit names), once they are
    /// open.
    pub async fn record_fitted(&self) -> Result<(), VendError> {
        let f = Fitted {
            changer: self.changer().map(|c| id_of(c.as_ref())),
            validator: self.validator().map(|v| id_of(v.as_ref())),
        };
        self.store()
            .write(move |tx| {
                let now: Option<Fitted> = tx
                    .get(FITTED)?
                    .map(|v| from_json(&v, "cash devices"))
                    .transpose()?;
                if now.as_ref() != Some(&f) {
                    tx.put(FITTED.to_vec(), to_json(&f));
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        Ok(())
    }

    /// Start (or stop) taking coins and notes.
    pub async fn accept_cash(&self, accept: bool) -> Result<(), VendError> {
        if let Some(c) = self.changer() {
            c.accept_coins(accept)
                .await
                .map_err(|e| unavailable("coin changer", &e))?;
        }
        if let Some(v) = self.validator() {
            v.accept_bills(accept)
                .await
                .map_err(|e| unavailable("bill validator", &e))?;
        }
        Ok(())
    }

    /// Poll the changer and the validator once and record what they report: coins
    /// and notes as credit, the note in escrow, faults as alerts. A press of the
    /// coin return lever pays the credit back (unless a vend is running). Returns the
    /// credit after.
    pub async fn poll_cash(&self) -> Result<i64, VendError> {
        let coins = match self.changer() {
            Some(c) => c
                .poll()
                .await
                .map_err(|e| unavailable("coin changer", &e))?,
            None => Vec::new(),
        };
        let notes = match self.validator() {
            Some(v) => v
                .poll()
                .await
                .map_err(|e| unavailable("bill validator", &e))?,
            None => Vec::new(),
        };
        let (credit, wants_return) = self
            .store()
            .write(move |tx| apply(tx, &coins, &notes))
            .await??;
        if wants_return && let Ok(_machine) = self.machine.try_lock() {
            self.settle_cash().await?;
        }
        Ok(credit)
    }

    /// Raise or clear a device alert in a write of its own.
    pub(crate) async fn device_alert(
        &self,
        alert: &'static str,
        subject: &'static str,
        active: bool,
        message: String,
    ) -> Result<(), VendError> {
        self.store()
            .write(move |tx| alerts::set(tx, alert, subject, active, || message))
            .await??;
        Ok(())
    }

    /// Check the tubes and the stacker against the slots' prices: raise or clear
    /// `exact_change` (some accepted coin or note, for some price below it, leaves
    /// change the tubes cannot pay) and `cash_box` (the stacker nearly full, or the
    /// cash box out).
    pub async fn check_cash_levels(&self) -> Result<(), VendError> {
        let mut prices: Vec<i64> = super::slots::all(self.store())?
            .iter()
            .map(|s| s.config.price.minor())
            .collect();
        prices.sort_unstable();
        prices.dedup();
        if let Some(c) = self.changer() {
            let levels = c
                .tubes()
                .await
                .map_err(|e| unavailable("coin changer", &e))?;
            let mut accepted: Vec<i64> = c.coin_types().iter().map(|t| t.value_minor).collect();
            if let Some(v) = self.validator() {
                accepted.extend(v.bill_types().iter().map(|b| b.value_minor));
            }
            let tubes = tubes_of(&levels);
            let exact = outpost_peripherals::change::exact_change_only(&tubes, &accepted, &prices);
            self.device_alert(
                "exact_change",
                "changer",
                exact,
                if exact {
                    "the tubes cannot make change for every coin or note and price: exact change \
                     only"
                        .into()
                } else {
                    "the tubes make change again".into()
                },
            )
            .await?;
        }
        if let Some(v) = self.validator() {
            let st = v
                .stacker()
                .await
                .map_err(|e| unavailable("bill validator", &e))?;
            let out = self.cash()?.cash_box_out && st.bills > 0;
            let nearly = st.full || st.capacity.is_some_and(|c| st.bills * 10 >= c * 9);
            let bills = st.bills;
            self.device_alert(
                "cash_box",
                "validator",
                out || nearly,
                if out {
                    "the cash box is out of position".into()
                } else if nearly {
                    format!("the cash box is nearly full ({bills} notes)")
                } else {
                    "the cash box has room".into()
                },
            )
            .await?;
            if !out && self.cash()?.cash_box_out {
                // Put back emptied.
                self.store()
                    .write(|tx| {
                        let mut s = state_tx(tx)?;
                        s.cash_box_out = false;
                        put_state(tx, &s);
                        Ok::<(), StoreError>(())
                    })
                    .await??;
            }
        }
        Ok(())
    }
}

/// Record one poll's events in one write. Returns the credit after, and whether
/// the customer asked for the credit back.
fn apply(
    tx: &mut Tx<'_>,
    coins: &[ChangerEvent],
    notes: &[ValidatorEvent],
) -> Result<(i64, bool), StoreError> {
    let mut s = state_tx(tx)?;
    let before = s.clone();
    let mut wants_return = false;
    for e in coins {
        match e.clone() {
            ChangerEvent::Deposited {
                value_minor, route, ..
            } => {
                let kind = match route {
                    CoinRoute::Tube => CashMove::CoinToTube,
                    CoinRoute::CashBox => CashMove::CoinToCashBox,
                    CoinRoute::Returned => continue,
                };
                s.credit += value_minor;
                movement(tx, kind, value_minor, None);
                alerts::set(tx, "changer_fault", "changer", false, || {
                    "the coin changer takes coins again".into()
                })?;
            }
            ChangerEvent::ManualDispense {
                value_minor, count, ..
            } => movement(
                tx,
                CashMove::ManualPaidOut,
                value_minor * i64::from(count),
                None,
            ),
            ChangerEvent::Slugs { .. } => {}
            ChangerEvent::Status { status } => {
                if status == ChangerStatus::EscrowRequest {
                    wants_return = true;
                } else if status.is_fault() {
                    alerts::set(tx, "changer_fault", "changer", true, || {
                        format!("the coin changer reports {status:?}")
                    })?;
                }
            }
        }
    }
    for e in notes {
        match e.clone() {
            ValidatorEvent::Bill {
                bill_type,
                value_minor,
                route,
            } => match route {
                BillRoute::Escrowed => {
                    s.escrow = Some(Note {
                        bill_type,
                        value: value_minor,
                    });
                }
                BillRoute::Stacked => {
                    s.credit += value_minor;
                    s.cash_box_out = false;
                    movement(tx, CashMove::NoteStacked, value_minor, None);
                    alerts::set(tx, "validator_fault", "validator", false, || {
                        "the bill validator takes notes again".into()
                    })?;
                }
                BillRoute::Returned => {
                    if s.escrow.is_some_and(|n| n.bill_type == bill_type) {
                        s.escrow = None;
                    }
                }
                BillRoute::Rejected => {}
            },
            ValidatorEvent::DisabledAttempts { .. } => {}
            ValidatorEvent::Status { status } => match status {
                ValidatorStatus::JustReset => s.escrow = None,
                ValidatorStatus::CashBoxOut => {
                    s.cash_box_out = true;
                    alerts::set(tx, "cash_box", "validator", true, || {
                        "the cash box is out of position".into()
                    })?;
                }
                st if st.is_fault() => {
                    alerts::set(tx, "validator_fault", "validator", true, || {
                        format!("the bill validator reports {st:?}")
                    })?;
                }
                _ => {}
            },
        }
    }
    if wants_return && s.pay_due.is_none() && s.payout.is_none() {
        s.pay_due = Some(PayReason::Return);
    }
    if s != before {
        put_state(tx, &s);
    }
    Ok((s.credit, wants_return))
}
