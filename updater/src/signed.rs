//! Signed documents: a payload (JSON bytes, kept as signed so nothing is
//! re-serialised before checking) with its type and the signatures over both,
//! DSSE-style. The type is inside what is signed, so a root cannot pass for a
//! manifest or the other way round.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::UpdateError;

/// The payload type of a release manifest.
pub const MANIFEST_TYPE: &str = "application/vnd.outpost.release-manifest+json";
/// The payload type of a release root.
pub const ROOT_TYPE: &str = "application/vnd.outpost.release-root+json";

/// A document and its signatures, as it travels and is stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SignedDoc {
    /// [`MANIFEST_TYPE`] or [`ROOT_TYPE`].
    pub payload_type: String,
    /// The JSON payload, base64.
    pub payload: String,
    /// Signatures over [`pae`] of the type and the payload bytes.
    pub signatures: Vec<Signature>,
}

/// One key's signature.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// [`key_id`] of the signing key.
    pub key_id: String,
    /// The Ed25519 signature, base64.
    pub sig: String,
}

/// The bytes a signature covers: a prefix, the type and the payload, each with its
/// length, so no two (type, payload) pairs give the same bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 48);
    out.extend_from_slice(b"OUTPOST-SIG-V1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// A key's id: the first 16 hex digits of the SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex(&Sha256::digest(key.as_bytes())[..8])
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl SignedDoc {
    /// A document of `payload_type` over `payload`, signed by every key of `keys`.
    pub fn sign(payload_type: &str, payload: &[u8], keys: &[&SigningKey]) -> SignedDoc {
        let msg = pae(payload_type, payload);
        SignedDoc {
            payload_type: payload_type.to_owned(),
            payload: B64.encode(payload),
            signatures: keys
                .iter()
                .map(|k| Signature {
                    key_id: key_id(&k.verifying_key()),
                    sig: B64.encode(k.sign(&msg).to_bytes()),
                })
                .collect(),
        }
    }

    /// Parse a document from its JSON.
    pub fn from_json(bytes: &[u8], what: &'static str) -> Result<SignedDoc, UpdateError> {
        serde_json::from_slice(bytes).map_err(|e| UpdateError::Malformed {
            what,
            reason: e.to_string(),
        })
    }

    /// Its JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The payload bytes, not yet trusted.
    pub fn payload_bytes(&self, what: &'static str) -> Result<Vec<u8>, UpdateError> {
        B64.decode(&self.payload)
            .map_err(|e| UpdateError::Malformed {
                what,
                reason: format!("payload is not base64: {e}"),
            })
    }

    /// The distinct keys of `trusted` whose signature over this document verifies.
    pub fn valid_signers<'k>(
        &self,
        trusted: &'k [(String, VerifyingKey)],
        what: &'static str,
    ) -> Result<Vec<&'k str>, UpdateError> {
        let payload = self.payload_bytes(what)?;
        let msg = pae(&self.payload_type, &payload);
        let mut valid: Vec<&str> = Vec::new();
        for s in &self.signatures {
            let Some((id, key)) = trusted.iter().find(|(id, _)| *id == s.key_id) else {
                continue;
            };
            if valid.contains(&id.as_str()) {
                continue;
            }
            let Ok(raw) = B64.decode(&s.sig) else {
                continue;
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(&raw) else {
                continue;
            };
            if key.verify(&msg, &sig).is_ok() {
                valid.push(id.as_str());
            }
        }
        Ok(valid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_separates_type_and_payload() {
        assert_ne!(pae("ab", b"c"), pae("a", b"bc"));
        assert_eq!(
            pae("t", b"{}"),
            b"OUTPOST-SIG-V1 1 t 2 {}".to_vec(),
            "the framing is part of the format"
        );
    }

    #[test]
    fn a_signature_verifies_only_over_its_type_and_payload() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let trusted = vec![(key_id(&k.verifying_key()), k.verifying_key())];
        let doc = SignedDoc::sign(MANIFEST_TYPE, b"{\"a\":1}", &[&k]);
        assert_eq!(doc.valid_signers(&trusted, "m").unwrap().len(), 1);
        let mut other_type = doc.clone();
        other_type.payload_type = ROOT_TYPE.into();
        assert!(other_type.valid_signers(&trusted, "m").unwrap().is_empty());
        let mut other_payload = doc.clone();
        other_payload.payload = B64.encode(b"{\"a\":2}");
        assert!(
            other_payload
                .valid_signers(&trusted, "m")
                .unwrap()
                .is_empty()
        );
        // The same signature twice counts once.
        let mut twice = doc.clone();
        twice.signatures.push(twice.signatures[0].clone());
        assert_eq!(twice.valid_signers(&trusted, "m").unwrap().len(), 1);
    }
}
