//! Audit entries written while the device is locked down, kept until the key is back.
//!
//! A locked device has no data key in memory, so it cannot append to the hash-chained
//! [`AuditLog`](super::audit::AuditLog): the chain key and the log's cipher derive from
//! the data key. Yet what happens while locked (the lockdown's own aftermath, refused
//! unlocks, tamper signals, logins tried on a stolen unit) is what an investigator
//! wants most. The spool keeps those entries on disk, each sealed to a public key the
//! device holds in clear, so writing needs no secret and reading needs the data key:
//!
//! - The spool key pair is X25519. Its secret is derived from the data key
//!   (`KeyVault::subkey("audit-spool")`); its public key is stored in clear in the spool
//!   tree whenever the device holds the key ([`AuditSpool::publish`]).
//! - Each entry is sealed to it ECIES-style: a fresh ephemeral X25519 key, the shared
//!   secret hashed with both public keys (BLAKE3 `derive_key`) into a one-use
//!   XChaCha20-Poly1305 key. The value is `version || ephemeral public || sealed JSON`.
//!   Someone reading the data dir learns how many entries wait and nothing else.
//! - When the key returns, [`AuditSpool::drain`] opens every entry in order and hands
//!   it to the caller (which appends it to the chain with its original time), then
//!   removes it. An entry that does not open is reported, not silently dropped.
//! - The spool is bounded ([`AuditSpool::new`]'s `max`): past it, entries are counted
//!   (the count is in clear) and the drain reports how many were lost.
//!
//! A wipe destroys the data key, so it makes the spool unreadable like everything else.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use time::OffsetDateTime;

use super::audit::{AuditError, AuditLog, AuditStore};
use crate::vault::{KeyVault, SubKey};

const VERSION: u8 = 1;
/// Key of the clear public key in the spool tree (entry keys are 8 bytes).
const PUBLIC_KEY: &[u8] = b"meta/public";
/// Key of the clear count of entries dropped because the spool was full.
const DROPPED: &[u8] = b"meta/dropped";
const ENTRY_PREFIX: &[u8] = b"e/";
const KDF_CONTEXT: &str = "outpost 2026-12 audit spool v1";

/// One entry written while locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledEntry {
    /// When it happened (unix milliseconds).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Context (never secrets).
    pub detail: String,
}

/// What a drain found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Entries opened and handed to the caller.
    pub restored: u64,
    /// Entries that would not open (tampered, or sealed to another key), removed.
    pub unreadable: u64,
    /// Entries never written because the spool was full.
    pub dropped: u64,
    /// Entries the log refused as it would have with the key there (a field over
    /// its limit), removed so they do not hold back the rest.
    pub refused: u64,
}

/// The spool in a sled tree.
pub struct AuditSpool {
    tree: sled::Tree,
    max: usize,
}

impl fmt::Debug for AuditSpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSpool")
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

fn store_err(e: impl fmt::Display) -> AuditError {
    AuditError::Store(e.to_string())
}

fn secret_from(subkey: &SubKey) -> StaticSecret {
    StaticSecret::from(*subkey.expose())
}

fn entry_key(shared: &[u8; 32], ephemeral: &PublicKey, recipient: &PublicKey) -> [u8; 32] {
    let mut material = Zeroizing::new([0u8; 96]);
    material[..32].copy_from_slice(shared);
    material[32..64].copy_from_slice(ephemeral.as_bytes());
    material[64..].copy_from_slice(recipient.as_bytes());
    blake3::derive_key(KDF_CONTEXT, &material[..])
}

impl AuditSpool {
    /// The spool in `tree`, holding at most `max` entries.
    pub fn new(tree: sled::Tree, max: usize) -> Self {
        Self { tree, max }
    }

    /// Stores the spool's public key (derived from the data key in `vault`) in clear,
    /// so entries can be sealed after the key is gone. Call whenever the key is in
    /// memory (start-up, unlock).
    pub fn publish(&self, vault: &KeyVault) -> Result<(), AuditError> {
        let secret = secret_from(&vault.subkey("audit-spool").map_err(store_err)?);
        let public = PublicKey::from(&secret);
        if self.public()?.as_ref() != Some(&public) {
            self.tree
                .insert(PUBLIC_KEY, public.as_bytes().as_slice())
                .map_err(store_err)?;
            self.tree.flush().map_err(store_err)?;
        }
        Ok(())
    }

    fn public(&self) -> Result<Option<PublicKey>, AuditError> {
        match self.tree.get(PUBLIC_KEY).map_err(store_err)? {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 32] = v.as_ref().try_into().map_err(|_| {
                    AuditError::Store(format!("spool public key is {} bytes, not 32", v.len()))
                })?;
                Ok(Some(PublicKey::from(bytes)))
            }
        }
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.tree.scan_prefix(ENTRY_PREFIX).count()
    }

    /// Whether no entry waits.
    pub fn is_empty(&self) -> bool {
        self.tree.scan_prefix(ENTRY_PREFIX).next().is_none()
    }

    /// Whether entries were dropped because the spool was full (not yet reported by a
    /// drain).
    pub fn has_dropped(&self) -> bool {
        self.tree.contains_key(DROPPED).unwrap_or(false)
    }

    fn dropped(&self) -> Result<u64, AuditError> {
        Ok(match self.tree.get(DROPPED).map_err(store_err)? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| AuditError::Store("spool drop count is not 8 bytes".into()))?,
            None => 0,
        })
    }

    /// Seals `entry` to the spool's public key and stores it durably. Returns `false`
    /// when the spool is full (the entry is counted as dropped) or has no public key
    /// (a data dir never opened by a build with the spool).
    pub fn push(&mut self, entry: &SpooledEntry) -> Result<bool, AuditError> {
        let Some(recipient) = self.public()? else {
            return Ok(false);
        };
        if self.len() >= self.max {
            let dropped = self.dropped()? + 1;
            self.tree
                .insert(DROPPED, &dropped.to_be_bytes())
                .map_err(store_err)?;
            self.tree.flush().map_err(store_err)?;
            return Ok(false);
        }
        let ephemeral = StaticSecret::from(rand::random::<[u8; 32]>());
        let ephemeral_public = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(&recipient);
        let key = Zeroizing::new(entry_key(shared.as_bytes(), &ephemeral_public, &recipient));
        let json = Zeroizing::new(serde_json::to_vec(entry).map_err(store_err)?);
        // `&mut self` makes pushes one at a time, so the next key is the last plus one.
        let seq = match self.tree.scan_prefix(ENTRY_PREFIX).next_back() {
            Some(item) => {
                let (k, _) = item.map_err(store_err)?;
                let n: [u8; 8] = k[ENTRY_PREFIX.len()..]
                    .try_into()
                    .map_err(|_| AuditError::Store("spool entry key is malformed".into()))?;
                u64::from_be_bytes(n) + 1
            }
            None => 0,
        };
        let id = [ENTRY_PREFIX, &seq.to_be_bytes()].concat();
        let sealed = XChaCha20Poly1305::new((&*key).into())
            .encrypt(
                // The key is used once, so a fixed nonce is safe.
                XNonce::from_slice(&[0u8; 24]),
                Payload {
                    msg: &json,
                    aad: &id,
                },
            )
            .map_err(|_| AuditError::Store("spool entry did not seal".into()))?;
        let mut value = Vec::with_capacity(1 + 32 + sealed.len());
        value.push(VERSION);
        value.extend_from_slice(ephemeral_public.as_bytes());
        value.extend_from_slice(&sealed);
        self.tree.insert(id, value).map_err(store_err)?;
        self.tree.flush().map_err(store_err)?;
        Ok(true)
    }

    fn open(
        secret: &StaticSecret,
        recipient: &PublicKey,
        id: &[u8],
        value: &[u8],
    ) -> Option<SpooledEntry> {
        if value.len() < 33 || value[0] != VERSION {
            return None;
        }
        let ephemeral_public = PublicKey::from(<[u8; 32]>::try_from(&value[1..33]).ok()?);
        let shared = secret.diffie_hellman(&ephemeral_public);
        let key = Zeroizing::new(entry_key(shared.as_bytes(), &ephemeral_public, recipient));
        let plain = Zeroizing::new(
            XChaCha20Poly1305::new((&*key).into())
                .decrypt(
                    XNonce::from_slice(&[0u8; 24]),
                    Payload {
                        msg: &value[33..],
                        aad: id,
                    },
                )
                .ok()?,
        );
        serde_json::from_slice(&plain).ok()
    }

    /// [`AuditSpool::drain`] into `log`: each entry appended with its original time;
    /// an entry the log refuses as too long is counted in `refused` and skipped.
    pub fn drain_into<S: AuditStore>(
        &self,
        vault: &KeyVault,
        log: &mut AuditLog<S>,
    ) -> Result<DrainReport, AuditError> {
        let mut refused = 0;
        let mut report = self.drain(vault, &mut |e| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
            match log.append(&e.actor, &e.action, &e.detail, at) {
                Ok(_) => Ok(()),
                Err(AuditError::TooLong { .. }) => {
                    refused += 1;
                    Ok(())
                }
                Err(other) => Err(other),
            }
        })?;
        report.restored -= refused;
        report.refused = refused;
        Ok(report)
    }

    /// Opens every waiting entry with the key in `vault`, in the order written, hands
    /// each to `restore`, and removes it once `restore` succeeded. An error from
    /// `restore` stops the drain with the rest still spooled.
    pub fn drain(
        &self,
        vault: &KeyVault,
        restore: &mut dyn FnMut(SpooledEntry) -> Result<(), AuditError>,
    ) -> Result<DrainReport, AuditError> {
        let secret = secret_from(&vault.subkey("audit-spool").map_err(store_err)?);
        let recipient = PublicKey::from(&secret);
        let mut report = DrainReport {
            dropped: self.dropped()?,
            ..DrainReport::default()
        };
        for item in self.tree.scan_prefix(ENTRY_PREFIX) {
            let (id, value) = item.map_err(store_err)?;
            match Self::open(&secret, &recipient, &id, &value) {
                Some(entry) => {
                    restore(entry)?;
                    report.restored += 1;
                }
                None => report.unreadable += 1,
            }
            self.tree.remove(id).map_err(store_err)?;
        }
        if report.dropped > 0 {
            self.tree.remove(DROPPED).map_err(store_err)?;
        }
        self.tree.flush().map_err(store_err)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::DataKey;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("audit-spool").unwrap()
    }

    fn entry(n: i64) -> SpooledEntry {
        SpooledEntry {
            at_ms: n,
            actor: "-".into(),
            action: "login.failed".into(),
            detail: format!("user \"thief-{n}\" from 10.0.0.9"),
        }
    }

    fn drain_all(spool: &AuditSpool, vault: &KeyVault) -> (Vec<SpooledEntry>, DrainReport) {
        let mut got = Vec::new();
        let report = spool
            .drain(vault, &mut |e| {
                got.push(e);
                Ok(())
            })
            .unwrap();
        (got, report)
    }

    #[test]
    fn entries_written_without_the_key_come_back_in_order_with_it() {
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let mut spool = AuditSpool::new(tree(), 100);
        spool.publish(&vault).unwrap();
        for n in 0..5 {
            assert!(spool.push(&entry(n)).unwrap());
        }
        assert_eq!(spool.len(), 5);
        let (got, report) = drain_all(&spool, &vault);
        assert_eq!(got, (0..5).map(entry).collect::<Vec<_>>());
        assert_eq!(report.restored, 5);
        assert_eq!(report.unreadable, 0);
        assert!(spool.is_empty());
    }

    #[test]
    fn the_stored_bytes_show_nothing_of_the_entry() {
        let t = tree();
        let mut spool = AuditSpool::new(t.clone(), 100);
        spool
            .publish(&KeyVault::new(DataKey::from_bytes([3; 32])))
            .unwrap();
        spool.push(&entry(1)).unwrap();
        for item in t.iter() {
            let (_, v) = item.unwrap();
            assert!(!v.windows(5).any(|w| w == b"thief"));
            assert!(!v.windows(5).any(|w| w == b"login"));
        }
    }

    #[test]
    fn another_key_opens_nothing_and_a_tampered_entry_is_reported() {
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let t = tree();
        let mut spool = AuditSpool::new(t.clone(), 100);
        spool.publish(&vault).unwrap();
        spool.push(&entry(1)).unwrap();
        spool.push(&entry(2)).unwrap();
        // Flip a byte of the first entry's ciphertext.
        let (k, v) = t.scan_prefix(ENTRY_PREFIX).next().unwrap().unwrap();
        let mut bad = v.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        t.insert(k, bad).unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert_eq!(got, vec![entry(2)]);
        assert_eq!(report.unreadable, 1);

        spool.push(&entry(3)).unwrap();
        let other = KeyVault::new(DataKey::from_bytes([4; 32]));
        let (got, report) = drain_all(&spool, &other);
        assert!(got.is_empty());
        assert_eq!(report.unreadable, 1);
    }

    #[test]
    fn a_full_spool_counts_what_it_drops() {
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let mut spool = AuditSpool::new(tree(), 3);
        spool.publish(&vault).unwrap();
        let kept: Vec<bool> = (0..5).map(|n| spool.push(&entry(n)).unwrap()).collect();
        assert_eq!(kept, [true, true, true, false, false]);
        let (got, report) = drain_all(&spool, &vault);
        assert_eq!(got.len(), 3);
        assert_eq!(report.dropped, 2);
        // The count is reset once reported.
        assert_eq!(drain_all(&spool, &vault).1, DrainReport::default());
    }

    #[test]
    fn without_a_published_key_nothing_is_written() {
        let mut spool = AuditSpool::new(tree(), 3);
        assert!(!spool.push(&entry(1)).unwrap());
        assert!(spool.is_empty());
    }

    #[test]
    fn drained_into_the_chain_with_their_times_and_a_too_long_entry_skipped() {
        use crate::auth::audit::{MAX_DETAIL, VecAuditStore};
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let mut spool = AuditSpool::new(tree(), 10);
        spool.publish(&vault).unwrap();
        let mut long = entry(2);
        long.detail = "x".repeat(MAX_DETAIL + 1);
        for e in [entry(1_700_000_000_000), long, entry(1_700_000_000_500)] {
            spool.push(&e).unwrap();
        }
        let mut log = AuditLog::open(
            VecAuditStore::default(),
            &vault.subkey("audit-chain").unwrap(),
        )
        .unwrap();
        let report = spool.drain_into(&vault, &mut log).unwrap();
        assert_eq!((report.restored, report.refused), (2, 1));
        assert!(spool.is_empty());
        assert_eq!(log.verify().unwrap(), 2);
        let at: Vec<i64> = log.store().entries.iter().map(|e| e.at_ms).collect();
        assert_eq!(at, [1_700_000_000_000, 1_700_000_000_500]);
    }

    #[test]
    fn a_failing_restore_keeps_the_rest() {
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let mut spool = AuditSpool::new(tree(), 10);
        spool.publish(&vault).unwrap();
        for n in 0..3 {
            spool.push(&entry(n)).unwrap();
        }
        let mut calls = 0;
        let r = spool.drain(&vault, &mut |_| {
            calls += 1;
            if calls == 2 {
                Err(AuditError::Store("disk full".into()))
            } else {
                Ok(())
            }
        });
        assert!(r.is_err());
        assert_eq!(spool.len(), 2);
        let (got, _) = drain_all(&spool, &vault);
        assert_eq!(got, vec![entry(1), entry(2)]);
    }
}
