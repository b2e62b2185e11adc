//! The payment terminal.
//!
//! Every command that moves money carries the caller's [`PaymentKey`]. A terminal
//! remembers what it did under each key, so when a response is lost the caller asks
//! [`PaymentTerminal::status`] about the same key instead of charging again (nexo's
//! TransactionStatus). Card data never reaches the caller: only a token-free summary
//! (brand, last four digits, authorization code).

use async_trait::async_trait;

use crate::device::Device;
use crate::fault::DeviceFault;
use crate::{DeviceError, ErrorKind};

/// The caller's key for one payment operation. The terminal records its outcome under
/// this key; the same key is never used for two different operations.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PaymentKey(pub String);

impl std::fmt::Display for PaymentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request to charge or refund an amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The caller's key for this operation.
    pub key: PaymentKey,
    /// Amount in minor units of `currency`; always positive.
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// What the customer may pay with on the terminal.
    pub instrument: Instrument,
}

/// What the terminal may take for one payment or refund.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instrument {
    /// Whatever the terminal accepts: a card, or a wallet on a phone or watch.
    #[default]
    Any,
    /// Only a phone or watch wallet, one of [`WALLET_BRANDS`]: the terminal refuses a
    /// plastic card. A refund of a wallet payment goes back the same way.
    Wallet,
}

/// The payment brands of phone and watch wallets, as terminals name them (nexo
/// `PaymentBrand`). A wallet payment allows only these.
pub const WALLET_BRANDS: &[&str] = &["ApplePay", "GooglePay", "SamsungPay"];

/// What the terminal says an approved operation was, with no card data beyond what a
/// receipt may show.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    /// Authorization code from the acquirer (or the terminal, offline).
    pub auth_code: String,
    /// Card brand, e.g. "VISA".
    pub brand: Option<String>,
    /// Last four digits of the card number.
    pub last4: Option<String>,
    /// Approved by the terminal alone while it could not reach its acquirer: stored
    /// to be forwarded later (store-and-forward), so the money is not certain until
    /// then. See [`PaymentTerminal::forwarding`].
    #[serde(default)]
    pub offline: bool,
    /// An identity of the card (or wallet) the terminal gives without card data, the
    /// same for every payment with it (a payment token): what a per-card limit counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<String>,
}

/// The terminal's store-and-forward state: whether it reaches its acquirer, and what it
/// approved offline and has not forwarded yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Forwarding {
    /// Whether the terminal reaches its acquirer now. While it does not, it approves
    /// offline (`Approval::offline`) and queues what it approved.
    pub host_reachable: bool,
    /// The keys of payments and refunds approved offline and still queued. A key that
    /// left the queue was forwarded to the acquirer (or reversed).
    pub queued: Vec<PaymentKey>,
}

/// The definite outcome of a payment operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The money moved.
    Approved(Approval),
    /// The money did not move.
    Declined {
        /// The terminal's reason, for the cashier.
        reason: String,
    },
}

/// What the terminal knows about a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KeyStatus {
    /// The operation under the key finished with this outcome.
    Done(Outcome),
    /// The terminal is still working on it.
    InProgress,
    /// The terminal never saw this key: nothing was charged.
    Unknown,
    /// The operation was reversed (voided) after approval.
    Reversed,
}

/// Why a terminal command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    /// The terminal could not be reached; the command was not delivered.
    #[error("payment terminal offline: {0}")]
    Offline(String),
    /// The command may have been executed but no answer came back.
    #[error("payment outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The terminal is busy with another operation.
    #[error("payment terminal busy")]
    Busy,
    /// The command is not valid now (e.g. voiding an unknown key).
    #[error("payment command refused: {0}")]
    Illegal(String),
    /// The terminal reported a failure.
    #[error("payment terminal failure: {0}")]
    Failure(String),
}

impl From<DeviceFault> for PaymentError {
    fn from(f: DeviceFault) -> Self {
        let msg = f.message().to_owned();
        match f.kind() {
            ErrorKind::Offline | ErrorKind::NoHardware => PaymentError::Offline(msg),
            ErrorKind::OutcomeUnknown | ErrorKind::Timeout => PaymentError::OutcomeUnknown(msg),
            ErrorKind::Busy => PaymentError::Busy,
            ErrorKind::Illegal => PaymentError::Illegal(msg),
            _ => PaymentError::Failure(msg),
        }
    }
}

impl DeviceError for PaymentError {
    fn kind(&self) -> ErrorKind {
        match self {
            PaymentError::Offline(_) => ErrorKind::Offline,
            PaymentError::OutcomeUnknown(_) => ErrorKind::OutcomeUnknown,
            PaymentError::Busy => ErrorKind::Busy,
            PaymentError::Illegal(_) => ErrorKind::Illegal,
            PaymentError::Failure(_) => ErrorKind::Failure,
        }
    }
}

/// A payment terminal. Implementations must be safe to call from many tasks; they
/// serialize access to the device themselves.
///
/// A timeout after the request was sent is [`PaymentError::OutcomeUnknown`], never
/// `Offline`: only a request that certainly never reached the terminal is offline.
#[async_trait]
pub trait PaymentTerminal: Device {
    /// Charge `req.amount_minor` under `req.key` (nexo Payment).
    async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError>;
    /// Confirm an approved charge under `key` once the sale is recorded (nexo
    /// Payment completion / capture). Completing a completed key succeeds; a key that
    /// was not approved is refused as illegal.
    async fn complete(&self, key: &PaymentKey) -> Result<(), PaymentError>;
    /// Cancel the operation under `key` while the terminal is still waiting for the
    /// card (nexo Abort). Afterwards the key's status is declined or unknown; aborting
    /// a finished operation changes nothing and returns its status.
    async fn abort(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError>;
    /// Reverse an approved charge made under `key` (nexo Reversal). Reversing a key
    /// that is already reversed succeeds.
    async fn void(&self, key: &PaymentKey) -> Result<(), PaymentError>;
    /// Refund `req.amount_minor` to the card under `req.key` (nexo Refund).
    async fn refund(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError>;
    /// What happened under `key` (nexo TransactionStatus).
    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError>;
    /// After the caller restarted: take up the payment a previous process of the
    /// caller left open under `key`, before asking about it or finishing it with
    /// `complete`, `void` or `abort`; returns its status. A terminal that keeps its
    /// own journal of keys already knows the key (the default asks `status`). One
    /// whose keys lived in the lost process (an MDB reader: MDB carries no key) binds
    /// the key to the session the device kept, if it kept one.
    async fn resume(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        self.status(key).await
    }
    /// Whether the terminal reaches its acquirer and what it approved offline and has
    /// not forwarded yet (nexo Diagnosis). A terminal that never approves offline need
    /// not implement it: the default refuses, and its approvals are never offline.
    async fn forwarding(&self) -> Result<Forwarding, PaymentError> {
        Err(PaymentError::Illegal(
            "this terminal does not report store-and-forward".into(),
        ))
    }
}
