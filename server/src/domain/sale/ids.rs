//! Who asked, and under which key: the two request identifiers a sale, a refund or a
//! stock adjustment carries. Each is checked once, where it enters (the HTTP edge), and
//! passed on as its type, so nothing further in needs to check it again.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A terminal's `Idempotency-Key`: one value per operation, reused on retry. 1 to
/// [`MAX_LEN`](IdempotencyKey::MAX_LEN) visible ASCII characters.
///
/// Stored as a plain JSON string; reading one back checks it again, so a corrupt
/// record is reported rather than carried along.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

/// A key that is empty, too long, or not visible ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an idempotency key must be 1 to {max} visible ASCII characters", max = IdempotencyKey::MAX_LEN)]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Check `s` and keep it.
    pub fn parse(s: &str) -> Result<Self, InvalidIdempotencyKey> {
        Self::try_from(s.to_owned())
    }

    /// The key as the terminal sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which terminal (till) a sale or refund was made at: a terminal's name, or the
/// `X-Terminal-Id` a staff session gives. 1 to [`MAX_LEN`](TerminalId::MAX_LEN)
/// visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TerminalId(String);

/// A terminal id that is empty, too long, or not visible ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a terminal id must be 1 to {max} visible ASCII characters", max = TerminalId::MAX_LEN)]
pub struct InvalidTerminalId;

impl TerminalId {
    /// Longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Check `s` and keep it.
    pub fn parse(s: &str) -> Result<Self, InvalidTerminalId> {
        Self::try_from(s.to_owned())
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn visible_ascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

macro_rules! string_newtype {
    ($t:ident, $err:ident) => {
        impl TryFrom<String> for $t {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, $err> {
                if visible_ascii(&s, Self::MAX_LEN) {
                    Ok($t(s))
                } else {
                    Err($err)
                }
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(IdempotencyKey, InvalidIdempotencyKey);
string_newtype!(TerminalId, InvalidTerminalId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert_eq!(
            IdempotencyKey::parse("9f1c-2b").unwrap().as_str(),
            "9f1c-2b"
        );
        for bad in ["", "has space", "é", "tab\there", "nul\0", &"k".repeat(256)] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidIdempotencyKey),
                "{bad:?}"
            );
        }
        assert!(IdempotencyKey::parse(&"k".repeat(IdempotencyKey::MAX_LEN)).is_ok());
    }

    #[test]
    fn terminal_ids_are_bounded_visible_ascii() {
        assert_eq!(TerminalId::parse("till-3").unwrap().to_string(), "till-3");
        for bad in ["", "till 3", "kassé", "\n", &"t".repeat(65)] {
            assert_eq!(TerminalId::parse(bad), Err(InvalidTerminalId), "{bad:?}");
        }
        assert!(TerminalId::parse(&"t".repeat(TerminalId::MAX_LEN)).is_ok());
        // Every terminal or user name (A-Z a-z 0-9 - _ . @, 1 to 64) is a terminal id.
        assert!(TerminalId::parse("cashier.one@store-7_b").is_ok());
    }

    #[test]
    fn stored_ids_read_back_as_plain_strings_and_are_checked_again() {
        let k: IdempotencyKey = serde_json::from_str("\"k-1\"").unwrap();
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"k-1\"");
        assert!(serde_json::from_str::<IdempotencyKey>("\"\"").is_err());
        let t: TerminalId = serde_json::from_str("\"till-3\"").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"till-3\"");
        assert!(serde_json::from_str::<TerminalId>("\"a b\"").is_err());
    }
}
