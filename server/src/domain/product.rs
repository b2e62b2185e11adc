//! The catalogue: SKUs, products and the rules a product must meet before it is sold.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::gtin::Gtin;
use super::money::{Currency, Money};

/// Longest SKU accepted; long enough for supplier codes, short enough for a receipt.
pub const SKU_MAX_LEN: usize = 64;
/// Most barcodes one product may carry (multipacks, old and new packaging, ...).
pub const MAX_BARCODES: usize = 16;
/// Highest shelf price in minor units (1,000,000.00 in a 2-decimal currency): anything
/// above is a typo, and the cap keeps `price × quantity` far from `i64` overflow.
pub const MAX_PRICE: i64 = 100_000_000;

/// Why a SKU was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SkuError {
    /// Nothing was given.
    #[error("SKU is empty")]
    Empty,
    /// More than [`SKU_MAX_LEN`] characters.
    #[error("SKU is {len} characters long; at most {SKU_MAX_LEN} are allowed")]
    TooLong {
        /// Number of characters given.
        len: usize,
    },
    /// A character outside `A-Z a-z 0-9 . _ -`.
    #[error(
        "SKU has {found:?} at position {position}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"
    )]
    InvalidChar {
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
}

/// A stock-keeping unit: the store's own key for a product.
///
/// Restricted to URL- and file-name-safe ASCII so it can appear in paths, logs and
/// printed receipts without escaping.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "MILK-1L")]
pub struct Sku(String);

impl Sku {
    /// Parses a SKU: 1..=64 characters of `[A-Za-z0-9._-]`.
    pub fn parse(s: &str) -> Result<Sku, SkuError> {
        Sku::check(s)?;
        Ok(Sku(s.to_owned()))
    }

    /// The rules of [`Sku::parse`], without a copy.
    fn check(s: &str) -> Result<(), SkuError> {
        if s.is_empty() {
            return Err(SkuError::Empty);
        }
        if let Some((position, found)) = s
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(SkuError::InvalidChar { position, found });
        }
        // All ASCII from here on, so bytes are characters.
        if s.len() > SKU_MAX_LEN {
            return Err(SkuError::TooLong { len: s.len() });
        }
        Ok(())
    }

    /// Wraps a SKU the caller built from known-good parts (the demo generator), skipping
    /// the parse on hot paths.
    pub(crate) fn new_unchecked(s: String) -> Sku {
        debug_assert!(Sku::parse(&s).is_ok(), "invalid SKU {s}");
        Sku(s)
    }

    /// The SKU text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Sku {
    type Err = SkuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Sku::parse(s)
    }
}

impl TryFrom<String> for Sku {
    type Error = SkuError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        // Keeps the deserialized string: no second allocation per product parsed.
        Sku::check(&value)?;
        Ok(Sku(value))
    }
}

impl TryFrom<&str> for Sku {
    type Error = SkuError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Sku::parse(value)
    }
}

impl Serialize for Sku {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// How a product is counted at the till.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SoldBy {
    /// Whole units; the price is per unit.
    #[default]
    Each,
    /// Weighed on the scale; the price is per kilogram and quantities are grams.
    Weight,
}

/// A product in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// The store's key for the product.
    pub sku: Sku,
    /// Barcodes that scan to this product; may be empty for items keyed in by hand.
    #[serde(default)]
    pub barcodes: Vec<Gtin>,
    /// Name shown on screens and printed on receipts.
    pub name: String,
    /// Longer text for the back office; never printed.
    #[serde(default)]
    pub description: String,
    /// Free-form grouping that promotions and reports can target (e.g. `dairy`).
    pub category: String,
    /// Shelf price in minor units: per unit, or per kilogram when sold by weight.
    pub price: Money,
    /// Currency of `price`; one cart only ever holds one currency.
    pub currency: Currency,
    /// Key into the store's tax rates (e.g. `standard`, `reduced`).
    pub tax_class: String,
    /// Whether quantities are units or grams.
    #[serde(default)]
    pub sold_by: SoldBy,
    /// Inactive products stay in the catalogue (for history) but cannot be sold.
    #[serde(default = "default_true")]
    pub active: bool,
    /// Needs an age check by the cashier (alcohol, tobacco).
    #[serde(default)]
    pub age_restricted: bool,
}

fn default_true() -> bool {
    true
}

/// Field names for barcode errors; `field()` returns `&'static str`, and validation never
/// looks past [`MAX_BARCODES`] entries, so a fixed table covers every index.
const BARCODE_FIELDS: [&str; MAX_BARCODES] = [
    "barcodes[0]",
    "barcodes[1]",
    "barcodes[2]",
    "barcodes[3]",
    "barcodes[4]",
    "barcodes[5]",
    "barcodes[6]",
    "barcodes[7]",
    "barcodes[8]",
    "barcodes[9]",
    "barcodes[10]",
    "barcodes[11]",
    "barcodes[12]",
    "barcodes[13]",
    "barcodes[14]",
    "barcodes[15]",
];

/// Why a product breaks the catalogue rules; [`ProductError::field`] names the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProductError {
    /// Empty or only whitespace.
    #[error("name must not be blank")]
    NameBlank,
    /// More than 200 characters.
    #[error("name is {len} characters long; at most 200 are allowed")]
    NameTooLong {
        /// Number of characters given.
        len: usize,
    },
    /// Control characters (newlines, tabs, ...) would break receipt layout.
    #[error("name must not contain control characters")]
    NameControlChar,
    /// More than 2000 characters.
    #[error("description is {len} characters long; at most 2000 are allowed")]
    DescriptionTooLong {
        /// Number of characters given.
        len: usize,
    },
    /// Empty or only whitespace.
    #[error("category must not be blank")]
    CategoryBlank,
    /// More than 64 characters.
    #[error("category is {len} characters long; at most 64 are allowed")]
    CategoryTooLong {
        /// Number of characters given.
        len: usize,
    },
    /// Empty, longer than 32, or not `[a-z0-9_-]`.
    #[error("tax class {class:?} must be 1 to 32 characters of a-z, 0-9, '_' and '-'")]
    TaxClassInvalid {
        /// The rejected class.
        class: String,
    },
    /// Below zero.
    #[error("price must not be negative (got {price})")]
    PriceNegative {
        /// The rejected price in minor units.
        price: i64,
    },
    /// Above [`MAX_PRICE`].
    #[error("price {price} is above the maximum of {MAX_PRICE} minor units")]
    PriceTooHigh {
        /// The rejected price in minor units.
        price: i64,
    },
    /// More than [`MAX_BARCODES`].
    #[error("{count} barcodes given; at most {MAX_BARCODES} are allowed")]
    TooManyBarcodes {
        /// Number of barcodes given.
        count: usize,
    },
    /// Two barcodes that normalize to the same GTIN-14.
    #[error("barcode {index} ({gtin}) duplicates barcode {first}")]
    DuplicateBarcode {
        /// Index of the later copy.
        index: usize,
        /// Index of the first occurrence.
        first: usize,
        /// The duplicated code as given at `index`.
        gtin: String,
    },
}

impl ProductError {
    /// The JSON field at fault, e.g. `"price"` or `"barcodes[2]"`.
    pub fn field(&self) -> &'static str {
        match self {
            ProductError::NameBlank
            | ProductError::NameTooLong { .. }
            | ProductError::NameControlChar => "name",
            ProductError::DescriptionTooLong { .. } => "description",
            ProductError::CategoryBlank | ProductError::CategoryTooLong { .. } => "category",
            ProductError::TaxClassInvalid { .. } => "tax_class",
            ProductError::PriceNegative { .. } | ProductError::PriceTooHigh { .. } => "price",
            ProductError::TooManyBarcodes { .. } => "barcodes",
            ProductError::DuplicateBarcode { index, .. } => {
                BARCODE_FIELDS.get(*index).copied().unwrap_or("barcodes")
            }
        }
    }
}

/// Whether `class` is a well-formed tax class name (1..=32 of `[a-z0-9_-]`).
pub fn is_valid_tax_class(class: &str) -> bool {
    (1..=32).contains(&class.len())
        && class
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Product {
    /// Checks the catalogue rules; the first broken rule is reported (name, description,
    /// category, tax class, price, then barcodes).
    pub fn validate(&self) -> Result<(), ProductError> {
        let name_len = self.name.chars().count();
        if self.name.trim().is_empty() {
            return Err(ProductError::NameBlank);
        }
        if name_len > 200 {
            return Err(ProductError::NameTooLong { len: name_len });
        }
        if self.name.chars().any(char::is_control) {
            return Err(ProductError::NameControlChar);
        }
        let description_len = self.description.chars().count();
        if description_len > 2000 {
            return Err(ProductError::DescriptionTooLong {
                len: description_len,
            });
        }
        if self.category.trim().is_empty() {
            return Err(ProductError::CategoryBlank);
        }
        let category_len = self.category.chars().count();
        if category_len > 64 {
            return Err(ProductError::CategoryTooLong { len: category_len });
        }
        if !is_valid_tax_class(&self.tax_class) {
            return Err(ProductError::TaxClassInvalid {
                class: self.tax_class.clone(),
            });
        }
        if self.price.is_negative() {
            return Err(ProductError::PriceNegative {
                price: self.price.minor(),
            });
        }
        if self.price.minor() > MAX_PRICE {
            return Err(ProductError::PriceTooHigh {
                price: self.price.minor(),
            });
        }
        if self.barcodes.len() > MAX_BARCODES {
            return Err(ProductError::TooManyBarcodes {
                count: self.barcodes.len(),
            });
        }
        // At most 16 entries: a quadratic scan beats hashing and allocates nothing.
        for (index, gtin) in self.barcodes.iter().enumerate() {
            let key = gtin.to_gtin14();
            if let Some(first) = self.barcodes[..index]
                .iter()
                .position(|earlier| earlier.to_gtin14() == key)
            {
                return Err(ProductError::DuplicateBarcode {
                    index,
                    first,
                    gtin: gtin.as_str().to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Why a product document was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProductParseError {
    /// Not valid JSON, or a field of the wrong shape (bad SKU, bad barcode, unknown
    /// field, missing field...).
    #[error("{}{message}", .field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Json {
        /// The field at fault, when it could be located.
        field: Option<String>,
        /// serde's description of the problem.
        message: String,
    },
    /// Well-formed but breaks a catalogue rule.
    #[error("{field}: {0}", field = .0.field())]
    Invalid(#[from] ProductError),
}

impl ProductParseError {
    /// The field at fault (e.g. `"price"`, `"barcodes[1]"`), when known.
    pub fn field(&self) -> Option<String> {
        match self {
            ProductParseError::Json { field, .. } => field.clone(),
            ProductParseError::Invalid(e) => Some(e.field().to_owned()),
        }
    }
}

/// Parses and validates a product JSON document (API bodies, imports).
pub fn parse_product_json(bytes: &[u8]) -> Result<Product, ProductParseError> {
    let product: Product = serde_json::from_slice(bytes).map_err(|e| ProductParseError::Json {
        field: locate_json_error(bytes),
        message: e.to_string(),
    })?;
    product.validate()?;
    Ok(product)
}

/// Finds which field made deserialization fail by re-checking each field on its own.
///
/// serde_json's messages carry a line and column but not the field; this runs only on the
/// error path, so checking field by field is cheaper than a path-tracking deserializer.
fn locate_json_error(bytes: &[u8]) -> Option<String> {
    use serde_json::Value;

    fn fails<'a, T: Deserialize<'a>>(v: &'a Value) -> bool {
        T::deserialize(v).is_err()
    }

    let map: serde_json::Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    for (key, value) in &map {
        let bad = match key.as_str() {
            "sku" => fails::<Sku>(value),
            "barcodes" => match value {
                Value::Array(items) => {
                    if let Some(i) = items.iter().position(fails::<Gtin>) {
                        return Some(format!("barcodes[{i}]"));
                    }
                    false
                }
                _ => true,
            },
            "name" | "description" | "category" | "tax_class" => fails::<String>(value),
            "price" => fails::<Money>(value),
            "currency" => fails::<Currency>(value),
            "sold_by" => fails::<SoldBy>(value),
            "active" | "age_restricted" => fails::<bool>(value),
            _ => true, // unknown field
        };
        if bad {
            return Some(key.clone());
        }
    }
    ["sku", "name", "category", "price", "currency", "tax_class"]
        .into_iter()
        .find(|required| !map.contains_key(*required))
        .map(str::to_owned)
}

/// Most characters kept of one search term; longer words are cut, not dropped, so a
/// prefix search still finds them.
pub const SEARCH_TERM_MAX_CHARS: usize = 32;
/// Most terms indexed for one name.
pub const SEARCH_TERMS_MAX: usize = 16;

/// Splits a product name into search terms: words of Unicode letters and digits,
/// lowercased, at most [`SEARCH_TERM_MAX_CHARS`] characters each, without duplicates, in
/// order of first appearance, at most [`SEARCH_TERMS_MAX`] of them.
///
/// Queries must go through the same function so that they match the index.
pub fn search_terms(name: &str) -> Vec<String> {
    let mut words = SearchTerms::default();
    words.split(name);
    words.iter().map(str::to_owned).collect()
}

/// [`search_terms`] into a reusable buffer: an import splits a million names, and one
/// allocation per word (and a set per name) was a visible share of its time.
#[derive(Debug, Default)]
pub struct SearchTerms {
    /// The terms of the last name, one after the other.
    buf: String,
    /// Where each term ends in `buf`.
    ends: Vec<usize>,
}

impl SearchTerms {
    /// Replace the terms with those of `name` (see [`search_terms`]).
    pub fn split(&mut self, name: &str) {
        self.buf.clear();
        self.ends.clear();
        for word in name.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            let start = self.buf.len();
            if word.is_ascii() {
                // One lowercase character per ASCII character.
                let n = word.len().min(SEARCH_TERM_MAX_CHARS);
                self.buf.extend(
                    word.as_bytes()[..n]
                        .iter()
                        .map(|b| char::from(b.to_ascii_lowercase())),
                );
            } else {
                self.buf.extend(
                    word.chars()
                        .flat_map(char::to_lowercase)
                        .take(SEARCH_TERM_MAX_CHARS),
                );
            }
            let term = &self.buf[start..];
            // At most SEARCH_TERMS_MAX earlier terms: a scan beats a set.
            if self.iter().any(|t| t == term) {
                self.buf.truncate(start);
                continue;
            }
            self.ends.push(self.buf.len());
            if self.ends.len() == SEARCH_TERMS_MAX {
                break;
            }
        }
    }

    /// The terms, in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().map(move |end| {
            let t = &self.buf[start..*end];
            start = *end;
            t
        })
    }
}

/// How much of a product is on a line. JSON: `{"units": 2}` or `{"grams": 350}`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Whole units of an each-item.
    Units(u32),
    /// Weight in grams of a weighed item.
    Grams(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILK: &str = r#"{"sku":"MILK-1L","barcodes":["4006381333931"],"name":"Whole milk 1 L","description":"","category":"dairy","price":129,"currency":"EUR","tax_class":"reduced","sold_by":"each","active":true,"age_restricted":false}"#;

    fn milk() -> Product {
        parse_product_json(MILK.as_bytes()).unwrap()
    }

    fn field_of(json: &str) -> Option<String> {
        parse_product_json(json.as_bytes()).unwrap_err().field()
    }

    #[test]
    fn sku_rules() {
        assert_eq!(Sku::parse("MILK-1L").unwrap().as_str(), "MILK-1L");
        assert!(Sku::parse("a.b_c-D9").is_ok());
        assert!(Sku::parse(&"A".repeat(64)).is_ok());
        assert_eq!(Sku::parse(""), Err(SkuError::Empty));
        assert_eq!(
            Sku::parse(&"A".repeat(65)),
            Err(SkuError::TooLong { len: 65 })
        );
        assert_eq!(
            Sku::parse("MILK 1L"),
            Err(SkuError::InvalidChar {
                position: 4,
                found: ' '
            })
        );
        assert!(matches!(
            Sku::parse("MÏLK"),
            Err(SkuError::InvalidChar { found: 'Ï', .. })
        ));
        assert!(serde_json::from_str::<Sku>("\"a/b\"").is_err());
        assert_eq!(Sku::parse("X-1").unwrap().to_string(), "X-1");
    }

    #[test]
    fn product_json_round_trips_the_documented_example() {
        let product = milk();
        assert_eq!(product.sku.as_str(), "MILK-1L");
        assert_eq!(product.price, Money(129));
        assert_eq!(product.currency.code(), "EUR");
        assert_eq!(product.sold_by, SoldBy::Each);
        let back = serde_json::to_string(&product).unwrap();
        assert_eq!(back, MILK);
    }

    #[test]
    fn product_defaults_apply() {
        let product = parse_product_json(
            br#"{"sku":"A","name":"Apples","category":"produce","price":299,"currency":"EUR","tax_class":"reduced"}"#,
        )
        .unwrap();
        assert!(product.barcodes.is_empty());
        assert_eq!(product.description, "");
        assert!(product.active);
        assert!(!product.age_restricted);
        assert_eq!(product.sold_by, SoldBy::Each);
        let weighed: Product = serde_json::from_str(
            r#"{"sku":"A","name":"Apples","category":"produce","price":299,"currency":"EUR","tax_class":"reduced","sold_by":"weight"}"#,
        )
        .unwrap();
        assert_eq!(weighed.sold_by, SoldBy::Weight);
    }

    #[test]
    fn validation_errors_name_the_field() {
        type Breakage = Box<dyn Fn(&mut Product)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|p| p.name = "  ".into()), "name"),
            (Box::new(|p| p.name = "x".repeat(201)), "name"),
            (Box::new(|p| p.name = "two\nlines".into()), "name"),
            (
                Box::new(|p| p.description = "d".repeat(2001)),
                "description",
            ),
            (Box::new(|p| p.category = "".into()), "category"),
            (Box::new(|p| p.category = "c".repeat(65)), "category"),
            (Box::new(|p| p.tax_class = "Reduced".into()), "tax_class"),
            (Box::new(|p| p.tax_class = "".into()), "tax_class"),
            (Box::new(|p| p.tax_class = "t".repeat(33)), "tax_class"),
            (Box::new(|p| p.price = Money(-1)), "price"),
            (Box::new(|p| p.price = Money(MAX_PRICE + 1)), "price"),
            (
                Box::new(|p| {
                    p.barcodes = vec![Gtin::parse("96385074").unwrap(); 17];
                }),
                "barcodes",
            ),
            (
                Box::new(|p| {
                    p.barcodes = vec![
                        Gtin::parse("96385074").unwrap(),
                        Gtin::parse("4006381333931").unwrap(),
                        Gtin::parse("036000291452").unwrap(),
                        Gtin::parse("0036000291452").unwrap(),
                    ];
                }),
                "barcodes[3]",
            ),
        ];
        for (i, (break_it, field)) in cases.iter().enumerate() {
            let mut product = milk();
            break_it(&mut product);
            let err = product.validate().unwrap_err();
            assert_eq!(err.field(), *field, "case {i}: {err}");
        }
        // Boundaries that must pass.
        let mut product = milk();
        product.name = "é".repeat(200);
        product.price = Money(MAX_PRICE);
        product.description = "d".repeat(2000);
        product.tax_class = "zero_rate-2".into();
        product.barcodes = vec![Gtin::parse("96385074").unwrap()];
        assert_eq!(product.validate(), Ok(()));
    }

    #[test]
    fn duplicate_barcode_reports_both_positions() {
        let mut product = milk();
        product.barcodes = vec![
            Gtin::parse("036000291452").unwrap(),
            Gtin::parse("00036000291452").unwrap(),
        ];
        let err = product.validate().unwrap_err();
        assert_eq!(
            err,
            ProductError::DuplicateBarcode {
                index: 1,
                first: 0,
                gtin: "00036000291452".into()
            }
        );
        assert!(err.to_string().contains("duplicates barcode 0"));
    }

    #[test]
    fn parse_errors_locate_the_field() {
        let with = |field: &str, value: &str| MILK.replace(field, value);
        assert_eq!(
            field_of(&with(r#""price":129"#, r#""price":"1.29""#)).as_deref(),
            Some("price")
        );
        assert_eq!(
            field_of(&with(r#""sku":"MILK-1L""#, r#""sku":"MILK 1L""#)).as_deref(),
            Some("sku")
        );
        assert_eq!(
            field_of(&with(
                r#"["4006381333931"]"#,
                r#"["4006381333931","4006381333932"]"#
            ))
            .as_deref(),
            Some("barcodes[1]")
        );
        assert_eq!(
            field_of(&with(r#""currency":"EUR""#, r#""currency":"EURO""#)).as_deref(),
            Some("currency")
        );
        assert_eq!(
            field_of(&with(r#""sold_by":"each""#, r#""sold_by":"litre""#)).as_deref(),
            Some("sold_by")
        );
        assert_eq!(
            field_of(&with(r#""active":true"#, r#""active":true,"colour":"red""#)).as_deref(),
            Some("colour")
        );
        assert_eq!(
            field_of(&with(r#""name":"Whole milk 1 L","#, "")).as_deref(),
            Some("name")
        );
        assert_eq!(
            field_of(&with(r#""price":129"#, r#""price":-5"#)).as_deref(),
            Some("price")
        );
        assert_eq!(field_of("{not json"), None);
        let err =
            parse_product_json(with(r#""price":129"#, r#""price":-5"#).as_bytes()).unwrap_err();
        assert!(err.to_string().starts_with("price: "), "{err}");
    }

    #[test]
    fn search_terms_are_lowercase_unique_words() {
        assert_eq!(
            search_terms("Alpenhof Organic Whole Milk 1 L, whole!"),
            vec!["alpenhof", "organic", "whole", "milk", "1", "l"]
        );
        assert_eq!(search_terms("CRÈME Fraîche"), vec!["crème", "fraîche"]);
        assert_eq!(search_terms("Größe ÄPFEL"), vec!["größe", "äpfel"]);
        assert!(search_terms(" -- ").is_empty());
        let long = search_terms(&"x".repeat(40));
        assert_eq!(long, vec!["x".repeat(32)]);
        let many: String = (0..40).map(|i| format!("w{i} ")).collect();
        let terms = search_terms(&many);
        assert_eq!(terms.len(), 16);
        assert_eq!(terms[15], "w15");
        // Words that only differ past the cut collapse into one term.
        let a = format!("{}a {}b", "y".repeat(32), "y".repeat(32));
        assert_eq!(search_terms(&a).len(), 1);
    }

    #[test]
    fn a_reused_splitter_forgets_the_previous_name() {
        // The import reuses one buffer for a million names: each split must give
        // exactly the terms of that name, whatever came before.
        let mut words = SearchTerms::default();
        let long_word = format!("{} tail", "Z".repeat(50));
        let names = [
            "Alpenhof Organic Whole Milk 1 L, whole!",
            "milk",
            "CRÈME Fraîche crème",
            " -- ",
            long_word.as_str(),
            "Größe ÄPFEL äpfel Apfel",
        ];
        for name in names {
            words.split(name);
            let got: Vec<&str> = words.iter().collect();
            let mut expected: Vec<String> = Vec::new();
            for w in name.split(|c: char| !c.is_alphanumeric()) {
                let t: String = w.chars().flat_map(char::to_lowercase).take(32).collect();
                if !t.is_empty() && !expected.contains(&t) {
                    expected.push(t);
                }
            }
            assert_eq!(got, expected, "{name}");
        }
    }
}
