//! Refunds of a whole sale or chosen lines, idempotent like checkouts.
//!
//! A refund is planned inside the writer, against the refunds already recorded, so
//! two refunds of one sale can never pay back the same line twice. Money goes back to
//! the sale's cards first (through the terminal, with the same persisted payment
//! states as a checkout) and the rest in cash. If a later card refund fails after an
//! earlier one was approved, what could not go back to a card is paid in cash.

use outpost_peripherals::payment::{Outcome, PaymentKey, PaymentRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::{self, IdemOutcome, IdemRecord, IdemState};
use super::journal::{self, Pending, RefundPending};
use super::terminal::{approve, instrument_of, not_delivered};
use super::{Sales, SellError};
use crate::domain::sale::{
    Cause, IdempotencyKey, PaymentKind, PaymentState, Refund, RefundLineRequest, Tender,
    TenderMethod, TerminalId, card_payments, plan_refund, refund_tenders,
};

/// A refund as a terminal sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Lines to refund; empty or absent refunds everything not yet refunded.
    #[serde(default)]
    pub lines: Vec<RefundLineRequest>,
    /// Why, for the journal (at most 500 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// A finished refund.
#[derive(Debug, Clone)]
pub struct RefundResult {
    /// The recorded refund.
    pub refund: Refund,
    /// True when this answers an earlier request with the same key.
    pub replayed: bool,
}

/// What planning a refund in the writer came to.
enum Planned {
    /// Cash only: recorded.
    Recorded(Refund),
    /// The key already made this refund.
    Replay(Uuid),
    /// Card refunds to make; the pending record is written.
    Card(RefundPending),
}

/// The idempotency scope of a sale's refunds.
pub fn scope(sale: Uuid) -> String {
    format!("refund:{sale}")
}

impl Sales {
    /// Refund part or all of `sale_id`.
    pub async fn refund(
        &self,
        sale_id: Uuid,
        key: &IdempotencyKey,
        terminal: &TerminalId,
        req: RefundRequest,
    ) -> Result<RefundResult, SellError> {
        if req.reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(SellError::invalid(
                "invalid_reason",
                "reason is longer than 500 characters",
                Some("reason".into()),
            ));
        }
        // One refund of a sale at a time in this process: planning reads the refunds
        // already made, and card refunds take a while.
        let claim = self.claim(format!("refund\0{sale_id}"))?;
        let sale = self
            .store
            .sale(sale_id)?
            .ok_or_else(|| SellError::SaleNotFound(sale_id.to_string()))?;
        if crate::loyalty::ledger::redeemed_in(&sale) {
            return Err(SellError::invalid(
                "refund_not_supported",
                "the sale was paid in part with points or a voucher, which this unit cannot pay back yet: HQ refunds it",
                None,
            ));
        }
        let fingerprint = idempotency::fingerprint(terminal.as_str(), &req);
        let scope = scope(sale_id);
        let id = crate::domain::ids::next();
        let tax = self.config().tax.clone();
        let (fp, sc, k, t) = (
            fingerprint.clone(),
            scope.clone(),
            key.clone(),
            terminal.clone(),
        );
        let has_terminal = self.terminal.is_some();
        let has_qr = self.qr.is_some();
        let planned = self
            .store
            .write(move |tx| -> Result<Planned, SellError> {
                if let Some(rec) = journal::idem_get(tx, &sc, &k)? {
                    return journal::idem_existing(&rec, &fp).map(Planned::Replay);
                }
                let busy = journal::pending_all(tx)?
                    .iter()
                    .any(|p| matches!(p, Pending::Refund(r) if r.refund.sale_id == sale.id));
                if busy {
                    return Err(SellError::InProgress);
                }
                let previous = journal::refunds_of(tx, sale.id)?;
                let plan = plan_refund(&sale, &previous, &req.lines, &tax)?;
                let mut tenders = refund_tenders(&sale, &previous, plan.total);
                cash_where_no_device(&mut tenders, has_terminal, has_qr);
                let mut payments = card_payments(id, &mut tenders, PaymentKind::Refund);
                let refund = Refund {
                    id,
                    sale_id: sale.id,
                    idempotency_key: k.clone(),
                    terminal_id: t,
                    created_at: OffsetDateTime::now_utc(),
                    reason: req.reason,
                    lines: plan.lines,
                    taxes: plan.taxes,
                    total: plan.total,
                    tenders,
                };
                if payments.is_empty() {
                    journal::record_refund(tx, &refund, &sc, &fp)?;
                    return Ok(Planned::Recorded(refund));
                }
                payments[0].transition(PaymentState::Authorizing, Cause::Call)?;
                let p = RefundPending {
                    refund,
                    fingerprint: fp.clone(),
                    payments,
                };
                journal::idem_put(
                    tx,
                    &sc,
                    &k,
                    &IdemRecord {
                        fingerprint: fp,
                        state: IdemState::InProgress { id },
                    },
                );
                journal::pending_put(tx, &Pending::Refund(p.clone()));
                Ok(Planned::Card(p))
            })
            .await?;
        let pending = match planned? {
            Planned::Recorded(refund) => {
                return Ok(RefundResult {
                    refund,
                    replayed: false,
                });
            }
            Planned::Replay(id) => {
                let refund = self.store.refund(id)?.ok_or_else(|| {
                    SellError::Store(crate::store::StoreError::Corrupt(format!(
                        "refund {id} named by a key is missing"
                    )))
                })?;
                return Ok(RefundResult {
                    refund,
                    replayed: true,
                });
            }
            Planned::Card(p) => p,
        };
        let this = self.clone();
        let refund = tokio::spawn(async move {
            let _claim = claim;
            this.drive_card_refund(pending, true).await
        })
        .await
        .map_err(|e| SellError::TerminalUnavailable(format!("refund task failed: {e}")))??;
        Ok(RefundResult {
            refund,
            replayed: false,
        })
    }

    /// Drive the card refunds of a pending refund. `live`: may start new terminal
    /// calls; recovery only resolves calls already made.
    pub(crate) async fn drive_card_refund(
        &self,
        mut r: RefundPending,
        live: bool,
    ) -> Result<Refund, SellError> {
        for i in 0..r.payments.len() {
            let key = PaymentKey(r.payments[i].key.clone());
            let method = r.payments[i].method;
            let Some(terminal) = self.terminal_for(method) else {
                return Err(SellError::TerminalUnavailable(format!(
                    "no {} payments are configured",
                    super::checkout::card::method_name(method)
                )));
            };
            let (outcome, cause) = match r.payments[i].state() {
                PaymentState::Pending if live => {
                    r.payments[i].transition(PaymentState::Authorizing, Cause::Call)?;
                    self.persist(Pending::Refund(r.clone())).await?;
                    self.refund_call(&terminal, &mut r, i).await?
                }
                PaymentState::Authorizing if live => self.refund_call(&terminal, &mut r, i).await?,
                PaymentState::Authorizing | PaymentState::InDoubt => {
                    match self.ask(method, &key).await {
                        Some(a) => (a.into_outcome(), Cause::Status),
                        None => return Err(SellError::OutcomeUnknown),
                    }
                }
                // Recovery never starts a refund the customer is no longer there for.
                PaymentState::Pending => (
                    Outcome::Declined {
                        reason: "not started before a restart".into(),
                    },
                    Cause::RecoveryNotStarted,
                ),
                _ => continue,
            };
            match outcome {
                Outcome::Approved(a) => {
                    approve(&mut r.refund.tenders, &mut r.payments[i], a, cause)?;
                }
                Outcome::Declined { reason } => r.payments[i].decline(reason, cause)?,
            }
        }
        let RefundPending {
            mut refund,
            fingerprint,
            payments,
        } = r;
        let scope = scope(refund.sale_id);
        let (id, key) = (refund.id, refund.idempotency_key.clone());
        if payments.iter().all(|x| x.state() == PaymentState::Declined) {
            let reason = payments
                .iter()
                .find_map(|x| x.decline_reason.clone())
                .unwrap_or_default();
            // Nothing went back to a card. Live: the terminal's answer is the answer
            // for this key. After a restart: forget the key so the cashier can simply
            // refund again.
            let outcome = live.then(|| IdemOutcome::refund_declined(&reason));
            self.store
                .write(move |tx| {
                    match outcome {
                        Some(outcome) => journal::idem_put(
                            tx,
                            &scope,
                            &key,
                            &IdemRecord {
                                fingerprint,
                                state: IdemState::Done { outcome },
                            },
                        ),
                        None => journal::idem_remove(tx, &scope, &key),
                    }
                    tx.remove(crate::store::keys::pending(id));
                    Ok::<(), SellError>(())
                })
                .await??;
            return Err(SellError::Declined(reason));
        }
        // Card refunds that did not happen are paid in cash.
        for pay in payments
            .iter()
            .filter(|x| x.state() == PaymentState::Declined)
        {
            if let Some(t) = refund
                .tenders
                .iter_mut()
                .find(|t| t.payment_key.as_deref() == Some(pay.key.as_str()))
            {
                tracing::warn!(refund_id = %refund.id, payment_key = %pay.key, "Refund to the card or QR payer not possible; the amount is paid in cash");
                *t = cash(t.amount);
            }
        }
        let recorded = refund.clone();
        self.store
            .write(move |tx| {
                journal::record_refund(tx, &refund, &scope, &fingerprint).map_err(SellError::Store)
            })
            .await??;
        Ok(recorded)
    }

    /// Call the terminal to refund payment `i`, resolving an unknown outcome by asking;
    /// with the cause of the outcome (the call's answer, or the key's status).
    async fn refund_call(
        &self,
        terminal: &std::sync::Arc<dyn outpost_peripherals::payment::PaymentTerminal>,
        r: &mut RefundPending,
        i: usize,
    ) -> Result<(Outcome, Cause), SellError> {
        let req = PaymentRequest {
            key: PaymentKey(r.payments[i].key.clone()),
            amount_minor: r.payments[i].amount.0,
            currency: self.config().currency.code().to_owned(),
            instrument: instrument_of(&r.refund.tenders, &r.payments[i].key),
        };
        match tokio::time::timeout(self.config().payment_timeout, terminal.refund(&req)).await {
            Ok(Ok(o)) => Ok((o, Cause::Answer)),
            Ok(Err(e)) if not_delivered(&e) => Ok((
                Outcome::Declined {
                    reason: e.to_string(),
                },
                Cause::Answer,
            )),
            _ => {
                r.payments[i].transition(PaymentState::InDoubt, Cause::NoAnswer)?;
                self.persist(Pending::Refund(r.clone())).await?;
                match self.ask(r.payments[i].method, &req.key).await {
                    Some(a) => Ok((a.into_outcome(), Cause::Status)),
                    None => Err(SellError::OutcomeUnknown),
                }
            }
        }
    }
}

fn cash(amount: crate::domain::money::Money) -> Tender {
    Tender {
        method: TenderMethod::Cash,
        amount,
        tendered: None,
        payment_key: None,
        card: None,
        refund_of: None,
    }
}

/// Without a terminal, card and wallet refunds are paid in cash; without QR payments,
/// so are refunds of QR tenders.
fn cash_where_no_device(tenders: &mut [Tender], has_terminal: bool, has_qr: bool) {
    for t in tenders.iter_mut().filter(|t| match t.method {
        TenderMethod::Card | TenderMethod::Wallet => !has_terminal,
        TenderMethod::Qr => !has_qr,
        // Sales paid with points or vouchers are not refunded (loyalty.md).
        TenderMethod::Cash | TenderMethod::Points | TenderMethod::Voucher => false,
    }) {
        *t = cash(t.amount);
    }
}
