//! Customers, loyalty points and vouchers on this unit: what HQ pushed, what this unit
//! recorded against them, and the checks a checkout makes (`docs/loyalty.md`).
//!
//! Everything lives in the journal under `l/`, whose keys the store hashes with its
//! keyed hash (`store::keys::physical`), so card numbers and voucher codes never reach
//! the disk in clear, and every value is sealed like the rest of the journal:
//!
//! | logical key | value ([`Stored`]) |
//! |---|---|
//! | `l/r` | the rules and their version |
//! | `l/h` | the accounts push head: its version |
//! | `l/c\0<customer id>` | the customer, with HQ's points balance |
//! | `l/k\0<card>` | the customer id the card belongs to |
//! | `l/v\0<voucher code>` | the voucher, with HQ's balance |
//! | `l/w\0<voucher id>` | the voucher's code |
//! | `l/t\0c\0<customer id>`, `l/t\0v\0<voucher id>` | this unit's all-time totals |
//!
//! The totals are never replaced by a push: HQ says how much of them its balance counts.
//!
//! # Layout
//! - this file: the records, reads for the API and the shopper page.
//! - [`ledger`]: inside a sale's writer job: check the redemptions, record the totals.
//! - [`push`]: applying HQ's rules and accounts pushes.

pub mod ledger;
pub mod push;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::loyalty::{
    AccountView, Customer, LocalTotals, LoyaltyRules, Voucher, check_token,
};
use crate::store::{Store, StoreError, Tx, from_json, to_json};

/// A loyalty record in the journal, tagged so a scan of `l/` can tell them apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Stored {
    /// `l/r`.
    Rules {
        /// HQ's version.
        version: u64,
        /// The rules.
        rules: LoyaltyRules,
    },
    /// `l/h`.
    Head {
        /// The version of the accounts this unit holds.
        version: u64,
    },
    /// `l/c\0…`.
    Customer(Customer),
    /// `l/k\0…`.
    Card {
        /// The customer.
        customer_id: String,
    },
    /// `l/v\0…`.
    Voucher(Voucher),
    /// `l/w\0…`.
    VoucherCode {
        /// The code.
        code: String,
    },
    /// `l/t\0…`.
    Totals(LocalTotals),
}

/// Why a loyalty read or write failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoyaltyError {
    /// No customer with that id or card.
    #[error("no customer with {0}")]
    UnknownCustomer(String),
    /// No voucher with that code.
    #[error("no voucher with that code")]
    UnknownVoucher,
    /// Malformed input (the field says where).
    #[error("{field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// HQ has pushed no loyalty rules, so points can be neither earned nor redeemed.
    #[error("HQ has pushed no loyalty rules to this unit: points cannot be redeemed")]
    NoRules,
    /// A redemption refused by the account's balance or offline limit.
    #[error("{what}: {source}")]
    Redeem {
        /// `points` or `voucher`.
        what: &'static str,
        /// Why.
        source: crate::domain::loyalty::RedeemError,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Key of the rules.
pub(crate) const RULES: &[u8] = b"l/r";
/// Key of the accounts head.
pub(crate) const HEAD: &[u8] = b"l/h";

fn key(kind: &str, id: &str) -> Vec<u8> {
    format!("l/{kind}\0{id}").into_bytes()
}
pub(crate) fn customer_key(id: &str) -> Vec<u8> {
    key("c", id)
}
pub(crate) fn card_key(card: &str) -> Vec<u8> {
    key("k", card)
}
pub(crate) fn voucher_key(code: &str) -> Vec<u8> {
    key("v", code)
}
pub(crate) fn voucher_id_key(id: &str) -> Vec<u8> {
    key("w", id)
}
pub(crate) fn customer_totals_key(id: &str) -> Vec<u8> {
    key("t", &format!("c\0{id}"))
}
pub(crate) fn voucher_totals_key(id: &str) -> Vec<u8> {
    key("t", &format!("v\0{id}"))
}

/// Where loyalty records are read from: the store outside a writer job, or the job's
/// own view inside one.
pub(crate) trait Read {
    fn read(&self, key: &[u8]) -> Result<Option<Stored>, StoreError>;
}

impl Read for Store {
    fn read(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.journal_get(key)?
            .map(|v| from_json(&v, "loyalty record"))
            .transpose()
    }
}

impl Read for Tx<'_> {
    fn read(&self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        self.get(key)?
            .map(|v| from_json(&v, "loyalty record"))
            .transpose()
    }
}

pub(crate) fn put(tx: &mut Tx<'_>, key: Vec<u8>, value: &Stored) {
    tx.put(key, to_json(value));
}

fn wrong(what: &str) -> StoreError {
    StoreError::Corrupt(format!("a loyalty {what} record holds another kind"))
}

pub(crate) fn rules_in(r: &impl Read) -> Result<Option<(u64, LoyaltyRules)>, StoreError> {
    match r.read(RULES)? {
        None => Ok(None),
        Some(Stored::Rules { version, rules }) => Ok(Some((version, rules))),
        Some(_) => Err(wrong("rules")),
    }
}

pub(crate) fn head_in(r: &impl Read) -> Result<u64, StoreError> {
    match r.read(HEAD)? {
        None => Ok(0),
        Some(Stored::Head { version }) => Ok(version),
        Some(_) => Err(wrong("head")),
    }
}

pub(crate) fn customer_in(r: &impl Read, id: &str) -> Result<Option<Customer>, StoreError> {
    match r.read(&customer_key(id))? {
        None => Ok(None),
        Some(Stored::Customer(c)) => Ok(Some(c)),
        Some(_) => Err(wrong("customer")),
    }
}

pub(crate) fn card_in(r: &impl Read, card: &str) -> Result<Option<String>, StoreError> {
    match r.read(&card_key(card))? {
        None => Ok(None),
        Some(Stored::Card { customer_id }) => Ok(Some(customer_id)),
        Some(_) => Err(wrong("card")),
    }
}

pub(crate) fn voucher_in(r: &impl Read, code: &str) -> Result<Option<Voucher>, StoreError> {
    match r.read(&voucher_key(code))? {
        None => Ok(None),
        Some(Stored::Voucher(v)) => Ok(Some(v)),
        Some(_) => Err(wrong("voucher")),
    }
}

pub(crate) fn voucher_code_in(r: &impl Read, id: &str) -> Result<Option<String>, StoreError> {
    match r.read(&voucher_id_key(id))? {
        None => Ok(None),
        Some(Stored::VoucherCode { code }) => Ok(Some(code)),
        Some(_) => Err(wrong("voucher id")),
    }
}

pub(crate) fn totals_in(r: &impl Read, key: &[u8]) -> Result<LocalTotals, StoreError> {
    match r.read(key)? {
        None => Ok(LocalTotals::default()),
        Some(Stored::Totals(t)) => Ok(t),
        Some(_) => Err(wrong("totals")),
    }
}

/// A customer as the API shows it: HQ's record and the points as this unit knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CustomerView {
    /// HQ's id.
    pub id: String,
    /// The tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The points: balance, what HQ has not counted yet, what may be redeemed now.
    pub points: AccountView,
    /// What one point pays, in minor units (absent until HQ pushes loyalty rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_value: Option<i64>,
}

fn view_of(store: &Store, c: Customer) -> Result<CustomerView, StoreError> {
    let local = totals_in(store, &customer_totals_key(&c.id))?;
    Ok(CustomerView {
        points: AccountView::of(c.points, local),
        point_value: rules_in(store)?.map(|(_, r)| r.point_value),
        id: c.id,
        tier: c.tier,
    })
}

/// The customer with loyalty card (or barcode) `card`: for staff, terminals and the
/// shopper page. `Ok(None)`: no such card.
pub fn customer_by_card(store: &Store, card: &str) -> Result<Option<CustomerView>, LoyaltyError> {
    check_token("card", card).map_err(invalid)?;
    let Some(id) = card_in(store, card)? else {
        return Ok(None);
    };
    Ok(customer_in(store, &id)?
        .map(|c| view_of(store, c))
        .transpose()?)
}

/// The customer with HQ's id `id`.
pub fn customer_by_id(store: &Store, id: &str) -> Result<Option<CustomerView>, LoyaltyError> {
    check_token("id", id).map_err(invalid)?;
    Ok(customer_in(store, id)?
        .map(|c| view_of(store, c))
        .transpose()?)
}

/// The version of the accounts and of the rules this unit holds (0: none pushed).
pub fn versions(store: &Store) -> Result<(u64, u64), StoreError> {
    Ok((head_in(store)?, rules_in(store)?.map_or(0, |(v, _)| v)))
}

pub(crate) fn invalid(e: crate::domain::loyalty::LoyaltyRecordError) -> LoyaltyError {
    LoyaltyError::Invalid {
        field: e.field,
        reason: e.reason,
    }
}

#[cfg(test)]
mod tests;
