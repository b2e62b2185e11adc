//! Pricing a cart: line amounts, promotions, taxes and the total the customer pays.
//!
//! # Rules
//!
//! - Line gross: unit price × units, or for weighed items
//!   `div_round_half_up(price_per_kg × grams, 1000)`.
//! - Promotions come from [`apply_promotions`]; line total = gross − discount.
//! - Tax is computed **per tax class on the sum of that class's line totals**, not per
//!   line: rounding once per class instead of once per line keeps the rounding error to
//!   at most half a minor unit per class, and it is how invoices and tax returns state
//!   tax (one amount per rate).
//!   - Prices including tax: `tax = div_round_half_up(sum × rate, 10000 + rate)`, the tax
//!     share contained in the sum; the customer pays the sum of line totals.
//!   - Prices excluding tax: `tax = div_round_half_up(sum × rate, 10000)`, added on top;
//!     the customer pays the line totals plus the tax.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::money::{Currency, Money, div_round_half_up};
pub use super::product::Quantity;
use super::product::{Product, Sku, SoldBy};
use super::promotion::{PromoLine, PromotionSet, apply_promotions};

/// Most lines in one cart; bounds the work of one pricing call.
pub const MAX_LINES: usize = 500;
/// Most units of an each-item on one line; more is almost certainly a scanning mistake.
pub const MAX_UNITS: u32 = 9_999;
/// Most grams on one weight line (100 kg).
pub const MAX_GRAMS: u32 = 100_000;

/// The store's tax rates; part of the store configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxConfig {
    /// Whether shelf prices already contain tax (usual in Europe) or tax is added at the
    /// till (usual in North America).
    pub prices_include_tax: bool,
    /// Rate per tax class in basis points (2000 = 20 %).
    pub rates_bp: BTreeMap<String, u32>,
}

/// One line of a cart to price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CartItem {
    /// The product as currently in the catalogue.
    pub product: Product,
    /// How much of it.
    pub quantity: Quantity,
}

/// A priced line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PricedLine {
    /// Product key.
    pub sku: Sku,
    /// Product name at the time of sale.
    pub name: String,
    /// Product category at the time of sale.
    pub category: String,
    /// Tax class the line was taxed under.
    pub tax_class: String,
    /// Whether `unit_price` is per unit or per kilogram.
    pub sold_by: SoldBy,
    /// Units or grams.
    pub quantity: Quantity,
    /// Per unit, or per kilogram for weighed items.
    pub unit_price: Money,
    /// Before discount.
    pub gross: Money,
    /// Taken off by the promotion (zero if none, or if the line only paid its part of a
    /// pooled promotion).
    pub discount: Money,
    /// Promotion that used this line, if any.
    pub promotion_id: Option<String>,
    /// Its name, for receipts.
    pub promotion_name: Option<String>,
    /// `gross - discount`.
    pub total: Money,
    /// The vending slot the unit dropped from (`B7`); absent for a till's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
}

/// Tax of one class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaxLine {
    /// The class, e.g. `reduced`.
    pub tax_class: String,
    /// Its rate in basis points.
    pub rate_bp: u32,
    /// Sum of the line totals of the class (tax included or not, as configured).
    pub base: Money,
    /// Tax on `base`.
    pub tax: Money,
}

/// A fully priced cart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PricedCart {
    /// Currency of every amount.
    pub currency: Currency,
    /// Lines in cart order.
    pub lines: Vec<PricedLine>,
    /// Sum of line gross amounts.
    pub subtotal: Money,
    /// Sum of line discounts.
    pub discount_total: Money,
    /// One entry per tax class present, sorted by class.
    pub taxes: Vec<TaxLine>,
    /// Sum of `taxes`.
    pub tax_total: Money,
    /// What the customer pays.
    pub total: Money,
    /// Copied from the tax configuration, so the cart can be displayed on its own.
    pub prices_include_tax: bool,
    /// Some line needs an age check before the sale can complete.
    pub age_restricted: bool,
}

/// Why a cart could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// No lines.
    #[error("the cart is empty")]
    EmptyCart,
    /// More than [`MAX_LINES`] lines.
    #[error("the cart has {count} lines; at most {MAX_LINES} are allowed")]
    TooManyLines {
        /// Number of lines given.
        count: usize,
    },
    /// A product in another currency than the first line's.
    #[error("line {line} is priced in {found}, the cart in {expected}")]
    MixedCurrency {
        /// Index of the offending line.
        line: usize,
        /// Currency of the first line.
        expected: Currency,
        /// Currency of this line.
        found: Currency,
    },
    /// The product is not for sale.
    #[error("line {line}: product {sku} is inactive")]
    Inactive {
        /// Index of the offending line.
        line: usize,
        /// The product.
        sku: Sku,
    },
    /// Units for a weighed product or grams for an each-product.
    #[error("line {line}: product is sold by {sold_by:?}, the quantity does not match")]
    QuantityKind {
        /// Index of the offending line.
        line: usize,
        /// How the product is sold.
        sold_by: SoldBy,
    },
    /// Units outside 1..=9999 or grams outside 1..=100000.
    #[error(
        "line {line}: quantity {quantity:?} is out of range (1..={MAX_UNITS} units or 1..={MAX_GRAMS} g)"
    )]
    Quantity {
        /// Index of the offending line.
        line: usize,
        /// The rejected quantity.
        quantity: Quantity,
    },
    /// The product's tax class has no configured rate.
    #[error("line {line}: tax class {class:?} has no configured rate")]
    UnknownTaxClass {
        /// Index of the offending line.
        line: usize,
        /// The unknown class.
        class: String,
    },
    /// A negative shelf price (a corrupt product; validation forbids it).
    #[error("line {line}: price is negative")]
    NegativePrice {
        /// Index of the offending line.
        line: usize,
    },
    /// An amount does not fit in 64 bits.
    #[error("amount overflow{}", .line.map(|l| format!(" on line {l}")).unwrap_or_default())]
    Overflow {
        /// The line whose amount overflowed, or `None` for a cart total.
        line: Option<usize>,
    },
}

impl PricingError {
    /// The index of the line at fault, when one line is.
    pub fn line(&self) -> Option<usize> {
        match self {
            PricingError::EmptyCart | PricingError::TooManyLines { .. } => None,
            PricingError::MixedCurrency { line, .. }
            | PricingError::Inactive { line, .. }
            | PricingError::QuantityKind { line, .. }
            | PricingError::Quantity { line, .. }
            | PricingError::UnknownTaxClass { line, .. }
            | PricingError::NegativePrice { line } => Some(*line),
            PricingError::Overflow { line } => *line,
        }
    }
}

/// Gross amount of one line, checking that the quantity fits the product.
fn line_gross(line: usize, item: &CartItem) -> Result<Money, PricingError> {
    let price = item.product.price;
    let overflow = PricingError::Overflow { line: Some(line) };
    match (item.product.sold_by, item.quantity) {
        (SoldBy::Each, Quantity::Units(units)) => {
            if !(1..=MAX_UNITS).contains(&units) {
                return Err(PricingError::Quantity {
                    line,
                    quantity: item.quantity,
                });
            }
            price.checked_mul(i64::from(units)).ok_or(overflow)
        }
        (SoldBy::Weight, Quantity::Grams(grams)) => {
            if !(1..=MAX_GRAMS).contains(&grams) {
                return Err(PricingError::Quantity {
                    line,
                    quantity: item.quantity,
                });
            }
            let gross = div_round_half_up(i128::from(price.minor()) * i128::from(grams), 1000);
            i64::try_from(gross).map(Money).map_err(|_| overflow)
        }
        (sold_by, _) => Err(PricingError::QuantityKind { line, sold_by }),
    }
}

/// Prices a cart at time `at` (which decides the active promotions). See the module
/// docs for the rules; errors report the first offending line.
pub fn price_cart(
    items: &[CartItem],
    promotions: &PromotionSet,
    tax: &TaxConfig,
    at: OffsetDateTime,
) -> Result<PricedCart, PricingError> {
    let first = items.first().ok_or(PricingError::EmptyCart)?;
    if items.len() > MAX_LINES {
        return Err(PricingError::TooManyLines { count: items.len() });
    }
    let currency = first.product.currency;

    let mut promo_lines = Vec::with_capacity(items.len());
    let mut rates = Vec::with_capacity(items.len());
    for (line, item) in items.iter().enumerate() {
        let product = &item.product;
        if product.currency != currency {
            return Err(PricingError::MixedCurrency {
                line,
                expected: currency,
                found: product.currency,
            });
        }
        if !product.active {
            return Err(PricingError::Inactive {
                line,
                sku: product.sku.clone(),
            });
        }
        if product.price.is_negative() {
            return Err(PricingError::NegativePrice { line });
        }
        let gross = line_gross(line, item)?;
        let rate =
            *tax.rates_bp
                .get(&product.tax_class)
                .ok_or_else(|| PricingError::UnknownTaxClass {
                    line,
                    class: product.tax_class.clone(),
                })?;
        rates.push(rate);
        promo_lines.push(PromoLine {
            sku: product.sku.clone(),
            category: product.category.clone(),
            unit_price: product.price,
            quantity: item.quantity,
            gross,
        });
    }

    let discounts = apply_promotions(promotions, &promo_lines, at);

    let mut lines = Vec::with_capacity(items.len());
    // Class -> (rate, sum of line totals); a BTreeMap so tax lines come out sorted.
    let mut by_class: BTreeMap<&str, (u32, Money)> = BTreeMap::new();
    for (line, ((item, promo_line), discount)) in
        items.iter().zip(promo_lines).zip(discounts).enumerate()
    {
        let product = &item.product;
        let amount = discount.as_ref().map_or(Money::zero(), |d| d.amount);
        let total = promo_line
            .gross
            .checked_sub(amount)
            .ok_or(PricingError::Overflow { line: Some(line) })?;
        let entry = by_class
            .entry(product.tax_class.as_str())
            .or_insert((rates[line], Money::zero()));
        entry.1 = entry
            .1
            .checked_add(total)
            .ok_or(PricingError::Overflow { line: Some(line) })?;
        let (promotion_id, promotion_name) = match discount {
            Some(d) => (Some(d.promotion_id), Some(d.promotion_name)),
            None => (None, None),
        };
        lines.push(PricedLine {
            sku: promo_line.sku,
            name: product.name.clone(),
            category: promo_line.category,
            tax_class: product.tax_class.clone(),
            sold_by: product.sold_by,
            quantity: item.quantity,
            unit_price: product.price,
            gross: promo_line.gross,
            discount: amount,
            promotion_id,
            promotion_name,
            total,
            slot: None,
        });
    }

    let overflow = PricingError::Overflow { line: None };
    let mut taxes = Vec::with_capacity(by_class.len());
    for (class, (rate, base)) in by_class {
        let scaled = i128::from(base.minor()) * i128::from(rate);
        let tax = if tax.prices_include_tax {
            div_round_half_up(scaled, 10_000 + i128::from(rate))
        } else {
            div_round_half_up(scaled, 10_000)
        };
        taxes.push(TaxLine {
            tax_class: class.to_owned(),
            rate_bp: rate,
            base,
            tax: Money(i64::try_from(tax).map_err(|_| overflow.clone())?),
        });
    }

    let subtotal = Money::checked_sum(lines.iter().map(|l| l.gross)).ok_or(overflow.clone())?;
    let discount_total =
        Money::checked_sum(lines.iter().map(|l| l.discount)).ok_or(overflow.clone())?;
    let tax_total = Money::checked_sum(taxes.iter().map(|t| t.tax)).ok_or(overflow.clone())?;
    let lines_total = Money::checked_sum(lines.iter().map(|l| l.total)).ok_or(overflow.clone())?;
    let total = if tax.prices_include_tax {
        lines_total
    } else {
        lines_total.checked_add(tax_total).ok_or(overflow)?
    };

    Ok(PricedCart {
        currency,
        age_restricted: items.iter().any(|i| i.product.age_restricted),
        lines,
        subtotal,
        discount_total,
        taxes,
        tax_total,
        total,
        prices_include_tax: tax.prices_include_tax,
    })
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::domain::promotion::{Promotion, PromotionKind, Target};

    const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

    fn product(sku: &str, price: i64, tax_class: &str, sold_by: SoldBy) -> Product {
        Product {
            sku: Sku::parse(sku).unwrap(),
            barcodes: vec![],
            name: format!("Product {sku}"),
            description: String::new(),
            category: "food".into(),
            price: Money(price),
            currency: Currency::EUR,
            tax_class: tax_class.into(),
            sold_by,
            active: true,
            age_restricted: false,
        }
    }

    fn units(product: Product, n: u32) -> CartItem {
        CartItem {
            product,
            quantity: Quantity::Units(n),
        }
    }

    fn grams(product: Product, g: u32) -> CartItem {
        CartItem {
            product,
            quantity: Quantity::Grams(g),
        }
    }

    fn tax(include: bool) -> TaxConfig {
        TaxConfig {
            prices_include_tax: include,
            rates_bp: [("standard".to_string(), 1900), ("reduced".to_string(), 700)]
                .into_iter()
                .collect(),
        }
    }

    fn price(items: &[CartItem], include: bool) -> Result<PricedCart, PricingError> {
        price_cart(items, &PromotionSet::default(), &tax(include), NOW)
    }

    fn basket() -> Vec<CartItem> {
        vec![
            units(product("MILK", 129, "reduced", SoldBy::Each), 2),
            units(product("BEER", 99, "standard", SoldBy::Each), 6),
        ]
    }

    #[test]
    fn quantity_json_is_externally_tagged() {
        assert_eq!(
            serde_json::to_string(&Quantity::Units(2)).unwrap(),
            r#"{"units":2}"#
        );
        assert_eq!(
            serde_json::from_str::<Quantity>(r#"{"grams":350}"#).unwrap(),
            Quantity::Grams(350)
        );
        assert!(serde_json::from_str::<Quantity>(r#"{"kilos":1}"#).is_err());
    }

    #[test]
    fn tax_inclusive_prices_contain_the_tax() {
        let cart = price(&basket(), true).unwrap();
        assert_eq!(cart.subtotal, Money(852));
        assert_eq!(cart.discount_total, Money(0));
        // Sorted by class: reduced 2.58 * 7/107 = 0.1688 -> 0.17; standard 5.94 * 19/119
        // = 0.9484 -> 0.95.
        assert_eq!(
            cart.taxes,
            vec![
                TaxLine {
                    tax_class: "reduced".into(),
                    rate_bp: 700,
                    base: Money(258),
                    tax: Money(17)
                },
                TaxLine {
                    tax_class: "standard".into(),
                    rate_bp: 1900,
                    base: Money(594),
                    tax: Money(95)
                },
            ]
        );
        assert_eq!(cart.tax_total, Money(112));
        assert_eq!(cart.total, Money(852));
        assert!(cart.prices_include_tax);
        assert_eq!(cart.currency, Currency::EUR);
    }

    #[test]
    fn tax_exclusive_prices_get_the_tax_added() {
        let cart = price(&basket(), false).unwrap();
        // 2.58 * 7 % = 0.1806 -> 0.18; 5.94 * 19 % = 1.1286 -> 1.13.
        let taxes: Vec<i64> = cart.taxes.iter().map(|t| t.tax.minor()).collect();
        assert_eq!(taxes, [18, 113]);
        assert_eq!(cart.tax_total, Money(131));
        assert_eq!(cart.total, Money(852 + 131));
        assert!(!cart.prices_include_tax);
    }

    #[test]
    fn tax_is_rounded_once_per_class_not_per_line() {
        // Per line: 0.10 * 7 % = 0.007 -> 0.01 twice = 0.02. Per class: 0.20 * 7 % = 0.014
        // -> 0.01.
        let items = [
            units(product("A", 10, "reduced", SoldBy::Each), 1),
            units(product("B", 10, "reduced", SoldBy::Each), 1),
        ];
        let cart = price(&items, false).unwrap();
        assert_eq!(cart.taxes.len(), 1);
        assert_eq!(cart.taxes[0].base, Money(20));
        assert_eq!(cart.tax_total, Money(1));
        assert_eq!(cart.total, Money(21));
    }

    #[test]
    fn weight_lines_are_priced_per_kilogram() {
        let items = [
            grams(product("APPLE", 349, "reduced", SoldBy::Weight), 350),
            grams(product("CHEESE", 2990, "reduced", SoldBy::Weight), 125),
        ];
        let cart = price(&items, true).unwrap();
        // 3.49 * 0.350 = 1.2215 -> 1.22; 29.90 * 0.125 = 3.7375 -> 3.74.
        let gross: Vec<i64> = cart.lines.iter().map(|l| l.gross.minor()).collect();
        assert_eq!(gross, [122, 374]);
        assert_eq!(cart.lines[0].sold_by, SoldBy::Weight);
        assert_eq!(cart.lines[0].quantity, Quantity::Grams(350));
        assert_eq!(cart.total, Money(496));
    }

    #[test]
    fn promotions_reduce_line_totals_and_the_taxed_base() {
        let promotion = Promotion {
            id: "MILK10".into(),
            name: "Milk -10 %".into(),
            kind: PromotionKind::PercentOff { percent_bp: 1000 },
            target: Target {
                skus: vec![Sku::parse("MILK").unwrap()],
                categories: vec![],
            },
            starts_at: NOW - Duration::days(1),
            ends_at: NOW + Duration::days(1),
            priority: 0,
        };
        let set = PromotionSet::new(vec![promotion]);
        let cart = price_cart(&basket(), &set, &tax(true), NOW).unwrap();
        let milk = &cart.lines[0];
        // 10 % of 2.58 = 0.258 -> 0.26.
        assert_eq!(milk.discount, Money(26));
        assert_eq!(milk.total, Money(232));
        assert_eq!(milk.promotion_id.as_deref(), Some("MILK10"));
        assert_eq!(milk.promotion_name.as_deref(), Some("Milk -10 %"));
        assert_eq!(cart.lines[1].promotion_id, None);
        assert_eq!(cart.discount_total, Money(26));
        assert_eq!(cart.subtotal, Money(852));
        assert_eq!(cart.total, Money(852 - 26));
        assert_eq!(cart.taxes[0].base, Money(232));
        // 2.32 * 7/107 = 0.1517 -> 0.15.
        assert_eq!(cart.taxes[0].tax, Money(15));
        // The same cart after the promotion ended pays full price.
        let later = price_cart(&basket(), &set, &tax(true), NOW + Duration::days(2)).unwrap();
        assert_eq!(later.total, Money(852));
    }

    #[test]
    fn age_restriction_is_flagged_from_any_line() {
        assert!(!price(&basket(), true).unwrap().age_restricted);
        let mut items = basket();
        items[1].product.age_restricted = true;
        assert!(price(&items, true).unwrap().age_restricted);
    }

    #[test]
    fn cart_shape_errors() {
        assert_eq!(price(&[], true), Err(PricingError::EmptyCart));
        let item = units(product("A", 1, "reduced", SoldBy::Each), 1);
        assert!(price(&vec![item.clone(); MAX_LINES], true).is_ok());
        assert_eq!(
            price(&vec![item.clone(); MAX_LINES + 1], true),
            Err(PricingError::TooManyLines { count: 501 })
        );
        let mut dollars = item.clone();
        dollars.product.currency = Currency::parse("USD").unwrap();
        let err = price(&[item.clone(), dollars], true).unwrap_err();
        assert!(
            matches!(err, PricingError::MixedCurrency { line: 1, .. }),
            "{err}"
        );
        assert_eq!(err.line(), Some(1));
        assert_eq!(PricingError::EmptyCart.line(), None);
    }

    #[test]
    fn line_errors_name_the_line() {
        let good = units(product("A", 100, "reduced", SoldBy::Each), 1);
        let check = |bad: CartItem| price(&[good.clone(), bad], true).unwrap_err();

        let mut inactive = good.clone();
        inactive.product.active = false;
        assert_eq!(
            check(inactive),
            PricingError::Inactive {
                line: 1,
                sku: Sku::parse("A").unwrap()
            }
        );
        assert_eq!(
            check(grams(product("A", 100, "reduced", SoldBy::Each), 100)),
            PricingError::QuantityKind {
                line: 1,
                sold_by: SoldBy::Each
            }
        );
        assert_eq!(
            check(units(product("W", 100, "reduced", SoldBy::Weight), 1)),
            PricingError::QuantityKind {
                line: 1,
                sold_by: SoldBy::Weight
            }
        );
        for bad in [
            units(product("A", 100, "reduced", SoldBy::Each), 0),
            units(product("A", 100, "reduced", SoldBy::Each), 10_000),
            grams(product("W", 100, "reduced", SoldBy::Weight), 0),
            grams(product("W", 100, "reduced", SoldBy::Weight), 100_001),
        ] {
            let quantity = bad.quantity;
            assert_eq!(check(bad), PricingError::Quantity { line: 1, quantity });
        }
        assert!(
            price(
                &[units(product("A", 1, "reduced", SoldBy::Each), 9_999)],
                true
            )
            .is_ok()
        );
        assert!(
            price(
                &[grams(product("W", 1, "reduced", SoldBy::Weight), 100_000)],
                true
            )
            .is_ok()
        );
        assert_eq!(
            check(units(product("A", 100, "luxury", SoldBy::Each), 1)),
            PricingError::UnknownTaxClass {
                line: 1,
                class: "luxury".into()
            }
        );
        assert_eq!(
            check(units(product("A", -1, "reduced", SoldBy::Each), 1)),
            PricingError::NegativePrice { line: 1 }
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrong_total() {
        // Prices above the catalogue cap can only come from corrupt data; pricing must
        // still refuse rather than wrap.
        let huge = |n| units(product("H", i64::MAX / 2, "reduced", SoldBy::Each), n);
        assert_eq!(
            price(&[huge(1), huge(3)], true),
            Err(PricingError::Overflow { line: Some(1) })
        );
        let err = price(&[huge(1), huge(1), huge(1)], true).unwrap_err();
        assert!(matches!(err, PricingError::Overflow { .. }), "{err}");
        // Tax-exclusive totals can overflow only when the tax is added.
        let near = |p| units(product("N", p, "standard", SoldBy::Each), 1);
        let err = price(&[near(i64::MAX - 10)], false).unwrap_err();
        assert_eq!(err, PricingError::Overflow { line: None });
        assert_eq!(err.line(), None);
    }
}
