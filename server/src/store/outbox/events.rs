//! Device events, alerts, telemetry and audit head records for HQ, in the outbox like
//! sales.
//!
//! Each kind has a cap on the entries waiting for HQ. While a kind is at its cap, new
//! records of that kind are not written, only counted; the next record written carries
//! that count as `dropped_before`. Sales, refunds and movements are never capped. A
//! record's id is a UUIDv7; records are deleted with their outbox entry once HQ
//! acknowledged them ([`acknowledged`], called by [`super::drain`]).
//!
//! | key | value |
//! |---|---|
//! | `e/r/` id | [`HqEvent`] |
//! | `e/n/` kind | entries of that kind waiting for HQ, u64 BE |
//! | `e/d/` kind | records of that kind not written since the last one, u64 BE |
//! | `e/h` | the last [`AuditHead`] queued, as an [`AuditCheckpoint`] (written with it) |

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{OutboxKind, put_outbox};
use crate::store::{Store, StoreError, Tx, from_json, keys, to_json};

/// Records.
const RECORD: &[u8] = b"e/r/";
/// Pending counts per kind.
const PENDING: &[u8] = b"e/n/";
/// Dropped counts per kind.
const DROPPED: &[u8] = b"e/d/";
/// The last audit head queued.
const AUDIT_HEAD: &[u8] = b"e/h";

/// One record for HQ (the envelope's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HqEvent {
    /// UUIDv7.
    pub id: Uuid,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Records of this kind not written (the cap was reached) since the previous one.
    pub dropped_before: u64,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// A device's status changed, or it raised an error event.
    DeviceEvent {
        /// Device id.
        device: String,
        /// `receipt_printer`, `scanner`, ...
        device_kind: String,
        /// `status_changed` or `error`.
        event: String,
        /// Status before (`usable`, `failing`, `closed`; none for an error event).
        from: Option<String>,
        /// Status now.
        to: String,
        /// The device's latest error, when there is one.
        error: Option<String>,
    },
    /// A condition HQ should act on started or ended.
    Alert {
        /// `outbox_age`, `device_offline`, `lease`.
        alert: String,
        /// `raised` or `cleared`.
        state: String,
        /// What it is about (a device id, the lease state), when it applies.
        subject: Option<String>,
        /// For people.
        message: String,
    },
    /// Cumulative counters.
    Telemetry(Telemetry),
    /// The audit chain's head.
    AuditHead(AuditHead),
    /// Money a QR payment brought that the unit does not keep.
    PaymentReturn(PaymentReturn),
    /// A technician counted a vending slot: the model's count against the real one.
    SlotCount(SlotCount),
}

/// A vending slot counted by a technician: the planogram drift of one slot at one time
/// (`docs/vending.md`, "Drift").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotCount {
    /// The slot (`A1`).
    pub slot: String,
    /// The product in it.
    pub sku: String,
    /// What the model said was there.
    pub expected: u32,
    /// What the technician counted.
    pub counted: u32,
    /// `counted - expected`.
    pub difference: i64,
    /// The technician's reason, when given.
    pub reason: Option<String>,
    /// The slot movement that journaled the difference (none when it was 0).
    pub movement: Option<Uuid>,
}

/// Money to give back to a QR payer (HQ pays it back through the provider).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReturn {
    /// The payment's reference (its key): a sale's QR tender, or a refund's.
    pub reference: String,
    /// The provider's id of the payment to give back (none for a refund: HQ finds the
    /// payment from the refund record's `refund_of`).
    pub provider_ref: Option<String>,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Why.
    pub reason: String,
}

/// The audit chain's head as this unit reports it. HQ keeps the last one per unit and
/// flags a chain that went backwards: a lower `seq` than it holds, the same `seq` with
/// another hash, or a `since` that is not the head it holds (the log no longer passes
/// through what was reported, or the record of it is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The last entry's sequence.
    pub seq: u64,
    /// The last entry's hash (hex).
    pub hash: String,
    /// The head queued before this one, with the hash the chain has at its sequence
    /// now; `None` for the first head this data dir reports.
    pub since: Option<AuditCheckpoint>,
}

/// An entry of the audit chain: its sequence and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The entry's sequence.
    pub seq: u64,
    /// Its hash (hex); `None` when the chain no longer reaches `seq`.
    pub hash: Option<String>,
}

/// Counters since the unit started (cumulative) and gauges now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Writer jobs committed (sales, refunds, movements, ...), cumulative.
    pub writer_jobs_committed: u64,
    /// Group flushes (fsyncs), cumulative.
    pub writer_flushes: u64,
    /// Envelopes sent to HQ (with resends), cumulative.
    pub uplink_sent: u64,
    /// Uplink sessions, cumulative.
    pub uplink_sessions: u64,
    /// Uplink sessions that failed, cumulative.
    pub uplink_failures: u64,
    /// Entries waiting for HQ now.
    pub outbox_pending: u64,
    /// Bytes waiting for HQ now.
    pub outbox_bytes: u64,
    /// Products in the live catalog.
    pub catalog_products: u64,
    /// Devices configured.
    pub devices: u64,
    /// Devices usable now.
    pub devices_usable: u64,
}

impl EventBody {
    /// The outbox kind its entry has.
    pub fn kind(&self) -> OutboxKind {
        match self {
            EventBody::DeviceEvent { .. } => OutboxKind::DeviceEvent,
            EventBody::Alert { .. } => OutboxKind::Alert,
            EventBody::Telemetry(_) => OutboxKind::Telemetry,
            EventBody::AuditHead(_) => OutboxKind::AuditHead,
            EventBody::PaymentReturn(_) => OutboxKind::PaymentReturn,
            EventBody::SlotCount(_) => OutboxKind::SlotCount,
        }
    }
}

fn kind_name(kind: OutboxKind) -> &'static str {
    match kind {
        OutboxKind::DeviceEvent => "device_event",
        OutboxKind::Alert => "alert",
        OutboxKind::Telemetry => "telemetry",
        OutboxKind::AuditHead => "audit_head",
        OutboxKind::PaymentReturn => "payment_return",
        OutboxKind::SlotCount => "slot_count",
        OutboxKind::Sale => "sale",
        OutboxKind::Refund => "refund",
        OutboxKind::InventoryMovement => "inventory_movement",
    }
}

fn counter_key(prefix: &[u8], kind: OutboxKind) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(kind_name(kind).as_bytes());
    k
}

/// Key of an event record.
pub fn record_key(id: Uuid) -> Vec<u8> {
    let mut k = RECORD.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn counter(tx: &Tx<'_>, key: &[u8]) -> Result<u64, StoreError> {
    Ok(match tx.get(key)? {
        Some(v) => keys::decode_u64(&v)?,
        None => 0,
    })
}

/// Whether the outbox entries of `kind` are event records (deleted once acknowledged).
pub fn is_event(kind: OutboxKind) -> bool {
    matches!(
        kind,
        OutboxKind::DeviceEvent
            | OutboxKind::Alert
            | OutboxKind::Telemetry
            | OutboxKind::AuditHead
            | OutboxKind::PaymentReturn
            | OutboxKind::SlotCount
    )
}

/// In the writer job that deletes acknowledged entries: forget the record of an
/// acknowledged event entry and count it out of its kind's pending count.
pub fn acknowledged(tx: &mut Tx<'_>, kind: OutboxKind, id: Uuid) -> Result<(), StoreError> {
    if !is_event(kind) {
        return Ok(());
    }
    tx.remove(record_key(id));
    let key = counter_key(PENDING, kind);
    let n = counter(tx, &key)?;
    tx.put(key, n.saturating_sub(1).to_be_bytes().to_vec());
    Ok(())
}

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Written with this outbox sequence.
    Queued(u64),
    /// The kind is at its cap: counted, not written.
    Dropped,
}

/// Write `body` to the outbox (durably, with its record), unless its kind already
/// has `cap` entries waiting for HQ. An audit head queued is remembered as the last
/// one in the same write ([`last_audit_head`]).
pub async fn enqueue(store: &Store, body: EventBody, cap: u64) -> Result<Enqueued, StoreError> {
    store.write(move |tx| enqueue_tx(tx, body, cap)).await?
}

/// [`enqueue`] in the caller's write, so a record that decides whether to send an
/// event (an alert's state) changes atomically with the event's outbox entry.
pub fn enqueue_tx(tx: &mut Tx<'_>, body: EventBody, cap: u64) -> Result<Enqueued, StoreError> {
    let kind = body.kind();
    let checkpoint = match &body {
        EventBody::AuditHead(h) => Some(AuditCheckpoint {
            seq: h.seq,
            hash: Some(h.hash.clone()),
        }),
        _ => None,
    };
    let pending_key = counter_key(PENDING, kind);
    let dropped_key = counter_key(DROPPED, kind);
    let pending = counter(tx, &pending_key)?;
    let dropped = counter(tx, &dropped_key)?;
    if pending >= cap {
        tx.put(dropped_key, (dropped + 1).to_be_bytes().to_vec());
        return Ok(Enqueued::Dropped);
    }
    let ev = HqEvent {
        id: crate::domain::ids::next(),
        at: OffsetDateTime::now_utc(),
        dropped_before: dropped,
        body,
    };
    let json = to_json(&ev);
    let seq = put_outbox(tx, kind, ev.id, ev.at, &json);
    tx.put(record_key(ev.id), json);
    tx.put(pending_key, (pending + 1).to_be_bytes().to_vec());
    if dropped > 0 {
        tx.remove(dropped_key);
    }
    if let Some(checkpoint) = checkpoint {
        tx.put(AUDIT_HEAD.to_vec(), to_json(&checkpoint));
    }
    Ok(Enqueued::Queued(seq))
}

/// The last audit head queued for HQ (by [`enqueue`]), if any.
pub fn last_audit_head(store: &Store) -> Result<Option<AuditCheckpoint>, StoreError> {
    store
        .journal_get(AUDIT_HEAD)?
        .map(|v| from_json(&v, "last audit head"))
        .transpose()
}

/// Entries of each event kind waiting for HQ, for the sync status.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct EventsPending {
    /// Device events.
    pub device_event: u64,
    /// Alerts.
    pub alert: u64,
    /// Telemetry samples.
    pub telemetry: u64,
    /// Audit chain heads.
    pub audit_head: u64,
}

/// Entries of each event kind waiting for HQ.
pub fn events_pending(store: &Store) -> Result<EventsPending, StoreError> {
    let [
        (_, device_event),
        (_, alert),
        (_, telemetry),
        (_, audit_head),
    ] = pending(store)?;
    Ok(EventsPending {
        device_event,
        alert,
        telemetry,
        audit_head,
    })
}

/// Entries of each event kind waiting for HQ (for status and tests).
pub fn pending(store: &Store) -> Result<[(&'static str, u64); 4], StoreError> {
    let get = |kind| -> Result<u64, StoreError> {
        Ok(match store.journal_get(&counter_key(PENDING, kind))? {
            Some(v) => keys::decode_u64(&v)?,
            None => 0,
        })
    };
    Ok([
        ("device_event", get(OutboxKind::DeviceEvent)?),
        ("alert", get(OutboxKind::Alert)?),
        ("telemetry", get(OutboxKind::Telemetry)?),
        ("audit_head", get(OutboxKind::AuditHead)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_the_envelope_json_with_a_type() {
        let ev = HqEvent {
            id: Uuid::now_v7(),
            at: OffsetDateTime::UNIX_EPOCH,
            dropped_before: 3,
            body: EventBody::Alert {
                alert: "outbox_age".into(),
                state: "raised".into(),
                subject: None,
                message: "m".into(),
            },
        };
        let v: serde_json::Value = serde_json::from_slice(&to_json(&ev)).unwrap();
        assert_eq!(v["type"], "alert");
        assert_eq!(v["dropped_before"], 3);
        let back: HqEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, ev);
    }

    #[tokio::test]
    async fn a_kind_at_its_cap_is_counted_and_the_next_record_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let alert = || EventBody::Alert {
            alert: "a".into(),
            state: "raised".into(),
            subject: None,
            message: "m".into(),
        };
        assert!(matches!(
            enqueue(&store, alert(), 2).await.unwrap(),
            Enqueued::Queued(1)
        ));
        assert!(matches!(
            enqueue(&store, alert(), 2).await.unwrap(),
            Enqueued::Queued(2)
        ));
        for _ in 0..5 {
            assert_eq!(
                enqueue(&store, alert(), 2).await.unwrap(),
                Enqueued::Dropped
            );
        }
        assert_eq!(pending(&store).unwrap()[1], ("alert", 2));
        // Other kinds have their own cap.
        let t = EventBody::Telemetry(Telemetry {
            uptime_secs: 1,
            writer_jobs_committed: 0,
            writer_flushes: 0,
            uplink_sent: 0,
            uplink_sessions: 0,
            uplink_failures: 0,
            outbox_pending: 0,
            outbox_bytes: 0,
            catalog_products: 0,
            devices: 0,
            devices_usable: 0,
        });
        assert_eq!(enqueue(&store, t, 2).await.unwrap(), Enqueued::Queued(3));
        // HQ acknowledges the first two: the alert cap has room again, and the next
        // alert carries the count of those not written.
        super::super::drain::ack_through(&store, 2).await.unwrap();
        assert_eq!(pending(&store).unwrap()[1], ("alert", 0));
        assert_eq!(
            enqueue(&store, alert(), 2).await.unwrap(),
            Enqueued::Queued(4)
        );
        let sent = super::super::drain::read_from(&store, 4, 10, 1 << 20).unwrap();
        let ev: HqEvent = serde_json::from_slice(&sent[0].record).unwrap();
        assert_eq!(ev.dropped_before, 5);
        // The acknowledged records are gone with their entries.
        assert!(store.journal_get(&record_key(ev.id)).unwrap().is_some());
        let first = super::super::drain::read_from(&store, 1, 10, 1 << 20).unwrap();
        assert_eq!(
            first[0].entry.seq, 3,
            "1 and 2 were acknowledged and deleted"
        );
    }

    #[tokio::test]
    async fn an_audit_head_queued_is_remembered_with_it_and_one_not_written_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        assert_eq!(last_audit_head(&store).unwrap(), None);
        let head = |seq: u64, since: Option<AuditCheckpoint>| {
            EventBody::AuditHead(AuditHead {
                seq,
                hash: format!("h{seq}"),
                since,
            })
        };
        assert_eq!(
            enqueue(&store, head(4, None), 1).await.unwrap(),
            Enqueued::Queued(1)
        );
        let first = AuditCheckpoint {
            seq: 4,
            hash: Some("h4".into()),
        };
        assert_eq!(last_audit_head(&store).unwrap(), Some(first.clone()));
        // At its cap: counted, and the last head queued stays the one HQ will get.
        assert_eq!(
            enqueue(&store, head(5, Some(first.clone())), 1)
                .await
                .unwrap(),
            Enqueued::Dropped
        );
        assert_eq!(last_audit_head(&store).unwrap(), Some(first.clone()));
        assert_eq!(events_pending(&store).unwrap().audit_head, 1);
        let sent = super::super::drain::read_from(&store, 1, 10, 1 << 20).unwrap();
        assert_eq!(sent[0].entry.kind, OutboxKind::AuditHead);
        let v: serde_json::Value = serde_json::from_slice(&sent[0].record).unwrap();
        assert_eq!(v["type"], "audit_head");
        assert_eq!(
            (v["seq"].as_u64(), v["hash"].as_str()),
            (Some(4), Some("h4"))
        );
        assert!(v["since"].is_null(), "{v}");
    }
}
