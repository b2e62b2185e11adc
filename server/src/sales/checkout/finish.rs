//! Finishing a checkout: confirming approved payments with the terminal, recording the
//! sale with its receipt, or unwinding (voiding what was approved) and ending the
//! key as the decision says.

use outpost_peripherals::payment::{PaymentError, PaymentKey};
use time::OffsetDateTime;
use uuid::Uuid;

use super::SCOPE;
use crate::devices::receipts::{ReceiptQueue, Reservation};
use crate::domain::money::Money;
use crate::domain::pricing::PricedCart;
use crate::domain::receipt::{Receipt, ReceiptTender};
use crate::domain::sale::{Cause, PaymentState, Sale, Tender, TenderMethod, TerminalId};
use crate::sales::idempotency::{IdemOutcome, IdemRecord, IdemState};
use crate::sales::journal::{self, Abort, CheckoutPending, Pending};
use crate::sales::terminal::Asked;
use crate::sales::{Sales, SellError};

impl Sales {
    /// The receipt of a sale, as the store prints it now.
    pub(crate) fn receipt(
        &self,
        id: Uuid,
        terminal: &TerminalId,
        at: OffsetDateTime,
        cart: &PricedCart,
        tenders: &[Tender],
        change: Money,
    ) -> Receipt {
        let tenders = tenders
            .iter()
            .map(|t| ReceiptTender {
                method: match t.method {
                    TenderMethod::Cash => "cash".into(),
                    TenderMethod::Card => "card".into(),
                    TenderMethod::Wallet => "wallet".into(),
                    TenderMethod::Qr => "qr".into(),
                    TenderMethod::Points => "points".into(),
                    TenderMethod::Voucher => "voucher".into(),
                },
                amount: t.tendered.unwrap_or(t.amount),
                card_last4: t.card.as_ref().and_then(|c| c.last4.clone()),
                auth_code: t.card.as_ref().map(|c| c.auth_code.clone()),
                brand: t.card.as_ref().and_then(|c| c.brand.clone()),
            })
            .collect();
        let config = self.config();
        let mut receipt = Receipt::from_priced(
            config.store_name.clone(),
            id.to_string(),
            terminal.as_str(),
            at,
            cart,
            tenders,
            change,
        );
        receipt.header = config.receipt_header.clone();
        receipt
    }

    /// A place in the receipt queue for a sale about to be recorded (none when the
    /// queue is full, logged once by the queue, or there is no queue).
    pub(super) fn reserve_receipt(&self, id: Uuid) -> Option<Reservation> {
        self.receipts.as_ref()?.reserve(id)
    }

    pub(super) fn release_receipt(&self, place: Option<&Reservation>) {
        if let (Some(q), Some(r)) = (&self.receipts, place) {
            q.release(r);
        }
    }

    /// Record the sale of a checkout whose card payments are all approved.
    pub(crate) async fn finish_checkout(&self, mut c: CheckoutPending) -> Result<Sale, SellError> {
        if !self.complete_payments(&mut c).await? {
            let reason = c
                .payments
                .iter()
                .find_map(|p| p.decline_reason.clone())
                .unwrap_or_else(|| "the terminal did not confirm the payment".into());
            let outcome = IdemOutcome::payment_declined(&reason);
            self.unwind(c, Abort::Answer { outcome }).await?;
            return Err(SellError::Declined(reason));
        }
        let CheckoutPending {
            mut sale,
            fingerprint,
            mut payments,
            ..
        } = c;
        for pay in &mut payments {
            pay.transition(PaymentState::Completed, Cause::Record)?;
        }
        sale.completed_at = OffsetDateTime::now_utc();
        sale.receipt = self.receipt(
            sale.id,
            &sale.terminal_id,
            sale.completed_at,
            &sale.cart,
            &sale.tenders,
            sale.change,
        );
        sale.receipt.loyalty = sale.loyalty.clone();
        let place = self.reserve_receipt(sale.id);
        let place2 = place.clone();
        let recorded = self
            .store
            .write(move |tx| {
                match journal::idem_get(tx, SCOPE, &sale.idempotency_key)? {
                    Some(IdemRecord {
                        state: IdemState::InProgress { id },
                        ..
                    }) if id == sale.id => {}
                    other => {
                        return Err(SellError::Store(crate::store::StoreError::Corrupt(
                            format!("key of sale {} is not in progress: {other:?}", sale.id),
                        )));
                    }
                }
                journal::record_sale(tx, &sale, &fingerprint)?;
                if let Some(r) = &place2 {
                    ReceiptQueue::put(tx, r, "sale");
                }
                Ok(sale)
            })
            .await;
        if !matches!(recorded, Ok(Ok(_))) {
            self.release_receipt(place.as_ref());
        }
        recorded?
    }

    /// Confirm every approved payment with the terminal (nexo completion) before the
    /// sale is recorded. The `Authorized` state is persisted before the calls, so a
    /// crash or a terminal that does not answer leaves the checkout pending for
    /// recovery, which completes it later (`Err(OutcomeUnknown)` here). `Ok(false)`:
    /// the terminal says a payment did not go through after all (marked declined).
    async fn complete_payments(&self, c: &mut CheckoutPending) -> Result<bool, SellError> {
        if !c
            .payments
            .iter()
            .any(|p| p.state() == PaymentState::Authorized)
        {
            return Ok(true);
        }
        self.persist(Pending::Checkout(c.clone())).await?;
        for i in 0..c.payments.len() {
            if c.payments[i].state() != PaymentState::Authorized {
                continue;
            }
            let key = PaymentKey(c.payments[i].key.clone());
            let method = c.payments[i].method;
            let Some(terminal) = self.terminal_for(method) else {
                continue;
            };
            match tokio::time::timeout(self.config().payment_timeout, terminal.complete(&key)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(PaymentError::Illegal(why))) => match self.ask(method, &key).await {
                    // Completed meanwhile, or the refusal was about something else.
                    Some(Asked::Approved(_)) => {}
                    Some(Asked::Declined(reason)) | Some(Asked::NotCharged(reason)) => {
                        tracing::warn!(sale_id = %c.sale.id, payment_key = %key, %why, "The terminal refused to complete a payment it had approved.");
                        c.payments[i].decline(reason, Cause::Status)?;
                        return Ok(false);
                    }
                    None => return Err(SellError::OutcomeUnknown),
                },
                other => {
                    tracing::warn!(sale_id = %c.sale.id, payment_key = %key, result = ?other, "Failed to complete a payment; recovery will retry.");
                    return Err(SellError::OutcomeUnknown);
                }
            }
        }
        Ok(true)
    }

    /// Void every approved payment of a checkout, then end it as `then` says. If a void
    /// fails, the record stays pending (aborting) for the recovery task to finish.
    pub(crate) async fn unwind(
        &self,
        mut c: CheckoutPending,
        then: Abort,
    ) -> Result<(), SellError> {
        let then = c.abort(then);
        self.persist(Pending::Checkout(c.clone())).await?;
        // Without a terminal nothing can be voided: the record stays for recovery.
        let mut all_void = true;
        for pay in c
            .payments
            .iter_mut()
            .filter(|x| x.state() == PaymentState::Authorized)
        {
            let Some(terminal) = self.terminal_for(pay.method) else {
                all_void = false;
                continue;
            };
            match tokio::time::timeout(
                self.config().payment_timeout,
                terminal.void(&PaymentKey(pay.key.clone())),
            )
            .await
            {
                Ok(Ok(())) => pay.transition(PaymentState::Voided, Cause::Void)?,
                other => {
                    tracing::warn!(sale_id = %c.sale.id, payment_key = %pay.key, result = ?other, "Failed to void a payment; recovery will retry");
                    all_void = false;
                }
            }
        }
        if !all_void
            || c.payments
                .iter()
                .any(|x| matches!(x.state(), PaymentState::Authorizing | PaymentState::InDoubt))
        {
            return self.persist(Pending::Checkout(c)).await;
        }
        let id = c.sale.id;
        let key = c.sale.idempotency_key.clone();
        let fingerprint = c.fingerprint;
        let sale = c.sale;
        self.store
            .write(move |tx| {
                crate::loyalty::ledger::release(tx, &sale)?;
                match then {
                    Abort::Answer { outcome } => journal::idem_put(
                        tx,
                        SCOPE,
                        &key,
                        &IdemRecord {
                            fingerprint,
                            state: IdemState::Done { outcome },
                        },
                    ),
                    Abort::Release => journal::idem_remove(tx, SCOPE, &key),
                }
                tx.remove(crate::store::keys::pending(id));
                Ok::<(), SellError>(())
            })
            .await??;
        Ok(())
    }
}
