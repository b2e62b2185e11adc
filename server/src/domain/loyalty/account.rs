//! An account (a customer's points, a voucher's money) as one unit sees it, and the
//! offline limit on redeeming it.
//!
//! HQ keeps the ledger. With each balance it pushes to a unit it says how much of this
//! unit's own redemptions and accruals that balance already counts, and an allowance:
//! the most this unit may have redeemed that HQ has not counted. The unit keeps its
//! own all-time totals, so what HQ has not seen yet is `local − counted`. A redemption
//! `x` is allowed only when
//!
//! ```text
//! unseen_redeemed + x <= allowance     and     x <= balance as this unit knows it
//! ```
//!
//! HQ grants allowances whose sum over the units of all stores is at most the
//! customer's offline limit `L`. Whatever the outage, the redemptions HQ has not
//! counted are then at most `Σ allowance ≤ L` together, so a card redeemed at several
//! units that cannot reach HQ overspends its real balance by at most `L`
//! (`docs/loyalty.md`, "The offline limit").

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What HQ last said about an account to this unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct HqBalance {
    /// HQ's balance: points, or minor units for a voucher.
    pub balance: i64,
    /// This unit's redemptions (all time) that `balance` already counts.
    pub counted_redeemed: i64,
    /// This unit's accruals (all time) that `balance` already counts.
    pub counted_earned: i64,
    /// The most this unit may have redeemed that HQ has not counted.
    pub allowance: i64,
}

/// What this unit recorded against an account, all time (never reset by a push).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct LocalTotals {
    /// Redeemed here.
    pub redeemed: i64,
    /// Earned here.
    pub earned: i64,
    /// Held by checkouts waiting on the payment terminal: redeemed if their sale is
    /// recorded, given back if it is unwound. Counted as redeemed until then.
    #[serde(default)]
    pub reserved: i64,
}

/// An account as this unit knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// HQ's balance plus what this unit earned and minus what it redeemed since.
    pub balance: i64,
    /// Redeemed (or held by a checkout in progress) here that HQ has not counted yet.
    pub unseen_redeemed: i64,
    /// What a redemption may take now: the lesser of the balance and what is left of
    /// the allowance (never below 0).
    pub redeemable: i64,
}

/// Why a redemption is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedeemError {
    /// Zero or less.
    #[error("a redemption must be more than 0")]
    NonPositive,
    /// More than the balance.
    #[error("the balance is {balance}, {asked} was asked")]
    Insufficient {
        /// The balance as this unit knows it.
        balance: i64,
        /// What was asked.
        asked: i64,
    },
    /// More than the offline allowance lets this unit redeem before HQ counts it.
    #[error(
        "only {left} may be redeemed on this unit until HQ confirms the earlier redemptions (offline limit), {asked} was asked"
    )]
    OverLimit {
        /// What is left of the allowance.
        left: i64,
        /// What was asked.
        asked: i64,
    },
}

impl AccountView {
    /// The account from HQ's last word and this unit's totals.
    pub fn of(hq: HqBalance, local: LocalTotals) -> AccountView {
        // HQ cannot count more than this unit did (a unit restored from an old backup
        // could): what it counts beyond is taken as seen.
        let unseen_redeemed = local
            .redeemed
            .saturating_sub(hq.counted_redeemed)
            .max(0)
            .saturating_add(local.reserved.max(0));
        let unseen_earned = local.earned.saturating_sub(hq.counted_earned).max(0);
        let balance = hq
            .balance
            .saturating_add(unseen_earned)
            .saturating_sub(unseen_redeemed);
        let left = hq.allowance.saturating_sub(unseen_redeemed);
        AccountView {
            balance,
            unseen_redeemed,
            redeemable: balance.min(left).max(0),
        }
    }

    /// Whether `asked` may be redeemed now.
    pub fn check(&self, hq: HqBalance, asked: i64) -> Result<(), RedeemError> {
        if asked <= 0 {
            return Err(RedeemError::NonPositive);
        }
        if asked > self.balance {
            return Err(RedeemError::Insufficient {
                balance: self.balance,
                asked,
            });
        }
        let left = hq.allowance.saturating_sub(self.unseen_redeemed).max(0);
        if asked > left {
            return Err(RedeemError::OverLimit { left, asked });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hq(balance: i64, allowance: i64) -> HqBalance {
        HqBalance {
            balance,
            counted_redeemed: 0,
            counted_earned: 0,
            allowance,
        }
    }

    #[test]
    fn the_allowance_bounds_what_hq_has_not_counted() {
        let h = hq(1_000, 300);
        let v = AccountView::of(h, LocalTotals::default());
        assert_eq!(v.redeemable, 300);
        v.check(h, 200).unwrap();
        let v = AccountView::of(
            h,
            LocalTotals {
                redeemed: 200,
                earned: 0,
                reserved: 0,
            },
        );
        assert_eq!(v.balance, 800);
        // A checkout holding 100 counts as redeemed until it ends.
        let held = AccountView::of(
            h,
            LocalTotals {
                redeemed: 100,
                earned: 0,
                reserved: 100,
            },
        );
        assert_eq!(held, v);
        assert_eq!(
            v.check(h, 200),
            Err(RedeemError::OverLimit {
                left: 100,
                asked: 200
            })
        );
        v.check(h, 100).unwrap();
        // HQ counts the 200: the allowance is whole again.
        let h2 = HqBalance {
            balance: 800,
            counted_redeemed: 200,
            ..h
        };
        let v = AccountView::of(
            h2,
            LocalTotals {
                redeemed: 200,
                earned: 0,
                reserved: 0,
            },
        );
        assert_eq!((v.balance, v.redeemable), (800, 300));
    }

    #[test]
    fn points_earned_here_count_until_hq_counts_them() {
        let h = hq(10, 1_000);
        let v = AccountView::of(
            h,
            LocalTotals {
                redeemed: 0,
                earned: 50,
                reserved: 0,
            },
        );
        assert_eq!(v.balance, 60);
        assert_eq!(
            v.check(h, 61),
            Err(RedeemError::Insufficient {
                balance: 60,
                asked: 61
            })
        );
        let h2 = HqBalance {
            balance: 60,
            counted_earned: 50,
            ..h
        };
        assert_eq!(
            AccountView::of(
                h2,
                LocalTotals {
                    redeemed: 0,
                    earned: 50,
                    reserved: 0
                }
            )
            .balance,
            60
        );
        assert_eq!(v.check(h, 0), Err(RedeemError::NonPositive));
    }

    proptest! {
        /// Units that never hear from HQ, each redeeming whatever it is allowed, never
        /// redeem more together than the sum of their allowances, nor more each than
        /// the balance they started from.
        #[test]
        fn units_offline_together_never_exceed_their_allowances(
            balance in 0i64..10_000,
            allowances in proptest::collection::vec(0i64..5_000, 1..5),
            asks in proptest::collection::vec((0usize..5, 1i64..2_000), 0..60),
        ) {
            let n = allowances.len();
            let mut local = vec![LocalTotals::default(); n];
            for (u, x) in asks {
                let u = u % n;
                let h = hq(balance, allowances[u]);
                let v = AccountView::of(h, local[u]);
                if v.check(h, x).is_ok() {
                    local[u].redeemed += x;
                }
            }
            let total: i64 = local.iter().map(|l| l.redeemed).sum();
            prop_assert!(total <= allowances.iter().sum::<i64>());
            for (u, l) in local.iter().enumerate() {
                prop_assert!(l.redeemed <= balance.min(allowances[u]));
            }
        }
    }
}
