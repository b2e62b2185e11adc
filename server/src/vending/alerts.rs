//! The machine's alerts: raised once and cleared once, each change written to the
//! outbox for HQ in the same atomic write as the state that decides it, so a restart
//! neither repeats nor loses one and HQ gets each exactly once, after any outage.
//!
//! | alert | subject | raised | cleared |
//! |---|---|---|---|
//! | `temperature` | `chilled` | chilled goods above the limit for the hold time ([`TempWatch`]) | a technician clears it, once cold again |
//! | `door_open` | `door` | the door switch reads open | it reads closed |
//! | `slot_low` | the slot | its count falls below par (and is not empty) | refilled or counted to par, or empty |
//! | `slot_empty` | the slot | its count reaches 0 | refilled or counted above 0 |
//! | `dispense_failure` | the slot | a vend from it was not dispensed (empty spiral, jam, no drop) | a later vend from it drops |
//! | `payment_device` | `cashless` | the reader failed or could not be reached during a vend | a later vend is paid |
//!
//! While `temperature` is raised, chilled slots do not sell.
//!
//! | key | value |
//! |---|---|
//! | `v/a/` alert, 0, subject | [`ActiveAlert`] |
//! | `v/t` | [`TempWatch`] |

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{VendError, Vending};
use crate::domain::vending::climate::{TempChange, TempPolicy, TempWatch};
use crate::domain::vending::vend::VendFault;
use crate::domain::vending::{Slot, VendRecord, VendState};
use crate::store::outbox::events::{EventBody, enqueue_tx};
use crate::store::{Store, StoreError, Tx, from_json, to_json};

const ALERT: &[u8] = b"v/a/";
const TEMP: &[u8] = b"v/t";
/// Most vending alert changes waiting for HQ (the outbox's alert cap); past it, changes
/// are counted, not written, as for every alert.
pub const ALERT_CAP: u64 = 200;

/// An alert that is raised now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActiveAlert {
    /// `temperature`, `door_open`, `slot_low`, ...
    pub alert: String,
    /// What it is about (a slot, `chilled`, `door`).
    pub subject: String,
    /// For people.
    pub message: String,
    /// When it was raised.
    #[serde(with = "time::serde::rfc3339")]
    pub raised_at: OffsetDateTime,
}

fn key(alert: &str, subject: &str) -> Vec<u8> {
    let mut k = ALERT.to_vec();
    k.extend_from_slice(alert.as_bytes());
    k.push(0);
    k.extend_from_slice(subject.as_bytes());
    k
}

/// Raise (`active`) or clear an alert in the caller's write. Only a change is
/// written, and with it the event for HQ. Returns whether it changed.
pub(crate) fn set(
    tx: &mut Tx<'_>,
    alert: &str,
    subject: &str,
    active: bool,
    message: impl FnOnce() -> String,
) -> Result<bool, StoreError> {
    let k = key(alert, subject);
    let was = tx.get(&k)?.is_some();
    if was == active {
        return Ok(false);
    }
    let message = message();
    if active {
        let a = ActiveAlert {
            alert: alert.to_owned(),
            subject: subject.to_owned(),
            message: message.clone(),
            raised_at: OffsetDateTime::now_utc(),
        };
        tx.put(k, to_json(&a));
    } else {
        tx.remove(k);
    }
    enqueue_tx(
        tx,
        EventBody::Alert {
            alert: alert.to_owned(),
            state: if active { "raised" } else { "cleared" }.into(),
            subject: Some(subject.to_owned()),
            message,
        },
        ALERT_CAP,
    )?;
    Ok(true)
}

/// Whether an alert is raised, as the writer sees it.
pub(crate) fn is_raised(tx: &Tx<'_>, alert: &str, subject: &str) -> Result<bool, StoreError> {
    Ok(tx.get(&key(alert, subject))?.is_some())
}

/// Every raised alert.
pub fn active(store: &Store) -> Result<Vec<ActiveAlert>, StoreError> {
    store
        .journal_scan_from(ALERT, ALERT)
        .map(|kv| kv.and_then(|(_, v)| from_json(&v, "vending alert")))
        .collect()
}

/// The slot's level alerts after its count changed (in the same write).
pub(crate) fn slot_levels(tx: &mut Tx<'_>, slot: &Slot) -> Result<(), StoreError> {
    let id = slot.config.slot.to_string();
    let (count, par) = (slot.count, slot.config.par);
    set(tx, "slot_empty", &id, count == 0, || {
        format!("slot {id} is empty")
    })?;
    set(tx, "slot_low", &id, count > 0 && count < par, || {
        format!("slot {id} holds {count}, below its par of {par}")
    })?;
    Ok(())
}

/// The device alerts a finished vend decides (in the write that ends it).
pub(crate) fn after_vend(tx: &mut Tx<'_>, r: &VendRecord) -> Result<(), StoreError> {
    let slot = r.slot.to_string();
    let why = || r.failure.clone().unwrap_or_default();
    match (r.state(), r.fault) {
        (VendState::Failed, Some(VendFault::NotDispensed | VendFault::Dispenser)) => {
            set(tx, "dispense_failure", &slot, true, || {
                format!("a vend from slot {slot} was not dispensed: {}", why())
            })?;
        }
        (VendState::Completed | VendState::Unpaid, _) => {
            set(tx, "dispense_failure", &slot, false, || {
                format!("slot {slot} dispenses again")
            })?;
        }
        _ => {}
    }
    match (r.state(), r.fault) {
        (_, Some(VendFault::Payment)) => {
            set(tx, "payment_device", "cashless", true, || {
                format!("the cashless reader failed during a vend: {}", why())
            })?;
        }
        (VendState::Completed, _) => {
            set(tx, "payment_device", "cashless", false, || {
                "the cashless reader takes payments again".into()
            })?;
        }
        _ => {}
    }
    Ok(())
}

/// The temperature watch, as the writer sees it.
pub(crate) fn temp_watch(tx: &Tx<'_>) -> Result<TempWatch, StoreError> {
    Ok(tx
        .get(TEMP)?
        .map(|v| from_json(&v, "temperature watch"))
        .transpose()?
        .unwrap_or_default())
}

impl Vending {
    /// Take a reading of the machine's sensors at `at`: the temperature watch and
    /// the door switch. Returns how many alerts it raised or cleared.
    pub async fn observe(
        &self,
        milli_celsius: Option<i32>,
        door_open: Option<bool>,
        at: OffsetDateTime,
    ) -> Result<usize, VendError> {
        observe(self.store(), self.temp_policy, milli_celsius, door_open, at).await
    }

    /// A technician clears the temperature excursion: chilled slots sell again.
    /// Refused while still too warm.
    pub async fn clear_temperature(&self) -> Result<(), VendError> {
        clear_temperature(self.store(), self.temp_policy).await
    }
}

/// [`Vending::clear_temperature`] on `store` with `policy`.
pub async fn clear_temperature(store: &Store, policy: TempPolicy) -> Result<(), VendError> {
    store
        .write(move |tx| {
            let mut w = temp_watch(tx)?;
            w.clear(&policy).map_err(|e| VendError::Invalid {
                code: "cannot_clear",
                message: e.to_string(),
                field: None,
            })?;
            tx.put(TEMP.to_vec(), to_json(&w));
            set(tx, "temperature", "chilled", false, || {
                "a technician cleared the temperature excursion".into()
            })?;
            Ok(())
        })
        .await?
}

/// [`Vending::observe`] on `store` with `policy`.
pub async fn observe(
    store: &Store,
    policy: TempPolicy,
    milli_celsius: Option<i32>,
    door_open: Option<bool>,
    at: OffsetDateTime,
) -> Result<usize, VendError> {
    Ok(store
        .write(move |tx| {
            let mut changed = 0;
            if let Some(t) = milli_celsius {
                let mut w = temp_watch(tx)?;
                let before = w;
                if w.observe(&policy, t, at) == Some(TempChange::Raised) {
                    let c = f64::from(t) / 1000.0;
                    changed += usize::from(set(tx, "temperature", "chilled", true, || {
                        format!(
                            "chilled goods above {} m°C for {} min (now {c:.1} °C): chilled \
                             slots stop selling until a technician clears it",
                            policy.limit_milli_c,
                            policy.hold.whole_minutes()
                        )
                    })?);
                }
                if w != before {
                    tx.put(TEMP.to_vec(), to_json(&w));
                }
            }
            if let Some(open) = door_open {
                changed += usize::from(set(tx, "door_open", "door", open, || {
                    if open {
                        "the door is open"
                    } else {
                        "the door is closed"
                    }
                    .into()
                })?);
            }
            Ok::<usize, StoreError>(changed)
        })
        .await??)
}
