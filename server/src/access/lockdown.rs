//! The presence lease and lockdown: leases, signed commands and enrolment updates
//! from HQ, tamper, and the data key wiped from memory while locked.
//!
//! On an enrolled unit a lock that latches (the lease and its grace ran out, HQ's lock
//! command, a tamper signal) is saved at once and then made in the TPM
//! ([`outpost_security::anchor::Anchor::lock`]): from then on the TPM share of the sealed
//! key opens on no OS, so the data key comes back only through HQ's recovery, which HQ
//! gives when it sends the fresh lease or the unlock that ends the lock. A unit that
//! never had a lease is locked too, without the TPM (it is not in the store yet).

use std::sync::Arc;
use std::time::Duration;

use outpost_security::enroll::Enrollment;
use outpost_security::lease::{CommandOutcome, LeaseError, LeaseState};
use outpost_security::seal::DataKey;
use outpost_security::vault::KeyVault;

use super::audit::open_audit;
use super::enrolled::lock;
use super::escrow_link::EscrowAnswer;
use super::{Access, AccessError, TREE, Unlocked};

/// Why a lease, an HQ command or an enrolment update was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// The unit is not enrolled: there is no HQ key to check against.
    #[error(
        "the presence lease is off: this unit is not enrolled (`[security] enrollment` or `outpost enroll` with HQ's bundle)"
    )]
    Off,
    /// Bad signature, wrong device, replayed counter, malformed bytes...
    #[error("{0}")]
    Refused(#[from] LeaseError),
    /// An enrolment update was refused.
    #[error("{0}")]
    Enrollment(#[from] outpost_security::enroll::EnrollError),
    /// The new state could not be saved, or the data key could not be brought back.
    #[error("{0}")]
    Store(AccessError),
}

/// The unit may not transact now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Locked {
    /// Why, for people.
    pub reason: String,
}

/// The presence lease as status pages show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LeaseStatus {
    /// `off` (not enrolled), `active`, `grace` or `locked`.
    pub state: String,
    /// Why, for people ("Locked: tamper signal at ...").
    pub reason: String,
    /// Whether checkout and refunds are allowed.
    pub can_transact: bool,
    /// `in_memory`, or `wiped` while locked down (business data unreadable).
    pub data_key: String,
    /// How the data key is released: `tpm`, `tpm+hq`, `tpm+pin`, `tpm+(hq|pin)` on an
    /// enrolled unit (`tpm` alone is weaker and says so), `software` or `tpm (not
    /// enrolled)` otherwise.
    pub unlock_policy: String,
}

impl Access {
    /// Whether the data key is wiped from memory (lockdown).
    pub fn is_locked_down(&self) -> bool {
        lock(&self.unlocked).is_none()
    }

    /// Make the key follow the guard in the locking direction: latch a lock that expiry
    /// caused (saved at once, so neither a restart nor a clock set back revives the
    /// lease), then wipe the key when the guard says locked. Called on every transact
    /// check and periodically (a lease expires by time alone). Cheap when nothing
    /// changes. Unlocking needs HQ (a lease or an unlock, then its recovery): see
    /// [`Access::accept_lease`].
    pub fn enforce_lockdown(&self) {
        // A recovery holds this across its exchange with HQ and decides itself.
        let Ok(_one) = self.transition.try_lock() else {
            return;
        };
        self.enforce_held();
    }

    /// [`Access::enforce_lockdown`] with `transition` held.
    fn enforce_held(&self) {
        let Some(g) = &self.guard else { return };
        let latched = lock(g).latch_expiry();
        if latched && let Err(e) = self.persist_guard(true) {
            tracing::error!(error = %e, "Failed to save the lock the lease's expiry caused");
        }
        if !self.lease_status().can_transact && !self.is_locked_down() {
            self.wipe_key();
        }
    }

    /// Lockdown: audit it and save the lock while the key is here, lock in the TPM when
    /// the lock is latched, then drop the key, the ciphers, the audit handle and the
    /// store's decrypted data.
    fn wipe_key(&self) {
        let reason = self.lease_status().reason;
        self.audit("security", "lockdown", &reason);
        let latched = self.guard.as_ref().is_some_and(|g| lock(g).is_latched());
        if latched && let Some(trust) = &self.trust {
            if let Err(e) = self.persist_guard(true) {
                tracing::error!(error = %e, "Failed to save the lock before locking in the TPM");
            }
            match trust.lock_in_tpm() {
                Ok(count) => tracing::warn!(
                    lock_count = count,
                    "Locked in the TPM: the sealed data key opens on no OS until HQ's recovery"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "The TPM refused the lock; the key is wiped from memory anyway")
                }
            }
        }
        let mut unlocked = lock(&self.unlocked);
        if let Some(mut u) = unlocked.take() {
            u.vault.wipe();
        }
        self.store.lock();
        drop(unlocked);
        tracing::warn!(reason = %reason, "Locked down: the data key is wiped from memory");
    }

    /// Puts `key` back: the vault, the credential cipher, the audit log, the store.
    fn install_key(&self, key: DataKey) -> Result<(), AccessError> {
        let vault = KeyVault::new(key);
        let cipher = vault
            .cipher(&format!("tree:{TREE}"))
            .map_err(|e| AccessError::Crypto(e.to_string()))?;
        let audit = open_audit(&self.audit_tree, &vault)?;
        let mut unlocked = lock(&self.unlocked);
        self.store.unlock(&vault)?;
        *unlocked = Some(Unlocked {
            vault,
            cipher,
            audit,
        });
        Ok(())
    }

    /// Brings the data key back through HQ's recovery, seals it again to the TPM's
    /// current lock when the old share died, applies what HQ sent along, and saves.
    /// Called with `transition` held.
    async fn recover_key(&self) -> Result<(), AccessError> {
        let trust = self.trust.as_ref().ok_or(AccessError::Locked)?;
        // A lock that never reached the TPM (no lease yet) on a unit whose TPM alone opens
        // its key: open it here, as at start.
        if let Some(key) = trust.reopen_tpm_only()? {
            self.install_key(key)?;
            self.persist_guard(true)?;
            tracing::info!("Unlocked: the data key is unsealed again");
            self.restore_spooled();
            self.audit("security", "unlocked", "data key unsealed");
            return Ok(());
        }
        let link = self.escrow.get().ok_or_else(|| {
            AccessError::NeedsFactor(
                "the data key comes back only through HQ's recovery, and this unit has no HQ link (sync.hq_url)"
                    .into(),
            )
        })?;
        let (key, answer) = trust.recover(link.as_ref()).await?;
        trust.reseal_if_locked(&key)?;
        self.install_key(key)?;
        if let Some(g) = &self.guard {
            let mut g = lock(g);
            if !answer.signed_command.is_empty() {
                match g.apply_command(&answer.signed_command) {
                    Ok(outcome) => {
                        tracing::info!(?outcome, "Applied the command HQ sent with its recovery")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Refused the command HQ sent with its recovery")
                    }
                }
            }
            if !answer.signed_lease.is_empty()
                && let Err(e) = g.accept_lease(&answer.signed_lease)
            {
                tracing::warn!(error = %e, "Refused the lease HQ sent with its recovery");
            }
        }
        self.persist_guard(true)?;
        tracing::info!("Unlocked: HQ's recovery brought the data key back");
        self.restore_spooled();
        self.audit("security", "unlocked", "data key recovered from HQ");
        Ok(())
    }

    /// After the unit opened through HQ's recovery at start (it was locked in its TPM):
    /// seal the key to the current lock, and apply the lease or unlock HQ sent along.
    pub(super) async fn after_recovery(
        &self,
        key: &DataKey,
        answer: EscrowAnswer,
    ) -> Result<(), AccessError> {
        let _one = self.transition.lock().await;
        let trust = self.trust.as_ref().ok_or(AccessError::Locked)?;
        trust.reseal_if_locked(key)?;
        if let Some(g) = &self.guard {
            let mut g = lock(g);
            if !answer.signed_command.is_empty()
                && let Err(e) = g.apply_command(&answer.signed_command)
            {
                tracing::warn!(error = %e, "Refused the command HQ sent with its recovery");
            }
            if !answer.signed_lease.is_empty()
                && let Err(e) = g.accept_lease(&answer.signed_lease)
            {
                tracing::warn!(error = %e, "Refused the lease HQ sent with its recovery");
            }
        }
        self.persist_guard(true)?;
        self.audit(
            "security",
            "unlocked",
            "data key recovered from HQ at start",
        );
        Ok(())
    }

    /// The presence lease's state.
    pub fn lease_status(&self) -> LeaseStatus {
        let data_key = if self.is_locked_down() {
            "wiped"
        } else {
            "in_memory"
        }
        .to_owned();
        let unlock_policy = match &self.trust {
            Some(t) => t.enrollment().unlock.describe().to_owned(),
            None => "not enrolled".to_owned(),
        };
        match &self.guard {
            None => LeaseStatus {
                state: "off".into(),
                reason: "this unit is not enrolled with HQ: the presence lease is off".into(),
                can_transact: true,
                data_key,
                unlock_policy,
            },
            Some(g) => {
                let state = lock(g).state();
                LeaseStatus {
                    state: state.name().into(),
                    reason: state.reason(),
                    can_transact: state.can_transact(),
                    data_key,
                    unlock_policy,
                }
            }
        }
    }

    /// `Err` with the reason when the device is locked and must not transact.
    pub fn check_transact(&self) -> Result<(), Locked> {
        self.enforce_lockdown();
        let s = self.lease_status();
        if s.can_transact && !self.is_locked_down() {
            Ok(())
        } else if s.can_transact {
            Err(Locked {
                reason: "the data key is not back yet: waiting for HQ's recovery".into(),
            })
        } else {
            Err(Locked { reason: s.reason })
        }
    }

    /// Spawn the task that applies lockdown on time alone (a lease expiring past its
    /// grace), checking every `every`, and saves the trusted time about once a minute
    /// (so a restart cannot start from an older time).
    pub fn spawn_lockdown_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let per_save = (60_000 / every.as_millis().max(1)).max(1);
            let mut ticks: u128 = 0;
            loop {
                tick.tick().await;
                let Some(s) = me.upgrade() else { break };
                s.enforce_lockdown();
                ticks += 1;
                if ticks.is_multiple_of(per_save)
                    && s.trust.is_some()
                    && !s.is_locked_down()
                    && let Err(e) = s.persist_guard(false)
                {
                    tracing::warn!(error = %e, "Failed to save the trusted time");
                }
            }
        })
    }

    /// Saves the guard's state (and the trusted time) in the trust record; `decisive`
    /// moves the epoch forward. Needs the key: while locked, what changed is kept in
    /// memory and saved with the unlock.
    pub(super) fn persist_guard(&self, decisive: bool) -> Result<(), AccessError> {
        let (Some(trust), Some(g)) = (&self.trust, &self.guard) else {
            return Ok(());
        };
        let snapshot = lock(g).snapshot();
        let unlocked = lock(&self.unlocked);
        let u = unlocked.as_ref().ok_or(AccessError::Locked)?;
        trust.save(&u.vault, &snapshot, decisive)
    }

    /// Accepts a lease signed by HQ; returns the new state's name. A lease that ends a
    /// lock brings the data key back through HQ's recovery.
    pub async fn accept_lease(&self, bytes: &[u8]) -> Result<String, GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let _one = self.transition.lock().await;
        let state = lock(g).accept_lease(bytes)?;
        self.enforce_held();
        self.after_guard_change().await?;
        self.audit("hq", "lease.renew", state.name());
        Ok(state.name().into())
    }

    /// Brings the key back when the guard allows transacting again, else saves.
    async fn after_guard_change(&self) -> Result<(), GuardError> {
        if self.lease_status().can_transact && self.is_locked_down() {
            self.recover_key().await.map_err(GuardError::Store)
        } else {
            match self.persist_guard(true) {
                Ok(()) => Ok(()),
                Err(AccessError::Locked) => {
                    tracing::info!(
                        "Locked: the change is kept in memory and saved with the unlock"
                    );
                    Ok(())
                }
                Err(e) => Err(GuardError::Store(e)),
            }
        }
    }

    /// A tamper signal (a door or case sensor opened): lock at once. The lock is hard:
    /// a fresh lease does not lift it, only HQ's signed unlock. Saved and made in the TPM
    /// before the key is dropped, so a restart stays locked.
    pub async fn tamper(&self, detail: &str) -> Result<(), GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        lock(g).tamper(detail);
        self.audit("device", "security.tamper", detail);
        tracing::error!(detail, "Tamper signal: locking the device");
        // Taken for sure (not `try_lock`): a tamper lock must not wait for a later check.
        let _one = self.transition.lock().await;
        self.enforce_held();
        Ok(())
    }

    /// Applies a signed lock / unlock / wipe. A wipe crypto-erases the sealed key; an
    /// unlock brings the data key back through HQ's recovery.
    pub async fn apply_command(&self, bytes: &[u8]) -> Result<String, GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let _one = self.transition.lock().await;
        let outcome = lock(g).apply_command(bytes)?;
        let result = match outcome {
            CommandOutcome::Locked => "locked".to_owned(),
            CommandOutcome::Unlocked(state) => format!("unlocked: {}", state.name()),
            CommandOutcome::Wipe => {
                if let Some(trust) = &self.trust {
                    trust.crypto_erase().map_err(GuardError::Store)?;
                }
                "wiped: the sealed data key is destroyed and the device is locked".to_owned()
            }
            other => format!("applied: {other:?}"),
        };
        self.audit("hq", "security.command", &result);
        // A lock or wipe takes the key out of memory now; an unlock brings it back.
        self.enforce_held();
        self.after_guard_change().await?;
        Ok(result)
    }

    /// Applies a newer enrolment bundle HQ signed with the key this unit trusts: a new
    /// HQ key, lease policy or escrow keys.
    pub async fn apply_enrollment(&self, json: &[u8]) -> Result<String, GuardError> {
        let trust = self.trust.as_ref().ok_or(GuardError::Off)?;
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let _one = self.transition.lock().await;
        let next = Enrollment::verify_update(json, &trust.enrollment())?;
        let unlocked = lock(&self.unlocked);
        let u = unlocked
            .as_ref()
            .ok_or(GuardError::Store(AccessError::Locked))?;
        let snapshot = lock(g).snapshot();
        trust
            .set_enrollment(
                &u.vault,
                next.clone(),
                String::from_utf8_lossy(json).into_owned(),
                &snapshot,
            )
            .map_err(GuardError::Store)?;
        drop(unlocked);
        let guard = trust.guard().map_err(GuardError::Store)?;
        *lock(g) = guard;
        let result = format!("enrolment updated (issued at {})", next.issued_at);
        self.audit("hq", "security.enrollment", &result);
        Ok(result)
    }

    /// Which lease state the guard is in (for the event watcher's alerts).
    pub fn lease_state(&self) -> Option<LeaseState> {
        self.guard.as_ref().map(|g| lock(g).state())
    }
}
