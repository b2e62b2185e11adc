//! Planograms: where each product lives on the store's shelves.
//!
//! A location is what a shelf-edge label or a replenishment pick list carries: aisle,
//! bay (section) within the aisle, shelf counted from the bottom, position on the
//! shelf from the left, facings (how many units wide it is shown) and, when known,
//! how many units the spot holds. A SKU may have several locations (its home shelf
//! and an end cap); one spot holds one SKU.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::product::Sku;

/// Most locations in one planogram (a hypermarket has about 100,000 SKUs).
pub const MAX_LOCATIONS: usize = 500_000;
/// Longest aisle name.
pub const MAX_AISLE_LEN: usize = 16;
/// Highest bay, shelf, position and facings numbers accepted.
pub const MAX_BAY: u32 = 999;
/// Highest shelf number (counted from the bottom).
pub const MAX_SHELF: u32 = 99;
/// Highest position on a shelf.
pub const MAX_POSITION: u32 = 999;
/// Most facings of one location.
pub const MAX_FACINGS: u32 = 99;
/// Most units one location holds.
pub const MAX_CAPACITY: u32 = 100_000;
/// Most locations of one SKU (home shelf, end caps, secondary placements).
pub const MAX_PER_SKU: usize = 64;

/// One product's place on a shelf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShelfLocation {
    /// The product.
    pub sku: Sku,
    /// Aisle (or department / gondola run), e.g. `A07`.
    pub aisle: String,
    /// Bay (section) within the aisle, from 1.
    pub bay: u32,
    /// Shelf within the bay, from the bottom, from 1.
    pub shelf: u32,
    /// Position on the shelf from the left, from 1.
    pub position: u32,
    /// How many units wide the product is shown.
    pub facings: u32,
    /// Most units the location holds; absent when HQ did not say.
    pub capacity: Option<u32>,
}

/// A location as HQ sent it, before checking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawLocation {
    /// SKU text.
    pub sku: String,
    /// Aisle text.
    pub aisle: String,
    /// Bay.
    pub bay: u32,
    /// Shelf.
    pub shelf: u32,
    /// Position.
    pub position: u32,
    /// Facings.
    pub facings: u32,
    /// Capacity, 0 = not given.
    pub capacity: u32,
}

/// Why a planogram is refused. Nothing is applied when any location is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanogramError {
    /// More than [`MAX_LOCATIONS`].
    #[error("{count} locations is over the limit of {MAX_LOCATIONS}")]
    TooMany {
        /// How many were sent.
        count: usize,
    },
    /// A field out of its range or malformed.
    #[error("{message}")]
    Invalid {
        /// Index of the location.
        index: usize,
        /// The field, e.g. `shelf`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Two SKUs in one spot, or one SKU listed twice at the same spot.
    #[error("aisle {aisle} bay {bay} shelf {shelf} position {position} is given twice")]
    SameSpot {
        /// Index of the second location.
        index: usize,
        /// The spot.
        aisle: String,
        /// Bay.
        bay: u32,
        /// Shelf.
        shelf: u32,
        /// Position.
        position: u32,
    },
}

impl PlanogramError {
    /// The field at fault, e.g. `locations[3].shelf`.
    pub fn field(&self) -> String {
        match self {
            PlanogramError::TooMany { .. } => "locations".into(),
            PlanogramError::Invalid { index, field, .. } => format!("locations[{index}].{field}"),
            PlanogramError::SameSpot { index, .. } => format!("locations[{index}].position"),
        }
    }
}

fn in_range(
    index: usize,
    field: &'static str,
    v: u32,
    min: u32,
    max: u32,
) -> Result<u32, PlanogramError> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(PlanogramError::Invalid {
            index,
            field,
            message: format!("{field} {v} must be between {min} and {max}"),
        })
    }
}

/// Check every location and return them sorted by SKU, then spot.
pub fn parse_planogram(raw: Vec<RawLocation>) -> Result<Vec<ShelfLocation>, PlanogramError> {
    if raw.len() > MAX_LOCATIONS {
        return Err(PlanogramError::TooMany { count: raw.len() });
    }
    let mut spots = HashSet::with_capacity(raw.len());
    let mut per_sku: HashMap<Sku, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        let sku = Sku::parse(&r.sku).map_err(|e| PlanogramError::Invalid {
            index,
            field: "sku",
            message: format!("sku: {e}"),
        })?;
        let aisle_ok = !r.aisle.is_empty()
            && r.aisle.len() <= MAX_AISLE_LEN
            && r.aisle
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !aisle_ok {
            return Err(PlanogramError::Invalid {
                index,
                field: "aisle",
                message: format!(
                    "aisle {:?} must be 1 to {MAX_AISLE_LEN} of A-Z, a-z, 0-9, -, _ and .",
                    r.aisle
                ),
            });
        }
        let loc = ShelfLocation {
            sku,
            bay: in_range(index, "bay", r.bay, 1, MAX_BAY)?,
            shelf: in_range(index, "shelf", r.shelf, 1, MAX_SHELF)?,
            position: in_range(index, "position", r.position, 1, MAX_POSITION)?,
            facings: in_range(index, "facings", r.facings, 1, MAX_FACINGS)?,
            capacity: match r.capacity {
                0 => None,
                c => Some(in_range(index, "capacity", c, 1, MAX_CAPACITY)?),
            },
            aisle: r.aisle,
        };
        let n = per_sku.entry(loc.sku.clone()).or_insert(0usize);
        *n += 1;
        if *n > MAX_PER_SKU {
            return Err(PlanogramError::Invalid {
                index,
                field: "sku",
                message: format!("{} has more than {MAX_PER_SKU} locations", loc.sku.as_str()),
            });
        }
        if !spots.insert((loc.aisle.clone(), loc.bay, loc.shelf, loc.position)) {
            return Err(PlanogramError::SameSpot {
                index,
                aisle: loc.aisle,
                bay: loc.bay,
                shelf: loc.shelf,
                position: loc.position,
            });
        }
        out.push(loc);
    }
    out.sort_by(|a, b| {
        (&a.sku, &a.aisle, a.bay, a.shelf, a.position)
            .cmp(&(&b.sku, &b.aisle, b.bay, b.shelf, b.position))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(sku: &str, aisle: &str, bay: u32, shelf: u32, position: u32) -> RawLocation {
        RawLocation {
            sku: sku.into(),
            aisle: aisle.into(),
            bay,
            shelf,
            position,
            facings: 2,
            capacity: 24,
        }
    }

    #[test]
    fn a_good_planogram_is_sorted_by_sku() {
        let p = parse_planogram(vec![
            raw("MILK", "A07", 3, 2, 1),
            raw("BREAD", "B01", 1, 1, 4),
            raw("MILK", "END-1", 1, 3, 1),
        ])
        .unwrap();
        assert_eq!(p[0].sku.as_str(), "BREAD");
        assert_eq!(p[1].aisle, "A07");
        assert_eq!(p[2].capacity, Some(24));
    }

    #[test]
    fn each_bad_field_is_named() {
        type Break = fn(&mut RawLocation);
        let cases: Vec<(Break, &str)> = vec![
            (|r| r.sku = "no spaces".into(), "sku"),
            (|r| r.aisle = String::new(), "aisle"),
            (|r| r.aisle = "A".repeat(17), "aisle"),
            (|r| r.aisle = "A\n7".into(), "aisle"),
            (|r| r.bay = 0, "bay"),
            (|r| r.shelf = 100, "shelf"),
            (|r| r.position = 0, "position"),
            (|r| r.facings = 0, "facings"),
            (|r| r.capacity = MAX_CAPACITY + 1, "capacity"),
        ];
        for (break_it, field) in cases {
            let mut r = raw("MILK", "A07", 1, 1, 1);
            break_it(&mut r);
            let e = parse_planogram(vec![raw("X", "A01", 1, 1, 1), r]).unwrap_err();
            assert_eq!(e.field(), format!("locations[1].{field}"), "{e}");
        }
    }

    #[test]
    fn two_products_in_one_spot_are_refused() {
        let e =
            parse_planogram(vec![raw("A", "A01", 1, 1, 1), raw("B", "A01", 1, 1, 1)]).unwrap_err();
        assert!(
            matches!(e, PlanogramError::SameSpot { index: 1, .. }),
            "{e}"
        );
    }
}
