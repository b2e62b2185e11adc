//! The exit code: what a paid shopper shows at the door (as a QR code on the phone)
//! and staff or a gate scan (`/api/v1/exit-checks/{code}`).
//!
//! A code is `base64url(seal(sale id))` with XChaCha20-Poly1305 under the data key's
//! `token:exit-check` subkey: only this unit makes codes that open, a changed
//! character fails, and the code names a sale without being guessable from it.
//!
//! Whether a basket is picked for a re-scan audit is decided by the code itself: a
//! hash of its random nonce against `[shopper] audit_percent`. The shopper cannot
//! choose it (the unit seals the code) and it never changes between scans.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use outpost_security::vault::Cipher;
use uuid::Uuid;

/// The purpose of the subkey exit codes are sealed under.
pub const PURPOSE: &str = "token:exit-check";
const AD: &[u8] = b"outpost exit code v1";

/// Why an exit code is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this is not an exit code of this store")]
pub struct NotAnExitCode;

/// The exit code of sale `sale`.
pub fn seal(cipher: &Cipher, sale: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(cipher.seal(AD, sale.as_bytes()))
}

/// The sale an exit code names.
pub fn open(cipher: &Cipher, code: &str) -> Result<Uuid, NotAnExitCode> {
    let sealed = URL_SAFE_NO_PAD
        .decode(code.trim())
        .map_err(|_| NotAnExitCode)?;
    let plain = cipher.open(AD, &sealed).map_err(|_| NotAnExitCode)?;
    Uuid::from_slice(&plain).map_err(|_| NotAnExitCode)
}

/// Whether the basket of `code` is picked for a re-scan, for `percent` in 0..=100.
pub fn audited(code: &str, percent: u8) -> bool {
    let h = blake3::hash(code.trim().as_bytes());
    let draw = u16::from_be_bytes([h.as_bytes()[0], h.as_bytes()[1]]) % 100;
    draw < u16::from(percent.min(100))
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

    #[test]
    fn a_code_opens_to_its_sale_and_only_here() {
        let sale = Uuid::now_v7();
        let code = seal(&cipher(1), sale);
        assert_eq!(open(&cipher(1), &code), Ok(sale));
        assert_eq!(open(&cipher(2), &code), Err(NotAnExitCode));
        let mut altered = code.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&cipher(1), std::str::from_utf8(&altered).unwrap()),
            Err(NotAnExitCode)
        );
        assert_eq!(open(&cipher(1), "not a code!"), Err(NotAnExitCode));
        assert_ne!(seal(&cipher(1), sale), code, "each code has its own nonce");
    }

    #[test]
    fn the_audit_share_follows_the_percentage() {
        let c = cipher(3);
        let codes: Vec<String> = (0..2000).map(|_| seal(&c, Uuid::now_v7())).collect();
        let share = |p| codes.iter().filter(|k| audited(k, p)).count();
        assert_eq!(share(0), 0);
        assert_eq!(share(100), 2000);
        let ten = share(10);
        assert!((120..=280).contains(&ten), "10 % of 2000 drew {ten}");
        assert!(codes.iter().all(|k| audited(k, 10) == audited(k, 10)));
    }
}
