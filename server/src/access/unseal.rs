//! Opening an enrolled data dir: the TPM share, the second share (HQ's or the PIN's),
//! or, for a unit locked in its TPM, HQ's recovery; then the store, the trust record and
//! the access layer.
//!
//! A unit that needs a factor it does not have yet is not an error: [`Pending`] holds
//! what is open so far, and the server serves a status page and a PIN form while it
//! asks HQ (`startup`, `http::gate`).

use std::sync::Arc;

use outpost_security::anchor::Anchor;
use outpost_security::seal::{DataKey, Envelope, SealError, SecondShare, TpmShare};
use outpost_security::trust::TrustRecord;
use outpost_security::vault::KeyVault;
use secrecy::SecretString;

use super::anchor::open_anchor;
use super::enrolled::Trust;
use super::escrow_link::{EscrowLink, EscrowPurpose};
use super::legacy::KEY_FILE;
use super::{Access, AccessError};
use crate::config::Settings;
use crate::store::{Store, StoreOptions};

/// How [`super::unseal_data_dir`] went.
#[derive(Debug)]
pub enum Opening {
    /// The data key is in memory: the store and the access layer are open. The lockdown
    /// a restored guard asks for is not applied yet: the server finishes building
    /// (loading what it keeps in memory) and then calls [`Access::enforce_lockdown`].
    Open(Arc<Store>, Arc<Access>),
    /// An enrolled unit whose data key needs HQ's share, the manager's PIN, or (locked
    /// in its TPM) HQ's recovery first.
    Waiting(Box<Pending>),
}

/// What an enrolled unit still needs before its data key opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// HQ's share would do.
    pub hq: bool,
    /// The manager's PIN would do.
    pub pin: bool,
    /// Locked in the TPM: only HQ's recovery opens it.
    pub recovery: bool,
}

/// An enrolled data dir whose key is not open yet.
pub struct Pending {
    settings: Settings,
    opts: StoreOptions,
    anchor: Box<dyn Anchor>,
    envelope: Envelope,
    /// `None` when the unit is locked in its TPM.
    share: Option<TpmShare>,
    /// This unit as the public copy of its bundle names it (for HQ's exchange; HQ's
    /// escrow keys are per unit, so naming another unit only gets a useless answer).
    store_id: String,
    unit_id: String,
}

/// A try that did not open the unit, with the unit handed back to try again (`None`
/// when the failure came after the key opened, past what another try can change).
pub struct Retry {
    /// The unit, still waiting.
    pub pending: Option<Pending>,
    /// Why this try failed.
    pub error: AccessError,
}

impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retry")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("needs", &self.needs())
            .finish_non_exhaustive()
    }
}

/// An opened unit.
pub type Opened = (Arc<Store>, Arc<Access>);

/// Opens an enrolled data dir as far as it opens alone.
pub(super) fn open_enrolled(
    settings: &Settings,
    opts: &StoreOptions,
) -> Result<Opening, AccessError> {
    let data_dir = &settings.data_dir;
    let mut anchor = open_anchor(settings)?;
    if !anchor.is_provisioned()? {
        return Err(AccessError::AnchorNotProvisioned(
            data_dir.display().to_string(),
        ));
    }
    let envelope = Envelope::read(&data_dir.join(KEY_FILE))?;
    let public = super::enrol::public_bundle(data_dir)?;
    let share = match envelope.open_share(anchor.as_mut()) {
        Ok(t) => Some(t),
        Err(SealError::Locked { sealed_at, now }) => {
            tracing::warn!(
                sealed_at,
                now,
                "This unit is locked in its TPM: only HQ's recovery releases its data key"
            );
            None
        }
        Err(e) => return Err(super::legacy::anchor_error(settings, e)),
    };
    let pending = Pending {
        settings: settings.clone(),
        opts: opts.clone(),
        anchor,
        envelope,
        share,
        store_id: public.store_id,
        unit_id: public.unit_id,
    };
    if pending.share.is_some() && pending.envelope.needs().is_tpm_only() {
        tracing::warn!(
            "This unit's data key opens with the TPM alone (unlock policy \"tpm only\", fixed at enrolment): weaker than a second factor, since a thief who boots the box in the same Secure Boot state before it locks needs nothing else"
        );
        let n = pending.envelope.tpm_only_share()?;
        return match pending.finish(n) {
            Ok((store, access)) => Ok(Opening::Open(store, access)),
            Err(retry) => Err(retry.error),
        };
    }
    Ok(Opening::Waiting(Box::new(pending)))
}

impl Pending {
    /// What would open it.
    pub fn needs(&self) -> Needs {
        let policy = self.envelope.needs();
        Needs {
            hq: self.share.is_some() && policy.hq,
            pin: self.share.is_some() && policy.pin,
            recovery: self.share.is_none(),
        }
    }

    /// For people: what the unit waits for.
    pub fn needs_text(&self) -> String {
        let n = self.needs();
        if n.recovery {
            return "this unit is locked in its TPM: only HQ's recovery unlocks it".into();
        }
        match (n.hq, n.pin) {
            (true, true) => "its data key needs HQ's share or the store manager's PIN".into(),
            (true, false) => "its data key needs HQ's share".into(),
            (false, true) => "its data key needs the store manager's PIN".into(),
            (false, false) => "nothing".into(),
        }
    }

    fn retry(self, error: AccessError) -> Box<Retry> {
        Box::new(Retry {
            pending: Some(self),
            error,
        })
    }

    /// Asks HQ: its share, or its recovery when locked in the TPM. HQ unreachable is
    /// [`AccessError::Escrow`] with [`EscrowLinkError::Unreachable`]: try again later.
    pub async fn with_hq(self, link: &dyn EscrowLink) -> Result<Opened, Box<Retry>> {
        let needs = self.needs();
        if !needs.hq && !needs.recovery {
            let e = AccessError::NeedsFactor(self.needs_text());
            return Err(self.retry(e));
        }
        let purpose = if needs.recovery {
            EscrowPurpose::Recovery
        } else {
            EscrowPurpose::Share
        };
        let request = match purpose {
            EscrowPurpose::Share => self.envelope.hq_share_request(),
            EscrowPurpose::Recovery => self.envelope.recovery_request(),
        };
        let (request, blinding) = match request {
            Ok(r) => r,
            Err(e) => return Err(self.retry(e.into())),
        };
        let answer = match link
            .exchange(&self.store_id, &self.unit_id, purpose, request)
            .await
        {
            Ok(a) => a,
            Err(e) => return Err(self.retry(e.into())),
        };
        match purpose {
            EscrowPurpose::Share => match self.envelope.finish_hq_share(blinding, &answer.point) {
                Ok(n) => self.finish(n),
                Err(e) => Err(self.retry(e.into())),
            },
            EscrowPurpose::Recovery => {
                match self.envelope.finish_recovery(blinding, &answer.point) {
                    Ok(key) => {
                        let (store, access) = self.open_with_key(key.clone())?;
                        match access.after_recovery(&key, answer).await {
                            Ok(()) => Ok((store, access)),
                            Err(e) => {
                                tracing::error!(error = %e, "Failed to apply HQ's recovery");
                                Ok((store, access))
                            }
                        }
                    }
                    Err(e) => Err(self.retry(e.into())),
                }
            }
        }
    }

    /// The manager's PIN. A wrong PIN is [`SealError::WrongPin`] (the TPM counted it); a
    /// TPM in its dictionary-attack lockout is [`SealError::PinLockedOut`].
    pub fn with_pin(mut self, pin: &SecretString) -> Result<Opened, Box<Retry>> {
        if !self.needs().pin {
            let e = AccessError::NeedsFactor(self.needs_text());
            return Err(self.retry(e));
        }
        match self.envelope.pin_share(self.anchor.as_mut(), pin) {
            Ok(n) => self.finish(n),
            Err(e) => Err(self.retry(e.into())),
        }
    }

    fn finish(self, n: SecondShare) -> Result<Opened, Box<Retry>> {
        let key = match &self.share {
            Some(t) => self.envelope.unwrap(t, &n),
            None => {
                let e = AccessError::NeedsFactor(self.needs_text());
                return Err(self.retry(e));
            }
        };
        match key {
            Ok(key) => self.open_with_key(key),
            Err(e) => Err(self.retry(e.into())),
        }
    }

    fn open_with_key(mut self, key: DataKey) -> Result<Opened, Box<Retry>> {
        let data_dir = self.settings.data_dir.clone();
        let vault = KeyVault::new(key);
        // The record first: an older copy of the data dir, or a config naming other
        // anchors, is refused before the store is opened (which writes).
        let opened = (|| {
            let record = TrustRecord::load(&data_dir, &vault)?
                .ok_or_else(|| AccessError::TrustMissing(data_dir.display().to_string()))?;
            record.check_epoch(self.anchor.epoch()?)?;
            super::enrol::check_config(&self.settings, &record)?;
            let store = Store::open(&data_dir, &self.opts, &vault)?;
            Ok::<_, AccessError>((store, record))
        })();
        // The key is right: what fails now, another try would not change.
        let (store, record) = match opened {
            Ok(o) => o,
            Err(e) => {
                return Err(Box::new(Retry {
                    pending: None,
                    error: e,
                }));
            }
        };
        let Pending {
            settings,
            anchor,
            envelope,
            ..
        } = self;
        let trust = Trust::new(
            &data_dir,
            &data_dir.join(KEY_FILE),
            anchor,
            envelope,
            record,
        )
        .and_then(|trust| Access::open(store.clone(), vault, Some(trust), &settings));
        match trust {
            Ok(access) => Ok((store, Arc::new(access))),
            // The anchor moved into the failed trust: nothing to retry with.
            Err(e) => Err(Box::new(Retry {
                pending: None,
                error: e,
            })),
        }
    }
}
