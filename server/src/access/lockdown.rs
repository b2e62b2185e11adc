//! The presence lease and lockdown: leases and signed commands from HQ, tamper, and
//! the data key wiped from memory while locked and unsealed again after an unlock.

use std::sync::Arc;
use std::time::Duration;

use outpost_security::lease::{CommandOutcome, LeaseError, LeaseGuard};
use outpost_security::vault::KeyVault;

use super::audit::open_audit;
use super::{Access, AccessError, GUARD_KEY, TREE, Unlocked};

/// Why a lease or HQ command was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// No HQ key is configured.
    #[error("the presence lease is off: no [security] hq_public_key configured")]
    Off,
    /// Bad signature, wrong device, replayed counter, malformed bytes...
    #[error("{0}")]
    Refused(#[from] LeaseError),
    /// The new state could not be saved (nothing was acknowledged).
    #[error("{0}")]
    Store(AccessError),
}

/// The presence lease as status pages show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct LeaseStatus {
    /// `off` (no HQ key configured), `active`, `grace` or `locked`.
    pub state: String,
    /// Why, for people ("Locked: tamper signal at ...").
    pub reason: String,
    /// Whether checkout and refunds are allowed.
    pub can_transact: bool,
    /// `in_memory`, or `wiped` while locked down (business data unreadable).
    pub data_key: String,
}

impl Access {
    /// Whether the data key is wiped from memory (lockdown).
    pub fn is_locked_down(&self) -> bool {
        self.unlocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    /// Make the key's presence follow the guard: wipe it when the guard says locked,
    /// unseal it again when the guard allows transacting. Called after every guard
    /// change, on every transact check, and periodically (a lease expires by time
    /// alone). Cheap when nothing changes.
    pub fn enforce_lockdown(&self) {
        let _one = self.transition.lock().unwrap_or_else(|p| p.into_inner());
        let can = self.lease_status().can_transact;
        let locked = self.is_locked_down();
        if !can && !locked {
            self.wipe_key();
        } else if can
            && locked
            && let Err(e) = self.restore_key()
        {
            tracing::error!(error = %e, "Failed to unseal the data key after an unlock; the device stays locked");
        }
    }

    /// Lockdown: audit it while the key is here, then drop the key, the ciphers,
    /// the audit handle and the store's decrypted data.
    fn wipe_key(&self) {
        let reason = self.lease_status().reason;
        self.audit("security", "lockdown", &reason);
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut u) = unlocked.take() {
            u.vault.wipe();
        }
        self.store.lock();
        drop(unlocked);
        tracing::warn!(reason = %reason, "Locked down: the data key is wiped from memory");
    }

    /// Unseal the data key again and hand it to the store.
    fn restore_key(&self) -> Result<(), AccessError> {
        let key = {
            let mut sealer = self.sealer.lock().unwrap_or_else(|p| p.into_inner());
            self.key_file.unseal(sealer.as_mut())?
        };
        let vault = KeyVault::new(key);
        let cipher = vault
            .cipher(&format!("tree:{TREE}"))
            .map_err(|e| AccessError::Crypto(e.to_string()))?;
        let audit = open_audit(&self.audit_tree, &vault)?;
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        self.store.unlock(&vault)?;
        *unlocked = Some(Unlocked {
            vault,
            cipher,
            audit,
        });
        drop(unlocked);
        tracing::info!("Unlocked: the data key is unsealed again");
        self.restore_spooled();
        self.audit("security", "unlocked", "data key unsealed");
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
        match &self.guard {
            None => LeaseStatus {
                state: "off".into(),
                reason:
                    "no HQ key configured ([security] hq_public_key): the presence lease is off"
                        .into(),
                can_transact: true,
                data_key,
            },
            Some(g) => {
                let g = g.lock().unwrap_or_else(|p| p.into_inner());
                let state = g.state();
                LeaseStatus {
                    state: state.name().into(),
                    reason: state.reason(),
                    can_transact: state.can_transact(),
                    data_key,
                }
            }
        }
    }

    /// `Err(reason)` when the device is locked and must not transact.
    pub fn check_transact(&self) -> Result<(), String> {
        self.enforce_lockdown();
        let s = self.lease_status();
        if s.can_transact {
            Ok(())
        } else {
            Err(s.reason)
        }
    }

    /// Spawn the task that applies lockdown on time alone (a lease expiring past its
    /// grace), checking every `every`.
    pub fn spawn_lockdown_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match me.upgrade() {
                    Some(s) => s.enforce_lockdown(),
                    None => break,
                }
            }
        })
    }

    /// Save the guard snapshot. While locked down the key is unsealed just for this
    /// one write and zeroized again: a lock, wipe or refused unlock arriving while
    /// locked must still be remembered across a restart.
    fn persist_guard(&self, guard: &LeaseGuard) -> Result<(), AccessError> {
        if !self.is_locked_down() {
            return self.save(GUARD_KEY, &guard.snapshot());
        }
        let key = {
            let mut sealer = self.sealer.lock().unwrap_or_else(|p| p.into_inner());
            self.key_file.unseal(sealer.as_mut())?
        };
        let vault = KeyVault::new(key);
        let cipher = vault
            .cipher(&format!("tree:{TREE}"))
            .map_err(|e| AccessError::Crypto(e.to_string()))?;
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&guard.snapshot())
                .map_err(|e| AccessError::Crypto(e.to_string()))?,
        );
        self.tree
            .insert(GUARD_KEY, cipher.seal_record(TREE, GUARD_KEY, &json))?;
        self.tree.flush()?;
        Ok(())
    }

    /// Accepts a lease signed by HQ; returns the new state's name.
    pub fn accept_lease(&self, bytes: &[u8]) -> Result<String, GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        let state = g.accept_lease(bytes)?;
        drop(g);
        // A fresh lease may end a lockdown: the key is needed to save the guard.
        self.enforce_lockdown();
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let g = g.lock().unwrap_or_else(|p| p.into_inner());
        self.persist_guard(&g).map_err(GuardError::Store)?;
        drop(g);
        self.audit("hq", "lease.renew", state.name());
        Ok(state.name().into())
    }

    /// A tamper signal (a door or case sensor opened): lock at once. The lock is hard:
    /// a fresh lease does not lift it, only HQ's signed unlock. Saved before the key is
    /// dropped, so a restart stays locked.
    pub fn tamper(&self, detail: &str) -> Result<(), GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        {
            let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
            g.tamper(detail);
            self.persist_guard(&g).map_err(GuardError::Store)?;
        }
        self.audit("device", "security.tamper", detail);
        tracing::error!(detail, "Tamper signal: locking the device");
        self.enforce_lockdown();
        Ok(())
    }

    /// Applies a signed lock / unlock / wipe; a wipe crypto-erases the sealed key.
    pub fn apply_command(&self, bytes: &[u8]) -> Result<String, GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = g.apply_command(bytes)?;
        drop(g);
        if matches!(outcome, CommandOutcome::Unlocked(_)) {
            // The key is needed to save the guard: unseal it first.
            self.enforce_lockdown();
        }
        {
            let g = self.guard.as_ref().ok_or(GuardError::Off)?;
            let g = g.lock().unwrap_or_else(|p| p.into_inner());
            self.persist_guard(&g).map_err(GuardError::Store)?;
        }
        let result = match outcome {
            CommandOutcome::Locked => "locked".to_owned(),
            CommandOutcome::Unlocked(state) => format!("unlocked: {}", state.name()),
            CommandOutcome::Wipe => {
                let mut sealer = self.sealer.lock().unwrap_or_else(|p| p.into_inner());
                self.key_file
                    .crypto_erase(sealer.as_mut())
                    .map_err(|e| GuardError::Store(e.into()))?;
                "wiped: the sealed data key is destroyed and the device is locked".to_owned()
            }
            other => format!("applied: {other:?}"),
        };
        self.audit("hq", "security.command", &result);
        // A lock or wipe takes the key out of memory now.
        self.enforce_lockdown();
        Ok(result)
    }
}
