//! Development trust anchor: every piece of "TPM" state in one 0600 file in the data dir.
//!
//! **It protects nothing.** Whoever holds the data dir holds the file: the key that
//! wraps the shares, the counters (which an editor can set back) and the PIN failure
//! count (which an editor can reset, so PIN guesses are slowed only by argon2id). It
//! exists so the envelope, the lock and the epoch logic run on machines without a TPM
//! (development, CI, the demo), is refused unless explicitly allowed, and warns at every
//! open, exactly like [`crate::seal::SoftwareSealer`].
//!
//! What it emulates faithfully, so callers see the TPM's behaviour: a share blob records
//! the lock count it was sealed at, and opens only while the count is unchanged (the
//! wrapping key is derived from the file's key *and* the count, so an edited blob header
//! does not help); the epoch only goes forward; the clock never goes back (the wall
//! clock, never below a value reserved in the file a minute ahead of anything
//! returned, so a restart with the clock set back returns at least that); five wrong
//! PINs lock PIN attempts out, one failure forgiven per minute.
//!
//! # File format (`software-anchor`, 93 bytes)
//!
//! `"OPSWAN01"`, key (32), provisioned (1), lock count, epoch, clock reservation (u64
//! LE each), PIN failures (u32 LE), time of the last PIN failure in ms (u64 LE), and a
//! BLAKE3 checksum of the rest truncated to 16 bytes (catches corruption, not edits).
//!
//! # Blob payloads (after the 9-byte anchor header, which is associated data)
//!
//! - share: lock count (u64 LE, associated data too), nonce (24), XChaCha20-Poly1305
//!   ciphertext of the secret (48);
//! - PIN: lock count, salt (16), argon2id memory in KiB and passes (u32 LE each), nonce,
//!   ciphertext; the key is derived from the file's key, the count and argon2id(PIN);
//! - identity: nonce, ciphertext.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{Anchor, PinLockout, Purpose, Secret, blob_header, blob_payload};
use crate::fsutil;
use crate::seal::{SealError, SealerKind};

const FILE_MAGIC: &[u8; 8] = b"OPSWAN01";
const FILE_LEN: usize = 8 + 32 + 1 + 8 + 8 + 8 + 4 + 8 + 16;
/// Wrong PINs before PIN attempts are refused.
const PIN_MAX_TRIES: u32 = 5;
/// Seconds for one PIN failure to be forgiven.
const PIN_RECOVERY_SECS: u32 = 60;
/// How far ahead of what it returned the clock reserves in the file.
const CLOCK_RESERVE_MS: u64 = 60_000;

/// argon2id cost for the software anchor's PIN blobs. Stored in each blob, so a blob
/// made with one cost opens whatever the anchor is set to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinKdf {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
}

impl PinKdf {
    /// OWASP's argon2id baseline (19 MiB, 2 passes): tens of milliseconds per guess.
    /// With a 4- to 8-digit PIN that is still hours at most for someone holding the
    /// file: the software anchor's PIN is weak, by nature.
    pub const PRODUCTION: PinKdf = PinKdf {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
    /// Tests only: 64 KiB, 1 pass.
    pub const FAST: PinKdf = PinKdf {
        memory_kib: 64,
        iterations: 1,
    };

    fn check(self) -> Result<Self, SealError> {
        if !(8..=1024 * 1024).contains(&self.memory_kib) || !(1..=16).contains(&self.iterations) {
            return Err(SealError::Malformed(format!(
                "PIN cost m={} KiB t={} is out of range",
                self.memory_kib, self.iterations
            )));
        }
        Ok(self)
    }

    fn hash(self, pin: &SecretString, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>, SealError> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, 1, Some(32))
            .map_err(|e| SealError::Config(format!("argon2 parameters: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(pin.expose_secret().as_bytes(), salt, &mut out[..])
            .map_err(|e| SealError::Config(format!("argon2: {e}")))?;
        Ok(out)
    }
}

/// The state kept in the file.
struct State {
    key: Zeroizing<[u8; 32]>,
    provisioned: bool,
    lock_count: u64,
    epoch: u64,
    clock_reserved: u64,
    pin_failures: u32,
    last_pin_failure_ms: u64,
}

impl State {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(FILE_LEN));
        out.extend_from_slice(FILE_MAGIC);
        out.extend_from_slice(&self.key[..]);
        out.push(u8::from(self.provisioned));
        out.extend_from_slice(&self.lock_count.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.clock_reserved.to_le_bytes());
        out.extend_from_slice(&self.pin_failures.to_le_bytes());
        out.extend_from_slice(&self.last_pin_failure_ms.to_le_bytes());
        let sum = blake3::hash(&out);
        out.extend_from_slice(&sum.as_bytes()[..16]);
        out
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Self, SealError> {
        let bad = |why: &str| {
            SealError::Malformed(format!(
                "{} is not a software anchor file: {why}",
                path.display()
            ))
        };
        if bytes.len() != FILE_LEN || &bytes[..8] != FILE_MAGIC {
            return Err(bad("wrong length or magic"));
        }
        let (body, sum) = bytes.split_at(FILE_LEN - 16);
        if &blake3::hash(body).as_bytes()[..16] != sum {
            return Err(bad("checksum mismatch"));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&body[8..40]);
        let provisioned = match body[40] {
            0 => false,
            1 => true,
            _ => return Err(bad("bad provisioned flag")),
        };
        let mut failures = [0u8; 4];
        failures.copy_from_slice(&body[65..69]);
        Ok(Self {
            key,
            provisioned,
            lock_count: u64_at(41),
            epoch: u64_at(49),
            clock_reserved: u64_at(57),
            pin_failures: u32::from_le_bytes(failures),
            last_pin_failure_ms: u64_at(69),
        })
    }
}

/// The development trust anchor (see the module docs: it protects nothing).
pub struct SoftwareAnchor {
    path: PathBuf,
    state: State,
    /// The highest clock value returned by this instance.
    clock_floor: u64,
    pin_kdf: PinKdf,
}

impl fmt::Debug for SoftwareAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareAnchor")
            .field("path", &self.path)
            .field("provisioned", &self.state.provisioned)
            .field("lock_count", &self.state.lock_count)
            .field("epoch", &self.state.epoch)
            .finish_non_exhaustive()
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn aead_seal(key: &[u8; 32], aad: &[u8], secret: &Secret) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; 24] = rand::random();
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret.expose(),
                aad,
            },
        )
        .map_err(|_| SealError::Malformed("encryption failed".into()))?;
    let mut out = Vec::with_capacity(24 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn aead_open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Secret, SealError> {
    if sealed.len() != 24 + 32 + 16 {
        return Err(SealError::Malformed(format!(
            "sealed secret is {} bytes, expected 72",
            sealed.len()
        )));
    }
    let pt = Zeroizing::new(
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad,
                },
            )
            .map_err(|_| SealError::WrongKey)?,
    );
    Secret::from_slice(&pt, "the sealed secret")
}

fn u64_le(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

impl SoftwareAnchor {
    /// Opens the anchor file at `path` (conventionally `<data-dir>/software-anchor`),
    /// creating it (mode 0600, not yet provisioned) if absent.
    ///
    /// `allow_software` comes from configuration; production leaves it false so a
    /// machine without its TPM refuses to start instead of silently downgrading.
    pub fn open(path: &Path, allow_software: bool) -> Result<Self, SealError> {
        if !allow_software {
            return Err(SealError::SoftwareNotAllowed);
        }
        tracing::warn!(
            path = %path.display(),
            "Using the SOFTWARE trust anchor: the lock, the counters and the share key \
             are in a file on this disk, so a stolen disk is readable and a lock can be \
             edited away. Development only; use the TPM anchor in production"
        );
        let state = match fsutil::read_private(path, FILE_LEN as u64)? {
            Some(bytes) => State::decode(&Zeroizing::new(bytes), path)?,
            None => {
                let state = State {
                    key: Zeroizing::new(rand::random()),
                    provisioned: false,
                    lock_count: 0,
                    epoch: 0,
                    clock_reserved: 0,
                    pin_failures: 0,
                    last_pin_failure_ms: 0,
                };
                fsutil::write_private(path, &state.encode())?;
                state
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            clock_floor: state.clock_reserved,
            state,
            pin_kdf: PinKdf::PRODUCTION,
        })
    }

    /// Uses `kdf` for PIN blobs sealed from now on (tests use [`PinKdf::FAST`]).
    pub fn with_pin_kdf(mut self, kdf: PinKdf) -> Self {
        self.pin_kdf = kdf;
        self
    }

    fn save(&self) -> Result<(), SealError> {
        fsutil::write_private(&self.path, &self.state.encode())?;
        Ok(())
    }

    fn require_provisioned(&self) -> Result<(), SealError> {
        if self.state.provisioned {
            Ok(())
        } else {
            Err(SealError::NotProvisioned)
        }
    }

    fn derive(&self, purpose: &str, lock_count: u64, extra: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut input = Zeroizing::new(Vec::with_capacity(72));
        input.extend_from_slice(&self.state.key[..]);
        input.extend_from_slice(&lock_count.to_le_bytes());
        input.extend_from_slice(extra);
        Zeroizing::new(blake3::derive_key(
            &format!("outpost software anchor v1 {purpose}"),
            &input,
        ))
    }

    fn check_lock(&self, sealed_at: u64) -> Result<(), SealError> {
        if sealed_at != self.state.lock_count {
            return Err(SealError::Locked {
                sealed_at,
                now: self.state.lock_count,
            });
        }
        Ok(())
    }

    /// The PIN failures still counted now, after one is forgiven per recovery interval.
    fn pin_failures_now(&self) -> u32 {
        let elapsed_secs = wall_ms().saturating_sub(self.state.last_pin_failure_ms) / 1000;
        let forgiven =
            u32::try_from(elapsed_secs / u64::from(PIN_RECOVERY_SECS)).unwrap_or(u32::MAX);
        self.state.pin_failures.saturating_sub(forgiven)
    }
}

impl Anchor for SoftwareAnchor {
    fn kind(&self) -> SealerKind {
        SealerKind::Software
    }

    fn provision(&mut self) -> Result<(), SealError> {
        if !self.state.provisioned {
            self.state.provisioned = true;
            self.save()?;
        }
        Ok(())
    }

    fn is_provisioned(&mut self) -> Result<bool, SealError> {
        Ok(self.state.provisioned)
    }

    fn erase(&mut self) -> Result<bool, SealError> {
        let existed = self.path.exists();
        fsutil::destroy(&self.path)?;
        self.state.provisioned = false;
        Ok(existed)
    }

    fn lock_count(&mut self) -> Result<u64, SealError> {
        self.require_provisioned()?;
        Ok(self.state.lock_count)
    }

    fn lock(&mut self) -> Result<u64, SealError> {
        self.require_provisioned()?;
        self.state.lock_count += 1;
        self.save()?;
        Ok(self.state.lock_count)
    }

    fn epoch(&mut self) -> Result<u64, SealError> {
        self.require_provisioned()?;
        Ok(self.state.epoch)
    }

    fn advance_epoch(&mut self, to: u64) -> Result<(), SealError> {
        self.require_provisioned()?;
        if to < self.state.epoch {
            return Err(SealError::EpochBackwards {
                current: self.state.epoch,
                requested: to,
            });
        }
        if to > self.state.epoch {
            self.state.epoch = to;
            self.save()?;
        }
        Ok(())
    }

    fn clock_ms(&mut self) -> Result<u64, SealError> {
        let value = wall_ms().max(self.clock_floor);
        if value > self.state.clock_reserved {
            self.state.clock_reserved = value.saturating_add(CLOCK_RESERVE_MS);
            self.save()?;
        }
        self.clock_floor = value;
        Ok(value)
    }

    fn seal_share(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError> {
        self.require_provisioned()?;
        let count = self.state.lock_count;
        let mut blob = blob_header(SealerKind::Software, Purpose::Share).to_vec();
        blob.extend_from_slice(&count.to_le_bytes());
        let sealed = aead_seal(&self.derive("share", count, &[]), &blob, secret)?;
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unseal_share(&mut self, blob: &[u8]) -> Result<Secret, SealError> {
        let payload = blob_payload(blob, SealerKind::Software, Purpose::Share)?;
        if payload.len() < 8 {
            return Err(SealError::Malformed("truncated share blob".into()));
        }
        let sealed_at = u64_le(&payload[..8]);
        self.check_lock(sealed_at)?;
        aead_open(
            &self.derive("share", sealed_at, &[]),
            &blob[..17],
            &payload[8..],
        )
    }

    fn seal_pin(&mut self, secret: &Secret, pin: &SecretString) -> Result<Vec<u8>, SealError> {
        self.require_provisioned()?;
        let kdf = self.pin_kdf.check()?;
        let count = self.state.lock_count;
        let salt: [u8; 16] = rand::random();
        let mut blob = blob_header(SealerKind::Software, Purpose::Pin).to_vec();
        blob.extend_from_slice(&count.to_le_bytes());
        blob.extend_from_slice(&salt);
        blob.extend_from_slice(&kdf.memory_kib.to_le_bytes());
        blob.extend_from_slice(&kdf.iterations.to_le_bytes());
        let hashed = kdf.hash(pin, &salt)?;
        let sealed = aead_seal(&self.derive("pin", count, &hashed[..]), &blob, secret)?;
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unseal_pin(&mut self, blob: &[u8], pin: &SecretString) -> Result<Secret, SealError> {
        let payload = blob_payload(blob, SealerKind::Software, Purpose::Pin)?;
        if payload.len() < 8 + 16 + 8 {
            return Err(SealError::Malformed("truncated PIN blob".into()));
        }
        let sealed_at = u64_le(&payload[..8]);
        self.check_lock(sealed_at)?;
        let failures = self.pin_failures_now();
        if failures >= PIN_MAX_TRIES {
            return Err(SealError::PinLockedOut {
                retry_after_secs: Some(u64::from(PIN_RECOVERY_SECS)),
            });
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&payload[8..24]);
        let mut word = [0u8; 4];
        word.copy_from_slice(&payload[24..28]);
        let memory_kib = u32::from_le_bytes(word);
        word.copy_from_slice(&payload[28..32]);
        let iterations = u32::from_le_bytes(word);
        let kdf = PinKdf {
            memory_kib,
            iterations,
        }
        .check()?;
        let hashed = kdf.hash(pin, &salt)?;
        let header_len = 9 + 32;
        match aead_open(
            &self.derive("pin", sealed_at, &hashed[..]),
            &blob[..header_len],
            &payload[32..],
        ) {
            Ok(secret) => {
                if self.state.pin_failures != 0 {
                    self.state.pin_failures = 0;
                    self.save()?;
                }
                Ok(secret)
            }
            Err(SealError::WrongKey) => {
                self.state.pin_failures = failures + 1;
                self.state.last_pin_failure_ms = wall_ms();
                self.save()?;
                Err(SealError::WrongPin)
            }
            Err(e) => Err(e),
        }
    }

    fn pin_lockout(&mut self) -> Result<PinLockout, SealError> {
        Ok(PinLockout {
            failed: self.pin_failures_now(),
            max_tries: PIN_MAX_TRIES,
            recovery_secs: PIN_RECOVERY_SECS,
        })
    }

    fn seal_identity(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError> {
        let mut blob = blob_header(SealerKind::Software, Purpose::Identity).to_vec();
        let sealed = aead_seal(&self.derive("identity", 0, &[]), &blob, secret)?;
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unseal_identity(&mut self, blob: &[u8]) -> Result<Secret, SealError> {
        let payload = blob_payload(blob, SealerKind::Software, Purpose::Identity)?;
        aead_open(&self.derive("identity", 0, &[]), &blob[..9], payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(dir: &Path) -> SoftwareAnchor {
        let mut a = SoftwareAnchor::open(&dir.join("software-anchor"), true)
            .unwrap()
            .with_pin_kdf(PinKdf::FAST);
        a.provision().unwrap();
        a
    }

    fn pin(p: &str) -> SecretString {
        SecretString::from(p.to_owned())
    }

    #[test]
    fn refused_unless_allowed_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("software-anchor");
        assert!(matches!(
            SoftwareAnchor::open(&path, false),
            Err(SealError::SoftwareNotAllowed)
        ));
        assert!(!path.exists());
    }

    #[test]
    fn nothing_works_before_provisioning_and_provisioning_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = SoftwareAnchor::open(&dir.path().join("software-anchor"), true).unwrap();
        assert!(!a.is_provisioned().unwrap());
        assert!(matches!(a.lock(), Err(SealError::NotProvisioned)));
        assert!(matches!(
            a.seal_share(&Secret::generate()),
            Err(SealError::NotProvisioned)
        ));
        a.provision().unwrap();
        a.lock().unwrap();
        a.provision().unwrap();
        assert!(a.is_provisioned().unwrap());
        assert_eq!(a.lock_count().unwrap(), 1, "provision keeps the counts");
    }

    #[test]
    fn a_share_dies_with_the_lock_and_a_new_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = anchor(dir.path());
        let secret = Secret::generate();
        let blob = a.seal_share(&secret).unwrap();
        assert_eq!(a.unseal_share(&blob).unwrap().expose(), secret.expose());
        assert_eq!(a.lock().unwrap(), 1);
        assert!(matches!(
            a.unseal_share(&blob),
            Err(SealError::Locked {
                sealed_at: 0,
                now: 1
            })
        ));
        // Reopened from the file: still locked.
        let mut again = anchor(dir.path());
        assert!(matches!(
            again.unseal_share(&blob),
            Err(SealError::Locked { .. })
        ));
        // Editing the recorded count does not help: the key is derived from it.
        let mut edited = blob.clone();
        edited[9..17].copy_from_slice(&1u64.to_le_bytes());
        assert!(matches!(
            again.unseal_share(&edited),
            Err(SealError::WrongKey)
        ));
        let fresh = again.seal_share(&secret).unwrap();
        assert_eq!(
            again.unseal_share(&fresh).unwrap().expose(),
            secret.expose()
        );
    }

    #[test]
    fn erase_destroys_the_state_and_no_share_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("software-anchor");
        let mut a = anchor(dir.path());
        let blob = a.seal_share(&Secret::generate()).unwrap();
        assert!(a.erase().unwrap());
        assert!(!path.exists());
        assert!(!a.is_provisioned().unwrap());
        assert!(!a.erase().unwrap(), "a second erase finds nothing");
        // A new anchor in the same place is another one: the old share stays dead.
        let mut fresh = anchor(dir.path());
        assert!(fresh.unseal_share(&blob).is_err());
    }

    #[test]
    fn a_share_from_another_anchor_does_not_open() {
        let a_dir = tempfile::tempdir().unwrap();
        let b_dir = tempfile::tempdir().unwrap();
        let blob = anchor(a_dir.path())
            .seal_share(&Secret::generate())
            .unwrap();
        assert!(matches!(
            anchor(b_dir.path()).unseal_share(&blob),
            Err(SealError::WrongKey)
        ));
    }

    #[test]
    fn the_epoch_only_goes_forward() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = anchor(dir.path());
        assert_eq!(a.epoch().unwrap(), 0);
        a.advance_epoch(3).unwrap();
        a.advance_epoch(3).unwrap();
        assert!(matches!(
            a.advance_epoch(2),
            Err(SealError::EpochBackwards {
                current: 3,
                requested: 2
            })
        ));
        assert_eq!(anchor(dir.path()).epoch().unwrap(), 3);
    }

    #[test]
    fn the_clock_never_goes_back_even_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = anchor(dir.path());
        let t1 = a.clock_ms().unwrap();
        let t2 = a.clock_ms().unwrap();
        assert!(t2 >= t1);
        assert!(anchor(dir.path()).clock_ms().unwrap() >= t2);
        // A reservation a day ahead stands for a wall clock set back a day since: the
        // reopened anchor returns at least the reservation.
        let future = wall_ms() + 86_400_000;
        a.state.clock_reserved = future;
        a.save().unwrap();
        assert!(anchor(dir.path()).clock_ms().unwrap() >= future);
    }

    #[test]
    fn the_pin_opens_a_wrong_one_counts_and_five_lock_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = anchor(dir.path());
        let secret = Secret::generate();
        let blob = a.seal_pin(&secret, &pin("2468")).unwrap();
        assert_eq!(
            a.unseal_pin(&blob, &pin("2468")).unwrap().expose(),
            secret.expose()
        );
        for n in 1..=PIN_MAX_TRIES {
            assert!(matches!(
                a.unseal_pin(&blob, &pin("0000")),
                Err(SealError::WrongPin)
            ));
            assert_eq!(a.pin_lockout().unwrap().failed, n);
        }
        assert!(a.pin_lockout().unwrap().is_locked_out());
        assert!(matches!(
            a.unseal_pin(&blob, &pin("2468")),
            Err(SealError::PinLockedOut {
                retry_after_secs: Some(60)
            })
        ));
        // A share blob is not a PIN blob.
        let share = a.seal_share(&secret).unwrap();
        assert!(matches!(
            a.unseal_pin(&share, &pin("2468")),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn a_pin_share_dies_with_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = anchor(dir.path());
        let blob = a.seal_pin(&Secret::generate(), &pin("1357")).unwrap();
        a.lock().unwrap();
        assert!(matches!(
            a.unseal_pin(&blob, &pin("1357")),
            Err(SealError::Locked { .. })
        ));
    }

    #[test]
    fn identity_survives_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = anchor(dir.path());
        let secret = Secret::generate();
        let blob = a.seal_identity(&secret).unwrap();
        a.lock().unwrap();
        assert_eq!(a.unseal_identity(&blob).unwrap().expose(), secret.expose());
        assert!(matches!(
            a.unseal_share(&blob),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn a_corrupt_state_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("software-anchor");
        anchor(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[45] ^= 1;
        fsutil::write_private(&path, &bytes).unwrap();
        assert!(matches!(
            SoftwareAnchor::open(&path, true),
            Err(SealError::Malformed(_))
        ));
        fsutil::write_private(&path, b"short").unwrap();
        assert!(matches!(
            SoftwareAnchor::open(&path, true),
            Err(SealError::Malformed(_))
        ));
    }
}
