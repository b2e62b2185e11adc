//! Planogram drift: each technician's count of a slot against the model's count,
//! kept as a count record and sent to HQ (an outbox `slot_count` event) in the same
//! atomic write as the count itself, and the drift report per slot over time.
//!
//! | key | value |
//! |---|---|
//! | `v/n/` record id (UUIDv7) | [`CountRecord`] |
//!
//! Every count is recorded, a count that matched too: how often a slot was counted
//! without drift is part of its picture. The difference itself is journaled as a slot
//! movement and a stock movement ([`super::slots::count`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::vending::{Slot, SlotId};
use crate::store::outbox::events::{EventBody, SlotCount, enqueue_tx};
use crate::store::{Store, StoreError, Tx, from_json, to_json};

const COUNT: &[u8] = b"v/n/";
/// Counts listed per slot in a report (the newest).
pub const HISTORY_SHOWN: usize = 20;

/// One count of one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CountRecord {
    /// Time-ordered id.
    pub id: Uuid,
    /// The slot.
    #[schema(value_type = String)]
    pub slot: SlotId,
    /// Its product then.
    pub sku: String,
    /// What the model said was there.
    pub expected: u32,
    /// What the technician counted.
    pub counted: u32,
    /// `counted - expected`: negative is missing stock (shrink, unrecorded vends),
    /// positive is stock the model did not know of (an unrecorded refill).
    pub difference: i64,
    /// The technician's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The slot movement that journaled the difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub movement: Option<Uuid>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Records the count of `before` (the slot as the model had it) as `counted`, and
/// queues it for HQ, in the count's write.
pub(super) fn record(
    tx: &mut Tx<'_>,
    before: &Slot,
    counted: u32,
    reason: Option<String>,
    movement: Option<Uuid>,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    let difference = i64::from(counted) - i64::from(before.count);
    let r = CountRecord {
        id: crate::domain::ids::next(),
        slot: before.config.slot,
        sku: before.config.sku.as_str().to_owned(),
        expected: before.count,
        counted,
        difference,
        reason: reason.clone(),
        movement,
        at,
    };
    let mut k = COUNT.to_vec();
    k.extend_from_slice(r.id.as_bytes());
    tx.put(k, to_json(&r));
    enqueue_tx(
        tx,
        EventBody::SlotCount(SlotCount {
            slot: r.slot.to_string(),
            sku: r.sku,
            expected: r.expected,
            counted,
            difference,
            reason,
            movement,
        }),
        u64::MAX,
    )?;
    Ok(())
}

/// One slot's drift over the report's time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SlotDrift {
    /// The slot.
    #[schema(value_type = String)]
    pub slot: SlotId,
    /// Times it was counted.
    pub counts: u32,
    /// Of those, how many found the model right.
    pub exact: u32,
    /// Units found missing, summed over the counts.
    pub missing: u64,
    /// Units found beyond the model, summed over the counts.
    pub surplus: u64,
    /// `surplus - missing`.
    pub net: i64,
    /// The last count.
    #[serde(with = "time::serde::rfc3339")]
    pub last_counted_at: OffsetDateTime,
    /// The newest counts, oldest first (at most [`HISTORY_SHOWN`]).
    pub history: Vec<CountRecord>,
}

/// The drift report: every slot counted in the window, in slot order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DriftReport {
    /// The window's start (none: since the first count).
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// Counts in the window, all slots.
    pub counts: u32,
    /// Units missing, all slots.
    pub missing: u64,
    /// Units beyond the model, all slots.
    pub surplus: u64,
    /// Per slot.
    pub slots: Vec<SlotDrift>,
}

/// The drift of `slot` (or every slot) from counts at or after `since`.
pub fn report(
    store: &Store,
    slot: Option<SlotId>,
    since: Option<OffsetDateTime>,
) -> Result<DriftReport, StoreError> {
    let mut per: std::collections::BTreeMap<SlotId, SlotDrift> = Default::default();
    for kv in store.journal_scan_from(COUNT, COUNT) {
        let (_, v) = kv?;
        let r: CountRecord = from_json(&v, "slot count")?;
        if slot.is_some_and(|s| s != r.slot) || since.is_some_and(|t| r.at < t) {
            continue;
        }
        let d = per.entry(r.slot).or_insert_with(|| SlotDrift {
            slot: r.slot,
            counts: 0,
            exact: 0,
            missing: 0,
            surplus: 0,
            net: 0,
            last_counted_at: r.at,
            history: Vec::new(),
        });
        d.counts += 1;
        if r.difference == 0 {
            d.exact += 1;
        } else if r.difference < 0 {
            d.missing += r.difference.unsigned_abs();
        } else {
            d.surplus += r.difference.unsigned_abs();
        }
        d.net += r.difference;
        d.last_counted_at = d.last_counted_at.max(r.at);
        if d.history.len() == HISTORY_SHOWN {
            d.history.remove(0);
        }
        d.history.push(r);
    }
    let slots: Vec<SlotDrift> = per.into_values().collect();
    Ok(DriftReport {
        since,
        counts: slots.iter().map(|s| s.counts).sum(),
        missing: slots.iter().map(|s| s.missing).sum(),
        surplus: slots.iter().map(|s| s.surplus).sum(),
        slots,
    })
}
