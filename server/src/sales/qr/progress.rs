//! Where a checkout paid by QR stands, for the screen that shows its code: a till's
//! customer display or the shopper's phone. Read from what the checkout stored under
//! its key, so it holds across requests and restarts.

use uuid::Uuid;

use super::AwaitingCode;
use crate::domain::sale::{IdempotencyKey, PaymentState, Sale, TenderMethod};
use crate::sales::checkout::SCOPE;
use crate::sales::idempotency::{IdemOutcome, IdemRecord, IdemState};
use crate::sales::journal::Pending;
use crate::sales::{Sales, SellError};
use crate::store::{StoreError, from_json, keys};

/// Where the checkout under a key stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Nothing under the key: not started yet, or ended without charging anything.
    Nothing,
    /// Being paid; `code` is the QR code waiting for the customer, if one is now.
    Paying {
        /// The sale it will be.
        sale_id: Uuid,
        /// The code to show.
        code: Option<AwaitingCode>,
    },
    /// Sold.
    Sold(Box<Sale>),
    /// Ended for good without a sale (e.g. declined, cancelled, not paid in time).
    Failed(String),
}

impl Sales {
    /// Where the checkout under `key` stands; a code's pay link sends the customer
    /// back to `return_to` after paying.
    pub fn checkout_progress(
        &self,
        key: &IdempotencyKey,
        return_to: Option<&str>,
    ) -> Result<Progress, SellError> {
        let Some(raw) = self.store.journal_get(&keys::idem(SCOPE, key.as_str()))? else {
            return Ok(Progress::Nothing);
        };
        let rec: IdemRecord = from_json(&raw, "idempotency record")?;
        match rec.state {
            IdemState::Done {
                outcome: IdemOutcome::Sale { id },
            } => {
                let sale = self.store.sale(id)?.ok_or_else(|| {
                    SellError::Store(StoreError::Corrupt(format!(
                        "sale {id} named by a key is missing"
                    )))
                })?;
                Ok(Progress::Sold(Box::new(sale)))
            }
            IdemState::Done {
                outcome: IdemOutcome::Failed { message, .. },
            } => Ok(Progress::Failed(message)),
            IdemState::Done { .. } => Ok(Progress::Failed(
                "the key belongs to another kind of request".into(),
            )),
            IdemState::InProgress { id } => {
                let pending = self.store.journal_get(&keys::pending(id))?;
                let code = match (pending, &self.qr) {
                    (Some(raw), Some(qr)) => match from_json::<Pending>(&raw, "pending payment")? {
                        Pending::Checkout(c) => c
                            .payments
                            .iter()
                            .filter(|p| {
                                p.method == TenderMethod::Qr
                                    && matches!(
                                        p.state(),
                                        PaymentState::Authorizing | PaymentState::InDoubt
                                    )
                            })
                            .find_map(|p| qr.awaiting(&p.key, return_to).transpose())
                            .transpose()?,
                        Pending::Refund(_) => None,
                    },
                    _ => None,
                };
                Ok(Progress::Paying { sale_id: id, code })
            }
        }
    }
}
