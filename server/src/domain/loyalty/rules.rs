//! The loyalty rules HQ pushes: how many points a sale earns and what a point is worth.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most points per currency unit a rule may give: keeps every product in `i128`
/// arithmetic far from overflow and catches a unit mistake (cents for units) at HQ.
pub const MAX_POINTS_PER_UNIT: u32 = 1_000;
/// Largest tier multiplier, in basis points (10x).
pub const MAX_MULTIPLIER_BP: u32 = 100_000;
/// Most categories with their own rate.
pub const MAX_CATEGORIES: usize = 10_000;
/// Most tiers.
pub const MAX_TIERS: usize = 100;
/// Largest value of one point, in minor units.
pub const MAX_POINT_VALUE: i64 = 1_000_000;

/// How points accrue and what they are worth, as HQ pushed them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoyaltyRules {
    /// Points per whole currency unit (100 minor units of EUR) of a line's total.
    pub points_per_unit: u32,
    /// Categories with their own points per currency unit, replacing `points_per_unit`.
    #[serde(default)]
    pub categories: BTreeMap<String, u32>,
    /// Tier multipliers in basis points (`gold` = 15000: 1.5x); a tier not listed
    /// earns 1x.
    #[serde(default)]
    pub tiers: BTreeMap<String, u32>,
    /// What one point pays, in minor units, when redeemed as a tender.
    pub point_value: i64,
}

/// Why HQ's rules were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// A rate above [`MAX_POINTS_PER_UNIT`].
    #[error("{field}: {value} points per currency unit is over the limit of {MAX_POINTS_PER_UNIT}")]
    Rate {
        /// Which rate.
        field: String,
        /// Its value.
        value: u32,
    },
    /// A multiplier above [`MAX_MULTIPLIER_BP`].
    #[error("tiers.{tier}: multiplier {value} bp is over the limit of {MAX_MULTIPLIER_BP}")]
    Multiplier {
        /// The tier.
        tier: String,
        /// Its multiplier.
        value: u32,
    },
    /// A point value out of 1..=[`MAX_POINT_VALUE`].
    #[error("point_value: {0} must be between 1 and {MAX_POINT_VALUE} minor units")]
    PointValue(i64),
    /// An empty or over-long category or tier name.
    #[error("{field}: a name must be 1 to 64 characters")]
    Name {
        /// Where.
        field: String,
    },
    /// Too many categories or tiers.
    #[error("{field}: at most {max} entries")]
    TooMany {
        /// Which list.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// The same category or tier twice.
    #[error("{field}: {name:?} is given twice")]
    Duplicate {
        /// Which list.
        field: &'static str,
        /// The name.
        name: String,
    },
}

impl RulesError {
    /// The field at fault, for error replies.
    pub fn field(&self) -> String {
        match self {
            RulesError::Rate { field, .. } | RulesError::Name { field } => field.clone(),
            RulesError::Multiplier { tier, .. } => format!("tiers.{tier}"),
            RulesError::PointValue(_) => "point_value".into(),
            RulesError::TooMany { field, .. } | RulesError::Duplicate { field, .. } => {
                (*field).into()
            }
        }
    }
}

fn name_ok(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 64
}

impl LoyaltyRules {
    /// Checked rules from HQ's lists (a name given twice is refused, not merged).
    pub fn parse(
        points_per_unit: u32,
        categories: &[(String, u32)],
        tiers: &[(String, u32)],
        point_value: i64,
    ) -> Result<LoyaltyRules, RulesError> {
        if points_per_unit > MAX_POINTS_PER_UNIT {
            return Err(RulesError::Rate {
                field: "points_per_unit".into(),
                value: points_per_unit,
            });
        }
        if !(1..=MAX_POINT_VALUE).contains(&point_value) {
            return Err(RulesError::PointValue(point_value));
        }
        if categories.len() > MAX_CATEGORIES {
            return Err(RulesError::TooMany {
                field: "categories",
                max: MAX_CATEGORIES,
            });
        }
        if tiers.len() > MAX_TIERS {
            return Err(RulesError::TooMany {
                field: "tiers",
                max: MAX_TIERS,
            });
        }
        let mut cats = BTreeMap::new();
        for (i, (name, rate)) in categories.iter().enumerate() {
            if !name_ok(name) {
                return Err(RulesError::Name {
                    field: format!("categories[{i}]"),
                });
            }
            if *rate > MAX_POINTS_PER_UNIT {
                return Err(RulesError::Rate {
                    field: format!("categories.{name}"),
                    value: *rate,
                });
            }
            if cats.insert(name.clone(), *rate).is_some() {
                return Err(RulesError::Duplicate {
                    field: "categories",
                    name: name.clone(),
                });
            }
        }
        let mut ts = BTreeMap::new();
        for (i, (name, bp)) in tiers.iter().enumerate() {
            if !name_ok(name) {
                return Err(RulesError::Name {
                    field: format!("tiers[{i}]"),
                });
            }
            if *bp > MAX_MULTIPLIER_BP {
                return Err(RulesError::Multiplier {
                    tier: name.clone(),
                    value: *bp,
                });
            }
            if ts.insert(name.clone(), *bp).is_some() {
                return Err(RulesError::Duplicate {
                    field: "tiers",
                    name: name.clone(),
                });
            }
        }
        Ok(LoyaltyRules {
            points_per_unit,
            categories: cats,
            tiers: ts,
            point_value,
        })
    }

    /// Points per currency unit for a line of `category`.
    pub fn rate(&self, category: &str) -> u32 {
        self.categories
            .get(category)
            .copied()
            .unwrap_or(self.points_per_unit)
    }

    /// The multiplier of `tier` in basis points (10,000 = 1x for an unknown tier).
    pub fn multiplier_bp(&self, tier: Option<&str>) -> u32 {
        tier.and_then(|t| self.tiers.get(t).copied())
            .unwrap_or(10_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_rule_is_refused_naming_its_field() {
        let ok = LoyaltyRules::parse(1, &[("wine".into(), 2)], &[("gold".into(), 15_000)], 1);
        assert!(ok.is_ok());
        let e = LoyaltyRules::parse(1_001, &[], &[], 1).unwrap_err();
        assert_eq!(e.field(), "points_per_unit");
        let e = LoyaltyRules::parse(1, &[("wine".into(), 5_000)], &[], 1).unwrap_err();
        assert_eq!(e.field(), "categories.wine");
        let e = LoyaltyRules::parse(1, &[], &[("gold".into(), 100_001)], 1).unwrap_err();
        assert_eq!(e.field(), "tiers.gold");
        let e = LoyaltyRules::parse(1, &[], &[], 0).unwrap_err();
        assert_eq!(e.field(), "point_value");
        let e = LoyaltyRules::parse(1, &[("".into(), 1)], &[], 1).unwrap_err();
        assert_eq!(e.field(), "categories[0]");
        let e = LoyaltyRules::parse(1, &[], &[("g".into(), 1), ("g".into(), 2)], 1).unwrap_err();
        assert!(matches!(e, RulesError::Duplicate { field: "tiers", .. }));
    }

    #[test]
    fn a_category_rate_replaces_the_base_and_an_unknown_tier_earns_1x() {
        let r =
            LoyaltyRules::parse(1, &[("wine".into(), 0)], &[("gold".into(), 20_000)], 1).unwrap();
        assert_eq!(r.rate("wine"), 0);
        assert_eq!(r.rate("bread"), 1);
        assert_eq!(r.multiplier_bp(Some("gold")), 20_000);
        assert_eq!(r.multiplier_bp(Some("silver")), 10_000);
        assert_eq!(r.multiplier_bp(None), 10_000);
    }
}
