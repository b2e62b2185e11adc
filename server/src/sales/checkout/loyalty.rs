//! What checkout asks of `crate::loyalty`: the customer, the points the cart earns and
//! the redemptions, and how a refusal answers the terminal.

use crate::domain::loyalty::RedeemError;
use crate::loyalty::LoyaltyError;

use super::super::SellError;
use super::super::idempotency::IdemRecord;

/// Why the writer job of a checkout without cards recorded nothing.
pub(crate) enum Refused {
    /// The key was used meanwhile (by another process): answer as a retry would.
    Key(IdemRecord),
    /// A redemption failed its check against the balance or the offline limit as the
    /// job saw them.
    Loyalty(LoyaltyError),
}

impl From<LoyaltyError> for SellError {
    fn from(e: LoyaltyError) -> Self {
        let msg = e.to_string();
        match e {
            LoyaltyError::UnknownCustomer(_) => {
                SellError::invalid("unknown_customer", msg, Some("customer".into()))
            }
            LoyaltyError::UnknownVoucher => {
                SellError::invalid("unknown_voucher", msg, Some("payments".into()))
            }
            LoyaltyError::Invalid { field, .. } => {
                let code = if field.starts_with("customer") {
                    "invalid_customer"
                } else {
                    "invalid_payment"
                };
                SellError::invalid(code, msg, Some(field))
            }
            LoyaltyError::NoRules => {
                SellError::invalid("loyalty_not_configured", msg, Some("payments".into()))
            }
            LoyaltyError::Redeem { source, .. } => {
                let code = match source {
                    RedeemError::Insufficient { .. } => "insufficient_balance",
                    RedeemError::OverLimit { .. } => "offline_limit_reached",
                    _ => "invalid_payment",
                };
                SellError::invalid(code, msg, Some("payments".into()))
            }
            LoyaltyError::Store(e) => SellError::Store(e),
        }
    }
}
