//! Reading the outbox for the uplink, and deleting what HQ acknowledged.
//!
//! Outbox entries are numbered contiguously by the writer and name their record. The
//! uplink reads them in sequence order with their records, and deletes them only once
//! HQ has acknowledged a sequence at or beyond theirs (invariant 2), so a crash or a
//! cut connection at any moment means at worst sending an entry again, which HQ
//! recognises by its sequence.
//!
//! Deleting comes in two forms. [`ack_through`] reads each entry in the range back
//! (inside the writer job) to learn its size and kind: it serves a session's start,
//! when HQ says what it holds of entries this process may never have read. Within a
//! session the uplink already holds every entry it sent, so [`delete_sent`] removes
//! them without reading or decrypting anything: during a drain after an outage that
//! read-back was a tenth of the CPU time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::journal::{OutboxEntry, OutboxKind};
use crate::store::{Store, StoreError, from_json, keys};

/// One entry ready to send: the entry and its record's bytes (JSON).
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The entry.
    pub entry: OutboxEntry,
    /// The record it names, as stored (the REST API's JSON shape).
    pub record: Vec<u8>,
}

/// What is waiting for HQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Entries not yet acknowledged.
    pub pending: u64,
    /// Bytes of their records.
    pub bytes: u64,
    /// When the oldest was written.
    pub oldest_at: Option<OffsetDateTime>,
    /// Sequence of the oldest (the next HQ must store), or the next to be written.
    pub first_seq: u64,
}

fn record_key(entry: &OutboxEntry) -> Vec<u8> {
    match entry.kind {
        OutboxKind::Sale => keys::sale(entry.id),
        OutboxKind::Refund => keys::refund(entry.id),
        OutboxKind::InventoryMovement => keys::movement(entry.id),
        OutboxKind::DeviceEvent | OutboxKind::Alert | OutboxKind::Telemetry => {
            crate::events::record_key(entry.id)
        }
    }
}

/// The oldest waiting entry, if any.
pub fn oldest(store: &Store) -> Result<Option<OutboxEntry>, StoreError> {
    match store.journal_scan_from(keys::OUTBOX, keys::OUTBOX).next() {
        Some(kv) => Ok(Some(from_json(&kv?.1, "outbox entry")?)),
        None => Ok(None),
    }
}

/// The backlog now. Cheap: one read of the oldest entry and two counters. While
/// locked down the oldest entry cannot be read (its age is unknown, `None`); the
/// counts still are, from clear sequence keys and in-memory counters.
pub fn backlog(store: &Store) -> Result<Backlog, StoreError> {
    let pending = store.outbox_pending()?;
    let bytes = store.writer_stats().outbox_bytes.load(Ordering::Relaxed);
    let oldest = match oldest(store) {
        Err(StoreError::DeviceLocked) => None,
        other => other?,
    };
    let first_seq = match &oldest {
        Some(e) => e.seq,
        None => store.outbox_first_seq()?,
    };
    Ok(Backlog {
        pending,
        bytes,
        oldest_at: oldest.map(|e| e.at),
        first_seq,
    })
}

/// Up to `max_entries` entries (and about `max_bytes` of records; at least one) from
/// sequence `from` on, with their records.
pub fn read_from(
    store: &Store,
    from: u64,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Vec<Outgoing>, StoreError> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for kv in store.journal_scan_from(keys::OUTBOX, &keys::outbox(from)) {
        if out.len() >= max_entries || (bytes >= max_bytes && !out.is_empty()) {
            break;
        }
        let (_, v) = kv?;
        let entry: OutboxEntry = from_json(&v, "outbox entry")?;
        let record = store.journal_get(&record_key(&entry))?.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "outbox entry {} names a missing {:?} {}",
                entry.seq, entry.kind, entry.id
            ))
        })?;
        bytes += record.len();
        out.push(Outgoing { entry, record });
    }
    Ok(out)
}

/// Delete every entry up to and including `upto`, durably. Returns how many were
/// deleted (0 when HQ acknowledged nothing new).
pub async fn ack_through(store: &Arc<Store>, upto: u64) -> Result<u64, StoreError> {
    let Some(first) = oldest(store)? else {
        return Ok(0);
    };
    if first.seq > upto {
        return Ok(0);
    }
    // Only the uplink deletes outbox entries and the writer only appends after the
    // last one, so the range [first, upto] is stable while this job waits its turn.
    let from = first.seq;
    store
        .write(move |tx| {
            let mut freed: i64 = 0;
            let mut deleted = 0u64;
            for seq in from..=upto {
                let key = keys::outbox(seq);
                let Some(v) = tx.get(&key)? else { continue };
                let entry: OutboxEntry = from_json(&v, "outbox entry")?;
                freed += entry.bytes as i64;
                deleted += 1;
                tx.remove(key);
                // Events, alerts and telemetry live only until HQ has them.
                crate::events::acknowledged(tx, entry.kind, entry.id)?;
            }
            tx.add_outbox_bytes(-freed);
            Ok::<u64, StoreError>(deleted)
        })
        .await?
}

/// Delete `sent` (entries this session read with [`read_from`] and HQ has since
/// acknowledged), durably, without reading them back. Returns how many were deleted.
///
/// The caller passes each entry once and only entries still in the outbox: only the
/// uplink deletes, one job at a time, and a session's [`ack_through`] is queued behind
/// any delete of the session before it (writer jobs run in order, and a dropped
/// `write` future that was never queued never runs), so it finds those entries gone
/// rather than counting them twice.
pub async fn delete_sent(store: &Arc<Store>, sent: Vec<OutboxEntry>) -> Result<u64, StoreError> {
    if sent.is_empty() {
        return Ok(0);
    }
    store
        .write(move |tx| {
            let mut freed: i64 = 0;
            for entry in &sent {
                freed += entry.bytes as i64;
                tx.remove(keys::outbox(entry.seq));
                // Events, alerts and telemetry live only until HQ has them.
                crate::events::acknowledged(tx, entry.kind, entry.id)?;
            }
            tx.add_outbox_bytes(-freed);
            Ok::<u64, StoreError>(sent.len() as u64)
        })
        .await?
}
