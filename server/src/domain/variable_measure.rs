//! GS1 variable-measure barcodes: the labels a store's own scales print on weighed
//! goods (deli, cheese, meat, loose fruit).
//!
//! GS1 leaves EAN-13 codes starting with `20`–`29` to each store ("restricted
//! circulation"): the scale prints the item's code and the weight in one barcode, and
//! the till must read both. Each store decides its layout, so it is configured as
//! rules (`[[store.variable_measure]]`): a two-digit prefix, how many item digits
//! follow, and what the remaining digits before the check digit carry:
//!
//! ```text
//! 2 1 | 0 1 2 3 4 | 0 1 2 5 0 | 5      prefix 21, 5 item digits, 5 value digits
//! prefix  item      grams       check  -> item 01234, 1,250 g
//! ```
//!
//! The product is found by its *base barcode*: the same code with the value digits set
//! to zero and the check digit recomputed (`2101234000007` above), which is the barcode
//! the catalog carries for that product — the convention of most till systems (Odoo's
//! barcode nomenclature, for one). Only weights in grams are decoded; price-embedded
//! labels (the value is the price to charge) are not supported, and a rule asking for
//! them is refused when the configuration loads.

use serde::Deserialize;

use super::gtin::{Gtin, check_digit};

/// What a rule's value digits carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeasureKind {
    /// The net weight in grams.
    Grams,
}

/// One store layout of variable-measure barcodes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableMeasureRule {
    /// Two digits from `20` to `29`.
    pub prefix: String,
    /// Item digits after the prefix: 4, 5 or 6. The value takes the digits left
    /// before the check digit (6, 5 or 4).
    pub item_digits: u8,
    /// What the value digits carry: `grams`.
    pub value: MeasureKind,
}

/// A decoded variable-measure barcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// The product's barcode in the catalog: value digits zero, check digit recomputed.
    pub base: Gtin,
    /// The weight the label carries.
    pub grams: u32,
}

impl VariableMeasureRule {
    /// Why this rule cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let p = self.prefix.as_bytes();
        if p.len() != 2 || p[0] != b'2' || !p[1].is_ascii_digit() {
            return Err(format!(
                "prefix {:?} must be two digits from 20 to 29 (GS1 in-store numbers)",
                self.prefix
            ));
        }
        if !(4..=6).contains(&self.item_digits) {
            return Err(format!(
                "item_digits {} must be 4, 5 or 6",
                self.item_digits
            ));
        }
        Ok(())
    }

    /// Decodes `code` when it is a 13-digit code with this rule's prefix.
    fn decode(&self, code: &Gtin) -> Option<Measured> {
        let digits = code.as_str();
        if digits.len() != 13 || !digits.starts_with(&self.prefix) {
            return None;
        }
        let item_end = 2 + usize::from(self.item_digits);
        let value: u32 = digits[item_end..12].parse().ok()?;
        let body = format!("{}{}", &digits[..item_end], "0".repeat(12 - item_end));
        let check = check_digit(&body)?;
        let base = Gtin::parse(&format!("{body}{check}")).ok()?;
        match self.value {
            MeasureKind::Grams => Some(Measured { base, grams: value }),
        }
    }
}

/// Checks a set of rules: each valid, no prefix twice.
pub fn check_rules(rules: &[VariableMeasureRule]) -> Result<(), (usize, String)> {
    for (i, r) in rules.iter().enumerate() {
        r.check().map_err(|e| (i, e))?;
        if rules[..i].iter().any(|o| o.prefix == r.prefix) {
            return Err((i, format!("prefix {} appears twice", r.prefix)));
        }
    }
    Ok(())
}

/// Decodes `code` with the first rule whose prefix it has; `None` when none applies
/// (an ordinary barcode).
pub fn decode(rules: &[VariableMeasureRule], code: &Gtin) -> Option<Measured> {
    rules.iter().find_map(|r| r.decode(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(prefix: &str, item_digits: u8) -> VariableMeasureRule {
        VariableMeasureRule {
            prefix: prefix.into(),
            item_digits,
            value: MeasureKind::Grams,
        }
    }

    fn gtin(body12: &str) -> Gtin {
        Gtin::parse(&format!("{body12}{}", check_digit(body12).unwrap())).unwrap()
    }

    #[test]
    fn weight_and_base_barcode_come_out_of_the_label() {
        let rules = [rule("21", 5)];
        let m = decode(&rules, &gtin("210123401250")).unwrap();
        assert_eq!(m.grams, 1250);
        assert_eq!(m.base, gtin("210123400000"));
        assert_eq!(m.base.as_str(), "2101234000007");
    }

    #[test]
    fn each_layout_splits_item_and_value_where_it_says() {
        let four = decode(&[rule("22", 4)], &gtin("220123012345")).unwrap();
        assert_eq!(four.grams, 12345);
        assert_eq!(four.base, gtin("220123000000"));
        let six = decode(&[rule("23", 6)], &gtin("230123450999")).unwrap();
        assert_eq!(six.grams, 999);
        assert_eq!(six.base, gtin("230123450000"));
    }

    #[test]
    fn ordinary_and_foreign_codes_are_not_decoded() {
        let rules = [rule("21", 5)];
        // Another prefix, a GTIN-8 with the prefix, an ordinary EAN-13.
        assert_eq!(decode(&rules, &gtin("220123401250")), None);
        let g8 = Gtin::parse(&format!("2101234{}", check_digit("2101234").unwrap())).unwrap();
        assert_eq!(decode(&rules, &g8), None);
        assert_eq!(decode(&rules, &gtin("400638133393")), None);
        assert_eq!(decode(&[], &gtin("210123401250")), None);
        // A 14-digit code with the prefix further in is not a restricted number.
        let g14 = Gtin::parse(&{
            let b = "0210123401250";
            format!("{b}{}", check_digit(b).unwrap())
        })
        .unwrap();
        assert_eq!(decode(&rules, &g14), None);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (r, want) in [
            (rule("31", 5), "20 to 29"),
            (rule("2", 5), "20 to 29"),
            (rule("2x", 5), "20 to 29"),
            (rule("21", 3), "4, 5 or 6"),
            (rule("21", 7), "4, 5 or 6"),
        ] {
            let e = r.check().unwrap_err();
            assert!(e.contains(want), "{r:?}: {e}");
        }
        let e = check_rules(&[rule("21", 5), rule("22", 5), rule("21", 4)]).unwrap_err();
        assert_eq!(e.0, 2);
        assert!(e.1.contains("twice"), "{e:?}");
        assert!(check_rules(&[rule("21", 5), rule("28", 4)]).is_ok());
    }

    #[test]
    fn a_price_rule_is_refused_when_parsed() {
        let bad: Result<VariableMeasureRule, _> =
            serde_json::from_str(r#"{"prefix":"24","item_digits":5,"value":"price"}"#);
        assert!(bad.is_err());
    }
}
