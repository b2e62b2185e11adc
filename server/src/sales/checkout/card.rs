//! The card payment driver of a live checkout: authorize each card or wallet tender
//! in turn, persisting each payment's state before each call to the terminal, and
//! resolve an unknown outcome only by asking about the same key. An offline approval
//! past the offline exposure caps is voided (`sales::exposure`).

use outpost_peripherals::payment::{Outcome, PaymentKey, PaymentRequest};

use crate::domain::sale::{Cause, PaymentState, Sale, TenderMethod};
use crate::sales::idempotency::IdemOutcome;
use crate::sales::journal::{Abort, CheckoutPending, Pending};
use crate::sales::terminal::{Asked, approve, asked_from, instrument_of, not_delivered};
use crate::sales::{Sales, SellError};

impl Sales {
    /// The live card flow. The first payment is already persisted as `authorizing`.
    pub(super) async fn drive_card_checkout(
        &self,
        mut c: CheckoutPending,
    ) -> Result<Sale, SellError> {
        let currency = c.sale.cart.currency.code().to_owned();
        for i in 0..c.payments.len() {
            let method = c.payments[i].method;
            let Some(terminal) = self.terminal_for(method) else {
                return Err(SellError::TerminalUnavailable(format!(
                    "no {} payments are configured",
                    method_name(method)
                )));
            };
            let wait = self.timeout_for(method);
            if c.payments[i].state() == PaymentState::Pending {
                c.payments[i].transition(PaymentState::Authorizing, Cause::Call)?;
                self.persist(Pending::Checkout(c.clone())).await?;
            }
            let req = PaymentRequest {
                key: PaymentKey(c.payments[i].key.clone()),
                amount_minor: c.payments[i].amount.0,
                currency: currency.clone(),
                instrument: instrument_of(&c.sale.tenders, &c.payments[i].key),
            };
            let answer = tokio::time::timeout(wait, terminal.authorize(&req)).await;
            // Our own timeout: the terminal may still be waiting for the card.
            let timed_out = answer.is_err();
            let (asked, cause) = match answer {
                Ok(Ok(Outcome::Approved(a))) => (Some(Asked::Approved(a)), Cause::Answer),
                Ok(Ok(Outcome::Declined { reason })) => {
                    (Some(Asked::Declined(reason)), Cause::Answer)
                }
                // The terminal never took the command: nothing was charged.
                Ok(Err(e)) if not_delivered(&e) => {
                    (Some(Asked::NotCharged(e.to_string())), Cause::Answer)
                }
                Ok(Err(_)) | Err(_) => {
                    c.payments[i].transition(PaymentState::InDoubt, Cause::NoAnswer)?;
                    self.persist(Pending::Checkout(c.clone())).await?;
                    // Stop a payment still waiting for the card before asking about
                    // it, so the answer is final (nexo Abort, then status).
                    let aborted = if timed_out {
                        match tokio::time::timeout(
                            self.config().payment_timeout,
                            terminal.abort(&req.key),
                        )
                        .await
                        {
                            Ok(Ok(status)) => asked_from(status),
                            _ => None,
                        }
                    } else {
                        None
                    };
                    let asked = match aborted {
                        Some(a) => Some(a),
                        None => self.ask_until_known(method, &req.key).await,
                    };
                    (asked, Cause::Status)
                }
            };
            match asked {
                None => return Err(SellError::OutcomeUnknown),
                Some(Asked::Approved(a)) => {
                    let (key, amount) = (c.payments[i].key.clone(), c.payments[i].amount);
                    let over = self.admit_offline(&key, &a, amount).await?;
                    approve(&mut c.sale.tenders, &mut c.payments[i], a, cause)?;
                    if let Some(over) = over {
                        // Approved offline past a cap: reverse it (the terminal drops
                        // it from its queue) and release the key.
                        let message = over.message(&c.sale.cart.currency);
                        tracing::warn!(key, %message, "Voiding an offline approval over the offline limit");
                        self.unwind(c, Abort::Release).await?;
                        self.refresh_exposure().await;
                        return Err(SellError::OfflineLimit(message));
                    }
                }
                Some(Asked::NotCharged(reason)) => {
                    c.payments[i].decline(reason.clone(), cause)?;
                    self.unwind(c, Abort::Release).await?;
                    return Err(SellError::TerminalUnavailable(format!(
                        "{reason}; nothing was charged, retry"
                    )));
                }
                Some(Asked::Declined(reason)) => {
                    c.payments[i].decline(reason.clone(), cause)?;
                    let outcome = IdemOutcome::payment_declined(&reason);
                    self.unwind(c, Abort::Answer { outcome }).await?;
                    return Err(SellError::Declined(reason));
                }
            }
        }
        self.finish_checkout(c).await
    }
}

/// How a payment method is named in messages.
pub(crate) fn method_name(method: TenderMethod) -> &'static str {
    match method {
        TenderMethod::Cash => "cash",
        TenderMethod::Card => "card",
        TenderMethod::Wallet => "wallet",
        TenderMethod::Qr => "QR",
        TenderMethod::Points => "points",
        TenderMethod::Voucher => "voucher",
    }
}
