//! GS1 barcodes (GTIN-8, UPC-A/GTIN-12, EAN-13/GTIN-13, GTIN-14).
//!
//! A scanner hands the till whatever digits it read; a [`Gtin`] is a code whose length and
//! check digit are right, so a misread never finds the wrong product. Lookups use
//! [`Gtin::to_gtin14`], because the same item is printed as a 12-digit UPC-A in North
//! America and as a 13-digit EAN with a leading `0` elsewhere.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a barcode was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GtinError {
    /// Nothing was given.
    #[error("barcode is empty")]
    Empty,
    /// A character other than `0`-`9`.
    #[error("barcode has {found:?} at position {position}; only digits are allowed")]
    NonDigit {
        /// Zero-based character position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// Not 8, 12, 13 or 14 digits long.
    #[error("barcode has {len} digits; a GTIN has 8, 12, 13 or 14")]
    BadLength {
        /// Number of digits given.
        len: usize,
    },
    /// The last digit does not match the GS1 mod-10 check of the others (typically a
    /// misread or a typo).
    #[error("barcode check digit is {found}, expected {expected}")]
    BadCheckDigit {
        /// What the check digit should be for this body.
        expected: u8,
        /// What the last digit is.
        found: u8,
    },
}

/// A validated GTIN, kept with its digits exactly as given (leading zeros included).
///
/// Two spellings of one item (`036000291452` and `0036000291452`) are different `Gtin`
/// values but share [`Gtin::to_gtin14`], which is what indexes must key on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "4006381333931")]
pub struct Gtin(String);

impl Gtin {
    /// Parses a barcode: digits only, 8, 12, 13 or 14 of them, valid check digit.
    pub fn parse(s: &str) -> Result<Gtin, GtinError> {
        if s.is_empty() {
            return Err(GtinError::Empty);
        }
        if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(GtinError::NonDigit { position, found });
        }
        if !matches!(s.len(), 8 | 12 | 13 | 14) {
            return Err(GtinError::BadLength { len: s.len() });
        }
        let (body, last) = s.split_at(s.len() - 1);
        let found = last.as_bytes()[0] - b'0';
        match check_digit(body) {
            Some(expected) if expected == found => Ok(Gtin(s.to_owned())),
            Some(expected) => Err(GtinError::BadCheckDigit { expected, found }),
            // Unreachable after the digit check above; reported as a digit error anyway.
            None => Err(GtinError::Empty),
        }
    }

    /// Wraps digits already known to be a valid GTIN (generated with [`check_digit`]),
    /// skipping the parse on hot paths such as the demo generator.
    pub(crate) fn new_unchecked(digits: String) -> Gtin {
        debug_assert!(Gtin::parse(&digits).is_ok(), "invalid GTIN {digits}");
        Gtin(digits)
    }

    /// The digits as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code left-padded with zeros to 14 digits: the normalized lookup key.
    pub fn to_gtin14(&self) -> String {
        format!("{:0>14}", self.0)
    }
}

/// The GS1 mod-10 check digit for `body` (all digits but the last).
///
/// Weights alternate 3, 1, 3, ... starting from the rightmost body digit, which is why
/// leading zeros never change the result. `None` if `body` is empty or not all digits.
pub fn check_digit(body: &str) -> Option<u8> {
    if body.is_empty() {
        return None;
    }
    let mut sum: u32 = 0;
    for (i, b) in body.bytes().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let digit = u32::from(b - b'0');
        // Only the sum modulo 10 matters; reducing as we go keeps any length safe.
        sum = (sum + if i % 2 == 0 { digit * 3 } else { digit }) % 10;
    }
    Some(((10 - sum) % 10) as u8)
}

impl fmt::Display for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Gtin {
    type Err = GtinError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Gtin::parse(s)
    }
}

impl TryFrom<String> for Gtin {
    type Error = GtinError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Gtin::parse(&value)
    }
}

impl TryFrom<&str> for Gtin {
    type Error = GtinError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Gtin::parse(value)
    }
}

impl Serialize for Gtin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_barcodes_are_valid() {
        for code in [
            "4006381333931",  // EAN-13
            "036000291452",   // UPC-A
            "96385074",       // EAN-8
            "0036000291452",  // the UPC-A as EAN-13
            "00036000291452", // ... and as GTIN-14
            "5901234123457",  // GS1's EAN-13 example
        ] {
            let gtin = Gtin::parse(code).unwrap();
            assert_eq!(gtin.as_str(), code);
        }
    }

    #[test]
    fn check_digit_of_known_bodies() {
        assert_eq!(check_digit("400638133393"), Some(1));
        assert_eq!(check_digit("03600029145"), Some(2));
        assert_eq!(check_digit("9638507"), Some(4));
        assert_eq!(check_digit("590123412345"), Some(7));
        assert_eq!(check_digit("0000000"), Some(0));
        assert_eq!(check_digit(""), None);
        assert_eq!(check_digit("12a4"), None);
    }

    #[test]
    fn wrong_check_digit_names_the_expected_one() {
        assert_eq!(
            Gtin::parse("4006381333932"),
            Err(GtinError::BadCheckDigit {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            Gtin::parse("036000291453"),
            Err(GtinError::BadCheckDigit {
                expected: 2,
                found: 3
            })
        );
        assert_eq!(
            Gtin::parse("96385070"),
            Err(GtinError::BadCheckDigit {
                expected: 4,
                found: 0
            })
        );
        // Two swapped adjacent digits are caught by the 3-1 weights.
        assert!(matches!(
            Gtin::parse("4006381339331"),
            Err(GtinError::BadCheckDigit { .. })
        ));
    }

    #[test]
    fn errors_distinguish_empty_non_digit_and_length() {
        assert_eq!(Gtin::parse(""), Err(GtinError::Empty));
        assert_eq!(
            Gtin::parse("40063813x3931"),
            Err(GtinError::NonDigit {
                position: 8,
                found: 'x'
            })
        );
        assert_eq!(
            Gtin::parse(" 4006381333931"),
            Err(GtinError::NonDigit {
                position: 0,
                found: ' '
            })
        );
        assert!(matches!(
            Gtin::parse("4006381333931\u{0660}"),
            Err(GtinError::NonDigit { .. })
        ));
        for len in [1, 7, 9, 10, 11, 15, 18] {
            assert_eq!(
                Gtin::parse(&"0".repeat(len)),
                Err(GtinError::BadLength { len })
            );
        }
    }

    #[test]
    fn upc_a_and_its_ean13_share_a_lookup_key() {
        let upc = Gtin::parse("036000291452").unwrap();
        let ean = Gtin::parse("0036000291452").unwrap();
        assert_ne!(upc, ean);
        assert_eq!(upc.to_gtin14(), "00036000291452");
        assert_eq!(upc.to_gtin14(), ean.to_gtin14());
        assert_eq!(
            Gtin::parse("96385074").unwrap().to_gtin14(),
            "00000096385074"
        );
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let gtin: Gtin = serde_json::from_str("\"4006381333931\"").unwrap();
        assert_eq!(serde_json::to_string(&gtin).unwrap(), "\"4006381333931\"");
        assert!(serde_json::from_str::<Gtin>("\"4006381333932\"").is_err());
        assert!(serde_json::from_str::<Gtin>("4006381333931").is_err());
    }
}
