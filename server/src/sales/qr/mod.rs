//! QR payments: the store shows a code (on a till's customer display, or as a link on
//! the shopper's own phone), the customer pays it with a wallet app, and the payment
//! provider tells the unit by a signed notification (docs/qr-payments.md).
//!
//! To the selling code this is one more payment terminal: a `qr` tender's payment
//! record goes through the same state machine, persisted before each call, resolved
//! only by asking about the same key. [`QrPayments`] answers those calls from what it
//! stored about each reference ([`record`]), so an answer survives a restart:
//!
//! - `authorize` stores the code as `awaiting` and waits for the provider's notice
//!   until the code expires (then it is declined: nothing was paid);
//! - `status` reads the record (`awaiting` and still valid: in progress);
//! - `abort` ends an awaited code (declined), `void` and `refund` give money back;
//! - money the unit did not wait for is never kept: each such payment is returned.
//!
//! The unit never calls the provider: every return goes to HQ in the outbox (an
//! `ENVELOPE_KIND_PAYMENT_RETURN` record), and HQ pays it back through the provider.
//!
//! # Layout
//! - this file: [`QrPayments`], the terminal calls and the provider's notifications.
//! - [`record`]: the stored record of a reference and what a notice does to it.
//! - [`wire`]: the signed pay link and the signed notification.
//! - [`setup`]: the setup from `[payment.qr]`.
//! - [`progress`]: where a checkout paid by QR stands, for the screen showing its code.

pub mod progress;
pub mod record;
pub mod setup;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use outpost_peripherals::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, Health, HealthLevel, HealthReport,
};
use outpost_peripherals::fault::DeviceFault;
use outpost_peripherals::payment::{
    Approval, KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest, PaymentTerminal,
};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::domain::sale::PaymentKind;
use crate::store::outbox::events::{EventBody, PaymentReturn, enqueue_tx};
use crate::store::{Store, StoreError, Tx, from_json, to_json};
use record::{GiveBack, QrPayment, QrState};
pub use wire::{Link, Notification, NotificationError, Secret};

/// How QR payments are set up in this store.
#[derive(Debug, Clone)]
pub struct QrConfig {
    /// The provider's pay address the link starts with.
    pub pay_url: String,
    /// The store's merchant id at the provider.
    pub merchant: String,
    /// Shared with the provider.
    pub secret: Secret,
    /// How long a code may be paid.
    pub expiry: Duration,
    /// The name a receipt shows for the tender when the provider names no wallet.
    pub brand: String,
}

/// A code waiting for the customer, as a till or the shopper page shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AwaitingCode {
    /// The payment's reference.
    pub reference: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The signed pay link the code encodes.
    pub url: String,
    /// When the code stops being valid.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// QR payments of this unit.
pub struct QrPayments {
    store: Arc<Store>,
    config: QrConfig,
    core: DeviceCore,
    /// Tasks waiting in `authorize`, woken when a notice about their reference lands.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
}

fn refused(e: StoreError) -> PaymentError {
    // A store failure before anything was written: the code was never shown.
    PaymentError::Offline(format!("cannot record the QR payment: {e}"))
}

fn unknown(e: StoreError) -> PaymentError {
    PaymentError::OutcomeUnknown(format!("cannot read the QR payment: {e}"))
}

/// Write `give` to the outbox for HQ to pay back (never capped: it is money).
fn give_back(tx: &mut Tx<'_>, reference: &str, give: GiveBack) -> Result<(), StoreError> {
    enqueue_tx(
        tx,
        EventBody::PaymentReturn(PaymentReturn {
            reference: reference.to_owned(),
            provider_ref: give.provider_ref,
            amount: give.amount,
            currency: give.currency,
            reason: give.reason,
        }),
        u64::MAX,
    )?;
    Ok(())
}

fn read(tx: &Tx<'_>, reference: &str) -> Result<Option<QrPayment>, StoreError> {
    tx.get(&record::key(reference))?
        .map(|raw| from_json(&raw, "QR payment"))
        .transpose()
}

impl QrPayments {
    /// QR payments over `store`.
    pub fn new(store: Arc<Store>, config: QrConfig) -> Self {
        let core = DeviceCore::new(DeviceInfo::new(
            "qr",
            DeviceKind::PaymentTerminal,
            "qr-provider",
            config.pay_url.clone(),
        ));
        QrPayments {
            store,
            config,
            core,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// How long a checkout may wait in `authorize`: as long as a code is valid, and a
    /// little more for the last notice to land.
    pub fn wait_limit(&self) -> Duration {
        self.config.expiry + Duration::from_secs(5)
    }

    /// The store's merchant id.
    pub fn merchant(&self) -> &str {
        &self.config.merchant
    }

    /// The record of `reference`.
    pub fn get(&self, reference: &str) -> Result<Option<QrPayment>, StoreError> {
        self.store
            .journal_get(&record::key(reference))?
            .map(|raw| from_json(&raw, "QR payment"))
            .transpose()
    }

    /// The code of `reference` while it waits to be paid, with a link that sends the
    /// customer back to `return_to` after paying.
    pub fn awaiting(
        &self,
        reference: &str,
        return_to: Option<&str>,
    ) -> Result<Option<AwaitingCode>, StoreError> {
        let Some(p) = self.get(reference)? else {
            return Ok(None);
        };
        if p.state != QrState::Awaiting || p.expires_at <= OffsetDateTime::now_utc() {
            return Ok(None);
        }
        let url = Link {
            merchant: &self.config.merchant,
            reference,
            amount: p.amount,
            currency: &p.currency,
            expires: p.expires_at.unix_timestamp(),
            return_to,
        }
        .url(&self.config.pay_url, &self.config.secret);
        Ok(Some(AwaitingCode {
            reference: p.reference,
            amount: p.amount,
            currency: p.currency,
            url,
            expires_at: p.expires_at,
        }))
    }

    /// Take a provider's notification (`body` as posted, `signature` from its header):
    /// checked, applied to its reference's record durably, and the waiting checkout
    /// woken. A notification told twice changes nothing the second time.
    pub async fn notify(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Result<(), NotificationError>, StoreError> {
        let n = match wire::read_notification(
            &self.config.secret,
            &self.config.merchant,
            body,
            signature,
        ) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let reference = n.reference.clone();
        let r = reference.clone();
        self.store
            .write(move |tx| {
                let applied = record::apply(
                    &r,
                    read(tx, &r)?.as_ref(),
                    n.notice,
                    OffsetDateTime::now_utc(),
                );
                if let Some(rec) = &applied.record {
                    tx.put(record::key(&r), to_json(rec));
                }
                if let Some(give) = applied.give_back {
                    tracing::warn!(reference = %r, amount = give.amount, reason = %give.reason, "QR payment to be returned through HQ");
                    give_back(tx, &r, give)?;
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        self.wake(&reference);
        Ok(Ok(()))
    }

    fn wake(&self, reference: &str) {
        let w = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = w.get(reference) {
            n.notify_waiters();
        }
    }

    fn approval(&self, state: &QrState) -> Option<Approval> {
        match state {
            QrState::Paid {
                provider_ref,
                wallet,
            } => Some(Approval {
                auth_code: provider_ref.chars().take(32).collect(),
                brand: Some(wallet.clone().unwrap_or_else(|| self.config.brand.clone())),
                last4: None,
                ..Approval::default()
            }),
            _ => None,
        }
    }

    /// End `reference` if it still awaits and has expired (or `force`: the till gave
    /// up); answers the record as it stands after.
    async fn end_if_awaiting(
        &self,
        reference: &str,
        force: Option<&'static str>,
    ) -> Result<Option<QrPayment>, StoreError> {
        let r = reference.to_owned();
        let ended = self
            .store
            .write(move |tx| {
                let Some(mut p) = read(tx, &r)? else {
                    return Ok(None);
                };
                let expired = p.expires_at <= OffsetDateTime::now_utc();
                if p.state == QrState::Awaiting && (expired || force.is_some()) {
                    p.state = QrState::Declined {
                        reason: force
                            .unwrap_or("the QR code was not paid in time")
                            .to_owned(),
                    };
                    tx.put(record::key(&r), to_json(&p));
                }
                Ok::<_, StoreError>(Some(p))
            })
            .await??;
        Ok(ended)
    }

    fn status_of(&self, p: Option<&QrPayment>) -> KeyStatus {
        match p.map(|p| &p.state) {
            None => KeyStatus::Unknown,
            Some(QrState::Awaiting) => KeyStatus::InProgress,
            Some(s @ QrState::Paid { .. }) => match self.approval(s) {
                Some(a) => KeyStatus::Done(Outcome::Approved(a)),
                None => KeyStatus::InProgress,
            },
            Some(QrState::Declined { reason }) => KeyStatus::Done(Outcome::Declined {
                reason: reason.clone(),
            }),
            Some(QrState::Returned { .. }) => KeyStatus::Reversed,
        }
    }
}

#[async_trait]
impl Device for QrPayments {
    fn core(&self) -> &DeviceCore {
        &self.core
    }

    async fn open(&self) -> Result<(), DeviceFault> {
        Ok(())
    }

    async fn close(&self) {}

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        // The provider is reached through the customer's phone and HQ, never by the
        // unit: what the unit can check is its own record store.
        match self.store.journal_get(b"qp/") {
            Ok(_) => HealthReport::now(Health::Ok, "QR payments can be recorded"),
            Err(e) => HealthReport::now(Health::Failed, e.to_string()),
        }
    }
}

#[async_trait]
impl PaymentTerminal for QrPayments {
    async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        let reference = req.key.0.clone();
        let notify = Arc::new(Notify::new());
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reference.clone(), notify.clone());
        let result = self.wait_paid(req, &notify).await;
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&reference);
        result
    }

    async fn complete(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        match self.get(&key.0).map_err(unknown)?.map(|p| p.state) {
            Some(QrState::Paid { .. }) => Ok(()),
            other => Err(PaymentError::Illegal(format!(
                "QR payment {key} is not paid: {other:?}"
            ))),
        }
    }

    async fn abort(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        let p = self
            .end_if_awaiting(&key.0, Some("the QR payment was cancelled"))
            .await
            .map_err(unknown)?;
        self.wake(&key.0);
        Ok(self.status_of(p.as_ref()))
    }

    async fn void(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        let r = key.0.clone();
        self.store
            .write(move |tx| {
                let Some(mut p) = read(tx, &r)? else {
                    return Ok(Err(format!("no QR payment {r}")));
                };
                match &p.state {
                    QrState::Returned { .. } => Ok(Ok(())),
                    QrState::Paid { provider_ref, .. } => {
                        let provider_ref = Some(provider_ref.clone());
                        give_back(
                            tx,
                            &r,
                            GiveBack {
                                provider_ref: provider_ref.clone(),
                                amount: p.amount,
                                currency: p.currency.clone(),
                                reason: "the sale could not be completed".into(),
                            },
                        )?;
                        p.state = QrState::Returned {
                            provider_ref,
                            reason: "voided".into(),
                        };
                        tx.put(record::key(&r), to_json(&p));
                        Ok(Ok(()))
                    }
                    other => Ok(Err(format!("QR payment {r} is not paid: {other:?}"))),
                }
            })
            .await
            .map_err(unknown)?
            .map_err(unknown)?
            .map_err(PaymentError::Illegal)
    }

    async fn refund(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        let r = req.key.0.clone();
        let (amount, currency) = (req.amount_minor, req.currency.clone());
        self.store
            .write(move |tx| {
                if read(tx, &r)?.is_none() {
                    let now = OffsetDateTime::now_utc();
                    give_back(
                        tx,
                        &r,
                        GiveBack {
                            provider_ref: None,
                            amount,
                            currency: currency.clone(),
                            reason: "refund".into(),
                        },
                    )?;
                    let p = QrPayment {
                        reference: r.clone(),
                        kind: PaymentKind::Refund,
                        amount,
                        currency,
                        created_at: now,
                        expires_at: now,
                        state: QrState::Returned {
                            provider_ref: None,
                            reason: "refund".into(),
                        },
                        returned: Vec::new(),
                    };
                    tx.put(record::key(&r), to_json(&p));
                }
                Ok::<(), StoreError>(())
            })
            .await
            .map_err(refused)?
            .map_err(refused)?;
        Ok(Outcome::Approved(Approval {
            auth_code: "RETURN".into(),
            brand: Some(self.config.brand.clone()),
            last4: None,
            ..Approval::default()
        }))
    }

    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        let p = self.end_if_awaiting(&key.0, None).await.map_err(unknown)?;
        Ok(self.status_of(p.as_ref()))
    }
}

impl QrPayments {
    async fn wait_paid(
        &self,
        req: &PaymentRequest,
        notify: &Notify,
    ) -> Result<Outcome, PaymentError> {
        let reference = req.key.0.clone();
        let now = OffsetDateTime::now_utc();
        let p = QrPayment {
            reference: reference.clone(),
            kind: PaymentKind::Charge,
            amount: req.amount_minor,
            currency: req.currency.clone(),
            created_at: now,
            expires_at: now + self.config.expiry,
            state: QrState::Awaiting,
            returned: Vec::new(),
        };
        let r = reference.clone();
        // A key used before keeps its record: its outcome is answered, never a new code.
        self.store
            .write(move |tx| {
                if read(tx, &r)?.is_none() {
                    tx.put(record::key(&r), to_json(&p));
                }
                Ok::<(), StoreError>(())
            })
            .await
            .map_err(refused)?
            .map_err(refused)?;
        tracing::info!(reference = %reference, amount = req.amount_minor, "QR code shown; waiting for the wallet payment");
        loop {
            let wake = notify.notified();
            let current = self.get(&reference).map_err(unknown)?;
            match current.as_ref().map(|p| &p.state) {
                Some(QrState::Awaiting) => {}
                _ => {
                    return match self.status_of(current.as_ref()) {
                        KeyStatus::Done(o) => Ok(o),
                        _ => Ok(Outcome::Declined {
                            reason: "the QR payment was returned".into(),
                        }),
                    };
                }
            }
            let left = current
                .map(|p| p.expires_at - OffsetDateTime::now_utc())
                .unwrap_or(time::Duration::ZERO);
            if left <= time::Duration::ZERO {
                let ended = self
                    .end_if_awaiting(&reference, None)
                    .await
                    .map_err(unknown)?;
                if let KeyStatus::Done(o) = self.status_of(ended.as_ref()) {
                    return Ok(o);
                }
                continue;
            }
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            // Woken by a notice, or at the latest when the code expires.
            let _ = tokio::time::timeout(left, wake).await;
        }
    }
}

#[cfg(test)]
mod tests;
