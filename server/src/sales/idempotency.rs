//! Idempotency records: what a key was used for and what it answered.
//!
//! Like Stripe's idempotency keys: the first request under a key runs; a retry with
//! the same body gets the first answer again; the same key with a different body is
//! refused; a retry while the first is still running is told so.

//!
//! The key itself is an [`IdempotencyKey`](crate::domain::sale::IdempotencyKey), checked
//! where the request enters.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
#[serde(from = "StoredOutcome", into = "StoredOutcome")]
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
    /// A stock count found the stock as recorded: nothing moved. Kept, so the same
    /// count sent again after a sale does not count the sale as a difference.
    Unchanged,
    /// The request failed for good (e.g. the card was declined).
    Failed {
        /// What failed.
        failure: Failure,
        /// Message for people.
        message: String,
    },
}

impl IdemOutcome {
    /// The answer a checkout's key keeps when a card is declined.
    pub fn payment_declined(reason: &str) -> Self {
        IdemOutcome::Failed {
            failure: Failure::PaymentDeclined,
            message: format!("payment declined: {reason}"),
        }
    }

    /// The answer a refund's key keeps when every card refund is declined.
    pub fn refund_declined(reason: &str) -> Self {
        IdemOutcome::Failed {
            failure: Failure::RefundDeclined,
            message: format!("card refund declined: {reason}"),
        }
    }
}

/// How a request can fail for good: the failures a key keeps as its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The card payment of a checkout was declined.
    PaymentDeclined,
    /// Every card refund of a refund was declined.
    RefundDeclined,
}

/// [`IdemOutcome`] as stored: `{"kind": "failed", "status": 402, "code":
/// "payment_declined", "message": …}` for a failure, the kind and id otherwise.
///
/// `status` is the on-disk format of the first versions, which kept the HTTP answer
/// whole. It is written unchanged, so a data dir still reads with those versions (an
/// update can be rolled back), and never read: the failure is known by its `code`,
/// and the HTTP layer decides the status.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredOutcome {
    Sale {
        id: Uuid,
    },
    Refund {
        id: Uuid,
    },
    Movement {
        id: Uuid,
    },
    Unchanged,
    Failed {
        #[serde(default = "legacy_status")]
        status: u16,
        code: Failure,
        message: String,
    },
}

/// The `status` of every stored failure: both are declines, which the first versions
/// answered (and replayed) as 402.
fn legacy_status() -> u16 {
    402
}

impl From<StoredOutcome> for IdemOutcome {
    fn from(s: StoredOutcome) -> Self {
        match s {
            StoredOutcome::Sale { id } => IdemOutcome::Sale { id },
            StoredOutcome::Refund { id } => IdemOutcome::Refund { id },
            StoredOutcome::Movement { id } => IdemOutcome::Movement { id },
            StoredOutcome::Unchanged => IdemOutcome::Unchanged,
            StoredOutcome::Failed { code, message, .. } => IdemOutcome::Failed {
                failure: code,
                message,
            },
        }
    }
}

impl From<IdemOutcome> for StoredOutcome {
    fn from(o: IdemOutcome) -> Self {
        match o {
            IdemOutcome::Sale { id } => StoredOutcome::Sale { id },
            IdemOutcome::Refund { id } => StoredOutcome::Refund { id },
            IdemOutcome::Movement { id } => StoredOutcome::Movement { id },
            IdemOutcome::Unchanged => StoredOutcome::Unchanged,
            IdemOutcome::Failed { failure, message } => StoredOutcome::Failed {
                status: legacy_status(),
                code: failure,
                message,
            },
        }
    }
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
    fn a_stored_failure_reads_and_writes_the_json_of_the_first_versions() {
        let json = r#"{"fingerprint":"ab","state":{"state":"done","outcome":{"kind":"failed","status":402,"code":"refund_declined","message":"card refund declined: no"}}}"#;
        let rec: IdemRecord = serde_json::from_str(json).unwrap();
        assert_eq!(
            rec.state,
            IdemState::Done {
                outcome: IdemOutcome::Failed {
                    failure: Failure::RefundDeclined,
                    message: "card refund declined: no".into(),
                }
            }
        );
        assert_eq!(serde_json::to_string(&rec).unwrap(), json);
        let sale = r#"{"fingerprint":"ab","state":{"state":"done","outcome":{"kind":"sale","id":"0190b8c4-0000-7000-8000-000000000001"}}}"#;
        let rec: IdemRecord = serde_json::from_str(sale).unwrap();
        assert_eq!(serde_json::to_string(&rec).unwrap(), sale);
        let unknown = r#"{"kind":"failed","status":409,"code":"what","message":"m"}"#;
        assert!(serde_json::from_str::<IdemOutcome>(unknown).is_err());
    }

    #[test]
    fn fingerprint_differs_by_body_and_terminal() {
        let a = fingerprint("t1", &serde_json::json!({"q": 1}));
        assert_eq!(a, fingerprint("t1", &serde_json::json!({"q": 1})));
        assert_ne!(a, fingerprint("t1", &serde_json::json!({"q": 2})));
        assert_ne!(a, fingerprint("t2", &serde_json::json!({"q": 1})));
    }
}
