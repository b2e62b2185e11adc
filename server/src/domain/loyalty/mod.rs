//! Customers, loyalty points and vouchers: what HQ pushes, what a sale earns and
//! redeems, and how much a unit may redeem while HQ cannot see it (`docs/loyalty.md`).
//!
//! Pure: HQ's records are parsed and checked here, points are computed from a priced
//! cart, and the offline limit is arithmetic over what HQ said and what this unit did.
//!
//! # Layout
//! - [`rules`]: [`LoyaltyRules`] (points per currency unit, per category, tier
//!   multipliers, the value of a point) and their checks.
//! - [`accrual`]: [`accrue`], the points a priced cart earns.
//! - [`account`]: [`HqBalance`], [`LocalTotals`] and [`AccountView`]: the offline limit.
//! - [`customer`]: [`Customer`], [`Voucher`], [`CustomerRef`], and the sale's record of
//!   both ([`SaleLoyalty`]).

pub mod account;
pub mod accrual;
pub mod customer;
pub mod rules;

pub use account::{AccountView, HqBalance, LocalTotals, RedeemError};
pub use accrual::{Accrual, accrue};
pub use customer::{
    Customer, CustomerRef, LoyaltyRecordError, SaleLoyalty, Voucher, VoucherUse, check_customer,
    check_token, check_voucher,
};
pub use rules::{LoyaltyRules, RulesError};
