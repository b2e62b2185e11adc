//! Pricing the cart: lines to products and quantities (by SKU, barcode or weight
//! label), weighing the lines that name a scale, and the priced cart.

use time::OffsetDateTime;

use super::request::{LineRequest, MAX_LINES, Weigher};
use crate::domain::gtin::Gtin;
use crate::domain::pricing::{CartItem, PricedCart, Quantity, price_cart};
use crate::domain::product::SoldBy;
use crate::domain::variable_measure;
use crate::sales::{Sales, SellError};

impl Sales {
    /// The product line `i` names, and the weight its barcode carries when it is a
    /// weight label of the store's scales (a GS1 variable-measure code).
    fn line_product(
        &self,
        catalog: &crate::store::catalog::Catalog,
        i: usize,
        l: &LineRequest,
    ) -> Result<(crate::domain::product::Product, Option<u32>), SellError> {
        let field = |f: &str| Some(format!("lines[{i}].{f}"));
        Ok(match (&l.sku, &l.barcode) {
            (Some(sku), None) => (
                catalog
                    .product(sku)?
                    .ok_or_else(|| SellError::UnknownProduct {
                        line: i,
                        what: format!("SKU {sku}"),
                    })?,
                None,
            ),
            (None, Some(code)) => {
                let gtin = Gtin::parse(code).map_err(|e| {
                    SellError::invalid(
                        "invalid_barcode",
                        format!("line {i}: {e}"),
                        field("barcode"),
                    )
                })?;
                let measured = variable_measure::decode(&self.config().variable_measure, &gtin);
                let key = measured.as_ref().map_or(&gtin, |m| &m.base);
                let unknown = || SellError::UnknownProduct {
                    line: i,
                    what: match &measured {
                        Some(m) => format!("weight label {code} (item barcode {})", m.base),
                        None => format!("barcode {code}"),
                    },
                };
                let sku = catalog
                    .sku_by_gtin14(&key.to_gtin14())?
                    .ok_or_else(unknown)?;
                let product = catalog.product(&sku)?.ok_or_else(unknown)?;
                let grams = match measured {
                    None => None,
                    Some(_) if product.sold_by != SoldBy::Weight => {
                        return Err(SellError::invalid(
                            "invalid_barcode",
                            format!(
                                "line {i}: {code} is a weight label but {} is sold by the piece",
                                product.sku
                            ),
                            field("barcode"),
                        ));
                    }
                    Some(m) if m.grams == 0 => {
                        return Err(SellError::invalid(
                            "invalid_barcode",
                            format!("line {i}: the weight label {code} says 0 g"),
                            field("barcode"),
                        ));
                    }
                    Some(m) => Some(m.grams),
                };
                (product, grams)
            }
            _ => {
                return Err(SellError::invalid(
                    "invalid_line",
                    format!("line {i}: give exactly one of sku or barcode"),
                    Some(format!("lines[{i}]")),
                ));
            }
        })
    }

    /// Resolve lines to products and quantities.
    pub fn cart_items(&self, lines: &[LineRequest]) -> Result<Vec<CartItem>, SellError> {
        if lines.is_empty() {
            return Err(SellError::invalid(
                "empty_cart",
                "a cart needs at least one line",
                Some("lines".into()),
            ));
        }
        if lines.len() > MAX_LINES {
            return Err(SellError::invalid(
                "too_many_lines",
                format!("a cart may have at most {MAX_LINES} lines"),
                Some("lines".into()),
            ));
        }
        let catalog = self.store.catalog();
        let mut items = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            let field = |f: &str| Some(format!("lines[{i}].{f}"));
            if l.scale.is_some() {
                return Err(SellError::invalid(
                    "scale_needs_checkout",
                    format!(
                        "line {i}: a line is weighed on its scale at checkout; to price it, give weight_grams"
                    ),
                    field("scale"),
                ));
            }
            let (product, label_grams) = self.line_product(&catalog, i, l)?;
            if product.currency != self.config().currency {
                return Err(SellError::invalid(
                    "currency_mismatch",
                    format!(
                        "line {i}: product is priced in {}, the store sells in {}",
                        product.currency,
                        self.config().currency
                    ),
                    field("sku"),
                ));
            }
            if label_grams.is_some() && (l.quantity.is_some() || l.weight_grams.is_some()) {
                return Err(SellError::invalid(
                    "invalid_quantity",
                    format!(
                        "line {i}: the weight label carries the weight: give neither quantity nor weight_grams"
                    ),
                    field("weight_grams"),
                ));
            }
            let quantity = match (product.sold_by, l.quantity, l.weight_grams.or(label_grams)) {
                (SoldBy::Each, q, None) => Quantity::Units(q.unwrap_or(1)),
                (SoldBy::Weight, None, Some(g)) => Quantity::Grams(g),
                (SoldBy::Each, _, Some(_)) => {
                    return Err(SellError::invalid(
                        "invalid_quantity",
                        format!(
                            "line {i}: {} is sold by the piece: give quantity, not weight_grams",
                            product.sku
                        ),
                        field("weight_grams"),
                    ));
                }
                (SoldBy::Weight, _, _) => {
                    return Err(SellError::invalid(
                        "weight_required",
                        format!(
                            "line {i}: {} is sold by weight: give weight_grams",
                            product.sku
                        ),
                        field("weight_grams"),
                    ));
                }
            };
            items.push(CartItem { product, quantity });
        }
        Ok(items)
    }

    /// Price a cart without selling it.
    pub fn price(&self, lines: &[LineRequest]) -> Result<PricedCart, SellError> {
        let items = self.cart_items(lines)?;
        Ok(price_cart(
            &items,
            &self.store.promotions(),
            &self.config().tax,
            OffsetDateTime::now_utc(),
        )?)
    }

    /// Lines naming a scale get the scale's stable weight now; the others are kept.
    /// Refused (nothing recorded) when a scale cannot give one.
    pub(super) async fn weigh_lines(
        &self,
        lines: Vec<LineRequest>,
        weigher: Option<&dyn Weigher>,
    ) -> Result<Vec<LineRequest>, SellError> {
        let mut out = Vec::with_capacity(lines.len());
        for (i, mut l) in lines.into_iter().enumerate() {
            let Some(scale) = l.scale.take() else {
                out.push(l);
                continue;
            };
            let field = Some(format!("lines[{i}].scale"));
            if l.weight_grams.is_some() || l.quantity.is_some() {
                return Err(SellError::invalid(
                    "invalid_quantity",
                    format!("line {i}: give scale or weight_grams/quantity, not both"),
                    field,
                ));
            }
            // The product must be sold by weight before anything is weighed.
            let (product, label_grams) = self.line_product(&self.store.catalog(), i, &l)?;
            if label_grams.is_some() {
                return Err(SellError::invalid(
                    "invalid_quantity",
                    format!("line {i}: the weight label carries the weight: name no scale"),
                    field,
                ));
            }
            if product.sold_by != SoldBy::Weight {
                return Err(SellError::invalid(
                    "not_sold_by_weight",
                    format!(
                        "line {i}: {} is sold by the piece, not weighed on a scale",
                        product.sku
                    ),
                    field,
                ));
            }
            let Some(w) = weigher else {
                return Err(SellError::NoScale { line: i });
            };
            let grams = w
                .stable_grams(&scale)
                .await
                .map_err(|error| SellError::Scale { line: i, error })?;
            l.weight_grams = Some(grams);
            out.push(l);
        }
        Ok(out)
    }
}
