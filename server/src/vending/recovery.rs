//! Finishing the vends a power cut (or a lost answer) left open.
//!
//! Recovery never asks the reader for money and never runs a motor: it asks the
//! devices what happened under the vend's key and finishes from there.
//!
//! | state left | asks | then |
//! |---|---|---|
//! | `selected` | nothing (no device was called) | `failed` |
//! | `authorizing` | the reader, about the key (withdrawn if still open) | approved: `voiding`; else `failed` |
//! | `authorized` | nothing (the motor never ran) | `voiding` |
//! | `dispensing` | the dispenser, about the key | dropped: `capturing`; not: `voiding` |
//! | `dispensed` | nothing | `capturing` |
//! | `capturing` | nothing: VEND SUCCESS again | taken: `completed`; the reader was reset: `unpaid`, in doubt |
//! | `voiding` | the reader, about the key | held: VEND FAILURE; then `failed` |
//!
//! A cash vend holds no reader: `authorized` and `voiding` give its price back to
//! the credit, `dispensed` and `capturing` complete it. Then the cash operations a
//! cut left in flight are finished ([`super::cash`]) and the change due is paid.
//!
//! An answer not known yet leaves the vend open for the next round.
//!
//! Before anything else about a cashless vend, the reader is told the key again
//! ([`PaymentTerminal::resume`]): an MDB reader that kept its power while the
//! controller restarted still has the vend's session open, and the driver binds the
//! key to it, so VEND SUCCESS or VEND FAILURE finishes it on the wire before the
//! reader is reset. Only a reader that lost its power too (the whole machine cut)
//! has released the vend: a `capturing` vend then ends `unpaid`, in doubt.
//!
//! [`PaymentTerminal::resume`]: outpost_peripherals::payment::PaymentTerminal::resume

use outpost_peripherals::payment::{KeyStatus, PaymentKey};

use super::flow::Dropped;
use super::records::open_vends;
use super::{VendError, Vending};
use crate::domain::vending::vend::VendFault;
use crate::domain::vending::{PayMethod, VendRecord, VendState};
use crate::sales::terminal::{Asked, asked_from};

/// What one recovery round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Vends finished.
    pub finished: usize,
    /// Vends still open (a device could not say yet).
    pub open: usize,
}

impl Vending {
    /// Finish every open vend that the devices can answer for now. Holds the machine
    /// for the round, so no new vend starts meanwhile.
    pub async fn recover(&self) -> Result<Recovered, VendError> {
        let _machine = self.machine.lock().await;
        let mut out = Recovered::default();
        for r in open_vends(self.store())? {
            let id = r.id;
            match self.resume(r).await {
                Ok(done) => {
                    tracing::info!(vend = %id, state = done.state().name(), "Recovered a vend");
                    out.finished += 1;
                }
                Err(VendError::OutcomeUnknown) => out.open += 1,
                Err(e) => return Err(e),
            }
        }
        // The cash a cut left in flight (a note being stacked, coins being paid) and
        // the change a finished vend left due.
        match self.settle_cash().await {
            Ok(()) => {}
            Err(VendError::OutcomeUnknown) => out.open += 1,
            Err(e) => return Err(e),
        }
        Ok(out)
    }

    /// Tell the reader about a cashless vend a device call may have been made for,
    /// and what it says about the key (`None`: nothing yet).
    async fn resume_payment(&self, r: &VendRecord) -> Option<KeyStatus> {
        if r.method != PayMethod::Cashless || r.state() == VendState::Selected {
            return None;
        }
        let terminal = self.devices.cashless.as_ref()?;
        let key = PaymentKey(r.key.clone());
        match tokio::time::timeout(self.timeouts.call, terminal.resume(&key)).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    async fn resume(&self, mut r: VendRecord) -> Result<VendRecord, VendError> {
        let now = time::OffsetDateTime::now_utc;
        let resumed = self.resume_payment(&r).await;
        match r.state() {
            VendState::Selected => {
                r.fail("the machine restarted before payment", None);
                self.end(r, VendState::Failed).await
            }
            VendState::Authorizing => {
                // Still open on the reader (a session kept through a restart, or a
                // request still waiting): nobody waits for it any more, withdraw it.
                let mut asked = match resumed {
                    Some(KeyStatus::InProgress) => None,
                    Some(status) => asked_from(status),
                    None => self.ask_payment(&r.key).await,
                };
                if asked.is_none()
                    && let Some(t) = &self.devices.cashless
                {
                    // Still waiting for a card: withdraw the request, then ask again.
                    let _ = t.abort(&PaymentKey(r.key.clone())).await;
                    asked = self.ask_payment(&r.key).await;
                }
                match asked {
                    Some(Asked::Approved(_)) => {
                        r.fail("the machine restarted before dispensing", None);
                        r.transition(VendState::Authorized, now())?;
                        r.transition(VendState::Voiding, now())?;
                        self.persist(&r).await?;
                        self.void(r).await
                    }
                    Some(Asked::Declined(reason) | Asked::NotCharged(reason)) => {
                        r.fail(reason, None);
                        self.end(r, VendState::Failed).await
                    }
                    None => Err(VendError::OutcomeUnknown),
                }
            }
            VendState::Authorized => {
                r.fail("the machine restarted before dispensing", None);
                r.transition(VendState::Voiding, now())?;
                self.persist(&r).await?;
                self.void(r).await
            }
            VendState::Dispensing => match self.ask_dispenser(&r).await {
                Dropped::Yes => self.dropped(r).await,
                Dropped::No(reason) => {
                    r.fail(
                        format!("not dispensed: {reason}"),
                        Some(VendFault::NotDispensed),
                    );
                    r.transition(VendState::Voiding, now())?;
                    self.persist(&r).await?;
                    self.void(r).await
                }
                Dropped::NotKnown => Err(VendError::OutcomeUnknown),
            },
            VendState::Dispensed => {
                r.transition(VendState::Capturing, now())?;
                self.persist(&r).await?;
                self.capture(r, false).await
            }
            VendState::Capturing => self.capture(r, true).await,
            VendState::Voiding => self.void(r).await,
            // A final state is never left open: finish wrote it away atomically.
            VendState::Completed | VendState::Failed | VendState::Unpaid => Err(
                VendError::Internal(format!("vend {} is open in a final state", r.id)),
            ),
        }
    }
}
