//! Keys derived from the data key, and the AEAD for data at rest.
//!
//! [`KeyVault`] holds the unsealed data key and derives one independent 32-byte subkey
//! per purpose with BLAKE3's key derivation mode (context string
//! `"outpost 2026-12 subkey v1 <purpose>"`), so a key that leaks from one use (say the
//! audit chain) says nothing about another (say the sales tree).
//!
//! [`Cipher`] is XChaCha20-Poly1305 with a random 24-byte nonce per value (random
//! nonces are safe at this size for any number of values a store will ever write).
//! Every value is sealed with **associated data** naming where it lives (tree name and
//! key), so a value copied or swapped to another key or tree fails to open instead of
//! being read as the wrong record.
//!
//! # Value format
//!
//! `1` (format version), 24-byte nonce, ciphertext with its 16-byte tag.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::seal::DataKey;

/// The version byte in front of every encrypted value.
pub const VALUE_VERSION: u8 = 1;
/// Bytes an encrypted value adds to its plaintext.
pub const OVERHEAD: usize = 1 + 24 + 16;

/// Why a value did not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Too short, or an unknown format version.
    #[error("Encrypted value is malformed: {0}")]
    Malformed(String),
    /// The tag did not verify: wrong key, tampered bytes, or a value moved from another
    /// tree or key.
    #[error(
        "Encrypted value failed authentication (wrong key, tampered, or moved from another key)"
    )]
    Authentication,
    /// The vault was wiped: no key material is left in memory.
    #[error("The key vault is wiped; the device is locked")]
    Wiped,
}

/// The unsealed data key and the subkeys derived from it.
///
/// Dropping or [`KeyVault::wipe`]-ing it zeroizes the key in memory.
pub struct KeyVault {
    data_key: Option<DataKey>,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVault")
            .field("wiped", &self.data_key.is_none())
            .finish()
    }
}

/// A derived 32-byte key, zeroized on drop.
pub struct SubKey(Zeroizing<[u8; 32]>);

impl SubKey {
    /// The key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SubKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubKey(..)")
    }
}

impl KeyVault {
    /// Holds `data_key` (just unsealed) for the life of the process or until wiped.
    pub fn new(data_key: DataKey) -> Self {
        Self {
            data_key: Some(data_key),
        }
    }

    /// Derives the subkey for `purpose` (for example `"tree:sales"`, `"audit-chain"`,
    /// `"terminal-tokens"`). The same purpose always gives the same key.
    pub fn subkey(&self, purpose: &str) -> Result<SubKey, CryptoError> {
        let key = self.data_key.as_ref().ok_or(CryptoError::Wiped)?;
        let context = format!("outpost 2026-12 subkey v1 {purpose}");
        Ok(SubKey(Zeroizing::new(blake3::derive_key(
            &context,
            key.expose(),
        ))))
    }

    /// The AEAD for `purpose`.
    pub fn cipher(&self, purpose: &str) -> Result<Cipher, CryptoError> {
        Ok(Cipher::new(&self.subkey(purpose)?))
    }

    /// The data key itself: only to seal it again (a new envelope after a lock, a new
    /// PIN, an enrolment update), never to store or send.
    pub fn data_key(&self) -> Result<&DataKey, CryptoError> {
        self.data_key.as_ref().ok_or(CryptoError::Wiped)
    }

    /// Whether the key has been wiped.
    pub fn is_wiped(&self) -> bool {
        self.data_key.is_none()
    }

    /// Zeroizes the data key in memory (on lockdown). Ciphers already handed out keep
    /// their own subkeys: the caller drops them too (they zeroize on drop).
    pub fn wipe(&mut self) {
        self.data_key = None;
    }
}

/// XChaCha20-Poly1305 under one subkey. The underlying key schedule zeroizes on drop
/// (chacha20poly1305's `zeroize` support is on by default).
#[derive(Clone)]
pub struct Cipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(..)")
    }
}

/// Associated data for a value stored at `key` in `tree`: length-prefixed so that
/// `("ab", "c")` and `("a", "bc")` differ.
pub fn record_ad(tree: &str, key: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(8 + tree.len() + key.len());
    ad.extend_from_slice(&(tree.len() as u32).to_be_bytes());
    ad.extend_from_slice(tree.as_bytes());
    ad.extend_from_slice(&(key.len() as u32).to_be_bytes());
    ad.extend_from_slice(key);
    ad
}

impl Cipher {
    /// A cipher under `key`.
    pub fn new(key: &SubKey) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(key.expose().into()),
        }
    }

    /// Encrypts `plaintext`, authenticating `ad` with it.
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; 24] = rand::random();
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.push(VALUE_VERSION);
        out.extend_from_slice(&nonce);
        // Encryption only fails for plaintexts beyond ~256 GiB, which sled cannot hold.
        match self.aead.encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        ) {
            Ok(ct) => out.extend_from_slice(&ct),
            Err(_) => unreachable!(
                "XChaCha20-Poly1305 refused a plaintext of {} bytes",
                plaintext.len()
            ),
        }
        out
    }

    /// Decrypts a value made by [`Cipher::seal`] with the same `ad`.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::Malformed(format!(
                "{} bytes, shorter than the {OVERHEAD}-byte overhead",
                sealed.len()
            )));
        }
        if sealed[0] != VALUE_VERSION {
            return Err(CryptoError::Malformed(format!(
                "format version {} (this build reads {VALUE_VERSION})",
                sealed[0]
            )));
        }
        self.aead
            .decrypt(
                XNonce::from_slice(&sealed[1..25]),
                Payload {
                    msg: &sealed[25..],
                    aad: ad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
    }

    /// [`Cipher::seal`] for the value stored at `key` in `tree`.
    pub fn seal_record(&self, tree: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        self.seal(&record_ad(tree, key), value)
    }

    /// [`Cipher::open`] for the value stored at `key` in `tree`.
    pub fn open_record(
        &self,
        tree: &str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open(&record_ad(tree, key), sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> KeyVault {
        KeyVault::new(DataKey::from_bytes([7; 32]))
    }

    #[test]
    fn roundtrip_and_ciphertext_hides_plaintext() {
        let c = vault().cipher("tree:products").unwrap();
        let pt = b"Organic whole milk 1L, price 189";
        let ct = c.seal_record("products", b"sku-1", pt);
        assert_eq!(ct.len(), pt.len() + OVERHEAD);
        assert!(!ct.windows(7).any(|w| w == b"Organic"));
        assert_eq!(&c.open_record("products", b"sku-1", &ct).unwrap()[..], pt);
        assert_ne!(
            ct,
            c.seal_record("products", b"sku-1", pt),
            "fresh nonce each time"
        );
    }

    #[test]
    fn swapped_values_between_keys_or_trees_are_detected() {
        let c = vault().cipher("tree:sales").unwrap();
        let a = c.seal_record("sales", b"A", b"total 100");
        assert_eq!(
            c.open_record("sales", b"B", &a),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            c.open_record("stock", b"A", &a),
            Err(CryptoError::Authentication)
        );
        // Length prefixes: the boundary between tree and key is authenticated too.
        let ab = c.seal_record("ab", b"c", b"x");
        assert_eq!(
            c.open_record("a", b"bc", &ab),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn subkeys_are_independent_per_purpose_and_stable() {
        let v = vault();
        assert_ne!(
            v.subkey("tree:sales").unwrap().expose(),
            v.subkey("tree:stock").unwrap().expose()
        );
        assert_eq!(
            v.subkey("audit").unwrap().expose(),
            vault().subkey("audit").unwrap().expose()
        );
        let other = v.cipher("tree:stock").unwrap();
        let ct = v.cipher("tree:sales").unwrap().seal(b"", b"x");
        assert_eq!(other.open(b"", &ct), Err(CryptoError::Authentication));
        let other_device = KeyVault::new(DataKey::from_bytes([8; 32]))
            .cipher("tree:sales")
            .unwrap();
        assert_eq!(
            other_device.open(b"", &ct),
            Err(CryptoError::Authentication)
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let c = vault().cipher("p").unwrap();
        let good = c.seal(b"ad", b"hello");
        assert!(matches!(c.open(b"ad", &[]), Err(CryptoError::Malformed(_))));
        assert!(matches!(
            c.open(b"ad", &good[..OVERHEAD - 1]),
            Err(CryptoError::Malformed(_))
        ));
        let mut v = good.clone();
        v[0] = 2;
        assert!(matches!(c.open(b"ad", &v), Err(CryptoError::Malformed(_))));
        for i in [1, 25, good.len() - 1] {
            let mut t = good.clone();
            t[i] ^= 0x01;
            assert_eq!(
                c.open(b"ad", &t),
                Err(CryptoError::Authentication),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn wiped_vault_derives_nothing() {
        let mut v = vault();
        v.wipe();
        assert!(v.is_wiped());
        assert_eq!(v.subkey("x").unwrap_err(), CryptoError::Wiped);
        assert!(format!("{v:?}").contains("wiped: true"));
    }
}
