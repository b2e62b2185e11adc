//! What HQ owns of the store's description: its name, the receipt header and the
//! offline exposure caps.
//!
//! Everything else about the store (its id, currency, addresses, security, the HQ link
//! itself and the receipt paper width, which belongs to the printer) stays in the
//! local config file: see `docs/hq-sync.md`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest store name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Most receipt header lines.
pub const MAX_HEADER_LINES: usize = 6;
/// Longest receipt header line, in characters.
pub const MAX_HEADER_CHARS: usize = 64;

/// The store's name and receipt header as HQ set them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreProfile {
    /// Printed at the top of every receipt.
    pub name: String,
    /// Lines printed under the name (address, VAT number, phone).
    pub receipt_header: Vec<String>,
    /// The offline exposure caps HQ set; the config file's when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_caps: Option<super::exposure::ExposureCaps>,
}

/// Why a store profile is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct StoreProfileError {
    /// The field at fault, e.g. `receipt_header[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn check_text(
    field: String,
    text: &str,
    max: usize,
    empty_ok: bool,
) -> Result<(), StoreProfileError> {
    let n = text.chars().count();
    if (!empty_ok && text.trim().is_empty()) || n > max {
        return Err(StoreProfileError {
            field,
            message: format!(
                "must be {} to {max} characters (has {n})",
                if empty_ok { 0 } else { 1 }
            ),
        });
    }
    // Printed as is: a control character could be a printer command (ESC/POS).
    if text.chars().any(char::is_control) {
        return Err(StoreProfileError {
            field,
            message: "must not contain control characters".into(),
        });
    }
    Ok(())
}

impl StoreProfile {
    /// Check a profile HQ sent.
    pub fn parse(
        name: String,
        receipt_header: Vec<String>,
    ) -> Result<StoreProfile, StoreProfileError> {
        check_text("store_name".into(), &name, MAX_NAME_CHARS, false)?;
        if receipt_header.len() > MAX_HEADER_LINES {
            return Err(StoreProfileError {
                field: "receipt_header".into(),
                message: format!(
                    "{} lines is over the limit of {MAX_HEADER_LINES}",
                    receipt_header.len()
                ),
            });
        }
        for (i, line) in receipt_header.iter().enumerate() {
            check_text(format!("receipt_header[{i}]"), line, MAX_HEADER_CHARS, true)?;
        }
        Ok(StoreProfile {
            name,
            receipt_header,
            offline_caps: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_profile_parses() {
        let p = StoreProfile::parse(
            "Corner Shop".into(),
            vec!["1 Main St".into(), String::new()],
        )
        .unwrap();
        assert_eq!(p.receipt_header.len(), 2);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(String, Vec<String>, &str)> = vec![
            (" ".into(), vec![], "store_name"),
            ("x".repeat(65), vec![], "store_name"),
            ("A\u{1b}@".into(), vec![], "store_name"),
            (
                "A".into(),
                vec!["ok".into(), "\u{1b}d".into()],
                "receipt_header[1]",
            ),
            ("A".into(), vec!["y".repeat(65)], "receipt_header[0]"),
            ("A".into(), vec![String::new(); 7], "receipt_header"),
        ];
        for (name, header, field) in cases {
            let e = StoreProfile::parse(name, header).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
