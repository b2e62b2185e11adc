//! The release root: which keys may sign releases and how many must (k of n), with
//! its own version and expiry. A unit trusts one root; HQ rotates it by a new root
//! signed by a threshold of the current root's keys *and* of its own (TUF's rule), one
//! version at a time, so a stolen minority of keys can neither sign a release nor
//! replace the root.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::error::UpdateError;
use crate::signed::{ROOT_TYPE, SignedDoc, key_id};

const WHAT: &str = "release root";

/// The keys trusted to sign releases, and how many must sign.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Starts at 1; each rotation adds one.
    pub version: u64,
    /// Unix seconds after which the root is no longer trusted for new releases.
    pub expires: i64,
    /// Signatures needed, 1..=keys.len().
    pub threshold: u32,
    /// The release keys' Ed25519 public keys, base64.
    pub keys: Vec<String>,
}

impl Root {
    /// A root over `keys`.
    pub fn new(version: u64, expires: i64, threshold: u32, keys: &[&SigningKey]) -> Root {
        Root {
            version,
            expires,
            threshold,
            keys: keys
                .iter()
                .map(|k| B64.encode(k.verifying_key().as_bytes()))
                .collect(),
        }
    }

    /// The root this document carries, checked for shape only: whether to trust it is
    /// [`Root::rotate`]'s (or, for the first root, the enrolment's) business.
    pub fn parse(doc: &SignedDoc) -> Result<Root, UpdateError> {
        if doc.payload_type != ROOT_TYPE {
            return Err(UpdateError::Malformed {
                what: WHAT,
                reason: format!("payload type {:?} is not a root", doc.payload_type),
            });
        }
        let root: Root = serde_json::from_slice(&doc.payload_bytes(WHAT)?).map_err(|e| {
            UpdateError::Malformed {
                what: WHAT,
                reason: e.to_string(),
            }
        })?;
        root.trusted_keys()?;
        Ok(root)
    }

    /// The (id, key) pairs, checked: at least one key, no duplicate, a threshold
    /// between 1 and the number of keys.
    pub fn trusted_keys(&self) -> Result<Vec<(String, VerifyingKey)>, UpdateError> {
        let bad = |reason: String| UpdateError::Malformed { what: WHAT, reason };
        let mut out: Vec<(String, VerifyingKey)> = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let raw = B64
                .decode(k)
                .map_err(|e| bad(format!("key {k:?} is not base64: {e}")))?;
            let arr: [u8; 32] = raw
                .try_into()
                .map_err(|_| bad(format!("key {k:?} is not 32 bytes")))?;
            let key = VerifyingKey::from_bytes(&arr)
                .map_err(|e| bad(format!("key {k:?} is not an Ed25519 key: {e}")))?;
            let id = key_id(&key);
            if out.iter().any(|(i, _)| *i == id) {
                return Err(bad(format!("key {id} appears twice")));
            }
            out.push((id, key));
        }
        if out.is_empty() {
            return Err(bad("no keys".into()));
        }
        if self.threshold == 0 || self.threshold as usize > out.len() {
            return Err(bad(format!(
                "threshold {} with {} key(s)",
                self.threshold,
                out.len()
            )));
        }
        Ok(out)
    }

    /// The payload of `doc` if at least `threshold` of this root's keys signed it.
    pub fn verify(&self, doc: &SignedDoc, what: &'static str) -> Result<Vec<u8>, UpdateError> {
        if doc.signatures.is_empty() {
            return Err(UpdateError::Unsigned { what });
        }
        let keys = self.trusted_keys()?;
        let valid = doc.valid_signers(&keys, what)?.len();
        if valid < self.threshold as usize {
            return Err(UpdateError::BadSignature {
                what,
                valid,
                threshold: self.threshold,
            });
        }
        doc.payload_bytes(what)
    }

    /// Refuses a root past its expiry.
    pub fn check_fresh(&self, now: i64) -> Result<(), UpdateError> {
        if self.expires <= now {
            return Err(UpdateError::Expired {
                what: WHAT,
                expired: self.expires,
                now,
            });
        }
        Ok(())
    }

    /// The next root, if `doc` carries version `self.version + 1` signed by a
    /// threshold of this root's keys and of its own. Expiry is not checked here: a
    /// chain of rotations may pass through expired roots; the last one must be fresh
    /// when it is used.
    pub fn rotate(&self, doc: &SignedDoc) -> Result<Root, UpdateError> {
        let next = Root::parse(doc)?;
        let chain = |reason: String| UpdateError::RootChain {
            current: self.version,
            next: next.version,
            reason,
        };
        if next.version != self.version + 1 {
            return Err(chain(format!(
                "a rotation goes one version at a time, to {}",
                self.version + 1
            )));
        }
        self.verify(doc, WHAT)
            .map_err(|e| chain(format!("not signed by the current root's keys: {e}")))?;
        next.verify(doc, WHAT)
            .map_err(|e| chain(format!("not signed by its own keys: {e}")))?;
        Ok(next)
    }

    /// The root signed by `keys`, as HQ's release tool publishes it.
    pub fn sign(&self, keys: &[&SigningKey]) -> SignedDoc {
        // A struct of numbers and strings always serialises.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        SignedDoc::sign(ROOT_TYPE, &payload, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signed::MANIFEST_TYPE;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn k_of_n_counts_distinct_trusted_keys() {
        let (a, b, c, stranger) = (key(1), key(2), key(3), key(9));
        let root = Root::new(1, i64::MAX, 2, &[&a, &b, &c]);
        let one = SignedDoc::sign(MANIFEST_TYPE, b"{}", &[&a]);
        assert!(matches!(
            root.verify(&one, "m"),
            Err(UpdateError::BadSignature {
                valid: 1,
                threshold: 2,
                ..
            })
        ));
        let with_stranger = SignedDoc::sign(MANIFEST_TYPE, b"{}", &[&a, &stranger]);
        assert!(root.verify(&with_stranger, "m").is_err());
        let two = SignedDoc::sign(MANIFEST_TYPE, b"{}", &[&c, &a]);
        assert_eq!(root.verify(&two, "m").unwrap(), b"{}");
        let none = SignedDoc {
            signatures: vec![],
            ..two
        };
        assert!(matches!(
            root.verify(&none, "m"),
            Err(UpdateError::Unsigned { .. })
        ));
    }

    #[test]
    fn a_rotation_needs_the_old_and_the_new_threshold_and_the_next_version() {
        let (a, b, c, d) = (key(1), key(2), key(3), key(4));
        let root1 = Root::new(1, 100, 1, &[&a, &b]);
        let root2 = Root::new(2, 200, 2, &[&c, &d]);
        // Signed by the new keys only: a thief with new keys cannot take over.
        let err = root1.rotate(&root2.sign(&[&c, &d])).unwrap_err();
        assert_eq!(err.code(), "root_chain", "{err}");
        // Signed by the old key only: the new keys never agreed.
        let err = root1.rotate(&root2.sign(&[&a])).unwrap_err();
        assert!(err.to_string().contains("its own keys"), "{err}");
        // Both: accepted, even though root 1 has expired by now.
        assert_eq!(root1.rotate(&root2.sign(&[&a, &c, &d])).unwrap(), root2);
        // A skipped version is refused.
        let root3 = Root::new(3, 300, 1, &[&a]);
        let err = root1.rotate(&root3.sign(&[&a])).unwrap_err();
        assert!(err.to_string().contains("one version at a time"), "{err}");
    }

    #[test]
    fn bad_roots_are_refused_with_the_reason() {
        let a = key(1);
        for (root, expect) in [
            (Root::new(1, 1, 0, &[&a]), "threshold 0"),
            (Root::new(1, 1, 2, &[&a]), "threshold 2 with 1"),
            (Root::new(1, 1, 1, &[&a, &a]), "appears twice"),
            (Root::new(1, 1, 1, &[]), "no keys"),
            (
                Root {
                    keys: vec!["not base64!".into()],
                    ..Root::new(1, 1, 1, &[&a])
                },
                "not base64",
            ),
        ] {
            let err = Root::parse(&root.sign(&[&a])).unwrap_err();
            assert!(err.to_string().contains(expect), "{expect}: {err}");
        }
        let manifest = SignedDoc::sign(MANIFEST_TYPE, b"{}", &[&a]);
        assert!(Root::parse(&manifest).is_err(), "a manifest is not a root");
        let expired = Root::new(1, 10, 1, &[&a]);
        assert_eq!(expired.check_fresh(10).unwrap_err().code(), "expired");
        expired.check_fresh(9).unwrap();
    }
}
