//! An enrolled unit's trust: the TPM anchor, the sealed-key envelope, the trust record
//! and the trusted clock, held together for one data dir.
//!
//! What decides the lock lives here and nowhere editable: HQ's key and the lease policy
//! come from the record (sealed under the data key, checked against the TPM's epoch
//! counter), never from the config file; the lock itself is the TPM's lock counter; time
//! is the trusted clock. See docs/security.md, "Enrolled units".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use outpost_security::anchor::Anchor;
use outpost_security::enroll::Enrollment;
use outpost_security::lease::{Clock, GuardSnapshot, LeaseGuard, SystemClock};
use outpost_security::seal::{DataKey, Envelope, SealError};
use outpost_security::trust::{TrustRecord, TrustedClock};
use outpost_security::vault::KeyVault;

use super::AccessError;
use super::escrow_link::{EscrowAnswer, EscrowLink, EscrowPurpose};

/// The file of the sealed identity secret (the device TLS key and other long-term keys
/// are encrypted under it), beside `sealed-key`.
pub const IDENTITY_FILE: &str = "identity-key";

/// Locks a std mutex, surviving a poisoned one (the state inside stays consistent:
/// every change is one assignment).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The anchor, the envelope and the record of an enrolled data dir.
pub(crate) struct Trust {
    data_dir: PathBuf,
    key_path: PathBuf,
    /// One TPM context at a time; calls take milliseconds, never held across `.await`.
    anchor: Mutex<Box<dyn Anchor>>,
    envelope: Mutex<Envelope>,
    record: Mutex<TrustRecord>,
    clock: Arc<TrustedClock>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// Holds what [`super::data_dir`] opened: checks the record against the anchor's
    /// epoch (refusing an older copy of the data dir, finishing a save a power cut
    /// interrupted) and starts the trusted clock.
    pub(super) fn new(
        data_dir: &Path,
        key_path: &Path,
        mut anchor: Box<dyn Anchor>,
        envelope: Envelope,
        record: TrustRecord,
    ) -> Result<Trust, AccessError> {
        let anchor_epoch = anchor.epoch()?;
        record.check_epoch(anchor_epoch)?;
        if record.epoch > anchor_epoch {
            anchor.advance_epoch(record.epoch)?;
        }
        let wall: Arc<dyn Clock> = Arc::new(SystemClock);
        let clock = Arc::new(TrustedClock::start(wall, record.time, anchor.clock_ms()?));
        Ok(Trust {
            data_dir: data_dir.to_owned(),
            key_path: key_path.to_owned(),
            anchor: Mutex::new(anchor),
            envelope: Mutex::new(envelope),
            record: Mutex::new(record),
            clock,
        })
    }

    /// The anchors in force.
    pub fn enrollment(&self) -> Enrollment {
        lock(&self.record).enrollment.clone()
    }

    /// The lease guard over the record's state, on the trusted clock.
    pub fn guard(&self) -> Result<LeaseGuard, AccessError> {
        let record = lock(&self.record);
        let e = &record.enrollment;
        let key = e
            .hq_key()
            .map_err(|err| AccessError::Crypto(err.to_string()))?;
        let config = e.lease.guard_config(&e.store_id, &e.unit_id);
        LeaseGuard::restore(config, key, self.clock.clone(), &record.guard)
            .map_err(|err| AccessError::Crypto(format!("lease guard state: {err}")))
    }

    /// Saves the guard's state and the trusted time. `decisive` (a lock, an unlock, a
    /// lease, a command, an enrolment update) also moves the epoch forward, record
    /// first, then the TPM, so that an older copy of the data dir is refused from now
    /// on and a power cut between the two never refuses this one.
    pub fn save(
        &self,
        vault: &KeyVault,
        guard: &GuardSnapshot,
        decisive: bool,
    ) -> Result<(), AccessError> {
        let mut anchor = lock(&self.anchor);
        let mut record = lock(&self.record);
        let mut next = record.clone();
        next.guard = guard.clone();
        next.time = self.clock.time_base(anchor.clock_ms()?);
        if decisive {
            next.epoch += 1;
        }
        next.save(&self.data_dir, vault)?;
        *record = next;
        if decisive {
            anchor.advance_epoch(record.epoch)?;
        }
        Ok(())
    }

    /// Replaces the anchors with a newer bundle HQ signed (the caller verified it).
    pub fn set_enrollment(
        &self,
        vault: &KeyVault,
        enrollment: Enrollment,
        json: String,
        guard: &GuardSnapshot,
    ) -> Result<(), AccessError> {
        {
            let mut record = lock(&self.record);
            record.enrollment = enrollment;
            record.enrollment_json = json;
        }
        self.save(vault, guard, true)
    }

    /// The lock in the TPM: every share sealed before it is dead on any OS.
    pub fn lock_in_tpm(&self) -> Result<u64, AccessError> {
        Ok(lock(&self.anchor).lock()?)
    }

    /// Whether the TPM share no longer opens (the unit was locked in its TPM since the
    /// envelope was sealed).
    pub fn is_locked_in_tpm(&self) -> Result<bool, AccessError> {
        let mut anchor = lock(&self.anchor);
        match lock(&self.envelope).open_share(anchor.as_mut()) {
            Ok(_) => Ok(false),
            Err(SealError::Locked { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The data key from the TPM alone, on a unit whose unlock policy is "tpm only" and
    /// that is not locked in its TPM; `None` otherwise (HQ's recovery is needed).
    pub fn reopen_tpm_only(&self) -> Result<Option<DataKey>, AccessError> {
        let mut anchor = lock(&self.anchor);
        let envelope = lock(&self.envelope);
        if !envelope.needs().is_tpm_only() {
            return Ok(None);
        }
        match envelope.open_share(anchor.as_mut()) {
            Ok(t) => Ok(Some(envelope.unwrap(&t, &envelope.tpm_only_share()?)?)),
            Err(SealError::Locked { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Asks HQ for the data key back (after a lock); returns it with what HQ sent along.
    pub async fn recover(
        &self,
        link: &dyn EscrowLink,
    ) -> Result<(DataKey, EscrowAnswer), AccessError> {
        let (request, pending) = lock(&self.envelope).recovery_request()?;
        let e = self.enrollment();
        let answer = link
            .exchange(&e.store_id, &e.unit_id, EscrowPurpose::Recovery, request)
            .await?;
        let key = lock(&self.envelope).finish_recovery(pending, &answer.point)?;
        Ok((key, answer))
    }

    /// A signed wipe: the sealed key (with HQ's recovery box) is destroyed and the TPM
    /// locked, so the data key exists nowhere any more and every byte of the data dir is
    /// ciphertext for good.
    pub fn crypto_erase(&self) -> Result<(), AccessError> {
        outpost_security::fsutil::destroy(&self.key_path)
            .map_err(|e| AccessError::Crypto(e.to_string()))?;
        let _ = self.lock_in_tpm()?;
        tracing::warn!(path = %self.key_path.display(), "Crypto-erased the sealed data key");
        Ok(())
    }

    /// After a recovery: a new envelope bound to the TPM's current lock, when the old one
    /// no longer opens; `false` when it still does.
    pub fn reseal_if_locked(&self, key: &DataKey) -> Result<bool, AccessError> {
        if !self.is_locked_in_tpm()? {
            return Ok(false);
        }
        let mut anchor = lock(&self.anchor);
        let mut envelope = lock(&self.envelope);
        let fresh = envelope.reseal(anchor.as_mut(), key, None)?;
        fresh.write(&self.key_path)?;
        *envelope = fresh;
        tracing::info!("Sealed the data key again, to the TPM's current lock");
        Ok(true)
    }
}
