//! Checkout: from a terminal's request to a durable sale.
//!
//! Cash-only checkouts are one atomic writer job: key check, sale, stock movements,
//! outbox entries and the key's answer, flushed together. Checkouts with card tenders
//! first persist a pending record (key in progress, payment `Authorizing`), then call
//! the terminal, persisting each payment's state before each call, and record the sale
//! only once every card is approved. The terminal work runs in its own task, so a
//! terminal that disconnects mid-payment cannot cut the state machine short.

use outpost_peripherals::payment::{KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest};
use outpost_peripherals::{DeviceError, ErrorKind};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::idempotency::{self, IdemOutcome, IdemRecord, IdemState};
use super::journal::{self, Abort, CheckoutPending, Pending};
use super::{Sales, SellError};
use crate::devices::receipts::{ReceiptQueue, Reservation};
use crate::domain::gtin::Gtin;
use crate::domain::money::Money;
use crate::domain::pricing::{CartItem, PricedCart, Quantity, price_cart};
use crate::domain::product::SoldBy;
use crate::domain::receipt::{Receipt, ReceiptTender};
use crate::domain::sale::{
    CardSummary, PaymentKind, PaymentRecord, PaymentState, Sale, SaleStatus, Tender, TenderMethod,
    TenderRequest, allocate_tenders, card_payments,
};
use crate::domain::variable_measure;

/// Most lines one cart may have.
pub const MAX_LINES: usize = 500;

/// One line as a terminal sends it: a product by SKU or barcode, and how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// The product's SKU (or give `barcode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// A barcode of the product (or give `sku`). A weight label of the store's scales
    /// (`[[store.variable_measure]]`) carries the weight: give no quantity then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    /// Units, for products sold by the piece (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Grams, for products sold by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_grams: Option<u32>,
    /// Checkout only: the id of the scale to weigh a product sold by weight on. The
    /// checkout takes the scale's stable weight at that moment (instead of
    /// `weight_grams`), and is refused while the weight moves or the scale cannot
    /// weigh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
}

/// Where checkout weighs lines that name a scale (the device registry).
#[async_trait::async_trait]
pub trait Weigher: Send + Sync {
    /// The stable weight on `scale` now, in grams.
    async fn stable_grams(&self, scale: &str) -> Result<u32, crate::devices::inputs::WeighError>;
}

#[async_trait::async_trait]
impl Weigher for crate::devices::Registry {
    async fn stable_grams(&self, scale: &str) -> Result<u32, crate::devices::inputs::WeighError> {
        self.weigh(scale).await
    }
}

/// A cart to price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartRequest {
    /// The lines.
    pub lines: Vec<LineRequest>,
}

/// A checkout as a terminal sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The lines.
    pub lines: Vec<LineRequest>,
    /// A single tender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<TenderRequest>,
    /// Several tenders (split payment). Give `payment` or `payments`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<TenderRequest>>,
    /// The cashier checked the customer's age (required when a line is age-restricted).
    #[serde(default)]
    pub age_verified: bool,
}

/// A finished checkout.
#[derive(Debug, Clone)]
pub struct CheckoutResult {
    /// The recorded sale.
    pub sale: Sale,
    /// True when this is the answer to an earlier request with the same key.
    pub replayed: bool,
}

const SCOPE: &str = "checkout";

impl Sales {
    /// The product line `i` names, and the weight its barcode carries when it is a
    /// weight label of the store's scales (a GS1 variable-measure code).
    fn line_product(
        &self,
        catalog: &crate::store::catalog::Catalog,
        i: usize,
        l: &LineRequest,
    ) -> Result<(crate::domain::product::Product, Option<u32>), SellError> {
        let field = |f: &str| Some(format!("lines[{i}].{f}"));
        Ok(match (&l.sku, &l.barcode) {
            (Some(sku), None) => (
                catalog
                    .product(sku)?
                    .ok_or_else(|| SellError::UnknownProduct {
                        line: i,
                        what: format!("SKU {sku}"),
                    })?,
                None,
            ),
            (None, Some(code)) => {
                let gtin = Gtin::parse(code).map_err(|e| {
                    SellError::invalid(
                        "invalid_barcode",
                        format!("line {i}: {e}"),
                        field("barcode"),
                    )
                })?;
                let measured = variable_measure::decode(&self.config().variable_measure, &gtin);
                let key = measured.as_ref().map_or(&gtin, |m| &m.base);
                let unknown = || SellError::UnknownProduct {
                    line: i,
                    what: match &measured {
                        Some(m) => format!("weight label {code} (item barcode {})", m.base),
                        None => format!("barcode {code}"),
                    },
                };
                let sku = catalog
                    .sku_by_gtin14(&key.to_gtin14())?
                    .ok_or_else(unknown)?;
                let product = catalog.product(&sku)?.ok_or_else(unknown)?;
                let grams = match measured {
                    None => None,
                    Some(_) if product.sold_by != SoldBy::Weight => {
                        return Err(SellError::invalid(
                            "invalid_barcode",
                            format!(
                                "line {i}: {code} is a weight label but {} is sold by the piece",
                                product.sku
                            ),
                            field("barcode"),
                        ));
                    }
                    Some(m) if m.grams == 0 => {
                        return Err(SellError::invalid(
                            "invalid_barcode",
                            format!("line {i}: the weight label {code} says 0 g"),
                            field("barcode"),
                        ));
                    }
                    Some(m) => Some(m.grams),
                };
                (product, grams)
            }
            _ => {
                return Err(SellError::invalid(
                    "invalid_line",
                    format!("line {i}: give exactly one of sku or barcode"),
                    Some(format!("lines[{i}]")),
                ));
            }
        })
    }

    /// Resolve lines to products and quantities.
    pub fn cart_items(&self, lines: &[LineRequest]) -> Result<Vec<CartItem>, SellError> {
        if lines.is_empty() {
            return Err(SellError::invalid(
                "empty_cart",
                "a cart needs at least one line",
                Some("lines".into()),
            ));
        }
        if lines.len() > MAX_LINES {
            return Err(SellError::invalid(
                "too_many_lines",
                format!("a cart may have at most {MAX_LINES} lines"),
                Some("lines".into()),
            ));
        }
        let catalog = self.store.catalog();
        let mut items = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let field = |f: &str| Some(format!("lines[{i}].{f}"));
            if l.scale.is_some() {
                return Err(SellError::invalid(
                    "scale_needs_checkout",
                    format!(
                        "line {i}: a line is weighed on its scale at checkout; to price it, give weight_grams"
                    ),
                    field("scale"),
                ));
            }
            let (product, label_grams) = self.line_product(&catalog, i, l)?;
            if product.currency != self.config().currency {
                return Err(SellError::invalid(
                    "currency_mismatch",
                    format!(
                        "line {i}: product is priced in {}, the store sells in {}",
                        product.currency,
                        self.config().currency
                    ),
                    field("sku"),
                ));
            }
            if label_grams.is_some() && (l.quantity.is_some() || l.weight_grams.is_some()) {
                return Err(SellError::invalid(
                    "invalid_quantity",
                    format!(
                        "line {i}: the weight label carries the weight: give neither quantity nor weight_grams"
                    ),
                    field("weight_grams"),
                ));
            }
            let quantity = match (product.sold_by, l.quantity, l.weight_grams.or(label_grams)) {
                (SoldBy::Each, q, None) => Quantity::Units(q.unwrap_or(1)),
                (SoldBy::Weight, None, Some(g)) => Quantity::Grams(g),
                (SoldBy::Each, _, Some(_)) => {
                    return Err(SellError::invalid(
                        "invalid_quantity",
                        format!(
                            "line {i}: {} is sold by the piece: give quantity, not weight_grams",
                            product.sku
                        ),
                        field("weight_grams"),
                    ));
                }
                (SoldBy::Weight, _, _) => {
                    return Err(SellError::invalid(
                        "weight_required",
                        format!(
                            "line {i}: {} is sold by weight: give weight_grams",
                            product.sku
                        ),
                        field("weight_grams"),
                    ));
                }
            };
            items.push(CartItem { product, quantity });
        }
        Ok(items)
    }

    /// Price a cart without selling it.
    pub fn price(&self, lines: &[LineRequest]) -> Result<PricedCart, SellError> {
        let items = self.cart_items(lines)?;
        Ok(price_cart(
            &items,
            &self.store.promotions(),
            &self.config().tax,
            OffsetDateTime::now_utc(),
        )?)
    }

    /// Sell. `key` is the terminal's `Idempotency-Key`; a retry with the same key and
    /// request returns the first sale with `replayed` set.
    pub async fn checkout(
        &self,
        key: &str,
        terminal: &str,
        req: CheckoutRequest,
    ) -> Result<CheckoutResult, SellError> {
        self.checkout_weighed(key, terminal, req, None).await
    }

    /// Lines naming a scale get the scale's stable weight now; the others are kept.
    /// Refused (nothing recorded) when a scale cannot give one.
    async fn weigh_lines(
        &self,
        lines: Vec<LineRequest>,
        weigher: Option<&dyn Weigher>,
    ) -> Result<Vec<LineRequest>, SellError> {
        let mut out = Vec::with_capacity(lines.len());
        for (i, mut l) in lines.into_iter().enumerate() {
            let Some(scale) = l.scale.take() else {
                out.push(l);
                continue;
            };
            let field = Some(format!("lines[{i}].scale"));
            if l.weight_grams.is_some() || l.quantity.is_some() {
                return Err(SellError::invalid(
                    "invalid_quantity",
                    format!("line {i}: give scale or weight_grams/quantity, not both"),
                    field,
                ));
            }
            // The product must be sold by weight before anything is weighed.
            let (product, label_grams) = self.line_product(&self.store.catalog(), i, &l)?;
            if label_grams.is_some() {
                return Err(SellError::invalid(
                    "invalid_quantity",
                    format!("line {i}: the weight label carries the weight: name no scale"),
                    field,
                ));
            }
            if product.sold_by != SoldBy::Weight {
                return Err(SellError::invalid(
                    "not_sold_by_weight",
                    format!(
                        "line {i}: {} is sold by the piece, not weighed on a scale",
                        product.sku
                    ),
                    field,
                ));
            }
            let Some(w) = weigher else {
                return Err(SellError::Device {
                    status: 503,
                    code: "device_unavailable",
                    message: format!("line {i}: no scale can be used here"),
                    field,
                });
            };
            let grams = w
                .stable_grams(&scale)
                .await
                .map_err(|e| SellError::Device {
                    status: e.status,
                    code: e.code,
                    message: format!("line {i}: {}", e.message),
                    field: field.clone(),
                })?;
            l.weight_grams = Some(grams);
            out.push(l);
        }
        Ok(out)
    }

    /// [`checkout`](Self::checkout), weighing lines that name a scale on `weigher`.
    pub async fn checkout_weighed(
        &self,
        key: &str,
        terminal: &str,
        req: CheckoutRequest,
        weigher: Option<&dyn Weigher>,
    ) -> Result<CheckoutResult, SellError> {
        if !idempotency::valid_key(key) {
            return Err(SellError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                Some("Idempotency-Key".into()),
            ));
        }
        let claim = self.claim(format!("{SCOPE}\0{key}"))?;
        let fingerprint = idempotency::fingerprint(terminal, &req);
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
        let id = Uuid::now_v7();
        let now = OffsetDateTime::now_utc();
        let mut payments = card_payments(id, &mut tenders, PaymentKind::Charge);
        let sale = Sale {
            id,
            idempotency_key: key.to_owned(),
            terminal_id: terminal.to_owned(),
            status: SaleStatus::Completed,
            created_at: now,
            completed_at: now,
            receipt: self.receipt(id, terminal, now, &cart, &tenders, change),
            cart,
            tenders,
            change,
        };
        if payments.is_empty() {
            let fp = fingerprint.clone();
            let k = key.to_owned();
            let place = self.reserve_receipt(id);
            let place2 = place.clone();
            let written = self
                .store
                .write(move |tx| {
                    if let Some(rec) = journal::idem_get(tx, SCOPE, &k)? {
                        return Ok(Err(rec));
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
                Err(rec) => self.answer_existing(&rec, &fingerprint),
            };
        }
        if self.terminal.is_none() {
            return Err(SellError::TerminalUnavailable(
                "no payment terminal is configured".into(),
            ));
        }
        payments[0].state = PaymentState::Authorizing;
        let pending = CheckoutPending {
            sale,
            fingerprint: fingerprint.clone(),
            payments,
            aborting: None,
        };
        let (k, fp, p) = (
            key.to_owned(),
            fingerprint.clone(),
            Pending::Checkout(pending.clone()),
        );
        let begun = self
            .store
            .write(move |tx| {
                if let Some(rec) = journal::idem_get(tx, SCOPE, &k)? {
                    return Ok(Err(rec));
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
        if let Err(rec) = begun.map_err(SellError::Store)? {
            return self.answer_existing(&rec, &fingerprint);
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
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<CheckoutResult>, SellError> {
        let Some(raw) = self
            .store
            .journal_get(&crate::store::keys::idem(SCOPE, key))?
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

    pub(crate) fn receipt(
        &self,
        id: Uuid,
        terminal: &str,
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
                },
                amount: t.tendered.unwrap_or(t.amount),
                card_last4: t.card.as_ref().and_then(|c| c.last4.clone()),
                auth_code: t.card.as_ref().map(|c| c.auth_code.clone()),
            })
            .collect();
        let config = self.config();
        let mut receipt = Receipt::from_priced(
            config.store_name.clone(),
            id.to_string(),
            terminal,
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
    fn reserve_receipt(&self, id: Uuid) -> Option<Reservation> {
        self.receipts.as_ref()?.reserve(id)
    }

    fn release_receipt(&self, place: Option<&Reservation>) {
        if let (Some(q), Some(r)) = (&self.receipts, place) {
            q.release(r);
        }
    }

    pub(crate) async fn persist(&self, p: Pending) -> Result<(), SellError> {
        self.store
            .write(move |tx| {
                journal::pending_put(tx, &p);
                Ok::<(), SellError>(())
            })
            .await??;
        Ok(())
    }

    /// The live card flow: authorize each card tender in turn, persisting each
    /// payment's state before each call. The first payment is already persisted as
    /// `Authorizing`.
    async fn drive_card_checkout(&self, mut c: CheckoutPending) -> Result<Sale, SellError> {
        let Some(terminal) = self.terminal.clone() else {
            return Err(SellError::TerminalUnavailable(
                "no payment terminal is configured".into(),
            ));
        };
        let currency = c.sale.cart.currency.code().to_owned();
        for i in 0..c.payments.len() {
            if c.payments[i].state == PaymentState::Pending {
                c.payments[i]
                    .transition(PaymentState::Authorizing)
                    .map_err(internal)?;
                self.persist(Pending::Checkout(c.clone())).await?;
            }
            let req = PaymentRequest {
                key: PaymentKey(c.payments[i].key.clone()),
                amount_minor: c.payments[i].amount.0,
                currency: currency.clone(),
            };
            let answer =
                tokio::time::timeout(self.config().payment_timeout, terminal.authorize(&req)).await;
            // Our own timeout: the terminal may still be waiting for the card.
            let timed_out = answer.is_err();
            let asked = match answer {
                Ok(Ok(Outcome::Approved(a))) => Some(Asked::Approved(a)),
                Ok(Ok(Outcome::Declined { reason })) => Some(Asked::Declined(reason)),
                // The terminal never took the command: nothing was charged.
                Ok(Err(e)) if not_delivered(&e) => Some(Asked::NotCharged(e.to_string())),
                Ok(Err(_)) | Err(_) => {
                    c.payments[i]
                        .transition(PaymentState::InDoubt)
                        .map_err(internal)?;
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
                    match aborted {
                        Some(a) => Some(a),
                        None => self.ask_until_known(&req.key).await,
                    }
                }
            };
            match asked {
                None => return Err(SellError::OutcomeUnknown),
                Some(Asked::Approved(a)) => {
                    let card = CardSummary {
                        auth_code: a.auth_code,
                        brand: a.brand,
                        last4: a.last4,
                    };
                    approve(&mut c.sale, &mut c.payments[i], card);
                }
                Some(Asked::NotCharged(reason)) => {
                    c.payments[i].state = PaymentState::Declined;
                    c.payments[i].decline_reason = Some(reason.clone());
                    self.unwind(c, Abort::Release).await?;
                    return Err(SellError::TerminalUnavailable(format!(
                        "{reason}; nothing was charged, retry"
                    )));
                }
                Some(Asked::Declined(reason)) => {
                    c.payments[i].state = PaymentState::Declined;
                    c.payments[i].decline_reason = Some(reason.clone());
                    let outcome = IdemOutcome::Failed {
                        status: 402,
                        code: "payment_declined".into(),
                        message: format!("payment declined: {reason}"),
                    };
                    self.unwind(c, Abort::Answer { outcome }).await?;
                    return Err(SellError::Declined(reason));
                }
            }
        }
        self.finish_checkout(c).await
    }

    /// Ask the terminal about a key a few times, for the live path. `None`: still unknown.
    async fn ask_until_known(&self, key: &PaymentKey) -> Option<Asked> {
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..4 {
            if let Some(o) = self.ask(key).await {
                return Some(o);
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        None
    }

    /// Ask the terminal once what happened under `key`. `None` when it cannot say yet.
    pub(crate) async fn ask(&self, key: &PaymentKey) -> Option<Asked> {
        let terminal = self.terminal.as_ref()?;
        match tokio::time::timeout(self.config().payment_timeout, terminal.status(key)).await {
            Ok(Ok(status)) => asked_from(status),
            Ok(Err(_)) | Err(_) => None,
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
            let outcome = IdemOutcome::Failed {
                status: 402,
                code: "payment_declined".into(),
                message: format!("payment declined: {reason}"),
            };
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
            pay.transition(PaymentState::Completed).map_err(internal)?;
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
        let Some(terminal) = self.terminal.clone() else {
            return Ok(true);
        };
        if !c
            .payments
            .iter()
            .any(|p| p.state == PaymentState::Authorized)
        {
            return Ok(true);
        }
        self.persist(Pending::Checkout(c.clone())).await?;
        for i in 0..c.payments.len() {
            if c.payments[i].state != PaymentState::Authorized {
                continue;
            }
            let key = PaymentKey(c.payments[i].key.clone());
            match tokio::time::timeout(self.config().payment_timeout, terminal.complete(&key)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(PaymentError::Illegal(why))) => match self.ask(&key).await {
                    // Completed meanwhile, or the refusal was about something else.
                    Some(Asked::Approved(_)) => {}
                    Some(Asked::Declined(reason)) | Some(Asked::NotCharged(reason)) => {
                        tracing::warn!(sale_id = %c.sale.id, payment_key = %key, %why, "The terminal refused to complete a payment it had approved.");
                        c.payments[i].state = PaymentState::Declined;
                        c.payments[i].decline_reason = Some(reason);
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
        let then = c.aborting.get_or_insert(then).clone();
        self.persist(Pending::Checkout(c.clone())).await?;
        // Without a terminal nothing can be voided: the record stays for recovery.
        let mut all_void = self.terminal.is_some()
            || c.payments
                .iter()
                .all(|x| x.state != PaymentState::Authorized);
        if let Some(terminal) = self.terminal.clone() {
            for pay in c
                .payments
                .iter_mut()
                .filter(|x| x.state == PaymentState::Authorized)
            {
                match tokio::time::timeout(
                    self.config().payment_timeout,
                    terminal.void(&PaymentKey(pay.key.clone())),
                )
                .await
                {
                    Ok(Ok(())) => pay.transition(PaymentState::Voided).map_err(internal)?,
                    other => {
                        tracing::warn!(sale_id = %c.sale.id, payment_key = %pay.key, result = ?other, "Failed to void a payment; recovery will retry");
                        all_void = false;
                    }
                }
            }
        }
        if !all_void
            || c.payments
                .iter()
                .any(|x| matches!(x.state, PaymentState::Authorizing | PaymentState::InDoubt))
        {
            return self.persist(Pending::Checkout(c)).await;
        }
        let id = c.sale.id;
        let key = c.sale.idempotency_key;
        let fingerprint = c.fingerprint;
        self.store
            .write(move |tx| {
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
                    Abort::Release => tx.remove(crate::store::keys::idem(SCOPE, &key)),
                }
                tx.remove(crate::store::keys::pending(id));
                Ok::<(), SellError>(())
            })
            .await??;
        Ok(())
    }
}

/// What a key's status says, or `None` while the terminal is still at it.
fn asked_from(status: KeyStatus) -> Option<Asked> {
    match status {
        KeyStatus::Done(Outcome::Approved(a)) => Some(Asked::Approved(a)),
        KeyStatus::Done(Outcome::Declined { reason }) => Some(Asked::Declined(reason)),
        KeyStatus::Unknown => Some(Asked::NotCharged(
            "the terminal never received the payment".into(),
        )),
        KeyStatus::Reversed => Some(Asked::NotCharged("the payment was reversed".into())),
        KeyStatus::InProgress => None,
    }
}

fn internal(e: impl std::fmt::Display) -> SellError {
    SellError::Internal(e.to_string())
}

/// What the terminal says about a key once asked.
#[derive(Debug, Clone)]
pub(crate) enum Asked {
    /// Money moved.
    Approved(outpost_peripherals::payment::Approval),
    /// The terminal declined it.
    Declined(String),
    /// The terminal never took it, or it was reversed: no money moved.
    NotCharged(String),
}

impl Asked {
    /// As a terminal outcome: anything but an approval moved no money.
    pub(crate) fn into_outcome(self) -> Outcome {
        match self {
            Asked::Approved(a) => Outcome::Approved(a),
            Asked::Declined(reason) | Asked::NotCharged(reason) => Outcome::Declined { reason },
        }
    }
}

/// Mark a card tender approved and put its card summary on the sale's tender.
pub(crate) fn approve(sale: &mut Sale, pay: &mut PaymentRecord, card: CardSummary) {
    pay.state = PaymentState::Authorized;
    pay.card = Some(card.clone());
    if let Some(t) = sale
        .tenders
        .iter_mut()
        .find(|t| t.payment_key.as_deref() == Some(pay.key.as_str()))
    {
        t.card = Some(card);
    }
}

/// Errors that prove the terminal never acted on the command.
pub(crate) fn not_delivered(e: &PaymentError) -> bool {
    // `Illegal` is not here: a terminal refusing a key may have used it before, so
    // that case is resolved by asking, like any other doubt.
    matches!(
        e.kind(),
        ErrorKind::Offline | ErrorKind::Busy | ErrorKind::NoHardware
    )
}
