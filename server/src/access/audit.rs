//! The hash-chained audit log, and the spool that keeps entries written while locked.
//!
//! While locked, [`Access::audit`] seals each entry to the spool and signs it with the
//! spool's [`SpoolSigner`]; the next time the key is in memory (an unlock, or the next
//! start) `Access::restore_spooled` appends the genuine ones to the chain and audits
//! what was lost (`audit.spool_loss`) and what was refused as not this unit's
//! (`audit.spool_forged`).

use outpost_security::auth::audit::{AuditEntry, AuditLog, SledAuditStore};
use outpost_security::auth::spool::{DrainReport, SpoolSigner, SpooledEntry};
use outpost_security::vault::KeyVault;
use time::OffsetDateTime;

use super::{Access, AccessError};

pub(super) fn open_audit(
    tree: &sled::Tree,
    vault: &KeyVault,
) -> Result<AuditLog<SledAuditStore>, AccessError> {
    let crypto = |e: outpost_security::vault::CryptoError| AccessError::Crypto(e.to_string());
    let audit_cipher = vault.cipher("tree:audit").map_err(crypto)?;
    Ok(AuditLog::open(
        SledAuditStore::new(tree.clone(), audit_cipher),
        &vault.subkey("audit-chain").map_err(crypto)?,
    )?)
}

/// The key that signs audit entries spooled while locked: derived from the data key
/// at open (`KeyVault::subkey("audit-spool-sign")`), then kept by the spool, alone, in
/// memory while the data key is wiped, so entries written while locked are provably
/// this unit's.
///
/// This is the one place that chooses it. To use a key sealed by the TPM with the
/// unit's identity instead (so a locked unit that restarts can still sign), return
/// `SpoolSigner::from_secret_bytes` of that key here. Nothing else changes: the spool
/// binds whichever verifying key it is given when it publishes, and drains before it
/// publishes, so entries signed by the previous key still verify.
pub(super) fn spool_signer(vault: &KeyVault) -> Result<SpoolSigner, AccessError> {
    SpoolSigner::derive(vault).map_err(|e| AccessError::Crypto(e.to_string()))
}

impl Access {
    /// [`Access::drain_spool`] after an unlock, where a failure can only be logged;
    /// counts the unlock ([`Access::unlocks`]).
    pub(super) fn restore_spooled(&self) {
        if let Err(e) = self.drain_spool() {
            tracing::error!(error = %e, "Failed to publish the keys of the spool for audit entries written while locked");
        }
        self.unlocks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the data key came back since start (unlocks). A poller compares
    /// it to see an unlock even when the lockdown before it was shorter than its poll.
    pub fn unlocks(&self) -> u64 {
        self.unlocks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends what was audited while locked (see `AuditSpool`) to the chain, with
    /// its original times, audits what could not be kept and what was refused as
    /// forged, then publishes the spool's keys. Call with the key in memory. A drain
    /// failure is logged and the rest stays spooled for the next unlock; a failure to
    /// publish is returned (without it nothing more can be spooled).
    pub(super) fn drain_spool(&self) -> Result<(), AccessError> {
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = unlocked.as_mut() else {
            return Ok(());
        };
        let spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        if !spool.needs_drain() {
            spool.publish(&u.vault)?;
            return Ok(());
        }
        let audit = &mut u.audit;
        // One flush for the batch (the drain ends with one), not one per entry: the
        // spool may hold thousands, and the key's lock is held meanwhile.
        audit.store_mut().set_flush_each(false);
        let report = spool.drain_into(&u.vault, audit);
        audit.store_mut().set_flush_each(true);
        if let Err(e) = audit.store().flush() {
            tracing::error!(error = %e, "Failed to flush the audit log");
        }
        let published = spool.publish(&u.vault);
        drop(spool);
        match report {
            Ok(r) => {
                for (action, detail) in drain_findings(&r) {
                    if let Err(e) =
                        u.audit
                            .append("security", action, &detail, OffsetDateTime::now_utc())
                    {
                        tracing::error!(error = %e, "Failed to append to the audit log");
                    }
                }
                if r.has_losses() {
                    tracing::warn!(
                        dropped = r.dropped,
                        unreadable = r.unreadable,
                        refused = r.refused,
                        "Some audit entries written while locked were lost"
                    );
                }
                if r.has_forgeries() {
                    tracing::error!(
                        forged = r.forged,
                        verifying_key_replaced = r.verifying_key_replaced,
                        "Spooled audit entries not signed by this unit were refused: someone wrote to the data dir"
                    );
                }
                if r.restored > 0 {
                    tracing::info!(
                        restored = r.restored,
                        "Audit entries written while locked are in the audit log"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Failed to restore the audit entries written while locked; they stay spooled");
            }
        }
        Ok(published?)
    }

    /// Appends to the audit log. A failure to record is logged loudly, never hidden.
    pub fn audit(&self, actor: &str, action: &str, detail: &str) {
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = unlocked.as_mut() else {
            // No key in memory: seal the entry to the spool's public key; it joins the
            // chain when the key is back.
            let entry = SpooledEntry {
                at_ms: (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
                actor: actor.to_owned(),
                action: action.to_owned(),
                detail: detail.to_owned(),
            };
            let mut spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
            match spool.push(&entry) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    action,
                    "Not recorded in the audit log: the device is locked and the spool for entries written while locked is full"
                ),
                Err(e) => {
                    tracing::error!(error = %e, action, "Failed to spool an audit entry while locked")
                }
            }
            return;
        };
        if let Err(e) = u
            .audit
            .append(actor, action, detail, OffsetDateTime::now_utc())
        {
            tracing::error!(error = %e, action, "Failed to append to the audit log");
        }
    }

    /// The audit entries after `after` (by sequence), at most `limit`.
    pub fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, AccessError> {
        use outpost_security::auth::audit::AuditStore as _;
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let log = &unlocked.as_ref().ok_or(AccessError::Locked)?.audit;
        let mut out = Vec::new();
        log.store().for_each(&mut |e| {
            if e.seq > after && out.len() < limit {
                out.push(e);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Recomputes the audit chain: the number of entries, or where it breaks.
    pub fn audit_verify(&self) -> Result<u64, AccessError> {
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        Ok(unlocked
            .as_ref()
            .ok_or(AccessError::Locked)?
            .audit
            .verify()?)
    }

    /// The hash of audit entry `seq`; `None` when the log does not reach it (it was
    /// cut). Locked: [`AccessError::Locked`].
    pub fn audit_hash_at(&self, seq: u64) -> Result<Option<String>, AccessError> {
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        Ok(unlocked
            .as_ref()
            .ok_or(AccessError::Locked)?
            .audit
            .hash_at(seq)?)
    }

    /// The last audit entry's (sequence, hash); `None` while locked or before the
    /// first entry.
    pub fn audit_head(&self) -> Option<(u64, String)> {
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        unlocked
            .as_ref()?
            .audit
            .head()
            .map(|(s, h)| (s, h.to_owned()))
    }
}

/// The audit entries a drain calls for: `audit.spool_loss` for entries lost,
/// `audit.spool_forged` for entries refused as not this unit's.
fn drain_findings(r: &DrainReport) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if r.has_losses() {
        out.push((
            "audit.spool_loss",
            format!(
                "while locked: {} entries lost (spool full), {} unreadable (tampered or sealed to another key), {} refused (a field over its limit)",
                r.dropped, r.unreadable, r.refused
            ),
        ));
    }
    if r.has_forgeries() {
        let mut detail = format!(
            "while locked: {} spooled entries refused as forged (no valid signature by this unit's spool key, or a replay)",
            r.forged
        );
        if r.verifying_key_replaced {
            detail.push_str("; the spool's verifying key on disk had been replaced");
        }
        out.push(("audit.spool_forged", detail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgeries_and_losses_each_get_their_own_entry() {
        assert!(drain_findings(&DrainReport::default()).is_empty());
        let r = DrainReport {
            forged: 2,
            ..DrainReport::default()
        };
        let found = drain_findings(&r);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "audit.spool_forged");
        assert!(
            found[0].1.contains("2 spooled entries refused"),
            "{}",
            found[0].1
        );
        let r = DrainReport {
            unreadable: 1,
            verifying_key_replaced: true,
            ..DrainReport::default()
        };
        let found = drain_findings(&r);
        let actions: Vec<&str> = found.iter().map(|f| f.0).collect();
        assert_eq!(actions, ["audit.spool_loss", "audit.spool_forged"]);
        assert!(found[1].1.contains("replaced"), "{}", found[1].1);
    }
}
