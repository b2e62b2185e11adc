//! The simulated terminal's state: the truthful journal by ServiceID, the queue of
//! modes, the power switch; and how a payment starts and finishes in it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use outpost_peripherals::nexo::message::*;
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Mode, Recorded, SimOptions};

/// What the journal holds for one key.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    InProgress,
    Charged {
        result: PaymentResult,
    },
    Refunded {
        result: PaymentResult,
    },
    Declined {
        condition: ErrorCondition,
        reason: String,
    },
    Reversed,
}

impl Entry {
    pub(super) fn recorded(&self) -> Recorded {
        match self {
            Entry::InProgress => Recorded::InProgress,
            Entry::Charged { .. } => Recorded::Charged,
            Entry::Refunded { .. } => Recorded::Refunded,
            Entry::Declined { .. } => Recorded::Declined,
            Entry::Reversed => Recorded::Reversed,
        }
    }
}

/// The terminal's bookkeeping, behind [`Shared::lock`].
#[derive(Debug)]
pub(super) struct State {
    pub(super) queue: VecDeque<Mode>,
    pub(super) default: Mode,
    pub(super) journal: HashMap<String, Entry>,
    pub(super) charge_counts: HashMap<String, u32>,
    pub(super) payments_seen: u64,
    pub(super) next_auth: u64,
    /// Wakes a late payment when it is aborted.
    pub(super) aborts: HashMap<String, Arc<Notify>>,
    /// The wallet the next customer holds to the terminal when a payment allows only
    /// wallets (`ApplePay`, ...); without that condition the customer taps a card.
    pub(super) wallet: String,
    /// The token of the card (or wallet) the next customer presents.
    pub(super) card: String,
    /// Whether the acquirer is reachable. While it is not, approvals are made offline
    /// and queued in `stored`; when it comes back the queue is forwarded (emptied).
    pub(super) host_reachable: bool,
    /// Offline approvals not yet forwarded, by ServiceID, oldest first.
    pub(super) stored: VecDeque<String>,
}

/// A request to cut the power for `off_for`; `done` is told once it is off.
pub(super) struct PowerOff {
    pub(super) off_for: Duration,
    pub(super) done: oneshot::Sender<()>,
}

/// What the handle, the serving task and every connection share.
pub(super) struct Shared {
    /// A std mutex: every critical section is bookkeeping, never across an await.
    pub(super) state: Mutex<State>,
    pub(super) options: SimOptions,
    pub(super) powered: AtomicBool,
    pub(super) power_tx: mpsc::Sender<PowerOff>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections leave the journal consistent; a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the `n`th payment falls under an every-N rule.
fn every(n: u64, rule: Option<u64>) -> bool {
    matches!(rule, Some(k) if k > 0 && n.is_multiple_of(k))
}

/// Start a payment: refuse a used key, or record it in progress and pick its mode.
pub(super) fn begin(shared: &Shared, key: &str) -> Result<Mode, ResponseResult> {
    let mut st = shared.lock();
    if st.journal.contains_key(key) {
        return Err(ResponseResult::failure(
            ErrorCondition::NotAllowed,
            "ServiceID already used",
        ));
    }
    if st.journal.len() >= shared.options.journal_capacity {
        return Err(ResponseResult::failure(
            ErrorCondition::UnavailableService,
            "journal full",
        ));
    }
    st.payments_seen += 1;
    let n = st.payments_seen;
    let o = &shared.options;
    let mode = match st.queue.pop_front() {
        Some(m) => m,
        None if every(n, o.power_loss_every) => Mode::PowerLoss {
            charged: true,
            off_for: o.power_off_for,
        },
        None if every(n, o.lose_response_every) => Mode::LoseResponse,
        None if every(n, o.garbage_every) => Mode::Garbage,
        None if every(n, o.late_every) => Mode::Late(o.late_by),
        None if every(n, o.decline_every) => Mode::Decline("Refusal".into()),
        None => st.default.clone(),
    };
    st.journal.insert(key.to_owned(), Entry::InProgress);
    Ok(mode)
}

/// Finish a payment still in progress: charge it, or decline it. Returns what the
/// journal holds afterwards (an abort may have got there first).
pub(super) fn finish(
    shared: &Shared,
    key: &str,
    p: &PaymentRequest,
    decline: Option<String>,
) -> Entry {
    let mut st = shared.lock();
    st.aborts.remove(key);
    match st.journal.get(key) {
        Some(Entry::InProgress) => {}
        Some(other) => return other.clone(),
        // Power was lost meanwhile and the entry dropped: nothing happened.
        None => {
            return Entry::Declined {
                condition: ErrorCondition::Aborted,
                reason: "power lost".into(),
            };
        }
    }
    // A payment that allows only some brands is paid with the customer's wallet,
    // or refused when that wallet is not one of them.
    let brand = match p.allowed_brands() {
        None => Ok("VISA".to_owned()),
        Some(allowed) if allowed.contains(&st.wallet) => Ok(st.wallet.clone()),
        Some(_) => Err(format!("{} is not an allowed payment brand", st.wallet)),
    };
    // Without the acquirer the terminal approves alone, while its queue has room.
    let offline = !st.host_reachable;
    let brand = match brand {
        Ok(_) if offline && st.stored.len() >= shared.options.store_capacity => {
            Err("offline store full; the acquirer cannot be reached".to_owned())
        }
        other => other,
    };
    let entry = match (decline, brand) {
        (Some(reason), _) | (None, Err(reason)) => Entry::Declined {
            condition: ErrorCondition::Refusal,
            reason,
        },
        (None, Ok(brand)) => {
            st.next_auth += 1;
            let result = PaymentResult {
                payment_brand: Some(brand),
                masked_pan: Some(shared.options.masked_pan.clone()),
                approval_code: format!("{:06}", st.next_auth),
                authorized_amount: p.amounts_req.requested_amount,
                currency: p.amounts_req.currency.clone(),
                online_flag: Some(!offline),
                payment_token: Some(PaymentToken {
                    token_value: st.card.clone(),
                }),
            };
            if offline {
                st.stored.push_back(key.to_owned());
            }
            *st.charge_counts.entry(key.to_owned()).or_default() += 1;
            if p.is_refund() {
                Entry::Refunded { result }
            } else {
                Entry::Charged { result }
            }
        }
    };
    st.journal.insert(key.to_owned(), entry.clone());
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_n_rules() {
        assert!(every(4, Some(2)));
        assert!(!every(3, Some(2)));
        assert!(!every(3, None));
        assert!(!every(3, Some(0)));
    }
}
