//! Sales, tenders, refunds, inventory movements and the payment state machine.
//!
//! These are the records the sales journal keeps. They are append-only: a sale is
//! never edited; refunds are their own records that point at it.
//!
//! # Layout
//! - this file: tenders and their allocation, sales, refunds and their planning,
//!   stock movements.
//! - [`payment`]: the payment state machine ([`PaymentRecord`], [`EDGES`]).
//! - [`ids`]: the request identifiers, [`IdempotencyKey`] and [`TerminalId`].

pub mod ids;
pub mod payment;

pub use ids::{IdempotencyKey, InvalidIdempotencyKey, InvalidTerminalId, TerminalId};
pub use payment::{
    Cause, EDGES, Edge, IllegalTransition, PaymentKind, PaymentRecord, PaymentState, card_payments,
};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::money::{Money, div_round_half_up};
use super::pricing::{PricedCart, Quantity, TaxConfig, TaxLine};
use super::receipt::Receipt;

/// How a customer pays part of a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenderMethod {
    /// Notes and coins; may give change.
    Cash,
    /// A card through the payment terminal.
    Card,
    /// A phone or watch wallet (Apple Pay, Google Pay, ...) through the payment
    /// terminal, which is told to take nothing else.
    Wallet,
    /// A store-presented QR code the customer pays with a wallet app; the payment
    /// provider confirms it (`sales::qr`).
    Qr,
    /// Loyalty points of the sale's customer (`domain::loyalty`).
    Points,
    /// A gift card or voucher (`domain::loyalty`).
    Voucher,
}

impl TenderMethod {
    /// Whether the payment terminal moves this tender's money (under a payment key,
    /// with the payment state machine).
    pub fn through_terminal(self) -> bool {
        matches!(self, TenderMethod::Card | TenderMethod::Wallet)
    }

    /// Whether the tender moves money through a payment device or provider under a
    /// payment key (and so has a [`PaymentRecord`] and the payment state machine):
    /// the terminal's tenders and QR codes.
    pub fn is_electronic(self) -> bool {
        self.through_terminal() || self == TenderMethod::Qr
    }
}

/// A tender as a terminal asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum TenderRequest {
    /// Cash handed over; the change is computed.
    Cash {
        /// Amount the customer handed over, in minor units.
        tendered: Money,
    },
    /// A card payment; without `amount` it covers what is left after the other tenders.
    Card {
        /// Amount to charge, in minor units.
        #[serde(default)]
        amount: Option<Money>,
    },
    /// A wallet payment on the terminal; the amount works as for a card.
    Wallet {
        /// Amount to charge, in minor units.
        #[serde(default)]
        amount: Option<Money>,
    },
    /// A QR code the customer pays with a wallet app; without `amount` it covers what
    /// is left after the other tenders.
    Qr {
        /// Amount to charge, in minor units.
        #[serde(default)]
        amount: Option<Money>,
    },
    /// Loyalty points of the checkout's customer, worth `amount` minor units (a
    /// multiple of the value of a point).
    Points {
        /// The part of the total the points pay, in minor units.
        amount: Money,
    },
    /// A gift card or voucher, by the code printed on it.
    Voucher {
        /// The voucher's code.
        code: String,
        /// The part of the total it pays, in minor units.
        amount: Money,
    },
}

impl TenderRequest {
    /// The method it asks for.
    pub fn method(&self) -> TenderMethod {
        match self {
            TenderRequest::Cash { .. } => TenderMethod::Cash,
            TenderRequest::Card { .. } => TenderMethod::Card,
            TenderRequest::Wallet { .. } => TenderMethod::Wallet,
            TenderRequest::Qr { .. } => TenderMethod::Qr,
            TenderRequest::Points { .. } => TenderMethod::Points,
            TenderRequest::Voucher { .. } => TenderMethod::Voucher,
        }
    }

    /// The amount an electronic tender asks for (`None`: cash, points or a voucher;
    /// `Some(None)`: what is left after the other tenders).
    fn electronic_amount(&self) -> Option<Option<Money>> {
        match self {
            TenderRequest::Cash { .. }
            | TenderRequest::Points { .. }
            | TenderRequest::Voucher { .. } => None,
            TenderRequest::Card { amount }
            | TenderRequest::Wallet { amount }
            | TenderRequest::Qr { amount } => Some(*amount),
        }
    }
}

/// Card details a receipt may show. Never a card number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CardSummary {
    /// Authorization code.
    pub auth_code: String,
    /// Card brand.
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
}

/// A tender applied to a sale or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tender {
    /// Cash or card.
    pub method: TenderMethod,
    /// The part of the total this tender pays, in minor units.
    pub amount: Money,
    /// For cash: what the customer handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tendered: Option<Money>,
    /// For card: the key the terminal knows this payment by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_key: Option<String>,
    /// For card: what the terminal approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardSummary>,
    /// For a refund to a card: the payment key of the sale's card tender it pays back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_of: Option<String>,
}

/// Why a set of tenders cannot pay a total.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenderError {
    /// No tender was given for a sale with something to pay.
    #[error("a payment is required")]
    Missing,
    /// More tenders than a sale may have.
    #[error("at most {max} tenders are allowed")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// The tenders do not cover the total.
    #[error("tenders cover {covered} of {total} minor units")]
    Insufficient {
        /// What the tenders cover.
        covered: i64,
        /// What is due.
        total: i64,
    },
    /// Card amounts exceed what is due.
    #[error("card amounts exceed the total by {excess} minor units")]
    Overpaid {
        /// By how much.
        excess: i64,
    },
    /// A tender has nothing left to pay.
    #[error("tender {index} is not needed: the others already cover the total")]
    NotNeeded {
        /// Index of the tender in the request.
        index: usize,
    },
    /// At most one card, wallet or QR tender may omit its amount.
    #[error("only one card, wallet or QR tender may leave out its amount")]
    AmbiguousCard,
    /// An amount is zero, negative, or absurdly large.
    #[error("tender {index} has an amount out of range")]
    NonPositive {
        /// Index of the tender in the request.
        index: usize,
    },
}

/// The most tenders one sale may have.
pub const MAX_TENDERS: usize = 8;

/// Decide how much each tender pays. Explicit card amounts come first, then cash
/// (cash beyond what is due becomes change), then a card without an amount takes what
/// is left. Returns the tenders in request order and the change.
pub fn allocate_tenders(
    total: Money,
    requested: &[TenderRequest],
) -> Result<(Vec<Tender>, Money), TenderError> {
    if requested.len() > MAX_TENDERS {
        return Err(TenderError::TooMany { max: MAX_TENDERS });
    }
    if requested.is_empty() {
        return if total.0 == 0 {
            Ok((Vec::new(), Money(0)))
        } else {
            Err(TenderError::Missing)
        };
    }
    // Amounts are bounded well below i64::MAX / MAX_TENDERS so no sum can overflow.
    const MAX_AMOUNT: i64 = 1_000_000_000_000;
    let mut amounts = vec![0i64; requested.len()];
    let mut remaining = total.0;
    let mut open_card = None;
    for (i, t) in requested.iter().enumerate() {
        match (t, t.electronic_amount()) {
            (_, Some(Some(a))) => {
                if a.0 <= 0 || a.0 > MAX_AMOUNT {
                    return Err(TenderError::NonPositive { index: i });
                }
                amounts[i] = a.0;
                remaining -= a.0;
            }
            // Points and vouchers pay a fixed amount, like a card that names one.
            (TenderRequest::Points { amount } | TenderRequest::Voucher { amount, .. }, _) => {
                if amount.0 <= 0 || amount.0 > MAX_AMOUNT {
                    return Err(TenderError::NonPositive { index: i });
                }
                amounts[i] = amount.0;
                remaining -= amount.0;
            }
            (_, Some(None)) => {
                if open_card.is_some() {
                    return Err(TenderError::AmbiguousCard);
                }
                open_card = Some(i);
            }
            (TenderRequest::Cash { tendered }, _) if tendered.0 < 0 || tendered.0 > MAX_AMOUNT => {
                return Err(TenderError::NonPositive { index: i });
            }
            _ => {}
        }
    }
    if remaining < 0 {
        return Err(TenderError::Overpaid { excess: -remaining });
    }
    let mut change = 0i64;
    for (i, t) in requested.iter().enumerate() {
        if let TenderRequest::Cash { tendered } = t {
            if remaining == 0 && tendered.0 > 0 && open_card.is_none() {
                return Err(TenderError::NotNeeded { index: i });
            }
            let used = tendered.0.min(remaining);
            amounts[i] = used;
            remaining -= used;
            change += tendered.0 - used;
        }
    }
    if let Some(i) = open_card {
        if remaining == 0 {
            return Err(TenderError::NotNeeded { index: i });
        }
        amounts[i] = remaining;
        remaining = 0;
    }
    if remaining > 0 {
        return Err(TenderError::Insufficient {
            covered: total.0 - remaining,
            total: total.0,
        });
    }
    let tenders = requested
        .iter()
        .zip(amounts)
        .map(|(t, amount)| match t {
            TenderRequest::Cash { tendered } => Tender {
                method: TenderMethod::Cash,
                amount: Money(amount),
                tendered: Some(*tendered),
                payment_key: None,
                card: None,
                refund_of: None,
            },
            TenderRequest::Card { .. }
            | TenderRequest::Wallet { .. }
            | TenderRequest::Qr { .. }
            | TenderRequest::Points { .. }
            | TenderRequest::Voucher { .. } => terminal_tender(t.method(), amount),
        })
        .collect();
    Ok((tenders, Money(change)))
}

/// A card or wallet tender before the terminal is asked.
fn terminal_tender(method: TenderMethod, amount: i64) -> Tender {
    Tender {
        method,
        amount: Money(amount),
        tendered: None,
        payment_key: None,
        card: None,
        refund_of: None,
    }
}

/// A completed sale, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Sale {
    /// Time-ordered id (UUIDv7).
    pub id: Uuid,
    /// The terminal's `Idempotency-Key` for the checkout.
    #[schema(value_type = String)]
    pub idempotency_key: IdempotencyKey,
    /// Which terminal sold it.
    #[schema(value_type = String)]
    pub terminal_id: TerminalId,
    /// Always `completed` for a journaled sale; refunds are separate records.
    pub status: SaleStatus,
    /// When the checkout began.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the sale was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: OffsetDateTime,
    /// Lines, discounts, taxes and totals.
    pub cart: PricedCart,
    /// How it was paid.
    pub tenders: Vec<Tender>,
    /// Cash given back.
    pub change: Money,
    /// The receipt.
    pub receipt: Receipt,
    /// HQ's id of the customer the checkout named (`domain::loyalty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Points earned and redeemed, vouchers used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty: Option<super::loyalty::SaleLoyalty>,
}

/// State of a journaled sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    /// Paid and recorded.
    Completed,
}

/// One refunded line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundLine {
    /// 1-based line number in the sale.
    pub line: usize,
    /// SKU of the line.
    pub sku: String,
    /// How much of the line is refunded.
    pub quantity: Quantity,
    /// Amount refunded for it, in minor units.
    pub amount: Money,
}

/// A refund of some or all of a sale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    /// Time-ordered id.
    pub id: Uuid,
    /// The sale refunded.
    pub sale_id: Uuid,
    /// The terminal's `Idempotency-Key` for the refund.
    #[schema(value_type = String)]
    pub idempotency_key: IdempotencyKey,
    /// Which terminal refunded it.
    #[schema(value_type = String)]
    pub terminal_id: TerminalId,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Why (free text from the terminal).
    #[serde(default)]
    pub reason: Option<String>,
    /// Refunded lines.
    pub lines: Vec<RefundLine>,
    /// Tax contained in the refund, per class.
    pub taxes: Vec<TaxLine>,
    /// Total paid back.
    pub total: Money,
    /// How it was paid back.
    pub tenders: Vec<Tender>,
}

/// Which part of a sale to refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundLineRequest {
    /// 1-based line number in the sale.
    pub line: usize,
    /// Units to refund (each-items). Omit both to refund what is left of the line.
    #[serde(default)]
    pub quantity: Option<u32>,
    /// Grams to refund (weight items).
    #[serde(default)]
    pub weight_grams: Option<u32>,
}

/// Why a refund cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefundError {
    /// The line number does not exist in the sale.
    #[error("line {line} does not exist in the sale")]
    NoSuchLine {
        /// The line asked for.
        line: usize,
    },
    /// More than what was sold and not yet refunded.
    #[error("line {line}: only {left} left to refund")]
    Exceeds {
        /// The line asked for.
        line: usize,
        /// What is left, in units or grams.
        left: u32,
    },
    /// The quantity does not fit the line (units for a weight line, or zero).
    #[error("line {line}: invalid refund quantity")]
    BadQuantity {
        /// The line asked for.
        line: usize,
    },
    /// Nothing is left to refund.
    #[error("nothing left to refund")]
    NothingLeft,
}

/// What a refund will pay back, before tenders are chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundPlan {
    /// Refunded lines.
    pub lines: Vec<RefundLine>,
    /// Tax contained, per class.
    pub taxes: Vec<TaxLine>,
    /// Total paid back.
    pub total: Money,
}

fn qty_value(q: &Quantity) -> u32 {
    match q {
        Quantity::Units(n) | Quantity::Grams(n) => *n,
    }
}

/// Plan a refund of `requested` lines (all that is left when empty) of `sale`, given the
/// refunds already made. A line refunded in part pays back its share of the line total
/// (discount included), rounded half-up; the refund that empties a line pays back
/// exactly what is left of it, so the refunds of a line always add up to its total.
pub fn plan_refund(
    sale: &Sale,
    previous: &[Refund],
    requested: &[RefundLineRequest],
    tax: &TaxConfig,
) -> Result<RefundPlan, RefundError> {
    let n = sale.cart.lines.len();
    let mut refunded_qty = vec![0u32; n];
    let mut refunded_amt = vec![0i64; n];
    for r in previous {
        for l in &r.lines {
            if let Some(i) = l.line.checked_sub(1).filter(|i| *i < n) {
                refunded_qty[i] += qty_value(&l.quantity);
                refunded_amt[i] += l.amount.0;
            }
        }
    }
    let wanted: Vec<(usize, u32)> = if requested.is_empty() {
        (0..n)
            .filter_map(|i| {
                let left = qty_value(&sale.cart.lines[i].quantity) - refunded_qty[i];
                (left > 0).then_some((i, left))
            })
            .collect()
    } else {
        let mut out = Vec::with_capacity(requested.len());
        for r in requested {
            let i = r
                .line
                .checked_sub(1)
                .filter(|i| *i < n)
                .ok_or(RefundError::NoSuchLine { line: r.line })?;
            let line = &sale.cart.lines[i];
            let left = qty_value(&line.quantity) - refunded_qty[i];
            let q = match (&line.quantity, r.quantity, r.weight_grams) {
                (_, None, None) => left,
                (Quantity::Units(_), Some(q), None) | (Quantity::Grams(_), None, Some(q)) => q,
                _ => return Err(RefundError::BadQuantity { line: r.line }),
            };
            if q == 0 {
                return Err(RefundError::BadQuantity { line: r.line });
            }
            if q > left {
                return Err(RefundError::Exceeds { line: r.line, left });
            }
            // The same line twice in one request counts against the same remainder.
            refunded_qty[i] += q;
            out.push((i, q));
        }
        for (i, q) in &out {
            refunded_qty[*i] -= q;
        }
        out
    };
    if wanted.is_empty() || wanted.iter().all(|(_, q)| *q == 0) {
        return Err(RefundError::NothingLeft);
    }
    let mut lines = Vec::with_capacity(wanted.len());
    let mut by_class: std::collections::BTreeMap<String, i64> = Default::default();
    for (i, q) in wanted {
        let line = &sale.cart.lines[i];
        let sold = qty_value(&line.quantity);
        let amount = if refunded_qty[i] + q == sold {
            line.total.0 - refunded_amt[i]
        } else {
            div_round_half_up(i128::from(line.total.0) * i128::from(q), i128::from(sold)) as i64
        };
        refunded_qty[i] += q;
        refunded_amt[i] += amount;
        *by_class.entry(line.tax_class.clone()).or_default() += amount;
        lines.push(RefundLine {
            line: i + 1,
            sku: line.sku.as_str().to_owned(),
            quantity: match line.quantity {
                Quantity::Units(_) => Quantity::Units(q),
                Quantity::Grams(_) => Quantity::Grams(q),
            },
            amount: Money(amount),
        });
    }
    let mut taxes = Vec::new();
    let mut tax_total = 0i64;
    for (class, base) in by_class {
        // The sale priced with this class, so the rate is known; a class removed from
        // the configuration since falls back to the rate recorded on the sale.
        // The rate the sale was taxed at; the store's current rate only for a class the
        // sale did not record (which cannot happen for a line it sold).
        let rate = sale
            .cart
            .taxes
            .iter()
            .find(|t| t.tax_class == class)
            .map(|t| t.rate_bp)
            .or_else(|| tax.rates_bp.get(&class).copied())
            .unwrap_or(0);
        let r = i128::from(rate);
        let t = if sale.cart.prices_include_tax {
            div_round_half_up(i128::from(base) * r, 10_000 + r)
        } else {
            div_round_half_up(i128::from(base) * r, 10_000)
        } as i64;
        tax_total += t;
        taxes.push(TaxLine {
            tax_class: class,
            rate_bp: rate,
            base: Money(base),
            tax: Money(t),
        });
    }
    let lines_total: i64 = lines.iter().map(|l| l.amount.0).sum();
    let mut total = if sale.cart.prices_include_tax {
        lines_total
    } else {
        lines_total + tax_total
    };
    let emptied = (0..n).all(|i| refunded_qty[i] == qty_value(&sale.cart.lines[i].quantity));
    if emptied {
        // The refund that empties the sale pays back exactly what is left of it, tax
        // per class included, so a sale's refunds always add up to the sale.
        for t in &mut taxes {
            let sold = sale
                .cart
                .taxes
                .iter()
                .find(|s| s.tax_class == t.tax_class)
                .map_or(0, |s| s.tax.0);
            let before: i64 = previous
                .iter()
                .flat_map(|r| &r.taxes)
                .filter(|p| p.tax_class == t.tax_class)
                .map(|p| p.tax.0)
                .sum();
            t.tax = Money(sold - before);
        }
        total = sale.cart.total.0 - previous.iter().map(|r| r.total.0).sum::<i64>();
    }
    Ok(RefundPlan {
        lines,
        taxes,
        total: Money(total),
    })
}

/// Split a refund over the sale's tenders: back to the cards first (never more than
/// each card paid, minus what earlier refunds already returned to it), the rest in cash.
pub fn refund_tenders(sale: &Sale, previous: &[Refund], total: Money) -> Vec<Tender> {
    let mut left = total.0;
    let mut out = Vec::new();
    for t in sale.tenders.iter().filter(|t| t.method.is_electronic()) {
        if left == 0 {
            break;
        }
        let already: i64 = previous
            .iter()
            .flat_map(|r| &r.tenders)
            .filter(|rt| rt.refund_of.is_some() && rt.refund_of == t.payment_key)
            .map(|rt| rt.amount.0)
            .sum();
        let room = (t.amount.0 - already).max(0);
        let take = room.min(left);
        if take > 0 {
            out.push(Tender {
                // Back the way it was paid: a wallet refund is a wallet payment again.
                method: t.method,
                amount: Money(take),
                tendered: None,
                // Filled with the refund's own key when the refund is planned.
                payment_key: None,
                card: t.card.clone(),
                refund_of: t.payment_key.clone(),
            });
            left -= take;
        }
    }
    if left > 0 {
        out.push(Tender {
            method: TenderMethod::Cash,
            amount: Money(left),
            tendered: None,
            payment_key: None,
            card: None,
            refund_of: None,
        });
    }
    out
}

/// Why stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Sold.
    Sale,
    /// Came back with a refund.
    Refund,
    /// Corrected by hand (damaged, lost, found...).
    Adjustment,
    /// Delivered.
    Receipt,
    /// Set by a stock count.
    Count,
}

/// One entry of the append-only inventory journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Movement {
    /// Time-ordered id.
    pub id: Uuid,
    /// The item.
    pub sku: String,
    /// Change in units, or grams for weight items.
    pub delta: i64,
    /// Why.
    pub kind: MovementKind,
    /// Free text reason, for adjustments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sale or refund that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Uuid>,
    /// Stock after the movement. May be negative: the shelf is the truth, the count
    /// catches up.
    pub stock_after: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cash(t: i64) -> TenderRequest {
        TenderRequest::Cash { tendered: Money(t) }
    }
    fn card(a: Option<i64>) -> TenderRequest {
        TenderRequest::Card {
            amount: a.map(Money),
        }
    }

    #[test]
    fn cash_gives_change() {
        let (t, change) = allocate_tenders(Money(1234), &[cash(2000)]).unwrap();
        assert_eq!(t[0].amount, Money(1234));
        assert_eq!(change, Money(766));
    }

    #[test]
    fn split_card_amount_then_cash() {
        let (t, change) = allocate_tenders(Money(1000), &[card(Some(600)), cash(500)]).unwrap();
        assert_eq!(
            (t[0].amount, t[1].amount, change),
            (Money(600), Money(400), Money(100))
        );
    }

    #[test]
    fn open_card_takes_what_cash_leaves() {
        let (t, change) = allocate_tenders(Money(1000), &[cash(300), card(None)]).unwrap();
        assert_eq!(
            (t[0].amount, t[1].amount, change),
            (Money(300), Money(700), Money(0))
        );
    }

    #[test]
    fn a_wallet_splits_like_a_card_and_keeps_its_method() {
        let wallet = |a: Option<i64>| TenderRequest::Wallet {
            amount: a.map(Money),
        };
        let (t, change) =
            allocate_tenders(Money(1000), &[card(Some(300)), wallet(None), cash(500)]).unwrap();
        assert_eq!(
            (t[0].amount, t[1].amount, t[2].amount, change),
            (Money(300), Money(200), Money(500), Money(0))
        );
        assert_eq!(t[1].method, TenderMethod::Wallet);
        assert!(TenderMethod::Wallet.through_terminal() && TenderMethod::Card.through_terminal());
        assert!(!TenderMethod::Cash.through_terminal());
        assert_eq!(
            allocate_tenders(Money(1000), &[card(None), wallet(None)]),
            Err(TenderError::AmbiguousCard)
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[wallet(Some(0))]),
            Err(TenderError::NonPositive { index: 0 })
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[wallet(Some(600)), card(Some(600))]),
            Err(TenderError::Overpaid { excess: 200 })
        );
    }

    #[test]
    fn tender_errors() {
        assert_eq!(
            allocate_tenders(Money(1000), &[cash(500)]),
            Err(TenderError::Insufficient {
                covered: 500,
                total: 1000
            })
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[card(Some(1500))]),
            Err(TenderError::Overpaid { excess: 500 })
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[card(None), card(None)]),
            Err(TenderError::AmbiguousCard)
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[cash(2000), card(None)]),
            Err(TenderError::NotNeeded { index: 1 })
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[card(Some(0))]),
            Err(TenderError::NonPositive { index: 0 })
        );
        assert_eq!(
            allocate_tenders(Money(1000), &[]),
            Err(TenderError::Missing)
        );
        assert!(allocate_tenders(Money(0), &[]).is_ok());
        // Huge amounts are refused rather than overflowing into a valid-looking sum.
        assert_eq!(
            allocate_tenders(
                Money(1000),
                &[card(Some(i64::MAX)), card(Some(i64::MAX)), card(Some(1002))]
            ),
            Err(TenderError::NonPositive { index: 0 })
        );
        let many = vec![cash(1); MAX_TENDERS + 1];
        assert_eq!(
            allocate_tenders(Money(1000), &many),
            Err(TenderError::TooMany { max: MAX_TENDERS })
        );
    }

    fn sale_of(prices_include_tax: bool) -> Sale {
        use crate::domain::pricing::{CartItem, price_cart};
        use crate::domain::product::parse_product_json;
        use crate::domain::promotion::PromotionSet;
        let p = parse_product_json(br#"{"sku":"A","name":"Item","category":"c","price":333,"currency":"EUR","tax_class":"standard"}"#).unwrap();
        let tax = TaxConfig {
            prices_include_tax,
            rates_bp: [("standard".to_owned(), 1900)].into(),
        };
        let now = OffsetDateTime::now_utc();
        let cart = price_cart(
            &[CartItem {
                product: p,
                quantity: Quantity::Units(3),
            }],
            &PromotionSet::new(vec![]),
            &tax,
            now,
        )
        .unwrap();
        let receipt = Receipt::from_priced("s", "id", "t", now, &cart, vec![], Money(0));
        Sale {
            id: Uuid::now_v7(),
            idempotency_key: IdempotencyKey::parse("k").unwrap(),
            terminal_id: TerminalId::parse("t").unwrap(),
            status: SaleStatus::Completed,
            created_at: now,
            completed_at: now,
            tenders: vec![Tender {
                method: TenderMethod::Cash,
                amount: cart.total,
                tendered: Some(cart.total),
                payment_key: None,
                card: None,
                refund_of: None,
            }],
            change: Money(0),
            cart,
            receipt,
            customer_id: None,
            loyalty: None,
        }
    }

    fn as_refund(sale: &Sale, plan: RefundPlan) -> Refund {
        Refund {
            id: Uuid::now_v7(),
            sale_id: sale.id,
            idempotency_key: IdempotencyKey::parse("r").unwrap(),
            terminal_id: TerminalId::parse("t").unwrap(),
            created_at: sale.created_at,
            reason: None,
            lines: plan.lines,
            taxes: plan.taxes,
            total: plan.total,
            tenders: vec![],
        }
    }

    #[test]
    fn refunds_one_unit_at_a_time_add_up_to_the_sale_in_both_tax_modes() {
        for inclusive in [true, false] {
            let sale = sale_of(inclusive);
            let tax = TaxConfig {
                prices_include_tax: inclusive,
                rates_bp: Default::default(),
            };
            let mut done = Vec::new();
            for _ in 0..3 {
                let req = [RefundLineRequest {
                    line: 1,
                    quantity: Some(1),
                    weight_grams: None,
                }];
                let plan = plan_refund(&sale, &done, &req, &tax).unwrap();
                done.push(as_refund(&sale, plan));
            }
            let total: i64 = done.iter().map(|r| r.total.0).sum();
            let taxed: i64 = done.iter().flat_map(|r| &r.taxes).map(|t| t.tax.0).sum();
            assert_eq!(total, sale.cart.total.0, "inclusive={inclusive}");
            assert_eq!(taxed, sale.cart.tax_total.0, "inclusive={inclusive}");
            assert_eq!(
                plan_refund(&sale, &done, &[], &tax),
                Err(RefundError::NothingLeft)
            );
        }
    }
}
