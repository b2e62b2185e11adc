//! Customers and vouchers as HQ pushes them, how a checkout names a customer, and what
//! a sale records of both.
//!
//! A customer is no more than loyalty needs: HQ's id, the card numbers or barcodes it
//! may be identified by, a tier, and its points account. No name, no address.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::account::HqBalance;
use crate::domain::money::Money;

/// Most cards one customer may have.
pub const MAX_CARDS: usize = 8;

/// A loyalty customer, as this unit holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    /// HQ's id.
    pub id: String,
    /// Loyalty card numbers or barcodes that identify the customer.
    pub cards: Vec<String>,
    /// The tier, whose multiplier the rules give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The points account, as HQ last pushed it.
    pub points: HqBalance,
}

/// A gift card or voucher, as this unit holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Voucher {
    /// HQ's id: what sales record (the code is a bearer secret and stays out of them).
    pub id: String,
    /// The code printed on the card or voucher, which the tender gives.
    pub code: String,
    /// The money account in minor units of the store's currency, as HQ last pushed it.
    pub balance: HqBalance,
}

/// How a checkout names its customer: by HQ's id or by a loyalty card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerRef {
    /// HQ's customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A loyalty card number or the barcode scanned from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<String>,
}

/// What a sale records of loyalty: the points it earned and redeemed, the vouchers it
/// used, and the balances after it as the selling unit knew them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct SaleLoyalty {
    /// The customer's tier when the sale was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Points earned by the sale.
    #[serde(default)]
    pub points_earned: i64,
    /// Points redeemed as a tender.
    #[serde(default)]
    pub points_redeemed: i64,
    /// The customer's points after the sale, as this unit knows them (HQ's balance
    /// wins when it comes back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_balance: Option<i64>,
    /// Vouchers redeemed, in tender order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vouchers: Vec<VoucherUse>,
}

/// One voucher tender of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VoucherUse {
    /// HQ's id of the voucher.
    pub voucher_id: String,
    /// What it paid.
    pub amount: Money,
    /// What is left on it after the sale, as this unit knows it.
    pub balance: i64,
}

/// Why a customer or voucher record from HQ is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct LoyaltyRecordError {
    /// The field at fault.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: &str, reason: &str) -> LoyaltyRecordError {
    LoyaltyRecordError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// An id, card number or voucher code: 1 to 64 printable ASCII characters without
/// spaces (barcodes and HQ's ids are).
pub fn check_token(field: &str, s: &str) -> Result<(), LoyaltyRecordError> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            field,
            "must be 1 to 64 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

fn check_balance(field: &str, b: &HqBalance) -> Result<(), LoyaltyRecordError> {
    // The balance itself may be below 0: the offline limit lets a card overspend by
    // at most its limit, and HQ's ledger says so.
    const MAX: i64 = 1_000_000_000_000;
    if b.balance.abs() > MAX {
        return Err(err(&format!("{field}.balance"), "is out of range"));
    }
    for (name, v) in [
        ("counted_redeemed", b.counted_redeemed),
        ("counted_earned", b.counted_earned),
        ("allowance", b.allowance),
    ] {
        if !(0..=MAX).contains(&v) {
            return Err(err(
                &format!("{field}.{name}"),
                "must be between 0 and 10^12",
            ));
        }
    }
    Ok(())
}

/// Checks a customer record from HQ.
pub fn check_customer(c: &Customer) -> Result<(), LoyaltyRecordError> {
    check_token("id", &c.id)?;
    if c.cards.len() > MAX_CARDS {
        return Err(err("cards", "at most 8 cards per customer"));
    }
    for (i, card) in c.cards.iter().enumerate() {
        check_token(&format!("cards[{i}]"), card)?;
    }
    if let Some(t) = &c.tier
        && (t.is_empty() || t.chars().count() > 64)
    {
        return Err(err("tier", "must be 1 to 64 characters"));
    }
    check_balance("points", &c.points)
}

/// Checks a voucher record from HQ.
pub fn check_voucher(v: &Voucher) -> Result<(), LoyaltyRecordError> {
    check_token("id", &v.id)?;
    check_token("code", &v.code)?;
    check_balance("balance", &v.balance)
}

impl CustomerRef {
    /// The customer with loyalty card (or barcode) `card`: what the shopper page and a
    /// scanner give.
    pub fn card(card: impl Into<String>) -> CustomerRef {
        CustomerRef {
            id: None,
            card: Some(card.into()),
        }
    }

    /// The customer with HQ's id `id`.
    pub fn id(id: impl Into<String>) -> CustomerRef {
        CustomerRef {
            id: Some(id.into()),
            card: None,
        }
    }

    /// Exactly one of `id` and `card`, well formed.
    pub fn check(&self) -> Result<(), LoyaltyRecordError> {
        match (&self.id, &self.card) {
            (Some(id), None) => check_token("customer.id", id),
            (None, Some(card)) => check_token("customer.card", card),
            _ => Err(err("customer", "give id or card, exactly one")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> Customer {
        Customer {
            id: "c-1".into(),
            cards: vec!["2900000000017".into()],
            tier: Some("gold".into()),
            points: HqBalance {
                balance: 100,
                counted_redeemed: 0,
                counted_earned: 0,
                allowance: 50,
            },
        }
    }

    #[test]
    fn each_bad_field_of_a_customer_is_named() {
        check_customer(&customer()).unwrap();
        let mut c = customer();
        c.id = "has space".into();
        assert_eq!(check_customer(&c).unwrap_err().field, "id");
        let mut c = customer();
        c.cards = vec!["1".into(); 9];
        assert_eq!(check_customer(&c).unwrap_err().field, "cards");
        let mut c = customer();
        c.cards = vec!["".into()];
        assert_eq!(check_customer(&c).unwrap_err().field, "cards[0]");
        let mut c = customer();
        c.tier = Some(String::new());
        assert_eq!(check_customer(&c).unwrap_err().field, "tier");
        let mut c = customer();
        c.points.allowance = -1;
        assert_eq!(check_customer(&c).unwrap_err().field, "points.allowance");
        let mut c = customer();
        c.points.balance = -20;
        check_customer(&c).unwrap();
    }

    #[test]
    fn a_customer_ref_names_exactly_one_way() {
        let r = |id: Option<&str>, card: Option<&str>| CustomerRef {
            id: id.map(Into::into),
            card: card.map(Into::into),
        };
        r(Some("c-1"), None).check().unwrap();
        r(None, Some("123")).check().unwrap();
        assert_eq!(r(None, None).check().unwrap_err().field, "customer");
        assert_eq!(
            r(Some("a"), Some("b")).check().unwrap_err().field,
            "customer"
        );
        assert_eq!(
            r(None, Some("")).check().unwrap_err().field,
            "customer.card"
        );
    }

    #[test]
    fn a_voucher_needs_an_id_and_a_code() {
        let v = Voucher {
            id: "v-1".into(),
            code: "GIFT-1234".into(),
            balance: HqBalance::default(),
        };
        check_voucher(&v).unwrap();
        let mut bad = v.clone();
        bad.code = "é".into();
        assert_eq!(check_voucher(&bad).unwrap_err().field, "code");
    }
}
