//! The store token: what the store QR carries, sealed under a subkey of the data key.
//!
//! A token is `base64url(seal(issued_at ‖ expires_at))` with XChaCha20-Poly1305 under
//! the data key's `token:shopper-store` subkey (the vault's ciphers, as everything
//! else at rest). Only this unit (and its data key) can make one that opens: a
//! changed byte, a token of another unit or one made up fails authentication. It
//! carries no secret of its own; it only says "this unit issued me, valid until".

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_security::vault::Cipher;

/// The purpose of the subkey store tokens are sealed under.
pub const PURPOSE: &str = "token:shopper-store";
/// Associated data: a value sealed for another use under the same subkey never opens
/// as a store token.
const AD: &[u8] = b"outpost shopper store token v1";

/// Why a store token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not base64url, or not of this unit (forged, altered, another unit's).
    #[error("the store token is not one this store issued")]
    Forged,
    /// Past its expiry.
    #[error("the store token expired {ago_secs} s ago: scan the store's current QR code")]
    Expired {
        /// How long ago.
        ago_secs: u64,
    },
}

/// What a valid store token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreToken {
    /// Unix seconds it was issued at.
    pub issued_at: u64,
    /// Unix seconds it expires at.
    pub expires_at: u64,
}

impl StoreToken {
    /// Seal this token into its text form.
    pub fn seal(&self, cipher: &Cipher) -> String {
        let mut plain = [0u8; 16];
        plain[..8].copy_from_slice(&self.issued_at.to_be_bytes());
        plain[8..].copy_from_slice(&self.expires_at.to_be_bytes());
        URL_SAFE_NO_PAD.encode(cipher.seal(AD, &plain))
    }

    /// Open a token's text form and check it is valid at `now` (unix seconds).
    pub fn open(cipher: &Cipher, text: &str, now: u64) -> Result<StoreToken, TokenError> {
        let sealed = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| TokenError::Forged)?;
        let plain = cipher.open(AD, &sealed).map_err(|_| TokenError::Forged)?;
        let plain: &[u8; 16] = plain
            .as_slice()
            .try_into()
            .map_err(|_| TokenError::Forged)?;
        let mut half = [0u8; 8];
        half.copy_from_slice(&plain[..8]);
        let issued_at = u64::from_be_bytes(half);
        half.copy_from_slice(&plain[8..]);
        let expires_at = u64::from_be_bytes(half);
        if now >= expires_at {
            return Err(TokenError::Expired {
                ago_secs: now - expires_at,
            });
        }
        Ok(StoreToken {
            issued_at,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_security::seal::DataKey;
    use outpost_security::vault::KeyVault;

    fn cipher(key: u8) -> Cipher {
        KeyVault::new(DataKey::from_bytes([key; 32]))
            .cipher(PURPOSE)
            .unwrap()
    }

    const T: StoreToken = StoreToken {
        issued_at: 1_000,
        expires_at: 2_000,
    };

    #[test]
    fn a_sealed_token_opens_until_it_expires() {
        let c = cipher(1);
        let text = T.seal(&c);
        assert_eq!(StoreToken::open(&c, &text, 1_999), Ok(T));
        assert_eq!(
            StoreToken::open(&c, &text, 2_005),
            Err(TokenError::Expired { ago_secs: 5 })
        );
    }

    #[test]
    fn altered_foreign_and_made_up_tokens_are_forged() {
        let c = cipher(1);
        let text = T.seal(&c);
        // Another unit's key.
        assert_eq!(
            StoreToken::open(&cipher(2), &text, 1_500),
            Err(TokenError::Forged)
        );
        // One character changed.
        let mut bytes = text.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            StoreToken::open(&c, &altered, 1_500),
            Err(TokenError::Forged)
        );
        for junk in ["", "not base64!", "AAAA", &"A".repeat(76)] {
            assert_eq!(StoreToken::open(&c, junk, 1_500), Err(TokenError::Forged));
        }
    }
}
