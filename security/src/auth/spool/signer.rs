//! The key that signs audit entries spooled while locked, and what it signs.
//!
//! Sealing a spooled entry needs only the spool's public key, which is kept in clear,
//! so a seal proves nothing about who wrote the entry. The signature does: it is made
//! by an Ed25519 key only this unit holds ([`SpoolSigner`]), over a domain-separated
//! encoding of the entry and of where it sits ([`message`]): the spool's public key
//! and the entry's position. An entry moved to another position or another unit's
//! spool, or rewritten in any field, no longer verifies.
//!
//! Where the signing key comes from is the caller's choice, and the seam is
//! [`SpoolSigner`]'s constructors: the server derives it from the data key at open
//! ([`SpoolSigner::derive`], purpose `"audit-spool-sign"`) and keeps it, alone, in
//! memory while the data key is wiped; a signing key sealed by the TPM with the unit's
//! identity can be handed in instead with [`SpoolSigner::from_secret_bytes`].

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::SpooledEntry;
use crate::vault::{CryptoError, KeyVault};

/// Domain separation: no other signature this unit makes can be taken for a spooled
/// entry's, and a later format changes this string.
const SIGN_CONTEXT: &[u8] = b"outpost 2026-12 audit spool entry v2";

/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// The Ed25519 key that signs spooled audit entries. Zeroized on drop.
pub struct SpoolSigner {
    key: SigningKey,
}

impl fmt::Debug for SpoolSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolSigner")
            .field("verifying_key", &hex(self.key.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl SpoolSigner {
    /// The vault purpose the server's signing key is derived under.
    pub const PURPOSE: &'static str = "audit-spool-sign";

    /// The signing key derived from the data key in `vault`
    /// (`KeyVault::subkey("audit-spool-sign")`): the same data key always gives the
    /// same key pair, so a restart signs and verifies with the same one.
    pub fn derive(vault: &KeyVault) -> Result<Self, CryptoError> {
        Ok(Self::from_secret_bytes(
            vault.subkey(Self::PURPOSE)?.expose(),
        ))
    }

    /// A signing key from its 32 secret bytes: for a key kept elsewhere than the data
    /// key (sealed by the TPM with the unit's identity), or an attacker's key in tests.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// The key that verifies its signatures (public: it cannot sign).
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `message` (see [`message`]).
    pub(super) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

/// What is signed for `entry` at `position` of the spool whose public key is
/// `recipient`: the context string, the recipient, the position, the time, then actor,
/// action and detail, each length-prefixed so no two entries encode alike.
pub(super) fn message(recipient: &[u8; 32], position: u64, entry: &SpooledEntry) -> Vec<u8> {
    let fields = [&entry.actor, &entry.action, &entry.detail];
    let len = SIGN_CONTEXT.len() + 32 + 8 + 8 + fields.iter().map(|f| 8 + f.len()).sum::<usize>();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(SIGN_CONTEXT);
    m.extend_from_slice(recipient);
    m.extend_from_slice(&position.to_be_bytes());
    m.extend_from_slice(&entry.at_ms.to_be_bytes());
    for field in fields {
        m.extend_from_slice(&(field.len() as u64).to_be_bytes());
        m.extend_from_slice(field.as_bytes());
    }
    m
}

/// Whether `signature` is `key`'s over `message` (strict verification: no malleable
/// or small-order encodings).
pub(super) fn verifies(
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> bool {
    key.verify_strict(message, &Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::DataKey;

    fn entry() -> SpooledEntry {
        SpooledEntry {
            at_ms: 1_700_000_000_000,
            actor: "-".into(),
            action: "login.failed".into(),
            detail: "user \"x\"".into(),
        }
    }

    #[test]
    fn derived_from_the_data_key_and_stable() {
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let a = SpoolSigner::derive(&vault).unwrap();
        let b = SpoolSigner::derive(&vault).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        let other = SpoolSigner::derive(&KeyVault::new(DataKey::from_bytes([4; 32]))).unwrap();
        assert_ne!(a.verifying_key(), other.verifying_key());
        // Not the raw subkey of another purpose.
        let spool = vault.subkey("audit-spool").unwrap();
        assert_ne!(
            SpoolSigner::from_secret_bytes(spool.expose()).verifying_key(),
            a.verifying_key()
        );
        assert!(
            !format!("{a:?}").contains(&hex(vault.subkey(SpoolSigner::PURPOSE).unwrap().expose()))
        );
    }

    #[test]
    fn a_signature_holds_only_for_its_entry_position_and_spool() {
        let signer = SpoolSigner::from_secret_bytes(&[9; 32]);
        let key = signer.verifying_key();
        let m = message(&[1; 32], 7, &entry());
        let sig = signer.sign(&m);
        assert!(verifies(&key, &m, &sig));
        assert!(!verifies(&key, &message(&[1; 32], 8, &entry()), &sig));
        assert!(!verifies(&key, &message(&[2; 32], 7, &entry()), &sig));
        let mut later = entry();
        later.at_ms += 1;
        assert!(!verifies(&key, &message(&[1; 32], 7, &later), &sig));
        // Field boundaries are part of what is signed.
        let mut shifted = entry();
        shifted.actor = "-login.failed".into();
        shifted.action = String::new();
        assert_ne!(
            message(&[1; 32], 7, &entry()),
            message(&[1; 32], 7, &shifted)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(!verifies(&key, &m, &flipped));
        let other = SpoolSigner::from_secret_bytes(&[8; 32]);
        assert!(!verifies(&other.verifying_key(), &m, &sig));
    }
}
