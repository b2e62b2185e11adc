//! Idempotency records: what a key was used for and what it answered.
//!
//! Like Stripe's idempotency keys: the first request under a key runs; a retry with
//! the same body gets the first answer again; the same key with a different body is
//! refused; a retry while the first is still running is told so.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Check a terminal's `Idempotency-Key`: 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
}

/// What is stored under a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdemRecord {
    /// BLAKE3 of the request, hex: tells a retry from a different request.
    pub fingerprint: String,
    /// Where the request stands.
    pub state: IdemState,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdemState {
    /// Waiting on the payment terminal; the pending record has this id.
    InProgress {
        /// Sale or refund id.
        id: Uuid,
    },
    /// Finished with this answer.
    Done {
        /// The answer.
        outcome: IdemOutcome,
    },
}

/// The answer a finished request gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdemOutcome {
    /// A sale was recorded.
    Sale {
        /// Its id.
        id: Uuid,
    },
    /// A refund was recorded.
    Refund {
        /// Its id.
        id: Uuid,
    },
    /// A stock movement was recorded.
    Movement {
        /// Its id.
        id: Uuid,
    },
    /// The request failed for good (e.g. the card was declined).
    Failed {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Message for people.
        message: String,
    },
}

/// Fingerprint of a request: its canonical JSON and who sent it.
pub fn fingerprint<T: Serialize>(terminal: &str, req: &T) -> String {
    let mut h = blake3::Hasher::new();
    h.update(terminal.as_bytes());
    h.update(&[0]);
    h.update(&crate::store::to_json(req));
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(valid_key("9f1c-2b"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key("é"));
        assert!(!valid_key(&"k".repeat(MAX_KEY_LEN + 1)));
    }

    #[test]
    fn fingerprint_differs_by_body_and_terminal() {
        let a = fingerprint("t1", &serde_json::json!({"q": 1}));
        assert_eq!(a, fingerprint("t1", &serde_json::json!({"q": 1})));
        assert_ne!(a, fingerprint("t1", &serde_json::json!({"q": 2})));
        assert_ne!(a, fingerprint("t2", &serde_json::json!({"q": 1})));
    }
}
