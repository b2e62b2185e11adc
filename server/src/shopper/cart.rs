//! A shopper's cart: lines added by barcode or SKU, priced by the store's pricing
//! engine (the same promotions and taxes as a till) each time it is shown.

use crate::config::ShopperSettings;
use crate::domain::pricing::PricedCart;
use crate::sales::checkout::LineRequest;
use crate::sales::{Sales, SellError};

/// Why a cart change was refused; the cart is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CartError {
    /// The line is not one a shopper can add (the message says why).
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: &'static str,
        /// Message for people.
        message: String,
        /// The field at fault.
        field: &'static str,
    },
    /// The cart has `max_lines` lines.
    #[error("the cart has {0} lines, the most a shopper cart may have")]
    Full(usize),
    /// No line with this number.
    #[error("the cart has no line {0}")]
    NoSuchLine(usize),
    /// Pricing refused the cart with the line added (unknown product, sold by weight…).
    #[error(transparent)]
    Sell(#[from] SellError),
}

/// A line a shopper adds: a barcode (scanned or typed) or a SKU, and how many.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLine {
    /// The barcode scanned or typed (or give `sku`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub barcode: Option<String>,
    /// The product's SKU, e.g. from a search (or give `barcode`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    pub sku: Option<String>,
    /// Units (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9999)]
    pub quantity: Option<u32>,
}

/// The cart as the shopper sees it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CartView {
    /// The lines as added (line `n` of `priced` is line `n` here).
    pub lines: Vec<LineRequest>,
    /// The priced cart with promotions applied; null while the cart is empty.
    pub priced: Option<PricedCart>,
}

fn invalid(code: &'static str, field: &'static str, message: impl Into<String>) -> CartError {
    CartError::Invalid {
        code,
        message: message.into(),
        field,
    }
}

/// Price `lines` (an empty cart has no price).
pub fn view(sales: &Sales, lines: &[LineRequest]) -> Result<CartView, SellError> {
    let priced = if lines.is_empty() {
        None
    } else {
        Some(sales.price(lines)?)
    };
    Ok(CartView {
        lines: lines.to_vec(),
        priced,
    })
}

/// Add `add` to `lines` (merged into a line of the same product and code when there
/// is one), priced to check it; on any error `lines` is unchanged.
pub fn add(
    sales: &Sales,
    settings: &ShopperSettings,
    lines: &mut Vec<LineRequest>,
    add: AddLine,
) -> Result<CartView, CartError> {
    let quantity = add.quantity.unwrap_or(1);
    if quantity == 0 || quantity > settings.max_quantity {
        return Err(invalid(
            "invalid_quantity",
            "quantity",
            format!("quantity must be 1 to {}", settings.max_quantity),
        ));
    }
    let trim = |s: Option<String>| s.map(|s| s.trim().to_owned());
    let (barcode, sku) = match (trim(add.barcode), trim(add.sku)) {
        (Some(b), None) if !b.is_empty() && b.len() <= 64 => (Some(b), None),
        (None, Some(s)) if !s.is_empty() && s.len() <= 64 => (None, Some(s)),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "invalid_line",
                "barcode",
                "give a barcode or a SKU, not both",
            ));
        }
        (None, None) => {
            return Err(invalid(
                "invalid_line",
                "barcode",
                "give a barcode or a SKU",
            ));
        }
        (b, _) => {
            let field = if b.is_some() { "barcode" } else { "sku" };
            return Err(invalid(
                "invalid_line",
                field,
                format!("{field} must be 1 to 64 characters"),
            ));
        }
    };
    let mut next = lines.clone();
    match next
        .iter_mut()
        .find(|l| l.barcode == barcode && l.sku == sku && l.weight_grams.is_none())
    {
        Some(line) => {
            let q = line.quantity.unwrap_or(1) + quantity;
            if q > settings.max_quantity {
                return Err(invalid(
                    "invalid_quantity",
                    "quantity",
                    format!("a line may have at most {} units", settings.max_quantity),
                ));
            }
            line.quantity = Some(q);
        }
        None => {
            if next.len() >= settings.max_lines {
                return Err(CartError::Full(settings.max_lines));
            }
            next.push(LineRequest {
                sku,
                barcode,
                quantity: Some(quantity),
                weight_grams: None,
                scale: None,
            });
        }
    }
    let v = view(sales, &next)?;
    *lines = next;
    Ok(v)
}

/// Remove line `number` (1-based, as shown).
pub fn remove(
    sales: &Sales,
    lines: &mut Vec<LineRequest>,
    number: usize,
) -> Result<CartView, CartError> {
    if number == 0 || number > lines.len() {
        return Err(CartError::NoSuchLine(number));
    }
    let mut next = lines.clone();
    next.remove(number - 1);
    let v = view(sales, &next)?;
    *lines = next;
    Ok(v)
}
