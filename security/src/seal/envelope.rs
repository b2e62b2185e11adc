//! The enrolled sealed key: `"OPSEAL"` **version 2**, a clevis-style envelope around the
//! data key `K`.
//!
//! `K` is wrapped under two shares that must both be present:
//!
//! - **`T`**, the TPM share: 32 random bytes sealed by the trust anchor
//!   ([`Anchor::seal_share`]) to the boot state *and to the lock*, so after
//!   [`Anchor::lock`] the TPM never releases it again, on any OS;
//! - **`N`**, the second share, which the thief does not carry away. The unlock policy
//!   ([`UnlockPolicy`], fixed when the envelope is made) says which factors may supply
//!   it, any one sufficing:
//!   - **HQ** (`hq`): `N` sealed in a box under a key only HQ can help rebuild, through a
//!     blinded exchange ([`crate::escrow`]): the unit sends a random-looking point, HQ
//!     answers, and HQ never learns `N` or which unit asked;
//!   - **PIN** (`pin`): `N` sealed by the anchor to the boot state, the lock and a store
//!     manager's PIN ([`Anchor::seal_pin`]; the TPM rate-limits guesses), so a lone unit
//!     that restarts during a WAN outage sells again once the manager enters it;
//!   - **neither** ("TPM only", [`UnlockPolicy::is_tpm_only`]): `N` is 32 zero bytes and
//!     the TPM share alone opens `K`. Weaker (a box stolen whole and booted in the same
//!     boot state, before any lock, opens), so the server says so loudly.
//!
//! `wrapped = XChaCha20-Poly1305(BLAKE3 derive_key("outpost sealed-key v2 wrap", T ‖ N), K)`.
//!
//! **Recovery.** When HQ escrow keys are given, a recovery box holds `K` itself under a
//! second escrow key of HQ (a separate key, so the share key HQ uses online cannot open
//! it): after a lock the TPM share is gone for good, and HQ's recovery is the only way
//! back. The caller then [`Envelope::reseal`]s `K` under a new TPM share bound to the
//! current lock.
//!
//! # File format
//!
//! The **header** is the associated data of every AEAD in the file and the input of the
//! key MAC, so a changed byte of it (policy, escrow keys, client points) makes every box
//! refuse to open:
//!
//! ```text
//! "OPSEAL" | 2 | anchor kind (1 software, 2 TPM) | policy (bit 0 HQ, bit 1 PIN)
//!   | escrow (bit 0 recovery box, bit 1 HQ share box, bit 2 PIN share unset)
//!   | [recovery: HQ public key 32 | client point 32] | [HQ share: public 32 | client 32]
//! ```
//!
//! then the **body**:
//!
//! ```text
//! key MAC 32     BLAKE3 keyed(derive_key("outpost sealed-key v2 header mac", K), header)
//! u16 BE len + TPM share blob (anchor blob of T)
//! wrapped        nonce 24 | ciphertext of K 48
//! [recovery box  nonce 24 | ciphertext of K 48]
//! [HQ share box  nonce 24 | ciphertext of N 48]
//! [u16 BE len + PIN blob (anchor blob of N); absent while the PIN is unset]
//! ```
//!
//! Nothing may follow; at most [`MAX_BLOB_LEN`] bytes. The key MAC lets a caller holding
//! `K` check that the header (in particular HQ's public keys, which a reseal copies into
//! the new envelope) was written by someone who held `K`.
//!
//! # Version 1 and enrolment
//!
//! Version-1 files (`SealedKeyFile` with a `Sealer`) stay readable for units that are
//! not enrolled. Enrolment converts one in place, keeping `K` (so nothing encrypted
//! under it is re-encrypted): unseal the v1 blob ([`super::SealedKeyFile::unseal`]),
//! provision the anchor, [`Envelope::create`] with that `K`, and [`Envelope::write`]
//! over the same path (atomic rename: a crash leaves the v1 file or the v2 one).

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{BLOB_MAGIC, DataKey, MAX_BLOB_LEN, SealError, SealerKind};
use crate::anchor::{Anchor, Secret};
use crate::escrow::{self, Blinding, ClientPoint, EscrowPublic, WrapKey};
use crate::fsutil;

/// The format version of an enrolled envelope.
pub const ENVELOPE_VERSION: u8 = 2;
/// Fewest characters a PIN may have.
pub const MIN_PIN_CHARS: usize = 4;
/// Most characters a PIN may have.
pub const MAX_PIN_CHARS: usize = 64;

const SHARE_PURPOSE: &str = "sealed-key share";
const RECOVERY_PURPOSE: &str = "sealed-key recovery";
const BOX_LEN: usize = 24 + 32 + 16;

/// Which second factors may supply the second share; any one suffices. Fixed when the
/// envelope is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UnlockPolicy {
    /// HQ's network share (blinded escrow).
    pub hq: bool,
    /// A store manager's PIN.
    pub pin: bool,
}

impl UnlockPolicy {
    /// No second factor: the TPM share alone.
    pub const TPM_ONLY: UnlockPolicy = UnlockPolicy {
        hq: false,
        pin: false,
    };

    /// Whether the TPM share alone opens the data key (weaker: see the module docs).
    pub fn is_tpm_only(&self) -> bool {
        !self.hq && !self.pin
    }

    fn bits(self) -> u8 {
        u8::from(self.hq) | u8::from(self.pin) << 1
    }

    fn from_bits(bits: u8) -> Result<Self, SealError> {
        if bits & !0b11 != 0 {
            return Err(SealError::Malformed(format!(
                "unknown policy bits {bits:#04x}"
            )));
        }
        Ok(Self {
            hq: bits & 1 != 0,
            pin: bits & 2 != 0,
        })
    }
}

impl fmt::Display for UnlockPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.hq, self.pin) {
            (false, false) => "tpm only",
            (true, false) => "tpm + hq",
            (false, true) => "tpm + pin",
            (true, true) => "tpm + (hq or pin)",
        })
    }
}

/// HQ's two escrow public keys for a unit's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HqEscrowKeys {
    /// Answers the network share requests of units at every start (online).
    pub share: EscrowPublic,
    /// Answers recovery requests after a lock (kept apart, answered after a human
    /// decision).
    pub recovery: EscrowPublic,
}

/// The TPM share `T`, once unsealed. Zeroized on drop; `Debug` never shows it.
pub struct TpmShare(Secret);

impl TpmShare {
    /// The share's bytes (for comparisons in tests and tools, never for storage).
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose()
    }
}

impl fmt::Debug for TpmShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TpmShare(..)")
    }
}

/// The second share `N`, from whichever factor supplied it. Zeroized on drop; `Debug`
/// never shows it.
pub struct SecondShare(Secret);

impl fmt::Debug for SecondShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecondShare(..)")
    }
}

/// Which escrow box a pending request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EscrowUse {
    Share,
    Recovery,
}

/// A request sent to HQ, waiting for its reply: holds the blinding, which the reply
/// needs and which must not be reused. `Debug` never shows it.
#[derive(Debug)]
pub struct PendingEscrow {
    blinding: Blinding,
    for_box: EscrowUse,
}

/// One escrow box: HQ's public key, the client point, and the sealed secret.
#[derive(Clone)]
struct EscrowBox {
    public: EscrowPublic,
    client: ClientPoint,
    sealed: [u8; BOX_LEN],
}

/// The enrolled sealed key (see the module docs).
#[derive(Clone)]
pub struct Envelope {
    kind: SealerKind,
    policy: UnlockPolicy,
    recovery: Option<EscrowBox>,
    hq_share: Option<EscrowBox>,
    key_mac: [u8; 32],
    tpm_share: Vec<u8>,
    wrapped: [u8; BOX_LEN],
    pin_share: Option<Vec<u8>>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("kind", &self.kind)
            .field("policy", &self.policy)
            .field("recovery", &self.recovery.is_some())
            .finish_non_exhaustive()
    }
}

fn kind_byte(kind: SealerKind) -> u8 {
    match kind {
        SealerKind::Software => 1,
        SealerKind::Tpm => 2,
    }
}

fn aead_seal(key: &[u8; 32], aad: &[u8], msg: &[u8; 32]) -> Result<[u8; BOX_LEN], SealError> {
    let nonce: [u8; 24] = rand::random();
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .map_err(|_| SealError::Malformed("encryption failed".into()))?;
    let mut out = [0u8; BOX_LEN];
    out[..24].copy_from_slice(&nonce);
    out[24..].copy_from_slice(&ct);
    Ok(out)
}

fn aead_open(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8; BOX_LEN],
) -> Result<Zeroizing<[u8; 32]>, SealError> {
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
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&pt);
    Ok(out)
}

fn wrap_key(t: &TpmShare, n: &SecondShare) -> Zeroizing<[u8; 32]> {
    let mut input = Zeroizing::new([0u8; 64]);
    input[..32].copy_from_slice(t.expose());
    input[32..].copy_from_slice(n.0.expose());
    Zeroizing::new(blake3::derive_key("outpost sealed-key v2 wrap", &input[..]))
}

fn key_mac(key: &DataKey, header: &[u8]) -> [u8; 32] {
    let mac_key = Zeroizing::new(blake3::derive_key(
        "outpost sealed-key v2 header mac",
        key.expose(),
    ));
    *blake3::keyed_hash(&mac_key, header).as_bytes()
}

fn check_pin(pin: &SecretString) -> Result<(), SealError> {
    let chars = pin.expose_secret().chars().count();
    if !(MIN_PIN_CHARS..=MAX_PIN_CHARS).contains(&chars) {
        return Err(SealError::Config(format!(
            "a PIN must have {MIN_PIN_CHARS} to {MAX_PIN_CHARS} characters, not {chars}"
        )));
    }
    Ok(())
}

/// Reads the envelope's fields off the front of a byte slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], SealError> {
        if self.0.len() < n {
            return Err(SealError::Malformed(format!("truncated {what}")));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], SealError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn sized(&mut self, what: &str) -> Result<&'a [u8], SealError> {
        let len = self.array::<2>(what)?;
        self.take(usize::from(u16::from_be_bytes(len)), what)
    }
}

impl Envelope {
    /// Makes an envelope for `key`: seals a fresh TPM share with `anchor` (which must be
    /// provisioned), and the second share for each factor `policy` accepts; with `hq`,
    /// also the recovery box.
    ///
    /// Refused ([`SealError::Config`]): `policy.hq` without `hq` keys, `policy.pin`
    /// without a PIN, a PIN the policy does not accept, a PIN outside
    /// [`MIN_PIN_CHARS`]..=[`MAX_PIN_CHARS`] characters.
    pub fn create(
        anchor: &mut dyn Anchor,
        key: &DataKey,
        policy: UnlockPolicy,
        hq: Option<&HqEscrowKeys>,
        pin: Option<&SecretString>,
    ) -> Result<Envelope, SealError> {
        if policy.hq && hq.is_none() {
            return Err(SealError::Config(
                "the unlock policy accepts HQ's share but no HQ escrow keys were given".into(),
            ));
        }
        Self::build(
            anchor,
            key,
            policy,
            hq.map(|k| k.recovery),
            hq.filter(|_| policy.hq).map(|k| k.share),
            pin,
            false,
        )
    }

    fn build(
        anchor: &mut dyn Anchor,
        key: &DataKey,
        policy: UnlockPolicy,
        recovery_public: Option<EscrowPublic>,
        share_public: Option<EscrowPublic>,
        pin: Option<&SecretString>,
        pin_later: bool,
    ) -> Result<Envelope, SealError> {
        match (policy.pin, pin) {
            (true, None) if pin_later => {}
            (true, None) => {
                return Err(SealError::Config(
                    "the unlock policy accepts a PIN but none was given".into(),
                ));
            }
            (false, Some(_)) => {
                return Err(SealError::Config(
                    "a PIN was given but the unlock policy does not accept one".into(),
                ));
            }
            (true, Some(pin)) => check_pin(pin)?,
            (false, None) => {}
        }
        let kind = anchor.kind();
        let t = TpmShare(Secret::generate());
        let tpm_share = anchor.seal_share(&t.0)?;
        let n = if policy.is_tpm_only() {
            SecondShare(Secret::from_bytes([0; 32]))
        } else {
            SecondShare(Secret::generate())
        };
        let recovery = recovery_public
            .map(|public| escrow::provision(&public, RECOVERY_PURPOSE).map(|(c, w)| (public, c, w)))
            .transpose()?;
        let share = share_public
            .map(|public| escrow::provision(&public, SHARE_PURPOSE).map(|(c, w)| (public, c, w)))
            .transpose()?;
        let mut envelope = Envelope {
            kind,
            policy,
            recovery: recovery.as_ref().map(|(public, client, _)| EscrowBox {
                public: *public,
                client: *client,
                sealed: [0; BOX_LEN],
            }),
            hq_share: share.as_ref().map(|(public, client, _)| EscrowBox {
                public: *public,
                client: *client,
                sealed: [0; BOX_LEN],
            }),
            key_mac: [0; 32],
            tpm_share,
            wrapped: [0; BOX_LEN],
            pin_share: None,
        };
        // The PIN share's presence is in the header: seal it before the header is used.
        if let Some(pin) = pin {
            envelope.pin_share = Some(anchor.seal_pin(&n.0, pin)?);
        }
        let header = envelope.header();
        envelope.key_mac = key_mac(key, &header);
        envelope.wrapped = aead_seal(&wrap_key(&t, &n), &header, key.expose())?;
        if let (Some(b), Some((_, _, w))) = (envelope.recovery.as_mut(), recovery.as_ref()) {
            b.sealed = aead_seal(w.expose(), &header, key.expose())?;
        }
        if let (Some(b), Some((_, _, w))) = (envelope.hq_share.as_mut(), share.as_ref()) {
            b.sealed = aead_seal(w.expose(), &header, n.0.expose())?;
        }
        Ok(envelope)
    }

    /// The authenticated header (see the module docs).
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(10 + 128);
        h.extend_from_slice(BLOB_MAGIC);
        h.push(ENVELOPE_VERSION);
        h.push(kind_byte(self.kind));
        h.push(self.policy.bits());
        h.push(
            u8::from(self.recovery.is_some())
                | u8::from(self.hq_share.is_some()) << 1
                | u8::from(self.policy.pin && self.pin_share.is_none()) << 2,
        );
        for b in [&self.recovery, &self.hq_share].into_iter().flatten() {
            h.extend_from_slice(&b.public.to_bytes());
            h.extend_from_slice(&b.client.to_bytes());
        }
        h
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SealError> {
        let mut out = self.header();
        out.extend_from_slice(&self.key_mac);
        let put_sized = |out: &mut Vec<u8>, part: &[u8]| -> Result<(), SealError> {
            let len = u16::try_from(part.len())
                .map_err(|_| SealError::Malformed("anchor blob larger than 64 KiB".into()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
            Ok(())
        };
        put_sized(&mut out, &self.tpm_share)?;
        out.extend_from_slice(&self.wrapped);
        for b in [&self.recovery, &self.hq_share].into_iter().flatten() {
            out.extend_from_slice(&b.sealed);
        }
        if let Some(pin) = &self.pin_share {
            put_sized(&mut out, pin)?;
        }
        if out.len() > MAX_BLOB_LEN {
            return Err(SealError::Malformed(format!(
                "the envelope would be {} bytes, more than {MAX_BLOB_LEN}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Parses a file's bytes. Anything but a well-formed version-2 envelope is
    /// [`SealError::Malformed`] with the reason.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, SealError> {
        if bytes.len() > MAX_BLOB_LEN {
            return Err(SealError::Malformed(format!(
                "{} bytes, more than {MAX_BLOB_LEN}",
                bytes.len()
            )));
        }
        let mut c = Cursor(bytes);
        if c.take(6, "header")? != BLOB_MAGIC {
            return Err(SealError::Malformed("missing OPSEAL magic".into()));
        }
        match c.array::<1>("header")?[0] {
            ENVELOPE_VERSION => {}
            1 => {
                return Err(SealError::Malformed(
                    "format version 1: this unit is not enrolled; open it with SealedKeyFile"
                        .into(),
                ));
            }
            v => {
                return Err(SealError::Malformed(format!(
                    "format version {v} (this build reads {ENVELOPE_VERSION})"
                )));
            }
        }
        let kind = match c.array::<1>("header")?[0] {
            1 => SealerKind::Software,
            2 => SealerKind::Tpm,
            k => return Err(SealError::Malformed(format!("unknown anchor kind {k}"))),
        };
        let policy = UnlockPolicy::from_bits(c.array::<1>("header")?[0])?;
        let escrow = c.array::<1>("header")?[0];
        if escrow & !0b111 != 0 {
            return Err(SealError::Malformed(format!(
                "unknown escrow bits {escrow:#04x}"
            )));
        }
        let has_recovery = escrow & 1 != 0;
        let has_share = escrow & 2 != 0;
        let pin_unset = escrow & 4 != 0;
        if pin_unset && !policy.pin {
            return Err(SealError::Malformed(
                "a PIN marked unset under a policy without a PIN".into(),
            ));
        }
        if has_share != policy.hq {
            return Err(SealError::Malformed(
                "the HQ share box does not match the unlock policy".into(),
            ));
        }
        let mut read_box_keys =
            |present: bool, what: &str| -> Result<Option<EscrowBox>, SealError> {
                if !present {
                    return Ok(None);
                }
                let bad = |e: escrow::EscrowError| SealError::Malformed(format!("{what}: {e}"));
                let public = EscrowPublic::from_bytes(&c.array::<32>(what)?).map_err(bad)?;
                let client = ClientPoint::from_bytes(&c.array::<32>(what)?).map_err(bad)?;
                Ok(Some(EscrowBox {
                    public,
                    client,
                    sealed: [0; BOX_LEN],
                }))
            };
        let mut recovery = read_box_keys(has_recovery, "recovery keys")?;
        let mut hq_share = read_box_keys(has_share, "HQ share keys")?;
        let key_mac = c.array::<32>("key MAC")?;
        let tpm_share = c.sized("TPM share")?.to_vec();
        let wrapped = c.array::<BOX_LEN>("wrapped key")?;
        if let Some(b) = recovery.as_mut() {
            b.sealed = c.array::<BOX_LEN>("recovery box")?;
        }
        if let Some(b) = hq_share.as_mut() {
            b.sealed = c.array::<BOX_LEN>("HQ share box")?;
        }
        let pin_share = if policy.pin && !pin_unset {
            Some(c.sized("PIN share")?.to_vec())
        } else {
            None
        };
        if !c.0.is_empty() {
            return Err(SealError::Malformed(format!(
                "{} trailing bytes",
                c.0.len()
            )));
        }
        Ok(Envelope {
            kind,
            policy,
            recovery,
            hq_share,
            key_mac,
            tpm_share,
            wrapped,
            pin_share,
        })
    }

    /// Writes the envelope to `path` atomically, mode 0600, fsync'd (replacing a
    /// version-1 file there at enrolment).
    pub fn write(&self, path: &Path) -> Result<(), SealError> {
        fsutil::write_private(path, &self.to_bytes()?)?;
        Ok(())
    }

    /// Reads the envelope at `path`: [`SealError::Missing`] when there is none.
    pub fn read(path: &Path) -> Result<Envelope, SealError> {
        match fsutil::read_private(path, MAX_BLOB_LEN as u64)? {
            Some(bytes) => Self::from_bytes(&bytes),
            None => Err(SealError::Missing(path.to_path_buf())),
        }
    }

    /// Which kind of anchor made it.
    pub fn kind(&self) -> SealerKind {
        self.kind
    }

    /// Which second factors it accepts (any one suffices).
    pub fn needs(&self) -> UnlockPolicy {
        self.policy
    }

    /// Whether the PIN opens it now: the policy accepts a PIN and one is set (a reseal
    /// after a lock leaves it unset until the manager enters it again: the old PIN
    /// share was bound to the old lock).
    pub fn pin_ready(&self) -> bool {
        self.policy.pin && self.pin_share.is_some()
    }

    /// Whether HQ can recover the data key (a recovery box exists).
    pub fn has_recovery(&self) -> bool {
        self.recovery.is_some()
    }

    /// The TPM share's anchor blob (for `testing::tpm2_tools_unseal_share`).
    pub fn tpm_share_blob(&self) -> &[u8] {
        &self.tpm_share
    }

    fn check_anchor(&self, anchor: &dyn Anchor) -> Result<(), SealError> {
        if anchor.kind() != self.kind {
            return Err(SealError::WrongSealer {
                expected: anchor.kind(),
                found: self.kind,
            });
        }
        Ok(())
    }

    /// Unseals the TPM share: [`SealError::Locked`] after a lock,
    /// [`SealError::PolicyMismatch`] in another boot state.
    pub fn open_share(&self, anchor: &mut dyn Anchor) -> Result<TpmShare, SealError> {
        self.check_anchor(anchor)?;
        Ok(TpmShare(anchor.unseal_share(&self.tpm_share)?))
    }

    /// The second share of a TPM-only envelope (32 zero bytes); refused when the policy
    /// names a factor.
    pub fn tpm_only_share(&self) -> Result<SecondShare, SealError> {
        if !self.policy.is_tpm_only() {
            return Err(SealError::FactorNotEnrolled("the TPM alone"));
        }
        Ok(SecondShare(Secret::from_bytes([0; 32])))
    }

    /// The second share from the PIN: [`SealError::WrongPin`],
    /// [`SealError::PinLockedOut`], [`SealError::Locked`] as the anchor says.
    pub fn pin_share(
        &self,
        anchor: &mut dyn Anchor,
        pin: &SecretString,
    ) -> Result<SecondShare, SealError> {
        self.check_anchor(anchor)?;
        let blob = self
            .pin_share
            .as_ref()
            .ok_or(SealError::FactorNotEnrolled(if self.policy.pin {
                "a PIN (not set again since the last lock: an admin sets it while the unit is unlocked)"
            } else {
                "a PIN"
            }))?;
        Ok(SecondShare(anchor.unseal_pin(blob, pin)?))
    }

    fn request(
        &self,
        b: Option<&EscrowBox>,
        for_box: EscrowUse,
    ) -> Result<([u8; 32], PendingEscrow), SealError> {
        let b = b.ok_or(SealError::FactorNotEnrolled(match for_box {
            EscrowUse::Share => "HQ's share",
            EscrowUse::Recovery => "HQ's recovery",
        }))?;
        let (request, blinding) = escrow::blind(&b.client)?;
        Ok((request, PendingEscrow { blinding, for_box }))
    }

    fn finish(
        &self,
        b: Option<&EscrowBox>,
        pending: PendingEscrow,
        for_box: EscrowUse,
        reply: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, SealError> {
        if pending.for_box != for_box {
            return Err(SealError::Config(format!(
                "a pending {:?} request was finished as a {for_box:?} request",
                pending.for_box
            )));
        }
        let b = b.ok_or(SealError::FactorNotEnrolled("HQ escrow"))?;
        let purpose = match for_box {
            EscrowUse::Share => SHARE_PURPOSE,
            EscrowUse::Recovery => RECOVERY_PURPOSE,
        };
        let key: WrapKey = escrow::unblind(pending.blinding, &b.public, reply, purpose)?;
        aead_open(key.expose(), &self.header(), &b.sealed)
    }

    /// The blinded request to send HQ for the network share (a fresh random point each
    /// time), and what [`Envelope::finish_hq_share`] needs with the reply.
    pub fn hq_share_request(&self) -> Result<([u8; 32], PendingEscrow), SealError> {
        self.request(self.hq_share.as_ref(), EscrowUse::Share)
    }

    /// The second share from HQ's reply; a reply from another HQ key, or to another
    /// request, is [`SealError::WrongKey`].
    pub fn finish_hq_share(
        &self,
        pending: PendingEscrow,
        reply: &[u8; 32],
    ) -> Result<SecondShare, SealError> {
        let n = self.finish(self.hq_share.as_ref(), pending, EscrowUse::Share, reply)?;
        Ok(SecondShare(Secret::from_bytes(*n)))
    }

    /// Opens the data key from the two shares; wrong shares are
    /// [`SealError::WrongKey`].
    pub fn unwrap(&self, t: &TpmShare, n: &SecondShare) -> Result<DataKey, SealError> {
        let header = self.header();
        let key = aead_open(&wrap_key(t, n), &header, &self.wrapped)?;
        let key = DataKey::from_bytes(*key);
        self.check_key(&key, &header)?;
        Ok(key)
    }

    fn check_key(&self, key: &DataKey, header: &[u8]) -> Result<(), SealError> {
        if bool::from(key_mac(key, header).ct_eq(&self.key_mac)) {
            Ok(())
        } else {
            Err(SealError::WrongKey)
        }
    }

    /// The blinded request to send HQ's recovery key (after a lock), and what
    /// [`Envelope::finish_recovery`] needs with the reply.
    pub fn recovery_request(&self) -> Result<([u8; 32], PendingEscrow), SealError> {
        self.request(self.recovery.as_ref(), EscrowUse::Recovery)
    }

    /// The data key from HQ's recovery reply, checked against the header's key MAC; a
    /// wrong reply is [`SealError::WrongKey`].
    pub fn finish_recovery(
        &self,
        pending: PendingEscrow,
        reply: &[u8; 32],
    ) -> Result<DataKey, SealError> {
        let key = self.finish(self.recovery.as_ref(), pending, EscrowUse::Recovery, reply)?;
        let key = DataKey::from_bytes(*key);
        self.check_key(&key, &self.header())?;
        Ok(key)
    }

    /// A new envelope for the same `key` and unlock policy: a fresh TPM share bound to
    /// the anchor's current lock, a fresh second share, fresh escrow boxes under the
    /// same HQ keys. This is how a unit comes back after a lock and HQ's recovery.
    ///
    /// `key` must be this envelope's data key (checked with the key MAC:
    /// [`SealError::WrongKey`] otherwise), so a header edited to name another HQ is
    /// never copied. The old PIN share was bound to the old lock: with `pin` the new
    /// envelope has a PIN share again (a new PIN changes it); without, a PIN policy's
    /// share stays unset ([`Envelope::pin_ready`]) until the manager enters it and this
    /// is called again with it, while the unit runs unlocked. HQ's share and recovery
    /// work meanwhile.
    pub fn reseal(
        &self,
        anchor: &mut dyn Anchor,
        key: &DataKey,
        pin: Option<&SecretString>,
    ) -> Result<Envelope, SealError> {
        self.check_anchor(anchor)?;
        self.check_key(key, &self.header())?;
        Self::build(
            anchor,
            key,
            self.policy,
            self.recovery.as_ref().map(|b| b.public),
            self.hq_share.as_ref().map(|b| b.public),
            pin,
            true,
        )
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
