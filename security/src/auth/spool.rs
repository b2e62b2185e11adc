//! Audit entries written while the device is locked down, kept until the key is back.
//!
//! A locked device has no data key in memory, so it cannot append to the hash-chained
//! [`AuditLog`]: the chain key and the log's cipher derive from the data key. Yet what
//! happens while locked (the lockdown's own aftermath, refused unlocks, tamper
//! signals, logins tried on a stolen unit) is what an investigator wants most. The
//! spool keeps those entries on disk, each sealed to a public key the device holds in
//! clear and signed by a key only this unit holds, so writing needs no data key,
//! reading needs it, and nobody else can write an entry that passes:
//!
//! - The spool key pair is X25519. Its secret is derived from the data key
//!   (`KeyVault::subkey("audit-spool")`); its public key is stored in clear in the spool
//!   tree whenever the device holds the key ([`AuditSpool::publish`]).
//! - Each entry is signed with Ed25519 by the spool's [`SpoolSigner`] over a
//!   domain-separated encoding of the entry, the spool's public key and the entry's
//!   position (the `signer` submodule). The server derives the signing key from the data key
//!   (`"audit-spool-sign"`) and keeps only it in memory while locked; the signer is a
//!   constructor argument so it can come from elsewhere (a TPM-sealed identity key).
//! - Each entry is sealed to the public key ECIES-style: a fresh ephemeral X25519 key,
//!   the shared secret hashed with both public keys (BLAKE3 `derive_key`) into a one-use
//!   XChaCha20-Poly1305 key, the entry's tree key as associated data. The value is
//!   `2 || ephemeral public || sealed (signature || JSON)`. Someone reading the data
//!   dir learns how many entries wait and nothing else.
//! - Positions only grow (`meta/next`, in clear), and never restart after a drain.
//! - The verifying key is stored in clear (`meta/verify`: it verifies, it cannot sign)
//!   and, because a clear copy can be swapped for an attacker's own, also **bound**:
//!   sealed under a subkey of the data key (`meta/binding`, with the highest position
//!   a drain has taken). Only the bound key is trusted; a clear copy that differs is
//!   reported as replaced. Forging or rolling back the binding needs the data key.
//! - When the key returns, [`AuditSpool::drain`] opens every entry in order and hands
//!   the genuine ones to the caller (which appends them to the chain with their
//!   original times), then removes them. An entry that does not open is counted as
//!   unreadable; one that opens but has no valid signature under the bound key, or
//!   sits at a position a drain already took (a replay), is counted as **forged** and
//!   never handed over. Nothing is silently dropped.
//! - The spool is bounded ([`AuditSpool::new`]'s `max`): past it, entries are counted
//!   (the count is in clear) and the drain reports how many were lost.
//!
//! A wipe destroys the data key, so it makes the spool unreadable like everything else.
//! Entries spooled by a build without signatures (format 1) are refused as forged.

mod signer;

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use time::OffsetDateTime;

use super::audit::{AuditError, AuditLog, AuditStore};
use crate::vault::{Cipher, KeyVault, SubKey};
pub use signer::{SIGNATURE_LEN, SpoolSigner};

/// Entries written by a build without signatures: read, and refused as forged.
const VERSION_UNSIGNED: u8 = 1;
const VERSION: u8 = 2;
/// Key of the clear public key in the spool tree (entry keys are 8 bytes).
const PUBLIC_KEY: &[u8] = b"meta/public";
/// Key of the clear verifying key (informational: only the bound one is trusted).
const VERIFYING_KEY: &[u8] = b"meta/verify";
/// Key of the sealed binding: the trusted verifying key and the drained position.
const BINDING: &[u8] = b"meta/binding";
/// Vault purpose of the binding's cipher.
const BINDING_PURPOSE: &str = "audit-spool-binding";
/// Key of the clear next position (u64 BE).
const NEXT: &[u8] = b"meta/next";
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
    /// Entries opened, verified and handed to the caller.
    pub restored: u64,
    /// Entries that would not open (tampered, or sealed to another key), removed.
    pub unreadable: u64,
    /// Entries that opened but are not this unit's: no signature, a signature that
    /// does not verify under the bound key, or a position already drained (a replay).
    /// Removed, never handed to the caller.
    pub forged: u64,
    /// Whether the clear copy of the verifying key differs from the bound one (someone
    /// replaced it; entries were verified against the bound key regardless).
    pub verifying_key_replaced: bool,
    /// Entries never written because the spool was full.
    pub dropped: u64,
    /// Entries the log refused as it would have with the key there (a field over
    /// its limit), removed so they do not hold back the rest.
    pub refused: u64,
}

impl DrainReport {
    /// Whether anything was lost or refused: worth an audit entry of its own.
    pub fn has_losses(&self) -> bool {
        self.dropped > 0 || self.unreadable > 0 || self.refused > 0
    }

    /// Whether anything points at someone writing the spool: forged entries or a
    /// replaced verifying key.
    pub fn has_forgeries(&self) -> bool {
        self.forged > 0 || self.verifying_key_replaced
    }
}

/// The trusted verifying key and how far drains went, sealed under the data key.
struct Binding {
    verifying_key: VerifyingKey,
    /// The highest position a drain took: an entry at or below it is a replay.
    drained: u64,
}

/// The spool in a sled tree.
pub struct AuditSpool {
    tree: sled::Tree,
    max: usize,
    signer: SpoolSigner,
}

impl fmt::Debug for AuditSpool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSpool")
            .field("max", &self.max)
            .field("signer", &self.signer)
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

fn entry_id(position: u64) -> Vec<u8> {
    [ENTRY_PREFIX, &position.to_be_bytes()].concat()
}

fn position_of(id: &[u8]) -> Option<u64> {
    id.get(ENTRY_PREFIX.len()..)?
        .try_into()
        .ok()
        .map(u64::from_be_bytes)
}

fn read_u64(v: &[u8], what: &str) -> Result<u64, AuditError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| AuditError::Store(format!("spool {what} is not 8 bytes")))
}

/// What an entry opened to: its signature (none in format 1) and the entry.
type Opened = (Option<[u8; SIGNATURE_LEN]>, SpooledEntry);

impl AuditSpool {
    /// The spool in `tree`, holding at most `max` entries, signing with `signer`.
    pub fn new(tree: sled::Tree, max: usize, signer: SpoolSigner) -> Self {
        Self { tree, max, signer }
    }

    fn tree_name(&self) -> String {
        String::from_utf8_lossy(&self.tree.name()).into_owned()
    }

    /// Stores the spool's public key (derived from the data key in `vault`) and the
    /// signer's verifying key in clear, so entries can be sealed and signed after the
    /// key is gone, and binds the verifying key under the data key. Call whenever the
    /// key is in memory (start-up, unlock), after [`AuditSpool::drain`]: a new signer
    /// replaces the bound key, so entries signed by the previous one must be drained
    /// first.
    pub fn publish(&self, vault: &KeyVault) -> Result<(), AuditError> {
        let secret = secret_from(&vault.subkey("audit-spool").map_err(store_err)?);
        let public = PublicKey::from(&secret);
        let verifying = self.signer.verifying_key();
        let mut batch = sled::Batch::default();
        let mut changed = false;
        if self.public()?.as_ref() != Some(&public) {
            batch.insert(PUBLIC_KEY, public.as_bytes().as_slice());
            changed = true;
        }
        if self.clear_verifying_key()? != Some(verifying.to_bytes()) {
            batch.insert(VERIFYING_KEY, verifying.as_bytes().as_slice());
            changed = true;
        }
        let drained = match self.binding(vault)? {
            Some(b) if b.verifying_key == verifying => None,
            Some(b) => Some(b.drained),
            // Nothing bound yet (or the record was removed): every position already
            // used counts as drained, so nothing written before can be replayed.
            None => Some(self.next_position()?.saturating_sub(1)),
        };
        if let Some(drained) = drained {
            let binding = Binding {
                verifying_key: verifying,
                drained,
            };
            batch.insert(BINDING, self.seal_binding(vault, &binding)?);
            changed = true;
        }
        if changed {
            self.tree.apply_batch(batch).map_err(store_err)?;
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

    /// The clear copy of the verifying key, as stored (not trusted).
    fn clear_verifying_key(&self) -> Result<Option<[u8; 32]>, AuditError> {
        Ok(self
            .tree
            .get(VERIFYING_KEY)
            .map_err(store_err)?
            .and_then(|v| v.as_ref().try_into().ok()))
    }

    fn binding_cipher(vault: &KeyVault) -> Result<Cipher, AuditError> {
        vault.cipher(BINDING_PURPOSE).map_err(store_err)
    }

    fn seal_binding(&self, vault: &KeyVault, b: &Binding) -> Result<Vec<u8>, AuditError> {
        let mut plain = Vec::with_capacity(40);
        plain.extend_from_slice(b.verifying_key.as_bytes());
        plain.extend_from_slice(&b.drained.to_be_bytes());
        Ok(Self::binding_cipher(vault)?.seal_record(&self.tree_name(), BINDING, &plain))
    }

    /// The bound verifying key and drained position; `None` when there is none or it
    /// does not open under this data key (then nothing verifies: fail closed).
    fn binding(&self, vault: &KeyVault) -> Result<Option<Binding>, AuditError> {
        let Some(sealed) = self.tree.get(BINDING).map_err(store_err)? else {
            return Ok(None);
        };
        let Ok(plain) =
            Self::binding_cipher(vault)?.open_record(&self.tree_name(), BINDING, &sealed)
        else {
            return Ok(None);
        };
        if plain.len() != 40 {
            return Ok(None);
        }
        let Ok(verifying_key) = VerifyingKey::try_from(&plain[..32]) else {
            return Ok(None);
        };
        Ok(Some(Binding {
            verifying_key,
            drained: read_u64(&plain[32..], "drained position")?,
        }))
    }

    /// The position the next entry takes: past `meta/next` and past every entry
    /// stored, never 0.
    fn next_position(&self) -> Result<u64, AuditError> {
        let next = match self.tree.get(NEXT).map_err(store_err)? {
            Some(v) => read_u64(&v, "next position")?,
            None => 0,
        };
        let after_last = match self.tree.scan_prefix(ENTRY_PREFIX).next_back() {
            Some(item) => {
                let (k, _) = item.map_err(store_err)?;
                position_of(&k)
                    .ok_or_else(|| AuditError::Store("spool entry key is malformed".into()))?
                    .checked_add(1)
                    .ok_or_else(|| AuditError::Store("spool positions are exhausted".into()))?
            }
            None => 0,
        };
        Ok(next.max(after_last).max(1))
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

    /// Whether a drain has something to do or report: entries, drops, or a clear
    /// verifying key that is not this signer's.
    pub fn needs_drain(&self) -> bool {
        let verifying = self.signer.verifying_key().to_bytes();
        !self.is_empty()
            || self.has_dropped()
            || self
                .clear_verifying_key()
                .map_or(true, |k| k.is_some_and(|k| k != verifying))
    }

    fn dropped(&self) -> Result<u64, AuditError> {
        Ok(match self.tree.get(DROPPED).map_err(store_err)? {
            Some(v) => read_u64(&v, "drop count")?,
            None => 0,
        })
    }

    /// Signs and seals `entry` and stores it durably. Returns `false` when the spool
    /// is full (the entry is counted as dropped) or has no public key (a data dir
    /// never opened by a build with the spool).
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
        // `&mut self` makes pushes one at a time, so positions are not raced.
        let position = self.next_position()?;
        let signature = self
            .signer
            .sign(&signer::message(recipient.as_bytes(), position, entry));
        self.store_at(&recipient, position, &signature, entry)?;
        Ok(true)
    }

    /// What anyone who can write the data dir can do, since sealing needs only the
    /// clear public key: store `entry` at the next position with `forger`'s signature
    /// (an all-zero one when `None`). For tests proving such entries are refused.
    /// Returns the position used.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn forge(
        &mut self,
        entry: &SpooledEntry,
        forger: Option<&SpoolSigner>,
    ) -> Result<u64, AuditError> {
        let recipient = self
            .public()?
            .ok_or_else(|| AuditError::Store("the spool has no public key".into()))?;
        let position = self.next_position()?;
        let signature = match forger {
            Some(f) => f.sign(&signer::message(recipient.as_bytes(), position, entry)),
            None => [0; SIGNATURE_LEN],
        };
        self.store_at(&recipient, position, &signature, entry)?;
        Ok(position)
    }

    /// Seals `signature || entry` to `recipient` at `position` and stores it with the
    /// next position, durably.
    fn store_at(
        &self,
        recipient: &PublicKey,
        position: u64,
        signature: &[u8; SIGNATURE_LEN],
        entry: &SpooledEntry,
    ) -> Result<(), AuditError> {
        let next = position
            .checked_add(1)
            .ok_or_else(|| AuditError::Store("spool positions are exhausted".into()))?;
        let ephemeral = StaticSecret::from(rand::random::<[u8; 32]>());
        let ephemeral_public = PublicKey::from(&ephemeral);
        let shared = ephemeral.diffie_hellman(recipient);
        let key = Zeroizing::new(entry_key(shared.as_bytes(), &ephemeral_public, recipient));
        let mut plain = Zeroizing::new(signature.to_vec());
        serde_json::to_writer(&mut *plain, entry).map_err(store_err)?;
        let id = entry_id(position);
        let sealed = XChaCha20Poly1305::new((&*key).into())
            .encrypt(
                // The key is used once, so a fixed nonce is safe.
                XNonce::from_slice(&[0u8; 24]),
                Payload {
                    msg: &plain,
                    aad: &id,
                },
            )
            .map_err(|_| AuditError::Store("spool entry did not seal".into()))?;
        let mut value = Vec::with_capacity(1 + 32 + sealed.len());
        value.push(VERSION);
        value.extend_from_slice(ephemeral_public.as_bytes());
        value.extend_from_slice(&sealed);
        let mut batch = sled::Batch::default();
        batch.insert(id, value);
        batch.insert(NEXT, &next.to_be_bytes());
        self.tree.apply_batch(batch).map_err(store_err)?;
        self.tree.flush().map_err(store_err)?;
        Ok(())
    }

    fn open(
        secret: &StaticSecret,
        recipient: &PublicKey,
        id: &[u8],
        value: &[u8],
    ) -> Option<Opened> {
        if value.len() < 33 || !matches!(value[0], VERSION | VERSION_UNSIGNED) {
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
        if value[0] == VERSION_UNSIGNED {
            return Some((None, serde_json::from_slice(&plain).ok()?));
        }
        let (signature, json) = plain.split_at_checked(SIGNATURE_LEN)?;
        Some((
            Some(signature.try_into().ok()?),
            serde_json::from_slice(json).ok()?,
        ))
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
    /// each genuine one to `restore` (and counts the rest), and removes it once
    /// `restore` succeeded. An error from `restore` stops the drain with the rest
    /// still spooled. Genuine means: signed by the bound verifying key over this
    /// entry at this position of this spool, at a position no drain took before.
    pub fn drain(
        &self,
        vault: &KeyVault,
        restore: &mut dyn FnMut(SpooledEntry) -> Result<(), AuditError>,
    ) -> Result<DrainReport, AuditError> {
        let secret = secret_from(&vault.subkey("audit-spool").map_err(store_err)?);
        let recipient = PublicKey::from(&secret);
        let binding = self.binding(vault)?;
        let clear = self.clear_verifying_key()?;
        let mut report = DrainReport {
            dropped: self.dropped()?,
            verifying_key_replaced: binding
                .as_ref()
                .is_some_and(|b| clear != Some(b.verifying_key.to_bytes())),
            ..DrainReport::default()
        };
        // The highest genuine position taken: raised into the binding at the end, so
        // none of these entries can be put back and taken again.
        let mut highest = 0;
        let mut failure = None;
        for item in self.tree.scan_prefix(ENTRY_PREFIX) {
            let (id, value) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    failure = Some(store_err(e));
                    break;
                }
            };
            let position = position_of(&id);
            match (position, Self::open(&secret, &recipient, &id, &value)) {
                (Some(position), Some((signature, entry))) => {
                    let genuine = binding.as_ref().zip(signature).is_some_and(|(b, sig)| {
                        position > b.drained
                            && signer::verifies(
                                &b.verifying_key,
                                &signer::message(recipient.as_bytes(), position, &entry),
                                &sig,
                            )
                    });
                    if genuine {
                        if let Err(e) = restore(entry) {
                            failure = Some(e);
                            break;
                        }
                        report.restored += 1;
                        highest = highest.max(position);
                    } else {
                        report.forged += 1;
                    }
                }
                _ => report.unreadable += 1,
            }
            if let Err(e) = self.tree.remove(&id) {
                failure = Some(store_err(e));
                break;
            }
        }
        let settled = self.settle(vault, binding, highest);
        if failure.is_none() && report.dropped > 0 {
            self.tree.remove(DROPPED).map_err(store_err)?;
        }
        self.tree.flush().map_err(store_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        settled?;
        Ok(report)
    }

    /// After a drain took genuine entries up to `highest`: raise the bound drained
    /// position and the next position past it.
    fn settle(
        &self,
        vault: &KeyVault,
        binding: Option<Binding>,
        highest: u64,
    ) -> Result<(), AuditError> {
        if highest == 0 {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        if self.next_position()? <= highest {
            batch.insert(NEXT, &(highest.saturating_add(1)).to_be_bytes());
        }
        if let Some(b) = binding.filter(|b| b.drained < highest) {
            let raised = Binding {
                verifying_key: b.verifying_key,
                drained: highest,
            };
            batch.insert(BINDING, self.seal_binding(vault, &raised)?);
        }
        self.tree.apply_batch(batch).map_err(store_err)
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

    fn signer() -> SpoolSigner {
        SpoolSigner::derive(&KeyVault::new(DataKey::from_bytes([3; 32]))).unwrap()
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
        let mut spool = AuditSpool::new(tree(), 100, signer());
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
        let mut spool = AuditSpool::new(t.clone(), 100, signer());
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
        let mut spool = AuditSpool::new(t.clone(), 100, signer());
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
        let mut spool = AuditSpool::new(tree(), 3, signer());
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
        let mut spool = AuditSpool::new(tree(), 3, signer());
        assert!(!spool.push(&entry(1)).unwrap());
        assert!(spool.is_empty());
    }

    #[test]
    fn drained_into_the_chain_with_their_times_and_a_too_long_entry_skipped() {
        use crate::auth::audit::{MAX_DETAIL, VecAuditStore};
        let vault = KeyVault::new(DataKey::from_bytes([3; 32]));
        let mut spool = AuditSpool::new(tree(), 10, signer());
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
        let mut spool = AuditSpool::new(tree(), 10, signer());
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

    fn vault() -> KeyVault {
        KeyVault::new(DataKey::from_bytes([3; 32]))
    }

    fn attacker() -> SpoolSigner {
        SpoolSigner::from_secret_bytes(&[0x66; 32])
    }

    /// The (signature, entry) stored at `position`, opened with the key in `vault`.
    fn opened(spool: &AuditSpool, vault: &KeyVault, position: u64) -> Opened {
        let secret = secret_from(&vault.subkey("audit-spool").unwrap());
        let id = entry_id(position);
        let value = spool.tree.get(&id).unwrap().unwrap();
        AuditSpool::open(&secret, &PublicKey::from(&secret), &id, &value).unwrap()
    }

    #[test]
    fn forged_entries_sealed_with_the_public_key_alone_are_refused_and_counted() {
        let vault = vault();
        let mut spool = AuditSpool::new(tree(), 100, signer());
        spool.publish(&vault).unwrap();
        spool.push(&entry(1)).unwrap();
        // Whoever can write the data dir seals to the clear public key: without a
        // signature, and with a signature by a key of their own.
        let mut fake = entry(2);
        fake.action = "refund.approved".into();
        spool.forge(&fake, None).unwrap();
        spool.forge(&fake, Some(&attacker())).unwrap();
        spool.push(&entry(3)).unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert_eq!(got, vec![entry(1), entry(3)], "the genuine entries pass");
        assert_eq!((report.restored, report.forged), (2, 2));
        assert_eq!(report.unreadable, 0);
        assert!(report.has_forgeries() && !report.verifying_key_replaced);
        assert!(spool.is_empty(), "forged entries are removed, not kept");
    }

    #[test]
    fn a_replaced_verifying_key_on_disk_does_not_make_forgeries_pass() {
        let vault = vault();
        let t = tree();
        let mut spool = AuditSpool::new(t.clone(), 100, signer());
        spool.publish(&vault).unwrap();
        // The attacker puts their own verifying key where the clear one is kept and
        // signs with the matching key.
        t.insert(
            VERIFYING_KEY,
            attacker().verifying_key().as_bytes().as_slice(),
        )
        .unwrap();
        spool.forge(&entry(1), Some(&attacker())).unwrap();
        spool.push(&entry(2)).unwrap();
        assert!(spool.needs_drain());
        let (got, report) = drain_all(&spool, &vault);
        assert_eq!(got, vec![entry(2)]);
        assert_eq!(report.forged, 1);
        assert!(report.verifying_key_replaced);
        // Publishing puts the unit's key back in clear.
        spool.publish(&vault).unwrap();
        assert!(!spool.needs_drain());
        assert_eq!(drain_all(&spool, &vault).1, DrainReport::default());
    }

    #[test]
    fn a_tampered_signature_fails() {
        let vault = vault();
        let mut spool = AuditSpool::new(tree(), 100, signer());
        spool.publish(&vault).unwrap();
        spool.push(&entry(1)).unwrap();
        // Someone holding the opened entry (so the seal is no obstacle) flips one bit
        // of its signature and seals it again in place.
        let (sig, e) = opened(&spool, &vault, 1);
        let mut sig = sig.unwrap();
        sig[0] ^= 1;
        spool
            .store_at(&spool.public().unwrap().unwrap(), 1, &sig, &e)
            .unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert!(got.is_empty());
        assert_eq!(report.forged, 1);
    }

    #[test]
    fn a_genuine_entry_replayed_at_another_position_or_after_its_drain_fails() {
        let vault = vault();
        let t = tree();
        let mut spool = AuditSpool::new(t.clone(), 100, signer());
        spool.publish(&vault).unwrap();
        spool.push(&entry(1)).unwrap();
        let captured = t.get(entry_id(1)).unwrap().unwrap();
        let (sig, e) = opened(&spool, &vault, 1);
        let recipient = spool.public().unwrap().unwrap();
        // Its signature, sealed again at another position.
        spool.store_at(&recipient, 5, &sig.unwrap(), &e).unwrap();
        // Its stored bytes copied to another position do not even open.
        t.insert(entry_id(6), captured.clone()).unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert_eq!(got, vec![entry(1)]);
        assert_eq!((report.forged, report.unreadable), (1, 1));
        // After the drain, the very bytes put back at their own position.
        t.insert(entry_id(1), captured).unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert!(got.is_empty(), "a drained position is never taken twice");
        assert_eq!(report.forged, 1);
        // Positions keep growing: the next genuine entry passes.
        spool.push(&entry(7)).unwrap();
        assert_eq!(drain_all(&spool, &vault).0, vec![entry(7)]);
    }

    #[test]
    fn a_genuine_entry_replayed_into_another_spool_key_fails() {
        // One signing key (as a TPM-held identity key would be) over two data keys:
        // an entry signed for the first spool's key is refused by the second.
        let identity = [0x42; 32];
        let (vault_a, vault_b) = (vault(), KeyVault::new(DataKey::from_bytes([4; 32])));
        let mut a = AuditSpool::new(tree(), 10, SpoolSigner::from_secret_bytes(&identity));
        let mut b = AuditSpool::new(tree(), 10, SpoolSigner::from_secret_bytes(&identity));
        a.publish(&vault_a).unwrap();
        b.publish(&vault_b).unwrap();
        a.push(&entry(1)).unwrap();
        let (sig, e) = opened(&a, &vault_a, 1);
        b.store_at(&b.public().unwrap().unwrap(), 1, &sig.unwrap(), &e)
            .unwrap();
        b.push(&entry(2)).unwrap();
        let (got, report) = drain_all(&b, &vault_b);
        assert_eq!(got, vec![entry(2)]);
        assert_eq!(report.forged, 1);
    }

    #[test]
    fn unsigned_entries_of_the_first_format_are_refused() {
        let vault = vault();
        let t = tree();
        let spool = AuditSpool::new(t.clone(), 10, signer());
        spool.publish(&vault).unwrap();
        // Format 1: sealed JSON, no signature (what any writer could make).
        let recipient = spool.public().unwrap().unwrap();
        let ephemeral = StaticSecret::from([5u8; 32]);
        let eph_pub = PublicKey::from(&ephemeral);
        let key = entry_key(
            ephemeral.diffie_hellman(&recipient).as_bytes(),
            &eph_pub,
            &recipient,
        );
        let id = entry_id(1);
        let sealed = XChaCha20Poly1305::new((&key).into())
            .encrypt(
                XNonce::from_slice(&[0u8; 24]),
                Payload {
                    msg: &serde_json::to_vec(&entry(1)).unwrap(),
                    aad: &id,
                },
            )
            .unwrap();
        t.insert(
            id,
            [&[VERSION_UNSIGNED][..], eph_pub.as_bytes(), &sealed].concat(),
        )
        .unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert!(got.is_empty());
        assert_eq!(report.forged, 1);
    }

    #[test]
    fn without_its_binding_nothing_passes_until_published_again() {
        let vault = vault();
        let t = tree();
        let mut spool = AuditSpool::new(t.clone(), 10, signer());
        spool.publish(&vault).unwrap();
        spool.push(&entry(1)).unwrap();
        // Removing the sealed binding (to drop the drained position) fails closed.
        t.remove(BINDING).unwrap();
        let (got, report) = drain_all(&spool, &vault);
        assert!(got.is_empty());
        assert_eq!(report.forged, 1);
        spool.publish(&vault).unwrap();
        spool.push(&entry(2)).unwrap();
        assert_eq!(drain_all(&spool, &vault).0, vec![entry(2)]);
    }

    #[test]
    fn a_new_signer_takes_over_once_the_old_ones_entries_are_drained() {
        let vault = vault();
        let t = tree();
        let mut old = AuditSpool::new(t.clone(), 10, signer());
        old.publish(&vault).unwrap();
        old.push(&entry(1)).unwrap();
        // The next process holds another signer (a TPM-sealed key): it drains first,
        // against the bound key, then publishes its own.
        let mut new = AuditSpool::new(t, 10, attacker());
        assert_eq!(drain_all(&new, &vault).0, vec![entry(1)]);
        new.publish(&vault).unwrap();
        new.push(&entry(2)).unwrap();
        old.push(&entry(3)).unwrap();
        let (got, report) = drain_all(&new, &vault);
        assert_eq!(got, vec![entry(2)]);
        assert_eq!(report.forged, 1, "the old key is no longer bound");
    }
}
