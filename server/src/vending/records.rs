//! Vend records in the journal tree, and the writes that end a vend.
//!
//! | key | value |
//! |---|---|
//! | `v/v/` vend id | open [`VendRecord`] (written before every device call) |
//! | `v/d/` vend id | finished [`VendRecord`] (completed, failed or unpaid) |
//!
//! Ending a vend is one atomic write: the open record goes, the finished one is kept,
//! and a vend whose product dropped takes one unit off its slot (a slot movement)
//! with, when paid, the sale in the sales journal and its outbox entry.

use time::OffsetDateTime;
use uuid::Uuid;

use super::slots::{self, SlotMovementKind};
use crate::domain::sale::{MovementKind, Sale};
use crate::domain::vending::{VendRecord, VendState};
use crate::sales::journal::{move_stock, record_sale};
use crate::store::{Store, StoreError, Tx, from_json, to_json};

const OPEN: &[u8] = b"v/v/";
const DONE: &[u8] = b"v/d/";

fn key(prefix: &[u8], id: Uuid) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// Write an open vend (before a device call).
pub(crate) fn put_open(tx: &mut Tx<'_>, r: &VendRecord) {
    tx.put(key(OPEN, r.id), to_json(r));
}

/// Open vends, as the writer sees them.
pub(crate) fn open_tx(tx: &Tx<'_>) -> Result<Vec<VendRecord>, StoreError> {
    tx.scan_prefix(OPEN)?
        .iter()
        .map(|(_, v)| from_json(v, "vend record"))
        .collect()
}

/// Every vend a power cut or a lost answer left open, oldest first.
pub fn open_vends(store: &Store) -> Result<Vec<VendRecord>, StoreError> {
    store
        .journal_scan_from(OPEN, OPEN)
        .map(|kv| kv.and_then(|(_, v)| from_json(&v, "vend record")))
        .collect()
}

/// Every finished vend, oldest first.
pub fn finished(store: &Store) -> Result<Vec<VendRecord>, StoreError> {
    store
        .journal_scan_from(DONE, DONE)
        .map(|kv| kv.and_then(|(_, v)| from_json(&v, "vend record")))
        .collect()
}

/// The vend `id`, open or finished.
pub fn get(store: &Store, id: Uuid) -> Result<Option<VendRecord>, StoreError> {
    for prefix in [OPEN, DONE] {
        if let Some(v) = store.journal_get(&key(prefix, id))? {
            return from_json(&v, "vend record").map(Some);
        }
    }
    Ok(None)
}

/// The vend a request key started, with the fingerprint of that request.
pub fn by_request_key(
    store: &Store,
    key: &crate::domain::sale::IdempotencyKey,
) -> Result<Option<(String, Uuid)>, StoreError> {
    use crate::sales::idempotency::{IdemRecord, IdemState};
    let Some(v) = store.journal_get(&crate::store::keys::idem(super::VEND_SCOPE, key.as_str()))?
    else {
        return Ok(None);
    };
    let rec: IdemRecord = from_json(&v, "idempotency record")?;
    Ok(match rec.state {
        IdemState::InProgress { id } => Some((rec.fingerprint, id)),
        IdemState::Done { .. } => None,
    })
}

/// End a vend in state `r.state()` (final): remove it from the open ones, keep it as
/// finished, and for a product that dropped take it off its slot; `sale` is recorded
/// with it for a completed vend. Ends a vend once: a vend no longer open is left as
/// it is (`Ok(false)`).
pub(crate) fn finish(
    tx: &mut Tx<'_>,
    r: &VendRecord,
    sale: Option<&Sale>,
) -> Result<bool, StoreError> {
    let open = key(OPEN, r.id);
    if tx.get(&open)?.is_none() {
        return Ok(false);
    }
    tx.remove(open);
    tx.put(key(DONE, r.id), to_json(r));
    let dropped = matches!(r.state(), VendState::Completed | VendState::Unpaid);
    if dropped {
        let now = OffsetDateTime::now_utc();
        if let Some(mut slot) = slots::get(tx, r.slot)? {
            slots::move_slot(
                tx,
                &mut slot,
                -1,
                SlotMovementKind::Vend,
                Some(r.id),
                None,
                now,
            )?;
        }
        match sale {
            Some(sale) => record_sale(tx, sale, &format!("vend:{}", r.id))?,
            // The unit left the store unpaid: the store's stock says so too.
            None => {
                move_stock(
                    tx,
                    r.sku.as_str(),
                    -1,
                    MovementKind::Adjustment,
                    Some(format!(
                        "free vend from slot {}: the reader released the charge",
                        r.slot
                    )),
                    Some(r.id),
                    now,
                )?;
            }
        }
    }
    super::alerts::after_vend(tx, r)?;
    Ok(true)
}
