//! The server's side of `outpost-security`: the data key from the sealer, terminal
//! tokens and staff accounts (stored encrypted in sled), login sessions, the login rate
//! limiter and the hash-chained audit log.
//!
//! [`Security::open`] is called once by the server at start, and by the `outpost
//! terminals` / `outpost users` commands on a stopped server's data dir (sled allows one
//! process per data dir).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use outpost_security::auth::AuthError;
use outpost_security::auth::audit::{AuditEntry, AuditLog, SledAuditStore};
use outpost_security::auth::password::{PasswordParams, UserDirectory};
use outpost_security::auth::ratelimit::LoginRateLimiter;
use outpost_security::auth::roles::{Principal, Role};
use outpost_security::auth::token::{TerminalRecord, TerminalTokens};
use outpost_security::lease::{
    CommandOutcome, GuardConfig, GuardSnapshot, LeaseError, LeaseGuard, SystemClock, parse_hq_key,
};
use outpost_security::seal::{SealedKeyFile, SoftwareSealer};
use outpost_security::vault::{Cipher, KeyVault};
use secrecy::SecretString;
use time::OffsetDateTime;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "outpost_session";

const TREE: &str = "security";
const TERMINALS_KEY: &[u8] = b"terminals";
const USERS_KEY: &[u8] = b"users";
const GUARD_KEY: &[u8] = b"lease-guard";
/// Most live sessions; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 10_000;

/// Why the security layer failed to open or to save.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The data key could not be unsealed or created.
    #[error("sealed data key: {0}")]
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
    cipher: Cipher,
    terminals: RwLock<TerminalTokens>,
    users: RwLock<UserDirectory>,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<LoginRateLimiter>,
    audit: Mutex<AuditLog<SledAuditStore>>,
    session_ttl: Duration,
    guard: Option<Mutex<LeaseGuard>>,
    sealer: Mutex<SoftwareSealer>,
    key_file: SealedKeyFile,
    _vault: KeyVault,
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
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security").finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl Security {
    /// Unseals (or on first start creates) the data key in `data_dir`, then loads the
    /// credentials and the audit log from `db`.
    pub fn open(
        db: &sled::Db,
        data_dir: &Path,
        settings: &crate::config::Settings,
    ) -> Result<Security, SecurityError> {
        let (all, settings) = (settings, &settings.security);
        let mut sealer =
            SoftwareSealer::open(&data_dir.join("software-kek"), settings.allow_software)?;
        let key_file = SealedKeyFile::new(data_dir.join("sealed-key"));
        let (key, _) = key_file.load_or_create(&mut sealer)?;
        let vault = KeyVault::new(key);
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
        let audit_cipher = vault.cipher("tree:audit").map_err(crypto)?;
        let audit = AuditLog::open(
            SledAuditStore::new(db.open_tree("audit")?, audit_cipher),
            &vault.subkey("audit-chain").map_err(crypto)?,
        )?;
        Ok(Security {
            tree,
            cipher,
            terminals: RwLock::new(terminals),
            users: RwLock::new(users),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(LoginRateLimiter::new(
                settings.login_max_failures,
                Duration::from_secs(settings.login_window_secs),
                10_000,
            )),
            audit: Mutex::new(audit),
            session_ttl: Duration::from_secs(settings.session_ttl_secs),
            guard,
            sealer: Mutex::new(sealer),
            key_file,
            _vault: vault,
        })
    }

    /// [`Security::open`] on an open store's database, with the data dir and
    /// settings of `settings`.
    pub fn for_store(
        store: &crate::store::Store,
        settings: &crate::config::Settings,
    ) -> Result<Security, SecurityError> {
        Self::open(store.db(), &settings.data_dir, settings)
    }

    /// The presence lease's state.
    pub fn lease_status(&self) -> LeaseStatus {
        match &self.guard {
            None => LeaseStatus {
                state: "off".into(),
                reason:
                    "no HQ key configured ([security] hq_public_key): the presence lease is off"
                        .into(),
                can_transact: true,
            },
            Some(g) => {
                let g = g.lock().unwrap_or_else(|p| p.into_inner());
                let state = g.state();
                LeaseStatus {
                    state: state.name().into(),
                    reason: state.reason(),
                    can_transact: state.can_transact(),
                }
            }
        }
    }

    /// `Err(reason)` when the device is locked and must not transact.
    pub fn check_transact(&self) -> Result<(), String> {
        let s = self.lease_status();
        if s.can_transact {
            Ok(())
        } else {
            Err(s.reason)
        }
    }

    fn persist_guard(&self, guard: &LeaseGuard) -> Result<(), SecurityError> {
        self.save(GUARD_KEY, &guard.snapshot())
    }

    /// Accepts a lease signed by HQ; returns the new state's name.
    pub fn accept_lease(&self, bytes: &[u8]) -> Result<String, GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        let state = g.accept_lease(bytes)?;
        self.persist_guard(&g).map_err(GuardError::Store)?;
        drop(g);
        self.audit("hq", "lease.renew", state.name());
        Ok(state.name().into())
    }

    /// Applies a signed lock / unlock / wipe; a wipe crypto-erases the sealed key.
    pub fn apply_command(&self, bytes: &[u8]) -> Result<String, GuardError> {
        let g = self.guard.as_ref().ok_or(GuardError::Off)?;
        let mut g = g.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = g.apply_command(bytes)?;
        self.persist_guard(&g).map_err(GuardError::Store)?;
        drop(g);
        let result = match outcome {
            CommandOutcome::Locked => "locked".to_owned(),
            CommandOutcome::Unlocked(state) => format!("unlocked: {}", state.name()),
            CommandOutcome::Wipe => {
                let mut sealer = self.sealer.lock().unwrap_or_else(|p| p.into_inner());
                self.key_file
                    .crypto_erase(&mut *sealer)
                    .map_err(|e| GuardError::Store(e.into()))?;
                "wiped: the sealed data key is destroyed and the device is locked".to_owned()
            }
            other => format!("applied: {other:?}"),
        };
        self.audit("hq", "security.command", &result);
        Ok(result)
    }

    fn save(&self, key: &[u8], value: &impl serde::Serialize) -> Result<(), SecurityError> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(value).map_err(|e| SecurityError::Crypto(e.to_string()))?,
        );
        self.tree
            .insert(key, self.cipher.seal_record(TREE, key, &json))?;
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

    /// Adds or replaces a staff account.
    pub fn set_user(
        &self,
        actor: &str,
        username: &str,
        password: &SecretString,
        roles: Vec<Role>,
    ) -> Result<(), SecurityError> {
        let mut u = self.users.write().unwrap_or_else(|p| p.into_inner());
        let mut next = u.clone();
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let detail = format!("user {username} roles {}", names.join("+"));
        next.set_user(username, password, roles)?;
        self.save(USERS_KEY, &next)?;
        *u = next;
        drop(u);
        self.audit(actor, "user.set", &detail);
        Ok(())
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
        let mut log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.append(actor, action, detail, OffsetDateTime::now_utc()) {
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
        let log = self.audit.lock().unwrap_or_else(|p| p.into_inner());
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
    pub fn audit_verify(&self) -> Result<u64, outpost_security::auth::audit::AuditError> {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .verify()
    }

    /// The last audit entry's (sequence, hash).
    pub fn audit_head(&self) -> Option<(u64, String)> {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .head()
            .map(|(s, h)| (s, h.to_owned()))
    }
}
