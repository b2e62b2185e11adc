//! Promotions and how a cart gets them: good for the customer, deterministic, no
//! stacking.
//!
//! docs/pricing.md ("Promotions") is the specification: what each kind gives, how
//! [`apply_promotions`] chooses between two greedy assignments, what it guarantees,
//! its known gaps and why it is fast enough.
//!
//! # Layout
//! - [`model`]: [`Promotion`] ([`PromotionKind`], [`Target`]) and its validation, the
//!   cart line promotions see ([`PromoLine`]) and what a line gets ([`LineDiscount`]).
//! - [`set`]: [`PromotionSet`], the store's promotions indexed by SKU and category, and
//!   the lookup of the active promotions that target a cart.
//! - [`kinds`]: what each kind takes off a set of free lines: per-line kinds line by
//!   line, pooled kinds over pooled units, with the saving split exactly.
//! - [`greedy`]: the two greedy assignments, per-line-aware and whole-promotion.
//! - this file: [`apply_promotions`], which runs both and keeps the better one.

mod greedy;
mod kinds;
mod model;
mod set;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use time::OffsetDateTime;

use greedy::{per_line_greedy, whole_promotion_greedy};
pub use model::{
    LineDiscount, PROMOTION_ID_MAX_LEN, PromoLine, Promotion, PromotionError, PromotionKind, Target,
};
pub use set::PromotionSet;
use set::targeted;

/// Applies promotions to `lines` at time `at`, one per line at most. Result index = line
/// index; `None` for lines without a promotion.
///
/// Computes two greedy assignments, the per-line-aware one and the whole-promotion one,
/// and returns the one with the larger total discount (the per-line-aware one on a tie).
/// The customer never saves less than with either, but the result is not a proven
/// optimum: docs/pricing.md ("Choosing promotions") gives the rules and the known
/// misses.
pub fn apply_promotions(
    set: &PromotionSet,
    lines: &[PromoLine],
    at: OffsetDateTime,
) -> Vec<Option<LineDiscount>> {
    let targeted = targeted(set, lines, at);
    let per_line = per_line_greedy(&targeted, lines);
    let whole = whole_promotion_greedy(&targeted, lines);
    if total_discount(&whole) > total_discount(&per_line) {
        whole
    } else {
        per_line
    }
}

/// What an assignment takes off the cart in total, in minor units.
fn total_discount(result: &[Option<LineDiscount>]) -> i128 {
    result
        .iter()
        .flatten()
        .map(|d| i128::from(d.amount.minor()))
        .sum()
}
