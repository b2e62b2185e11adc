//! The store roster: the peer ids of one store's units, signed by HQ with Ed25519.
//! Every connection is checked against it (see [`crate::admission`]).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use libp2p::PeerId;
use libp2p::identity::ed25519;
use serde::{Deserialize, Serialize};

/// HQ's Ed25519 key pair type (for signing rosters in HQ, demos and tests).
pub use libp2p::identity::ed25519::Keypair as HqKeypair;

/// Why a roster was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RosterError {
    /// Not valid roster JSON.
    #[error("roster is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A peer id does not parse.
    #[error("roster peer id {0:?} does not parse")]
    PeerId(String),
    /// The signature or the HQ key is not valid base64 of the right length.
    #[error("roster {0} is not valid base64 of the right length")]
    Encoding(&'static str),
    /// The signature does not verify under the HQ key.
    #[error("roster signature does not verify under the HQ key")]
    BadSignature,
    /// The store id is empty or the roster has no peers.
    #[error("roster must name a store and at least one peer")]
    Empty,
}

/// The signed roster as HQ ships it (JSON).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedRoster {
    /// The store these units belong to; also scopes the gossip topic.
    pub store_id: String,
    /// Increases with every change, so a unit can refuse an older roster.
    pub version: u64,
    /// Base58 peer ids of the store's units.
    pub peers: Vec<String>,
    /// Base64 Ed25519 signature by HQ over [`SignedRoster::signed_bytes`].
    pub signature: String,
}

/// A roster whose signature has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roster {
    /// The store id.
    pub store_id: String,
    /// The roster version.
    pub version: u64,
    /// Admitted peers.
    pub peers: BTreeSet<PeerId>,
}

impl Roster {
    /// Whether `peer` is a unit of this store.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains(peer)
    }
}

impl SignedRoster {
    /// The exact bytes HQ signs: a domain tag, the store id, the version and the sorted
    /// peer ids, newline separated (peer ids and store ids cannot contain newlines after
    /// parsing, and the store id is refused if it does).
    pub fn signed_bytes(store_id: &str, version: u64, peers: &BTreeSet<PeerId>) -> Vec<u8> {
        let mut s = format!("outpost-roster-v1\n{store_id}\n{version}\n");
        for p in peers {
            s.push_str(&p.to_base58());
            s.push('\n');
        }
        s.into_bytes()
    }

    /// Signs a roster (what HQ does; the demo and tests use [`demo_hq_keypair`]).
    pub fn sign(
        hq: &ed25519::Keypair,
        store_id: &str,
        version: u64,
        peers: impl IntoIterator<Item = PeerId>,
    ) -> SignedRoster {
        let peers: BTreeSet<PeerId> = peers.into_iter().collect();
        let sig = hq.sign(&Self::signed_bytes(store_id, version, &peers));
        SignedRoster {
            store_id: store_id.to_string(),
            version,
            peers: peers.iter().map(|p| p.to_base58()).collect(),
            signature: B64.encode(sig),
        }
    }

    /// Parses roster JSON.
    pub fn from_json(s: &str) -> Result<SignedRoster, RosterError> {
        Ok(serde_json::from_str(s)?)
    }

    /// Checks the signature under HQ's public key and returns the roster.
    pub fn verify(&self, hq: &ed25519::PublicKey) -> Result<Roster, RosterError> {
        if self.store_id.is_empty() || self.store_id.contains('\n') || self.peers.is_empty() {
            return Err(RosterError::Empty);
        }
        let peers = self
            .peers
            .iter()
            .map(|p| {
                p.parse::<PeerId>()
                    .map_err(|_| RosterError::PeerId(p.clone()))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let sig = B64
            .decode(&self.signature)
            .map_err(|_| RosterError::Encoding("signature"))?;
        if sig.len() != 64 {
            return Err(RosterError::Encoding("signature"));
        }
        if !hq.verify(
            &Self::signed_bytes(&self.store_id, self.version, &peers),
            &sig,
        ) {
            return Err(RosterError::BadSignature);
        }
        Ok(Roster {
            store_id: self.store_id.clone(),
            version: self.version,
            peers,
        })
    }
}

/// Parses HQ's roster key from base64 (32 raw Ed25519 public key bytes).
pub fn parse_hq_key(b64: &str) -> Result<ed25519::PublicKey, RosterError> {
    let bytes = B64
        .decode(b64.trim())
        .map_err(|_| RosterError::Encoding("HQ key"))?;
    ed25519::PublicKey::try_from_bytes(&bytes).map_err(|_| RosterError::Encoding("HQ key"))
}

/// Base64 of a public key, the form [`parse_hq_key`] reads.
pub fn encode_hq_key(key: &ed25519::PublicKey) -> String {
    B64.encode(key.to_bytes())
}

/// The publicly known demo/test HQ key pair (seed: 32 bytes of 0x42). Never trust it in
/// production: anyone can sign a roster with it.
pub fn demo_hq_keypair() -> ed25519::Keypair {
    let secret = ed25519::SecretKey::try_from_bytes([0x42u8; 32])
        .expect("32 bytes is a valid ed25519 secret");
    ed25519::Keypair::from(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn signed_roster_verifies_and_round_trips_json() {
        let hq = demo_hq_keypair();
        let p = peers(3);
        let signed = SignedRoster::sign(&hq, "store-1", 7, p.clone());
        let json = serde_json::to_string(&signed).expect("json");
        let back = SignedRoster::from_json(&json).expect("parse");
        let roster = back.verify(&hq.public()).expect("verifies");
        assert_eq!(roster.version, 7);
        assert!(p.iter().all(|x| roster.contains(x)));
        assert!(!roster.contains(&PeerId::random()));
    }

    #[test]
    fn corrupt_roster_signature_is_refused() {
        let hq = demo_hq_keypair();
        let mut signed = SignedRoster::sign(&hq, "store-1", 1, peers(2));
        // A stranger adds itself: the signature no longer covers the list.
        signed.peers.push(PeerId::random().to_base58());
        assert!(matches!(
            signed.verify(&hq.public()),
            Err(RosterError::BadSignature)
        ));
        let mut signed = SignedRoster::sign(&hq, "store-1", 1, peers(2));
        signed.signature = "not base64!".into();
        assert!(matches!(
            signed.verify(&hq.public()),
            Err(RosterError::Encoding(_))
        ));
        let other = ed25519::Keypair::generate();
        let signed = SignedRoster::sign(&other, "store-1", 1, peers(2));
        assert!(matches!(
            signed.verify(&hq.public()),
            Err(RosterError::BadSignature)
        ));
        let mut signed = SignedRoster::sign(&hq, "store-1", 1, peers(2));
        signed.peers[0] = "not-a-peer".into();
        assert!(matches!(
            signed.verify(&hq.public()),
            Err(RosterError::PeerId(_))
        ));
        assert!(matches!(
            SignedRoster::from_json("{\"store_id\": 3}"),
            Err(RosterError::Json(_))
        ));
        assert!(parse_hq_key("AAAA").is_err());
        let key = encode_hq_key(&hq.public());
        assert_eq!(parse_hq_key(&key).expect("key"), hq.public());
    }
}
