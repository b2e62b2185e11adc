//! `PushLoyaltyRules` and `PushLoyaltyAccounts`: HQ's loyalty rules, customers and
//! vouchers into `crate::loyalty` (`docs/loyalty.md`). A malformed push is
//! `INVALID_ARGUMENT` naming its field and changes nothing.

use outpost_proto::hq;
use tonic::Status;

use crate::domain::loyalty::{Customer, HqBalance, LoyaltyRules, Voucher};
use crate::loyalty::push::{self, AccountsPush, PushError};
use crate::store::Store;

use super::store_status;

fn status(e: PushError) -> Status {
    match e {
        PushError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        PushError::Stale(m) => Status::failed_precondition(m),
        PushError::TooLarge(m) => Status::resource_exhausted(m),
        PushError::Store(e) => store_status(e),
    }
}

/// `PushLoyaltyRules`.
pub async fn rules(store: &Store, p: hq::LoyaltyRulesPush) -> Result<hq::PushReply, Status> {
    let categories: Vec<(String, u32)> = p
        .categories
        .into_iter()
        .map(|c| (c.category, c.points_per_unit))
        .collect();
    let tiers: Vec<(String, u32)> = p
        .tiers
        .into_iter()
        .map(|t| (t.tier, t.multiplier_bp))
        .collect();
    let rules = LoyaltyRules::parse(p.points_per_unit, &categories, &tiers, p.point_value)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    push::rules(store, p.version, rules).await.map_err(status)?;
    tracing::info!(version = p.version, "Loyalty rules applied");
    Ok(hq::PushReply { version: p.version })
}

fn balance(field: &str, b: Option<hq::LoyaltyBalance>) -> Result<HqBalance, Status> {
    let b = b.ok_or_else(|| Status::invalid_argument(format!("{field}: missing")))?;
    Ok(HqBalance {
        balance: b.balance,
        counted_redeemed: b.counted_redeemed,
        counted_earned: b.counted_earned,
        allowance: b.allowance,
    })
}

/// `PushLoyaltyAccounts`.
pub async fn accounts(store: &Store, p: hq::LoyaltyAccountsPush) -> Result<hq::PushReply, Status> {
    let snapshot = match hq::LoyaltyPushKind::try_from(p.kind) {
        Ok(hq::LoyaltyPushKind::Snapshot) => true,
        Ok(hq::LoyaltyPushKind::Delta) => false,
        _ => {
            return Err(Status::invalid_argument(format!(
                "kind: {} is neither SNAPSHOT nor DELTA",
                p.kind
            )));
        }
    };
    let mut customers = Vec::with_capacity(p.customers.len().min(push::MAX_PUSH));
    for (i, c) in p.customers.into_iter().enumerate() {
        customers.push(Customer {
            points: balance(&format!("customers[{i}].points"), c.points)?,
            id: c.id,
            cards: c.cards,
            tier: (!c.tier.is_empty()).then_some(c.tier),
        });
    }
    let mut vouchers = Vec::with_capacity(p.vouchers.len().min(push::MAX_PUSH));
    for (i, v) in p.vouchers.into_iter().enumerate() {
        vouchers.push(Voucher {
            balance: balance(&format!("vouchers[{i}].balance"), v.balance)?,
            id: v.id,
            code: v.code,
        });
    }
    let (n, m) = (customers.len(), vouchers.len());
    push::accounts(
        store,
        AccountsPush {
            version: p.version,
            snapshot,
            base_version: p.base_version,
            customers,
            removed_customers: p.removed_customers,
            vouchers,
            removed_vouchers: p.removed_vouchers,
        },
    )
    .await
    .map_err(status)?;
    tracing::info!(
        version = p.version,
        snapshot,
        customers = n,
        vouchers = m,
        "Loyalty accounts applied"
    );
    Ok(hq::PushReply { version: p.version })
}
