//! The presence lease and lockdown.
//!
//! A store server may transact only while HQ vouches that it is where it belongs. HQ
//! signs a [`Lease`] with its Ed25519 key (pinned on the device at enrollment) and
//! renews it over gRPC while the link is up. The [`LeaseGuard`] turns leases, signed HQ
//! [`Command`]s and tamper signals into a [`LeaseState`]:
//!
//! ```text
//!            lease valid                 lease expired             expired + offline_grace
//! (no lease) ───────────► Active ──────────────────────► Grace ──────────────────────────► Locked
//!                           ▲   fresh lease               │ fresh lease                    │
//!                           └─────────────────────────────┴────────────────────────────────┘
//! Lock command / tamper ─► Locked (hard) ── signed Unlock only ──► back to the lease's state
//! Wipe command ──────────► Locked (wiped) for good: the caller crypto-erases the data key
//! ```
//!
//! Every wire format here is `magic || fields || 64-byte Ed25519 signature over all the
//! bytes before it`; the magic separates domains so a signed lease can never be read as
//! a command. Integers are big endian, strings are `u8` length + UTF-8.
//!
//! The guard's view of time never goes backwards: it keeps the highest time it has seen
//! (persisted in its [`GuardSnapshot`]), so winding the system clock back does not
//! revive an expired lease.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use time::{Duration, OffsetDateTime};

/// Magic of a signed lease.
pub const LEASE_MAGIC: &[u8; 8] = b"OPLEASE1";
/// Magic of a signed HQ command.
pub const COMMAND_MAGIC: &[u8; 8] = b"OPCMD001";
/// Longest store or unit id accepted.
pub const MAX_ID_LEN: usize = 64;

/// Why a lease or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The bytes do not parse.
    #[error("Malformed {what}: {detail}")]
    Malformed {
        /// Lease or command.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The signature is not HQ's pinned key's signature over these bytes.
    #[error("Bad signature: not signed by the pinned HQ key")]
    BadSignature,
    /// Signed for another store or unit.
    #[error("Signed for store {store:?} unit {unit:?}, not this device")]
    WrongDevice {
        /// The store named in the message.
        store: String,
        /// The unit named in the message.
        unit: String,
    },
    /// A command whose counter is not above the last accepted one.
    #[error("Replayed command: counter {counter} is not above the last accepted {last}")]
    Replayed {
        /// The command's counter.
        counter: u64,
        /// The highest counter accepted so far.
        last: u64,
    },
    /// A lease older than the one held.
    #[error("Stale lease: issued before the lease already held")]
    Stale,
    /// Issued further in the future than the allowed clock skew.
    #[error("Issued at {issued_at}, in the future of this device's clock ({now})")]
    FromTheFuture {
        /// When it claims to be issued.
        issued_at: OffsetDateTime,
        /// The device's time.
        now: OffsetDateTime,
    },
    /// A lease already expired, or a command older than the maximum command age.
    #[error("Expired: valid until {until}, now {now}")]
    Expired {
        /// End of validity.
        until: OffsetDateTime,
        /// The device's time.
        now: OffsetDateTime,
    },
    /// The device was wiped; it accepts nothing until re-enrolled.
    #[error("The device was wiped and must be re-enrolled")]
    Wiped,
}

fn malformed(what: &'static str, detail: impl Into<String>) -> LeaseError {
    LeaseError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// The source of "now", injectable for tests.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to; for tests and simulations.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(at))
    }

    /// Moves the clock by `by` (negative to wind it back).
    pub fn advance(&self, by: Duration) {
        // A poisoned lock only means another test thread panicked; the time is still valid.
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }

    /// Sets the clock.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// HQ's statement that this unit of this store is where it belongs until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The store id, as enrolled.
    pub store: String,
    /// This server's unit id within the store.
    pub unit: String,
    /// When HQ issued it (whole seconds).
    pub issued_at: OffsetDateTime,
    /// End of validity (whole seconds); the offline grace starts here.
    pub expires_at: OffsetDateTime,
    /// Random, so two leases issued in the same second differ.
    pub nonce: [u8; 16],
}

/// What a signed HQ command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Stop transacting now.
    Lock,
    /// Lift a lock made by a command or a tamper signal.
    Unlock,
    /// Crypto-erase: destroy the sealed key and the data.
    Wipe,
}

impl Action {
    fn byte(self) -> u8 {
        match self {
            Action::Lock => 1,
            Action::Unlock => 2,
            Action::Wipe => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Action::Lock),
            2 => Some(Action::Unlock),
            3 => Some(Action::Wipe),
            _ => None,
        }
    }
}

/// A signed instruction from HQ to one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What to do.
    pub action: Action,
    /// The store id.
    pub store: String,
    /// The unit id.
    pub unit: String,
    /// Strictly increasing per unit: the device refuses any counter it has seen.
    pub counter: u64,
    /// When HQ issued it; too old commands are refused even with a fresh counter.
    pub issued_at: OffsetDateTime,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are checked by `check_id` before anything is signed.
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn check_id(what: &'static str, s: &str) -> Result<(), LeaseError> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(malformed(
            what,
            format!("id of {} bytes (1..={MAX_ID_LEN})", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(malformed(what, "id contains control characters"));
    }
    Ok(())
}

struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], LeaseError> {
        if self.rest.len() < n {
            return Err(malformed(self.what, format!("truncated at {field}")));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &str) -> Result<u8, LeaseError> {
        Ok(self.take(1, field)?[0])
    }

    fn u64(&mut self, field: &str) -> Result<u64, LeaseError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(b))
    }

    fn time(&mut self, field: &str) -> Result<OffsetDateTime, LeaseError> {
        let secs = self.u64(field)? as i64;
        OffsetDateTime::from_unix_timestamp(secs)
            .map_err(|_| malformed(self.what, format!("{field} {secs} is out of range")))
    }

    fn string(&mut self, field: &str) -> Result<String, LeaseError> {
        let len = self.u8(field)? as usize;
        let bytes = self.take(len, field)?;
        let s = std::str::from_utf8(bytes)
            .map_err(|_| malformed(self.what, format!("{field} is not UTF-8")))?;
        check_id(self.what, s)?;
        Ok(s.to_owned())
    }
}

/// Splits `bytes` into the signed part and the signature and checks both the magic and
/// the signature; returns a reader over the fields.
fn verified<'a>(
    what: &'static str,
    magic: &[u8; 8],
    bytes: &'a [u8],
    key: &VerifyingKey,
) -> Result<Reader<'a>, LeaseError> {
    if bytes.len() > 8 + 2 * (1 + MAX_ID_LEN) + 64 + 64 {
        return Err(malformed(
            what,
            format!("{} bytes is too long", bytes.len()),
        ));
    }
    if bytes.len() < 8 + 64 {
        return Err(malformed(
            what,
            format!("{} bytes is too short", bytes.len()),
        ));
    }
    if &bytes[..8] != magic {
        return Err(malformed(what, "wrong magic"));
    }
    let (body, sig) = bytes.split_at(bytes.len() - 64);
    let mut sig_bytes = [0u8; 64];
    sig_bytes.copy_from_slice(sig);
    key.verify_strict(body, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| LeaseError::BadSignature)?;
    Ok(Reader {
        what,
        rest: &body[8..],
    })
}

fn unix(t: OffsetDateTime) -> u64 {
    t.unix_timestamp().max(0) as u64
}

impl Lease {
    fn body(&self) -> Result<Vec<u8>, LeaseError> {
        check_id("lease", &self.store)?;
        check_id("lease", &self.unit)?;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(LEASE_MAGIC);
        put_str(&mut out, &self.store);
        put_str(&mut out, &self.unit);
        out.extend_from_slice(&unix(self.issued_at).to_be_bytes());
        out.extend_from_slice(&unix(self.expires_at).to_be_bytes());
        out.extend_from_slice(&self.nonce);
        Ok(out)
    }

    /// Parses and verifies a signed lease. Checks only the bytes and the signature; the
    /// [`LeaseGuard`] checks device, freshness and order.
    pub fn verify(bytes: &[u8], hq_key: &VerifyingKey) -> Result<Lease, LeaseError> {
        let mut r = verified("lease", LEASE_MAGIC, bytes, hq_key)?;
        let store = r.string("store")?;
        let unit = r.string("unit")?;
        let issued_at = r.time("issued_at")?;
        let expires_at = r.time("expires_at")?;
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(r.take(16, "nonce")?);
        if !r.rest.is_empty() {
            return Err(malformed(
                "lease",
                format!("{} trailing bytes", r.rest.len()),
            ));
        }
        if expires_at <= issued_at {
            return Err(malformed("lease", "expires_at is not after issued_at"));
        }
        Ok(Lease {
            store,
            unit,
            issued_at,
            expires_at,
            nonce,
        })
    }
}

impl Command {
    fn body(&self) -> Result<Vec<u8>, LeaseError> {
        check_id("command", &self.store)?;
        check_id("command", &self.unit)?;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(COMMAND_MAGIC);
        out.push(self.action.byte());
        put_str(&mut out, &self.store);
        put_str(&mut out, &self.unit);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&unix(self.issued_at).to_be_bytes());
        Ok(out)
    }

    /// Parses and verifies a signed command (bytes and signature only).
    pub fn verify(bytes: &[u8], hq_key: &VerifyingKey) -> Result<Command, LeaseError> {
        let mut r = verified("command", COMMAND_MAGIC, bytes, hq_key)?;
        let action = r.u8("action")?;
        let action = Action::from_byte(action)
            .ok_or_else(|| malformed("command", format!("unknown action {action}")))?;
        let store = r.string("store")?;
        let unit = r.string("unit")?;
        let counter = r.u64("counter")?;
        let issued_at = r.time("issued_at")?;
        if !r.rest.is_empty() {
            return Err(malformed(
                "command",
                format!("{} trailing bytes", r.rest.len()),
            ));
        }
        Ok(Command {
            action,
            store,
            unit,
            counter,
            issued_at,
        })
    }
}

/// HQ's side: signs leases and commands. Used by HQ, the mock HQ and tests.
pub struct HqSigner {
    key: SigningKey,
}

impl fmt::Debug for HqSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HqSigner")
            .field("public", &self.key.verifying_key())
            .finish_non_exhaustive()
    }
}

impl HqSigner {
    /// A new random signing key.
    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// The signer for a 32-byte Ed25519 secret key.
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The public key devices pin at enrollment.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The signing key, for the crate's other signed formats (each with its own magic).
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs a lease.
    pub fn sign_lease(&self, lease: &Lease) -> Result<Vec<u8>, LeaseError> {
        let mut body = lease.body()?;
        let sig = self.key.sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        Ok(body)
    }

    /// Signs a command.
    pub fn sign_command(&self, command: &Command) -> Result<Vec<u8>, LeaseError> {
        let mut body = command.body()?;
        let sig = self.key.sign(&body);
        body.extend_from_slice(&sig.to_bytes());
        Ok(body)
    }
}

/// Parses HQ's pinned public key (32 raw bytes, as stored at enrollment).
pub fn parse_hq_key(bytes: &[u8]) -> Result<VerifyingKey, LeaseError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| malformed("HQ key", format!("{} bytes, expected 32", bytes.len())))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| malformed("HQ key", "not a valid Ed25519 point"))?;
    if key.is_weak() {
        return Err(malformed("HQ key", "weak (small-order) key"));
    }
    Ok(key)
}

/// The guard's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// This device's store id.
    pub store: String,
    /// This device's unit id.
    pub unit: String,
    /// How long the server keeps selling (with a warning) after its lease expired.
    pub offline_grace: Duration,
    /// How far in the future an `issued_at` may be before it is refused.
    pub max_clock_skew: Duration,
    /// How old a command may be when it arrives.
    pub max_command_age: Duration,
}

impl GuardConfig {
    /// Defaults: 72 h offline grace, 5 min skew, commands valid 24 h.
    pub fn new(store: impl Into<String>, unit: impl Into<String>) -> Self {
        Self {
            store: store.into(),
            unit: unit.into(),
            offline_grace: Duration::hours(72),
            max_clock_skew: Duration::minutes(5),
            max_command_age: Duration::hours(24),
        }
    }
}

/// Why the device is locked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockReason {
    /// No lease was ever accepted (not enrolled yet).
    NoLease,
    /// The lease and the offline grace after it ran out.
    LeaseExpired {
        /// When the lease expired.
        expired_at: OffsetDateTime,
    },
    /// HQ sent a signed lock command.
    HqCommand {
        /// When it was applied.
        at: OffsetDateTime,
    },
    /// A door or case sensor reported tampering.
    Tamper {
        /// What the sensor said.
        detail: String,
        /// When.
        at: OffsetDateTime,
    },
    /// HQ wiped the device.
    Wiped {
        /// When.
        at: OffsetDateTime,
    },
}

/// Where the device stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseState {
    /// Lease valid: transact normally.
    Active {
        /// When the lease expires.
        expires_at: OffsetDateTime,
    },
    /// Lease expired, offline grace running: transact, but warn in status and metrics.
    Grace {
        /// When the lease expired.
        expired_at: OffsetDateTime,
        /// When the device will lock.
        locks_at: OffsetDateTime,
    },
    /// No transactions; the server wipes the data key from memory.
    Locked {
        /// Why.
        reason: LockReason,
    },
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl LeaseState {
    /// `"active"`, `"grace"` or `"locked"`, for status JSON and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            LeaseState::Active { .. } => "active",
            LeaseState::Grace { .. } => "grace",
            LeaseState::Locked { .. } => "locked",
        }
    }

    /// Whether checkout and refund may run.
    pub fn can_transact(&self) -> bool {
        !matches!(self, LeaseState::Locked { .. })
    }

    /// A sentence for the status page saying why the device is in this state.
    pub fn reason(&self) -> String {
        match self {
            LeaseState::Active { expires_at } => {
                format!("Presence lease valid until {}", rfc3339(*expires_at))
            }
            LeaseState::Grace {
                expired_at,
                locks_at,
            } => format!(
                "HQ has not renewed the presence lease since it expired at {}; the device locks at {} unless HQ is reached",
                rfc3339(*expired_at),
                rfc3339(*locks_at)
            ),
            LeaseState::Locked { reason } => match reason {
                LockReason::NoLease => {
                    "Locked: no presence lease from HQ yet (enroll the device and connect it to HQ)"
                        .into()
                }
                LockReason::LeaseExpired { expired_at } => format!(
                    "Locked: the presence lease expired at {} and the offline grace ran out",
                    rfc3339(*expired_at)
                ),
                LockReason::HqCommand { at } => {
                    format!("Locked by a signed HQ command at {}", rfc3339(*at))
                }
                LockReason::Tamper { detail, at } => {
                    format!("Locked: tamper signal at {} ({detail})", rfc3339(*at))
                }
                LockReason::Wiped { at } => format!(
                    "Wiped by a signed HQ command at {}; re-enroll the device",
                    rfc3339(*at)
                ),
            },
        }
    }
}

/// What the caller must do after a command was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandOutcome {
    /// The device is locked: drop the key vault.
    Locked,
    /// The hard lock is lifted; the state is whatever the lease says.
    Unlocked(LeaseState),
    /// Crypto-erase now: `SealedKeyFile::crypto_erase`, drop the vault, delete the data.
    Wipe,
}

/// What the guard persists (in the data dir, beside the sealed key) so that a restart
/// neither unlocks a locked device nor accepts an old command again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuardSnapshot {
    /// The signed lease bytes held, re-verified on restore.
    pub lease: Option<Vec<u8>>,
    /// Highest command counter accepted.
    pub last_counter: u64,
    /// A latched lock: `"command"`, `"tamper:<detail>"`, `"expired"` (the lease and its
    /// grace ran out) or `"wiped"`.
    pub hard_lock: Option<String>,
    /// When the hard lock started (unix seconds).
    pub hard_lock_at: i64,
    /// The highest time the guard has seen (unix seconds).
    pub highest_seen: i64,
}

/// The lease / lockdown state machine.
///
/// Not internally synchronised: the server keeps it behind one mutex (held for
/// microseconds, never across `.await`).
pub struct LeaseGuard {
    config: GuardConfig,
    hq_key: VerifyingKey,
    clock: Arc<dyn Clock>,
    lease: Option<(Lease, Vec<u8>)>,
    hard_lock: Option<LockReason>,
    last_counter: u64,
    highest_seen: OffsetDateTime,
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("config", &self.config)
            .field("state", &self.state())
            .field("last_counter", &self.last_counter)
            .finish_non_exhaustive()
    }
}

impl LeaseGuard {
    /// A guard with no lease: locked until HQ's first lease arrives.
    pub fn new(config: GuardConfig, hq_key: VerifyingKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            hq_key,
            clock,
            lease: None,
            hard_lock: None,
            last_counter: 0,
            highest_seen: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// A guard restored from a snapshot; the lease in it is verified again.
    pub fn restore(
        config: GuardConfig,
        hq_key: VerifyingKey,
        clock: Arc<dyn Clock>,
        snapshot: &GuardSnapshot,
    ) -> Result<Self, LeaseError> {
        let mut guard = Self::new(config, hq_key, clock);
        guard.last_counter = snapshot.last_counter;
        guard.highest_seen = OffsetDateTime::from_unix_timestamp(snapshot.highest_seen)
            .map_err(|_| malformed("snapshot", "highest_seen out of range"))?;
        let at = OffsetDateTime::from_unix_timestamp(snapshot.hard_lock_at)
            .map_err(|_| malformed("snapshot", "hard_lock_at out of range"))?;
        guard.hard_lock = match snapshot.hard_lock.as_deref() {
            None => None,
            Some("command") => Some(LockReason::HqCommand { at }),
            Some("wiped") => Some(LockReason::Wiped { at }),
            Some("expired") => Some(LockReason::LeaseExpired { expired_at: at }),
            Some(t) if t.starts_with("tamper:") => Some(LockReason::Tamper {
                detail: t["tamper:".len()..].to_owned(),
                at,
            }),
            Some(other) => return Err(malformed("snapshot", format!("unknown lock {other:?}"))),
        };
        if let Some(bytes) = &snapshot.lease {
            let lease = Lease::verify(bytes, &guard.hq_key)?;
            guard.check_device(&lease.store, &lease.unit)?;
            guard.lease = Some((lease, bytes.clone()));
        }
        Ok(guard)
    }

    /// What to persist after every change.
    pub fn snapshot(&self) -> GuardSnapshot {
        let (hard_lock, at) = match &self.hard_lock {
            None => (None, OffsetDateTime::UNIX_EPOCH),
            Some(LockReason::HqCommand { at }) => (Some("command".to_owned()), *at),
            Some(LockReason::Wiped { at }) => (Some("wiped".to_owned()), *at),
            Some(LockReason::Tamper { detail, at }) => (Some(format!("tamper:{detail}")), *at),
            Some(LockReason::LeaseExpired { expired_at }) => {
                (Some("expired".to_owned()), *expired_at)
            }
            Some(_) => (None, OffsetDateTime::UNIX_EPOCH),
        };
        GuardSnapshot {
            lease: self.lease.as_ref().map(|(_, b)| b.clone()),
            last_counter: self.last_counter,
            hard_lock,
            hard_lock_at: at.unix_timestamp(),
            highest_seen: self.now().unix_timestamp(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// The lease held, if any.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref().map(|(l, _)| l)
    }

    /// The guard's time: the clock, but never earlier than anything seen before.
    fn now(&self) -> OffsetDateTime {
        self.clock.now().max(self.highest_seen)
    }

    fn observe_time(&mut self) -> OffsetDateTime {
        let now = self.now();
        self.highest_seen = now;
        now
    }

    fn check_device(&self, store: &str, unit: &str) -> Result<(), LeaseError> {
        if store != self.config.store || unit != self.config.unit {
            return Err(LeaseError::WrongDevice {
                store: store.to_owned(),
                unit: unit.to_owned(),
            });
        }
        Ok(())
    }

    /// When `lease`'s offline grace runs out. Saturates: a grace beyond the calendar
    /// (a configuration the enrolment bundle's bounds refuse anyway) never panics.
    fn locks_at(&self, lease: &Lease) -> OffsetDateTime {
        lease
            .expires_at
            .checked_add(self.config.offline_grace)
            .unwrap_or(
                lease
                    .expires_at
                    .replace_year(9999)
                    .unwrap_or(lease.expires_at),
            )
    }

    fn lease_state(&self, now: OffsetDateTime) -> LeaseState {
        match &self.lease {
            None => LeaseState::Locked {
                reason: LockReason::NoLease,
            },
            Some((lease, _)) if now < lease.expires_at => LeaseState::Active {
                expires_at: lease.expires_at,
            },
            Some((lease, _)) if now < self.locks_at(lease) => LeaseState::Grace {
                expired_at: lease.expires_at,
                locks_at: self.locks_at(lease),
            },
            Some((lease, _)) => LeaseState::Locked {
                reason: LockReason::LeaseExpired {
                    expired_at: lease.expires_at,
                },
            },
        }
    }

    /// The current state.
    pub fn state(&self) -> LeaseState {
        match &self.hard_lock {
            Some(reason) => LeaseState::Locked {
                reason: reason.clone(),
            },
            None => self.lease_state(self.now()),
        }
    }

    /// Latches a lock the lease's expiry caused, so that it survives a restart and a
    /// clock set back: from now on only a fresh lease (or a signed unlock) ends it.
    /// Returns `true` when it latched now (the caller persists the snapshot at once).
    pub fn latch_expiry(&mut self) -> bool {
        if self.hard_lock.is_some() {
            return false;
        }
        match self.lease_state(self.now()) {
            LeaseState::Locked {
                reason: reason @ LockReason::LeaseExpired { .. },
            } => {
                self.hard_lock = Some(reason);
                true
            }
            _ => false,
        }
    }

    /// Whether a lock is latched (a command, tamper, expiry or wipe): what the server
    /// mirrors into the TPM.
    pub fn is_latched(&self) -> bool {
        self.hard_lock.is_some()
    }

    /// Whether checkout and refund may run now.
    pub fn can_transact(&self) -> bool {
        self.state().can_transact()
    }

    /// Takes a renewed lease from HQ (or, later, a peer's relayed HQ lease).
    pub fn accept_lease(&mut self, bytes: &[u8]) -> Result<LeaseState, LeaseError> {
        if matches!(self.hard_lock, Some(LockReason::Wiped { .. })) {
            return Err(LeaseError::Wiped);
        }
        let lease = Lease::verify(bytes, &self.hq_key)?;
        self.check_device(&lease.store, &lease.unit)?;
        let now = self.observe_time();
        if lease.issued_at > now + self.config.max_clock_skew {
            return Err(LeaseError::FromTheFuture {
                issued_at: lease.issued_at,
                now,
            });
        }
        if lease.expires_at <= now {
            return Err(LeaseError::Expired {
                until: lease.expires_at,
                now,
            });
        }
        if let Some((held, _)) = &self.lease
            && lease.issued_at < held.issued_at
        {
            return Err(LeaseError::Stale);
        }
        self.lease = Some((lease, bytes.to_vec()));
        // A fresh lease ends a lock that expiry alone caused; a command or tamper lock
        // needs HQ's signed unlock.
        if matches!(self.hard_lock, Some(LockReason::LeaseExpired { .. })) {
            self.hard_lock = None;
        }
        let state = self.state();
        tracing::info!(state = state.name(), "Accepted a presence lease");
        Ok(state)
    }

    /// Applies a signed HQ command; a bad signature, another device's command, a
    /// replayed or too old one is refused and changes nothing.
    pub fn apply_command(&mut self, bytes: &[u8]) -> Result<CommandOutcome, LeaseError> {
        let command = Command::verify(bytes, &self.hq_key)?;
        self.check_device(&command.store, &command.unit)?;
        if command.counter <= self.last_counter {
            return Err(LeaseError::Replayed {
                counter: command.counter,
                last: self.last_counter,
            });
        }
        let now = self.observe_time();
        if command.issued_at > now + self.config.max_clock_skew {
            return Err(LeaseError::FromTheFuture {
                issued_at: command.issued_at,
                now,
            });
        }
        if command.issued_at + self.config.max_command_age < now {
            return Err(LeaseError::Expired {
                until: command.issued_at + self.config.max_command_age,
                now,
            });
        }
        if matches!(self.hard_lock, Some(LockReason::Wiped { .. })) {
            return Err(LeaseError::Wiped);
        }
        self.last_counter = command.counter;
        tracing::warn!(action = ?command.action, counter = command.counter, "Applying a signed HQ command");
        Ok(match command.action {
            Action::Lock => {
                self.hard_lock = Some(LockReason::HqCommand { at: now });
                CommandOutcome::Locked
            }
            Action::Unlock => {
                self.hard_lock = None;
                CommandOutcome::Unlocked(self.state())
            }
            Action::Wipe => {
                self.hard_lock = Some(LockReason::Wiped { at: now });
                self.lease = None;
                CommandOutcome::Wipe
            }
        })
    }

    /// A door or case sensor fired: lock at once. Only a signed unlock lifts it.
    pub fn tamper(&mut self, detail: &str) {
        let now = self.observe_time();
        if matches!(self.hard_lock, Some(LockReason::Wiped { .. })) {
            return;
        }
        let detail: String = detail
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        tracing::error!(detail = %detail, "Tamper signal: locking the device");
        self.hard_lock = Some(LockReason::Tamper { detail, at: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    struct Fixture {
        hq: HqSigner,
        clock: Arc<ManualClock>,
        guard: LeaseGuard,
        counter: u64,
    }

    fn fixture() -> Fixture {
        let hq = HqSigner::generate();
        let clock = Arc::new(ManualClock::new(T0));
        let guard = LeaseGuard::new(
            GuardConfig::new("s1", "u1"),
            hq.verifying_key(),
            clock.clone(),
        );
        Fixture {
            hq,
            clock,
            guard,
            counter: 0,
        }
    }

    impl Fixture {
        fn lease(&self, valid: Duration) -> Vec<u8> {
            let now = self.clock.now();
            self.hq
                .sign_lease(&Lease {
                    store: "s1".into(),
                    unit: "u1".into(),
                    issued_at: now,
                    expires_at: now + valid,
                    nonce: rand::random(),
                })
                .unwrap()
        }

        fn command(&mut self, action: Action) -> Vec<u8> {
            self.counter += 1;
            self.hq
                .sign_command(&Command {
                    action,
                    store: "s1".into(),
                    unit: "u1".into(),
                    counter: self.counter,
                    issued_at: self.clock.now(),
                })
                .unwrap()
        }
    }

    #[test]
    fn no_lease_is_locked() {
        let f = fixture();
        assert_eq!(f.guard.state().name(), "locked");
        assert!(f.guard.state().reason().contains("no presence lease"));
    }

    #[test]
    fn active_then_grace_then_locked_then_renewed() {
        let mut f = fixture();
        let lease = f.lease(Duration::hours(1));
        assert_eq!(f.guard.accept_lease(&lease).unwrap().name(), "active");
        f.clock.advance(Duration::minutes(59));
        assert!(matches!(f.guard.state(), LeaseState::Active { .. }));
        f.clock.advance(Duration::minutes(2));
        let LeaseState::Grace { locks_at, .. } = f.guard.state() else {
            panic!("grace expected")
        };
        assert_eq!(locks_at, T0 + Duration::hours(73));
        assert!(f.guard.can_transact());
        f.clock.set(T0 + Duration::hours(73));
        assert!(matches!(
            f.guard.state(),
            LeaseState::Locked {
                reason: LockReason::LeaseExpired { .. }
            }
        ));
        assert!(!f.guard.can_transact());
        let renewed = f.lease(Duration::hours(1));
        assert_eq!(f.guard.accept_lease(&renewed).unwrap().name(), "active");
    }

    #[test]
    fn configurable_grace() {
        let mut f = fixture();
        f.guard.config.offline_grace = Duration::minutes(10);
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        f.clock.advance(Duration::minutes(65));
        assert_eq!(f.guard.state().name(), "grace");
        f.clock.advance(Duration::minutes(6));
        assert_eq!(f.guard.state().name(), "locked");
    }

    /// Regression: a lock by expiry was never saved, so a restart with the clock set
    /// back revived the lease.
    #[test]
    fn an_expiry_lock_is_latched_survives_a_restart_with_the_clock_back_and_a_fresh_lease_ends_it()
    {
        let mut f = fixture();
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        assert!(!f.guard.latch_expiry(), "nothing to latch while active");
        f.clock.advance(Duration::hours(74));
        assert!(f.guard.latch_expiry());
        assert!(!f.guard.latch_expiry(), "latched once");
        assert!(f.guard.is_latched());
        let mut snap = f.guard.snapshot();
        assert_eq!(snap.hard_lock.as_deref(), Some("expired"));
        // The restored guard sees a clock (and a highest time) set back to the lease's
        // start: still locked, by expiry.
        snap.highest_seen = T0.unix_timestamp();
        f.clock.set(T0);
        let mut g = LeaseGuard::restore(
            f.guard.config.clone(),
            f.hq.verifying_key(),
            f.clock.clone(),
            &snap,
        )
        .unwrap();
        assert!(matches!(
            g.state(),
            LeaseState::Locked {
                reason: LockReason::LeaseExpired { .. }
            }
        ));
        f.clock.set(T0 + Duration::hours(75));
        let fresh = f.lease(Duration::hours(1));
        assert_eq!(g.accept_lease(&fresh).unwrap().name(), "active");
        assert!(!g.is_latched());
        // A tamper lock is not ended by a lease.
        g.tamper("case");
        assert_eq!(
            g.accept_lease(&f.lease(Duration::hours(2))).unwrap().name(),
            "locked"
        );
    }

    /// Regression: a very large offline grace panicked in time arithmetic.
    #[test]
    fn a_grace_beyond_the_calendar_saturates_instead_of_panicking() {
        let mut f = fixture();
        f.guard.config.offline_grace = Duration::MAX;
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        f.clock.advance(Duration::hours(2));
        assert_eq!(f.guard.state().name(), "grace");
        assert!(!f.guard.latch_expiry());
    }

    #[test]
    fn winding_the_clock_back_does_not_revive_a_lease() {
        let mut f = fixture();
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        f.clock.advance(Duration::hours(80));
        f.guard.tamper("probe");
        let mut snap = f.guard.snapshot();
        snap.hard_lock = None;
        f.clock.set(T0);
        let g = LeaseGuard::restore(
            f.guard.config.clone(),
            f.hq.verifying_key(),
            f.clock.clone(),
            &snap,
        )
        .unwrap();
        assert_eq!(g.state().name(), "locked");
    }

    #[test]
    fn forged_wrong_device_stale_future_and_expired_leases_are_refused() {
        let mut f = fixture();
        let forger = HqSigner::generate();
        let lease = Lease {
            store: "s1".into(),
            unit: "u1".into(),
            issued_at: T0,
            expires_at: T0 + Duration::hours(1),
            nonce: [1; 16],
        };
        assert_eq!(
            f.guard.accept_lease(&forger.sign_lease(&lease).unwrap()),
            Err(LeaseError::BadSignature)
        );
        let other = Lease {
            unit: "u2".into(),
            ..lease.clone()
        };
        assert!(matches!(
            f.guard.accept_lease(&f.hq.sign_lease(&other).unwrap()),
            Err(LeaseError::WrongDevice { .. })
        ));
        let future = Lease {
            issued_at: T0 + Duration::hours(1),
            expires_at: T0 + Duration::hours(2),
            ..lease.clone()
        };
        assert!(matches!(
            f.guard.accept_lease(&f.hq.sign_lease(&future).unwrap()),
            Err(LeaseError::FromTheFuture { .. })
        ));
        let expired = Lease {
            issued_at: T0 - Duration::hours(2),
            expires_at: T0 - Duration::hours(1),
            ..lease.clone()
        };
        assert!(matches!(
            f.guard.accept_lease(&f.hq.sign_lease(&expired).unwrap()),
            Err(LeaseError::Expired { .. })
        ));
        f.guard
            .accept_lease(&f.hq.sign_lease(&lease).unwrap())
            .unwrap();
        let older = Lease {
            issued_at: T0 - Duration::minutes(1),
            nonce: [2; 16],
            ..lease.clone()
        };
        assert_eq!(
            f.guard.accept_lease(&f.hq.sign_lease(&older).unwrap()),
            Err(LeaseError::Stale)
        );
        assert_eq!(
            f.guard.lease().unwrap().nonce,
            [1; 16],
            "refusals change nothing"
        );
    }

    #[test]
    fn malformed_lease_bytes_are_refused() {
        let f = fixture();
        let good = f.lease(Duration::hours(1));
        let key = f.hq.verifying_key();
        let mut cases: Vec<Vec<u8>> = vec![vec![], good[..50].to_vec(), vec![0; 4000]];
        let mut magic = good.clone();
        magic[0] = b'X';
        cases.push(magic);
        for bytes in cases {
            assert!(
                matches!(
                    Lease::verify(&bytes, &key),
                    Err(LeaseError::Malformed { .. })
                ),
                "{bytes:?}"
            );
        }
        // Any flipped bit in the body or signature breaks the signature.
        for i in [9, 20, good.len() - 70, good.len() - 1] {
            let mut t = good.clone();
            t[i] ^= 0x01;
            assert!(Lease::verify(&t, &key).is_err(), "flip at {i}");
        }
        // A well-signed body with bad fields is still refused by the parser.
        let signer = |body: &[u8]| {
            let mut b = body.to_vec();
            b.extend_from_slice(&f.hq.key.sign(body).to_bytes());
            b
        };
        let mut bad_utf8 = LEASE_MAGIC.to_vec();
        bad_utf8.extend_from_slice(&[2, 0xff, 0xfe, 1, b'u']);
        bad_utf8.extend_from_slice(&[0; 32]);
        assert!(matches!(
            Lease::verify(&signer(&bad_utf8), &key),
            Err(LeaseError::Malformed { .. })
        ));
        let mut backwards = LEASE_MAGIC.to_vec();
        backwards.extend_from_slice(&[2, b's', b'1', 2, b'u', b'1']);
        backwards.extend_from_slice(&100u64.to_be_bytes());
        backwards.extend_from_slice(&50u64.to_be_bytes());
        backwards.extend_from_slice(&[0; 16]);
        assert!(matches!(
            Lease::verify(&signer(&backwards), &key),
            Err(LeaseError::Malformed { .. })
        ));
        let mut trailing = backwards.clone();
        trailing[16..24].copy_from_slice(&10u64.to_be_bytes());
        trailing.push(0);
        assert!(matches!(
            Lease::verify(&signer(&trailing), &key),
            Err(LeaseError::Malformed { .. })
        ));
        // A signed command is not a lease (domain separation by magic).
        let cmd =
            f.hq.sign_command(&Command {
                action: Action::Unlock,
                store: "s1".into(),
                unit: "u1".into(),
                counter: 1,
                issued_at: T0,
            })
            .unwrap();
        assert!(matches!(
            Lease::verify(&cmd, &key),
            Err(LeaseError::Malformed { .. })
        ));
    }

    #[test]
    fn signed_lock_and_unlock_work_and_replay_or_forgery_is_refused() {
        let mut f = fixture();
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        let lock = f.command(Action::Lock);
        assert_eq!(
            f.guard.apply_command(&lock).unwrap(),
            CommandOutcome::Locked
        );
        assert!(f.guard.state().reason().contains("signed HQ command"));
        let unlock = f.command(Action::Unlock);
        assert!(matches!(
            f.guard.apply_command(&unlock).unwrap(),
            CommandOutcome::Unlocked(LeaseState::Active { .. })
        ));
        // Replaying the old lock is refused and changes nothing.
        assert_eq!(
            f.guard.apply_command(&lock),
            Err(LeaseError::Replayed {
                counter: 1,
                last: 2
            })
        );
        assert_eq!(f.guard.state().name(), "active");
        // A forged lock or unlock is refused.
        let forger = HqSigner::generate();
        let forged = forger
            .sign_command(&Command {
                action: Action::Unlock,
                store: "s1".into(),
                unit: "u1".into(),
                counter: 99,
                issued_at: T0,
            })
            .unwrap();
        f.guard.tamper("case opened");
        assert_eq!(
            f.guard.apply_command(&forged),
            Err(LeaseError::BadSignature)
        );
        assert_eq!(f.guard.state().name(), "locked");
        assert_eq!(f.guard.snapshot().last_counter, 2);
    }

    #[test]
    fn old_or_future_commands_are_refused() {
        let mut f = fixture();
        let old = f.command(Action::Unlock);
        f.clock.advance(Duration::hours(25));
        assert!(matches!(
            f.guard.apply_command(&old),
            Err(LeaseError::Expired { .. })
        ));
        f.clock.advance(Duration::minutes(10));
        let future = f.command(Action::Lock);
        f.clock.advance(Duration::minutes(-10));
        assert!(matches!(
            f.guard.apply_command(&future),
            Err(LeaseError::FromTheFuture { .. })
        ));
        assert_eq!(
            f.guard.snapshot().last_counter,
            0,
            "refused commands consume no counter"
        );
        f.clock.advance(Duration::minutes(10));
        assert_eq!(
            f.guard.apply_command(&future).unwrap(),
            CommandOutcome::Locked
        );
    }

    #[test]
    fn tamper_locks_at_once_and_survives_a_fresh_lease_and_a_restart() {
        let mut f = fixture();
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        f.guard.tamper("door\nopen");
        let state = f.guard.state();
        assert!(!state.can_transact());
        assert!(state.reason().contains("door"));
        assert!(
            !state.reason().contains('\n'),
            "control characters stripped"
        );
        assert_eq!(
            f.guard
                .accept_lease(&f.lease(Duration::hours(2)))
                .unwrap()
                .name(),
            "locked"
        );
        let restored = LeaseGuard::restore(
            f.guard.config.clone(),
            f.hq.verifying_key(),
            f.clock.clone(),
            &f.guard.snapshot(),
        )
        .unwrap();
        assert_eq!(restored.state(), f.guard.state());
        let unlock = f.command(Action::Unlock);
        f.guard.apply_command(&unlock).unwrap();
        assert_eq!(f.guard.state().name(), "active");
    }

    #[test]
    fn wipe_is_final() {
        let mut f = fixture();
        f.guard.accept_lease(&f.lease(Duration::hours(1))).unwrap();
        let wipe = f.command(Action::Wipe);
        assert_eq!(f.guard.apply_command(&wipe).unwrap(), CommandOutcome::Wipe);
        assert!(f.guard.state().reason().contains("Wiped"));
        assert_eq!(
            f.guard.accept_lease(&f.lease(Duration::hours(1))),
            Err(LeaseError::Wiped)
        );
        let unlock = f.command(Action::Unlock);
        assert_eq!(f.guard.apply_command(&unlock), Err(LeaseError::Wiped));
        assert!(f.guard.snapshot().lease.is_none());
    }

    #[test]
    fn malformed_command_bytes_and_keys_are_refused() {
        let mut f = fixture();
        let key = f.hq.verifying_key();
        let good = f.command(Action::Lock);
        assert!(matches!(
            Command::verify(&good[..40], &key),
            Err(LeaseError::Malformed { .. })
        ));
        let mut body = COMMAND_MAGIC.to_vec();
        body.extend_from_slice(&[9, 2, b's', b'1', 2, b'u', b'1']);
        body.extend_from_slice(&[0; 16]);
        let mut signed = body.clone();
        signed.extend_from_slice(&f.hq.key.sign(&body).to_bytes());
        assert!(matches!(
            Command::verify(&signed, &key),
            Err(LeaseError::Malformed { .. })
        ));
        assert!(matches!(
            f.guard.apply_command(&f.lease(Duration::hours(1))),
            Err(LeaseError::Malformed { .. })
        ));
        assert!(parse_hq_key(&[1; 31]).is_err());
        assert!(parse_hq_key(&[0; 32]).is_err(), "identity point is weak");
        assert_eq!(parse_hq_key(key.as_bytes()).unwrap(), key);
        let bad_snapshot = GuardSnapshot {
            hard_lock: Some("bogus".into()),
            ..GuardSnapshot::default()
        };
        assert!(
            LeaseGuard::restore(f.guard.config.clone(), key, f.clock.clone(), &bad_snapshot)
                .is_err()
        );
    }
}
