//! Schema 1 → 2: encrypt a plaintext data dir in place.
//!
//! Runs inside `Store::open`, before anything else reads the trees, when
//! `meta/schema_version` is 1. The key check is already written (so a rerun with
//! another key is refused as `WrongKey`, never double-encrypted), and
//! `schema_version` becomes 2 only after every step has finished and been flushed.
//!
//! Every step is idempotent, so a crash part-way through is finished by the next
//! start: a value that already opens under its tree's cipher (with its tree and key as
//! associated data) was migrated; any other value is schema-1 plaintext and is sealed.
//! A plaintext value cannot pass the AEAD check by accident.
//!
//! 1. `meta`: every value but `schema_version` and `key_check` is sealed, in one batch.
//! 2. `promotions`: rewritten under ordinal keys (ids are HQ's words), in one batch.
//! 3. `journal`: sealed in batches of [`JOURNAL_BATCH`] keys; an idempotency key
//!    (`i/<scope>\0<key>`) moves to its keyed hash in the same batch that seals it.
//! 4. The live catalog generation, if its `postings` has no sealed sparse index, is
//!    rebuilt as a new, encrypted generation from its plaintext products and overlay,
//!    switched to with the usual single `meta` batch, and the plaintext generation is
//!    dropped (a crash before the switch leaves a partial generation that the next
//!    start drops, then rebuilds).
//!
//! The `security` and `audit` trees were already encrypted in schema 1.

use std::sync::Arc;

use super::crypt::{self, AtRest};
use super::{StoreError, catalog, keys};

/// Journal keys sealed per batch.
const JOURNAL_BATCH: usize = 1024;

/// Encrypt every plaintext value of a schema-1 data dir (see the module doc).
pub(crate) fn to_encrypted(
    db: &sled::Db,
    meta: &sled::Tree,
    at_rest: &Arc<AtRest>,
) -> Result<(), StoreError> {
    let keys = at_rest.keys()?;
    tracing::warn!("Migrating a schema-1 (plaintext) data dir: encrypting it in place");

    // 1. meta
    let mut batch = sled::Batch::default();
    for kv in meta.iter() {
        let (k, v) = kv?;
        if &*k == b"schema_version"
            || &*k == crypt::KEY_CHECK_KEY
            || keys.meta.open_record("meta", &k, &v).is_ok()
        {
            continue;
        }
        batch.insert(k.clone(), keys.meta.seal_record("meta", &k, &v));
    }
    meta.apply_batch(batch)?;

    // 2. promotions
    let promotions = db.open_tree("promotions")?;
    let mut jsons = Vec::new();
    let mut batch = sled::Batch::default();
    for kv in promotions.iter() {
        let (k, v) = kv?;
        let json = match keys.promotions.open_record("promotions", &k, &v) {
            Ok(json) => json.to_vec(),
            Err(_) => v.to_vec(),
        };
        jsons.push(json);
        batch.remove(k);
    }
    for (i, json) in jsons.iter().enumerate() {
        let k = (i as u64).to_be_bytes();
        batch.insert(&k, keys.promotions.seal_record("promotions", &k, json));
    }
    promotions.apply_batch(batch)?;

    // 3. journal
    let journal = db.open_tree("journal")?;
    let mut from: Vec<u8> = Vec::new();
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        let mut last = None;
        for kv in journal.range(from.clone()..).take(JOURNAL_BATCH) {
            let (k, v) = kv?;
            n += 1;
            last = Some(k.to_vec());
            if keys.journal.open_record("journal", &k, &v).is_ok() {
                continue;
            }
            let pk = keys::physical(&keys, &k);
            if pk != *k {
                batch.remove(k.clone());
            }
            batch.insert(pk.clone(), keys.journal.seal_record("journal", &pk, &v));
        }
        journal.apply_batch(batch)?;
        match last {
            Some(mut k) if n == JOURNAL_BATCH => {
                k.push(0);
                from = k;
            }
            _ => break,
        }
    }
    db.flush()?;

    // 4. the live catalog generation
    catalog::migrate_generation(db, meta, at_rest)?;
    db.flush()?;
    Ok(())
}
