//! The machine's slots in the journal tree, and every change of a slot's count as a
//! slot movement.
//!
//! | key | value |
//! |---|---|
//! | `v/s/` tray, column (one byte each) | [`Slot`] |
//! | `v/h` | [`SlotsHead`]: the version of the slots HQ pushed last |
//! | `v/m/` movement id (UUIDv7) | [`SlotMovement`] |
//!
//! A slot's count changes only through [`move_slot`], in the same atomic write as
//! what caused it (the vend's sale, a refill, a count), so the count always equals
//! its opening count plus its movements.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::VendError;
use crate::domain::product::Sku;
use crate::domain::sale::MovementKind;
use crate::domain::vending::slot::{MAX_SLOT_CAPACITY, reconfigure};
use crate::domain::vending::{Slot, SlotConfig, SlotId};
use crate::sales::journal::move_stock;
use crate::store::{Store, StoreError, Tx, from_json, to_json};

const SLOT: &[u8] = b"v/s/";
const HEAD: &[u8] = b"v/h";
pub(super) const MOVEMENT: &[u8] = b"v/m/";

/// Why a slot's count changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotMovementKind {
    /// A product dropped (sold, or given when the reader released the charge).
    Vend,
    /// A technician put units in.
    Refill,
    /// A technician counted the slot; the difference is journaled.
    Count,
}

/// One change of a slot's count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlotMovement {
    /// Time-ordered id.
    pub id: Uuid,
    /// The slot.
    #[schema(value_type = String)]
    pub slot: SlotId,
    /// Its product at the time.
    #[schema(value_type = String)]
    pub sku: Sku,
    /// Change in units.
    pub delta: i64,
    /// Why.
    pub kind: SlotMovementKind,
    /// The count after it.
    pub count_after: u32,
    /// The vend that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vend: Option<Uuid>,
    /// The technician's reason, for counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What the slots record says about the last HQ push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotsHead {
    /// HQ's planogram version that last replaced the slots (0: none).
    pub version: u64,
}

fn slot_key(id: SlotId) -> Vec<u8> {
    let mut k = SLOT.to_vec();
    k.extend_from_slice(&[id.tray(), id.column()]);
    k
}

fn movement_key(id: Uuid) -> Vec<u8> {
    let mut k = MOVEMENT.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// A slot, as the writer sees it.
pub fn get(tx: &Tx<'_>, id: SlotId) -> Result<Option<Slot>, StoreError> {
    tx.get(&slot_key(id))?
        .map(|v| from_json(&v, "vending slot"))
        .transpose()
}

/// Write a slot.
pub fn put(tx: &mut Tx<'_>, slot: &Slot) {
    tx.put(slot_key(slot.config.slot), to_json(slot));
}

/// Every slot, as the writer sees them, in slot order.
pub fn all_tx(tx: &Tx<'_>) -> Result<Vec<Slot>, StoreError> {
    tx.scan_prefix(SLOT)?
        .iter()
        .map(|(_, v)| from_json(v, "vending slot"))
        .collect()
}

/// Every slot, in slot order.
pub fn all(store: &Store) -> Result<Vec<Slot>, StoreError> {
    store
        .journal_scan_from(SLOT, SLOT)
        .map(|kv| kv.and_then(|(_, v)| from_json(&v, "vending slot")))
        .collect()
}

/// One slot.
pub fn one(store: &Store, id: SlotId) -> Result<Option<Slot>, StoreError> {
    store
        .journal_get(&slot_key(id))?
        .map(|v| from_json(&v, "vending slot"))
        .transpose()
}

/// The version of the slots HQ pushed last (0: none).
pub fn head(store: &Store) -> Result<SlotsHead, StoreError> {
    Ok(store
        .journal_get(HEAD)?
        .map(|v| from_json(&v, "vending slots head"))
        .transpose()?
        .unwrap_or_default())
}

/// Change a slot's count by `delta` and journal the movement (in the caller's write).
/// A count cannot go below zero: the caller checked.
#[allow(clippy::too_many_arguments)]
pub fn move_slot(
    tx: &mut Tx<'_>,
    slot: &mut Slot,
    delta: i64,
    kind: SlotMovementKind,
    vend: Option<Uuid>,
    reason: Option<String>,
    at: OffsetDateTime,
) -> Result<SlotMovement, StoreError> {
    let after = (i64::from(slot.count) + delta).clamp(0, i64::from(u32::MAX));
    slot.count = u32::try_from(after).unwrap_or(0);
    let m = SlotMovement {
        id: crate::domain::ids::next(),
        slot: slot.config.slot,
        sku: slot.config.sku.clone(),
        delta,
        kind,
        count_after: slot.count,
        vend,
        reason,
        at,
    };
    tx.put(movement_key(m.id), to_json(&m));
    put(tx, slot);
    super::alerts::slot_levels(tx, slot)?;
    Ok(m)
}

/// The latest `limit` movements of `slot` (or of every slot), oldest first.
pub fn movements(
    store: &Store,
    slot: Option<SlotId>,
    limit: usize,
) -> Result<Vec<SlotMovement>, StoreError> {
    let mut out = std::collections::VecDeque::with_capacity(limit.min(1024));
    for kv in store.journal_scan_from(MOVEMENT, MOVEMENT) {
        let (_, v) = kv?;
        let m: SlotMovement = from_json(&v, "slot movement")?;
        if slot.is_some_and(|s| s != m.slot) {
            continue;
        }
        if out.len() == limit {
            out.pop_front();
        }
        if limit > 0 {
            out.push_back(m);
        }
    }
    Ok(out.into())
}

/// Replace the whole slot set with `configs` (HQ's push, version `version`): slots not
/// in it are removed, the others keep their counts ([`reconfigure`]). In the caller's
/// write, so it is atomic with the rest of the planogram.
pub fn replace_all(
    tx: &mut Tx<'_>,
    version: u64,
    configs: Vec<SlotConfig>,
) -> Result<(), StoreError> {
    let old: std::collections::HashMap<SlotId, Slot> = all_tx(tx)?
        .into_iter()
        .map(|s| (s.config.slot, s))
        .collect();
    for id in old.keys() {
        tx.remove(slot_key(*id));
    }
    for (id, _) in old
        .iter()
        .filter(|(id, _)| !configs.iter().any(|c| c.slot == **id))
    {
        clear_levels(tx, *id)?;
    }
    for c in configs {
        let slot = reconfigure(old.get(&c.slot), c);
        put(tx, &slot);
        super::alerts::slot_levels(tx, &slot)?;
    }
    tx.put(HEAD.to_vec(), to_json(&SlotsHead { version }));
    Ok(())
}

/// Create or reconfigure one slot (a technician's edit).
pub async fn put_one(store: &Store, config: SlotConfig) -> Result<Slot, VendError> {
    Ok(store
        .write(move |tx| {
            let old = get(tx, config.slot)?;
            let slot = reconfigure(old.as_ref(), config);
            put(tx, &slot);
            super::alerts::slot_levels(tx, &slot)?;
            Ok::<Slot, StoreError>(slot)
        })
        .await??)
}

/// Remove an empty slot (a technician's edit). A slot with units in it is refused:
/// they would vanish from the count.
pub async fn remove_one(store: &Store, id: SlotId) -> Result<(), VendError> {
    store
        .write(move |tx| {
            let slot = get(tx, id)?.ok_or(VendError::NoSlot(id))?;
            if slot.count > 0 {
                return Err(VendError::Invalid {
                    code: "slot_not_empty",
                    message: format!(
                        "slot {id} still holds {} units: count it to 0 first",
                        slot.count
                    ),
                    field: None,
                });
            }
            tx.remove(slot_key(id));
            clear_levels(tx, id)?;
            Ok(())
        })
        .await?
}

/// A removed slot has no level alerts.
fn clear_levels(tx: &mut Tx<'_>, id: SlotId) -> Result<(), StoreError> {
    for alert in ["slot_empty", "slot_low"] {
        super::alerts::set(tx, alert, &id.to_string(), false, || {
            format!("slot {id} was removed")
        })?;
    }
    Ok(())
}

/// Put `units` into a slot; refused past its capacity.
pub async fn refill(store: &Store, id: SlotId, units: u32) -> Result<Slot, VendError> {
    store
        .write(move |tx| refill_tx(tx, id, units).map(|(s, _)| s))
        .await?
}

/// [`refill`] in the caller's write (with its idempotency record).
pub fn refill_tx(
    tx: &mut Tx<'_>,
    id: SlotId,
    units: u32,
) -> Result<(Slot, SlotMovement), VendError> {
    let mut slot = get(tx, id)?.ok_or(VendError::NoSlot(id))?;
    let after = u64::from(slot.count) + u64::from(units);
    if units == 0 || after > u64::from(slot.config.capacity) {
        return Err(VendError::Invalid {
            code: "invalid_refill",
            message: format!(
                "slot {id} holds {} of {}: a refill of 1 to {} units fits",
                slot.count,
                slot.config.capacity,
                slot.config.capacity.saturating_sub(slot.count)
            ),
            field: Some("units".into()),
        });
    }
    let m = move_slot(
        tx,
        &mut slot,
        i64::from(units),
        SlotMovementKind::Refill,
        None,
        None,
        OffsetDateTime::now_utc(),
    )?;
    Ok((slot, m))
}

/// A slot movement by id, as the writer sees it.
pub fn movement_get(tx: &Tx<'_>, id: Uuid) -> Result<Option<SlotMovement>, StoreError> {
    tx.get(&movement_key(id))?
        .map(|v| from_json(&v, "slot movement"))
        .transpose()
}

/// Set a slot's count after a technician counted it. The difference is journaled as a
/// count movement with the reason, and the product's store stock is corrected by the
/// same difference (what left the slot unseen left the store). Clears `needs_count`.
/// The count (matched or not) is recorded for the drift report and sent to HQ
/// ([`super::drift`]) in the same write.
pub async fn count(
    store: &Store,
    id: SlotId,
    counted: u32,
    reason: Option<String>,
) -> Result<Slot, VendError> {
    store
        .write(move |tx| {
            let mut slot = get(tx, id)?.ok_or(VendError::NoSlot(id))?;
            if counted > MAX_SLOT_CAPACITY {
                return Err(VendError::Invalid {
                    code: "invalid_count",
                    message: format!("a count must be between 0 and {MAX_SLOT_CAPACITY}"),
                    field: Some("count".into()),
                });
            }
            let delta = i64::from(counted) - i64::from(slot.count);
            let now = OffsetDateTime::now_utc();
            let before = slot.clone();
            let reason_for_hq = reason.clone();
            slot.needs_count = false;
            let movement = if delta != 0 {
                let m = move_slot(
                    tx,
                    &mut slot,
                    delta,
                    SlotMovementKind::Count,
                    None,
                    reason.clone(),
                    now,
                )?;
                move_stock(
                    tx,
                    slot.config.sku.as_str(),
                    delta,
                    MovementKind::Count,
                    Some(reason.unwrap_or_else(|| format!("slot {id} counted"))),
                    Some(m.id),
                    now,
                )?;
                Some(m.id)
            } else {
                put(tx, &slot);
                super::alerts::slot_levels(tx, &slot)?;
                None
            };
            super::drift::record(tx, &before, counted, reason_for_hq, movement, now)?;
            Ok(slot)
        })
        .await?
}

/// Whether any key of the journal is a slot (this unit is a vending site).
pub fn any(store: &Store) -> Result<bool, StoreError> {
    Ok(store
        .journal_scan_from(SLOT, SLOT)
        .next()
        .transpose()?
        .is_some())
}
