//! HQ's offers of artifacts, signed by HQ.
//!
//! An offer makes every unit of the store download an artifact from an HTTP origin, so
//! only HQ may make one: each offer carries HQ's Ed25519 signature, by the same key that
//! signs the store roster (`P2pConfig::hq_key`), over [`SignedOffer::signed_bytes`]: a
//! domain tag with a version, the store id, every field of the [`Offer`] and an expiry.
//! A unit checks it wherever an offer enters: from its own server (`Client::offer`),
//! from every peer's gossip, and when it resumes a download after a restart. A peer on
//! the roster can therefore pass HQ's offers on, but cannot make one up, change one,
//! point one at another store's units, or replay one after it expired.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libp2p::identity::ed25519;
use serde::{Deserialize, Serialize};

use crate::chunks::{MAX_ARTIFACT_SIZE, Root};

/// The domain tag that starts the signed bytes: an offer signature can never be taken
/// for a roster's (`outpost-roster-v1`) or anything else HQ signs, and a new encoding
/// gets a new version.
pub const DOMAIN: &[u8] = b"outpost-offer-v1\0";
/// Longest origin URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest store id accepted.
pub const MAX_STORE_ID_LEN: usize = 128;

/// HQ's offer of an artifact: where origin serves it and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The BLAKE3 hash of the content (the artifact id).
    pub root: Root,
    /// Size in bytes.
    pub size: u64,
    /// HTTP URL of the content; must honour `Range: bytes=a-b`.
    pub url: String,
    /// HTTP URL of the chunk list (concatenated 32-byte chaining values, see
    /// [`crate::chunks::ChunkList::to_bytes`]).
    pub chunks_url: String,
}

/// An [`Offer`] with HQ's signature, as HQ sends it to a unit and units pass it on.
///
/// In JSON the offer's fields sit beside `store_id`, `expires_at_ms` and `signature`;
/// those three default to empty, so an offer without them (from a unit that predates
/// signed offers) parses and is refused as [`OfferError::Unsigned`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOffer {
    /// What is offered.
    #[serde(flatten)]
    pub offer: Offer,
    /// The store whose units may take it.
    #[serde(default)]
    pub store_id: String,
    /// Until when (Unix milliseconds) a unit may take it; later it is refused.
    #[serde(default)]
    pub expires_at_ms: u64,
    /// Base64 Ed25519 signature by HQ's roster key over [`SignedOffer::signed_bytes`].
    #[serde(default)]
    pub signature: String,
}

/// Why an offer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// No signature or no store id: not signed by HQ at all.
    #[error("the offer is not signed by HQ (no signature or no store id)")]
    Unsigned,
    /// The signature is not base64 of 64 bytes.
    #[error("the offer's signature is not base64 of a 64-byte Ed25519 signature")]
    Encoding,
    /// Signed for another store.
    #[error("the offer is for store {offered:?}, and this unit is in store {ours:?}")]
    OtherStore {
        /// The store the offer names.
        offered: String,
        /// This unit's store.
        ours: String,
    },
    /// The signature does not verify under HQ's key over these fields.
    #[error(
        "HQ's signature does not verify over the offer: a field was changed after signing, or another key signed it"
    )]
    BadSignature,
    /// Past its expiry.
    #[error("the offer expired at {expires_at_ms} (Unix ms); it is now {now_ms}")]
    Expired {
        /// When it expired.
        expires_at_ms: u64,
        /// This unit's clock.
        now_ms: u64,
    },
    /// Bigger than the mesh carries.
    #[error("the offer's size {size} is over the mesh's limit of {max} bytes")]
    TooLarge {
        /// Offered size.
        size: u64,
        /// The limit, [`MAX_ARTIFACT_SIZE`].
        max: u64,
    },
    /// A field is unusable (size zero, a URL that is not http(s) or is too long, a store
    /// id too long).
    #[error("{0}")]
    Invalid(String),
}

impl OfferError {
    /// Whether a peer that passed this offer on must have made it up or changed it: no
    /// unit of this store sends such an offer, since each checks every offer before
    /// passing it on. An unsigned offer may come from a unit that predates signed
    /// offers, and an expired one from a unit whose clock is behind, so those two (and
    /// a field HQ itself signed) are refused without blaming the peer.
    pub fn is_forgery(&self) -> bool {
        matches!(
            self,
            OfferError::Encoding | OfferError::OtherStore { .. } | OfferError::BadSignature
        )
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Lengths are bounded by the checks before signing and verifying; a length prefix
    // keeps two fields from ever reading as one.
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl SignedOffer {
    /// The exact bytes HQ signs: [`DOMAIN`], then the store id, the root (32 bytes),
    /// the size (u64), the URL, the chunk-list URL and the expiry (u64, Unix ms);
    /// integers big-endian, each string preceded by its length as a big-endian u32.
    pub fn signed_bytes(offer: &Offer, store_id: &str, expires_at_ms: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            DOMAIN.len() + 64 + store_id.len() + offer.url.len() + offer.chunks_url.len(),
        );
        out.extend_from_slice(DOMAIN);
        put_str(&mut out, store_id);
        out.extend_from_slice(&offer.root.0);
        out.extend_from_slice(&offer.size.to_be_bytes());
        put_str(&mut out, &offer.url);
        put_str(&mut out, &offer.chunks_url);
        out.extend_from_slice(&expires_at_ms.to_be_bytes());
        out
    }

    /// Signs `offer` for the units of `store_id` until `expires_at_ms` (what HQ does;
    /// demos and tests use [`crate::roster::demo_hq_keypair`]).
    pub fn sign(
        hq: &ed25519::Keypair,
        offer: Offer,
        store_id: &str,
        expires_at_ms: u64,
    ) -> SignedOffer {
        let sig = hq.sign(&Self::signed_bytes(&offer, store_id, expires_at_ms));
        SignedOffer {
            offer,
            store_id: store_id.to_owned(),
            expires_at_ms,
            signature: B64.encode(sig),
        }
    }

    /// Builds a signed offer from its parts as HQ's gRPC message carries them (the
    /// signature as raw bytes).
    pub fn from_parts(
        offer: Offer,
        store_id: &str,
        expires_at_ms: u64,
        signature: &[u8],
    ) -> SignedOffer {
        SignedOffer {
            offer,
            store_id: store_id.to_owned(),
            expires_at_ms,
            signature: if signature.is_empty() {
                String::new()
            } else {
                B64.encode(signature)
            },
        }
    }

    /// Checks everything but the expiry: HQ's signature under `hq` for the store
    /// `store_id`, then the fields. What a unit checks when it resumes a download it
    /// accepted before a restart.
    pub fn verify_signature(
        &self,
        hq: &ed25519::PublicKey,
        store_id: &str,
    ) -> Result<&Offer, OfferError> {
        if self.signature.is_empty() || self.store_id.is_empty() {
            return Err(OfferError::Unsigned);
        }
        if self.store_id != store_id {
            return Err(OfferError::OtherStore {
                offered: self.store_id.chars().take(MAX_STORE_ID_LEN).collect(),
                ours: store_id.to_owned(),
            });
        }
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| OfferError::Encoding)?;
        if sig.len() != 64 {
            return Err(OfferError::Encoding);
        }
        // Bounded before the bytes are built; beyond these no honest HQ signs.
        check_lengths(&self.offer, &self.store_id)?;
        if !hq.verify(
            &Self::signed_bytes(&self.offer, &self.store_id, self.expires_at_ms),
            &sig,
        ) {
            return Err(OfferError::BadSignature);
        }
        check_fields(&self.offer)?;
        Ok(&self.offer)
    }

    /// Checks the offer as it enters this unit: [`SignedOffer::verify_signature`], then
    /// that it has not expired at `now_ms` (Unix milliseconds).
    pub fn verify(
        &self,
        hq: &ed25519::PublicKey,
        store_id: &str,
        now_ms: u64,
    ) -> Result<&Offer, OfferError> {
        let offer = self.verify_signature(hq, store_id)?;
        if now_ms >= self.expires_at_ms {
            return Err(OfferError::Expired {
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        Ok(offer)
    }
}

fn check_lengths(offer: &Offer, store_id: &str) -> Result<(), OfferError> {
    if store_id.len() > MAX_STORE_ID_LEN {
        return Err(OfferError::Invalid(format!(
            "the store id is over {MAX_STORE_ID_LEN} bytes"
        )));
    }
    for (field, u) in [("url", &offer.url), ("chunks_url", &offer.chunks_url)] {
        if u.len() > MAX_URL_LEN {
            return Err(OfferError::Invalid(format!(
                "{field} is {} bytes, over {MAX_URL_LEN}",
                u.len()
            )));
        }
    }
    Ok(())
}

fn check_fields(offer: &Offer) -> Result<(), OfferError> {
    if offer.size == 0 {
        return Err(OfferError::Invalid("the offer's size is 0".into()));
    }
    if offer.size > MAX_ARTIFACT_SIZE {
        return Err(OfferError::TooLarge {
            size: offer.size,
            max: MAX_ARTIFACT_SIZE,
        });
    }
    for (field, u) in [("url", &offer.url), ("chunks_url", &offer.chunks_url)] {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(OfferError::Invalid(format!(
                "{field} {u:?} is not an http(s) URL"
            )));
        }
    }
    Ok(())
}

/// This machine's clock in Unix milliseconds (0 if it is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::demo_hq_keypair;

    const NOW: u64 = 1_700_000_000_000;

    fn offer() -> Offer {
        Offer {
            root: Root([5; 32]),
            size: 1_000_000,
            url: "http://origin.example/a".into(),
            chunks_url: "http://origin.example/a.chunks".into(),
        }
    }

    fn signed() -> SignedOffer {
        SignedOffer::sign(&demo_hq_keypair(), offer(), "store-1", NOW + 60_000)
    }

    fn check(s: &SignedOffer) -> Result<&Offer, OfferError> {
        s.verify(&demo_hq_keypair().public(), "store-1", NOW)
    }

    #[test]
    fn a_signed_offer_verifies_and_round_trips_json() {
        let s = signed();
        assert_eq!(check(&s), Ok(&offer()));
        let back: SignedOffer =
            serde_json::from_slice(&serde_json::to_vec(&s).expect("json")).expect("parse");
        assert_eq!(back, s);
        assert_eq!(check(&back), Ok(&offer()));
    }

    #[test]
    fn every_tampered_field_breaks_the_signature() {
        let tamper: [fn(&mut SignedOffer); 6] = [
            |s| s.offer.root.0[0] ^= 1,
            |s| s.offer.size += 1,
            |s| s.offer.url.push('x'),
            |s| s.offer.chunks_url = "http://evil.example/c".into(),
            |s| s.expires_at_ms += 1,
            // Moving a byte between two fields keeps their concatenation: the length
            // prefixes still tell them apart.
            |s| {
                let c = s.offer.url.pop().expect("char");
                s.offer.chunks_url.insert(0, c);
            },
        ];
        for (i, t) in tamper.iter().enumerate() {
            let mut s = signed();
            t(&mut s);
            assert_eq!(check(&s), Err(OfferError::BadSignature), "tamper {i}");
            assert!(check(&s).unwrap_err().is_forgery());
        }
    }

    #[test]
    fn another_key_an_unsigned_and_a_malformed_signature_are_refused() {
        let other = ed25519::Keypair::generate();
        let s = SignedOffer::sign(&other, offer(), "store-1", NOW + 60_000);
        assert_eq!(check(&s), Err(OfferError::BadSignature));
        let mut s = signed();
        s.signature.clear();
        assert_eq!(check(&s), Err(OfferError::Unsigned));
        assert!(!OfferError::Unsigned.is_forgery());
        let mut s = signed();
        s.signature = "not base64!".into();
        assert_eq!(check(&s), Err(OfferError::Encoding));
        let mut s = signed();
        s.signature = B64.encode([1u8; 63]);
        assert_eq!(check(&s), Err(OfferError::Encoding));
        // An offer in the unsigned form units sent before offers were signed.
        let old = serde_json::to_vec(&offer()).expect("json");
        let s: SignedOffer = serde_json::from_slice(&old).expect("parses");
        assert_eq!(check(&s), Err(OfferError::Unsigned));
    }

    #[test]
    fn an_expired_offer_is_refused_but_its_signature_still_checks() {
        let s = signed();
        let hq = demo_hq_keypair().public();
        assert!(s.verify(&hq, "store-1", NOW + 59_999).is_ok());
        let e = s.verify(&hq, "store-1", NOW + 60_000).unwrap_err();
        assert_eq!(
            e,
            OfferError::Expired {
                expires_at_ms: NOW + 60_000,
                now_ms: NOW + 60_000
            }
        );
        assert!(!e.is_forgery());
        assert!(e.to_string().contains("expired"), "{e}");
        // A resumed download checks the signature only.
        assert!(s.verify_signature(&hq, "store-1").is_ok());
    }

    #[test]
    fn an_offer_for_another_store_is_refused_even_with_its_store_id_rewritten() {
        let hq = demo_hq_keypair();
        let s = SignedOffer::sign(&hq, offer(), "store-2", NOW + 60_000);
        let e = check(&s).unwrap_err();
        assert!(
            matches!(&e, OfferError::OtherStore { offered, ours } if offered == "store-2" && ours == "store-1")
        );
        assert!(e.is_forgery());
        // Claiming our store does not help: HQ signed the other one.
        let mut s = s;
        s.store_id = "store-1".into();
        assert_eq!(check(&s), Err(OfferError::BadSignature));
    }

    #[test]
    fn oversized_and_unusable_offers_are_refused_even_when_signed() {
        let hq = demo_hq_keypair();
        let sign = |o: Offer| SignedOffer::sign(&hq, o, "store-1", NOW + 60_000);
        let mut o = offer();
        o.size = MAX_ARTIFACT_SIZE + 1;
        assert_eq!(
            check(&sign(o)),
            Err(OfferError::TooLarge {
                size: MAX_ARTIFACT_SIZE + 1,
                max: MAX_ARTIFACT_SIZE
            })
        );
        let mut o = offer();
        o.size = 0;
        assert!(matches!(check(&sign(o)), Err(OfferError::Invalid(_))));
        let mut o = offer();
        o.url = "file:///etc/passwd".into();
        assert!(matches!(check(&sign(o)), Err(OfferError::Invalid(_))));
        let mut o = offer();
        o.chunks_url = format!("http://x/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(check(&sign(o)), Err(OfferError::Invalid(_))));
    }

    #[test]
    fn the_signed_bytes_are_stable() {
        // HQ implementations in other languages sign these bytes: they must not change
        // without a new domain version.
        let b = SignedOffer::signed_bytes(&offer(), "s", 2);
        let mut want = b"outpost-offer-v1\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 1, b's']);
        want.extend_from_slice(&[5; 32]);
        want.extend_from_slice(&1_000_000u64.to_be_bytes());
        want.extend_from_slice(&23u32.to_be_bytes());
        want.extend_from_slice(b"http://origin.example/a");
        want.extend_from_slice(&30u32.to_be_bytes());
        want.extend_from_slice(b"http://origin.example/a.chunks");
        want.extend_from_slice(&2u64.to_be_bytes());
        assert_eq!(b, want);
    }
}
