//! The offline exposure: card and wallet money the payment terminal approved on its
//! own while it could not reach its acquirer (store-and-forward), and has not
//! forwarded yet. Until it is forwarded the money is not certain, so the store caps
//! it, in total and per card (`docs/payments.md`, "Offline exposure").
//!
//! [`Ledger`] holds the offline approvals by payment key and answers the two
//! questions a checkout asks: would this amount take the store past its cap (asked up
//! front, before the card is known), and did this approval take the store or its card
//! past a cap (asked once the terminal says which card it was).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::money::{Currency, Money, format_money};

/// The largest cap, in minor units (the largest tender amount).
pub const MAX_CAP: i64 = 1_000_000_000_000;

/// The most offline approvals the ledger holds: a terminal's store-and-forward queue
/// is far smaller (`nexo::message::MAX_STORED`).
pub const MAX_ENTRIES: usize = 4096;

/// The caps on offline-approved money, in minor units of the store's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExposureCaps {
    /// At most this much offline-approved money, not yet forwarded, in the store.
    pub store: Money,
    /// At most this much of it on one card (or wallet).
    pub per_card: Money,
}

impl Default for ExposureCaps {
    /// 500.00 in the store and 100.00 per card (in a two-decimal currency).
    fn default() -> Self {
        ExposureCaps {
            store: Money(50_000),
            per_card: Money(10_000),
        }
    }
}

/// Why caps are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 0 to {MAX_CAP} minor units (is {value})")]
pub struct CapsError {
    /// `store` or `per_card`.
    pub field: &'static str,
    /// What was given.
    pub value: i64,
}

impl ExposureCaps {
    /// Check caps from the config file or HQ. 0 accepts nothing offline.
    pub fn parse(store: i64, per_card: i64) -> Result<ExposureCaps, CapsError> {
        for (field, value) in [("store", store), ("per_card", per_card)] {
            if !(0..=MAX_CAP).contains(&value) {
                return Err(CapsError { field, value });
            }
        }
        Ok(ExposureCaps {
            store: Money(store),
            per_card: Money(per_card),
        })
    }
}

/// One payment the terminal approved offline, as the store keeps it until the
/// terminal forwards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineApproval {
    /// The payment key.
    pub key: String,
    /// The card's token as the terminal gave it; `None` when it gave none (all such
    /// payments count as one unknown card).
    pub card: Option<String>,
    /// What was approved.
    pub amount: Money,
}

/// Which cap an approval took the store past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The store's total.
    Store {
        /// Offline-approved money with this payment.
        used: Money,
        /// The cap.
        cap: Money,
    },
    /// One card's total.
    Card {
        /// Offline-approved money on the card with this payment.
        used: Money,
        /// The cap.
        cap: Money,
    },
}

impl Over {
    /// What the cashier is told.
    pub fn message(&self, currency: &Currency) -> String {
        let m = |x: Money| format_money(x, currency);
        match self {
            Over::Store { used, cap } => format!(
                "The payment terminal cannot reach the bank, and this payment would take the \
                 store's offline card total to {} (limit {}). Take cash, or try the card again \
                 once the terminal is back online.",
                m(*used),
                m(*cap)
            ),
            Over::Card { used, cap } => format!(
                "The payment terminal cannot reach the bank, and this payment would take this \
                 card's offline total to {} (limit {}). The card payment was cancelled; take \
                 cash or another card.",
                m(*used),
                m(*cap)
            ),
        }
    }
}

/// The offline approvals not yet forwarded, by payment key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: BTreeMap<String, OfflineApproval>,
}

impl Ledger {
    /// A ledger holding `entries` (read back from disk).
    pub fn from_entries(entries: impl IntoIterator<Item = OfflineApproval>) -> Ledger {
        Ledger {
            entries: entries.into_iter().map(|e| (e.key.clone(), e)).collect(),
        }
    }

    /// The approvals held, by key.
    pub fn entries(&self) -> impl Iterator<Item = &OfflineApproval> {
        self.entries.values()
    }

    /// How many approvals are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Offline-approved money in the store.
    pub fn used(&self) -> Money {
        // Each amount is at most MAX_CAP and there are at most MAX_ENTRIES: no overflow.
        Money(self.entries.values().map(|e| e.amount.0).sum())
    }

    /// Offline-approved money on `card` (`None`: the payments without a card token).
    pub fn used_by(&self, card: Option<&str>) -> Money {
        Money(
            self.entries
                .values()
                .filter(|e| e.card.as_deref() == card)
                .map(|e| e.amount.0)
                .sum(),
        )
    }

    /// The most offline-approved money on any one card.
    pub fn largest_card(&self) -> Money {
        let mut per: BTreeMap<Option<&str>, i64> = BTreeMap::new();
        for e in self.entries.values() {
            *per.entry(e.card.as_deref()).or_default() += e.amount.0;
        }
        Money(per.into_values().max().unwrap_or(0))
    }

    /// Whether `amount` more would take the store past its cap: asked before the
    /// terminal is, when it is known to be offline.
    pub fn would_pass_store(&self, amount: Money, caps: &ExposureCaps) -> Option<Over> {
        let used = Money(self.used().0.saturating_add(amount.0));
        (used > caps.store).then_some(Over::Store {
            used,
            cap: caps.store,
        })
    }

    /// Whether the store, or the card of the approval under `key`, is past its cap.
    pub fn over(&self, key: &str, caps: &ExposureCaps) -> Option<Over> {
        let used = self.used();
        if used > caps.store {
            return Some(Over::Store {
                used,
                cap: caps.store,
            });
        }
        let card = self.entries.get(key)?.card.as_deref();
        let used = self.used_by(card);
        (used > caps.per_card).then_some(Over::Card {
            used,
            cap: caps.per_card,
        })
    }

    /// Hold an approval. Refused (false) when the ledger is full.
    pub fn insert(&mut self, approval: OfflineApproval) -> bool {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&approval.key) {
            return false;
        }
        self.entries.insert(approval.key.clone(), approval);
        true
    }

    /// Drop the approvals under `keys`.
    pub fn remove(&mut self, keys: &[String]) {
        for k in keys {
            self.entries.remove(k);
        }
    }

    /// Keep only the approvals the terminal still has queued; returns the keys it
    /// forwarded (or reversed) since.
    pub fn keep_queued(&mut self, queued: &HashSet<&str>) -> Vec<String> {
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !queued.contains(k.as_str()))
            .cloned()
            .collect();
        self.remove(&gone);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(key: &str, card: Option<&str>, amount: i64) -> OfflineApproval {
        OfflineApproval {
            key: key.into(),
            card: card.map(Into::into),
            amount: Money(amount),
        }
    }

    fn caps(store: i64, per_card: i64) -> ExposureCaps {
        ExposureCaps::parse(store, per_card).unwrap()
    }

    #[test]
    fn caps_are_checked() {
        assert!(ExposureCaps::parse(0, 0).is_ok());
        assert_eq!(ExposureCaps::parse(-1, 5).unwrap_err().field, "store");
        assert_eq!(
            ExposureCaps::parse(5, MAX_CAP + 1).unwrap_err().field,
            "per_card"
        );
    }

    #[test]
    fn the_store_cap_is_passed_only_above_it() {
        let mut l = Ledger::default();
        let c = caps(1000, 600);
        l.insert(approval("a", Some("x"), 400));
        assert_eq!(l.would_pass_store(Money(600), &c), None);
        assert_eq!(
            l.would_pass_store(Money(601), &c),
            Some(Over::Store {
                used: Money(1001),
                cap: Money(1000)
            })
        );
    }

    #[test]
    fn one_card_past_its_cap_is_over_and_others_are_not() {
        let mut l = Ledger::default();
        let c = caps(10_000, 500);
        l.insert(approval("a", Some("x"), 300));
        l.insert(approval("b", Some("y"), 300));
        assert_eq!(l.over("b", &c), None);
        l.insert(approval("c", Some("x"), 201));
        assert_eq!(
            l.over("c", &c),
            Some(Over::Card {
                used: Money(501),
                cap: Money(500)
            })
        );
        assert_eq!(l.over("b", &c), None);
        // Payments without a token count together as one unknown card.
        l.insert(approval("d", None, 300));
        l.insert(approval("e", None, 300));
        assert!(matches!(l.over("e", &c), Some(Over::Card { .. })));
        assert_eq!(l.largest_card(), Money(600));
        assert_eq!(l.used(), Money(1401));
    }

    #[test]
    fn forwarded_approvals_leave_the_ledger() {
        let mut l = Ledger::from_entries([approval("a", None, 1), approval("b", None, 2)]);
        let gone = l.keep_queued(&HashSet::from(["b"]));
        assert_eq!(gone, ["a"]);
        assert_eq!((l.len(), l.used()), (1, Money(2)));
        assert_eq!(l.keep_queued(&HashSet::new()), ["b"]);
        assert!(l.is_empty());
    }

    #[test]
    fn a_full_ledger_refuses_more() {
        let mut l = Ledger::default();
        for i in 0..MAX_ENTRIES {
            assert!(l.insert(approval(&i.to_string(), None, 1)));
        }
        assert!(!l.insert(approval("one-more", None, 1)));
    }

    #[test]
    fn the_cashier_reads_amounts_in_the_currency() {
        let eur = Currency::parse("EUR").unwrap();
        let m = Over::Store {
            used: Money(50_100),
            cap: Money(50_000),
        }
        .message(&eur);
        assert!(m.contains("to 501.00 EUR (limit 500.00 EUR)"), "{m}");
        assert!(m.contains("cash"), "{m}");
    }
}
