//! HQ's side of `OfferArtifact`: an artifact offer signed with HQ's roster key (the key
//! whose public half units pin as `[p2p] hq_public_key`), sent to a unit. Units refuse
//! an offer HQ did not sign for their store, or one past its expiry, and their mesh
//! passes on only signed offers (`docs/p2p.md`, "Signed offers").

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_p2p::chunks::Root;
use outpost_p2p::{Offer, SignedOffer};
use outpost_proto::hq::{ArtifactOffer, ArtifactState};

use super::push::{PushError, connect};

/// HQ's roster key pair (Ed25519).
pub use outpost_p2p::roster::HqKeypair;
/// The public demo HQ key pair: anyone can sign with it, never trust it in production.
pub use outpost_p2p::roster::demo_hq_keypair;

/// How long an offer stays valid by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest roster key file accepted (64 hex digits and a newline, with room to spare).
const KEY_FILE_MAX: u64 = 256;

/// Why an offer could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfferSignError {
    /// The offer's root is not a BLAKE3 hash in hex.
    #[error("root_hex {0:?} is not 64 hex digits")]
    Root(String),
    /// A key file is unusable.
    #[error("key file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Signs `offer` for the units of `store_id` until `expires_at_ms` (Unix ms) with HQ's
/// roster key: fills in its `store_id`, `expires_at_ms` and `hq_signature`. Sign last:
/// a field changed afterwards breaks the signature.
pub fn sign_offer(
    offer: &mut ArtifactOffer,
    roster_key: &HqKeypair,
    store_id: &str,
    expires_at_ms: u64,
) -> Result<(), OfferSignError> {
    let root = Root::from_hex(offer.root_hex.trim())
        .map_err(|_| OfferSignError::Root(offer.root_hex.clone()))?;
    let mesh = Offer {
        root,
        size: offer.size,
        url: offer.url.clone(),
        chunks_url: offer.chunks_url.clone(),
    };
    offer.hq_signature =
        roster_key.sign(&SignedOffer::signed_bytes(&mesh, store_id, expires_at_ms));
    offer.store_id = store_id.to_owned();
    offer.expires_at_ms = expires_at_ms;
    Ok(())
}

/// Unix milliseconds `ttl` from now.
pub fn expiry_in(ttl: Duration) -> u64 {
    outpost_p2p::offer::now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a 32-byte secret from `path`: 64 hex digits (surrounding whitespace allowed),
/// in a file only its owner may read (mode 0600, else refused).
pub fn read_secret_hex(path: &Path) -> Result<zeroize::Zeroizing<[u8; 32]>, OfferSignError> {
    let bad = |reason: String| OfferSignError::Key {
        path: path.display().to_string(),
        reason,
    };
    let bytes = zeroize::Zeroizing::new(
        outpost_security::fsutil::read_private(path, KEY_FILE_MAX)
            .map_err(|e| bad(e.to_string()))?
            .ok_or_else(|| bad("no such file".into()))?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not text".into()))?;
    unhex32(text.trim())
        .map(zeroize::Zeroizing::new)
        .ok_or_else(|| bad("not 64 hex digits (a 32-byte key)".into()))
}

/// Reads HQ's roster key from `path`: the 32-byte Ed25519 secret key as 64 hex digits
/// ([`read_secret_hex`]).
pub fn read_roster_key(path: &Path) -> Result<HqKeypair, OfferSignError> {
    let mut secret = read_secret_hex(path)?;
    let secret = outpost_p2p::identity::ed25519::SecretKey::try_from_bytes(&mut secret[..])
        .map_err(|e| OfferSignError::Key {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(HqKeypair::from(secret))
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Sends `offer` (signed with [`sign_offer`]) to the store at `store_url` with
/// `credentials` (a port without mutual TLS needs them) and returns the store's answer:
/// the artifact's state there.
pub async fn offer_artifact(
    store_url: &str,
    offer: ArtifactOffer,
    tls: Option<&Arc<rustls::ClientConfig>>,
    credentials: &super::auth::Credentials,
) -> Result<ArtifactState, PushError> {
    let mut client = connect(store_url, tls, credentials).await?;
    client
        .offer_artifact(offer)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| PushError::Rpc {
            call: "OfferArtifact",
            status,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn offer() -> ArtifactOffer {
        ArtifactOffer {
            root_hex: "ab".repeat(32),
            size: 1234,
            url: "http://origin/a".into(),
            chunks_url: "http://origin/a.chunks".into(),
            content_key: vec![1; 32],
            ..ArtifactOffer::default()
        }
    }

    fn as_mesh(o: &ArtifactOffer) -> SignedOffer {
        SignedOffer::from_parts(
            Offer {
                root: Root::from_hex(&o.root_hex).unwrap(),
                size: o.size,
                url: o.url.clone(),
                chunks_url: o.chunks_url.clone(),
            },
            &o.store_id,
            o.expires_at_ms,
            &o.hq_signature,
        )
    }

    #[test]
    fn a_signed_offer_verifies_as_the_units_check_it() {
        let key = demo_hq_keypair();
        let mut o = offer();
        sign_offer(&mut o, &key, "store-1", expiry_in(DEFAULT_TTL)).unwrap();
        assert_eq!(o.hq_signature.len(), 64);
        let now = outpost_p2p::offer::now_ms();
        as_mesh(&o).verify(&key.public(), "store-1", now).unwrap();
        assert!(as_mesh(&o).verify(&key.public(), "store-2", now).is_err());
        let mut changed = o.clone();
        changed.url = "http://elsewhere/a".into();
        assert!(
            as_mesh(&changed)
                .verify(&key.public(), "store-1", now)
                .is_err()
        );
        let mut bad = offer();
        bad.root_hex = "xyz".into();
        assert!(matches!(
            sign_offer(&mut bad, &key, "store-1", 1),
            Err(OfferSignError::Root(_))
        ));
    }

    #[test]
    fn the_roster_key_file_is_read_only_when_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.key");
        let hex: String = [0x42u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        outpost_security::fsutil::write_private(&path, format!("{hex}\n").as_bytes()).unwrap();
        let key = read_roster_key(&path).unwrap();
        assert_eq!(key.public(), demo_hq_keypair().public());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_roster_key(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        outpost_security::fsutil::write_private(&path, b"abcd").unwrap();
        assert!(read_roster_key(&path).is_err());
    }
}
