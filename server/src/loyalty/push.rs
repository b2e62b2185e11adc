//! Applying what HQ pushes: the loyalty rules, and customers and vouchers with their
//! balances as a snapshot (replaces them all) or a delta (on the live version).
//!
//! A push is checked whole before anything is written; then one writer job checks the
//! version and writes it all, or nothing (a card or code that would belong to two
//! records is refused inside that job). This unit's totals are never touched: HQ's
//! `counted_*` say how much of them each pushed balance already counts.

use std::collections::HashSet;

use crate::domain::loyalty::{Customer, LoyaltyRules, Voucher, check_customer, check_voucher};
use crate::store::{Store, StoreError, Tx, keys};

use super::{
    HEAD, RULES, Stored, card_in, card_key, customer_in, customer_key, head_in, put, rules_in,
    voucher_code_in, voucher_id_key, voucher_in, voucher_key,
};

/// Most customers, and most vouchers, one push may carry.
pub const MAX_PUSH: usize = 100_000;

/// Customers and vouchers from HQ.
#[derive(Debug, Clone, Default)]
pub struct AccountsPush {
    /// The version this push creates.
    pub version: u64,
    /// True: replaces every customer and voucher; false: a delta on `base_version`.
    pub snapshot: bool,
    /// For a delta: the version it applies to.
    pub base_version: u64,
    /// Customers added or replaced.
    pub customers: Vec<Customer>,
    /// Customer ids removed (delta only).
    pub removed_customers: Vec<String>,
    /// Vouchers added or replaced.
    pub vouchers: Vec<Voucher>,
    /// Voucher ids removed (delta only).
    pub removed_vouchers: Vec<String>,
}

/// Why a push was refused; nothing of it was applied.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// A malformed entry (the field names it).
    #[error("{field}: {reason}")]
    Invalid {
        /// Where.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Out of order: a version not newer than the live one, or a delta on another base.
    #[error("{0}")]
    Stale(String),
    /// More than [`MAX_PUSH`] entries.
    #[error("{0}")]
    TooLarge(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: String, reason: impl Into<String>) -> PushError {
    PushError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Replace the loyalty rules with `rules` at `version` (which must be newer).
pub async fn rules(store: &Store, version: u64, rules: LoyaltyRules) -> Result<(), PushError> {
    store
        .write(move |tx| {
            if let Some((live, _)) = rules_in(tx)?
                && version <= live
            {
                return Err(PushError::Stale(format!(
                    "loyalty rules version {version} is not newer than the live version {live}"
                )));
            }
            put(tx, RULES.to_vec(), &Stored::Rules { version, rules });
            Ok(())
        })
        .await?
}

/// Check a push whole, without the store.
pub fn check(push: &AccountsPush) -> Result<(), PushError> {
    if push.customers.len() > MAX_PUSH || push.vouchers.len() > MAX_PUSH {
        return Err(PushError::TooLarge(format!(
            "a push carries at most {MAX_PUSH} customers and {MAX_PUSH} vouchers"
        )));
    }
    if push.snapshot && !(push.removed_customers.is_empty() && push.removed_vouchers.is_empty()) {
        return Err(invalid(
            "removed_customers".into(),
            "a snapshot replaces everything: it removes nothing by name",
        ));
    }
    if !push.snapshot && push.version <= push.base_version {
        return Err(invalid(
            "version".into(),
            format!(
                "a delta's version {} must be newer than its base {}",
                push.version, push.base_version
            ),
        ));
    }
    let mut ids = HashSet::new();
    let mut cards = HashSet::new();
    for (i, c) in push.customers.iter().enumerate() {
        check_customer(c).map_err(|e| invalid(format!("customers[{i}].{}", e.field), e.reason))?;
        if !ids.insert(c.id.as_str()) {
            return Err(invalid(format!("customers[{i}].id"), "given twice"));
        }
        for (j, card) in c.cards.iter().enumerate() {
            if !cards.insert(card.as_str()) {
                return Err(invalid(
                    format!("customers[{i}].cards[{j}]"),
                    "the card is given to two customers",
                ));
            }
        }
    }
    for (i, id) in push.removed_customers.iter().enumerate() {
        if ids.contains(id.as_str()) {
            return Err(invalid(
                format!("removed_customers[{i}]"),
                "removed and given in the same push",
            ));
        }
    }
    let mut vids = HashSet::new();
    let mut codes = HashSet::new();
    for (i, v) in push.vouchers.iter().enumerate() {
        check_voucher(v).map_err(|e| invalid(format!("vouchers[{i}].{}", e.field), e.reason))?;
        if !vids.insert(v.id.as_str()) {
            return Err(invalid(format!("vouchers[{i}].id"), "given twice"));
        }
        if !codes.insert(v.code.as_str()) {
            return Err(invalid(
                format!("vouchers[{i}].code"),
                "given to two vouchers",
            ));
        }
    }
    for (i, id) in push.removed_vouchers.iter().enumerate() {
        if vids.contains(id.as_str()) {
            return Err(invalid(
                format!("removed_vouchers[{i}]"),
                "removed and given in the same push",
            ));
        }
    }
    Ok(())
}

/// Apply a checked push in one writer job.
pub async fn accounts(store: &Store, push: AccountsPush) -> Result<(), PushError> {
    check(&push)?;
    store.write(move |tx| apply(tx, push)).await?
}

fn remove_customer(tx: &mut Tx<'_>, c: &Customer) {
    for card in &c.cards {
        tx.remove(card_key(card));
    }
    tx.remove(customer_key(&c.id));
}

fn remove_voucher(tx: &mut Tx<'_>, v: &Voucher) {
    tx.remove(voucher_key(&v.code));
    tx.remove(voucher_id_key(&v.id));
}

fn apply(tx: &mut Tx<'_>, push: AccountsPush) -> Result<(), PushError> {
    let live = head_in(tx)?;
    if push.snapshot {
        if push.version <= live {
            return Err(PushError::Stale(format!(
                "accounts snapshot version {} is not newer than the live version {live}",
                push.version
            )));
        }
        for (_, v) in tx.scan_prefix(keys::LOYALTY)? {
            match crate::store::from_json::<Stored>(&v, "loyalty record")? {
                Stored::Customer(c) => remove_customer(tx, &c),
                Stored::Voucher(v) => remove_voucher(tx, &v),
                _ => {}
            }
        }
    } else {
        if push.base_version != live {
            return Err(PushError::Stale(format!(
                "accounts delta on version {} but this unit holds version {live}: push a snapshot or the delta from {live}",
                push.base_version
            )));
        }
        for id in &push.removed_customers {
            if let Some(c) = customer_in(tx, id)? {
                remove_customer(tx, &c);
            }
        }
        for id in &push.removed_vouchers {
            if let Some(v) = voucher_code_in(tx, id)?
                .map(|code| voucher_in(tx, &code))
                .transpose()?
                .flatten()
            {
                remove_voucher(tx, &v);
            }
        }
    }
    for (i, c) in push.customers.into_iter().enumerate() {
        if let Some(old) = customer_in(tx, &c.id)? {
            for card in old.cards.iter().filter(|k| !c.cards.contains(k)) {
                tx.remove(card_key(card));
            }
        }
        for (j, card) in c.cards.iter().enumerate() {
            if let Some(owner) = card_in(tx, card)?
                && owner != c.id
            {
                return Err(invalid(
                    format!("customers[{i}].cards[{j}]"),
                    format!("the card belongs to customer {owner:?}: remove it there first"),
                ));
            }
            put(
                tx,
                card_key(card),
                &Stored::Card {
                    customer_id: c.id.clone(),
                },
            );
        }
        put(tx, customer_key(&c.id), &Stored::Customer(c));
    }
    for (i, v) in push.vouchers.into_iter().enumerate() {
        if let Some(other) = voucher_in(tx, &v.code)?
            && other.id != v.id
        {
            return Err(invalid(
                format!("vouchers[{i}].code"),
                format!("the code belongs to voucher {:?}", other.id),
            ));
        }
        if let Some(old) = voucher_code_in(tx, &v.id)?
            && old != v.code
        {
            tx.remove(voucher_key(&old));
        }
        put(
            tx,
            voucher_id_key(&v.id),
            &Stored::VoucherCode {
                code: v.code.clone(),
            },
        );
        put(tx, voucher_key(&v.code), &Stored::Voucher(v));
    }
    put(
        tx,
        HEAD.to_vec(),
        &Stored::Head {
            version: push.version,
        },
    );
    Ok(())
}
