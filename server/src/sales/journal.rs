//! Writer jobs: everything a sale, refund or stock change writes, in one atomic group.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::SellError;
use super::idempotency::{IdemOutcome, IdemRecord, IdemState};
use crate::domain::pricing::Quantity;
use crate::domain::sale::{IdempotencyKey, Movement, MovementKind, PaymentRecord, Refund, Sale};
use crate::store::outbox::{OutboxKind, put_outbox};
use crate::store::{StoreError, Tx, from_json, keys, to_json};

/// A checkout with card tenders, waiting on the terminal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutPending {
    /// The sale as it will be recorded (card details filled in as they come).
    pub sale: Sale,
    /// Fingerprint of the request.
    pub fingerprint: String,
    /// One record per card tender, in tender order.
    pub payments: Vec<PaymentRecord>,
    /// Set when the checkout is being unwound (a decline, or a terminal that could
    /// not be reached): approved payments are voided first, then this happens. Set
    /// once: the first decision stands ([`CheckoutPending::abort`]).
    aborting: Option<Abort>,
}

impl CheckoutPending {
    /// A checkout about to call the terminal, not being unwound.
    pub fn new(sale: Sale, fingerprint: String, payments: Vec<PaymentRecord>) -> Self {
        CheckoutPending {
            sale,
            fingerprint,
            payments,
            aborting: None,
        }
    }

    /// How the checkout ends, once it is being unwound.
    pub fn aborting(&self) -> Option<&Abort> {
        self.aborting.as_ref()
    }

    /// Unwind the checkout, ending as `then` unless an earlier decision was made;
    /// returns the decision that stands.
    pub fn abort(&mut self, then: Abort) -> Abort {
        self.aborting.get_or_insert(then).clone()
    }
}

/// A refund with card tenders, waiting on the terminal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefundPending {
    /// The refund as it will be recorded.
    pub refund: Refund,
    /// Fingerprint of the request.
    pub fingerprint: String,
    /// One record per card tender, in tender order.
    pub payments: Vec<PaymentRecord>,
}

/// A checkout or refund waiting on the payment terminal, persisted before each call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Short-lived and few (one per card payment in flight): boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum Pending {
    /// A checkout with card tenders.
    Checkout(CheckoutPending),
    /// A refund with card tenders.
    Refund(RefundPending),
}

/// How an unwound checkout ends once its approved payments are voided.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "then", rename_all = "snake_case")]
pub enum Abort {
    /// Record this answer under the key (e.g. a decline: a retry gets the decline).
    Answer {
        /// The answer.
        outcome: IdemOutcome,
    },
    /// Forget the key: nothing was charged, so a retry may run the checkout again.
    Release,
}

impl Pending {
    /// The sale or refund id the record is stored under.
    pub fn id(&self) -> Uuid {
        match self {
            Pending::Checkout(c) => c.sale.id,
            Pending::Refund(r) => r.refund.id,
        }
    }
}

/// Read an idempotency record.
pub fn idem_get(
    tx: &Tx<'_>,
    scope: &str,
    key: &IdempotencyKey,
) -> Result<Option<IdemRecord>, StoreError> {
    tx.get(&keys::idem(scope, key.as_str()))?
        .map(|v| from_json(&v, "idempotency record"))
        .transpose()
}

/// Write an idempotency record.
pub fn idem_put(tx: &mut Tx<'_>, scope: &str, key: &IdempotencyKey, rec: &IdemRecord) {
    tx.put(keys::idem(scope, key.as_str()), to_json(rec));
}

/// Forget a key: a retry with it runs the request again.
pub fn idem_remove(tx: &mut Tx<'_>, scope: &str, key: &IdempotencyKey) {
    tx.remove(keys::idem(scope, key.as_str()));
}

/// What an already-used key means for a request with `fingerprint`: the id of the
/// record it made (the caller serves that record as a replay), or the error to answer:
/// `KeyReused` for another request, `InProgress` when unfinished, or the stored
/// failure, replayed. A count that moved nothing ([`IdemOutcome::Unchanged`]) made no
/// record: its caller checks [`idem_unchanged`] first; anyone else is told the key was
/// used for another request.
pub fn idem_existing(rec: &IdemRecord, fingerprint: &str) -> Result<Uuid, SellError> {
    if rec.fingerprint != fingerprint {
        return Err(SellError::KeyReused);
    }
    match &rec.state {
        IdemState::InProgress { .. } => Err(SellError::InProgress),
        IdemState::Done {
            outcome: IdemOutcome::Failed { failure, message },
        } => Err(SellError::Replayed {
            failure: *failure,
            message: message.clone(),
        }),
        IdemState::Done {
            outcome:
                IdemOutcome::Sale { id } | IdemOutcome::Refund { id } | IdemOutcome::Movement { id },
        } => Ok(*id),
        IdemState::Done {
            outcome: IdemOutcome::Unchanged,
        } => Err(SellError::KeyReused),
    }
}

/// Whether `rec` is this request's count that found the stock as recorded.
pub fn idem_unchanged(rec: &IdemRecord, fingerprint: &str) -> bool {
    rec.fingerprint == fingerprint
        && matches!(
            rec.state,
            IdemState::Done {
                outcome: IdemOutcome::Unchanged
            }
        )
}

/// Change stock and journal the movement (with its outbox entry).
pub fn move_stock(
    tx: &mut Tx<'_>,
    sku: &str,
    delta: i64,
    kind: MovementKind,
    reason: Option<String>,
    reference: Option<Uuid>,
    at: OffsetDateTime,
) -> Result<Movement, StoreError> {
    let key = keys::stock(sku);
    let before = match tx.get(&key)? {
        Some(v) => keys::decode_i64(&v)?,
        None => 0,
    };
    let after = before.saturating_add(delta);
    tx.put(key, after.to_be_bytes().to_vec());
    let m = Movement {
        id: crate::domain::ids::next(),
        sku: sku.to_owned(),
        delta,
        kind,
        reason,
        reference,
        stock_after: after,
        at,
    };
    let json = to_json(&m);
    let _ = put_outbox(tx, OutboxKind::InventoryMovement, m.id, at, &json);
    tx.put(keys::movement(m.id), json);
    tx.put(keys::sku_movement(sku, m.id), Vec::new());
    Ok(m)
}

fn qty(q: &Quantity) -> i64 {
    match q {
        Quantity::Units(n) | Quantity::Grams(n) => i64::from(*n),
    }
}

/// Record a sale: the sale, its stock movements, its outbox entries and its
/// idempotency answer. The caller has checked the key.
pub fn record_sale(tx: &mut Tx<'_>, sale: &Sale, fingerprint: &str) -> Result<(), StoreError> {
    let json = to_json(sale);
    let record = json.clone();
    tx.put(keys::sale(sale.id), json);
    for line in &sale.cart.lines {
        // A sale is never refused for stock: the shelf is the truth; the count may go
        // negative until the next stock count corrects it.
        move_stock(
            tx,
            line.sku.as_str(),
            -qty(&line.quantity),
            MovementKind::Sale,
            None,
            Some(sale.id),
            sale.completed_at,
        )?;
    }
    let _ = put_outbox(tx, OutboxKind::Sale, sale.id, sale.completed_at, &record);
    crate::loyalty::ledger::record(tx, sale)?;
    idem_put(
        tx,
        "checkout",
        &sale.idempotency_key,
        &IdemRecord {
            fingerprint: fingerprint.to_owned(),
            state: IdemState::Done {
                outcome: IdemOutcome::Sale { id: sale.id },
            },
        },
    );
    tx.remove(keys::pending(sale.id));
    Ok(())
}

/// Record a refund with its stock movements and outbox entries.
pub fn record_refund(
    tx: &mut Tx<'_>,
    refund: &Refund,
    scope: &str,
    fingerprint: &str,
) -> Result<(), StoreError> {
    let json = to_json(refund);
    let record = json.clone();
    tx.put(keys::refund(refund.id), json);
    tx.put(keys::sale_refund(refund.sale_id, refund.id), Vec::new());
    for line in &refund.lines {
        move_stock(
            tx,
            &line.sku,
            qty(&line.quantity),
            MovementKind::Refund,
            None,
            Some(refund.id),
            refund.created_at,
        )?;
    }
    let _ = put_outbox(
        tx,
        OutboxKind::Refund,
        refund.id,
        refund.created_at,
        &record,
    );
    let fp = fingerprint.to_owned();
    idem_put(
        tx,
        scope,
        &refund.idempotency_key,
        &IdemRecord {
            fingerprint: fp,
            state: IdemState::Done {
                outcome: IdemOutcome::Refund { id: refund.id },
            },
        },
    );
    tx.remove(keys::pending(refund.id));
    Ok(())
}

/// Write a pending record.
pub fn pending_put(tx: &mut Tx<'_>, p: &Pending) {
    tx.put(keys::pending(p.id()), to_json(p));
}

/// Every pending record, as the writer sees them.
pub fn pending_all(tx: &Tx<'_>) -> Result<Vec<Pending>, StoreError> {
    tx.scan_prefix(keys::PENDING)?
        .iter()
        .map(|(_, v)| from_json(v, "pending payment"))
        .collect()
}

/// Refunds of a sale, as the writer sees them.
pub fn refunds_of(tx: &Tx<'_>, sale: Uuid) -> Result<Vec<Refund>, StoreError> {
    let mut out = Vec::new();
    for (k, _) in tx.scan_prefix(&keys::sale_refunds(sale))? {
        let id = keys::uuid_suffix(&k)?;
        if let Some(v) = tx.get(&keys::refund(id))? {
            out.push(from_json(&v, "refund")?);
        }
    }
    Ok(out)
}
