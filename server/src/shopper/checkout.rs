//! Paying a shopper's cart on their phone: the cart becomes a checkout with one QR
//! tender (`sales::qr`), the phone opens the code's pay link in the wallet, and the
//! provider's notification completes the sale. The checkout runs in its own task,
//! through the same journal, state machine and recovery as a till's; the session
//! keeps only the checkout's key and reads where it stands from the store.

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use crate::domain::sale::{IdempotencyKey, Sale, TenderRequest, TerminalId};
use crate::sales::checkout::{CheckoutRequest, LineRequest};
use crate::sales::qr::progress::Progress;
use crate::sales::{Sales, SellError};

/// The terminal id shopper sales are recorded under.
pub const SHOPPER_TERMINAL: &str = "shopper";

/// A checkout a session started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The checkout's key (made by the unit, one per attempt).
    pub key: IdempotencyKey,
    /// The lines it sells (the cart as it was).
    pub lines: Vec<LineRequest>,
    /// How the checkout task ended when it failed before any sale (the answer a till
    /// would have had): code and message.
    pub refused: Arc<Mutex<Option<(String, String)>>>,
}

/// Where a session's checkout stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Getting the code ready.
    Starting,
    /// Waiting for the customer to pay the code.
    Paying {
        /// The pay link.
        url: String,
        /// When it stops being valid.
        expires_at: OffsetDateTime,
        /// Minor units.
        amount: i64,
    },
    /// Paid and sold.
    Paid(Box<Sale>),
    /// Ended without a sale; the cart is the shopper's again.
    Failed {
        /// Stable code.
        code: String,
        /// For the shopper.
        message: String,
    },
}

/// A checkout of `lines` (sold to loyalty `customer`, HQ's id) paid with one QR code,
/// ready for its task to run
/// (`Sales::checkout` with [`Started::key`], [`SHOPPER_TERMINAL`] and the request); the
/// task records how it failed in [`Started::refused`].
pub fn prepare(
    sales: &Sales,
    lines: Vec<LineRequest>,
    customer: Option<String>,
) -> Result<(Started, TerminalId, CheckoutRequest), SellError> {
    if sales.qr().is_none() {
        return Err(SellError::TerminalUnavailable(
            "paying on the phone is not set up in this store: pay at a till".into(),
        ));
    }
    if lines.is_empty() {
        return Err(SellError::invalid("cart_empty", "the cart is empty", None));
    }
    let key = IdempotencyKey::parse(&format!("shop-{}", crate::domain::ids::next()))
        .map_err(|e| SellError::Internal(e.to_string()))?;
    let terminal =
        TerminalId::parse(SHOPPER_TERMINAL).map_err(|e| SellError::Internal(e.to_string()))?;
    let req = CheckoutRequest {
        lines: lines.clone(),
        payment: Some(TenderRequest::Qr { amount: None }),
        payments: None,
        age_verified: false,
        customer: customer.map(|id| crate::domain::loyalty::CustomerRef {
            id: Some(id),
            card: None,
        }),
    };
    Ok((
        Started {
            key,
            lines,
            refused: Arc::new(Mutex::new(None)),
        },
        terminal,
        req,
    ))
}

/// Where `started` stands; the pay link sends the phone back to `return_to`.
pub fn stage(sales: &Sales, started: &Started, return_to: &str) -> Result<Stage, SellError> {
    let progress = sales.checkout_progress(&started.key, Some(return_to))?;
    let refused = started
        .refused
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(match progress {
        Progress::Sold(sale) => Stage::Paid(sale),
        Progress::Paying {
            code: Some(code), ..
        } => Stage::Paying {
            url: code.url,
            expires_at: code.expires_at,
            amount: code.amount,
        },
        Progress::Paying { code: None, .. } => Stage::Starting,
        Progress::Failed(message) => Stage::Failed {
            code: refused
                .map(|(c, _)| c)
                .unwrap_or_else(|| "payment_declined".into()),
            message,
        },
        Progress::Nothing => match refused {
            Some((code, message)) => Stage::Failed { code, message },
            None => Stage::Starting,
        },
    })
}
