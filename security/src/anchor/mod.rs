//! The trust anchor: what the TPM keeps for this unit outside the editable disk.
//!
//! A data dir can be copied, edited and restored; the TPM's non-volatile state cannot be
//! rewound by anyone who does not own the TPM's lockout hierarchy and wipe it whole. The
//! anchor keeps there what decides whether the data key may be released:
//!
//! - **The lock.** [`Anchor::lock`] revokes, inside the TPM, every share sealed before
//!   it ([`Anchor::seal_share`], [`Anchor::seal_pin`]): afterwards the TPM refuses to
//!   unseal them on any OS and in any boot state ([`SealError::Locked`]). Nobody can
//!   undo a lock; a thief who locks the unit only denies himself service. Shares sealed
//!   after the lock work again (that is how HQ's recovery reseals the data key).
//! - **The lock counter** counts locks ([`Anchor::lock_count`]); its existence says this
//!   TPM was enrolled ([`Anchor::is_provisioned`]), so a data dir whose own record of
//!   the enrolment was deleted is still refused.
//! - **The epoch counter** ([`Anchor::epoch`], [`Anchor::advance_epoch`]) only goes
//!   forward; the data dir records the epoch it was written at, so an older copy of the
//!   data dir (restored to undo a lock) is recognised and refused.
//! - **The clock** ([`Anchor::clock_ms`]): milliseconds that never go back, whatever the
//!   wall clock says.
//! - **Identity secrets** ([`Anchor::seal_identity`]) are sealed to the boot state but
//!   *not* to the lock: a locked unit can still prove who it is to HQ and receive the
//!   recovery that unlocks it; a stolen disk alone holds ciphertext.
//!
//! Two implementations: `TpmAnchor` (feature `tpm`, module `tpm`) and [`SoftwareAnchor`]
//! (development only: it protects nothing and says so).
//!
//! # Epoch write order
//!
//! To move a data dir from epoch `e` to `e + 1` (before each change that must not be
//! undone by restoring an older copy, such as saving a lock):
//!
//! 1. write the data dir's record with epoch `e + 1` and fsync it;
//! 2. [`Anchor::advance_epoch`]`(e + 1)`.
//!
//! At open, compare the record `r` with the TPM's `n = `[`Anchor::epoch`]: `r >= n` is
//! this data dir (`r == n + 1` means a power cut fell between the two steps: finish
//! with `advance_epoch(r)`), `r < n` is an older copy of it: refuse. The other order
//! would refuse the good data dir after a power cut between the steps.
//!
//! # Blob format
//!
//! Every blob starts with `"OPANCH"`, version `1`, the anchor kind (1 software, 2 TPM,
//! as [`SealerKind`]) and the purpose (1 share, 2 PIN, 3 identity); the rest is the
//! implementation's own (see each one). A blob of one purpose is refused where another
//! is expected.

use std::fmt;

use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::seal::{SealError, SealerKind};

mod software;
#[cfg(feature = "tpm")]
pub mod tpm;

pub use software::{PinKdf, SoftwareAnchor};
#[cfg(feature = "tpm")]
pub use tpm::TpmAnchor;

/// The TPM anchor reached through `tcti`, for callers that do not build with the `tpm`
/// feature themselves (the installer's crypto-erase: the feature is unified with the
/// server's in one build). Only [`Anchor::erase`], [`Anchor::is_provisioned`] and the
/// counters are meant for it: it seals to the default PCR selection (PCR 7). In a build
/// without the feature, a [`SealError::Config`] that says so.
pub fn open_tpm(tcti: &str) -> Result<Box<dyn Anchor>, SealError> {
    #[cfg(feature = "tpm")]
    {
        let config = crate::seal::TpmConfig {
            tcti: tcti.to_owned(),
            ..crate::seal::TpmConfig::default()
        };
        Ok(Box::new(TpmAnchor::new(config)?))
    }
    #[cfg(not(feature = "tpm"))]
    {
        Err(SealError::Config(format!(
            "this build has no TPM support (cargo feature `tpm`), so the TPM at {tcti:?} cannot be reached: use a build with `--features tpm`"
        )))
    }
}

/// Whether this build can reach a TPM (cargo feature `tpm`).
pub const TPM_BUILT: bool = cfg!(feature = "tpm");

/// The first bytes of every anchor blob.
pub const ANCHOR_MAGIC: &[u8; 6] = b"OPANCH";
/// The anchor blob format version.
pub const ANCHOR_VERSION: u8 = 1;
/// Largest anchor blob accepted; real ones are well under 1 KiB.
pub const MAX_ANCHOR_BLOB: usize = 2048;

/// A 32-byte secret the anchor seals: a share of the data key or an identity key's
/// wrapping key. Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Zeroizing<[u8; 32]>);

impl Secret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        Self(Zeroizing::new(rand::random()))
    }

    /// Wraps existing bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn from_slice(bytes: &[u8], what: &str) -> Result<Self, SealError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| {
            SealError::Malformed(format!("{what} holds {} bytes, not 32", bytes.len()))
        })?;
        Ok(Self::from_bytes(array))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What a blob is for; stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// [`Anchor::seal_share`]: bound to the boot state and the lock.
    Share = 1,
    /// [`Anchor::seal_pin`]: as a share, plus a PIN.
    Pin = 2,
    /// [`Anchor::seal_identity`]: bound to the boot state only.
    Identity = 3,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Share => "share",
            Purpose::Pin => "PIN",
            Purpose::Identity => "identity",
        }
    }
}

/// The 9-byte header of an anchor blob.
pub(crate) fn blob_header(kind: SealerKind, purpose: Purpose) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[..6].copy_from_slice(ANCHOR_MAGIC);
    h[6] = ANCHOR_VERSION;
    h[7] = match kind {
        SealerKind::Software => 1,
        SealerKind::Tpm => 2,
    };
    h[8] = purpose as u8;
    h
}

/// Checks an anchor blob's header and returns the payload after it.
pub(crate) fn blob_payload(
    blob: &[u8],
    kind: SealerKind,
    purpose: Purpose,
) -> Result<&[u8], SealError> {
    if blob.len() > MAX_ANCHOR_BLOB {
        return Err(SealError::Malformed(format!(
            "anchor blob of {} bytes, more than {MAX_ANCHOR_BLOB}",
            blob.len()
        )));
    }
    if blob.len() < 9 || &blob[..6] != ANCHOR_MAGIC {
        return Err(SealError::Malformed(
            "not an anchor blob (no OPANCH header)".into(),
        ));
    }
    if blob[6] != ANCHOR_VERSION {
        return Err(SealError::Malformed(format!(
            "anchor blob version {} (this build reads {ANCHOR_VERSION})",
            blob[6]
        )));
    }
    let found = match blob[7] {
        1 => SealerKind::Software,
        2 => SealerKind::Tpm,
        other => {
            return Err(SealError::Malformed(format!("unknown anchor kind {other}")));
        }
    };
    if found != kind {
        return Err(SealError::WrongSealer {
            expected: kind,
            found,
        });
    }
    if blob[8] != purpose as u8 {
        return Err(SealError::Malformed(format!(
            "a {} blob was given where a {} blob is expected",
            [Purpose::Share, Purpose::Pin, Purpose::Identity]
                .into_iter()
                .find(|p| *p as u8 == blob[8])
                .map_or("foreign", Purpose::name),
            purpose.name()
        )));
    }
    Ok(&blob[9..])
}

/// The TPM's dictionary-attack state, which rate-limits PIN guesses.
///
/// A wrong PIN adds one to `failed`; at `max_tries` the TPM refuses every PIN (and
/// every other DA-protected authorization) until `failed` decays, one per
/// `recovery_secs`, or someone with the lockout authorization resets it
/// (`tpm2_dictionarylockout --clear-lockout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinLockout {
    /// Failures counted now (`TPM_PT_LOCKOUT_COUNTER`).
    pub failed: u32,
    /// Failures that put the TPM in lockout (`TPM_PT_MAX_AUTH_FAIL`).
    pub max_tries: u32,
    /// Seconds for one failure to be forgiven (`TPM_PT_LOCKOUT_INTERVAL`).
    pub recovery_secs: u32,
}

impl PinLockout {
    /// Whether the TPM refuses PIN attempts now.
    pub fn is_locked_out(&self) -> bool {
        self.failed >= self.max_tries
    }
}

/// The trust anchor: the lock, the counters, the clock and the sealing of shares.
///
/// Implementations are blocking (a TPM command takes milliseconds; the software PIN
/// hash a fraction of a second); async callers run them on a blocking thread, and one
/// caller uses an anchor at a time.
pub trait Anchor: Send {
    /// Which kind of anchor this is; written into blobs and envelopes.
    fn kind(&self) -> SealerKind;

    /// Defines the lock and epoch counters and the lock key if they are missing
    /// (idempotent: a provisioned anchor is left as it is, its counts untouched).
    fn provision(&mut self) -> Result<(), SealError>;

    /// Whether this anchor was provisioned (the lock counter exists). A data dir that
    /// says "not enrolled" on a provisioned TPM was tampered with.
    fn is_provisioned(&mut self) -> Result<bool, SealError>;

    /// How many times [`Anchor::lock`] has run (the lock counter's value; on a TPM it
    /// starts wherever the TPM's counters are, not necessarily at 0).
    fn lock_count(&mut self) -> Result<u64, SealError>;

    /// Revokes every share and PIN share sealed so far, for good and on any OS, and
    /// returns the new lock count. Shares sealed afterwards are not affected.
    fn lock(&mut self) -> Result<u64, SealError>;

    /// The epoch counter's value.
    fn epoch(&mut self) -> Result<u64, SealError>;

    /// Moves the epoch counter forward to `to` (see "Epoch write order" in the module
    /// docs); `to` equal to the current value does nothing, a lower one is
    /// [`SealError::EpochBackwards`].
    fn advance_epoch(&mut self, to: u64) -> Result<(), SealError>;

    /// Milliseconds of a clock that never goes back (the TPM's `Clock`: time it has been
    /// powered, kept in NV; not the wall-clock time of day).
    fn clock_ms(&mut self) -> Result<u64, SealError>;

    /// Seals `secret` to the boot state and to the current lock.
    fn seal_share(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError>;

    /// Opens a [`Anchor::seal_share`] blob: [`SealError::Locked`] after a lock,
    /// [`SealError::PolicyMismatch`] in another boot state.
    fn unseal_share(&mut self, blob: &[u8]) -> Result<Secret, SealError>;

    /// Seals `secret` as [`Anchor::seal_share`] does, and to `pin`: opening it takes the
    /// PIN, and wrong guesses are rate-limited (by the TPM's dictionary-attack lockout).
    fn seal_pin(&mut self, secret: &Secret, pin: &SecretString) -> Result<Vec<u8>, SealError>;

    /// Opens a [`Anchor::seal_pin`] blob: [`SealError::WrongPin`],
    /// [`SealError::PinLockedOut`], [`SealError::Locked`], [`SealError::PolicyMismatch`].
    fn unseal_pin(&mut self, blob: &[u8], pin: &SecretString) -> Result<Secret, SealError>;

    /// The dictionary-attack state that rate-limits PIN guesses, for status pages.
    fn pin_lockout(&mut self) -> Result<PinLockout, SealError>;

    /// Seals `secret` to the boot state only: [`Anchor::lock`] does not affect it.
    fn seal_identity(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError>;

    /// Opens a [`Anchor::seal_identity`] blob.
    fn unseal_identity(&mut self, blob: &[u8]) -> Result<Secret, SealError>;

    /// Crypto-erase (`outpost-install uninstall --purge`): destroys everything the
    /// anchor keeps for this unit, so no share or PIN share it ever sealed opens again,
    /// from any copy of the disk, on any OS; and leaves it unprovisioned, so a fresh
    /// install starts afresh. Idempotent (an erased anchor erases to nothing) and safe
    /// to repeat after a power cut: the lock key goes first (that kills the shares),
    /// the counters after it. Returns whether anything was there to destroy.
    fn erase(&mut self) -> Result<bool, SealError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_headers_are_checked() {
        let share = blob_header(SealerKind::Software, Purpose::Share);
        assert!(blob_payload(&share, SealerKind::Software, Purpose::Share).is_ok());
        assert!(matches!(
            blob_payload(&share, SealerKind::Software, Purpose::Identity),
            Err(SealError::Malformed(m)) if m.contains("share blob")
        ));
        assert!(matches!(
            blob_payload(&share, SealerKind::Tpm, Purpose::Share),
            Err(SealError::WrongSealer { .. })
        ));
        let mut future = share;
        future[6] = 9;
        assert!(matches!(
            blob_payload(&future, SealerKind::Software, Purpose::Share),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            blob_payload(b"OPANC", SealerKind::Software, Purpose::Share),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            blob_payload(
                &vec![0; MAX_ANCHOR_BLOB + 1],
                SealerKind::Software,
                Purpose::Share
            ),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn secrets_do_not_debug() {
        assert_eq!(format!("{:?}", Secret::from_bytes([7; 32])), "Secret(..)");
    }
}
