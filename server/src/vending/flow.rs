//! One vend, from the customer's selection to the sale in the journal.
//!
//! Every step writes the vend record first and then calls one device under the vend's
//! key (the record's state names the call: `authorizing` is the VEND REQUEST,
//! `dispensing` the motor, `capturing` VEND SUCCESS, `voiding` VEND FAILURE). A lost
//! answer is resolved by asking the device about the same key, never by calling
//! again; what cannot be resolved now stays open for [`super::recovery`].
//!
//! The live path and recovery share the capture and void steps; only the live path
//! ever asks the reader for money or runs a motor.

use outpost_peripherals::CommandKey;
use outpost_peripherals::payment::{Outcome, PaymentKey, PaymentRequest};
use outpost_peripherals::vend::{VendOutcome, VendStatus};
use time::OffsetDateTime;

use super::records::{self, open_tx, put_open};
use super::{VEND_SCOPE, VendError, VendRequestKey, Vending, slots};
use crate::domain::pricing::{CartItem, Quantity, price_cart};
use crate::domain::promotion::PromotionSet;
use crate::domain::sale::{
    CardSummary, IdempotencyKey, Sale, SaleStatus, Tender, TenderMethod, TerminalId,
};
use crate::domain::vending::vend::VendFault;
use crate::domain::vending::{Climate, PayMethod, SlotId, VendRecord, VendState};
use crate::sales::idempotency::{IdemRecord, IdemState};
use crate::sales::journal;
use crate::sales::terminal::{Asked, asked_from, not_delivered};
use crate::store::StoreError;

/// The terminal id vending sales carry.
pub const VENDING_TERMINAL: &str = "vending";

/// How a status question about the dispenser came out.
pub(crate) enum Dropped {
    /// The drop sensor saw the product.
    Yes,
    /// Nothing left the machine under the key.
    No(String),
    /// The dispenser cannot say yet.
    NotKnown,
}

impl Vending {
    /// Sell one unit from `slot`, paid by `method`. Returns the vend as it ended:
    /// `completed` (sold), `failed` (nothing sold, nothing charged, `failure` says
    /// why) or `unpaid`. [`VendError::OutcomeUnknown`] leaves the vend open for
    /// recovery. Not cancel-safe: a dropped call leaves the vend open, as a power cut
    /// would, and [`Vending::recover`] finishes it.
    pub async fn vend(&self, slot: SlotId, method: PayMethod) -> Result<VendRecord, VendError> {
        self.vend_keyed(slot, method, None).await
    }

    /// [`Vending::vend`] under the caller's request key: the key is bound to the vend
    /// in the same write as its `selected` record, so a retry never starts a second
    /// vend ([`VendError::KeyUsed`] names the first).
    pub async fn vend_keyed(
        &self,
        slot: SlotId,
        method: PayMethod,
        request: Option<VendRequestKey>,
    ) -> Result<VendRecord, VendError> {
        let _machine = self.machine.try_lock().map_err(|_| VendError::Busy)?;
        if self.devices.dispenser.is_none() {
            return Err(VendError::DeviceUnavailable(
                "no vend dispenser is configured".into(),
            ));
        }
        match method {
            PayMethod::Cashless if self.devices.cashless.is_none() => {
                return Err(VendError::DeviceUnavailable(
                    "no cashless reader is configured".into(),
                ));
            }
            PayMethod::Cashless => {}
            // A machine built without cash takes none: the caller chooses cashless
            // (a configuration, not an outage to wait out).
            PayMethod::Cash
                if self.devices.changer.is_none() && self.devices.validator.is_none() =>
            {
                return Err(VendError::Invalid {
                    code: "method_not_supported",
                    message: "this machine takes no cash: no coin changer or bill validator is configured".into(),
                    field: Some("method".into()),
                });
            }
            PayMethod::Cash => return self.vend_cash(slot, request).await,
        }
        let mut r = self.select(slot, method, request).await?;
        // Authorizing: the record says the reader may hold money under the key.
        r.transition(VendState::Authorizing, now())?;
        self.persist(&r).await?;
        match self.authorize(&r).await {
            Some(Asked::Approved(a)) => {
                r.card = Some(CardSummary {
                    auth_code: a.auth_code,
                    brand: a.brand,
                    last4: a.last4,
                });
                r.transition(VendState::Authorized, now())?;
            }
            Some(Asked::Declined(reason)) => {
                r.fail(format!("declined: {reason}"), None);
                return self.end(r, VendState::Failed).await;
            }
            Some(Asked::NotCharged(reason)) => {
                r.fail(reason, Some(VendFault::Payment));
                return self.end(r, VendState::Failed).await;
            }
            None => return Err(VendError::OutcomeUnknown),
        }
        // Dispensing: the record says the motor may have run under the key.
        r.transition(VendState::Dispensing, now())?;
        self.persist(&r).await?;
        match self.dispense(&r).await {
            Dropped::Yes => self.dropped(r).await,
            Dropped::No(reason) => {
                r.fail(
                    format!("not dispensed: {reason}"),
                    Some(VendFault::NotDispensed),
                );
                r.transition(VendState::Voiding, now())?;
                self.persist(&r).await?;
                self.void(r).await
            }
            Dropped::NotKnown => Err(VendError::OutcomeUnknown),
        }
    }

    /// Check the slot can sell, price it and write the vend as `selected`. Refused
    /// while another vend is open: an unfinished vend is finished by recovery first.
    pub(crate) async fn select(
        &self,
        slot: SlotId,
        method: PayMethod,
        request: Option<VendRequestKey>,
    ) -> Result<VendRecord, VendError> {
        let (sku, cart) = self.quote(slot)?;
        let r = VendRecord::new(slot, sku, cart, method, now());
        self.select_write(slot, r, request).await
    }

    /// The slot's product and its priced one-line cart, if the slot can sell.
    pub(crate) fn quote(
        &self,
        slot: SlotId,
    ) -> Result<
        (
            crate::domain::product::Sku,
            crate::domain::pricing::PricedCart,
        ),
        VendError,
    > {
        let store = self.store().clone();
        let s = slots::one(&store, slot)?.ok_or(VendError::NoSlot(slot))?;
        let not = |reason: &str| VendError::NotSellable {
            slot,
            reason: reason.into(),
        };
        if s.needs_count {
            return Err(not(
                "its product changed while units were in it: a technician must count it",
            ));
        }
        if s.count == 0 {
            return Err(not("it is empty"));
        }
        let mut product = store
            .catalog()
            .product(s.config.sku.as_str())?
            .ok_or_else(|| not("its product is not in the catalog"))?;
        let config = self.sales.config();
        if product.currency != config.currency {
            return Err(not("its product is priced in another currency"));
        }
        product.price = s.config.price;
        // The slot's price is the price: promotions are not applied at the machine,
        // whose label shows one price.
        let mut cart = price_cart(
            &[CartItem {
                product,
                quantity: Quantity::Units(1),
            }],
            &PromotionSet::new(vec![]),
            &config.tax,
            now(),
        )?;
        for line in &mut cart.lines {
            line.slot = Some(slot.to_string());
        }
        Ok((s.config.sku.clone(), cart))
    }

    /// Write the vend `r` as `selected`, bound to the request key.
    async fn select_write(
        &self,
        slot: SlotId,
        r: VendRecord,
        request: Option<VendRequestKey>,
    ) -> Result<VendRecord, VendError> {
        let store = self.store().clone();
        let rec = r.clone();
        store
            .write(move |tx| {
                if let Some(req) = &request
                    && let Some(used) = journal::idem_get(tx, VEND_SCOPE, &req.key)?
                {
                    if used.fingerprint != req.fingerprint {
                        return Err(VendError::KeyReused);
                    }
                    return match used.state {
                        IdemState::InProgress { id } => Err(VendError::KeyUsed(id)),
                        IdemState::Done { .. } => Err(VendError::Internal(
                            "a vend's idempotency record is never marked done".into(),
                        )),
                    };
                }
                if !open_tx(tx)?.is_empty() {
                    return Err(VendError::Busy);
                }
                let s = slots::get(tx, slot)?.ok_or(VendError::NoSlot(slot))?;
                if s.count == 0 || s.needs_count {
                    return Err(VendError::NotSellable {
                        slot,
                        reason: "it changed while the vend was being priced".into(),
                    });
                }
                if s.config.climate == Climate::Chilled
                    && super::alerts::is_raised(tx, "temperature", "chilled")?
                {
                    return Err(VendError::NotSellable {
                        slot,
                        reason: "chilled goods were too warm: a technician must clear the \
                                 temperature alert"
                            .into(),
                    });
                }
                put_open(tx, &rec);
                if let Some(req) = &request {
                    // The key stays bound to the vend: its record (open or finished)
                    // is the answer to any retry.
                    journal::idem_put(
                        tx,
                        VEND_SCOPE,
                        &req.key,
                        &IdemRecord {
                            fingerprint: req.fingerprint.clone(),
                            state: IdemState::InProgress { id: rec.id },
                        },
                    );
                }
                Ok(())
            })
            .await??;
        Ok(r)
    }

    /// The VEND REQUEST, and what it came to. `None`: not known yet.
    async fn authorize(&self, r: &VendRecord) -> Option<Asked> {
        let terminal = self.devices.cashless.as_ref()?;
        let req = PaymentRequest {
            key: PaymentKey(r.key.clone()),
            amount_minor: r.price.minor(),
            currency: r.cart.currency.code().to_owned(),
            instrument: outpost_peripherals::payment::Instrument::Any,
        };
        match tokio::time::timeout(self.timeouts.authorize, terminal.authorize(&req)).await {
            Ok(Ok(Outcome::Approved(a))) => Some(Asked::Approved(a)),
            Ok(Ok(Outcome::Declined { reason })) => Some(Asked::Declined(reason)),
            Ok(Err(e)) if not_delivered(&e) => Some(Asked::NotCharged(format!(
                "the cashless reader could not take the payment: {e}"
            ))),
            Ok(Err(_)) | Err(_) => self.ask_payment(&r.key).await,
        }
    }

    /// Run the motor once under the key; a lost answer is resolved by asking.
    pub(crate) async fn dispense(&self, r: &VendRecord) -> Dropped {
        let Some(d) = self.devices.dispenser.as_ref() else {
            return Dropped::NotKnown;
        };
        let key = CommandKey(r.key.clone());
        let slot = r.slot.to_string();
        match tokio::time::timeout(self.timeouts.dispense, d.vend(&key, &slot)).await {
            Ok(Ok(VendOutcome::Dispensed)) => Dropped::Yes,
            Ok(Ok(VendOutcome::NotDispensed { reason })) => Dropped::No(reason),
            // Whatever the error, the motor may have run: ask about the key.
            Ok(Err(_)) | Err(_) => self.ask_dispenser(r).await,
        }
    }

    /// Ask the dispenser about the vend's key a few times.
    pub(crate) async fn ask_dispenser(&self, r: &VendRecord) -> Dropped {
        let Some(d) = self.devices.dispenser.as_ref() else {
            return Dropped::NotKnown;
        };
        let key = CommandKey(r.key.clone());
        let mut delay = std::time::Duration::from_millis(50);
        for _ in 0..4 {
            match tokio::time::timeout(self.timeouts.call, d.vend_status(&key)).await {
                Ok(Ok(VendStatus::Done(VendOutcome::Dispensed))) => return Dropped::Yes,
                Ok(Ok(VendStatus::Done(VendOutcome::NotDispensed { reason }))) => {
                    return Dropped::No(reason);
                }
                Ok(Ok(VendStatus::Unknown)) => {
                    return Dropped::No("the dispenser never ran the vend".into());
                }
                Ok(Ok(VendStatus::InProgress)) | Ok(Err(_)) | Err(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Dropped::NotKnown
    }

    /// Ask the reader about the vend's key a few times. `None`: not known yet.
    pub(crate) async fn ask_payment(&self, key: &str) -> Option<Asked> {
        let terminal = self.devices.cashless.as_ref()?;
        let key = PaymentKey(key.to_owned());
        let mut delay = std::time::Duration::from_millis(50);
        for _ in 0..4 {
            if let Ok(Ok(status)) =
                tokio::time::timeout(self.timeouts.call, terminal.status(&key)).await
                && let Some(a) = asked_from(status)
            {
                return Some(a);
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        None
    }

    /// The product dropped: capture the charge.
    pub(crate) async fn dropped(&self, mut r: VendRecord) -> Result<VendRecord, VendError> {
        r.transition(VendState::Dispensed, now())?;
        r.transition(VendState::Capturing, now())?;
        self.persist(&r).await?;
        self.capture(r, false).await
    }

    /// VEND SUCCESS under the key, then the sale. A reader that no longer holds the
    /// charge (it lost its power and was reset) leaves the vend unpaid: the product
    /// is out. `resumed`: a process before this one may have sent VEND SUCCESS
    /// already (recovery of a vend left in `capturing`), so an unpaid end is in
    /// doubt. (A reader that kept its power through the restart still has the
    /// session, resumed under the key: VEND SUCCESS finishes it.)
    pub(crate) async fn capture(
        &self,
        r: VendRecord,
        resumed: bool,
    ) -> Result<VendRecord, VendError> {
        if r.method == PayMethod::Cash {
            // The price was taken from the credit when the vend was authorized.
            return self.end(r, VendState::Completed).await;
        }
        let Some(terminal) = self.devices.cashless.as_ref() else {
            return Err(VendError::OutcomeUnknown);
        };
        let key = PaymentKey(r.key.clone());
        if let Ok(Ok(())) = tokio::time::timeout(self.timeouts.call, terminal.complete(&key)).await
        {
            return self.end(r, VendState::Completed).await;
        }
        match self.ask_payment(&r.key).await {
            Some(Asked::Approved(_)) => {
                // Completing a completed key succeeds: one more try is safe.
                match tokio::time::timeout(self.timeouts.call, terminal.complete(&key)).await {
                    Ok(Ok(())) => self.end(r, VendState::Completed).await,
                    _ => Err(VendError::OutcomeUnknown),
                }
            }
            Some(Asked::Declined(reason) | Asked::NotCharged(reason)) => {
                let mut r = r;
                r.capture_in_doubt = resumed;
                r.fail(
                    format!("the product dropped but the reader holds no charge: {reason}"),
                    Some(VendFault::Payment),
                );
                self.end(r, VendState::Unpaid).await
            }
            None => Err(VendError::OutcomeUnknown),
        }
    }

    /// VEND FAILURE under the key: the reader gives the held money back.
    pub(crate) async fn void(&self, r: VendRecord) -> Result<VendRecord, VendError> {
        if r.method == PayMethod::Cash {
            // The price goes back to the credit in the write that ends the vend.
            return self.end(r, VendState::Failed).await;
        }
        let Some(terminal) = self.devices.cashless.as_ref() else {
            return Err(VendError::OutcomeUnknown);
        };
        let key = PaymentKey(r.key.clone());
        if let Ok(Ok(())) = tokio::time::timeout(self.timeouts.call, terminal.void(&key)).await {
            return self.end(r, VendState::Failed).await;
        }
        match self.ask_payment(&r.key).await {
            Some(Asked::Approved(_)) | None => Err(VendError::OutcomeUnknown),
            Some(Asked::Declined(_) | Asked::NotCharged(_)) => self.end(r, VendState::Failed).await,
        }
    }

    /// Write the open record (before a device call).
    pub(crate) async fn persist(&self, r: &VendRecord) -> Result<(), VendError> {
        let rec = r.clone();
        self.store()
            .write(move |tx| {
                put_open(tx, &rec);
                Ok::<(), StoreError>(())
            })
            .await??;
        Ok(())
    }

    /// Move to the final state `to` and write the end of the vend (with its sale when
    /// completed).
    pub(crate) async fn end(
        &self,
        mut r: VendRecord,
        to: VendState,
    ) -> Result<VendRecord, VendError> {
        r.transition(to, now())?;
        let sale = match to {
            VendState::Completed => Some(self.sale_of(&r)?),
            _ => None,
        };
        let rec = r.clone();
        self.store()
            .write(move |tx| {
                if records::finish(tx, &rec, sale.as_ref())? && rec.method == PayMethod::Cash {
                    super::cash::end_of_vend(tx, &rec)?;
                }
                Ok::<(), StoreError>(())
            })
            .await??;
        tracing::info!(
            vend = %r.id,
            slot = %r.slot,
            state = r.state().name(),
            failure = r.failure.as_deref(),
            "Vend ended"
        );
        Ok(r)
    }

    /// The sale a completed vend records.
    fn sale_of(&self, r: &VendRecord) -> Result<Sale, VendError> {
        let internal = |e: String| VendError::Internal(e);
        let key = IdempotencyKey::parse(&r.key).map_err(|e| internal(e.to_string()))?;
        let terminal = TerminalId::parse(VENDING_TERMINAL).map_err(|e| internal(e.to_string()))?;
        let (method, payment_key, card) = match r.method {
            PayMethod::Cashless => (TenderMethod::Card, Some(r.key.clone()), r.card.clone()),
            PayMethod::Cash => (TenderMethod::Cash, None, None),
        };
        let tendered = r.cash_tendered.filter(|_| r.method == PayMethod::Cash);
        let change = tendered.map_or(crate::domain::money::Money::zero(), |t| {
            crate::domain::money::Money(t.minor() - r.price.minor())
        });
        let tenders = vec![Tender {
            method,
            amount: r.price,
            tendered,
            payment_key,
            card,
            refund_of: None,
        }];
        let at = now();
        let receipt = self
            .sales
            .receipt(r.id, &terminal, at, &r.cart, &tenders, change);
        Ok(Sale {
            id: r.id,
            idempotency_key: key,
            terminal_id: terminal,
            status: SaleStatus::Completed,
            created_at: r.created_at,
            completed_at: at,
            cart: r.cart.clone(),
            tenders,
            change,
            receipt,
            customer_id: None,
            loyalty: None,
        })
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
