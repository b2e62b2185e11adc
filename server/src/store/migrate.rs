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
//!
//! sled is log-structured: the plaintext values just overwritten may still sit in old
//! log segments. So the migration ends by marking `meta/plaintext_residue`, and
//! [`compact`] (run at every open while the mark is there) copies every tree into a
//! fresh database `db.compact`, then swaps it in (`db` → `db.schema1`, `db.compact`
//! → `db`) and deletes the old files. A crash at any point is finished by the next
//! open ([`recover_swap`]). The old files are deleted, not shredded: on flash storage
//! their blocks may survive (docs/security.md).

use std::path::Path;
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
    meta.insert(RESIDUE, &[1])?;
    db.flush()?;
    Ok(())
}

/// Marks a data dir whose old sled segments may still hold plaintext.
pub(crate) const RESIDUE: &[u8] = b"plaintext_residue";

/// Finish a swap that a crash interrupted (see the module doc).
pub(crate) fn recover_swap(dir: &Path) -> Result<(), StoreError> {
    let (db, compact, old) = (
        dir.join("db"),
        dir.join("db.compact"),
        dir.join("db.schema1"),
    );
    if !db.exists() && compact.exists() && old.exists() {
        std::fs::rename(&compact, &db)?;
    }
    if db.exists() && old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if compact.exists() {
        // An unfinished copy; `db` is whole and still marked.
        std::fs::remove_dir_all(&compact)?;
    }
    Ok(())
}

/// Copy every tree of `db` (in `dir/db`) into a fresh database, swap it in and
/// delete the old files. Returns the reopened database.
pub(crate) fn compact(
    dir: &Path,
    db: sled::Db,
    config: impl Fn(&Path) -> sled::Config,
) -> Result<sled::Db, StoreError> {
    let compact_path = dir.join("db.compact");
    if compact_path.exists() {
        std::fs::remove_dir_all(&compact_path)?;
    }
    {
        let fresh = config(&compact_path).open()?;
        for name in db.tree_names() {
            let from = db.open_tree(&name)?;
            let to = fresh.open_tree(&name)?;
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for kv in from.iter() {
                let (k, v) = kv?;
                if &*name == b"meta" && &*k == RESIDUE {
                    continue;
                }
                batch.insert(k, v);
                n += 1;
                if n % JOURNAL_BATCH == 0 {
                    to.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            to.apply_batch(batch)?;
        }
        fresh.flush()?;
    }
    drop(db);
    let old = dir.join("db.schema1");
    // sled releases its file lock when the last handle is gone; its flusher thread
    // may hold one for a moment.
    let mut tries = 0;
    loop {
        match std::fs::rename(dir.join("db"), &old) {
            Ok(()) => break,
            Err(e) if tries < 20 => {
                tries += 1;
                tracing::debug!(error = %e, "Waiting to move the old database aside");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    std::fs::rename(&compact_path, dir.join("db"))?;
    std::fs::remove_dir_all(&old)?;
    tracing::info!("Rewrote the migrated database; the old plaintext files are deleted");
    Ok(config(&dir.join("db")).open()?)
}
