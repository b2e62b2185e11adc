//! Rebuilding a schema-1 (plaintext) catalog generation as an encrypted one; the rest
//! of the schema-1 migration is `crate::store::migrate`.

use std::collections::HashMap;
use std::sync::Arc;

use super::block::{INDEX_KEY, records};
use super::index::{Entry, IndexBuilder, entry_number, sort_entries, write_generation};
use super::{NEW_FORMAT, commit_generation, drop_generation, meta_u64, open_generation};
use crate::domain::product::Product;
use crate::store::crypt::{AtRest, BlockFormat};
use crate::store::{StoreError, from_json, meta_read};

/// Schema-1 migration of the live generation (see `crate::store::migrate`): when its
/// `postings` has no sealed sparse index it is plaintext; rebuild it as generation
/// `live + 1`, encrypted, switch `meta` to it and drop the plaintext trees.
pub(crate) fn migrate_generation(
    db: &sled::Db,
    meta: &sled::Tree,
    at_rest: &Arc<AtRest>,
) -> Result<(), StoreError> {
    let generation = meta_u64(meta, at_rest, "catalog_generation")?.unwrap_or(0);
    if generation == 0 {
        return Ok(());
    }
    let old = open_generation(
        db,
        at_rest,
        generation,
        String::new(),
        0,
        BlockFormat::Plain,
    )?;
    if old.postings.get(INDEX_KEY)?.is_some() {
        return Ok(());
    }
    let version = meta_read(meta, at_rest, "catalog_version")?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let mut overlay = HashMap::new();
    for kv in old.overlay_tree.iter() {
        let (k, v) = kv?;
        overlay.insert(k.to_vec(), v.to_vec());
    }
    let mut entries = Vec::new();
    let mut index = IndexBuilder::default();
    for kv in old.products.iter() {
        let (_, block) = kv?;
        for r in records(&block) {
            let (sku, json) = r?;
            let json = overlay.get(sku).map_or(json, Vec::as_slice);
            let p: Product = from_json(json, "schema-1 product")?;
            index.add(entry_number(entries.len())?, &p);
            entries.push(Entry {
                sku: p.sku.as_str().to_owned(),
                json: json.to_vec(),
            });
        }
    }
    sort_entries(&mut entries, &mut index);
    let next_gen = generation + 1;
    drop_generation(db, next_gen)?;
    let mut next = open_generation(
        db,
        at_rest,
        next_gen,
        version,
        entries.len() as u64,
        NEW_FORMAT,
    )?;
    next.index = Arc::new(write_generation(&next, &entries, &index, false)?);
    commit_generation(db, meta, at_rest, &next)?;
    drop(old);
    drop_generation(db, generation)?;
    tracing::info!(
        from = generation,
        to = next_gen,
        products = entries.len(),
        "Rebuilt the schema-1 catalog as an encrypted generation"
    );
    Ok(())
}
