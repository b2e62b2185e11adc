//! The tax table HQ pushes: rates per tax class, checked before anything changes.

use std::collections::BTreeMap;

use super::pricing::TaxConfig;
use super::product::is_valid_tax_class;

/// Highest rate accepted, in basis points (100 %). The config file has the same
/// ceiling; a rate above it is a unit mistake (20.00 sent as 200000), not a tax.
pub const MAX_RATE_BP: i64 = 10_000;
/// Most tax classes one table may have. Real tables have a handful.
pub const MAX_CLASSES: usize = 256;

/// Why a pushed tax table is refused. Nothing is applied when any entry is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaxTableError {
    /// No classes at all: every product would become unsellable.
    #[error("the tax table is empty: it must name every tax class the catalog uses")]
    Empty,
    /// More classes than [`MAX_CLASSES`].
    #[error("{count} tax classes is over the limit of {MAX_CLASSES}")]
    TooMany {
        /// How many were sent.
        count: usize,
    },
    /// A class name products could never carry.
    #[error("tax class {class:?} is not a tax class name (1 to 32 of a-z, 0-9, _ and -)")]
    UnknownClass {
        /// Index of the entry.
        index: usize,
        /// The name sent.
        class: String,
    },
    /// The same class twice.
    #[error("tax class {class:?} appears twice")]
    Duplicate {
        /// Index of the second entry.
        index: usize,
        /// The class.
        class: String,
    },
    /// A negative rate.
    #[error("rate {rate_bp} bp is negative")]
    Negative {
        /// Index of the entry.
        index: usize,
        /// The rate sent.
        rate_bp: i64,
    },
    /// A rate over [`MAX_RATE_BP`].
    #[error("rate {rate_bp} bp is over 100 % ({MAX_RATE_BP} bp)")]
    Absurd {
        /// Index of the entry.
        index: usize,
        /// The rate sent.
        rate_bp: i64,
    },
}

impl TaxTableError {
    /// The field at fault, e.g. `rates[2].rate_bp`.
    pub fn field(&self) -> String {
        match self {
            TaxTableError::Empty | TaxTableError::TooMany { .. } => "rates".into(),
            TaxTableError::UnknownClass { index, .. } | TaxTableError::Duplicate { index, .. } => {
                format!("rates[{index}].tax_class")
            }
            TaxTableError::Negative { index, .. } | TaxTableError::Absurd { index, .. } => {
                format!("rates[{index}].rate_bp")
            }
        }
    }
}

/// Check a pushed table (`(class, rate in bp)` in the order sent) and build the tax
/// configuration it describes, with `prices_include_tax` as given.
pub fn parse_tax_table(
    rates: &[(String, i64)],
    prices_include_tax: bool,
) -> Result<TaxConfig, TaxTableError> {
    if rates.is_empty() {
        return Err(TaxTableError::Empty);
    }
    if rates.len() > MAX_CLASSES {
        return Err(TaxTableError::TooMany { count: rates.len() });
    }
    let mut out = BTreeMap::new();
    for (index, (class, rate_bp)) in rates.iter().enumerate() {
        if !is_valid_tax_class(class) {
            return Err(TaxTableError::UnknownClass {
                index,
                class: class.clone(),
            });
        }
        if *rate_bp < 0 {
            return Err(TaxTableError::Negative {
                index,
                rate_bp: *rate_bp,
            });
        }
        if *rate_bp > MAX_RATE_BP {
            return Err(TaxTableError::Absurd {
                index,
                rate_bp: *rate_bp,
            });
        }
        // In range 0..=10_000 just checked.
        let bp = u32::try_from(*rate_bp).unwrap_or(u32::MAX);
        if out.insert(class.clone(), bp).is_some() {
            return Err(TaxTableError::Duplicate {
                index,
                class: class.clone(),
            });
        }
    }
    Ok(TaxConfig {
        prices_include_tax,
        rates_bp: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(entries: &[(&str, i64)]) -> Result<TaxConfig, TaxTableError> {
        let v: Vec<(String, i64)> = entries.iter().map(|(c, r)| (c.to_string(), *r)).collect();
        parse_tax_table(&v, true)
    }

    #[test]
    fn a_good_table_builds_the_config() {
        let c = t(&[("standard", 2000), ("reduced", 550), ("zero", 0)]).unwrap();
        assert_eq!(c.rates_bp["reduced"], 550);
        assert_eq!(c.rates_bp.len(), 3);
        assert!(c.prices_include_tax);
    }

    #[test]
    fn each_bad_entry_is_refused_with_its_field() {
        let cases: Vec<(Vec<(&str, i64)>, &str)> = vec![
            (vec![], "rates"),
            (vec![("Standard", 100)], "rates[0].tax_class"),
            (vec![("", 100)], "rates[0].tax_class"),
            (vec![("a", 1), ("a", 2)], "rates[1].tax_class"),
            (vec![("a", 1), ("b", -5)], "rates[1].rate_bp"),
            (vec![("a", 10_001)], "rates[0].rate_bp"),
            (vec![("a", 200_000)], "rates[0].rate_bp"),
        ];
        for (entries, field) in cases {
            let e = t(&entries).unwrap_err();
            assert_eq!(e.field(), field, "{entries:?}: {e}");
        }
        let many: Vec<(String, i64)> = (0..=MAX_CLASSES).map(|i| (format!("c{i}"), 1)).collect();
        assert!(matches!(
            parse_tax_table(&many, false),
            Err(TaxTableError::TooMany { .. })
        ));
    }

    #[test]
    fn the_full_range_is_accepted() {
        let c = t(&[("none", 0), ("all", MAX_RATE_BP)]).unwrap();
        assert_eq!(c.rates_bp["all"], 10_000);
    }
}
