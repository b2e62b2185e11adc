//! The store's promotions, indexed by SKU and category so that a cart only looks at
//! the promotions that target its lines.

use std::collections::HashMap;

use time::OffsetDateTime;

use super::model::{PromoLine, Promotion};

/// The store's promotions, indexed for pricing carts.
#[derive(Clone, Debug, Default)]
pub struct PromotionSet {
    /// Sorted by id, so indices double as the id tie-breaker.
    promotions: Vec<Promotion>,
    /// Promotion indices (ascending) per targeted SKU.
    by_sku: HashMap<String, Vec<u32>>,
    /// Promotion indices (ascending) per targeted category.
    by_category: HashMap<String, Vec<u32>>,
}

impl PromotionSet {
    /// Builds the set and its indexes.
    ///
    /// Promotions that fail [`Promotion::validate`] are kept (so [`PromotionSet::all`]
    /// shows them) but never applied: one bad record must not break pricing.
    pub fn new(mut promotions: Vec<Promotion>) -> PromotionSet {
        // Stable, so duplicate ids keep their given order and stay deterministic.
        promotions.sort_by(|a, b| a.id.cmp(&b.id));
        let mut by_sku: HashMap<String, Vec<u32>> = HashMap::new();
        let mut by_category: HashMap<String, Vec<u32>> = HashMap::new();
        for (index, promotion) in promotions.iter().enumerate() {
            if promotion.validate().is_err() {
                continue;
            }
            // Promotion counts are far below u32::MAX; the index stays compact.
            let index = index as u32;
            for sku in &promotion.target.skus {
                push_once(by_sku.entry(sku.as_str().to_owned()).or_default(), index);
            }
            for category in &promotion.target.categories {
                push_once(by_category.entry(category.clone()).or_default(), index);
            }
        }
        PromotionSet {
            promotions,
            by_sku,
            by_category,
        }
    }

    /// Every promotion, sorted by id.
    pub fn all(&self) -> &[Promotion] {
        &self.promotions
    }

    /// The promotion with this id, if any.
    pub fn get(&self, id: &str) -> Option<&Promotion> {
        self.promotions
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.promotions.get(i))
    }

    /// The valid promotions that apply at `t`, sorted by id.
    pub fn active_at(&self, t: OffsetDateTime) -> Vec<&Promotion> {
        self.promotions
            .iter()
            .filter(|p| p.is_active_at(t) && p.validate().is_ok())
            .collect()
    }

    /// Number of promotions, valid or not.
    pub fn len(&self) -> usize {
        self.promotions.len()
    }

    /// Whether there are no promotions at all.
    pub fn is_empty(&self) -> bool {
        self.promotions.is_empty()
    }
}

/// Indices are pushed in ascending order, so a duplicate can only be the last entry.
fn push_once(list: &mut Vec<u32>, index: u32) {
    if list.last() != Some(&index) {
        list.push(index);
    }
}

/// An active, valid promotion that targets at least one line of the cart.
pub(super) struct Targeted<'a> {
    pub(super) promotion: &'a Promotion,
    /// Position in the id-sorted [`PromotionSet`], the id tie-breaker.
    pub(super) index: u32,
    /// Lines it targets, ascending.
    pub(super) eligible: Vec<usize>,
}

/// Finds the active promotions that target the cart, in id order, with the lines each
/// targets. Only valid promotions are indexed, so invalid ones never show up.
pub(super) fn targeted<'a>(
    set: &'a PromotionSet,
    lines: &[PromoLine],
    at: OffsetDateTime,
) -> Vec<Targeted<'a>> {
    let mut pairs: Vec<(u32, usize)> = Vec::new();
    for (line_index, line) in lines.iter().enumerate() {
        let by_sku = set.by_sku.get(line.sku.as_str());
        let by_category = set.by_category.get(&line.category);
        for &promotion in by_sku.into_iter().chain(by_category).flatten() {
            pairs.push((promotion, line_index));
        }
    }
    // Sorting groups pairs by promotion in id order and makes the outcome independent
    // of hash-map iteration order.
    pairs.sort_unstable();
    pairs.dedup();
    pairs
        .chunk_by(|a, b| a.0 == b.0)
        .filter_map(|chunk| {
            let &(index, _) = chunk.first()?;
            let promotion = set.promotions.get(index as usize)?;
            promotion.is_active_at(at).then(|| Targeted {
                promotion,
                index,
                eligible: chunk.iter().map(|&(_, line)| line).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::super::fixtures::{NOW, amount, percent, promo};
    use super::*;

    #[test]
    fn set_sorts_by_id_and_lists_active_valid_promotions() {
        let mut later = promo("B-later", percent(1000), &["A"], &[]);
        later.starts_at = NOW + Duration::days(2);
        later.ends_at = NOW + Duration::days(3);
        let invalid = promo("C-invalid", percent(0), &["A"], &[]);
        let set = PromotionSet::new(vec![
            invalid,
            promo("D", amount(10), &[], &["dairy"]),
            later,
            promo("A", percent(500), &["A"], &[]),
        ]);
        assert_eq!(set.len(), 4);
        assert!(!set.is_empty());
        let all: Vec<&str> = set.all().iter().map(|p| p.id.as_str()).collect();
        assert_eq!(all, ["A", "B-later", "C-invalid", "D"]);
        let active: Vec<&str> = set.active_at(NOW).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(active, ["A", "D"]);
        assert_eq!(set.get("D").map(|p| p.kind.clone()), Some(amount(10)));
        assert!(set.get("Z").is_none());
    }
}
