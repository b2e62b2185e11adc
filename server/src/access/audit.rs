//! The hash-chained audit log, and the spool that keeps entries written while locked.

use outpost_security::auth::audit::{AuditEntry, AuditLog, SledAuditStore};
use outpost_security::auth::spool::SpooledEntry;
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

impl Access {
    /// Appends what was audited while locked (see [`AuditSpool`]) to the chain, with
    /// its original times, and audits what could not be kept. Call with the key in
    /// memory; a failure is logged and the rest stays spooled for the next unlock.
    pub(super) fn restore_spooled(&self) {
        let mut unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = unlocked.as_mut() else { return };
        let spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        if spool.is_empty() && !spool.has_dropped() {
            return;
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
        drop(spool);
        match report {
            Ok(r) => {
                if r.dropped > 0 || r.unreadable > 0 || r.refused > 0 {
                    let detail = format!(
                        "while locked: {} entries lost (spool full), {} unreadable (tampered or sealed to another key), {} refused (a field over its limit)",
                        r.dropped, r.unreadable, r.refused
                    );
                    if let Err(e) = u.audit.append(
                        "security",
                        "audit.spool_loss",
                        &detail,
                        OffsetDateTime::now_utc(),
                    ) {
                        tracing::error!(error = %e, "Failed to append to the audit log");
                    }
                    tracing::warn!(
                        dropped = r.dropped,
                        unreadable = r.unreadable,
                        "Some audit entries written while locked were lost"
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

    /// The last audit entry's (sequence, hash).
    pub fn audit_head(&self) -> Option<(u64, String)> {
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        unlocked
            .as_ref()?
            .audit
            .head()
            .map(|(s, h)| (s, h.to_owned()))
    }
}
