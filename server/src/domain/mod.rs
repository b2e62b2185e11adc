//! The pure domain of Outpost: money, products, promotions, pricing and receipts.
//!
//! Nothing here does I/O or knows about HTTP, storage or devices; handlers parse
//! requests into these types (`parse`/`TryFrom` newtypes) and everything below is
//! unit-tested beside the code.
//!
//! # Layout
//!
//! - [`money`]: [`Money`] in integer minor units, ISO 4217 [`Currency`], formatting, and
//!   [`div_round_half_up`], the one rounding rule.
//! - [`ids`]: record ids (UUIDv7), ordered by creation even when the clock goes back.
//! - [`gtin`]: GS1 barcodes ([`Gtin`]) with check-digit validation and GTIN-14 keys.
//! - [`product`]: [`Sku`], [`Product`] and its validation, product JSON parsing, search
//!   terms.
//! - [`promotion`]: [`Promotion`] kinds, the indexed [`PromotionSet`] and
//!   [`apply_promotions`], a no-stacking assignment that takes the better of two greedy
//!   heuristics for the customer (not a proven optimum).
//! - [`pricing`]: [`price_cart`]: line amounts, promotions and per-class taxes into a
//!   [`PricedCart`].
//! - [`receipt`]: [`Receipt`] and its plain-text rendering for receipt printers.
//! - [`tax`]: checking the tax table HQ pushes.
//! - [`loyalty`]: customers, points accrual, vouchers and the offline redemption
//!   limit.
//! - [`planogram`]: shelf locations per SKU, as HQ pushes them.
//! - [`store_profile`]: the store's name and receipt header, as HQ pushes them.
//! - [`exposure`]: the offline exposure: card money approved without the acquirer,
//!   and its caps.
//! - [`variable_measure`]: GS1 variable-measure barcodes (weight on in-store scale
//!   labels).
//! - [`vending`]: a vending machine's slots and the vend state machine.
//! - [`demo`]: a deterministic demo store (catalogue, stock, promotions, taxes).

pub mod demo;
pub mod exposure;
pub mod gtin;
pub mod ids;
pub mod loyalty;
pub mod money;
pub mod planogram;
pub mod pricing;
pub mod product;
pub mod promotion;
pub mod receipt;
pub mod sale;
pub mod store_profile;
pub mod tax;
pub mod variable_measure;
pub mod vending;

pub use demo::{demo_products, demo_promotions, demo_stock, demo_tax_config};
pub use gtin::{Gtin, GtinError};
pub use money::{Currency, CurrencyError, Money, div_round_half_up, format_amount, format_money};
pub use pricing::{
    CartItem, PricedCart, PricedLine, PricingError, Quantity, TaxConfig, TaxLine, price_cart,
};
pub use product::{
    Product, ProductError, ProductParseError, Sku, SkuError, SoldBy, parse_product_json,
    search_terms,
};
pub use promotion::{
    LineDiscount, PromoLine, Promotion, PromotionError, PromotionKind, PromotionSet, Target,
    apply_promotions,
};
pub use receipt::{Receipt, ReceiptLine, ReceiptTender};
