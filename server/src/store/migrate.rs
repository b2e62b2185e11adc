//! Schema 1 → 2: encrypt a plaintext data dir in place. Schema ≤ 3 → 4: move the
//! outbox into blocks ([`outbox_to_blocks`], at the end of this doc).
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
//! Schema 4 keeps the outbox in blocks that hold each entry with its record's bytes
//! (`store::writer`). A data dir of schema ≤ 3 may hold entries waiting for HQ as one
//! `o/<seq>` key each, naming its record: [`outbox_to_blocks`] copies them, in
//! sequence order, with their records, into blocks of at most
//! `writer::BLOCK_ENTRIES`, each block written and its entries' keys removed in one
//! batch, so a crash part-way leaves blocks for a prefix and `o/` keys for the rest,
//! and the next open goes on from there. The records themselves stay where they are.
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

/// Move schema-3 outbox entries (`o/<seq>`, naming their records) into blocks (see the
/// module doc). Idempotent; a no-op when there are none.
pub(crate) fn outbox_to_blocks(db: &sled::Db, at_rest: &Arc<AtRest>) -> Result<(), StoreError> {
    use crate::store::outbox::{OutboxEntry, OutboxKind, encode_outbox_item};

    let keys = at_rest.keys()?;
    let journal = db.open_tree("journal")?;
    let open = |k: &[u8], v: &[u8]| -> Result<Vec<u8>, StoreError> {
        Ok(crypt::open(&keys.journal, "journal", k, v)?.to_vec())
    };
    let mut moved = 0u64;
    loop {
        let mut batch = sled::Batch::default();
        let mut items = Vec::new();
        let mut first = None;
        for kv in journal.scan_prefix(keys::OUTBOX) {
            let (k, v) = kv?;
            let entry: OutboxEntry = super::from_json(&open(&k, &v)?, "outbox entry")?;
            // Blocks hold contiguous sequences: a gap (never written by the writer)
            // starts the next block.
            let at = first.unwrap_or(entry.seq) + items.len() as u64;
            if entry.seq != at || items.len() >= super::writer::BLOCK_ENTRIES {
                break;
            }
            first.get_or_insert(entry.seq);
            let record_key = match entry.kind {
                OutboxKind::Sale => keys::sale(entry.id),
                OutboxKind::Refund => keys::refund(entry.id),
                OutboxKind::InventoryMovement => keys::movement(entry.id),
                OutboxKind::DeviceEvent
                | OutboxKind::Alert
                | OutboxKind::Telemetry
                | OutboxKind::AuditHead
                | OutboxKind::PaymentReturn
                | OutboxKind::SlotCount => crate::store::outbox::events::record_key(entry.id),
            };
            let record = match journal.get(&record_key)? {
                Some(r) => open(&record_key, &r)?,
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "outbox entry {} names a missing {:?} {}",
                        entry.seq, entry.kind, entry.id
                    )));
                }
            };
            items.push(encode_outbox_item(entry.kind, entry.id, entry.at, &record));
            batch.remove(k);
        }
        let Some(first) = first else { break };
        moved += items.len() as u64;
        for (start, block) in super::writer::pack_blocks(first, items) {
            let k = keys::outbox_block(start);
            batch.insert(k.clone(), keys.journal.seal_record("journal", &k, &block));
        }
        journal.apply_batch(batch)?;
    }
    if moved > 0 {
        db.flush()?;
        tracing::info!(entries = moved, "Moved the outbox into blocks");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::super::crypt::{AtRest, test_store, test_vault};
    use super::super::{SCHEMA_VERSION, keys};
    use crate::store::outbox;
    use crate::store::outbox::{OutboxEntry, OutboxKind};

    /// Entries of a schema-3 outbox: `(seq, kind, id, record)`.
    type Old = Vec<(u64, OutboxKind, Uuid, Vec<u8>)>;

    /// A schema-3 data dir with `n` waiting outbox entries (from sequence 5: 1 to 4
    /// were acknowledged long ago), one of them (sequence 100) an alert.
    fn write_schema3_outbox(dir: &std::path::Path, n: u64) -> Old {
        drop(test_store(dir));
        let db = outpost_security::sled_lock::reopen(&dir.join("db"));
        let at_rest = AtRest::new(&test_vault()).unwrap();
        let k = at_rest.keys().unwrap();
        let journal = db.open_tree("journal").unwrap();
        let put = |key: &[u8], v: &[u8]| {
            journal
                .insert(key, k.journal.seal_record("journal", key, v))
                .unwrap();
        };
        let mut old = Vec::new();
        let mut bytes = 0u64;
        for seq in 5..5 + n {
            let id = Uuid::now_v7();
            let (kind, key) = match seq {
                100 => (
                    OutboxKind::Alert,
                    crate::store::outbox::events::record_key(id),
                ),
                s if s % 2 == 0 => (OutboxKind::Sale, keys::sale(id)),
                _ => (OutboxKind::InventoryMovement, keys::movement(id)),
            };
            let record = format!(r#"{{"id":"{id}","seq":{seq},"legacy":true}}"#).into_bytes();
            put(&key, &record);
            let entry = OutboxEntry {
                seq,
                kind,
                id,
                at: OffsetDateTime::now_utc(),
                bytes: record.len() as u64,
            };
            put(&keys::outbox(seq), &serde_json::to_vec(&entry).unwrap());
            bytes += record.len() as u64;
            old.push((seq, kind, id, record));
        }
        put(b"e/n/alert", &1u64.to_be_bytes());
        put(keys::OUTBOX_NEXT, &(5 + n).to_be_bytes());
        put(keys::OUTBOX_BYTES, &bytes.to_be_bytes());
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &3u64.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
        old
    }

    #[tokio::test]
    async fn a_schema_3_outbox_moves_into_blocks_at_open_and_drains_completely() {
        let dir = tempfile::tempdir().unwrap();
        let old = write_schema3_outbox(dir.path(), 600);
        let bytes: u64 = old.iter().map(|o| o.3.len() as u64).sum();
        let store = test_store(dir.path());
        let meta = store.db().open_tree("meta").unwrap();
        assert_eq!(
            keys::decode_u64(&meta.get("schema_version").unwrap().unwrap()).unwrap(),
            SCHEMA_VERSION
        );
        assert_eq!(store.journal.scan_prefix(keys::OUTBOX).count(), 0);
        assert_eq!(store.journal.scan_prefix(keys::OUTBOX_BLOCKS).count(), 3);
        let backlog = outbox::backlog(&store).unwrap();
        assert_eq!(
            (backlog.pending, backlog.bytes, backlog.first_seq),
            (600, bytes, 5)
        );
        assert!(backlog.oldest_at.is_some());

        // Everything reads back in order, records included, in batches that cut
        // blocks in the middle.
        let mut got = Vec::new();
        let mut next = 1;
        loop {
            let batch = outbox::read_from(&store, next, 100, 1 << 20).unwrap();
            let Some(last) = batch.last() else { break };
            next = last.entry.seq + 1;
            got.extend(batch);
        }
        assert_eq!(got.len(), old.len());
        for (o, (seq, kind, id, record)) in got.iter().zip(&old) {
            assert_eq!(
                (o.entry.seq, o.entry.kind, o.entry.id, &o.record),
                (*seq, *kind, *id, record)
            );
            assert_eq!(o.entry.bytes, record.len() as u64);
        }

        // HQ acknowledges up to the middle of the second block at a session's start,
        // then the uplink deletes the rest as sent: nothing is left.
        let alert = crate::store::outbox::events::record_key(old[95].2);
        assert!(store.journal_get(&alert).unwrap().is_some());
        assert_eq!(outbox::ack_through(&store, 300).await.unwrap(), 296);
        assert_eq!(outbox::ack_through(&store, 300).await.unwrap(), 0, "once");
        assert!(
            store.journal_get(&alert).unwrap().is_none(),
            "alert deleted"
        );
        assert_eq!(
            crate::store::outbox::events::pending(&store).unwrap()[1],
            ("alert", 0)
        );
        assert_eq!(store.outbox_pending().unwrap(), 304);
        assert_eq!(outbox::backlog(&store).unwrap().first_seq, 301);
        assert_eq!(store.journal.scan_prefix(keys::OUTBOX_BLOCKS).count(), 2);
        let rest = outbox::read_from(&store, 1, 10_000, usize::MAX).unwrap();
        assert_eq!(rest.first().map(|o| o.entry.seq), Some(301));
        let sent: Vec<_> = rest.into_iter().map(|o| (o.entry, o.block)).collect();
        assert_eq!(outbox::delete_sent(&store, sent).await.unwrap(), 304);
        let backlog = outbox::backlog(&store).unwrap();
        assert_eq!(
            (backlog.pending, backlog.bytes, backlog.first_seq),
            (0, 0, 605)
        );
        assert_eq!(store.journal.scan_prefix(keys::OUTBOX_BLOCKS).count(), 0);
        assert!(
            outbox::read_from(&store, 1, 10, 1 << 20)
                .unwrap()
                .is_empty()
        );
        drop(meta);
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "only handle: dropping it closes"
        );
        drop(store);
        // Reopened: still empty, and the sequence goes on.
        let store = test_store(dir.path());
        assert_eq!(store.outbox_pending().unwrap(), 0);
        assert_eq!(store.outbox_first_seq().unwrap(), 605);
    }

    #[test]
    fn an_outbox_entry_whose_record_is_missing_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let old = write_schema3_outbox(dir.path(), 3);
        {
            let db = outpost_security::sled_lock::reopen(&dir.path().join("db"));
            let journal = db.open_tree("journal").unwrap();
            journal.remove(keys::movement(old[0].2)).unwrap();
            db.flush().unwrap();
        }
        let err = super::super::Store::open(
            dir.path(),
            &super::super::StoreOptions::default(),
            &test_vault(),
        )
        .expect_err("refused");
        assert!(
            err.to_string().contains("names a missing"),
            "clear error: {err}"
        );
    }
}
