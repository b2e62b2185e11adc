//! Change from a coin changer's tubes: the fewest coins that pay an amount exactly
//! with the coins the tubes hold, and whether the machine must ask for exact change.
//!
//! A greedy payout (largest coin first) is not enough with limited tubes: with 60 to
//! pay from one 50 and three 20s, greedy takes the 50 and is stuck, while three 20s
//! pay it. This is a bounded change-making problem, solved exactly by dynamic
//! programming over the amount, each tube split into powers of two (so a tube of
//! `n` coins is `log n` items).

/// Most change one payout makes, in minor units (a changer pays out coins, and no
/// changer holds more than this).
pub const MAX_CHANGE: i64 = 20_000;
/// Most coin types a changer has (MDB: 16).
pub const MAX_TYPES: usize = 16;

/// One tube: a coin value and how many it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tube {
    /// Value of one coin, minor units.
    pub value: i64,
    /// Coins in the tube.
    pub count: u32,
}

/// Why change cannot be computed at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// More than [`MAX_CHANGE`] or below zero.
    #[error("change of {0} is outside 0 to {MAX_CHANGE}")]
    OutOfRange(i64),
    /// More than [`MAX_TYPES`] tubes, or a coin value not above zero.
    #[error("tubes must be 1 to {MAX_TYPES} coin values above zero")]
    BadTubes,
}

/// The fewest coins from `tubes` that pay `amount` exactly, as (coin value, count)
/// per tube in the order given; `Ok(None)` when the tubes cannot pay it exactly.
pub fn make_change(amount: i64, tubes: &[Tube]) -> Result<Option<Vec<(i64, u32)>>, ChangeError> {
    let table = Table::build(amount, tubes)?;
    Ok(table.coins(amount as usize, tubes))
}

/// The largest amount up to `limit` that the tubes can pay exactly (0 when none
/// but nothing): what a coin return can give back of a credit the tubes cannot pay
/// in full.
pub fn max_payable(limit: i64, tubes: &[Tube]) -> Result<i64, ChangeError> {
    let table = Table::build(limit, tubes)?;
    Ok((0..=limit as usize)
        .rev()
        .find(|&a| table.best[a] != NONE)
        .map_or(0, |a| a as i64))
}

const NONE: u32 = u32::MAX;

/// The dynamic programme over every amount up to a target: the fewest coins for
/// each, and which item reached it.
struct Table {
    /// (tube index, coins, value): a tube's count split into 1, 2, 4, ... rest.
    items: Vec<(usize, u32, usize)>,
    best: Vec<u32>,
    /// took[j][a]: item j was used to reach amount a at its step.
    took: Vec<Vec<bool>>,
}

impl Table {
    fn build(amount: i64, tubes: &[Tube]) -> Result<Table, ChangeError> {
        if !(0..=MAX_CHANGE).contains(&amount) {
            return Err(ChangeError::OutOfRange(amount));
        }
        if tubes.len() > MAX_TYPES || tubes.iter().any(|t| t.value <= 0) {
            return Err(ChangeError::BadTubes);
        }
        let target = amount as usize;
        let mut items: Vec<(usize, u32, usize)> = Vec::new();
        for (i, t) in tubes.iter().enumerate() {
            let mut left = t.count;
            let mut k = 1u32;
            while left > 0 {
                let take = k.min(left);
                let value = t.value.saturating_mul(i64::from(take));
                if value <= MAX_CHANGE {
                    items.push((i, take, value as usize));
                }
                left -= take;
                k = k.saturating_mul(2);
            }
        }
        let mut best = vec![NONE; target + 1];
        best[0] = 0;
        let mut took = vec![vec![false; target + 1]; items.len()];
        for (j, &(_, coins, value)) in items.iter().enumerate() {
            if value > target {
                continue;
            }
            for a in (value..=target).rev() {
                let from = best[a - value];
                if from != NONE && from + coins < best[a] {
                    best[a] = from + coins;
                    took[j][a] = true;
                }
            }
        }
        Ok(Table { items, best, took })
    }

    /// The coins that pay `target` (at most the amount built for), per tube.
    fn coins(&self, target: usize, tubes: &[Tube]) -> Option<Vec<(i64, u32)>> {
        if self.best.get(target).is_none_or(|b| *b == NONE) {
            return None;
        }
        let mut out: Vec<(i64, u32)> = tubes.iter().map(|t| (t.value, 0)).collect();
        let mut a = target;
        for j in (0..self.items.len()).rev() {
            if a > 0 && self.took[j][a] {
                let (i, coins, value) = self.items[j];
                out[i].1 += coins;
                a -= value;
            }
        }
        Some(out)
    }
}

/// Whether the machine must show "exact change only": some coin or note it accepts,
/// put in for some price below it, leaves change the tubes cannot pay.
pub fn exact_change_only(tubes: &[Tube], accepted: &[i64], prices: &[i64]) -> bool {
    accepted.iter().any(|&paid| {
        prices
            .iter()
            .any(|&price| price < paid && !matches!(make_change(paid - price, tubes), Ok(Some(_))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(value: i64, count: u32) -> Tube {
        Tube { value, count }
    }

    fn coins(c: &[(i64, u32)]) -> u32 {
        c.iter().map(|(_, n)| n).sum()
    }

    fn paid(c: &[(i64, u32)]) -> i64 {
        c.iter().map(|(v, n)| v * i64::from(*n)).sum()
    }

    #[test]
    fn the_largest_payable_amount_leaves_what_no_coin_can_pay() {
        let tubes = [t(50, 2), t(20, 1)];
        assert_eq!(max_payable(125, &tubes).unwrap(), 120);
        assert_eq!(max_payable(15, &tubes).unwrap(), 0);
        assert_eq!(max_payable(70, &tubes).unwrap(), 70);
        assert_eq!(max_payable(-5, &tubes), Err(ChangeError::OutOfRange(-5)));
    }

    #[test]
    fn thirty_from_quarters_and_dimes_is_three_dimes() {
        // Greedy takes the 25 and is left with 5 it cannot pay.
        let tubes = [t(25, 10), t(10, 10)];
        assert_eq!(
            make_change(30, &tubes).unwrap().unwrap(),
            [(25, 0), (10, 3)]
        );
        assert_eq!(
            make_change(35, &tubes).unwrap().unwrap(),
            [(25, 1), (10, 1)]
        );
        assert_eq!(make_change(5, &tubes).unwrap(), None);
    }

    proptest::proptest! {
        /// Whatever the tubes and the amount: an answer pays exactly, within the
        /// tubes, with the fewest coins (brute force over every combination
        /// agrees); `None` only when no combination pays it.
        #[test]
        fn change_is_exact_within_the_tubes_or_none(
            amount in 0i64..400,
            raw in proptest::collection::vec((1i64..120, 0u32..6), 1..5),
        ) {
            let tubes: Vec<Tube> = raw.iter().map(|&(v, n)| t(v, n)).collect();
            // Brute force over every count of every tube.
            let mut best: Option<u32> = None;
            let mut counts = vec![0u32; tubes.len()];
            loop {
                let v: i64 = counts.iter().zip(&tubes).map(|(c, t)| i64::from(*c) * t.value).sum();
                if v == amount {
                    let n = counts.iter().sum();
                    best = Some(best.map_or(n, |b: u32| b.min(n)));
                }
                let mut i = 0;
                while i < counts.len() && counts[i] == tubes[i].count {
                    counts[i] = 0;
                    i += 1;
                }
                if i == counts.len() {
                    break;
                }
                counts[i] += 1;
            }
            let got = make_change(amount, &tubes).unwrap();
            proptest::prop_assert_eq!(got.as_ref().map(|c| coins(c)), best);
            if let Some(c) = got {
                proptest::prop_assert_eq!(paid(&c), amount);
                for (i, (_, n)) in c.iter().enumerate() {
                    proptest::prop_assert!(*n <= tubes[i].count);
                }
            }
        }
    }

    #[test]
    fn greedy_would_fail_where_the_tubes_can_pay() {
        let tubes = [t(50, 1), t(20, 3)];
        let c = make_change(60, &tubes).unwrap().unwrap();
        assert_eq!(c, [(50, 0), (20, 3)]);
    }

    #[test]
    fn the_fewest_coins_within_the_tubes() {
        let tubes = [t(200, 2), t(100, 5), t(50, 0), t(20, 10), t(10, 10)];
        let c = make_change(370, &tubes).unwrap().unwrap();
        assert_eq!(paid(&c), 370);
        assert_eq!(coins(&c), 6, "200 + 100 + 20 + 20 + 20 + 10: {c:?}");
        // An empty 50 tube: 70 is 20+20+20+10, four coins.
        let c = make_change(70, &tubes).unwrap().unwrap();
        assert_eq!((paid(&c), coins(&c)), (70, 4));
        assert_eq!(
            make_change(0, &tubes).unwrap().unwrap(),
            tubes.iter().map(|t| (t.value, 0)).collect::<Vec<_>>()
        );
        assert_eq!(make_change(5, &tubes).unwrap(), None, "no 5s");
        assert_eq!(
            make_change(10_000, &[t(100, 3)]).unwrap(),
            None,
            "not enough coins"
        );
    }

    #[test]
    fn every_answer_is_exact_minimal_and_within_the_tubes() {
        // Checked against brute force on small tubes.
        let tubes = [t(50, 2), t(20, 4), t(10, 3), t(5, 2)];
        for amount in 0..=260 {
            let mut brute: Option<u32> = None;
            for a in 0..=2u32 {
                for b in 0..=4u32 {
                    for c in 0..=3u32 {
                        for d in 0..=2u32 {
                            if i64::from(a * 50 + b * 20 + c * 10 + d * 5) == amount {
                                let n = a + b + c + d;
                                brute = Some(brute.map_or(n, |m| m.min(n)));
                            }
                        }
                    }
                }
            }
            let got = make_change(amount, &tubes).unwrap();
            assert_eq!(got.as_ref().map(|c| coins(c)), brute, "{amount}");
            if let Some(c) = got {
                assert_eq!(paid(&c), amount);
                for (i, (_, n)) in c.iter().enumerate() {
                    assert!(*n <= tubes[i].count);
                }
            }
        }
    }

    #[test]
    fn exact_change_only_when_some_note_for_some_price_cannot_be_changed() {
        let prices = [120, 250];
        let full = [t(100, 10), t(50, 10), t(20, 10), t(10, 10)];
        assert!(!exact_change_only(&full, &[200, 500], &prices));
        // One 20 and no 10s: 200 - 120 = 80 needs 50+20+10 or four 20s.
        let no_tens = [t(100, 10), t(50, 10), t(20, 1), t(10, 0)];
        assert!(exact_change_only(&no_tens, &[200, 500], &prices));
        // Bad input is refused, never guessed.
        assert_eq!(make_change(-1, &full), Err(ChangeError::OutOfRange(-1)));
        assert_eq!(make_change(10, &[t(0, 3)]), Err(ChangeError::BadTubes));
    }
}
