//! A sale's loyalty: resolved before the writer job ([`plan`]), checked against the
//! offline limit inside it ([`redeem`]), and recorded with the sale ([`record`], from
//! `sales::journal::record_sale`), so a redemption is never recorded without its sale
//! nor a sale without its redemption.
//!
//! A checkout that also pays by card records its sale only once the terminal approved,
//! so its redemptions are checked and held ([`reserve`]) in the job that writes its
//! pending record, turned into redemptions by [`record`], and given back by
//! [`release`] in the job that ends an unwound checkout. A hold counts as redeemed
//! meanwhile (`LocalTotals::reserved`), so no other checkout can spend it.

use crate::domain::loyalty::{
    AccountView, CustomerRef, LocalTotals, SaleLoyalty, VoucherUse, accrue, check_token,
};
use crate::domain::pricing::PricedCart;
use crate::domain::sale::{Sale, TenderMethod, TenderRequest};
use crate::store::{Store, StoreError, Tx};

use super::{
    LoyaltyError, Stored, card_in, customer_in, customer_totals_key, invalid, put, rules_in,
    totals_in, voucher_code_in, voucher_in, voucher_totals_key,
};

/// What a checkout records of loyalty: the customer's id and the sale's loyalty.
pub type Planned = (Option<String>, Option<SaleLoyalty>);

/// Resolve the checkout's customer and vouchers, compute the points the cart earns and
/// what the points tenders redeem. Balances are as this unit knows them now;
/// [`redeem`] checks and fills them again inside the sale's writer job.
pub fn plan(
    store: &Store,
    customer: Option<&CustomerRef>,
    cart: &PricedCart,
    requested: &[TenderRequest],
) -> Result<Planned, LoyaltyError> {
    let customer = match customer {
        None => None,
        Some(r) => {
            r.check().map_err(invalid)?;
            let id = match (&r.id, &r.card) {
                (Some(id), _) => id.clone(),
                // `check` made sure the card is there.
                (None, card) => card_in(store, card.as_deref().unwrap_or_default())?
                    .ok_or_else(|| LoyaltyError::UnknownCustomer("that loyalty card".into()))?,
            };
            Some(
                customer_in(store, &id)?
                    .ok_or_else(|| LoyaltyError::UnknownCustomer(format!("id {id:?}")))?,
            )
        }
    };
    let rules = rules_in(store)?.map(|(_, r)| r);
    let mut loyalty = SaleLoyalty::default();
    let mut seen = Vec::new();
    for (i, t) in requested.iter().enumerate() {
        match t {
            TenderRequest::Points { amount } => {
                let field = || format!("payments[{i}]");
                if customer.is_none() {
                    return Err(LoyaltyError::Invalid {
                        field: "customer".into(),
                        reason: "a points tender needs the checkout's customer".into(),
                    });
                }
                let rules = rules.as_ref().ok_or(LoyaltyError::NoRules)?;
                if amount.0 <= 0 || amount.0 % rules.point_value != 0 {
                    return Err(LoyaltyError::Invalid {
                        field: field(),
                        reason: format!(
                            "a points amount must be a positive multiple of the value of a point ({} minor units)",
                            rules.point_value
                        ),
                    });
                }
                loyalty.points_redeemed += amount.0 / rules.point_value;
            }
            TenderRequest::Voucher { code, amount } => {
                check_token(&format!("payments[{i}].code"), code).map_err(invalid)?;
                let v = voucher_in(store, code)?.ok_or(LoyaltyError::UnknownVoucher)?;
                if seen.contains(&v.id) {
                    return Err(LoyaltyError::Invalid {
                        field: format!("payments[{i}]"),
                        reason:
                            "the same voucher is given twice: give it once with the whole amount"
                                .into(),
                    });
                }
                seen.push(v.id.clone());
                let view =
                    AccountView::of(v.balance, totals_in(store, &voucher_totals_key(&v.id))?);
                loyalty.vouchers.push(VoucherUse {
                    voucher_id: v.id,
                    amount: *amount,
                    balance: view.balance - amount.0,
                });
            }
            TenderRequest::Cash { .. }
            | TenderRequest::Card { .. }
            | TenderRequest::Wallet { .. }
            | TenderRequest::Qr { .. } => {}
        }
    }
    let Some(c) = customer else {
        return Ok((None, (!loyalty.vouchers.is_empty()).then_some(loyalty)));
    };
    if let Some(rules) = &rules {
        loyalty.points_earned = accrue(rules, cart, c.tier.as_deref()).points;
    }
    let view = AccountView::of(c.points, totals_in(store, &customer_totals_key(&c.id))?);
    loyalty.points_balance = Some(view.balance - loyalty.points_redeemed + loyalty.points_earned);
    loyalty.tier = c.tier;
    Ok((Some(c.id), Some(loyalty)))
}

/// Inside the sale's writer job: check every redemption of `sale` against the
/// account's balance and this unit's offline allowance as the job sees them, and fill
/// in the balances after the sale (on the sale and its receipt). Writes nothing.
pub fn redeem(tx: &Tx<'_>, sale: &mut Sale) -> Result<(), LoyaltyError> {
    let Some(loyalty) = sale.loyalty.as_mut() else {
        return Ok(());
    };
    if let Some(id) = &sale.customer_id {
        let c = customer_in(tx, id)?
            .ok_or_else(|| LoyaltyError::UnknownCustomer(format!("id {id:?}")))?;
        let view = AccountView::of(c.points, totals_in(tx, &customer_totals_key(id))?);
        if loyalty.points_redeemed > 0 {
            view.check(c.points, loyalty.points_redeemed)
                .map_err(|source| LoyaltyError::Redeem {
                    what: "points",
                    source,
                })?;
        }
        loyalty.points_balance =
            Some(view.balance - loyalty.points_redeemed + loyalty.points_earned);
    }
    for u in &mut loyalty.vouchers {
        let v = voucher_code_in(tx, &u.voucher_id)?
            .map(|code| voucher_in(tx, &code))
            .transpose()?
            .flatten()
            .ok_or(LoyaltyError::UnknownVoucher)?;
        let view = AccountView::of(v.balance, totals_in(tx, &voucher_totals_key(&v.id))?);
        view.check(v.balance, u.amount.0)
            .map_err(|source| LoyaltyError::Redeem {
                what: "voucher",
                source,
            })?;
        u.balance = view.balance - u.amount.0;
    }
    sale.receipt.loyalty = Some(loyalty.clone());
    Ok(())
}

/// How a job changes this unit's totals for a sale's loyalty.
#[derive(Clone, Copy)]
enum Change {
    /// Record the sale: earned and redeemed grow; `held`: the redemptions were held.
    Record { held: bool },
    /// Hold the redemptions of a checkout waiting on the terminal.
    Hold,
    /// Give back what a checkout held.
    Release,
}

fn apply(t: &mut LocalTotals, how: Change, earned: i64, redeemed: i64) {
    match how {
        Change::Record { held } => {
            t.earned = t.earned.saturating_add(earned);
            t.redeemed = t.redeemed.saturating_add(redeemed);
            if held {
                t.reserved = t.reserved.saturating_sub(redeemed).max(0);
            }
        }
        Change::Hold => t.reserved = t.reserved.saturating_add(redeemed),
        Change::Release => t.reserved = t.reserved.saturating_sub(redeemed).max(0),
    }
}

fn change(tx: &mut Tx<'_>, sale: &Sale, how: Change) -> Result<(), StoreError> {
    let Some(loyalty) = &sale.loyalty else {
        return Ok(());
    };
    if let Some(id) = &sale.customer_id {
        let key = customer_totals_key(id);
        let mut t = totals_in(tx, &key)?;
        apply(&mut t, how, loyalty.points_earned, loyalty.points_redeemed);
        put(tx, key, &Stored::Totals(t));
    }
    for u in &loyalty.vouchers {
        let key = voucher_totals_key(&u.voucher_id);
        let mut t = totals_in(tx, &key)?;
        apply(&mut t, how, 0, u.amount.0);
        put(tx, key, &Stored::Totals(t));
    }
    Ok(())
}

/// Add `sale`'s points and voucher amounts to this unit's all-time totals, in the job
/// that records the sale (before its pending record is removed). A sale that waited on
/// the terminal had its redemptions held: the hold becomes the redemption. A sale
/// without loyalty writes nothing.
pub fn record(tx: &mut Tx<'_>, sale: &Sale) -> Result<(), StoreError> {
    if sale.loyalty.is_none() {
        return Ok(());
    }
    let held = tx.get(&crate::store::keys::pending(sale.id))?.is_some();
    change(tx, sale, Change::Record { held })
}

/// In the job that writes a card checkout's pending record: check its redemptions as
/// [`redeem`] does, and hold them.
pub fn reserve(tx: &mut Tx<'_>, sale: &Sale) -> Result<(), LoyaltyError> {
    let mut checked = sale.clone();
    redeem(tx, &mut checked)?;
    Ok(change(tx, sale, Change::Hold)?)
}

/// In the job that ends an unwound card checkout without a sale (before its pending
/// record is removed): give back what [`reserve`] held.
pub fn release(tx: &mut Tx<'_>, sale: &Sale) -> Result<(), StoreError> {
    change(tx, sale, Change::Release)
}

/// Whether a sale was paid in part with points or a voucher (a refund of it would
/// have to pay them back, which this unit does not do yet).
pub fn redeemed_in(sale: &Sale) -> bool {
    sale.tenders
        .iter()
        .any(|t| matches!(t.method, TenderMethod::Points | TenderMethod::Voucher))
}
