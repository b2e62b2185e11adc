//! Recovery: finishing every payment that a crash, a lost response or an unreachable
//! terminal left unfinished.
//!
//! At start-up, and then periodically, each pending record is resolved by asking the
//! terminal about the keys it used: approved payments complete their sale (so the
//! terminal's retry with its key gets the sale), declined or never-received ones end
//! the checkout, and keys the terminal still cannot answer for stay in doubt until it
//! can. Recovery never starts a new charge.

use std::time::Duration;

use serde::Serialize;

use super::idempotency::IdemOutcome;
use super::journal::{Abort, CheckoutPending, Pending};
use super::terminal::{Asked, approve};
use super::{Sales, SellError};
use crate::domain::sale::{Cause, PaymentState};
use outpost_peripherals::payment::PaymentKey;

/// What one recovery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Sales recorded because their payments turned out approved.
    pub completed: u32,
    /// Checkouts ended because a payment was declined or never made.
    pub aborted: u32,
    /// Refunds recorded.
    pub refunds: u32,
    /// Records still waiting for the terminal.
    pub still_in_doubt: u32,
    /// Records that failed to resolve (logged; retried next pass).
    pub errors: u32,
}

impl Sales {
    /// Resolve every pending payment once.
    pub async fn recover(&self) -> Result<RecoveryReport, SellError> {
        let mut report = RecoveryReport::default();
        for id in self.store.pending_ids()? {
            // One record that cannot be resolved must not stop the others.
            if let Err(e) = self.recover_one(id, &mut report).await {
                tracing::error!(pending = %id, error = %e, "Failed to recover a pending payment; will retry");
                report.errors += 1;
            }
        }
        if report != RecoveryReport::default() {
            tracing::info!(?report, "Recovered unfinished payments");
        }
        Ok(report)
    }

    async fn recover_one(
        &self,
        id: uuid::Uuid,
        report: &mut RecoveryReport,
    ) -> Result<(), SellError> {
        let Some(raw) = self.store.journal_get(&crate::store::keys::pending(id))? else {
            return Ok(());
        };
        let p: Pending = crate::store::from_json(&raw, "pending payment")?;
        let claim_key = match &p {
            Pending::Checkout(c) => format!("checkout\0{}", c.sale.idempotency_key),
            Pending::Refund(r) => format!("refund\0{}", r.refund.sale_id),
        };
        // A live request is driving it right now.
        let Ok(_claim) = self.claim(claim_key) else {
            return Ok(());
        };
        // Re-read under the claim: the live request may have finished meanwhile.
        let Some(raw) = self.store.journal_get(&crate::store::keys::pending(id))? else {
            return Ok(());
        };
        match crate::store::from_json::<Pending>(&raw, "pending payment")? {
            Pending::Refund(r) => match self.drive_card_refund(r, false).await {
                Ok(_) => report.refunds += 1,
                Err(SellError::OutcomeUnknown) => report.still_in_doubt += 1,
                Err(e) => tracing::info!(refund = %id, error = %e, "Recovery ended a refund"),
            },
            Pending::Checkout(c) => match self.recover_checkout(c).await? {
                Resolved::Completed => report.completed += 1,
                Resolved::Aborted => report.aborted += 1,
                Resolved::InDoubt => report.still_in_doubt += 1,
            },
        }
        Ok(())
    }

    async fn recover_checkout(&self, mut c: CheckoutPending) -> Result<Resolved, SellError> {
        let mut unknown = false;
        let mut over_cap = false;
        let CheckoutPending { sale, payments, .. } = &mut c;
        for pay in payments.iter_mut() {
            if matches!(
                pay.state(),
                PaymentState::Authorizing | PaymentState::InDoubt
            ) {
                match self.ask(pay.method, &PaymentKey(pay.key.clone())).await {
                    Some(Asked::Approved(a)) => {
                        // An offline approval past a cap is voided, as it is live.
                        if let Some(over) = self.admit_offline(&pay.key, &a, pay.amount).await? {
                            tracing::warn!(key = %pay.key, ?over, "Recovery voids an offline approval over the offline limit");
                            over_cap = true;
                        }
                        approve(&mut sale.tenders, pay, a, Cause::Status)?;
                    }
                    Some(Asked::Declined(reason)) => pay.decline(reason, Cause::Status)?,
                    Some(Asked::NotCharged(reason)) => {
                        // Never charged: like a payment that was never started.
                        pay.transition(PaymentState::Pending, Cause::RecoveryNeverCharged)?;
                        pay.decline_reason = Some(reason);
                    }
                    None => {
                        pay.transition(PaymentState::InDoubt, Cause::NoAnswer)?;
                        unknown = true;
                    }
                }
            }
        }
        if unknown {
            self.persist(Pending::Checkout(c)).await?;
            return Ok(Resolved::InDoubt);
        }
        let declined = c
            .payments
            .iter()
            .find(|x| x.state() == PaymentState::Declined)
            .map(|x| x.decline_reason.clone().unwrap_or_default());
        let unstarted = c
            .payments
            .iter()
            .any(|x| x.state() == PaymentState::Pending);
        let abort = match (c.aborting().cloned(), declined, unstarted) {
            (Some(a), _, _) => Some(a),
            (None, Some(reason), _) => Some(Abort::Answer {
                outcome: IdemOutcome::payment_declined(&reason),
            }),
            // Voided for the offline limit: a retry asks again (and likely hears 402).
            (None, None, _) if over_cap => Some(Abort::Release),
            // Cut short between two cards: never charge the rest without the customer.
            (None, None, true) => Some(Abort::Release),
            (None, None, false) => None,
        };
        match abort {
            Some(a) => {
                self.unwind(c, a).await?;
                Ok(Resolved::Aborted)
            }
            None => {
                self.finish_checkout(c).await?;
                Ok(Resolved::Completed)
            }
        }
    }

    /// Run [`recover`](Self::recover) now and then every `every` until the returned
    /// task is aborted.
    pub fn spawn_recovery(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.recover().await {
                    tracing::error!(error = %e, "Payment recovery pass failed");
                }
                // Keeps the offline exposure current while nobody pays by card.
                this.refresh_exposure().await;
                tokio::time::sleep(every).await;
            }
        })
    }
}

enum Resolved {
    Completed,
    Aborted,
    InDoubt,
}
