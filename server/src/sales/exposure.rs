//! Keeping the offline exposure (`domain::exposure`) against the terminal: what it
//! approved offline is written to disk before the sale goes on, what it forwarded
//! leaves the ledger, and card and wallet tenders are refused (up front) or voided
//! (once the card is known) past the caps. `docs/payments.md`, "Offline exposure".
//!
//! | journal key | value |
//! |---|---|
//! | `sf/` payment key | [`OfflineApproval`] JSON: approved offline, not yet forwarded |

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use outpost_peripherals::payment::{Approval, Forwarding};
use serde::Serialize;

use super::{Sales, SellError};
use crate::domain::exposure::{ExposureCaps, Ledger, OfflineApproval, Over};
use crate::domain::money::Money;
use crate::store::{Store, StoreError, from_json, to_json};

/// Journal prefix of the offline approvals.
pub const OFFLINE: &[u8] = b"sf/";

/// How long to wait for the terminal's store-and-forward report; a slow answer
/// leaves the exposure as it was.
const REPORT_TIMEOUT: Duration = Duration::from_secs(3);

fn entry_key(key: &str) -> Vec<u8> {
    [OFFLINE, key.as_bytes()].concat()
}

/// The ledger and caps of one unit, shared by its checkouts, the dashboard and the
/// metrics.
#[derive(Debug)]
pub struct Exposure {
    /// A std mutex: held for bookkeeping only, never across an await. Changed only
    /// after the disk says the same.
    ledger: Mutex<Ledger>,
    /// The config file's caps, in force while HQ has set none.
    configured: ExposureCaps,
    /// The caps in force: HQ's last push, or `configured`.
    caps: Mutex<ExposureCaps>,
    /// What the terminal said last about its acquirer (`None`: not asked yet, or it
    /// does not report store-and-forward).
    host_reachable: Mutex<Option<bool>>,
}

/// The exposure as the dashboard and the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExposureView {
    /// Offline-approved money not yet forwarded, in the store.
    pub used: Money,
    /// The store's cap.
    pub store_cap: Money,
    /// The most of it on one card.
    pub largest_card: Money,
    /// The per-card cap.
    pub per_card_cap: Money,
    /// Offline approvals not yet forwarded.
    pub approvals: usize,
    /// Whether the terminal reached its acquirer when last asked (`None`: unknown).
    pub host_reachable: Option<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the value whole; a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Exposure {
    /// Read the offline approvals kept on disk; the caps are HQ's (`pushed`) or the
    /// config file's.
    pub fn load(
        store: &Store,
        configured: ExposureCaps,
        pushed: Option<ExposureCaps>,
    ) -> Result<Exposure, StoreError> {
        let mut entries = Vec::new();
        for kv in store.journal_scan_from(OFFLINE, OFFLINE) {
            let (_, v) = kv?;
            entries.push(from_json::<OfflineApproval>(&v, "offline approval")?);
        }
        Ok(Exposure {
            ledger: Mutex::new(Ledger::from_entries(entries)),
            configured,
            caps: Mutex::new(pushed.unwrap_or(configured)),
            host_reachable: Mutex::new(None),
        })
    }

    /// The caps in force.
    pub fn caps(&self) -> ExposureCaps {
        *lock(&self.caps)
    }

    /// Use the caps HQ pushed, or the config file's when it pushed none; the next
    /// checkout uses them.
    pub fn set_pushed(&self, pushed: Option<ExposureCaps>) {
        *lock(&self.caps) = pushed.unwrap_or(self.configured);
    }

    /// Where the exposure stands.
    pub fn view(&self) -> ExposureView {
        let caps = self.caps();
        let ledger = lock(&self.ledger);
        ExposureView {
            used: ledger.used(),
            store_cap: caps.store,
            largest_card: ledger.largest_card(),
            per_card_cap: caps.per_card,
            approvals: ledger.len(),
            host_reachable: *lock(&self.host_reachable),
        }
    }
}

impl Sales {
    /// Use `exposure` for every checkout from now on.
    pub fn with_exposure(mut self, exposure: std::sync::Arc<Exposure>) -> Self {
        self.exposure = Some(exposure);
        self
    }

    /// The offline exposure, when this unit keeps one.
    pub fn exposure(&self) -> Option<&Exposure> {
        self.exposure.as_deref()
    }

    /// Ask the terminal what it still has queued and drop what it forwarded from the
    /// ledger (disk first). `None` when there is no terminal or it cannot say.
    pub async fn refresh_exposure(&self) -> Option<Forwarding> {
        let (exposure, terminal) = (self.exposure.as_ref()?, self.terminal.as_ref()?);
        // Taken before asking: an approval kept after the terminal answered may not be
        // in its answer yet, and must not be taken for forwarded.
        let before = lock(&exposure.ledger).clone();
        let f = match tokio::time::timeout(REPORT_TIMEOUT, terminal.forwarding()).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "The terminal did not report its store-and-forward queue");
                *lock(&exposure.host_reachable) = None;
                return None;
            }
            Err(_) => {
                tracing::debug!("The terminal's store-and-forward report timed out");
                return None;
            }
        };
        *lock(&exposure.host_reachable) = Some(f.host_reachable);
        let queued: HashSet<&str> = f.queued.iter().map(|k| k.0.as_str()).collect();
        let gone = before.clone().keep_queued(&queued);
        if !gone.is_empty() {
            let keys = gone.clone();
            let written = self
                .store
                .write(move |tx| {
                    for k in &keys {
                        tx.remove(entry_key(k));
                    }
                    Ok::<(), StoreError>(())
                })
                .await;
            if let Err(e) | Ok(Err(e)) = written {
                tracing::warn!(error = %e, "Could not drop forwarded offline approvals; kept for now");
                return Some(f);
            }
            let mut ledger = lock(&exposure.ledger);
            ledger.remove(&gone);
            tracing::info!(
                forwarded = gone.len(),
                left = ledger.len(),
                "The terminal forwarded offline approvals"
            );
        }
        Some(f)
    }

    /// Refuse `amount` more on the terminal before it is asked, when the terminal says
    /// it cannot reach its acquirer and the amount would take the store past its cap.
    /// A terminal that cannot say is not refused here: its approval is checked after.
    pub(crate) async fn refuse_offline_up_front(&self, amount: Money) -> Result<(), SellError> {
        if amount.0 == 0 {
            return Ok(());
        }
        let Some(exposure) = self.exposure.as_ref() else {
            return Ok(());
        };
        let Some(f) = self.refresh_exposure().await else {
            return Ok(());
        };
        if f.host_reachable {
            return Ok(());
        }
        let over = lock(&exposure.ledger).would_pass_store(amount, &exposure.caps());
        match over {
            Some(over) => Err(SellError::OfflineLimit(
                over.message(&self.config().currency),
            )),
            None => Ok(()),
        }
    }

    /// Keep an approval the terminal made offline (on disk, then in the ledger) and
    /// say whether it takes the store or its card past a cap. An online approval
    /// changes nothing.
    pub(crate) async fn admit_offline(
        &self,
        key: &str,
        approval: &Approval,
        amount: Money,
    ) -> Result<Option<Over>, SellError> {
        let Some(exposure) = self.exposure.as_ref() else {
            return Ok(None);
        };
        if !approval.offline {
            return Ok(None);
        }
        let entry = OfflineApproval {
            key: key.to_owned(),
            card: approval.card_id.clone(),
            amount,
        };
        let (k, v) = (entry_key(key), to_json(&entry));
        self.store
            .write(move |tx| {
                tx.put(k, v);
                Ok::<(), StoreError>(())
            })
            .await??;
        let caps = exposure.caps();
        let mut ledger = lock(&exposure.ledger);
        if !ledger.insert(entry) {
            return Ok(Some(Over::Store {
                used: ledger.used(),
                cap: caps.store,
            }));
        }
        tracing::info!(
            key,
            amount = amount.0,
            used = ledger.used().0,
            "The terminal approved a payment offline"
        );
        Ok(ledger.over(key, &caps))
    }
}
