//! What a terminal sends to price or sell a cart, what a checkout answers, and where
//! checkout weighs lines that name a scale.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::sale::{Sale, TenderRequest};

/// Most lines one cart may have.
pub const MAX_LINES: usize = 500;

/// One line as a terminal sends it: a product by SKU or barcode, and how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// The product's SKU (or give `barcode`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// A barcode of the product (or give `sku`). A weight label of the store's scales
    /// (`[[store.variable_measure]]`) carries the weight: give no quantity then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    /// Units, for products sold by the piece (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Grams, for products sold by weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_grams: Option<u32>,
    /// Checkout only: the id of the scale to weigh a product sold by weight on. The
    /// checkout takes the scale's stable weight at that moment (instead of
    /// `weight_grams`), and is refused while the weight moves or the scale cannot
    /// weigh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
}

/// Where checkout weighs lines that name a scale (the device registry).
#[async_trait::async_trait]
pub trait Weigher: Send + Sync {
    /// The stable weight on `scale` now, in grams.
    async fn stable_grams(&self, scale: &str) -> Result<u32, crate::devices::inputs::WeighError>;
}

#[async_trait::async_trait]
impl Weigher for crate::devices::Registry {
    async fn stable_grams(&self, scale: &str) -> Result<u32, crate::devices::inputs::WeighError> {
        self.weigh(scale).await
    }
}

/// A cart to price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartRequest {
    /// The lines.
    #[schema(min_items = 1)]
    pub lines: Vec<LineRequest>,
}

/// A checkout as a terminal sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The lines.
    #[schema(min_items = 1)]
    pub lines: Vec<LineRequest>,
    /// A single tender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<TenderRequest>,
    /// Several tenders (split payment). Give `payment` or `payments`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payments: Option<Vec<TenderRequest>>,
    /// The cashier checked the customer's age (required when a line is age-restricted).
    #[serde(default)]
    pub age_verified: bool,
    /// The loyalty customer, by id or card: the sale earns points and may redeem them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<crate::domain::loyalty::CustomerRef>,
}

/// A finished checkout.
#[derive(Debug, Clone)]
pub struct CheckoutResult {
    /// The recorded sale.
    pub sale: Sale,
    /// True when this is the answer to an earlier request with the same key.
    pub replayed: bool,
}
