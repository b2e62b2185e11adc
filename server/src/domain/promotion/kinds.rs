//! What each kind of promotion takes off the free lines it targets: percent and
//! amount off line by line, buy X get Y and N for price over the pooled units of
//! each-lines, their saving split so that the shares add up exactly.

use super::model::{PromoLine, PromotionKind};
use crate::domain::money::{Money, div_round_half_up};
use crate::domain::product::Quantity;

/// The outcome of one promotion on a set of free lines.
#[derive(Debug, Default)]
pub(super) struct Eval {
    /// Sum of the amounts in `lines`.
    pub(super) total: i128,
    /// Lines used and the minor units off each, ascending by line for percent and
    /// amount kinds, in pooling order for pooled kinds.
    pub(super) lines: Vec<(usize, i64)>,
}

impl Eval {
    /// Records a line the promotion used, even with nothing off it (paid units of a
    /// pooled group), capped to `0..=gross`.
    fn participant(&mut self, line: usize, amount: i128, gross: Money) {
        let cap = gross.minor().max(0);
        // Within 0..=cap, which is an i64, so the conversion cannot fail.
        let amount = i64::try_from(amount.clamp(0, i128::from(cap))).unwrap_or(cap);
        self.total += i128::from(amount);
        self.lines.push((line, amount));
    }
}

/// Whether the kind discounts each line on its own (percent and amount off), as opposed
/// to pooling units across lines.
pub(super) fn is_per_line(kind: &PromotionKind) -> bool {
    matches!(
        kind,
        PromotionKind::PercentOff { .. } | PromotionKind::AmountOff { .. }
    )
}

/// What a per-line kind takes off one line, within `0..=gross`; 0 for pooled kinds.
pub(super) fn line_discount(kind: &PromotionKind, line: &PromoLine) -> i64 {
    let off = match *kind {
        PromotionKind::PercentOff { percent_bp } => div_round_half_up(
            i128::from(line.gross.minor()) * i128::from(percent_bp),
            10_000,
        ),
        PromotionKind::AmountOff { amount } => match line.quantity {
            Quantity::Units(units) => i128::from(amount.minor()) * i128::from(units),
            // One weighed item is one line: "per unit" means once.
            Quantity::Grams(_) => i128::from(amount.minor()),
        },
        PromotionKind::BuyXGetY { .. } | PromotionKind::NForPrice { .. } => 0,
    };
    let cap = line.gross.minor().max(0);
    // Within 0..=cap, which is an i64, so the conversion cannot fail.
    i64::try_from(off.clamp(0, i128::from(cap))).unwrap_or(cap)
}

/// Evaluates one promotion on the free lines it targets (`free` is ascending).
pub(super) fn evaluate(kind: &PromotionKind, free: &[usize], lines: &[PromoLine]) -> Eval {
    let mut eval = Eval::default();
    match *kind {
        PromotionKind::PercentOff { .. } | PromotionKind::AmountOff { .. } => {
            for &l in free {
                let off = line_discount(kind, &lines[l]);
                if off > 0 {
                    eval.total += i128::from(off);
                    eval.lines.push((l, off));
                }
            }
        }
        PromotionKind::BuyXGetY { buy, get } => buy_x_get_y(&mut eval, buy, get, free, lines),
        PromotionKind::NForPrice { n, price } => {
            if let Some(result) = n_for_price(n, price, free, lines) {
                eval = result;
            }
        }
    }
    eval
}

/// Units of one each-line in a pooled promotion.
pub(super) struct Pooled {
    price: i128,
    line: usize,
    units: u64,
}

/// The each-lines among `free`, most expensive first (ties by line order) so groups
/// take the most expensive units first.
fn pooled(free: &[usize], lines: &[PromoLine]) -> Vec<Pooled> {
    let mut pool: Vec<Pooled> = free
        .iter()
        .filter_map(|&line| match lines[line].quantity {
            Quantity::Units(units) if units > 0 && !lines[line].unit_price.is_negative() => {
                Some(Pooled {
                    price: i128::from(lines[line].unit_price.minor()),
                    line,
                    units: u64::from(units),
                })
            }
            _ => None,
        })
        .collect();
    pool.sort_by(|a, b| b.price.cmp(&a.price).then(a.line.cmp(&b.line)));
    pool
}

fn buy_x_get_y(eval: &mut Eval, buy: u32, get: u32, free: &[usize], lines: &[PromoLine]) {
    if buy == 0 || get == 0 {
        return;
    }
    let (buy, get) = (u64::from(buy), u64::from(get));
    let group = buy + get;
    let pool = pooled(free, lines);
    let total_units: u64 = pool.iter().map(|p| p.units).sum();
    let complete = total_units / group * group;
    // Free units among the first `x` pooled units: the last `get` of each group.
    let free_before = |x: u64| x / group * get + (x % group).saturating_sub(buy);
    let mut start = 0;
    for entry in &pool {
        if start >= complete {
            break; // only the incomplete remainder is left
        }
        let end = (start + entry.units).min(complete);
        let free_units = free_before(end) - free_before(start);
        eval.participant(
            entry.line,
            entry.price * i128::from(free_units),
            lines[entry.line].gross,
        );
        start += entry.units;
    }
    if eval.total <= 0 {
        // Nothing was free (all zero-priced): the promotion must not take the lines.
        *eval = Eval::default();
    }
}

fn n_for_price(n: u32, price: Money, free: &[usize], lines: &[PromoLine]) -> Option<Eval> {
    if n < 2 || price.is_negative() {
        return None;
    }
    let n = u64::from(n);
    let group_price = i128::from(price.minor());
    let pool = pooled(free, lines);
    let groups = pool.iter().map(|p| p.units).sum::<u64>() / n;

    // Count the leading groups that save money. Units are sorted by price descending, so
    // group sums never increase: the first group that does not save ends the search.
    // Groups lying inside one line are counted in bulk, so huge quantities stay cheap.
    let mut applied: u64 = 0;
    let (mut entry, mut offset) = (0usize, 0u64);
    while applied < groups {
        let Some(current) = pool.get(entry) else {
            break;
        };
        let remaining = current.units - offset;
        if remaining >= n {
            if current.price * i128::from(n) <= group_price {
                break;
            }
            let inside = (remaining / n).min(groups - applied);
            applied += inside;
            offset += inside * n;
        } else {
            let (mut need, mut sum, mut e, mut off) = (n, 0i128, entry, offset);
            while need > 0 {
                let Some(p) = pool.get(e) else {
                    break;
                };
                let take = (p.units - off).min(need);
                sum += p.price * i128::from(take);
                need -= take;
                off += take;
                if off == p.units {
                    e += 1;
                    off = 0;
                }
            }
            if need > 0 || sum <= group_price {
                break;
            }
            applied += 1;
            entry = e;
            offset = off;
            continue;
        }
        if offset == current.units {
            entry += 1;
            offset = 0;
        }
    }
    if applied == 0 {
        return None;
    }

    // Each used line's units inside the applied groups, at shelf price.
    let applied_units = applied * n;
    let mut parts: Vec<(usize, i128)> = Vec::new();
    let mut start = 0;
    for p in &pool {
        if start >= applied_units {
            break;
        }
        let end = (start + p.units).min(applied_units);
        parts.push((p.line, p.price * i128::from(end - start)));
        start += p.units;
    }
    let applied_gross: i128 = parts.iter().map(|&(_, g)| g).sum();
    let discount = applied_gross - group_price * i128::from(applied);

    let mut eval = Eval::default();
    for (line, share) in split_exactly(discount, &parts)? {
        eval.participant(line, share, lines[line].gross);
    }
    Some(eval)
}

/// Splits `total` over `parts` in proportion to their weights with the largest-remainder
/// method: shares are integers and add up to exactly `total`. Ties in the remainder go
/// to the earlier part. `None` on overflow (only with absurd prices).
fn split_exactly(total: i128, parts: &[(usize, i128)]) -> Option<Vec<(usize, i128)>> {
    let weight: i128 = parts.iter().map(|&(_, w)| w).sum();
    if weight <= 0 || total < 0 {
        return None;
    }
    let mut shares = Vec::with_capacity(parts.len());
    let mut remainders = Vec::with_capacity(parts.len());
    let mut handed_out: i128 = 0;
    for (i, &(line, w)) in parts.iter().enumerate() {
        let scaled = total.checked_mul(w)?;
        shares.push((line, scaled / weight));
        remainders.push((scaled % weight, i));
        handed_out += scaled / weight;
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // `total - handed_out` is below `parts.len()`, each remainder being below one unit.
    let left = usize::try_from(total - handed_out).ok()?;
    for &(_, i) in remainders.iter().take(left) {
        shares[i].1 += 1;
    }
    Some(shares)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{
        Lcg, amount, amounts, apply, bxgy, each, ids, nfor, percent, promo, weighed,
    };
    use super::*;

    #[test]
    fn percent_off_rounds_half_up_per_line() {
        // 15 % of 1.29 = 0.1935 -> 0.19; of 1.30 = 0.195 -> 0.20; of 3 x 0.10 = 0.045 -> 0.05.
        let result = apply(
            vec![promo("P", percent(1500), &["A", "B", "C"], &[])],
            &[
                each("A", "x", 129, 1),
                each("B", "x", 130, 1),
                each("C", "x", 10, 3),
            ],
        );
        assert_eq!(amounts(&result), [19, 20, 5]);
        let d = result[0].as_ref().unwrap();
        assert_eq!(d.promotion_id, "P");
        assert_eq!(d.promotion_name, "Promo P");
    }

    #[test]
    fn percent_off_applies_to_weight_lines() {
        // 0.350 kg at 3.49/kg = 1.2215 -> 1.22; 10 % = 0.122 -> 0.12.
        let line = weighed("APPLE", "produce", 349, 350);
        assert_eq!(line.gross, Money(122));
        let result = apply(vec![promo("P", percent(1000), &[], &["produce"])], &[line]);
        assert_eq!(amounts(&result), [12]);
    }

    #[test]
    fn amount_off_is_per_unit_once_per_weight_line_and_capped() {
        let result = apply(
            vec![promo("P", amount(50), &[], &["x"])],
            &[
                each("A", "x", 200, 3),      // 3 x 0.50
                each("B", "x", 40, 2),       // capped at the line: 0.80
                weighed("C", "x", 500, 700), // once: 0.50
                weighed("D", "x", 100, 300), // 0.30 line, capped
                each("E", "y", 500, 1),      // not targeted
            ],
        );
        assert_eq!(amounts(&result), [150, 80, 50, 30, 0]);
        assert!(result[4].is_none());
    }

    #[test]
    fn buy_x_get_y_frees_the_cheapest_of_each_group_and_leaves_the_remainder() {
        // Units by price: 3.00 3.00 2.00 | 1.00. Buy 2 get 1: the 2.00 unit is free; the
        // 1.00 unit is an incomplete remainder, so its line is free for the 10 % promotion.
        let result = apply(
            vec![
                promo("B2G1", bxgy(2, 1), &["A", "B", "C"], &[]),
                promo("TEN", percent(1000), &["B"], &[]),
            ],
            &[
                each("A", "x", 300, 2),
                each("B", "x", 100, 1),
                each("C", "x", 200, 1),
            ],
        );
        assert_eq!(ids(&result), [Some("B2G1"), Some("TEN"), Some("B2G1")]);
        assert_eq!(amounts(&result), [0, 10, 200]);
    }

    #[test]
    fn buy_x_get_y_pools_units_across_lines_and_groups() {
        // Six units of one price over three lines, buy 1 get 1: three free units.
        let result = apply(
            vec![promo("B1G1", bxgy(1, 1), &[], &["soda"])],
            &[
                each("A", "soda", 100, 1),
                each("B", "soda", 100, 2),
                each("C", "soda", 100, 3),
                each("D", "soda", 500, 1),
            ],
        );
        // Sorted: D 5.00 | A 1.00, B 1.00 B 1.00 | C 1.00 C 1.00 C 1.00: groups
        // (D, A) A free, (B, B) one free, (C, C) one free, C remainder on a used line.
        assert_eq!(amounts(&result), [100, 100, 100, 0]);
        assert!(
            result
                .iter()
                .all(|d| d.as_ref().unwrap().promotion_id == "B1G1")
        );
    }

    #[test]
    fn buy_x_get_y_ignores_weight_lines_and_needs_a_complete_group() {
        let result = apply(
            vec![promo("B2G1", bxgy(2, 1), &[], &["x"])],
            &[each("A", "x", 100, 2), weighed("W", "x", 1000, 5000)],
        );
        assert_eq!(result, [None, None]);
    }

    #[test]
    fn n_for_price_pools_lines_and_splits_the_saving_exactly() {
        // 2.50 2.50 2.00 | 2.00: three for 5.00 saves 2.00 on the first group; the split
        // is proportional to 5.00 and 2.00 of applied gross: 142.86 and 57.14 -> 143 + 57.
        let result = apply(
            vec![promo("3FOR5", nfor(3, 500), &["X", "Y"], &[])],
            &[each("X", "c", 250, 2), each("Y", "c", 200, 2)],
        );
        assert_eq!(amounts(&result), [143, 57]);
        assert_eq!(ids(&result), [Some("3FOR5"), Some("3FOR5")]);
    }

    #[test]
    fn n_for_price_is_not_applied_when_it_costs_more() {
        let result = apply(
            vec![promo("3FOR10", nfor(3, 1000), &["A"], &[])],
            &[each("A", "c", 300, 3)],
        );
        assert_eq!(result, [None]);
        // Only the expensive group saves; the cheap line is left for another promotion.
        let result = apply(
            vec![
                promo("3FOR10", nfor(3, 1000), &["A", "B"], &[]),
                promo("HALF", percent(5000), &["B"], &[]),
            ],
            &[each("A", "c", 500, 3), each("B", "c", 100, 3)],
        );
        assert_eq!(ids(&result), [Some("3FOR10"), Some("HALF")]);
        assert_eq!(amounts(&result), [500, 150]);
    }

    #[test]
    fn n_for_price_counts_groups_inside_huge_lines_in_bulk() {
        // 9999 units per line on 3 lines: 29997 units, 14998 groups of two.
        let lines = [
            each("A", "c", 300, 9999),
            each("B", "c", 200, 9999),
            each("C", "c", 100, 9999),
        ];
        let result = apply(vec![promo("2FOR3", nfor(2, 300), &[], &["c"])], &lines);
        // A: 4999 groups save 300 each, one unit of A joins one of B (500 -> saves 200),
        // B's other 9998 units form 4999 groups of 400 (save 100); C never saves.
        assert_eq!(
            amounts(&result).iter().sum::<i64>(),
            4999 * 300 + 200 + 4999 * 100
        );
        assert_eq!(ids(&result), [Some("2FOR3"), Some("2FOR3"), None]);
    }

    #[test]
    fn pooled_shares_always_add_up_to_the_promotion_total() {
        let mut rng = Lcg(7);
        for _ in 0..200 {
            let lines: Vec<PromoLine> = (0..1 + rng.next(8))
                .map(|i| {
                    each(
                        &format!("S{i}"),
                        "c",
                        1 + rng.next(999) as i64,
                        1 + rng.next(5) as u32,
                    )
                })
                .collect();
            let free: Vec<usize> = (0..lines.len()).collect();
            let n = 2 + rng.next(4) as u32;
            let price = rng.next(2000) as i64;
            let eval = evaluate(&nfor(n, price), &free, &lines);
            let sum: i128 = eval.lines.iter().map(|&(_, a)| i128::from(a)).sum();
            assert_eq!(sum, eval.total);
            // Brute force over sorted units: the saving of the leading saving groups.
            let mut units: Vec<i64> = lines
                .iter()
                .flat_map(|l| {
                    let Quantity::Units(u) = l.quantity else {
                        unreachable!()
                    };
                    std::iter::repeat_n(l.unit_price.minor(), u as usize)
                })
                .collect();
            units.sort_unstable_by(|a, b| b.cmp(a));
            let expected: i64 = units
                .chunks_exact(n as usize)
                .map(|g| g.iter().sum::<i64>() - price)
                .take_while(|saving| *saving > 0)
                .sum();
            assert_eq!(eval.total, i128::from(expected));
        }
    }
}
