//! The points a sale earns, from the priced cart and HQ's rules.
//!
//! The rule, exactly (`docs/loyalty.md`): each line earns
//! `floor(line total × rate(category) / 10^exponent)` points, where the line total is
//! after its promotion discount (before tax when prices exclude it) and `exponent` is
//! the currency's minor-unit exponent; the cart earns
//! `floor(Σ line points × tier multiplier / 10,000)`. Rounding is down at both steps,
//! so a customer never earns a point the rules do not give.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rules::LoyaltyRules;
use crate::domain::money::Money;
use crate::domain::pricing::PricedCart;

/// What a cart earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accrual {
    /// Points of the lines before the tier multiplier.
    pub base: i64,
    /// The customer's tier multiplier, in basis points.
    pub multiplier_bp: u32,
    /// Points earned.
    pub points: i64,
}

/// The points `cart` earns for a customer of `tier` under `rules`.
pub fn accrue(rules: &LoyaltyRules, cart: &PricedCart, tier: Option<&str>) -> Accrual {
    accrue_lines(
        rules,
        cart.currency.exponent(),
        cart.lines.iter().map(|l| (l.category.as_str(), l.total)),
        tier,
    )
}

/// [`accrue`] over `(category, line total)` pairs in a currency of `exponent`.
pub fn accrue_lines<'a>(
    rules: &LoyaltyRules,
    exponent: u8,
    lines: impl IntoIterator<Item = (&'a str, Money)>,
    tier: Option<&str>,
) -> Accrual {
    let unit = 10i128.pow(u32::from(exponent));
    // Line totals are bounded by the pricing engine (i64), rates by MAX_POINTS_PER_UNIT
    // and a cart by MAX_LINES: the sums stay far inside i128.
    let base: i128 = lines
        .into_iter()
        .map(|(category, total)| {
            i128::from(total.minor().max(0)) * i128::from(rules.rate(category)) / unit
        })
        .sum();
    let multiplier_bp = rules.multiplier_bp(tier);
    let points = base * i128::from(multiplier_bp) / 10_000;
    Accrual {
        base: clamp(base),
        multiplier_bp,
        points: clamp(points),
    }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rules() -> LoyaltyRules {
        LoyaltyRules::parse(
            2,
            &[("wine".into(), 0), ("fresh".into(), 5)],
            &[("silver".into(), 12_500), ("gold".into(), 20_000)],
            1,
        )
        .unwrap()
    }

    const CATEGORIES: &[&str] = &["wine", "fresh", "bread", "toys"];
    const TIERS: &[Option<&str>] = &[None, Some("silver"), Some("gold"), Some("platinum")];

    /// The rules as docs/loyalty.md states them, computed the long way: a line's
    /// points are the whole multiples of one currency unit in `total × rate`, the
    /// cart's the whole multiples of 10,000 in `Σ × multiplier`.
    fn by_the_rules(exponent: u8, lines: &[(&str, i64)], tier: Option<&str>) -> i64 {
        let unit = 10u128.pow(u32::from(exponent));
        let mut sum = 0u128;
        for (category, total) in lines {
            let rate: u128 = match *category {
                "wine" => 0,
                "fresh" => 5,
                _ => 2,
            };
            let scaled = (*total).max(0) as u128 * rate;
            sum += (scaled - scaled % unit) / unit;
        }
        let mult: u128 = match tier {
            Some("silver") => 12_500,
            Some("gold") => 20_000,
            _ => 10_000,
        };
        let scaled = sum * mult;
        ((scaled - scaled % 10_000) / 10_000) as i64
    }

    fn cart() -> impl Strategy<Value = (u8, Vec<(usize, i64)>, usize)> {
        (
            0u8..=3,
            proptest::collection::vec((0..CATEGORIES.len(), 0i64..2_000_000_000), 0..40),
            0..TIERS.len(),
        )
    }

    proptest! {
        /// Accrual equals the rules on random carts (issue 19, "done when").
        #[test]
        fn accrual_equals_the_rules_on_random_carts((exp, lines, tier) in cart()) {
            let lines: Vec<(&str, i64)> =
                lines.iter().map(|(c, t)| (CATEGORIES[*c], *t)).collect();
            let tier = TIERS[tier];
            let got = accrue_lines(&rules(), exp, lines.iter().map(|(c, t)| (*c, Money(*t))), tier);
            prop_assert_eq!(got.points, by_the_rules(exp, &lines, tier));
            prop_assert_eq!(got.multiplier_bp, rules().multiplier_bp(tier));
            // The base is the sum of what each line earns alone.
            let alone: i64 = lines
                .iter()
                .map(|(c, t)| accrue_lines(&rules(), exp, [(*c, Money(*t))], None).base)
                .sum();
            prop_assert_eq!(got.base, alone);
            prop_assert!(got.points >= 0);
        }

        /// Splitting a line in two never earns more than the line whole (rounding is
        /// down, per line).
        #[test]
        fn splitting_a_line_never_earns_more(a in 0i64..1_000_000_000, b in 0i64..1_000_000_000, c in 0..CATEGORIES.len()) {
            let cat = CATEGORIES[c];
            let whole = accrue_lines(&rules(), 2, [(cat, Money(a + b))], None).points;
            let split = accrue_lines(&rules(), 2, [(cat, Money(a)), (cat, Money(b))], None).points;
            prop_assert!(split <= whole);
        }
    }

    #[test]
    fn a_priced_cart_earns_by_its_lines_totals_after_discount() {
        use crate::domain::money::Currency;
        use crate::domain::pricing::{PricedLine, Quantity};
        use crate::domain::product::{Sku, SoldBy};
        let line = |category: &str, gross: i64, discount: i64| PricedLine {
            sku: Sku::parse("A-1").unwrap(),
            name: "x".into(),
            category: category.into(),
            tax_class: "standard".into(),
            sold_by: SoldBy::Each,
            quantity: Quantity::Units(1),
            unit_price: Money(gross),
            gross: Money(gross),
            discount: Money(discount),
            promotion_id: None,
            promotion_name: None,
            total: Money(gross - discount),
            slot: None,
        };
        let cart = PricedCart {
            currency: Currency::EUR,
            lines: vec![
                line("fresh", 1_999, 500),
                line("wine", 5_000, 0),
                line("toys", 250, 0),
            ],
            subtotal: Money(7_249),
            discount_total: Money(500),
            taxes: vec![],
            tax_total: Money(0),
            total: Money(6_749),
            prices_include_tax: true,
            age_restricted: false,
        };
        // fresh: 14.99 × 5 = 74; wine: 0; toys: 2.50 × 2 = 5. Gold doubles 79.
        let a = accrue(&rules(), &cart, Some("gold"));
        assert_eq!(
            a,
            Accrual {
                base: 79,
                multiplier_bp: 20_000,
                points: 158
            }
        );
    }
}
