//! Checkout: from a terminal's request to a durable sale.
//!
//! Cash-only checkouts are one atomic writer job: key check, sale, stock movements,
//! outbox entries and the key's answer, flushed together. Checkouts with card tenders
//! first persist a pending record (key in progress, payment `authorizing`), then call
//! the terminal, persisting each payment's state before each call, and record the sale
//! only once every card is approved. The terminal work runs in its own task, so a
//! terminal that disconnects mid-payment cannot cut the state machine short.
//!
//! # Layout
//! - this file: [`Sales::checkout`], the key check and the first writes.
//! - [`request`]: what a terminal sends and what it gets back; [`Weigher`].
//! - [`cart`]: pricing the cart (products, quantities, weighed lines).
//! - [`card`]: the card payment driver.
//! - [`finish`]: completing the payments and recording the sale, or unwinding.
//! - `loyalty`: the customer, points and vouchers (`crate::loyalty`), and their errors.

pub mod card;
pub mod cart;
pub mod finish;
mod loyalty;
pub mod request;

pub use request::{CartRequest, CheckoutRequest, CheckoutResult, LineRequest, MAX_LINES, Weigher};

use time::OffsetDateTime;

use super::idempotency::{self, IdemRecord, IdemState};
use super::journal::{self, CheckoutPending, Pending};
use super::{Sales, SellError};
use crate::devices::receipts::ReceiptQueue;
use crate::domain::sale::{
    Cause, IdempotencyKey, PaymentKind, PaymentState, Sale, SaleStatus, TenderMethod, TerminalId,
    allocate_tenders, card_payments,
};
use loyalty::Refused;

/// The idempotency scope of checkouts: one for all terminals.
pub(crate) const SCOPE: &str = "checkout";

impl Sales {
    /// Sell. `key` is the terminal's `Idempotency-Key`; a retry with the same key and
    /// request returns the first sale with `replayed` set.
    pub async fn checkout(
        &self,
        key: &IdempotencyKey,
        terminal: &TerminalId,
        req: CheckoutRequest,
    ) -> Result<CheckoutResult, SellError> {
        self.checkout_weighed(key, terminal, req, None).await
    }

    /// [`checkout`](Self::checkout), weighing lines that name a scale on `weigher`.
    pub async fn checkout_weighed(
        &self,
        key: &IdempotencyKey,
        terminal: &TerminalId,
        req: CheckoutRequest,
        weigher: Option<&dyn Weigher>,
    ) -> Result<CheckoutResult, SellError> {
        let claim = self.claim(format!("{SCOPE}\0{key}"))?;
        let fingerprint = idempotency::fingerprint(terminal.as_str(), &req);
        if let Some(res) = self.existing_checkout(key, &fingerprint).await? {
            return Ok(res);
        }
        // Weighed after the replay check: a retry returns the first sale's weights.
        let mut req = req;
        req.lines = self.weigh_lines(req.lines, weigher).await?;
        let tenders_req = match (&req.payment, &req.payments) {
            (Some(p), None) => vec![p.clone()],
            (None, Some(ps)) => ps.clone(),
            (None, None) => Vec::new(),
            (Some(_), Some(_)) => {
                return Err(SellError::invalid(
                    "invalid_payment",
                    "give payment or payments, not both",
                    Some("payments".into()),
                ));
            }
        };
        let cart = self.price(&req.lines)?;
        if cart.age_restricted && !req.age_verified {
            return Err(SellError::invalid(
                "age_verification_required",
                "the cart has age-restricted products: the cashier must check the customer's age and send age_verified",
                Some("age_verified".into()),
            ));
        }
        let (mut tenders, change) = allocate_tenders(cart.total, &tenders_req)?;
        let (customer_id, loyalty) =
            crate::loyalty::ledger::plan(&self.store, req.customer.as_ref(), &cart, &tenders_req)?;
        let id = crate::domain::ids::next();
        let now = OffsetDateTime::now_utc();
        let mut payments = card_payments(id, &mut tenders, PaymentKind::Charge);
        let mut sale = Sale {
            id,
            idempotency_key: key.clone(),
            terminal_id: terminal.clone(),
            status: SaleStatus::Completed,
            created_at: now,
            completed_at: now,
            receipt: self.receipt(id, terminal, now, &cart, &tenders, change),
            cart,
            tenders,
            change,
            customer_id,
            loyalty,
        };
        sale.receipt.loyalty = sale.loyalty.clone();
        if payments.is_empty() {
            let fp = fingerprint.clone();
            let k = key.clone();
            let place = self.reserve_receipt(id);
            let place2 = place.clone();
            let written = self
                .store
                .write(move |tx| {
                    if let Some(rec) = journal::idem_get(tx, SCOPE, &k)? {
                        return Ok(Err(Refused::Key(rec)));
                    }
                    let mut sale = sale;
                    match crate::loyalty::ledger::redeem(tx, &mut sale) {
                        Ok(()) => {}
                        Err(crate::loyalty::LoyaltyError::Store(e)) => return Err(e),
                        Err(e) => return Ok(Err(Refused::Loyalty(e))),
                    }
                    journal::record_sale(tx, &sale, &fp)?;
                    if let Some(r) = &place2 {
                        ReceiptQueue::put(tx, r, "sale");
                    }
                    Ok(Ok(sale))
                })
                .await;
            let recorded = matches!(written, Ok(Ok(Ok(_))));
            if !recorded {
                self.release_receipt(place.as_ref());
            }
            return match written?.map_err(SellError::Store)? {
                Ok(sale) => Ok(CheckoutResult {
                    sale,
                    replayed: false,
                }),
                // Another process wrote the key between our check and our write (the
                // in-flight set only covers this process): answer as a retry would.
                Err(Refused::Key(rec)) => self.answer_existing(&rec, &fingerprint),
                Err(Refused::Loyalty(e)) => Err(e.into()),
            };
        }
        if let Some(p) = payments
            .iter()
            .find(|p| self.terminal_for(p.method).is_none())
        {
            return Err(SellError::TerminalUnavailable(match p.method {
                TenderMethod::Qr => "QR payments are not configured in this store".into(),
                _ => "no payment terminal is configured".into(),
            }));
        }
        // Nothing is written yet: a refusal here leaves the key unused.
        // QR codes are paid through the provider, never offline: not counted.
        let on_terminal: i64 = payments
            .iter()
            .filter(|p| p.method.through_terminal())
            .map(|p| p.amount.0)
            .sum();
        self.refuse_offline_up_front(crate::domain::money::Money(on_terminal))
            .await?;
        payments[0].transition(PaymentState::Authorizing, Cause::Call)?;
        let pending = CheckoutPending::new(sale, fingerprint.clone(), payments);
        let (k, fp, p) = (
            key.clone(),
            fingerprint.clone(),
            Pending::Checkout(pending.clone()),
        );
        // Only a sale with loyalty has anything to hold.
        let held = pending.sale.loyalty.is_some().then(|| pending.sale.clone());
        let begun = self
            .store
            .write(move |tx| {
                if let Some(rec) = journal::idem_get(tx, SCOPE, &k)? {
                    return Ok(Err(Refused::Key(rec)));
                }
                // Points and vouchers are held until the cards are approved.
                if let Some(held) = &held {
                    match crate::loyalty::ledger::reserve(tx, held) {
                        Ok(()) => {}
                        Err(crate::loyalty::LoyaltyError::Store(e)) => return Err(e),
                        Err(e) => return Ok(Err(Refused::Loyalty(e))),
                    }
                }
                journal::idem_put(
                    tx,
                    SCOPE,
                    &k,
                    &IdemRecord {
                        fingerprint: fp,
                        state: IdemState::InProgress { id: p.id() },
                    },
                );
                journal::pending_put(tx, &p);
                Ok(Ok(()))
            })
            .await?;
        match begun.map_err(SellError::Store)? {
            Ok(()) => {}
            Err(Refused::Key(rec)) => return self.answer_existing(&rec, &fingerprint),
            Err(Refused::Loyalty(e)) => return Err(e.into()),
        }
        // Drive the terminal in its own task: if the HTTP request is dropped, the state
        // machine still runs to a recorded state.
        let this = self.clone();
        // The claim moves into the task: recovery must not drive this payment while it runs.
        let sale = tokio::spawn(async move {
            let _claim = claim;
            this.drive_card_checkout(pending).await
        })
        .await
        .map_err(|e| SellError::TerminalUnavailable(format!("payment task failed: {e}")))??;
        Ok(CheckoutResult {
            sale,
            replayed: false,
        })
    }

    async fn existing_checkout(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> Result<Option<CheckoutResult>, SellError> {
        let Some(raw) = self
            .store
            .journal_get(&crate::store::keys::idem(SCOPE, key.as_str()))?
        else {
            return Ok(None);
        };
        let rec: IdemRecord = crate::store::from_json(&raw, "idempotency record")?;
        // The record may belong to a group whose flush has not finished yet; a no-op
        // job through the writer returns only after it has.
        self.store.write(|_| Ok::<(), ()>(())).await?.ok();
        self.answer_existing(&rec, fingerprint).map(Some)
    }

    fn answer_existing(
        &self,
        rec: &IdemRecord,
        fingerprint: &str,
    ) -> Result<CheckoutResult, SellError> {
        let id = journal::idem_existing(rec, fingerprint)?;
        let sale = self.store.sale(id)?.ok_or_else(|| {
            SellError::Store(crate::store::StoreError::Corrupt(format!(
                "sale {id} named by a key is missing"
            )))
        })?;
        Ok(CheckoutResult {
            sale,
            replayed: true,
        })
    }
}
