//! Selling: checkout, refunds, and the payment state machine around the terminal.
//!
//! # Layout
//! - [`idempotency`]: idempotency records and request fingerprints.
//! - [`checkout`]: turning a terminal's request into a durable sale.
//! - [`refund`]: refunds of whole sales or chosen lines.
//! - [`exposure`]: the offline exposure kept against the terminal's store-and-forward
//!   queue, and the caps that refuse or void card and wallet tenders.
//! - [`terminal`]: asking the payment terminal what happened under a key, shared by
//!   checkouts, refunds and recovery.
//! - [`recovery`]: resolving every payment left unfinished (in doubt, or cut short by
//!   a crash) by asking the terminal about its key.
//! - [`journal`]: the writer jobs that record sales, refunds and stock movements with
//!   their outbox entries ([`crate::store::outbox`]) in one atomic group.
//!
//! The payment rule (invariant 3): a payment's state is written to disk *before* each
//! call to the terminal, and an unknown outcome is only ever resolved by asking the
//! terminal for the status of the same key, never by charging again.

pub mod checkout;
pub mod exposure;
pub mod idempotency;
pub mod journal;
pub mod qr;
pub mod recovery;
pub mod refund;
pub mod terminal;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_peripherals::payment::PaymentTerminal;
use serde::{Deserialize, Serialize};

use crate::domain::money::Currency;
use crate::domain::pricing::{PricingError, TaxConfig};
use crate::domain::sale::{IllegalTransition, RefundError, TenderError, TenderMethod};
use crate::store::{Store, StoreError};
use idempotency::Failure;
use journal::Pending;

/// What selling needs to know about the store.
#[derive(Debug, Clone)]
pub struct SalesConfig {
    /// Shown on receipts.
    pub store_name: String,
    /// The store's currency; every product must be in it.
    pub currency: Currency,
    /// Tax classes and whether prices include tax.
    pub tax: TaxConfig,
    /// How long to wait for the terminal before the outcome counts as unknown.
    pub payment_timeout: Duration,
    /// Receipt width in characters.
    pub receipt_width: usize,
    /// Lines printed under the store name (from HQ's store profile).
    pub receipt_header: Vec<String>,
    /// How to read the weight labels of the store's scales (none: every barcode is
    /// an ordinary one).
    pub variable_measure: Vec<crate::domain::variable_measure::VariableMeasureRule>,
}

/// Why a sale or refund could not be made, in the selling domain's terms; the HTTP
/// layer (`http/error.rs`) gives each its status and stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SellError {
    /// The request is not valid (the field says where).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Message for people.
        message: String,
        /// The field at fault.
        field: Option<String>,
    },
    /// A line names a product the catalog does not have.
    #[error("line {line}: no product with {what}")]
    UnknownProduct {
        /// 0-based line index.
        line: usize,
        /// "SKU X" or "barcode Y".
        what: String,
    },
    /// Pricing refused the cart.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// The tenders do not pay the total.
    #[error(transparent)]
    Tender(#[from] TenderError),
    /// The refund asks for more than is left.
    #[error(transparent)]
    Refund(#[from] RefundError),
    /// The key was used before for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    KeyReused,
    /// A request with this key is still being processed.
    #[error(
        "a request with this Idempotency-Key is still in progress; retry later with the same key"
    )]
    InProgress,
    /// The sale does not exist.
    #[error("no sale with id {0}")]
    SaleNotFound(String),
    /// The card was declined (final for this key).
    #[error("payment declined: {0}")]
    Declined(String),
    /// A card or wallet tender refused, or its offline approval voided, because the
    /// terminal cannot reach its acquirer and the offline exposure cap is reached.
    /// Nothing stays charged; cash still works.
    #[error("{0}")]
    OfflineLimit(String),
    /// The terminal's answer was lost and it could not be asked yet. The payment stays
    /// in doubt until the terminal answers; retry with the same key.
    #[error("the payment outcome is not known yet; retry with the same Idempotency-Key")]
    OutcomeUnknown,
    /// No terminal, or it could not be reached: nothing was charged.
    #[error("payment terminal unavailable: {0}")]
    TerminalUnavailable(String),
    /// A request that failed for good, answered again from its key's record.
    #[error("{message}")]
    Replayed {
        /// What failed.
        failure: Failure,
        /// The message of the first answer.
        message: String,
    },
    /// A line names a scale that cannot give a stable weight now (it moves, is over
    /// or under its range, cannot be reached, or is not a scale); nothing was recorded.
    #[error("line {line}: {}", .error.message)]
    Scale {
        /// 0-based line index.
        line: usize,
        /// What the device registry said.
        error: crate::devices::inputs::WeighError,
    },
    /// A line names a scale but this checkout has no scales to weigh on.
    #[error("line {line}: no scale can be used here")]
    NoScale {
        /// 0-based line index.
        line: usize,
    },
    /// A bug: a step the payment state machine does not allow. Nothing more was done.
    #[error("internal error: {0}")]
    Internal(String),
    /// Storage failed; the request had no effect unless a retry with the key says so.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<IllegalTransition> for SellError {
    /// A refused payment move is a bug: the request ends as an internal error, the
    /// pending record stays as it was last persisted, for recovery.
    fn from(e: IllegalTransition) -> Self {
        SellError::Internal(e.to_string())
    }
}

impl SellError {
    /// Shorthand for an invalid request.
    pub fn invalid(
        code: &'static str,
        message: impl Into<String>,
        field: impl Into<Option<String>>,
    ) -> Self {
        SellError::Invalid {
            code,
            message: message.into(),
            field: field.into(),
        }
    }
}

/// The selling service. Cheap to clone.
#[derive(Clone)]
pub struct Sales {
    pub(crate) store: Arc<Store>,
    pub(crate) terminal: Option<Arc<dyn PaymentTerminal>>,
    /// The QR payment provider's side in this unit (`qr` tenders), when configured.
    pub(crate) qr: Option<Arc<qr::QrPayments>>,
    /// Swapped whole when HQ pushes a tax table or store profile: a checkout loads it
    /// once and prices with one consistent version.
    pub(crate) config: Arc<arc_swap::ArcSwap<SalesConfig>>,
    /// The durable receipt queue every recorded sale puts its receipt in.
    pub(crate) receipts: Option<Arc<crate::devices::receipts::ReceiptQueue>>,
    /// Keys (and sale ids, for refunds) being processed by this process right now.
    /// A std mutex: held for a set insert or remove, never across an await.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// The offline exposure and its caps (none: no caps, for tests of other parts).
    pub(crate) exposure: Option<Arc<exposure::Exposure>>,
}

/// Removes a key from the in-flight set when the request is done, however it ends.
pub(crate) struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl Sales {
    /// A selling service over `store`, with an optional payment terminal.
    pub fn new(
        store: Arc<Store>,
        terminal: Option<Arc<dyn PaymentTerminal>>,
        config: SalesConfig,
    ) -> Self {
        Sales {
            store,
            terminal,
            qr: None,
            config: Arc::new(arc_swap::ArcSwap::from_pointee(config)),
            receipts: None,
            in_flight: Default::default(),
            exposure: None,
        }
    }

    /// Put the receipt of every sale recorded from now on in `queue`, in the same
    /// atomic write as the sale.
    pub fn with_receipts(mut self, queue: Arc<crate::devices::receipts::ReceiptQueue>) -> Self {
        self.receipts = Some(queue);
        self
    }

    /// Take `qr` tenders through `qr`.
    pub fn with_qr(mut self, qr: Arc<qr::QrPayments>) -> Self {
        self.qr = Some(qr);
        self
    }

    /// The QR payments of this unit, when configured.
    pub fn qr(&self) -> Option<&Arc<qr::QrPayments>> {
        self.qr.as_ref()
    }

    /// What moves the money of a tender paid by `method`: the payment terminal for
    /// cards, the QR provider for QR codes; `None` when the unit has none.
    pub(crate) fn terminal_for(&self, method: TenderMethod) -> Option<Arc<dyn PaymentTerminal>> {
        match method {
            TenderMethod::Qr => self.qr.clone().map(|q| q as Arc<dyn PaymentTerminal>),
            _ => self.terminal.clone(),
        }
    }

    /// How long to wait for `method`'s device before its outcome counts as unknown:
    /// a QR code waits for the customer's wallet as long as it is valid.
    pub(crate) fn timeout_for(&self, method: TenderMethod) -> Duration {
        match (method, &self.qr) {
            (TenderMethod::Qr, Some(q)) => q.wait_limit(),
            _ => self.config().payment_timeout,
        }
    }

    /// The configuration checkouts use now.
    pub fn config(&self) -> Arc<SalesConfig> {
        self.config.load_full()
    }

    /// Replace the tax configuration; the next checkout prices with it.
    pub fn set_tax(&self, tax: TaxConfig) {
        self.config.rcu(|c| {
            let mut next = SalesConfig::clone(c);
            next.tax = tax.clone();
            next
        });
    }

    /// Replace the store name and receipt header printed on the next receipts, and
    /// the offline exposure caps the next checkouts use.
    pub fn set_profile(&self, profile: &crate::domain::store_profile::StoreProfile) {
        self.config.rcu(|c| {
            let mut next = SalesConfig::clone(c);
            next.store_name = profile.name.clone();
            next.receipt_header = profile.receipt_header.clone();
            next
        });
        if let Some(x) = &self.exposure {
            x.set_pushed(profile.offline_caps);
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Write a pending record (a writer job): done before each call to the terminal.
    pub(crate) async fn persist(&self, p: Pending) -> Result<(), SellError> {
        self.store
            .write(move |tx| {
                journal::pending_put(tx, &p);
                Ok::<(), SellError>(())
            })
            .await??;
        Ok(())
    }

    pub(crate) fn claim(&self, key: String) -> Result<InFlight, SellError> {
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(SellError::InProgress);
        }
        Ok(InFlight {
            set: self.in_flight.clone(),
            key,
        })
    }
}

/// Summary of a sale's refunds, for the API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundSummary {
    /// Refund id.
    pub id: uuid::Uuid,
    /// Amount paid back.
    pub total: crate::domain::money::Money,
}
