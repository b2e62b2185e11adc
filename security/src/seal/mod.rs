//! Sealing the data key.
//!
//! All data at rest is encrypted under keys derived from one random 32-byte **data key**
//! ([`DataKey`]). The data key never touches the disk in clear: a [`Sealer`] wraps it
//! into a blob that only this machine can open, and [`SealedKeyFile`] keeps that blob in
//! the data dir. Two sealers exist:
//!
//! - `TpmSealer` (cargo feature `tpm`): the blob is a TPM 2.0 sealed object bound to a
//!   PCR policy, so it opens only on this TPM, in this boot state.
//! - [`SoftwareSealer`]: the blob is encrypted with a key kept in a 0600 file beside it.
//!   That protects nothing against someone who takes the whole disk; it exists for
//!   development and for machines without a TPM, is refused unless explicitly allowed,
//!   and warns loudly at start.
//!
//! # Blob format
//!
//! `"OPSEAL"` (6 bytes), format version `1`, sealer kind (1 = software, 2 = TPM), then the
//! sealer's own payload. The header is authenticated by both sealers.
//!
//! An **enrolled** unit keeps format version `2` at the same path instead: the
//! [`Envelope`], where the data key needs a TPM share bound to the trust anchor's lock
//! ([`crate::anchor`]) and a second share from HQ or a PIN. Its byte 7 is the anchor
//! kind, with the same values, so [`SealedKeyFile::sealed_kind`] reads both;
//! [`SealedKeyFile::format_version`] tells them apart.

use std::fmt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::fsutil::{self, FsError};

pub mod envelope;
#[cfg(feature = "tpm")]
mod tpm;

#[cfg(feature = "tpm")]
pub use crate::tpm::TpmConfig;
pub use envelope::{Envelope, HqEscrowKeys, SecondShare, TpmShare, UnlockPolicy};
#[cfg(feature = "tpm")]
pub use tpm::TpmSealer;

/// The first bytes of every sealed blob.
pub const BLOB_MAGIC: &[u8; 6] = b"OPSEAL";
/// The blob format version this crate writes and reads.
pub const BLOB_VERSION: u8 = 1;
/// Largest sealed blob accepted from disk; real ones are well under 1 KiB.
pub const MAX_BLOB_LEN: usize = 4096;

/// The random 32-byte key that everything at rest is encrypted under.
///
/// Zeroized when dropped; `Debug` never shows it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh key from the operating system's CSPRNG (through `rand`'s thread RNG,
    /// which is seeded from and periodically reseeded by the OS).
    pub fn generate() -> Self {
        Self(Zeroizing::new(rand::random()))
    }

    /// Wraps existing key bytes (an unsealed key, or a fixed key in tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes, for deriving subkeys.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Which sealer made a blob; stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealerKind {
    /// [`SoftwareSealer`].
    Software,
    /// `TpmSealer`.
    Tpm,
}

impl SealerKind {
    fn byte(self) -> u8 {
        match self {
            SealerKind::Software => 1,
            SealerKind::Tpm => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(SealerKind::Software),
            2 => Some(SealerKind::Tpm),
            _ => None,
        }
    }
}

impl fmt::Display for SealerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealerKind::Software => "software",
            SealerKind::Tpm => "tpm",
        })
    }
}

/// Why sealing or unsealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The software sealer was asked for but the configuration does not allow it.
    #[error(
        "The software sealer keeps its key on the same disk as the data and is refused; \
         use a TPM, or set allow_software = true for development"
    )]
    SoftwareNotAllowed,
    /// A key or blob file could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The blob is not a sealed blob this crate understands.
    #[error("Malformed sealed blob: {0}")]
    Malformed(String),
    /// The blob was made by another kind of sealer.
    #[error(
        "The sealed key was made by the {found} sealer, but the {expected} sealer is configured"
    )]
    WrongSealer {
        /// The configured sealer.
        expected: SealerKind,
        /// The one named in the blob.
        found: SealerKind,
    },
    /// The blob does not open with this sealer's key: another machine, or tampered.
    #[error(
        "The sealed key does not open with this machine's sealing key (other machine or tampered blob)"
    )]
    WrongKey,
    /// No sealed key exists yet where one was required.
    #[error("No sealed data key at {0}")]
    Missing(PathBuf),
    /// The TPM refused: PCR values differ from those the key was sealed to.
    #[error(
        "The TPM refused to unseal: the PCR values differ from the sealed policy (boot state changed)"
    )]
    PolicyMismatch,
    /// PCRs kept changing during every policy session attempt.
    #[error("PCRs changed during each of {0} unseal attempts")]
    PcrsKeptChanging(u32),
    /// The sealer configuration is invalid, or a call's arguments contradict each
    /// other (an envelope policy naming a factor whose key or PIN is not given).
    #[error("Invalid sealer configuration: {0}")]
    Config(String),
    /// The TPM's lock was raised after this secret was sealed: the trust anchor's lock
    /// key is gone (or its lock counter moved on), so the TPM will never release it
    /// again, on any OS. Only HQ's recovery (or a share sealed after the lock) opens
    /// the data key now.
    #[error(
        "The TPM lock was raised after this secret was sealed (lock count {sealed_at} at sealing, \
         {now} now): the TPM will not release it again; recover the data key through HQ"
    )]
    Locked {
        /// The lock count recorded in the blob.
        sealed_at: u64,
        /// The TPM's lock count now.
        now: u64,
    },
    /// The PIN does not open the PIN-sealed share (the TPM counted one more failure
    /// toward its dictionary-attack lockout).
    #[error("Wrong PIN")]
    WrongPin,
    /// The TPM is in dictionary-attack lockout after too many wrong PINs: no PIN is
    /// tried until it recovers.
    #[error(
        "Too many wrong PINs: the TPM refuses PIN attempts until it recovers{}",
        match retry_after_secs {
            Some(s) => format!(" (one more attempt in at most {s} s)"),
            None => String::new(),
        }
    )]
    PinLockedOut {
        /// Seconds until the TPM forgives one failure (its `TPM_PT_LOCKOUT_INTERVAL`),
        /// when it could be read.
        retry_after_secs: Option<u64>,
    },
    /// The trust anchor has not been provisioned (no lock counter on this TPM).
    #[error("The trust anchor is not provisioned on this TPM (no lock counter)")]
    NotProvisioned,
    /// An epoch may only go forward.
    #[error("The TPM epoch is {current}; it cannot go back to {requested}")]
    EpochBackwards {
        /// The epoch counter's value.
        current: u64,
        /// The value asked for.
        requested: u64,
    },
    /// The envelope does not accept this second factor.
    #[error("This sealed key does not accept {0} as its second factor")]
    FactorNotEnrolled(&'static str),
    /// An escrow step failed (a bad point from HQ or in the file).
    #[error(transparent)]
    Escrow(#[from] crate::escrow::EscrowError),
    /// A TPM command failed.
    #[cfg(feature = "tpm")]
    #[error("TPM {op} failed: {source}")]
    Tpm {
        /// The operation.
        op: &'static str,
        /// The TSS error.
        #[source]
        source: tss_esapi::Error,
    },
}

/// Seals and unseals the data key.
///
/// Implementations are blocking (a TPM round trip takes milliseconds); async callers
/// run them on a blocking thread, and a TPM context is owned by one caller at a time.
pub trait Sealer: Send {
    /// Which sealer this is; written into blobs.
    fn kind(&self) -> SealerKind;

    /// Wraps `key` into a blob that only this sealer (on this machine) can open.
    fn seal(&mut self, key: &DataKey) -> Result<Vec<u8>, SealError>;

    /// Opens a blob made by [`Sealer::seal`].
    fn unseal(&mut self, blob: &[u8]) -> Result<DataKey, SealError>;

    /// Destroys whatever key material the sealer itself keeps (the software sealer's key
    /// file). Part of a crypto-erase; the TPM sealer keeps nothing outside the TPM.
    fn erase(&mut self) -> Result<(), SealError> {
        Ok(())
    }
}

/// Builds the header of a blob of `kind`.
pub(crate) fn blob_header(kind: SealerKind) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[..6].copy_from_slice(BLOB_MAGIC);
    h[6] = BLOB_VERSION;
    h[7] = kind.byte();
    h
}

/// Checks the header of `blob` and returns the payload after it.
pub(crate) fn blob_payload(blob: &[u8], expected: SealerKind) -> Result<&[u8], SealError> {
    if blob.len() > MAX_BLOB_LEN {
        return Err(SealError::Malformed(format!(
            "{} bytes, more than {MAX_BLOB_LEN}",
            blob.len()
        )));
    }
    if blob.len() < 8 {
        return Err(SealError::Malformed(format!(
            "{} bytes, shorter than the 8-byte header",
            blob.len()
        )));
    }
    if &blob[..6] != BLOB_MAGIC {
        return Err(SealError::Malformed("missing OPSEAL magic".into()));
    }
    if blob[6] == envelope::ENVELOPE_VERSION {
        return Err(SealError::Malformed(format!(
            "format version {} is an enrolled envelope: open it with seal::Envelope",
            blob[6]
        )));
    }
    if blob[6] != BLOB_VERSION {
        return Err(SealError::Malformed(format!(
            "format version {} (this build reads {BLOB_VERSION})",
            blob[6]
        )));
    }
    let found = SealerKind::from_byte(blob[7])
        .ok_or_else(|| SealError::Malformed(format!("unknown sealer kind {}", blob[7])))?;
    if found != expected {
        return Err(SealError::WrongSealer { expected, found });
    }
    Ok(&blob[8..])
}

/// Development sealer: the data key is encrypted under a key-encryption key kept in a
/// 0600 file.
///
/// This is **not** protection against theft of the disk, only against reading the
/// sealed blob alone. It warns at every start and is refused unless allowed.
pub struct SoftwareSealer {
    kek: Zeroizing<[u8; 32]>,
    key_path: PathBuf,
}

impl fmt::Debug for SoftwareSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareSealer")
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

const KEK_FILE_MAGIC: &[u8; 8] = b"OPKEK001";

impl SoftwareSealer {
    /// Opens the key-encryption key at `key_path`, creating it (mode 0600) if absent.
    ///
    /// `allow_software` comes from configuration; production configs leave it false so
    /// a machine whose TPM is missing refuses to start instead of silently downgrading.
    pub fn open(key_path: &Path, allow_software: bool) -> Result<Self, SealError> {
        if !allow_software {
            return Err(SealError::SoftwareNotAllowed);
        }
        tracing::warn!(
            key_path = %key_path.display(),
            "Using the SOFTWARE sealer: the data key's wrapping key is stored on this disk, \
             so a stolen disk is readable. Development only; use the TPM sealer in production"
        );
        let kek = match fsutil::read_private(key_path, 64)? {
            Some(bytes) => {
                let bytes = Zeroizing::new(bytes);
                if bytes.len() != 40 || &bytes[..8] != KEK_FILE_MAGIC {
                    return Err(SealError::Malformed(format!(
                        "{} is not a software sealing key file ({} bytes)",
                        key_path.display(),
                        bytes.len()
                    )));
                }
                let mut kek = Zeroizing::new([0u8; 32]);
                kek.copy_from_slice(&bytes[8..]);
                kek
            }
            None => {
                let kek: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
                let mut file = Zeroizing::new(Vec::with_capacity(40));
                file.extend_from_slice(KEK_FILE_MAGIC);
                file.extend_from_slice(&kek[..]);
                fsutil::write_private(key_path, &file)?;
                kek
            }
        };
        Ok(Self {
            kek,
            key_path: key_path.to_path_buf(),
        })
    }
}

impl Sealer for SoftwareSealer {
    fn kind(&self) -> SealerKind {
        SealerKind::Software
    }

    fn seal(&mut self, key: &DataKey) -> Result<Vec<u8>, SealError> {
        let header = blob_header(SealerKind::Software);
        let nonce: [u8; 24] = rand::random();
        let aead = XChaCha20Poly1305::new((&*self.kek).into());
        let ct = aead
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.expose(),
                    aad: &header,
                },
            )
            .map_err(|_| SealError::Malformed("encryption failed".into()))?;
        let mut blob = Vec::with_capacity(8 + 24 + ct.len());
        blob.extend_from_slice(&header);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ct);
        Ok(blob)
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<DataKey, SealError> {
        let payload = blob_payload(blob, SealerKind::Software)?;
        if payload.len() != 24 + 32 + 16 {
            return Err(SealError::Malformed(format!(
                "software payload is {} bytes, expected 72",
                payload.len()
            )));
        }
        let aead = XChaCha20Poly1305::new((&*self.kek).into());
        let pt = Zeroizing::new(
            aead.decrypt(
                XNonce::from_slice(&payload[..24]),
                Payload {
                    msg: &payload[24..],
                    aad: &blob[..8],
                },
            )
            .map_err(|_| SealError::WrongKey)?,
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(&pt);
        let key = DataKey::from_bytes(key);
        Ok(key)
    }

    fn erase(&mut self) -> Result<(), SealError> {
        fsutil::destroy(&self.key_path)?;
        Ok(())
    }
}

/// Whether [`SealedKeyFile::load_or_create`] found a key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A sealed key existed and was unsealed.
    Unsealed,
    /// No sealed key existed: a fresh one was generated, sealed and written.
    Created,
}

/// The sealed data key on disk (conventionally `<data-dir>/sealed-key`).
#[derive(Debug, Clone)]
pub struct SealedKeyFile {
    path: PathBuf,
}

impl SealedKeyFile {
    /// The sealed key at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where the sealed key lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a sealed key exists (a data dir without one must not hold ciphertext).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Which sealer made the stored blob (`None` when there is none yet), from its
    /// header alone: lets a caller refuse a mismatched sealer before opening it, so a
    /// wrong configuration creates nothing in the data dir.
    pub fn sealed_kind(&self) -> Result<Option<SealerKind>, SealError> {
        let Some(blob) = fsutil::read_private(&self.path, MAX_BLOB_LEN as u64)? else {
            return Ok(None);
        };
        if blob.len() < 8 || &blob[..6] != BLOB_MAGIC {
            return Err(SealError::Malformed(format!(
                "{} is not a sealed key (no OPSEAL header)",
                self.path.display()
            )));
        }
        SealerKind::from_byte(blob[7])
            .map(Some)
            .ok_or_else(|| SealError::Malformed(format!("unknown sealer kind {}", blob[7])))
    }

    /// The stored file's format version: `None` when there is none, `1` for a blob
    /// this type opens with a [`Sealer`], `2` ([`envelope::ENVELOPE_VERSION`]) for an
    /// enrolled [`Envelope`]. Reads the header only.
    pub fn format_version(&self) -> Result<Option<u8>, SealError> {
        let Some(blob) = fsutil::read_private(&self.path, MAX_BLOB_LEN as u64)? else {
            return Ok(None);
        };
        if blob.len() < 8 || &blob[..6] != BLOB_MAGIC {
            return Err(SealError::Malformed(format!(
                "{} is not a sealed key (no OPSEAL header)",
                self.path.display()
            )));
        }
        Ok(Some(blob[6]))
    }

    /// The PCRs a TPM blob is sealed to (from its payload's PCR bitmap), for error
    /// messages: `None` when there is no blob or it is not a TPM blob.
    pub fn sealed_pcrs(&self) -> Result<Option<Vec<u8>>, SealError> {
        let Some(blob) = fsutil::read_private(&self.path, MAX_BLOB_LEN as u64)? else {
            return Ok(None);
        };
        let Ok(payload) = blob_payload(&blob, SealerKind::Tpm) else {
            return Ok(None);
        };
        let Some(bitmap) = payload.get(..4) else {
            return Ok(None);
        };
        let bitmap = u32::from_le_bytes([bitmap[0], bitmap[1], bitmap[2], bitmap[3]]);
        Ok(Some((0..24u8).filter(|i| bitmap & (1 << i) != 0).collect()))
    }

    /// Unseals the data key, or on first start generates one, seals it and stores it.
    ///
    /// A blob that exists but does not open is an error, never a reason to make a new
    /// key: that would silently orphan all the data encrypted under the old one.
    pub fn load_or_create(
        &self,
        sealer: &mut dyn Sealer,
    ) -> Result<(DataKey, KeyOrigin), SealError> {
        match fsutil::read_private(&self.path, MAX_BLOB_LEN as u64)? {
            Some(blob) => Ok((sealer.unseal(&blob)?, KeyOrigin::Unsealed)),
            None => {
                let key = DataKey::generate();
                let blob = sealer.seal(&key)?;
                fsutil::write_private(&self.path, &blob)?;
                Ok((key, KeyOrigin::Created))
            }
        }
    }

    /// Unseals an existing data key; refuses when there is none.
    pub fn unseal(&self, sealer: &mut dyn Sealer) -> Result<DataKey, SealError> {
        match fsutil::read_private(&self.path, MAX_BLOB_LEN as u64)? {
            Some(blob) => sealer.unseal(&blob),
            None => Err(SealError::Missing(self.path.clone())),
        }
    }

    /// Crypto-erase: destroys the sealed key and the sealer's own key material, which
    /// leaves every byte encrypted under the data key unreadable for good. The caller
    /// also drops its [`crate::vault::KeyVault`] (zeroizing the key in memory) and may
    /// then delete the ciphertext itself.
    pub fn crypto_erase(&self, sealer: &mut dyn Sealer) -> Result<(), SealError> {
        fsutil::destroy(&self.path)?;
        sealer.erase()?;
        tracing::warn!(path = %self.path.display(), "Crypto-erased the sealed data key");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(dir: &Path) -> SoftwareSealer {
        SoftwareSealer::open(&dir.join("software-kek"), true).unwrap()
    }

    #[test]
    fn software_seal_roundtrip_and_key_persists() {
        let dir = tempfile::tempdir().unwrap();
        let file = SealedKeyFile::new(dir.path().join("sealed-key"));
        let (k1, o1) = file.load_or_create(&mut sealer(dir.path())).unwrap();
        assert_eq!(o1, KeyOrigin::Created);
        let (k2, o2) = file.load_or_create(&mut sealer(dir.path())).unwrap();
        assert_eq!(o2, KeyOrigin::Unsealed);
        assert_eq!(k1.expose(), k2.expose());
    }

    #[test]
    fn software_sealer_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let err = SoftwareSealer::open(&dir.path().join("kek"), false).unwrap_err();
        assert!(matches!(err, SealError::SoftwareNotAllowed));
        assert!(
            !dir.path().join("kek").exists(),
            "a refused sealer writes nothing"
        );
    }

    #[test]
    fn blob_from_another_machine_does_not_open() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let blob = sealer(a.path()).seal(&DataKey::generate()).unwrap();
        assert!(matches!(
            sealer(b.path()).unseal(&blob),
            Err(SealError::WrongKey)
        ));
    }

    #[test]
    fn bad_blobs_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sealer(dir.path());
        let good = s.seal(&DataKey::generate()).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "empty"),
            (good[..7].to_vec(), "truncated header"),
            (
                {
                    let mut b = good.clone();
                    b[0] = b'X';
                    b
                },
                "bad magic",
            ),
            (
                {
                    let mut b = good.clone();
                    b[6] = 9;
                    b
                },
                "future version",
            ),
            (
                {
                    let mut b = good.clone();
                    b[7] = 77;
                    b
                },
                "unknown kind",
            ),
            (good[..good.len() - 1].to_vec(), "truncated payload"),
            (vec![0u8; MAX_BLOB_LEN + 1], "oversized"),
        ];
        for (blob, what) in cases {
            assert!(
                matches!(s.unseal(&blob), Err(SealError::Malformed(_))),
                "{what} must be malformed"
            );
        }
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(s.unseal(&flipped), Err(SealError::WrongKey)));
        let mut header_flip = good.clone();
        header_flip[7] = SealerKind::Tpm.byte();
        assert!(matches!(
            s.unseal(&header_flip),
            Err(SealError::WrongSealer {
                found: SealerKind::Tpm,
                ..
            })
        ));
    }

    #[test]
    fn sealed_kind_reads_the_header_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = SealedKeyFile::new(dir.path().join("sealed-key"));
        assert_eq!(file.sealed_kind().unwrap(), None);
        file.load_or_create(&mut sealer(dir.path())).unwrap();
        assert_eq!(file.sealed_kind().unwrap(), Some(SealerKind::Software));
        assert_eq!(file.sealed_pcrs().unwrap(), None, "not a TPM blob");
        fsutil::write_private(file.path(), b"garbage").unwrap();
        assert!(matches!(file.sealed_kind(), Err(SealError::Malformed(_))));
    }

    #[test]
    fn corrupt_kek_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek");
        fsutil::write_private(&path, b"not a key").unwrap();
        assert!(matches!(
            SoftwareSealer::open(&path, true),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn crypto_erase_makes_the_key_unrecoverable() {
        let dir = tempfile::tempdir().unwrap();
        let file = SealedKeyFile::new(dir.path().join("sealed-key"));
        let mut s = sealer(dir.path());
        let (key, _) = file.load_or_create(&mut s).unwrap();
        file.crypto_erase(&mut s).unwrap();
        assert!(!file.exists());
        assert!(!dir.path().join("software-kek").exists());
        assert!(matches!(
            file.unseal(&mut sealer(dir.path())),
            Err(SealError::Missing(_))
        ));
        // A new start makes a new, different key: the old data stays unreadable.
        let (fresh, origin) = file.load_or_create(&mut sealer(dir.path())).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        assert_ne!(fresh.expose(), key.expose());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = DataKey::from_bytes([0xAB; 32]);
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
