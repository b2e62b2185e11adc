//! Money as integer minor units, ISO 4217 currencies, and Outpost's one rounding rule.
//!
//! Amounts are never floating point: a [`Money`] is a count of the currency's minor units
//! (cents for EUR, yen for JPY, fils for KWD). Every operation that could overflow is
//! checked and returns `None` instead of wrapping, so a corrupt price can fail a sale but
//! never silently charge the wrong amount.
//!
//! # Rounding
//!
//! Whenever Outpost divides money (weight prices, percentage discounts, tax) it uses
//! [`div_round_half_up`]: round to the nearest integer, and exact halves go **away from
//! zero** ("half-up on the absolute value": 2.5 → 3, -2.5 → -3). It is the rule shoppers
//! and tax offices expect from a till, and applying it to the absolute value keeps a
//! refund the exact mirror of the sale it reverses.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount in the minor units of a currency (cents for EUR).
///
/// The currency is kept beside it (in the product or cart), not inside it, so that the
/// JSON stays a plain integer and arithmetic stays a single `i64` operation.
#[derive(
    Copy,
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = i64, example = 129)]
pub struct Money(pub i64);

impl Money {
    /// Zero in any currency.
    pub const fn zero() -> Money {
        Money(0)
    }

    /// The raw number of minor units.
    pub const fn minor(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// `self - other`, or `None` on overflow.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// `self * factor` (e.g. a unit price times a quantity), or `None` on overflow.
    pub fn checked_mul(self, factor: i64) -> Option<Money> {
        self.0.checked_mul(factor).map(Money)
    }

    /// Whether the amount is below zero (refunds, discounts shown as negatives).
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Sum of all amounts, or `None` if any partial sum overflows.
    ///
    /// There is deliberately no `impl Sum for Money`: a sum that wraps would be a wrong
    /// total on a receipt, so every sum has to say what happens on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Money>>(iter: I) -> Option<Money> {
        iter.into_iter()
            .try_fold(Money::zero(), |acc, m| acc.checked_add(m))
    }
}

/// Divides `numerator` by `denominator`, rounding to the nearest integer with exact halves
/// going away from zero ("half-up on the absolute value": `5/2 = 3`, `-5/2 = -3`).
///
/// This is **the** rounding rule of Outpost (see the module docs). The denominator must be
/// positive in every use Outpost makes of it; a negative one is handled consistently
/// (the sign of the result is that of the exact quotient), and zero panics like any
/// integer division.
pub fn div_round_half_up(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    let (rem_abs, den_abs) = (remainder.unsigned_abs(), denominator.unsigned_abs());
    // `rem_abs >= den_abs - rem_abs` is `2 * |r| >= |d|` without the overflow of doubling.
    if remainder != 0 && rem_abs >= den_abs - rem_abs {
        if (numerator < 0) == (denominator < 0) {
            quotient + 1
        } else {
            quotient - 1
        }
    } else {
        quotient
    }
}

/// Why a currency code was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CurrencyError {
    /// Not three ASCII uppercase letters.
    #[error("currency code {code:?} is not three uppercase letters (e.g. \"EUR\")")]
    Malformed {
        /// The rejected input.
        code: String,
    },
    /// Well-formed but not an active ISO 4217 currency with minor units.
    #[error("currency code {code:?} is not an active ISO 4217 currency")]
    Unknown {
        /// The rejected input.
        code: String,
    },
}

/// Active ISO 4217 codes and their minor-unit exponents, sorted by code so lookups can
/// binary-search and the derived `Ord` of [`Currency`] is alphabetical.
///
/// Codes without minor units in the standard (gold `XAU`, SDR `XDR`, test `XTS`, ...)
/// are left out on purpose: nothing can be priced in them at a till.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// An active ISO 4217 currency code, e.g. `EUR`.
///
/// Only codes from Outpost's built-in table parse, so holding a `Currency` proves its
/// minor-unit exponent is known and amounts can be formatted.
// Stored as an index into `CURRENCIES`: `Copy`, two bytes, no allocation per price.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, ToSchema)]
#[serde(try_from = "String")]
#[schema(value_type = String, example = "EUR")]
pub struct Currency(u16);

impl Currency {
    /// The euro, the demo store's currency; usable in `const` contexts.
    pub const EUR: Currency = Currency::known("EUR");

    /// Looks a code up at compile time; an unknown code is a build error, not a panic.
    const fn known(code: &str) -> Currency {
        let wanted = code.as_bytes();
        let mut i = 0;
        while i < CURRENCIES.len() {
            let have = CURRENCIES[i].0.as_bytes();
            if have[0] == wanted[0] && have[1] == wanted[1] && have[2] == wanted[2] {
                return Currency(i as u16);
            }
            i += 1;
        }
        panic!("currency code missing from the ISO 4217 table");
    }

    /// Parses an ISO 4217 code: exactly three ASCII uppercase letters that name an active
    /// currency. Lowercase is rejected rather than fixed up, so stored data has one spelling.
    pub fn parse(code: &str) -> Result<Currency, CurrencyError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(CurrencyError::Malformed {
                code: code.to_owned(),
            });
        }
        CURRENCIES
            .binary_search_by(|(c, _)| (*c).cmp(code))
            .map(|i| Currency(i as u16))
            .map_err(|_| CurrencyError::Unknown {
                code: code.to_owned(),
            })
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.entry().0
    }

    /// Number of decimal digits of the minor unit (EUR 2, JPY 0, KWD 3).
    pub fn exponent(&self) -> u8 {
        self.entry().1
    }

    fn entry(&self) -> (&'static str, u8) {
        // The index only ever comes from the table itself, but stay total anyway.
        CURRENCIES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or(("XXX", 0))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::parse(&value)
    }
}

impl TryFrom<&str> for Currency {
    type Error = CurrencyError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Currency::parse(value)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// Formats an amount with its decimals but without the currency code: `12.34`, `-0.05`,
/// `1200` (JPY). Receipts use it for right-aligned columns.
pub fn format_amount(m: Money, c: &Currency) -> String {
    let exponent = u32::from(c.exponent());
    let sign = if m.is_negative() { "-" } else { "" };
    // `unsigned_abs` keeps `i64::MIN` printable.
    let abs = m.minor().unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(exponent);
    let width = exponent as usize;
    format!("{sign}{}.{:0width$}", abs / scale, abs % scale)
}

/// Formats an amount for people: `12.34 EUR`, `-0.05 EUR`, `1200 JPY`, `1.234 KWD`.
pub fn format_money(m: Money, c: &Currency) -> String {
    format!("{} {}", format_amount(m, c), c.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        for pair in CURRENCIES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
        for (code, exp) in CURRENCIES {
            assert_eq!(code.len(), 3);
            assert!(code.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(*exp <= 4);
            assert_eq!(cur(code).code(), *code);
        }
        assert!(CURRENCIES.len() >= 150, "only {} codes", CURRENCIES.len());
    }

    #[test]
    fn exponents_of_well_known_currencies() {
        for (code, exp) in [
            ("EUR", 2),
            ("USD", 2),
            ("GBP", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("ISK", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("TND", 3),
            ("CLF", 4),
        ] {
            assert_eq!(cur(code).exponent(), exp, "{code}");
        }
        assert_eq!(Currency::EUR, cur("EUR"));
    }

    #[test]
    fn parse_rejects_malformed_and_unknown_codes() {
        for bad in ["", "EU", "EURO", "eur", "Eur", "E1R", "€UR", " EUR"] {
            assert!(
                matches!(Currency::parse(bad), Err(CurrencyError::Malformed { .. })),
                "{bad:?}"
            );
        }
        for unknown in ["ABC", "XAU", "XXX", "DEM", "ZZZ"] {
            assert!(
                matches!(Currency::parse(unknown), Err(CurrencyError::Unknown { .. })),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn currency_serde_is_a_validated_string() {
        assert_eq!(serde_json::to_string(&Currency::EUR).unwrap(), "\"EUR\"");
        let back: Currency = serde_json::from_str("\"JPY\"").unwrap();
        assert_eq!(back.exponent(), 0);
        assert!(serde_json::from_str::<Currency>("\"eur\"").is_err());
        assert!(serde_json::from_str::<Currency>("\"QQQ\"").is_err());
        assert_eq!(format!("{} {:?}", back, back), "JPY Currency(JPY)");
    }

    #[test]
    fn money_serde_is_a_plain_integer() {
        assert_eq!(serde_json::to_string(&Money(-129)).unwrap(), "-129");
        assert_eq!(serde_json::from_str::<Money>("4200").unwrap(), Money(4200));
        assert!(serde_json::from_str::<Money>("1.5").is_err());
    }

    #[test]
    fn format_money_examples() {
        assert_eq!(format_money(Money(1234), &cur("EUR")), "12.34 EUR");
        assert_eq!(format_money(Money(-5), &cur("EUR")), "-0.05 EUR");
        assert_eq!(format_money(Money(0), &cur("EUR")), "0.00 EUR");
        assert_eq!(format_money(Money(1200), &cur("JPY")), "1200 JPY");
        assert_eq!(format_money(Money(-1200), &cur("JPY")), "-1200 JPY");
        assert_eq!(format_money(Money(1234), &cur("KWD")), "1.234 KWD");
        assert_eq!(format_money(Money(7), &cur("CLF")), "0.0007 CLF");
        assert_eq!(
            format_money(Money(i64::MIN), &cur("EUR")),
            "-92233720368547758.08 EUR"
        );
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(div_round_half_up(5, 2), 3);
        assert_eq!(div_round_half_up(-5, 2), -3);
        assert_eq!(div_round_half_up(4, 2), 2);
        assert_eq!(div_round_half_up(7, 3), 2);
        assert_eq!(div_round_half_up(8, 3), 3);
        assert_eq!(div_round_half_up(-7, 3), -2);
        assert_eq!(div_round_half_up(-8, 3), -3);
        assert_eq!(div_round_half_up(149, 100), 1);
        assert_eq!(div_round_half_up(150, 100), 2);
        assert_eq!(div_round_half_up(-150, 100), -2);
        assert_eq!(div_round_half_up(-149, 100), -1);
        assert_eq!(div_round_half_up(0, 7), 0);
        // 2.99 EUR/kg * 500 g = 149.5 cents -> 150; 3.49 EUR/kg * 350 g = 122.15 -> 122.
        assert_eq!(div_round_half_up(299 * 500, 1000), 150);
        assert_eq!(div_round_half_up(349 * 350, 1000), 122);
        // Huge denominators must not overflow when comparing the remainder.
        assert_eq!(div_round_half_up(i128::MAX, i128::MAX), 1);
        assert_eq!(div_round_half_up(i128::MAX / 2 + 1, i128::MAX), 1);
        assert_eq!(div_round_half_up(i128::MAX / 2, i128::MAX), 0);
        // A negative denominator still rounds the exact quotient half away from zero.
        assert_eq!(div_round_half_up(5, -2), -3);
        assert_eq!(div_round_half_up(-5, -2), 3);
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Money(2).checked_add(Money(3)), Some(Money(5)));
        assert_eq!(Money(i64::MAX).checked_add(Money(1)), None);
        assert_eq!(Money(i64::MIN).checked_sub(Money(1)), None);
        assert_eq!(Money(129).checked_mul(3), Some(Money(387)));
        assert_eq!(Money(i64::MAX / 2 + 1).checked_mul(2), None);
        assert_eq!(
            Money::checked_sum([Money(1), Money(2), Money(-4)]),
            Some(Money(-1))
        );
        assert_eq!(Money::checked_sum([Money(i64::MAX), Money(1)]), None);
        assert_eq!(Money::checked_sum(Vec::new()), Some(Money::zero()));
        assert!(Money(-1).is_negative());
        assert!(!Money(0).is_negative());
        assert_eq!(Money(42).minor(), 42);
    }
}
