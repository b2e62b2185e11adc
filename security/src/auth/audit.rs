//! The audit log: who did what, as a keyed hash chain so tampering shows.
//!
//! Entry `n` carries `hash_n = BLAKE3-keyed(chain_key, seq || at || actor || action ||
//! detail || hash_{n-1})` (fields length-prefixed). [`AuditLog::verify`] recomputes the
//! chain: an edited, deleted, reordered or inserted entry breaks it. The chain key is a
//! subkey of the data key (`KeyVault::subkey("audit-chain")`), so someone who can write
//! the store but does not hold the key cannot forge a consistent chain. Cutting entries
//! off the *end* leaves a valid shorter chain; that is caught outside the unit: the
//! server sends the head (`seq`, `hash`, [`AuditLog::head`]) to HQ regularly, each time
//! with the hash its chain now has at the head it sent before ([`AuditLog::hash_at`]),
//! and HQ flags a head that went backwards or no longer extends the one it holds (see
//! docs/security.md).
//!
//! Details must never contain secrets (tokens, passwords, keys) or card data.
//!
//! Storage is a trait: [`VecAuditStore`] in memory, [`SledAuditStore`] in a sled tree
//! with every entry encrypted under a [`Cipher`].

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::vault::{Cipher, SubKey};

/// Why the audit log failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The store failed.
    #[error("Audit store: {0}")]
    Store(String),
    /// The chain does not verify at entry `seq`.
    #[error("Audit chain broken at entry {seq}: {reason}")]
    Broken {
        /// The first entry that fails.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// A field is too long.
    #[error("Audit {field} longer than {max} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// When (unix milliseconds).
    pub at_ms: i64,
    /// Who: a terminal name, a username, `"hq"` or `"system"`.
    pub actor: String,
    /// What, as a stable verb: `"login"`, `"refund"`, `"terminal.revoke"`, ...
    pub action: String,
    /// Free text context (never secrets).
    pub detail: String,
    /// Hex of the previous entry's hash (64 zeros for the first).
    pub prev: String,
    /// Hex of this entry's hash.
    pub hash: String,
}

/// Where entries live.
pub trait AuditStore {
    /// Appends an entry (its `seq` is one more than the last).
    fn append(&mut self, entry: &AuditEntry) -> Result<(), AuditError>;
    /// The last entry, if any.
    fn last(&self) -> Result<Option<AuditEntry>, AuditError>;
    /// Visits entries in `seq` order; stops at the first error.
    fn for_each(
        &self,
        f: &mut dyn FnMut(AuditEntry) -> Result<(), AuditError>,
    ) -> Result<(), AuditError>;
    /// The entry with sequence `seq`, if stored. The default visits every entry; a
    /// store with an index answers directly.
    fn get(&self, seq: u64) -> Result<Option<AuditEntry>, AuditError> {
        let mut found = None;
        self.for_each(&mut |e| {
            if e.seq == seq {
                found = Some(e);
            }
            Ok(())
        })?;
        Ok(found)
    }
}

/// In-memory store (tests, and a server without persistence).
#[derive(Debug, Clone, Default)]
pub struct VecAuditStore {
    /// The entries, public so tests can tamper with them.
    pub entries: Vec<AuditEntry>,
}

impl AuditStore for VecAuditStore {
    fn append(&mut self, entry: &AuditEntry) -> Result<(), AuditError> {
        self.entries.push(entry.clone());
        Ok(())
    }

    fn last(&self) -> Result<Option<AuditEntry>, AuditError> {
        Ok(self.entries.last().cloned())
    }

    fn for_each(
        &self,
        f: &mut dyn FnMut(AuditEntry) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        for e in &self.entries {
            f(e.clone())?;
        }
        Ok(())
    }
}

/// A sled tree of entries keyed by big-endian `seq`, each value JSON sealed with the
/// cipher (associated data: tree name and key), so the data dir shows no actor or detail.
pub struct SledAuditStore {
    tree: sled::Tree,
    cipher: Cipher,
    /// Whether each append is flushed before it returns (the default).
    flush_each: bool,
}

impl fmt::Debug for SledAuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledAuditStore")
            .field("len", &self.tree.len())
            .finish()
    }
}

impl SledAuditStore {
    /// The store in `tree`, encrypted with `cipher` (use `KeyVault::cipher("tree:audit")`).
    pub fn new(tree: sled::Tree, cipher: Cipher) -> Self {
        Self {
            tree,
            cipher,
            flush_each: true,
        }
    }

    /// Whether each append is flushed to disk before it returns (on by default). Off
    /// for a batch of appends that ends with [`SledAuditStore::flush`]: entries still
    /// reach the disk in order, so a crash keeps a prefix of the batch.
    pub fn set_flush_each(&mut self, on: bool) {
        self.flush_each = on;
    }

    /// Flushes every append so far to disk.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.tree
            .flush()
            .map(|_| ())
            .map_err(|e| AuditError::Store(e.to_string()))
    }

    fn tree_name(&self) -> String {
        String::from_utf8_lossy(&self.tree.name()).into_owned()
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<AuditEntry, AuditError> {
        let seq = key
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| AuditError::Store("audit key is not 8 bytes".into()))?;
        let plain = self
            .cipher
            .open_record(&self.tree_name(), key, value)
            .map_err(|e| AuditError::Broken {
                seq,
                reason: e.to_string(),
            })?;
        serde_json::from_slice(&plain).map_err(|e| AuditError::Broken {
            seq,
            reason: format!("entry does not decode: {e}"),
        })
    }
}

impl AuditStore for SledAuditStore {
    fn append(&mut self, entry: &AuditEntry) -> Result<(), AuditError> {
        let key = entry.seq.to_be_bytes();
        let json = Zeroizing::new(
            serde_json::to_vec(entry).map_err(|e| AuditError::Store(e.to_string()))?,
        );
        let value = self.cipher.seal_record(&self.tree_name(), &key, &json);
        self.tree
            .insert(key, value)
            .map_err(|e| AuditError::Store(e.to_string()))?;
        if self.flush_each {
            self.flush()?;
        }
        Ok(())
    }

    fn last(&self) -> Result<Option<AuditEntry>, AuditError> {
        match self
            .tree
            .last()
            .map_err(|e| AuditError::Store(e.to_string()))?
        {
            Some((k, v)) => Ok(Some(self.decode(&k, &v)?)),
            None => Ok(None),
        }
    }

    fn for_each(
        &self,
        f: &mut dyn FnMut(AuditEntry) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        for item in self.tree.iter() {
            let (k, v) = item.map_err(|e| AuditError::Store(e.to_string()))?;
            f(self.decode(&k, &v)?)?;
        }
        Ok(())
    }

    fn get(&self, seq: u64) -> Result<Option<AuditEntry>, AuditError> {
        let key = seq.to_be_bytes();
        match self
            .tree
            .get(key)
            .map_err(|e| AuditError::Store(e.to_string()))?
        {
            Some(v) => Ok(Some(self.decode(&key, &v)?)),
            None => Ok(None),
        }
    }
}

const ZERO_HASH: [u8; 32] = [0; 32];
/// Longest actor or action.
pub const MAX_NAME: usize = 128;
/// Longest detail.
pub const MAX_DETAIL: usize = 4096;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash-chained log over a store.
pub struct AuditLog<S: AuditStore> {
    store: S,
    key: Zeroizing<[u8; 32]>,
    head: Option<(u64, String)>,
}

impl<S: AuditStore> fmt::Debug for AuditLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl<S: AuditStore> AuditLog<S> {
    /// Opens the log over `store`, continuing after its last entry.
    pub fn open(store: S, chain_key: &SubKey) -> Result<Self, AuditError> {
        let head = store.last()?.map(|e| (e.seq, e.hash));
        Ok(Self {
            store,
            key: Zeroizing::new(*chain_key.expose()),
            head,
        })
    }

    fn compute(
        &self,
        seq: u64,
        at_ms: i64,
        actor: &str,
        action: &str,
        detail: &str,
        prev: &str,
    ) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(&seq.to_be_bytes());
        h.update(&at_ms.to_be_bytes());
        for field in [actor, action, detail, prev] {
            h.update(&(field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex(h.finalize().as_bytes())
    }

    /// Appends a record and returns it.
    pub fn append(
        &mut self,
        actor: &str,
        action: &str,
        detail: &str,
        at: OffsetDateTime,
    ) -> Result<AuditEntry, AuditError> {
        for (field, value, max) in [
            ("actor", actor, MAX_NAME),
            ("action", action, MAX_NAME),
            ("detail", detail, MAX_DETAIL),
        ] {
            if value.len() > max {
                return Err(AuditError::TooLong { field, max });
            }
        }
        let (seq, prev) = match &self.head {
            Some((seq, hash)) => (seq + 1, hash.clone()),
            None => (1, hex(&ZERO_HASH)),
        };
        let at_ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
        let hash = self.compute(seq, at_ms, actor, action, detail, &prev);
        let entry = AuditEntry {
            seq,
            at_ms,
            actor: actor.to_owned(),
            action: action.to_owned(),
            detail: detail.to_owned(),
            prev,
            hash: hash.clone(),
        };
        self.store.append(&entry)?;
        self.head = Some((seq, hash));
        Ok(entry)
    }

    /// Recomputes the whole chain; returns the number of entries, or where it breaks.
    pub fn verify(&self) -> Result<u64, AuditError> {
        let mut expected_seq = 1u64;
        let mut prev = hex(&ZERO_HASH);
        self.store.for_each(&mut |e| {
            let broken = |reason: String| AuditError::Broken { seq: e.seq, reason };
            if e.seq != expected_seq {
                return Err(broken(format!("expected entry {expected_seq}")));
            }
            if e.prev != prev {
                return Err(broken("does not link to the previous entry".into()));
            }
            if self.compute(e.seq, e.at_ms, &e.actor, &e.action, &e.detail, &e.prev) != e.hash {
                return Err(broken("contents do not match the hash".into()));
            }
            prev = e.hash;
            expected_seq += 1;
            Ok(())
        })?;
        let count = expected_seq - 1;
        if let Some((seq, hash)) = &self.head
            && (*seq != count || *hash != prev)
        {
            return Err(AuditError::Broken {
                seq: count + 1,
                reason: format!("log ends at {count} but entry {seq} was written by this process"),
            });
        }
        Ok(count)
    }

    /// The last entry's (`seq`, hash): what the server reports to HQ.
    pub fn head(&self) -> Option<(u64, &str)> {
        self.head.as_ref().map(|(s, h)| (*s, h.as_str()))
    }

    /// The hash stored with entry `seq`; `None` when the log does not reach it (it
    /// was cut). An entry that does not decrypt is an error. With a head reported
    /// earlier, this says whether the log still passes through it.
    pub fn hash_at(&self, seq: u64) -> Result<Option<String>, AuditError> {
        Ok(self.store.get(seq)?.map(|e| e.hash))
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The underlying store, mutably (tests tamper through it).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::DataKey;
    use crate::vault::KeyVault;

    fn vault() -> KeyVault {
        KeyVault::new(DataKey::from_bytes([3; 32]))
    }

    fn filled(n: u64) -> AuditLog<VecAuditStore> {
        let mut log = AuditLog::open(
            VecAuditStore::default(),
            &vault().subkey("audit-chain").unwrap(),
        )
        .unwrap();
        for i in 0..n {
            log.append(
                "tech1",
                "config.change",
                &format!("change {i}"),
                OffsetDateTime::UNIX_EPOCH,
            )
            .unwrap();
        }
        log
    }

    #[test]
    fn intact_chain_verifies() {
        let log = filled(5);
        assert_eq!(log.verify(), Ok(5));
        assert_eq!(log.head().unwrap().0, 5);
    }

    #[test]
    fn hash_at_says_whether_the_log_still_reaches_an_entry() {
        let mut log = filled(5);
        let (seq, hash) = log.head().map(|(s, h)| (s, h.to_owned())).unwrap();
        assert_eq!(log.hash_at(seq).unwrap(), Some(hash));
        let third = log.store().entries[2].hash.clone();
        assert_eq!(log.hash_at(3).unwrap(), Some(third));
        // Cut after entry 3: the head reported before is gone.
        log.store_mut().entries.truncate(3);
        assert_eq!(log.hash_at(seq).unwrap(), None);
        assert_eq!(log.hash_at(0).unwrap(), None);
    }

    #[test]
    fn every_kind_of_tampering_is_detected() {
        type Tamper = fn(&mut Vec<AuditEntry>);
        let cases: [(&str, Tamper); 5] = [
            ("edit detail", |e| e[2].detail = "nothing happened".into()),
            ("edit actor", |e| e[1].actor = "someone else".into()),
            ("delete middle", |e| {
                e.remove(2);
            }),
            ("swap", |e| e.swap(1, 2)),
            ("truncate tail", |e| {
                e.pop();
            }),
        ];
        for (what, tamper) in cases {
            let mut log = filled(5);
            tamper(&mut log.store_mut().entries);
            assert!(
                matches!(log.verify(), Err(AuditError::Broken { .. })),
                "{what}"
            );
        }
        // A forger without the chain key cannot recompute a consistent chain.
        let mut log = filled(3);
        let other_key = KeyVault::new(DataKey::from_bytes([4; 32]))
            .subkey("audit-chain")
            .unwrap();
        let mut forged = AuditLog::open(VecAuditStore::default(), &other_key).unwrap();
        for e in &log.store().entries {
            forged
                .append(&e.actor, &e.action, "rewritten", OffsetDateTime::UNIX_EPOCH)
                .unwrap();
        }
        log.store_mut().entries = forged.store().entries.clone();
        assert!(matches!(
            log.verify(),
            Err(AuditError::Broken { seq: 1, .. })
        ));
    }

    #[test]
    fn oversized_fields_are_refused() {
        let mut log = filled(0);
        assert_eq!(
            log.append(
                "a",
                "b",
                &"x".repeat(MAX_DETAIL + 1),
                OffsetDateTime::UNIX_EPOCH
            ),
            Err(AuditError::TooLong {
                field: "detail",
                max: MAX_DETAIL
            })
        );
        assert_eq!(log.verify(), Ok(0));
    }

    #[test]
    fn sled_store_is_encrypted_survives_reopen_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault();
        {
            let db = sled::open(dir.path()).unwrap();
            let store = SledAuditStore::new(
                db.open_tree("audit").unwrap(),
                v.cipher("tree:audit").unwrap(),
            );
            let mut log = AuditLog::open(store, &v.subkey("audit-chain").unwrap()).unwrap();
            log.append(
                "supervisor-anna",
                "refund",
                "receipt 42",
                OffsetDateTime::UNIX_EPOCH,
            )
            .unwrap();
            log.append(
                "supervisor-anna",
                "void",
                "receipt 43",
                OffsetDateTime::UNIX_EPOCH,
            )
            .unwrap();
            db.flush().unwrap();
        }
        let db = crate::sled_lock::reopen(dir.path());
        let tree = db.open_tree("audit").unwrap();
        for item in tree.iter() {
            let (_, v) = item.unwrap();
            assert!(
                !v.windows(6).any(|w| w == b"refund"),
                "values are ciphertext"
            );
        }
        let store = SledAuditStore::new(tree.clone(), v.cipher("tree:audit").unwrap());
        let mut log = AuditLog::open(store, &v.subkey("audit-chain").unwrap()).unwrap();
        log.append("tech1", "login", "", OffsetDateTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(log.verify(), Ok(3));
        let head = log.head().map(|(s, h)| (s, h.to_owned())).unwrap();
        assert_eq!(log.hash_at(3).unwrap(), Some(head.1));
        assert_eq!(log.hash_at(4).unwrap(), None);
        assert_eq!(log.hash_at(1).unwrap().map(|h| h.len()), Some(64));
        // Moving entry 1's ciphertext to key 2 is caught by the associated data.
        let one = tree.get(1u64.to_be_bytes()).unwrap().unwrap();
        tree.insert(2u64.to_be_bytes(), one).unwrap();
        assert!(matches!(
            log.verify(),
            Err(AuditError::Broken { seq: 2, .. })
        ));
    }
}
