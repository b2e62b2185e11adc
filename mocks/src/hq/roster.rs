//! The store rosters HQ keeps: for each store, the peer ids of its units, signed with
//! HQ's key (the one the units' enrolment bundles name, so an enrolled unit trusts the
//! roster with nothing configured). A unit that enrols with a mesh peer id is added
//! (`Enroll`), the roster's version grows, and HQ pushes the new roster to the store's
//! other units (`StoreService.PushRoster`).
//!
//! Rosters live in the sled tree [`ROSTERS_TREE`] of HQ's storage, keyed by store id,
//! as the signed JSON the units get. Adding is a compare-and-swap, so two units
//! enrolling at once both end up on the roster, each in its own version.

use outpost_p2p::PeerId;
use outpost_p2p::roster::{HqKeypair, SignedRoster};

/// The sled tree of rosters.
pub const ROSTERS_TREE: &str = "rosters";

/// Why a roster could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RosterStoreError {
    /// The database failed.
    #[error("HQ roster store: {0}")]
    Db(#[from] sled::Error),
    /// A stored roster does not parse (a changed database).
    #[error("the stored roster of store {store:?} is unreadable: {reason}")]
    Corrupt {
        /// The store.
        store: String,
        /// Why.
        reason: String,
    },
}

/// The stores' rosters, in HQ's sled storage.
#[derive(Debug, Clone)]
pub struct Rosters {
    tree: sled::Tree,
}

impl Rosters {
    /// The rosters in `tree` ([`ROSTERS_TREE`] of HQ's database).
    pub fn new(tree: sled::Tree) -> Rosters {
        Rosters { tree }
    }

    /// The current roster of `store`, if any unit of it was put on one.
    pub fn get(&self, store: &str) -> Result<Option<SignedRoster>, RosterStoreError> {
        self.tree
            .get(store.as_bytes())?
            .map(|v| decode(store, &v))
            .transpose()
    }

    /// Puts `peer` on `store`'s roster, signed with `key` under a new version, and
    /// flushes it; a peer already on it leaves the roster as it is. Returns the roster.
    pub fn add(
        &self,
        store: &str,
        peer: PeerId,
        key: &HqKeypair,
    ) -> Result<SignedRoster, RosterStoreError> {
        loop {
            let old = self.tree.get(store.as_bytes())?;
            let current = old.as_ref().map(|v| decode(store, v)).transpose()?;
            let (version, mut peers) = match &current {
                Some(r) => {
                    let peers = r
                        .peers
                        .iter()
                        .map(|p| {
                            p.parse::<PeerId>().map_err(|_| RosterStoreError::Corrupt {
                                store: store.into(),
                                reason: format!("peer id {p:?}"),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    (r.version, peers)
                }
                None => (0, Vec::new()),
            };
            if peers.contains(&peer)
                && let Some(r) = current
            {
                return Ok(r);
            }
            peers.push(peer);
            let next = SignedRoster::sign(key, store, version + 1, peers);
            let json = serde_json::to_vec(&next).map_err(|e| RosterStoreError::Corrupt {
                store: store.into(),
                reason: e.to_string(),
            })?;
            if self
                .tree
                .compare_and_swap(store.as_bytes(), old, Some(json))?
                .is_ok()
            {
                self.tree.flush()?;
                return Ok(next);
            }
        }
    }
}

fn decode(store: &str, bytes: &[u8]) -> Result<SignedRoster, RosterStoreError> {
    serde_json::from_slice(bytes).map_err(|e| RosterStoreError::Corrupt {
        store: store.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_p2p::identity::Keypair;

    #[test]
    fn each_unit_added_grows_the_version_and_a_repeat_changes_nothing() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let rosters = Rosters::new(db.open_tree(ROSTERS_TREE).unwrap());
        let key = HqKeypair::generate();
        let (a, b) = (
            Keypair::generate_ed25519().public().to_peer_id(),
            Keypair::generate_ed25519().public().to_peer_id(),
        );
        assert!(rosters.get("store-1").unwrap().is_none());
        let first = rosters.add("store-1", a, &key).unwrap();
        assert_eq!((first.version, first.peers.len()), (1, 1));
        let second = rosters.add("store-1", b, &key).unwrap();
        assert_eq!((second.version, second.peers.len()), (2, 2));
        let again = rosters.add("store-1", a, &key).unwrap();
        assert_eq!(again, second);
        let roster = second.verify(&key.public()).unwrap();
        assert!(roster.contains(&a) && roster.contains(&b));
        assert_eq!(rosters.get("store-1").unwrap(), Some(second));
        assert!(rosters.get("store-2").unwrap().is_none());
    }
}
