//! HQ's loyalty ledger: customers' points and vouchers' money across every unit, from
//! the sale records the units upload, and the balances HQ pushes back to each unit
//! (`docs/loyalty.md`).
//!
//! The ledger is what HQ is the truth of: an account's balance is its opening balance
//! plus every accrual and minus every redemption in the sales HQ has received, from
//! any unit, each counted once (by unit and outbox sequence). For each unit HQ also
//! says how much of that unit's own accruals and redemptions the balance counts, and
//! grants the unit its share of the account's offline limit: the limit split evenly
//! over the units that share it, so the shares never add up to more than the limit.

use std::collections::{BTreeMap, HashSet};

use outpost_proto::hq::{self, Envelope, EnvelopeKind};

use super::server::MockHqHandle;

/// Which account an entry is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountId {
    /// A customer's points.
    Customer(String),
    /// A voucher's money, by HQ's voucher id.
    Voucher(String),
}

#[derive(Debug, Clone, Default)]
struct Account {
    /// Cards (customers) or the code (vouchers, one entry).
    cards: Vec<String>,
    tier: String,
    opening: i64,
    /// The most all units together may redeem that HQ has not counted.
    offline_limit: i64,
    /// Per unit: (earned, redeemed) in the sales HQ received from it.
    by_unit: BTreeMap<String, (i64, i64)>,
}

/// HQ's loyalty ledger.
#[derive(Debug, Clone, Default)]
pub struct LoyaltyLedger {
    accounts: BTreeMap<AccountId, Account>,
    /// (unit, seq) of the sale records already counted.
    applied: HashSet<(String, u64)>,
    /// Sale records that named an account HQ does not know (counted, not applied).
    unknown: u64,
}

impl LoyaltyLedger {
    /// An empty ledger.
    pub fn new() -> LoyaltyLedger {
        LoyaltyLedger::default()
    }

    /// Open a customer account with `points` and an offline limit shared by all units.
    pub fn add_customer(
        &mut self,
        id: &str,
        cards: &[&str],
        tier: &str,
        points: i64,
        offline_limit: i64,
    ) {
        self.accounts.insert(
            AccountId::Customer(id.into()),
            Account {
                cards: cards.iter().map(|c| (*c).to_owned()).collect(),
                tier: tier.into(),
                opening: points,
                offline_limit,
                by_unit: BTreeMap::new(),
            },
        );
    }

    /// Issue a voucher (gift card) `id` with code `code` worth `minor` minor units.
    pub fn add_voucher(&mut self, id: &str, code: &str, minor: i64, offline_limit: i64) {
        self.accounts.insert(
            AccountId::Voucher(id.into()),
            Account {
                cards: vec![code.into()],
                opening: minor,
                offline_limit,
                ..Account::default()
            },
        );
    }

    /// Count the sale records of `unit` among `envelopes` not counted before.
    pub fn apply(&mut self, unit: &str, envelopes: &[Envelope]) {
        for e in envelopes {
            if e.kind != EnvelopeKind::Sale as i32 || !self.applied.insert((unit.to_owned(), e.seq))
            {
                continue;
            }
            let Ok(sale) = serde_json::from_slice::<serde_json::Value>(&e.json) else {
                continue;
            };
            let Some(loyalty) = sale.get("loyalty") else {
                continue;
            };
            let int =
                |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_i64()).unwrap_or(0);
            if let Some(customer) = sale.get("customer_id").and_then(|c| c.as_str()) {
                self.add(
                    AccountId::Customer(customer.into()),
                    unit,
                    int(loyalty, "points_earned"),
                    int(loyalty, "points_redeemed"),
                );
            }
            for v in loyalty
                .get("vouchers")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(id) = v.get("voucher_id").and_then(|i| i.as_str()) {
                    self.add(AccountId::Voucher(id.into()), unit, 0, int(v, "amount"));
                }
            }
        }
    }

    fn add(&mut self, id: AccountId, unit: &str, earned: i64, redeemed: i64) {
        match self.accounts.get_mut(&id) {
            Some(a) => {
                let e = a.by_unit.entry(unit.to_owned()).or_default();
                e.0 += earned;
                e.1 += redeemed;
            }
            None => self.unknown += 1,
        }
    }

    /// Count every sale `hq` has received from each of `units`.
    pub fn sync(&mut self, hq: &MockHqHandle, units: &[&str]) {
        for unit in units {
            let got = hq.received_kind(unit, EnvelopeKind::Sale);
            self.apply(unit, &got);
        }
    }

    /// HQ's balance of an account.
    pub fn balance(&self, id: &AccountId) -> Option<i64> {
        self.accounts.get(id).map(|a| {
            a.by_unit
                .values()
                .fold(a.opening, |b, (earned, redeemed)| b + earned - redeemed)
        })
    }

    /// Sale records that named an account HQ does not know.
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    fn balance_for(
        &self,
        a: &Account,
        id: &AccountId,
        unit: &str,
        units: usize,
    ) -> hq::LoyaltyBalance {
        let (earned, redeemed) = a.by_unit.get(unit).copied().unwrap_or_default();
        hq::LoyaltyBalance {
            balance: self.balance(id).unwrap_or(0),
            counted_redeemed: redeemed,
            counted_earned: earned,
            allowance: a.offline_limit / units.max(1) as i64,
        }
    }

    /// Every account as a snapshot for `unit`, one of the `units` that share the
    /// offline limits, at `version`.
    pub fn snapshot_for(
        &self,
        unit: &str,
        units: &[&str],
        version: u64,
    ) -> hq::LoyaltyAccountsPush {
        let mut push = hq::LoyaltyAccountsPush {
            version,
            kind: hq::LoyaltyPushKind::Snapshot as i32,
            ..Default::default()
        };
        for (id, a) in &self.accounts {
            let balance = Some(self.balance_for(a, id, unit, units.len()));
            match id {
                AccountId::Customer(cid) => push.customers.push(hq::LoyaltyCustomer {
                    id: cid.clone(),
                    cards: a.cards.clone(),
                    tier: a.tier.clone(),
                    points: balance,
                }),
                AccountId::Voucher(vid) => push.vouchers.push(hq::LoyaltyVoucher {
                    id: vid.clone(),
                    code: a.cards.first().cloned().unwrap_or_default(),
                    balance,
                }),
            }
        }
        push
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(seq: u64, json: serde_json::Value) -> Envelope {
        Envelope {
            seq,
            kind: EnvelopeKind::Sale as i32,
            id: format!("s{seq}"),
            at_unix_ms: 1,
            json: serde_json::to_vec(&json).unwrap(),
        }
    }

    #[test]
    fn the_ledger_counts_each_sale_once_and_splits_the_limit() {
        let mut l = LoyaltyLedger::new();
        l.add_customer("c-1", &["111"], "gold", 1_000, 600);
        l.add_voucher("v-1", "GIFT", 5_000, 2_000);
        let s1 = sale(
            1,
            serde_json::json!({"customer_id":"c-1","loyalty":{"points_earned":10,"points_redeemed":200,"vouchers":[{"voucher_id":"v-1","amount":700,"balance":4300}]}}),
        );
        l.apply("u1", std::slice::from_ref(&s1));
        l.apply("u1", &[s1]);
        l.apply("u2", &[sale(1, serde_json::json!({"customer_id":"c-1","loyalty":{"points_earned":0,"points_redeemed":100}}))]);
        l.apply(
            "u2",
            &[sale(
                2,
                serde_json::json!({"customer_id":"c-9","loyalty":{"points_redeemed":1}}),
            )],
        );
        let c = AccountId::Customer("c-1".into());
        assert_eq!(l.balance(&c), Some(1_000 + 10 - 200 - 100));
        assert_eq!(l.balance(&AccountId::Voucher("v-1".into())), Some(4_300));
        assert_eq!(l.unknown(), 1);
        let p = l.snapshot_for("u1", &["u1", "u2"], 7);
        let b = p.customers[0].points.unwrap();
        assert_eq!(
            (b.balance, b.counted_redeemed, b.counted_earned, b.allowance),
            (710, 200, 10, 300)
        );
        assert_eq!(p.vouchers[0].code, "GIFT");
        assert_eq!(p.vouchers[0].balance.unwrap().allowance, 1_000);
    }
}
