//! The server's side of `outpost-security`: the data key from the sealer, terminal
//! tokens and staff accounts (stored encrypted in sled), login sessions, the login rate
//! limiter and the hash-chained audit log.
//!
//! [`open_data_dir`] is the one place that unseals the data key: once, before the
//! store opens; it hands the key to both the [`Store`] (encryption at rest of every
//! business value) and [`Security`]. The server calls it at start, and so do `outpost
//! demo`, `outpost import` / `export`, `outpost terminals` and `outpost users` on a
//! stopped server's data dir (sled allows one process per data dir).
//!
//! Lockdown: when the presence lease guard locks (lease expired past grace, a signed
//! lock command, tamper), [`Security::enforce_lockdown`] wipes the data key from
//! memory: the store's ciphers and decrypted caches, this layer's vault, the
//! credential cipher and the audit log handle. Business routes then answer `423
//! device_locked`. A signed unlock (or a fresh lease) unseals the key again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use outpost_security::auth::AuthError;
use outpost_security::auth::audit::{AuditEntry, AuditLog, SledAuditStore};
use outpost_security::auth::password::{PasswordParams, UserDirectory, UserRecord};
use outpost_security::auth::ratelimit::LoginRateLimiter;
use outpost_security::auth::roles::{Principal, Role};
use outpost_security::auth::spool::{AuditSpool, SpooledEntry};
use outpost_security::auth::token::{TerminalRecord, TerminalTokens};
use outpost_security::lease::{
    CommandOutcome, GuardConfig, GuardSnapshot, LeaseError, LeaseGuard, SystemClock, parse_hq_key,
};
use outpost_security::seal::{
    KeyOrigin, SealError, SealedKeyFile, Sealer, SealerKind, SoftwareSealer,
};
use outpost_security::vault::{Cipher, KeyVault};
use secrecy::SecretString;
use time::OffsetDateTime;

use crate::store::{Store, StoreError, StoreOptions};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "outpost_session";

const TREE: &str = "security";
const TERMINALS_KEY: &[u8] = b"terminals";
const USERS_KEY: &[u8] = b"users";
const GUARD_KEY: &[u8] = b"lease-guard";
/// The tree of audit entries written while locked.
const SPOOL_TREE: &str = "audit-spool";
/// Most audit entries kept while locked (a thief trying logins for days fills it;
/// what is past it is counted and reported when the key is back).
const SPOOL_MAX: usize = 10_000;
/// Most live sessions; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 10_000;

/// Why the security layer failed to open or to save.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The data key could not be unsealed or created. Transparent: every
    /// [`SealError`] already says that it is about the sealed key, and a prefix here
    /// would print the message twice in an error chain.
    #[error(transparent)]
    Seal(#[from] outpost_security::seal::SealError),
    /// Key derivation or decryption failed.
    #[error("security store: {0}")]
    Crypto(String),
    /// sled failed.
    #[error("security store: {0}")]
    Sled(#[from] sled::Error),
    /// The audit log failed.
    #[error("audit log: {0}")]
    Audit(#[from] outpost_security::auth::audit::AuditError),
    /// A credential operation was refused.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The store did not open (or refused the key).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The data dir holds encrypted data but its sealed key is gone.
    #[error(
        "the data dir is encrypted but its sealed data key {0} is missing: restore it (and the sealer's key) from the backup of this data dir; no new key was made over the data"
    )]
    KeyMissing(String),
    /// The device is locked: the key is wiped, nothing can be saved.
    #[error("the device is locked: the data key is not in memory")]
    Locked,
    /// The change would leave no enabled admin account, so nobody could manage staff
    /// accounts or terminals any more.
    #[error(
        "{0} is the last enabled admin: give another account the admin role first, or nobody could manage accounts and terminals"
    )]
    LastAdmin(String),
    /// `sealer = "tpm"` in a build without the `tpm` feature (settings built in code
    /// skip the config check that normally catches this).
    #[error(
        "sealer = \"tpm\" is not in this build: rebuild outpost with `--features tpm` (needs libtss2-dev)"
    )]
    TpmNotBuilt,
    /// The TPM named by the TCTI does not answer.
    #[error(
        "the TPM at TCTI {tcti:?} cannot be reached; check [security] tcti (OUTPOST_TPM_TCTI), that the TPM device exists and that this user may open it. Nothing in the data dir was changed"
    )]
    TpmUnreachable {
        /// The TCTI string that failed.
        tcti: String,
        /// The connect error (the TSS response code says more).
        source: SealError,
    },
    /// The sealed key exists but this TPM will not open it: the data dir was sealed on
    /// another TPM, or the PCRs it was sealed to now hold other values.
    #[error(transparent)]
    ForeignTpm(Box<ForeignTpm>),
}

/// Why a data dir's TPM-sealed key does not open here (boxed in [`SecurityError`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "the data dir {data_dir} belongs to another TPM or another boot state: its sealed data key {key_file} does not unseal on the TPM at {tcti:?} with PCRs {pcrs:?} as they are now ({reason}). Nothing in the data dir was changed or overwritten. Start it on the machine it was sealed on, in the boot state it was sealed in (undo the firmware, boot loader or Secure Boot change), or give this machine a fresh data dir and let HQ restore it"
)]
pub struct ForeignTpm {
    /// The data dir.
    pub data_dir: String,
    /// Its sealed key.
    pub key_file: String,
    /// The TPM tried.
    pub tcti: String,
    /// The PCRs the key was sealed to.
    pub pcrs: Vec<u8>,
    /// What the TPM said (in the message, not a `source`: printed once).
    pub reason: SealError,
}

/// Unseal the data key with the configured sealer (`[security] sealer`: `tpm` or
/// `software`; see docs/security.md), then open the store with it and the security
/// layer. A sealed key that will not open (another TPM, changed PCRs, another sealer)
/// is an error that changes nothing. A data dir that already holds data under another
/// key is refused before anything is written; when the sealed key was just created for
/// such a dir it is deleted again, so no new key is left over old data.
pub fn open_data_dir(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<(Arc<Store>, Arc<Security>), SecurityError> {
    let (store, security) = open_data_dir_unenforced(settings, opts)?;
    security.enforce_lockdown();
    Ok((store, security))
}

/// [`open_data_dir`] without applying a lockdown the restored guard asks for: the
/// server finishes building (loading what it keeps in memory) and then calls
/// [`Security::enforce_lockdown`] itself before it serves.
pub fn open_data_dir_unenforced(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<(Arc<Store>, Arc<Security>), SecurityError> {
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| SecurityError::Store(StoreError::from(e)))?;
    let key_file = SealedKeyFile::new(data_dir.join("sealed-key"));
    let mut sealer = open_sealer(settings, &key_file)?;
    let (key, origin) = key_file
        .load_or_create(sealer.as_mut())
        .map_err(|e| unseal_error(settings, &key_file, e))?;
    let vault = KeyVault::new(key);
    let store = match Store::open(data_dir, opts, &vault) {
        Ok(store) => store,
        Err(StoreError::WrongKey) if origin == KeyOrigin::Created => {
            if let Err(e) = std::fs::remove_file(key_file.path()) {
                tracing::error!(error = %e, "Failed to remove the sealed key just made for an encrypted data dir");
            }
            return Err(SecurityError::KeyMissing(
                key_file.path().display().to_string(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let security = Security::open(store.clone(), vault, sealer, key_file, settings)?;
    Ok((store, Arc::new(security)))
}

/// The configured sealer. A sealed key made by another kind of sealer is refused
/// first, from its header, so a wrong `sealer` setting writes nothing (the software
/// sealer would otherwise create its key file).
fn open_sealer(
    settings: &crate::config::Settings,
    key_file: &SealedKeyFile,
) -> Result<Box<dyn Sealer>, SecurityError> {
    let sec = &settings.security;
    let expected = match sec.sealer.as_str() {
        "tpm" => SealerKind::Tpm,
        "software" => SealerKind::Software,
        other => {
            return Err(SealError::Config(format!(
                "sealer {other:?} is unknown: \"tpm\" or \"software\""
            ))
            .into());
        }
    };
    if let Some(found) = key_file.sealed_kind()?
        && found != expected
    {
        return Err(SealError::WrongSealer { expected, found }.into());
    }
    if expected == SealerKind::Tpm {
        return tpm_sealer(sec);
    }
    Ok(Box::new(SoftwareSealer::open(
        &settings.data_dir.join("software-kek"),
        sec.allow_software,
    )?))
}

#[cfg(feature = "tpm")]
fn tpm_sealer(sec: &crate::config::SecuritySettings) -> Result<Box<dyn Sealer>, SecurityError> {
    let config = sec.tpm_config();
    tracing::info!(tcti = %config.tcti, pcrs = ?config.pcrs, "Using the TPM sealer");
    match outpost_security::seal::TpmSealer::new(config) {
        Ok(sealer) => Ok(Box::new(sealer)),
        Err(e) => Err(tpm_connect_error(sec, e)),
    }
}

#[cfg(not(feature = "tpm"))]
fn tpm_sealer(_: &crate::config::SecuritySettings) -> Result<Box<dyn Sealer>, SecurityError> {
    Err(SecurityError::TpmNotBuilt)
}

/// A failed TPM connection, with the TCTI that failed; anything else unchanged.
fn tpm_connect_error(sec: &crate::config::SecuritySettings, e: SealError) -> SecurityError {
    #[cfg(feature = "tpm")]
    if let SealError::Tpm { op: "connect", .. } = e {
        return SecurityError::TpmUnreachable {
            tcti: sec.tcti.clone(),
            source: e,
        };
    }
    let _ = sec;
    e.into()
}

/// A TPM that answers but will not open the sealed key (it belongs to another TPM,
/// or a sealed PCR changed) says so, naming the data dir.
fn unseal_error(
    settings: &crate::config::Settings,
    key_file: &SealedKeyFile,
    e: SealError,
) -> SecurityError {
    let sec = &settings.security;
    if sec.sealer != "tpm" {
        return e.into();
    }
    match e {
        SealError::WrongKey | SealError::PolicyMismatch => {
            SecurityError::ForeignTpm(Box::new(ForeignTpm {
                data_dir: settings.data_dir.display().to_string(),
                key_file: key_file.path().display().to_string(),
                tcti: sec.tcti.clone(),
                // What the blob was sealed to; the setting only applies to new keys.
                pcrs: key_file
                    .sealed_pcrs()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| sec.pcrs.clone()),
                reason: e,
            }))
        }
        e => tpm_connect_error(sec, e),
    }
}

/// What exists only while the data key is in memory.
struct Unlocked {
    vault: KeyVault,
    cipher: Cipher,
    audit: AuditLog<SledAuditStore>,
}

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
    Store(SecurityError),
}

struct Session {
    principal: Principal,
    expires: Instant,
    created: Instant,
}

/// Credentials, sessions and the audit log of one data dir.
pub struct Security {
    tree: sled::Tree,
    audit_tree: sled::Tree,
    /// Audit entries written while locked, sealed to a public key (locked after
    /// `unlocked`, never before it).
    spool: Mutex<AuditSpool>,
    store: Arc<Store>,
    /// `None` while locked down: the key, the credential cipher and the audit log
    /// are gone from memory. A std mutex: held for short, non-async sections only.
    unlocked: Mutex<Option<Unlocked>>,
    terminals: RwLock<TerminalTokens>,
    users: RwLock<UserDirectory>,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<LoginRateLimiter>,
    session_ttl: Duration,
    guard: Option<Mutex<LeaseGuard>>,
    /// The configured sealer, for unsealing again after an unlock and for a wipe.
    sealer: Mutex<Box<dyn Sealer>>,
    key_file: SealedKeyFile,
    /// Serializes lockdown and unlock, so two callers never wipe or unseal at once.
    transition: Mutex<()>,
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

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").finish_non_exhaustive()
    }
}

/// Refuses a change of accounts that leaves no enabled admin where there was one.
fn keeps_an_admin(
    before: &UserDirectory,
    after: &UserDirectory,
    username: &str,
) -> Result<(), SecurityError> {
    if before.enabled_admins() > 0 && after.enabled_admins() == 0 {
        return Err(SecurityError::LastAdmin(username.to_owned()));
    }
    Ok(())
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn open_audit(
    tree: &sled::Tree,
    vault: &KeyVault,
) -> Result<AuditLog<SledAuditStore>, SecurityError> {
    let crypto = |e: outpost_security::vault::CryptoError| SecurityError::Crypto(e.to_string());
    let audit_cipher = vault.cipher("tree:audit").map_err(crypto)?;
    Ok(AuditLog::open(
        SledAuditStore::new(tree.clone(), audit_cipher),
        &vault.subkey("audit-chain").map_err(crypto)?,
    )?)
}

impl Security {
    /// Loads the credentials and the audit log with the data key in `vault` (see
    /// [`open_data_dir`]); locks down at once when the restored guard is locked.
    fn open(
        store: Arc<Store>,
        vault: KeyVault,
        sealer: Box<dyn Sealer>,
        key_file: SealedKeyFile,
        settings: &crate::config::Settings,
    ) -> Result<Security, SecurityError> {
        let (all, settings) = (settings, &settings.security);
        let db = store.db();
        let crypto = |e: outpost_security::vault::CryptoError| SecurityError::Crypto(e.to_string());
        let cipher = vault.cipher(&format!("tree:{TREE}")).map_err(crypto)?;
        let tree = db.open_tree(TREE)?;
        let load = |key: &[u8]| -> Result<Option<Vec<u8>>, SecurityError> {
            match tree.get(key)? {
                None => Ok(None),
                Some(v) => Ok(Some(
                    cipher
                        .open_record(TREE, key, &v)
                        .map_err(|e| {
                            SecurityError::Crypto(format!(
                                "{} does not decrypt: {e}",
                                String::from_utf8_lossy(key)
                            ))
                        })?
                        .to_vec(),
                )),
            }
        };
        let terminals: TerminalTokens = match load(TERMINALS_KEY)? {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| SecurityError::Crypto(format!("terminals record: {e}")))?,
            None => TerminalTokens::new(),
        };
        let params = if settings.password_hashing == "fast" {
            PasswordParams::FAST
        } else {
            PasswordParams::PRODUCTION
        };
        let users: UserDirectory = match load(USERS_KEY)? {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| SecurityError::Crypto(format!("users record: {e}")))?,
            None => UserDirectory::new(params),
        };
        let guard = match settings.hq_key_bytes().map_err(SecurityError::Crypto)? {
            None => None,
            Some(bytes) => {
                let key = parse_hq_key(&bytes).map_err(|e| SecurityError::Crypto(e.to_string()))?;
                let mut config = GuardConfig::new(all.store.id.clone(), all.sync.unit_id.clone());
                config.offline_grace = time::Duration::seconds(
                    i64::try_from(settings.offline_grace_secs).unwrap_or(i64::MAX / 2),
                );
                let snapshot: GuardSnapshot = match load(GUARD_KEY)? {
                    Some(b) => serde_json::from_slice(&b)
                        .map_err(|e| SecurityError::Crypto(format!("lease guard record: {e}")))?,
                    None => GuardSnapshot::default(),
                };
                let guard =
                    LeaseGuard::restore(config, key, std::sync::Arc::new(SystemClock), &snapshot)
                        .map_err(|e| SecurityError::Crypto(format!("lease guard record: {e}")))?;
                Some(Mutex::new(guard))
            }
        };
        let audit_tree = db.open_tree("audit")?;
        let audit = open_audit(&audit_tree, &vault)?;
        let spool = AuditSpool::new(db.open_tree(SPOOL_TREE)?, SPOOL_MAX);
        spool.publish(&vault)?;
        let security = Security {
            tree,
            audit_tree,
            spool: Mutex::new(spool),
            store: store.clone(),
            unlocked: Mutex::new(Some(Unlocked {
                vault,
                cipher,
                audit,
            })),
            terminals: RwLock::new(terminals),
            users: RwLock::new(users),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(LoginRateLimiter::new(
                settings.login_max_failures,
                Duration::from_secs(settings.login_window_secs),
                10_000,
            )),
            session_ttl: Duration::from_secs(settings.session_ttl_secs),
            guard,
            sealer: Mutex::new(sealer),
            key_file,
            transition: Mutex::new(()),
        };
        security.restore_spooled();
        Ok(security)
    }

    /// Appends what was audited while locked (see [`AuditSpool`]) to the chain, with
    /// its original times, and audits what could not be kept. Call with the key in
    /// memory; a failure is logged and the rest stays spooled for the next unlock.
    fn restore_spooled(&self) {
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
    fn restore_key(&self) -> Result<(), SecurityError> {
        let key = {
            let mut sealer = self.sealer.lock().unwrap_or_else(|p| p.into_inner());
            self.key_file.unseal(sealer.as_mut())?
        };
        let vault = KeyVault::new(key);
        let cipher = vault
            .cipher(&format!("tree:{TREE}"))
            .map_err(|e| SecurityError::Crypto(e.to_string()))?;
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
    fn persist_guard(&self, guard: &LeaseGuard) -> Result<(), SecurityError> {
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
            .map_err(|e| SecurityError::Crypto(e.to_string()))?;
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&guard.snapshot())
                .map_err(|e| SecurityError::Crypto(e.to_string()))?,
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

    fn save(&self, key: &[u8], value: &impl serde::Serialize) -> Result<(), SecurityError> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| SecurityError::Crypto(e.to_string()))?,
        );
        let sealed = {
            let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
            let u = unlocked.as_ref().ok_or(SecurityError::Locked)?;
            u.cipher.seal_record(TREE, key, &json)
        };
        self.tree.insert(key, sealed)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Issues a token for terminal `name`; the token is returned once and only its
    /// hash is kept.
    pub fn add_terminal(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<(TerminalRecord, SecretString), SecurityError> {
        let mut t = self.terminals.write().unwrap_or_else(|p| p.into_inner());
        let mut next = t.clone();
        let issued = next.issue(name, now_unix())?;
        self.save(TERMINALS_KEY, &next)?;
        *t = next;
        drop(t);
        self.audit(actor, "terminal.add", &format!("terminal {name}"));
        Ok(issued)
    }

    /// Revokes terminal `name`'s token; `false` when it had none.
    pub fn revoke_terminal(&self, actor: &str, name: &str) -> Result<bool, SecurityError> {
        let mut t = self.terminals.write().unwrap_or_else(|p| p.into_inner());
        let mut next = t.clone();
        if !next.revoke(name, now_unix()) {
            return Ok(false);
        }
        self.save(TERMINALS_KEY, &next)?;
        *t = next;
        drop(t);
        self.audit(actor, "terminal.revoke", &format!("terminal {name}"));
        Ok(true)
    }

    /// Every terminal token ever issued (hashes only), revoked ones included.
    pub fn terminals(&self) -> Vec<TerminalRecord> {
        let t = self.terminals.read().unwrap_or_else(|p| p.into_inner());
        t.all().cloned().collect()
    }

    /// Adds or replaces a staff account; `true` when it is new. Replacing one (new
    /// password, other roles, re-enabled) ends its open sessions, so narrowed roles
    /// apply at once. Refused when it would leave no enabled admin.
    pub fn set_user(
        &self,
        actor: &str,
        username: &str,
        password: &SecretString,
        roles: Vec<Role>,
    ) -> Result<bool, SecurityError> {
        let mut u = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut next = u.clone();
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let detail = format!("user {username} roles {}", names.join("+"));
        let created = next.get(username).is_none();
        next.set_user(username, password, roles)?;
        keeps_an_admin(&u, &next, username)?;
        self.save(USERS_KEY, &next)?;
        *u = next;
        drop(u);
        if !created {
            self.end_sessions_of(username);
        }
        self.audit(actor, "user.set", &detail);
        Ok(created)
    }

    /// Disables a staff account and ends its sessions; `false` when there is no such
    /// account. Refused when it would leave no enabled admin. The record stays (the
    /// audit log names it); setting a new password enables it again.
    pub fn disable_user(&self, actor: &str, username: &str) -> Result<bool, SecurityError> {
        let mut u = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut next = u.clone();
        if !next.disable(username) {
            return Ok(false);
        }
        keeps_an_admin(&u, &next, username)?;
        self.save(USERS_KEY, &next)?;
        *u = next;
        drop(u);
        let ended = self.end_sessions_of(username);
        self.audit(
            actor,
            "user.disable",
            &format!("user {username} ({ended} sessions ended)"),
        );
        Ok(true)
    }

    /// Every staff account (password hashes included: callers show none of them).
    pub fn users(&self) -> Vec<UserRecord> {
        let u = self.users.read().unwrap_or_else(|p| p.into_inner());
        u.all().cloned().collect()
    }

    /// Ends every session of `username` (usernames compare case-insensitively, as at
    /// login); returns how many.
    pub fn end_sessions_of(&self, username: &str) -> usize {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let before = sessions.len();
        sessions.retain(|_, s| !s.principal.name.eq_ignore_ascii_case(username));
        before - sessions.len()
    }

    /// Checks a staff login (rate-limited per username and client address) and opens
    /// a session; returns the session id (the cookie value) and who logged in.
    pub fn login(
        &self,
        username: &str,
        password: &SecretString,
        ip: IpAddr,
    ) -> Result<(String, Principal), AuthError> {
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(username, ip, Instant::now())?;
        let result = {
            let users = self.users.read().unwrap_or_else(|p| p.into_inner());
            users.login(username, password)
        };
        let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(principal) => {
                limiter.record_success(username, ip);
                drop(limiter);
                self.audit(&principal.name, "login", &format!("from {ip}"));
                Ok((self.start_session(principal.clone()), principal))
            }
            Err(e) => {
                limiter.record_failure(username, ip, Instant::now());
                drop(limiter);
                let shown: String = username.chars().take(64).collect();
                self.audit("-", "login.failed", &format!("user {shown:?} from {ip}"));
                Err(e)
            }
        }
    }

    /// Opens a session for an authenticated principal; returns its id.
    pub fn start_session(&self, principal: Principal) -> String {
        use base64::Engine as _;
        let id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                principal,
                expires: now + self.session_ttl,
                created: now,
            },
        );
        id
    }

    /// Ends a session; returns who it belonged to.
    pub fn end_session(&self, id: &str) -> Option<Principal> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(id).map(|s| s.principal)
    }

    /// Who holds the session `id`, if it is live.
    pub fn session(&self, id: &str) -> Result<Principal, AuthError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(id) {
            Some(s) if s.expires > Instant::now() => Ok(s.principal.clone()),
            Some(_) => {
                sessions.remove(id);
                Err(AuthError::Unauthorized)
            }
            None => Err(AuthError::Unauthorized),
        }
    }

    /// Who holds the terminal bearer token `token`.
    pub fn terminal(&self, token: &str) -> Result<Principal, AuthError> {
        self.terminals
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .authenticate(token)
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
    pub fn audit_entries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, SecurityError> {
        use outpost_security::auth::audit::AuditStore as _;
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let log = &unlocked.as_ref().ok_or(SecurityError::Locked)?.audit;
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
    pub fn audit_verify(&self) -> Result<u64, SecurityError> {
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        Ok(unlocked
            .as_ref()
            .ok_or(SecurityError::Locked)?
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

#[cfg(all(test, not(feature = "tpm")))]
mod tests {
    use super::*;

    /// Settings built in code skip the config check; the data dir still refuses.
    #[test]
    fn tpm_sealer_in_a_build_without_it_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::config::Settings {
            data_dir: dir.path().to_owned(),
            ..crate::config::Settings::default()
        };
        s.security.sealer = "tpm".into();
        match open_data_dir(&s, &StoreOptions::default()) {
            Err(e @ SecurityError::TpmNotBuilt) => {
                assert!(e.to_string().contains("--features tpm"), "{e}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened without a TPM sealer"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
