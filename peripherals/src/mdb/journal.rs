//! The driver's journal of payment keys. MDB carries no key, so the driver keeps,
//! for each key, where its vend stands and the item number (the driver's vend
//! sequence number) its VEND REQUEST carried. It lives in memory, bounded by
//! [`JOURNAL_KEYS`].

use std::collections::{HashMap, VecDeque};

use tokio::time::Instant;

use super::driver::JOURNAL_KEYS;
use crate::payment::{Approval, KeyStatus, Outcome, PaymentKey};

/// Where the vend under one key stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    WaitingCard,
    /// VEND REQUEST sent, no answer yet.
    Requested {
        since: Instant,
    },
    Approved {
        amount_minor: i64,
    },
    /// VEND SUCCESS taken: the charge stands.
    Settled,
    Declined(String),
    Reversed,
    /// Resolved after a lost answer: the reader never had the request, or released
    /// it; nothing was charged.
    NeverCharged,
    /// Bound by `resume` to the session the reader kept through a restart of the
    /// controller: a previous process sent VEND REQUEST under the key, and where the
    /// vend stands is known only to the reader until VEND SUCCESS or VEND FAILURE
    /// asks it.
    Inherited,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) state: State,
    /// The item number its VEND REQUEST carried.
    pub(super) item: u16,
    /// VEND SUCCESS or FAILURE was sent for it: when sent again after a lost answer,
    /// out of sequence means the first one arrived.
    pub(super) success_sent: bool,
}

/// The journal: every key's entry, oldest first, bounded by [`JOURNAL_KEYS`].
#[derive(Debug, Default)]
pub(super) struct Book {
    pub(super) entries: HashMap<PaymentKey, Entry>,
    pub(super) order: VecDeque<PaymentKey>,
    /// The key of the vend in progress (waiting, requested or approved).
    pub(super) current: Option<PaymentKey>,
    last_item: u16,
}

impl Book {
    pub(super) fn insert(&mut self, key: PaymentKey, entry: Entry) {
        if self.order.len() >= JOURNAL_KEYS {
            let oldest = self
                .order
                .iter()
                .position(|k| Some(k) != self.current.as_ref());
            if let Some(i) = oldest
                && let Some(k) = self.order.remove(i)
            {
                self.entries.remove(&k);
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, entry);
    }

    pub(super) fn next_item(&mut self) -> u16 {
        self.last_item = if self.last_item >= 0xFFFE {
            1
        } else {
            self.last_item + 1
        };
        self.last_item
    }

    pub(super) fn set(&mut self, key: &PaymentKey, state: State) {
        if let Some(e) = self.entries.get_mut(key) {
            e.state = state;
        }
    }
}

/// The approval the driver reports for vend number `item` (MDB level 1 has no
/// authorization code, so the vend sequence number stands in for it).
pub(super) fn approval(item: u16) -> Approval {
    Approval {
        auth_code: format!("MDB{item:05}"),
        brand: None,
        last4: None,
        ..Approval::default()
    }
}

/// What the terminal says about a key in this state.
pub(super) fn status_of(state: &State, item: u16) -> KeyStatus {
    match state {
        State::WaitingCard | State::Requested { .. } | State::Inherited => KeyStatus::InProgress,
        State::Approved { .. } | State::Settled => {
            KeyStatus::Done(Outcome::Approved(approval(item)))
        }
        State::Declined(reason) => KeyStatus::Done(Outcome::Declined {
            reason: reason.clone(),
        }),
        State::Reversed => KeyStatus::Reversed,
        State::NeverCharged => KeyStatus::Unknown,
    }
}
