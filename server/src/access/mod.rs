//! Access to this unit: the data key from the sealer, the presence lease and lockdown,
//! terminal tokens and staff accounts (stored encrypted in sled), login sessions, the
//! login rate limiter and the hash-chained audit log. The primitives are in the
//! `outpost-security` crate; this module holds them together for one data dir.
//!
//! [`open_data_dir`] is the one place that unseals the data key: once, before the
//! store opens; it hands the key to both the [`Store`] (encryption at rest of every
//! business value) and [`Access`]. The server calls it at start, and so do `outpost
//! demo`, `outpost import` / `export`, `outpost terminals` and `outpost users` on a
//! stopped server's data dir (sled allows one process per data dir).
//!
//! Lockdown: when the presence lease guard locks (lease expired past grace, a signed
//! lock command, tamper), [`Access::enforce_lockdown`] wipes the data key from
//! memory: the store's ciphers and decrypted caches, this layer's vault, the
//! credential cipher and the audit log handle. Business routes then answer `423
//! device_locked`. A signed unlock (or a fresh lease) unseals the key again. What is
//! audited meanwhile goes to the spool, signed by a key kept in memory for that alone
//! (see [`audit`]).
//!
//! # Layout
//! - [`open`]: opening a data dir, enrolled or not (the entry point).
//! - [`anchor`]: the trust anchor the settings name; whether a data dir is enrolled.
//! - [`legacy`]: the data key sealed by itself (units not enrolled), the sealer, and
//!   the TPM errors every sealed key shares.
//! - [`enrol`]: enrolment with HQ's bundle; the config checked against it.
//! - [`unseal`]: an enrolled unit's key: the TPM share, HQ's share or the PIN, HQ's
//!   recovery; [`unseal::Pending`] while a factor is missing.
//! - `enrolled`: the anchor, envelope, trust record and trusted clock of an open
//!   enrolled unit.
//! - [`escrow_link`]: the exchange with HQ, as a trait the `hq` layer implements.
//! - [`hq_pin`]: HQ's CA pinned in the unit's protected state, checked at start.
//! - [`lockdown`]: the presence lease, signed commands, tamper, wiping and restoring
//!   the key.
//! - [`staff`]: terminal tokens, staff accounts, logins and sessions.
//! - [`audit`]: the audit log, and the spool of entries written while locked.
//! - [`tamper`]: the tamper sensors that lock the unit.
//! - [`transport`]: which rustls configuration each port and the uplink get.
//! - [`releases`]: the release root and the anti-rollback floor the updater trusts.

pub mod anchor;
pub mod audit;
pub mod enrol;
mod enrolled;
pub mod escrow_link;
pub mod hq_pin;
pub mod legacy;
pub mod lockdown;
pub mod open;
pub mod releases;
pub mod staff;
pub mod tamper;
pub mod transport;
pub mod unseal;

pub use enrol::{enroll_data_dir, enroll_data_dir_with_ciphers};
pub use legacy::ForeignTpm;
pub use lockdown::{GuardError, LeaseStatus};
pub use open::{open_data_dir, unseal_data_dir};
pub use unseal::Opening;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use ed25519_dalek::VerifyingKey;
use outpost_security::auth::AuthError;
use outpost_security::auth::audit::{AuditLog, SledAuditStore};
use outpost_security::auth::password::{PasswordParams, UserDirectory};
use outpost_security::auth::ratelimit::LoginRateLimiter;
use outpost_security::auth::roles::Principal;
use outpost_security::auth::spool::AuditSpool;
use outpost_security::auth::token::TerminalTokens;
use outpost_security::lease::LeaseGuard;
use outpost_security::seal::SealError;
use outpost_security::vault::{Cipher, KeyVault};
use time::OffsetDateTime;

use crate::store::{Store, StoreError};
use audit::{open_audit, spool_signer};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "outpost_session";

const TREE: &str = "security";
const TERMINALS_KEY: &[u8] = b"terminals";
const USERS_KEY: &[u8] = b"users";
/// The tree of audit entries written while locked.
const SPOOL_TREE: &str = "audit-spool";
/// Most audit entries kept while locked (a thief trying logins for days fills it;
/// what is past it is counted and reported when the key is back).
const SPOOL_MAX: usize = 10_000;
/// Most keys (username and address pairs, and addresses) the login throttle
/// remembers (a few MB at most).
const LOGIN_THROTTLE_KEYS: usize = 10_000;
/// Most live sessions; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 10_000;

/// Why the security layer failed to open or to save.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
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
    /// An enrolled unit that needs a second factor (or HQ's recovery) before its data
    /// key opens; the offline commands cannot wait for it.
    #[error(
        "this unit is locked: {0}. The offline commands cannot wait for that: start the server, which asks HQ and takes the PIN at POST /api/v1/security/unlock, and manage the unit through its API"
    )]
    NeedsFactor(String),
    /// This TPM holds an enrolment, but the data dir is not enrolled.
    #[error(
        "this unit's TPM was enrolled, but the data dir {0} is not (its enrolment was removed, or this is another data dir): a unit that was enrolled never runs unenrolled. Enrol it again with HQ's bundle (`outpost enroll`), or clear the TPM to start from scratch"
    )]
    EnrolledTpm(String),
    /// The data dir is enrolled but the TPM holds no enrolment.
    #[error(
        "the data dir {0} is enrolled, but this TPM holds no enrolment (another machine, or a cleared TPM): its data key cannot open here. Nothing was changed"
    )]
    AnchorNotProvisioned(String),
    /// The data dir is enrolled but its trust record is gone.
    #[error(
        "the data dir {0} is enrolled but its trust record (or the public copy of its bundle) is missing: it was deleted, which would undo what decides the lock, so the unit refuses to start. Restore it from a backup of this data dir, or have HQ re-enrol the unit"
    )]
    TrustMissing(String),
    /// The trust record failed (unreadable, or older than the TPM).
    #[error(transparent)]
    Trust(#[from] outpost_security::trust::TrustError),
    /// A bundle was refused.
    #[error(transparent)]
    Enroll(#[from] outpost_security::enroll::EnrollError),
    /// The config names other anchors than the ones the unit is enrolled with.
    #[error(
        "{field}: {detail}. Nothing was changed; what decides the lock comes from the enrolment, and only an update HQ signs changes it"
    )]
    ConfigDisagrees {
        /// The setting.
        field: &'static str,
        /// How it disagrees.
        detail: String,
    },
    /// The exchange with HQ failed.
    #[error(transparent)]
    Escrow(#[from] escrow_link::EscrowLinkError),
}

/// What exists only while the data key is in memory.
struct Unlocked {
    vault: KeyVault,
    cipher: Cipher,
    audit: AuditLog<SledAuditStore>,
}

struct Session {
    principal: Principal,
    expires: Instant,
    created: Instant,
}

/// Credentials, sessions and the audit log of one data dir.
pub struct Access {
    tree: sled::Tree,
    audit_tree: sled::Tree,
    /// Audit entries written while locked, sealed to a public key and signed by the
    /// spool's signer, which it keeps while the data key is wiped (locked after
    /// `unlocked`, never before it).
    spool: Mutex<AuditSpool>,
    /// Unlocks since start (the key back and the spool restored): lets a poller that
    /// missed a short lockdown still see that one happened.
    unlocks: std::sync::atomic::AtomicU64,
    store: Arc<Store>,
    /// `None` while locked down: the key, the credential cipher and the audit log
    /// are gone from memory. A std mutex: held for short, non-async sections only.
    unlocked: Mutex<Option<Unlocked>>,
    terminals: RwLock<TerminalTokens>,
    users: RwLock<UserDirectory>,
    sessions: Mutex<HashMap<String, Session>>,
    /// The login throttle; shared with the login attempts in flight, which give
    /// their slot back when dropped before their password was checked.
    limiter: Arc<LoginRateLimiter>,
    /// How many argon2 runs at once, and how many logins may wait for one.
    login_gate: staff::LoginGate,
    session_ttl: Duration,
    /// The presence lease, on enrolled units (`None`: the lease is off).
    guard: Option<Mutex<LeaseGuard>>,
    /// What decides the lock on an enrolled unit: the TPM anchor, the sealed-key
    /// envelope, the trust record, the trusted clock.
    trust: Option<enrolled::Trust>,
    /// HQ's side of the escrow exchange (recovery after a lock), set once the HQ link
    /// exists.
    escrow: std::sync::OnceLock<Arc<dyn escrow_link::EscrowLink>>,
    /// Serializes lockdown and unlock, so two callers never wipe or unseal at once. An
    /// async mutex: a recovery holds it across its exchange with HQ.
    transition: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").finish_non_exhaustive()
    }
}

impl Access {
    /// The HQ link a lock's recovery goes through (set once, by the server).
    pub fn set_escrow_link(&self, link: Arc<dyn escrow_link::EscrowLink>) {
        let _ = self.escrow.set(link);
    }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl Access {
    /// Loads the credentials and the audit log with the data key in `vault` (see
    /// [`open_data_dir`]); locks down at once when the restored guard is locked.
    fn open(
        store: Arc<Store>,
        vault: KeyVault,
        trust: Option<enrolled::Trust>,
        settings: &crate::config::Settings,
    ) -> Result<Access, AccessError> {
        let settings = &settings.security;
        let db = store.db();
        let crypto = |e: outpost_security::vault::CryptoError| AccessError::Crypto(e.to_string());
        let cipher = vault.cipher(&format!("tree:{TREE}")).map_err(crypto)?;
        let tree = db.open_tree(TREE)?;
        let load = |key: &[u8]| -> Result<Option<Vec<u8>>, AccessError> {
            match tree.get(key)? {
                None => Ok(None),
                Some(v) => Ok(Some(
                    cipher
                        .open_record(TREE, key, &v)
                        .map_err(|e| {
                            AccessError::Crypto(format!(
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
                .map_err(|e| AccessError::Crypto(format!("terminals record: {e}")))?,
            None => TerminalTokens::new(),
        };
        let params = if settings.password_hashing == "fast" {
            PasswordParams::FAST
        } else {
            PasswordParams::PRODUCTION
        };
        let users: UserDirectory = match load(USERS_KEY)? {
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| AccessError::Crypto(format!("users record: {e}")))?,
            None => UserDirectory::new(params),
        };
        let guard = trust
            .as_ref()
            .map(|t| t.guard())
            .transpose()?
            .map(Mutex::new);
        let audit_tree = db.open_tree("audit")?;
        let audit = open_audit(&audit_tree, &vault)?;
        let spool = AuditSpool::new(db.open_tree(SPOOL_TREE)?, SPOOL_MAX, spool_signer(&vault)?);
        let security = Access {
            tree,
            audit_tree,
            spool: Mutex::new(spool),
            unlocks: std::sync::atomic::AtomicU64::new(0),
            store: store.clone(),
            unlocked: Mutex::new(Some(Unlocked {
                vault,
                cipher,
                audit,
            })),
            terminals: RwLock::new(terminals),
            users: RwLock::new(users),
            sessions: Mutex::new(HashMap::new()),
            limiter: Arc::new(
                LoginRateLimiter::new(
                    settings.login_max_failures,
                    Duration::from_secs(settings.login_window_secs),
                    LOGIN_THROTTLE_KEYS,
                )
                .with_source_limit(settings.login_max_failures_per_source),
            ),
            login_gate: staff::LoginGate::new(
                settings.login_hash_permits(),
                settings.login_hash_queue as usize,
            ),
            session_ttl: Duration::from_secs(settings.session_ttl_secs),
            guard,
            trust,
            escrow: std::sync::OnceLock::new(),
            transition: tokio::sync::Mutex::new(()),
        };
        // Drain before publishing: entries spooled under a previous signer verify
        // against the key bound then.
        security.drain_spool()?;
        Ok(security)
    }

    /// The HQ public key this unit trusts (leases, signed commands, push tokens), from
    /// its enrolment; `None` on a unit that is not enrolled.
    pub fn hq_verifying_key(&self) -> Option<VerifyingKey> {
        self.trust
            .as_ref()
            .and_then(|t| t.enrollment().hq_key().ok())
    }

    fn save(&self, key: &[u8], value: &impl serde::Serialize) -> Result<(), AccessError> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| AccessError::Crypto(e.to_string()))?,
        );
        let sealed = {
            let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
            let u = unlocked.as_ref().ok_or(AccessError::Locked)?;
            u.cipher.seal_record(TREE, key, &json)
        };
        self.tree.insert(key, sealed)?;
        self.tree.flush()?;
        Ok(())
    }

    /// A cipher under the data key for `purpose` (e.g. `"file:mesh-identity"`), for a
    /// secret kept in a file of its own; [`AccessError::Locked`] while the key is wiped.
    pub fn cipher(&self, purpose: &str) -> Result<Cipher, AccessError> {
        let unlocked = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let u = unlocked.as_ref().ok_or(AccessError::Locked)?;
        u.vault
            .cipher(purpose)
            .map_err(|e| AccessError::Crypto(e.to_string()))
    }
}

/// The purpose of the cipher the device key is sealed with.
pub const DEVICE_KEY_PURPOSE: &str = "file:device-key";

/// The cipher the device TLS key in the data dir is sealed with: on an enrolled unit,
/// one from the identity secret its TPM seals to the boot state but not to the lock (a
/// locked unit still proves who it is to HQ, which is how it gets unlocked); on a unit
/// not enrolled, `access`'s data key (the unit must be open). A disk alone holds only
/// ciphertext either way.
pub fn device_key_cipher(
    settings: &crate::config::Settings,
    access: Option<&Access>,
) -> Result<Cipher, AccessError> {
    if anchor::is_enrolled(&settings.data_dir.join(legacy::KEY_FILE))? {
        let blob = outpost_security::fsutil::read_private(
            &settings.data_dir.join(enrolled::IDENTITY_FILE),
            4096,
        )
        .map_err(|e| AccessError::Crypto(e.to_string()))?
        .ok_or_else(|| AccessError::TrustMissing(settings.data_dir.display().to_string()))?;
        let secret = anchor::open_anchor(settings)?.unseal_identity(&blob)?;
        let vault = KeyVault::new(outpost_security::seal::DataKey::from_bytes(
            *secret.expose(),
        ));
        return vault
            .cipher(DEVICE_KEY_PURPOSE)
            .map_err(|e| AccessError::Crypto(e.to_string()));
    }
    access
        .ok_or(AccessError::Locked)?
        .cipher(DEVICE_KEY_PURPOSE)
}

/// Test fixtures: an enrolled data dir.
#[cfg(test)]
pub(crate) mod testing {
    use outpost_security::enroll::{Enrollment, LeasePolicy, SecondFactors, to_hex};
    use outpost_security::escrow::EscrowSecret;
    use outpost_security::lease::HqSigner;

    /// Settings over `dir` (software sealer, fast hashing) that enrol the unit at its
    /// first open with a bundle signed by `hq`, unlocked by the TPM alone.
    pub fn enrolled_settings(dir: &std::path::Path, hq: &HqSigner) -> crate::config::Settings {
        let mut s = crate::config::Settings {
            data_dir: dir.to_owned(),
            ..crate::config::Settings::default()
        };
        s.security.allow_software = true;
        s.security.password_hashing = "fast".into();
        let bundle = Enrollment {
            store_id: s.store.id.clone(),
            unit_id: s.sync.unit_id.clone(),
            hq_public_key: to_hex(hq.verifying_key().as_bytes()),
            escrow_share_key: Some(EscrowSecret::generate().public().to_hex()),
            escrow_recovery_key: Some(EscrowSecret::generate().public().to_hex()),
            lease: LeasePolicy::default(),
            unlock: SecondFactors::default(),
            issued_at: 1_800_000_000,
        }
        .sign(hq)
        .unwrap();
        let path = dir.join("bundle.json");
        std::fs::write(&path, bundle).unwrap();
        s.security.enrollment = Some(path);
        s
    }
}

#[cfg(all(test, not(feature = "tpm")))]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    /// Settings built in code skip the config check; the data dir still refuses.
    #[test]
    fn tpm_sealer_in_a_build_without_it_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = crate::config::Settings {
            data_dir: dir.path().to_owned(),
            ..crate::config::Settings::default()
        };
        s.security.sealer = "tpm".into();
        match open_data_dir(&s, &StoreOptions::of(&s)) {
            Err(e @ AccessError::TpmNotBuilt) => {
                assert!(e.to_string().contains("--features tpm"), "{e}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened without a TPM sealer"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
