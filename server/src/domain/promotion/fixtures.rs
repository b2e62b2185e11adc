//! Promotions, cart lines and pseudo-random numbers shared by the promotion tests.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::apply_promotions;
use super::{LineDiscount, PromoLine, Promotion, PromotionKind, PromotionSet, Target};
use crate::domain::money::{Money, div_round_half_up};
use crate::domain::product::Quantity;
use crate::domain::product::Sku;

pub(super) const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

pub(super) fn promo(
    id: &str,
    kind: PromotionKind,
    skus: &[&str],
    categories: &[&str],
) -> Promotion {
    Promotion {
        id: id.into(),
        name: format!("Promo {id}"),
        kind,
        target: Target {
            skus: skus.iter().map(|s| Sku::parse(s).unwrap()).collect(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
        },
        starts_at: NOW - Duration::days(1),
        ends_at: NOW + Duration::days(1),
        priority: 0,
    }
}

pub(super) fn percent(bp: u32) -> PromotionKind {
    PromotionKind::PercentOff { percent_bp: bp }
}

pub(super) fn amount(minor: i64) -> PromotionKind {
    PromotionKind::AmountOff {
        amount: Money(minor),
    }
}

pub(super) fn bxgy(buy: u32, get: u32) -> PromotionKind {
    PromotionKind::BuyXGetY { buy, get }
}

pub(super) fn nfor(n: u32, price: i64) -> PromotionKind {
    PromotionKind::NForPrice {
        n,
        price: Money(price),
    }
}

pub(super) fn each(sku: &str, category: &str, price: i64, units: u32) -> PromoLine {
    PromoLine {
        sku: Sku::parse(sku).unwrap(),
        category: category.into(),
        unit_price: Money(price),
        quantity: Quantity::Units(units),
        gross: Money(price * i64::from(units)),
    }
}

pub(super) fn weighed(sku: &str, category: &str, per_kg: i64, grams: u32) -> PromoLine {
    let gross = div_round_half_up(i128::from(per_kg) * i128::from(grams), 1000);
    PromoLine {
        sku: Sku::parse(sku).unwrap(),
        category: category.into(),
        unit_price: Money(per_kg),
        quantity: Quantity::Grams(grams),
        gross: Money(i64::try_from(gross).unwrap()),
    }
}

pub(super) fn apply(promotions: Vec<Promotion>, lines: &[PromoLine]) -> Vec<Option<LineDiscount>> {
    apply_promotions(&PromotionSet::new(promotions), lines, NOW)
}

pub(super) fn amounts(result: &[Option<LineDiscount>]) -> Vec<i64> {
    result
        .iter()
        .map(|d| d.as_ref().map_or(0, |d| d.amount.minor()))
        .collect()
}

pub(super) fn ids(result: &[Option<LineDiscount>]) -> Vec<Option<&str>> {
    result
        .iter()
        .map(|d| d.as_ref().map(|d| d.promotion_id.as_str()))
        .collect()
}

/// Deterministic pseudo-random numbers for building big fixtures.
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    pub(super) fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}
