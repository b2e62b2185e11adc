//! What a promotion is (its kind, its target, its window) and the cart lines it
//! applies to.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::domain::money::Money;
use crate::domain::product::Quantity;
use crate::domain::product::Sku;

/// Longest promotion id accepted.
pub const PROMOTION_ID_MAX_LEN: usize = 64;

/// A promotion as configured by the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// Stable key; also the last tie-breaker between equally good promotions.
    pub id: String,
    /// Printed on receipts under the discounted lines.
    pub name: String,
    /// What the promotion gives.
    pub kind: PromotionKind,
    /// Which lines it applies to.
    pub target: Target,
    /// First instant the promotion applies (inclusive), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// First instant it no longer applies (exclusive), RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    /// Breaks ties between promotions giving the same discount; higher wins.
    #[serde(default)]
    pub priority: i32,
}

/// What a promotion gives. JSON: `{"type": "percent_off", "percent_bp": 1500}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PromotionKind {
    /// A percentage off each eligible line.
    PercentOff {
        /// Basis points, 1..=10000 (1500 = 15 %).
        percent_bp: u32,
    },
    /// A fixed amount off each unit (each-lines) or once per line (weight lines).
    AmountOff {
        /// Minor units off; capped at the line's gross.
        amount: Money,
    },
    /// For every `buy + get` eligible units, the `get` cheapest are free.
    BuyXGetY {
        /// Units paid for in each group (at least 1).
        buy: u32,
        /// Units free in each group (at least 1).
        get: u32,
    },
    /// Every `n` eligible units cost `price`.
    NForPrice {
        /// Units in a group (at least 2).
        n: u32,
        /// What a whole group costs, in minor units.
        price: Money,
    },
}

/// Which lines a promotion applies to: a line is eligible if its SKU is listed or its
/// category is listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Products targeted one by one.
    #[serde(default)]
    pub skus: Vec<Sku>,
    /// Whole categories targeted (exact match on `Product::category`).
    #[serde(default)]
    pub categories: Vec<String>,
}

/// Why a promotion is malformed; [`PromotionError::field`] names the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromotionError {
    /// Empty, blank or longer than [`PROMOTION_ID_MAX_LEN`].
    #[error("id must be 1 to {PROMOTION_ID_MAX_LEN} non-blank characters")]
    Id,
    /// Empty or only whitespace.
    #[error("name must not be blank")]
    NameBlank,
    /// `ends_at` is not after `starts_at`, so the promotion could never apply.
    #[error("ends_at must be after starts_at")]
    Schedule,
    /// Outside 1..=10000 basis points.
    #[error("percent_bp must be between 1 and 10000 (got {percent_bp})")]
    Percent {
        /// The rejected value.
        percent_bp: u32,
    },
    /// Below zero.
    #[error("amount must not be negative")]
    AmountNegative,
    /// Zero.
    #[error("buy must be at least 1")]
    Buy,
    /// Zero.
    #[error("get must be at least 1")]
    Get,
    /// Below 2 (a group of one is just a price change).
    #[error("n must be at least 2 (got {n})")]
    GroupSize {
        /// The rejected value.
        n: u32,
    },
    /// Below zero.
    #[error("price must not be negative")]
    PriceNegative,
    /// Neither SKUs nor categories: the promotion would apply to nothing.
    #[error("target must list at least one SKU or category")]
    TargetEmpty,
}

impl PromotionError {
    /// The JSON field at fault, e.g. `"kind.percent_bp"`.
    pub fn field(&self) -> &'static str {
        match self {
            PromotionError::Id => "id",
            PromotionError::NameBlank => "name",
            PromotionError::Schedule => "ends_at",
            PromotionError::Percent { .. } => "kind.percent_bp",
            PromotionError::AmountNegative => "kind.amount",
            PromotionError::Buy => "kind.buy",
            PromotionError::Get => "kind.get",
            PromotionError::GroupSize { .. } => "kind.n",
            PromotionError::PriceNegative => "kind.price",
            PromotionError::TargetEmpty => "target",
        }
    }
}

impl Promotion {
    /// Checks that the promotion is well-formed; the first problem found is reported.
    pub fn validate(&self) -> Result<(), PromotionError> {
        let id_len = self.id.chars().count();
        if id_len == 0 || id_len > PROMOTION_ID_MAX_LEN || self.id.trim().is_empty() {
            return Err(PromotionError::Id);
        }
        if self.name.trim().is_empty() {
            return Err(PromotionError::NameBlank);
        }
        if self.ends_at <= self.starts_at {
            return Err(PromotionError::Schedule);
        }
        match self.kind {
            PromotionKind::PercentOff { percent_bp } => {
                if !(1..=10_000).contains(&percent_bp) {
                    return Err(PromotionError::Percent { percent_bp });
                }
            }
            PromotionKind::AmountOff { amount } => {
                if amount.is_negative() {
                    return Err(PromotionError::AmountNegative);
                }
            }
            PromotionKind::BuyXGetY { buy, get } => {
                if buy == 0 {
                    return Err(PromotionError::Buy);
                }
                if get == 0 {
                    return Err(PromotionError::Get);
                }
            }
            PromotionKind::NForPrice { n, price } => {
                if n < 2 {
                    return Err(PromotionError::GroupSize { n });
                }
                if price.is_negative() {
                    return Err(PromotionError::PriceNegative);
                }
            }
        }
        if self.target.skus.is_empty() && self.target.categories.is_empty() {
            return Err(PromotionError::TargetEmpty);
        }
        Ok(())
    }

    /// Whether the promotion applies at `t`: `starts_at <= t < ends_at`.
    pub fn is_active_at(&self, t: OffsetDateTime) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

/// A cart line as promotions see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoLine {
    /// Matched against [`Target::skus`].
    pub sku: Sku,
    /// Matched against [`Target::categories`].
    pub category: String,
    /// Per unit, or per kilogram for weight lines.
    pub unit_price: Money,
    /// Units or grams; pooled kinds only use unit lines.
    pub quantity: Quantity,
    /// What the line costs before discounts; no discount exceeds it.
    pub gross: Money,
}

/// The promotion a line got and what it took off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDiscount {
    /// Id of the promotion.
    pub promotion_id: String,
    /// Name of the promotion, for receipts.
    pub promotion_name: String,
    /// Minor units off this line; can be zero for a line that only paid for its part of
    /// a pooled group (e.g. the "buy" units of buy-2-get-1), which still used the line.
    pub amount: Money,
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::super::fixtures::{amount, bxgy, nfor, percent, promo};
    use super::*;

    #[test]
    fn promotion_json_shape() {
        let json = r#"{"id":"P1","name":"15 % off milk","kind":{"type":"percent_off","percent_bp":1500},"target":{"skus":["MILK-1L"]},"starts_at":"2025-06-01T00:00:00Z","ends_at":"2025-07-01T00:00:00Z"}"#;
        let p: Promotion = serde_json::from_str(json).unwrap();
        assert_eq!(p.kind, percent(1500));
        assert_eq!(p.priority, 0);
        assert!(p.target.categories.is_empty());
        assert_eq!(p.validate(), Ok(()));
        let out = serde_json::to_value(&p).unwrap();
        assert_eq!(out["kind"]["type"], "percent_off");
        assert_eq!(out["starts_at"], "2025-06-01T00:00:00Z");
        let n: PromotionKind =
            serde_json::from_str(r#"{"type":"n_for_price","n":3,"price":500}"#).unwrap();
        assert_eq!(n, nfor(3, 500));
        let extra = json.replacen('{', r#"{"extra":1,"#, 1);
        assert!(serde_json::from_str::<Promotion>(&extra).is_err());
        let with_priority = json.replacen('{', r#"{"priority":-3,"#, 1);
        assert_eq!(
            serde_json::from_str::<Promotion>(&with_priority)
                .unwrap()
                .priority,
            -3
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let ok = promo("P", percent(1000), &["A"], &[]);
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(Promotion, &str)> = vec![
            (
                Promotion {
                    id: "".into(),
                    ..ok.clone()
                },
                "id",
            ),
            (
                Promotion {
                    id: "x".repeat(65),
                    ..ok.clone()
                },
                "id",
            ),
            (
                Promotion {
                    name: " ".into(),
                    ..ok.clone()
                },
                "name",
            ),
            (
                Promotion {
                    ends_at: ok.starts_at,
                    ..ok.clone()
                },
                "ends_at",
            ),
            (
                Promotion {
                    kind: percent(0),
                    ..ok.clone()
                },
                "kind.percent_bp",
            ),
            (
                Promotion {
                    kind: percent(10_001),
                    ..ok.clone()
                },
                "kind.percent_bp",
            ),
            (
                Promotion {
                    kind: amount(-1),
                    ..ok.clone()
                },
                "kind.amount",
            ),
            (
                Promotion {
                    kind: bxgy(0, 1),
                    ..ok.clone()
                },
                "kind.buy",
            ),
            (
                Promotion {
                    kind: bxgy(1, 0),
                    ..ok.clone()
                },
                "kind.get",
            ),
            (
                Promotion {
                    kind: nfor(1, 100),
                    ..ok.clone()
                },
                "kind.n",
            ),
            (
                Promotion {
                    kind: nfor(2, -1),
                    ..ok.clone()
                },
                "kind.price",
            ),
            (
                Promotion {
                    target: Target::default(),
                    ..ok.clone()
                },
                "target",
            ),
        ];
        for (p, field) in cases {
            assert_eq!(p.validate().unwrap_err().field(), field, "{p:?}");
        }
        assert_eq!(
            Promotion {
                kind: percent(10_000),
                ..ok.clone()
            }
            .validate(),
            Ok(())
        );
        assert_eq!(
            Promotion {
                kind: amount(0),
                ..ok
            }
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn active_window_is_half_open() {
        let p = promo("P", percent(1000), &["A"], &[]);
        assert!(p.is_active_at(p.starts_at));
        assert!(p.is_active_at(p.ends_at - Duration::nanoseconds(1)));
        assert!(!p.is_active_at(p.ends_at));
        assert!(!p.is_active_at(p.starts_at - Duration::seconds(1)));
    }
}
