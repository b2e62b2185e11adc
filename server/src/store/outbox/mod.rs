//! The outbox: what this unit owes HQ, in order, exactly once (invariant 2).
//!
//! Every sale, refund, stock movement and event record a writer job commits gets an
//! outbox entry in the same job: a contiguous sequence number, the record's kind, id
//! and time, and a copy of the record's bytes. The writer packs the entries of each
//! group commit into sealed blocks (`ob/<first sequence>`, see [`super::writer`]).
//!
//! # Layout
//! - this file: entry kinds, the entry, its encoding in a block, [`put_outbox`].
//! - [`drain`]: reading entries in order for the uplink, the backlog, and deleting
//!   what HQ acknowledged.
//! - [`events`]: device events, alerts, telemetry and audit head records, capped per
//!   kind.

pub mod drain;
pub mod events;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{StoreError, Tx};

pub use drain::{
    Backlog, BlockSpan, Outgoing, ack_through, backlog, delete_sent, oldest, read_from,
};

/// What an outbox entry points at.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// A sale (`s/` record).
    Sale,
    /// A refund (`r/` record).
    Refund,
    /// An inventory movement (`m/` record).
    InventoryMovement,
    /// A device event (`e/r/` record, see [`events`]).
    DeviceEvent,
    /// An alert (`e/r/` record).
    Alert,
    /// A telemetry sample (`e/r/` record).
    Telemetry,
    /// The audit chain's head (`e/r/` record): how HQ notices a log cut short.
    AuditHead,
    /// Money taken by QR that the unit gives back (`e/r/` record): HQ pays it back
    /// through the provider.
    PaymentReturn,
    /// A technician's count of a vending slot against the model (`e/r/` record): the
    /// planogram drift HQ reports on.
    SlotCount,
}

/// One entry for HQ. In the journal it sits in an outbox block with a copy of its
/// record's bytes (see [`encode_outbox_item`]); schema-3 data dirs stored it as JSON
/// under its own key, naming its record (moved into blocks at open).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxEntry {
    /// This unit's sequence number: contiguous, never reused.
    pub seq: u64,
    /// What the record is.
    pub kind: OutboxKind,
    /// Id of the record.
    pub id: Uuid,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Size of the record, for the backlog's byte count.
    #[serde(default)]
    pub bytes: u64,
}

const ITEM_HEADER: usize = 1 + 16 + 16;

fn kind_code(kind: OutboxKind) -> u8 {
    match kind {
        OutboxKind::Sale => 1,
        OutboxKind::Refund => 2,
        OutboxKind::InventoryMovement => 3,
        OutboxKind::DeviceEvent => 4,
        OutboxKind::Alert => 5,
        OutboxKind::Telemetry => 6,
        OutboxKind::AuditHead => 7,
        OutboxKind::PaymentReturn => 20,
        OutboxKind::SlotCount => 21,
    }
}

/// One outbox entry as an item of an outbox block: kind (1 byte), record id (16),
/// time in Unix nanoseconds (i128 big-endian), then the record's bytes. Its sequence
/// is its place in the block.
pub(crate) fn encode_outbox_item(
    kind: OutboxKind,
    id: Uuid,
    at: OffsetDateTime,
    record: &[u8],
) -> Vec<u8> {
    let mut item = Vec::with_capacity(ITEM_HEADER + record.len());
    item.push(kind_code(kind));
    item.extend_from_slice(id.as_bytes());
    item.extend_from_slice(&at.unix_timestamp_nanos().to_be_bytes());
    item.extend_from_slice(record);
    item
}

/// The entry (with sequence `seq`) and record bytes of a block item.
pub(crate) fn decode_outbox_item(
    seq: u64,
    item: &[u8],
) -> Result<(OutboxEntry, &[u8]), StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("outbox entry {seq}: {what}"));
    let (header, record) = item
        .split_at_checked(ITEM_HEADER)
        .ok_or_else(|| bad("too short"))?;
    let kind = match header[0] {
        1 => OutboxKind::Sale,
        2 => OutboxKind::Refund,
        3 => OutboxKind::InventoryMovement,
        4 => OutboxKind::DeviceEvent,
        5 => OutboxKind::Alert,
        6 => OutboxKind::Telemetry,
        7 => OutboxKind::AuditHead,
        20 => OutboxKind::PaymentReturn,
        21 => OutboxKind::SlotCount,
        _ => return Err(bad("unknown kind")),
    };
    let id = Uuid::from_slice(&header[1..17]).map_err(|_| bad("id"))?;
    let nanos = i128::from_be_bytes(header[17..33].try_into().map_err(|_| bad("time"))?);
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad("time"))?;
    Ok((
        OutboxEntry {
            seq,
            kind,
            id,
            at,
            bytes: record.len() as u64,
        },
        record,
    ))
}

/// Append a record (its bytes as stored) to the outbox; returns its sequence.
pub(crate) fn put_outbox(
    tx: &mut Tx<'_>,
    kind: OutboxKind,
    id: Uuid,
    at: OffsetDateTime,
    record: &[u8],
) -> u64 {
    tx.add_outbox_bytes(record.len() as i64);
    tx.append_outbox(encode_outbox_item(kind, id, at, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_survives_its_block_encoding() {
        let kinds = [
            OutboxKind::Sale,
            OutboxKind::Refund,
            OutboxKind::InventoryMovement,
            OutboxKind::DeviceEvent,
            OutboxKind::Alert,
            OutboxKind::Telemetry,
            OutboxKind::AuditHead,
            OutboxKind::PaymentReturn,
            OutboxKind::SlotCount,
        ];
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        for kind in kinds {
            let id = Uuid::now_v7();
            let item = encode_outbox_item(kind, id, at, b"{}");
            let (entry, record) = decode_outbox_item(9, &item).unwrap();
            assert_eq!(
                (entry.kind, entry.id, entry.at, entry.seq),
                (kind, id, at, 9)
            );
            assert_eq!(record, b"{}");
        }
        let mut unknown = encode_outbox_item(OutboxKind::Sale, Uuid::now_v7(), at, b"{}");
        unknown[0] = 8;
        assert!(decode_outbox_item(1, &unknown).is_err());
    }
}
