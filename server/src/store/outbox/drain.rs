//! Reading the outbox for the uplink, and deleting what HQ acknowledged.
//!
//! Outbox entries are numbered contiguously by the writer, which packs the entries of
//! each group commit, with a copy of their records' bytes, into blocks (`ob/<first
//! sequence>`, see `store::writer`). The uplink reads them in sequence order, a block
//! at a time (one read and one decrypt per block), and deletes them only once HQ has
//! acknowledged a sequence at or beyond theirs (invariant 2), so a crash or a cut
//! connection at any moment means at worst sending an entry again, which HQ recognises
//! by its sequence.
//!
//! Deleting raises the durable acknowledged watermark (`meta/outbox_acked`) and removes
//! every block whose entries are all at or below it; a partly acknowledged block stays,
//! and readers skip its entries up to the watermark. It comes in two forms.
//! [`ack_through`] reads the entries of the range first (to learn their sizes and
//! kinds): it serves a session's start, when HQ says what it holds of entries this
//! process may never have read. Within a session the uplink already holds every entry
//! it sent, so [`delete_sent`] reads nothing. Both count an entry out (bytes, event
//! records) only when it is above the watermark their writer job sees, so an entry is
//! never counted out twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use time::OffsetDateTime;

use super::{OutboxEntry, decode_outbox_item};
use crate::store::writer::unpack_block;
use crate::store::{Store, StoreError, keys};

/// The sequences an outbox block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpan {
    /// Its first entry (its key).
    pub first: u64,
    /// Its last entry.
    pub last: u64,
}

/// One entry ready to send: the entry, its record's bytes (JSON) and its block.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The entry.
    pub entry: OutboxEntry,
    /// The record it names, as stored (the REST API's JSON shape).
    pub record: Vec<u8>,
    /// The block it is stored in.
    pub block: BlockSpan,
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

/// Visit the waiting entries from sequence `from` on, in order, with their records and
/// blocks, while `f` returns `true`.
fn visit(
    store: &Store,
    from: u64,
    mut f: impl FnMut(OutboxEntry, &[u8], BlockSpan) -> bool,
) -> Result<(), StoreError> {
    let acked = store.writer_stats().outbox_acked.load(Ordering::Relaxed);
    let from = from.max(acked + 1);
    let start = store.outbox_block_holding(from)?.unwrap_or(from);
    for kv in store.journal_scan_from(keys::OUTBOX_BLOCKS, &keys::outbox_block(start)) {
        let (k, v) = kv?;
        let first = keys::outbox_block_first(&k)?;
        let items = unpack_block(&v)?;
        let Some(last) = (first + items.len() as u64).checked_sub(1) else {
            continue;
        };
        let block = BlockSpan { first, last };
        for (seq, item) in (first..).zip(items) {
            if seq < from {
                continue;
            }
            let (entry, record) = decode_outbox_item(seq, item)?;
            if !f(entry, record, block) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The oldest waiting entry, if any.
pub fn oldest(store: &Store) -> Result<Option<OutboxEntry>, StoreError> {
    let mut out = None;
    visit(store, 0, |entry, _, _| {
        out = Some(entry);
        false
    })?;
    Ok(out)
}

/// The backlog now. Cheap: one read of the oldest block and three counters. While
/// locked down the oldest entry cannot be read (its age is unknown, `None`); the
/// counts still are, from clear block keys and in-memory counters.
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
    let mut out: Vec<Outgoing> = Vec::new();
    let mut bytes = 0usize;
    visit(store, from, |entry, record, block| {
        if out.len() >= max_entries || (bytes >= max_bytes && !out.is_empty()) {
            return false;
        }
        bytes += record.len();
        out.push(Outgoing {
            entry,
            record: record.to_vec(),
            block,
        });
        true
    })?;
    Ok(out)
}

/// In a writer job: count out the entries of `entries` above the watermark (their
/// bytes, their event records), remove every block of theirs that ends at or before
/// `upto`, and raise the watermark to `upto`. Returns how many entries were counted
/// out.
fn delete_through(
    tx: &mut crate::store::Tx<'_>,
    entries: &[(OutboxEntry, BlockSpan)],
    upto: u64,
) -> Result<u64, StoreError> {
    let acked = tx.outbox_acked();
    let mut freed: i64 = 0;
    let mut deleted = 0u64;
    let mut removed: Option<u64> = None;
    for (entry, block) in entries {
        if entry.seq > upto {
            break;
        }
        if block.last <= upto && removed != Some(block.first) {
            tx.remove(keys::outbox_block(block.first));
            removed = Some(block.first);
        }
        if entry.seq <= acked {
            continue;
        }
        freed += entry.bytes as i64;
        deleted += 1;
        // Events, alerts and telemetry live only until HQ has them.
        super::events::acknowledged(tx, entry.kind, entry.id)?;
    }
    tx.add_outbox_bytes(-freed);
    tx.set_outbox_acked(upto);
    Ok(deleted)
}

/// Delete every entry up to and including `upto`, durably. Returns how many were
/// deleted (0 when HQ acknowledged nothing new).
pub async fn ack_through(store: &Arc<Store>, upto: u64) -> Result<u64, StoreError> {
    // Only the uplink deletes, and the writer only appends after the last entry, so
    // the entries read here are still there when the job runs, except those a delete
    // queued before it removes first (it skips them by the watermark).
    let mut entries = Vec::new();
    visit(store, 0, |entry, _, block| {
        if entry.seq > upto {
            return false;
        }
        entries.push((entry, block));
        true
    })?;
    if entries.is_empty() {
        return Ok(0);
    }
    store
        .write(move |tx| delete_through(tx, &entries, upto))
        .await?
}

/// Delete `sent` (entries this session read with [`read_from`], with their blocks, in
/// sequence order, and HQ has since acknowledged), durably, without reading them back.
/// Returns how many were deleted.
///
/// Entries at or below the watermark when the job runs (a session's [`ack_through`]
/// or an earlier delete covered them) are not counted twice.
pub async fn delete_sent(
    store: &Arc<Store>,
    sent: Vec<(OutboxEntry, BlockSpan)>,
) -> Result<u64, StoreError> {
    let Some(upto) = sent.last().map(|(e, _)| e.seq) else {
        return Ok(0);
    };
    store
        .write(move |tx| delete_through(tx, &sent, upto))
        .await?
}
