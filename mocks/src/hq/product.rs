//! JSON-lines products (the REST product's fields) -> `hq.Product`.
//!
//! The field names and rules mirror `server/src/domain/product.rs` (this crate does not
//! import the server): `sku`, `barcodes`, `name`, `description`, `category`, `price`
//! (minor units), `currency`, `tax_class`, `sold_by` (`"each"` | `"weight"`), `active`,
//! `age_restricted`; unknown fields are refused. Everything the store would refuse is
//! caught here with the line number, except a currency code that is well formed but
//! missing from the store's ISO 4217 table, and SKUs repeated across lines (checking
//! those would hold every SKU of a million-line file in memory); the store refuses
//! those with `INVALID_ARGUMENT`.

use std::io::BufRead;

use outpost_proto::hq;
use serde::Deserialize;

/// Longest line accepted, in bytes; a longer one is reported, never buffered whole.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest SKU.
pub const SKU_MAX_LEN: usize = 64;
/// Most barcodes per product.
pub const MAX_BARCODES: usize = 16;
/// Highest price in minor units.
pub const MAX_PRICE: i64 = 100_000_000;

/// A bad input line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {}{message}", .field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
#[non_exhaustive]
pub struct LineError {
    /// 1-based line number.
    pub line: u64,
    /// The field at fault, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SoldBy {
    Each,
    Weight,
}

/// The REST product's JSON shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductJson {
    sku: String,
    #[serde(default)]
    barcodes: Vec<String>,
    name: String,
    #[serde(default)]
    description: String,
    category: String,
    price: i64,
    currency: String,
    tax_class: String,
    #[serde(default = "each")]
    sold_by: SoldBy,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    age_restricted: bool,
}

fn each() -> SoldBy {
    SoldBy::Each
}

fn yes() -> bool {
    true
}

type FieldError = (Option<String>, String);

fn bad(field: &str, message: impl Into<String>) -> FieldError {
    (Some(field.to_owned()), message.into())
}

fn check_sku(sku: &str) -> Result<(), String> {
    if sku.is_empty() {
        return Err("SKU is empty".into());
    }
    if let Some((position, found)) = sku
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "SKU has {found:?} at position {position}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed"
        ));
    }
    if sku.len() > SKU_MAX_LEN {
        return Err(format!(
            "SKU is {} characters long; at most {SKU_MAX_LEN} are allowed",
            sku.len()
        ));
    }
    Ok(())
}

/// The GS1 mod-10 check digit of `body` (all digits but the last).
fn check_digit(body: &[u8]) -> u8 {
    let mut sum: u32 = 0;
    for (i, b) in body.iter().rev().enumerate() {
        let digit = u32::from(b - b'0');
        sum = (sum + if i % 2 == 0 { digit * 3 } else { digit }) % 10;
    }
    ((10 - sum) % 10) as u8
}

fn check_gtin(code: &str) -> Result<(), String> {
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("barcode {code:?} must be digits only"));
    }
    if !matches!(code.len(), 8 | 12 | 13 | 14) {
        return Err(format!(
            "barcode {code:?} has {} digits; GTINs have 8, 12, 13 or 14",
            code.len()
        ));
    }
    let (body, last) = code.as_bytes().split_at(code.len() - 1);
    let expected = check_digit(body);
    let found = last[0] - b'0';
    if expected != found {
        return Err(format!(
            "barcode {code:?} has check digit {found}; expected {expected}"
        ));
    }
    Ok(())
}

fn is_valid_tax_class(class: &str) -> bool {
    (1..=32).contains(&class.len())
        && class
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn convert(p: ProductJson) -> Result<hq::Product, FieldError> {
    check_sku(&p.sku).map_err(|m| bad("sku", m))?;
    if p.barcodes.len() > MAX_BARCODES {
        return Err(bad(
            "barcodes",
            format!(
                "{} barcodes given; at most {MAX_BARCODES} are allowed",
                p.barcodes.len()
            ),
        ));
    }
    let mut seen: Vec<String> = Vec::with_capacity(p.barcodes.len());
    for (i, code) in p.barcodes.iter().enumerate() {
        let field = format!("barcodes[{i}]");
        check_gtin(code).map_err(|m| bad(&field, m))?;
        let gtin14 = format!("{code:0>14}");
        if let Some(first) = seen.iter().position(|s| *s == gtin14) {
            return Err(bad(
                &field,
                format!("barcode {i} ({code}) duplicates barcode {first}"),
            ));
        }
        seen.push(gtin14);
    }
    let name_len = p.name.chars().count();
    if p.name.trim().is_empty() {
        return Err(bad("name", "name must not be blank"));
    }
    if name_len > 200 {
        return Err(bad(
            "name",
            format!("name is {name_len} characters long; at most 200 are allowed"),
        ));
    }
    if p.name.chars().any(char::is_control) {
        return Err(bad("name", "name must not contain control characters"));
    }
    let description_len = p.description.chars().count();
    if description_len > 2000 {
        return Err(bad(
            "description",
            format!("description is {description_len} characters long; at most 2000 are allowed"),
        ));
    }
    if p.category.trim().is_empty() {
        return Err(bad("category", "category must not be blank"));
    }
    let category_len = p.category.chars().count();
    if category_len > 64 {
        return Err(bad(
            "category",
            format!("category is {category_len} characters long; at most 64 are allowed"),
        ));
    }
    if !is_valid_tax_class(&p.tax_class) {
        return Err(bad(
            "tax_class",
            format!(
                "tax class {:?} must be 1 to 32 characters of a-z, 0-9, '_' and '-'",
                p.tax_class
            ),
        ));
    }
    if p.price < 0 {
        return Err(bad(
            "price",
            format!("price must not be negative (got {})", p.price),
        ));
    }
    if p.price > MAX_PRICE {
        return Err(bad(
            "price",
            format!(
                "price {} is above the maximum of {MAX_PRICE} minor units",
                p.price
            ),
        ));
    }
    if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad(
            "currency",
            format!(
                "currency {:?} must be an ISO 4217 code of three uppercase letters",
                p.currency
            ),
        ));
    }
    Ok(hq::Product {
        sku: p.sku,
        barcodes: p.barcodes,
        name: p.name,
        description: p.description,
        category: p.category,
        price_minor: p.price,
        currency: p.currency,
        tax_class: p.tax_class,
        sold_by: match p.sold_by {
            SoldBy::Each => hq::SoldBy::Each,
            SoldBy::Weight => hq::SoldBy::Weight,
        } as i32,
        active: p.active,
        age_restricted: p.age_restricted,
    })
}

/// Parses one product line (JSON object, the REST product's fields).
pub fn parse_product_line(line: u64, bytes: &[u8]) -> Result<hq::Product, LineError> {
    let wrap = |(field, message): FieldError| LineError {
        line,
        field,
        message,
    };
    let p: ProductJson = serde_json::from_slice(bytes).map_err(|e| {
        wrap((
            locate_json_error(bytes).or_else(|| field_in_message(&e.to_string())),
            e.to_string(),
        ))
    })?;
    convert(p).map_err(wrap)
}

/// serde names a missing or unknown field in backquotes: "missing field `name`".
fn field_in_message(message: &str) -> Option<String> {
    if !(message.starts_with("missing field") || message.starts_with("unknown field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

/// Which field's value has the wrong type, by re-reading the object loosely.
fn locate_json_error(bytes: &[u8]) -> Option<String> {
    use serde_json::Value;
    let map: serde_json::Map<String, Value> = serde_json::from_slice(bytes).ok()?;
    for (key, value) in &map {
        let ok = match key.as_str() {
            "sku" | "name" | "description" | "category" | "currency" | "tax_class" => {
                value.is_string()
            }
            "barcodes" => match value.as_array() {
                Some(items) => {
                    if let Some(i) = items.iter().position(|v| !v.is_string()) {
                        return Some(format!("barcodes[{i}]"));
                    }
                    true
                }
                None => false,
            },
            "price" => value.as_i64().is_some(),
            "sold_by" => matches!(value.as_str(), Some("each" | "weight")),
            "active" | "age_restricted" => value.is_boolean(),
            _ => false,
        };
        if !ok {
            return Some(key.clone());
        }
    }
    None
}

/// One line read by [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line's bytes without the newline (and without a `\r` before it).
    Text(&'a [u8]),
    /// Longer than [`MAX_LINE_BYTES`]; its bytes were skipped.
    TooLong,
}

/// Reads lines of at most [`MAX_LINE_BYTES`] without ever buffering more.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            number: 0,
        }
    }

    /// The next line and its 1-based number, or `None` at the end.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, Line<'_>)>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = self.inner.fill_buf()?;
            if available.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (available.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE_BYTES {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&available[..take]);
                }
            }
            self.inner.consume(if done { take + 1 } else { take });
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        if too_long {
            return Ok(Some((self.number, Line::TooLong)));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some((self.number, Line::Text(&self.buf))))
    }
}

/// What [`for_each_product`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Products read (good lines).
    pub products: u64,
    /// Bad lines, the first [`MAX_REPORTED_ERRORS`] of them.
    pub errors: Vec<LineError>,
    /// All bad lines.
    pub bad_lines: u64,
}

/// Bad lines kept in a [`Scan`]; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// Reads every line of `reader`, calling `f` with each good product; blank lines are
/// skipped. Bad lines are collected in the returned [`Scan`] and reading goes on, so
/// one pass reports them all.
pub fn for_each_product<R: BufRead>(
    reader: R,
    mut f: impl FnMut(hq::Product),
) -> std::io::Result<Scan> {
    let mut lines = LineReader::new(reader);
    let mut scan = Scan::default();
    while let Some((number, line)) = lines.next_line()? {
        let result = match line {
            Line::TooLong => Err(LineError {
                line: number,
                field: None,
                message: format!("line is longer than {MAX_LINE_BYTES} bytes"),
            }),
            Line::Text(t) if t.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Text(t) => parse_product_line(number, t),
        };
        match result {
            Ok(p) => {
                scan.products += 1;
                f(p);
            }
            Err(e) => {
                scan.bad_lines += 1;
                if scan.errors.len() < MAX_REPORTED_ERRORS {
                    scan.errors.push(e);
                }
            }
        }
    }
    Ok(scan)
}

/// Checks a SKU given for removal (`--remove`).
pub fn check_removed_sku(sku: &str) -> Result<(), String> {
    check_sku(sku)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILK: &str = r#"{"sku":"MILK-1L","barcodes":["4006381333931"],"name":"Whole milk 1 L","description":"","category":"dairy","price":129,"currency":"EUR","tax_class":"reduced","sold_by":"each","active":true,"age_restricted":false}"#;

    fn field_of(json: &str) -> Option<String> {
        parse_product_line(7, json.as_bytes()).unwrap_err().field
    }

    #[test]
    fn the_rest_example_converts() {
        let p = parse_product_line(1, MILK.as_bytes()).unwrap();
        assert_eq!(p.sku, "MILK-1L");
        assert_eq!(p.price_minor, 129);
        assert_eq!(p.sold_by, hq::SoldBy::Each as i32);
        assert_eq!(p.barcodes, vec!["4006381333931".to_owned()]);
        let minimal = parse_product_line(
            1,
            br#"{"sku":"A","name":"Apples","category":"produce","price":299,"currency":"EUR","tax_class":"reduced","sold_by":"weight"}"#,
        )
        .unwrap();
        assert!(minimal.active);
        assert!(!minimal.age_restricted);
        assert_eq!(minimal.sold_by, hq::SoldBy::Weight as i32);
    }

    #[test]
    fn bad_fields_are_named() {
        let with = |from: &str, to: &str| MILK.replace(from, to);
        let cases = [
            (with(r#""price":129"#, r#""price":"1.29""#), "price"),
            (with(r#""price":129"#, r#""price":-1"#), "price"),
            (with(r#""price":129"#, r#""price":100000001"#), "price"),
            (with(r#""sku":"MILK-1L""#, r#""sku":"MILK 1L""#), "sku"),
            (with(r#""sku":"MILK-1L""#, r#""sku":"""#), "sku"),
            (with("4006381333931", "4006381333932"), "barcodes[0]"),
            (with("4006381333931", "40063813339"), "barcodes[0]"),
            (
                with(r#""4006381333931""#, r#""4006381333931",7"#),
                "barcodes[1]",
            ),
            (
                with(r#""4006381333931""#, r#""96385074","0096385074""#),
                "barcodes[1]",
            ),
            (
                with(r#""4006381333931""#, r#""036000291452","0036000291452""#),
                "barcodes[1]",
            ),
            (
                with(r#""currency":"EUR""#, r#""currency":"eur""#),
                "currency",
            ),
            (
                with(r#""sold_by":"each""#, r#""sold_by":"litre""#),
                "sold_by",
            ),
            (
                with(r#""tax_class":"reduced""#, r#""tax_class":"Reduced""#),
                "tax_class",
            ),
            (with(r#""name":"Whole milk 1 L""#, r#""name":" ""#), "name"),
            (
                with(r#""name":"Whole milk 1 L""#, r#""name":"a\nb""#),
                "name",
            ),
            (
                with(r#""category":"dairy""#, r#""category":"""#),
                "category",
            ),
            (
                with(r#""active":true"#, r#""active":true,"colour":"red""#),
                "colour",
            ),
            (with(r#""active":true"#, r#""active":"yes""#), "active"),
            (with(r#""name":"Whole milk 1 L","#, ""), "name"),
        ];
        for (json, field) in &cases {
            assert_eq!(field_of(json).as_deref(), Some(*field), "{json}");
        }
        let err = parse_product_line(7, b"{not json").unwrap_err();
        assert_eq!(err.line, 7);
        assert_eq!(err.field, None);
        assert!(err.to_string().starts_with("line 7: "), "{err}");
        assert!(parse_product_line(1, &MILK.as_bytes()[..40]).is_err());
        assert!(parse_product_line(1, b"[]").is_err());
        assert!(parse_product_line(1, &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn scan_reports_every_bad_line_with_its_number() {
        let input = format!(
            "{MILK}\n\n{{oops\n{}\r\n{}\n",
            MILK.replace("129", "-3"),
            MILK
        );
        let mut got = Vec::new();
        let scan = for_each_product(input.as_bytes(), |p| got.push(p.sku)).unwrap();
        assert_eq!(scan.products, 2);
        assert_eq!(scan.bad_lines, 2);
        let lines: Vec<u64> = scan.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4]);
        assert_eq!(scan.errors[1].field.as_deref(), Some("price"));
    }

    #[test]
    fn overlong_and_unterminated_lines() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let input = format!("{long}\n{MILK}");
        let mut reader = LineReader::new(std::io::BufReader::with_capacity(1024, input.as_bytes()));
        assert_eq!(reader.next_line().unwrap(), Some((1, Line::TooLong)));
        assert_eq!(
            reader.next_line().unwrap(),
            Some((2, Line::Text(MILK.as_bytes())))
        );
        assert_eq!(reader.next_line().unwrap(), None);
        let scan = for_each_product(input.as_bytes(), |_| {}).unwrap();
        assert_eq!((scan.products, scan.bad_lines), (1, 1));
        assert!(scan.errors[0].message.contains("longer than"));
    }
}
