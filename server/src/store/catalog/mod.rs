//! The catalog: products and their indexes, in generations of sorted blocks.
//!
//! Each catalog generation is its own set of sled trees (`catalog.<gen>.products`,
//! `.barcodes`, `.postings`, `.overlay`). An import writes a new generation beside the
//! live one, then one write to `meta` switches readers over. So readers see the old
//! catalog or the new one, never a mix, and an import that fails leaves nothing: its
//! trees are dropped (or, after a crash, dropped at the next start).
//!
//! - `products`: SKU -> the product's JSON (what the API serves, as stored).
//! - `barcodes`: GTIN-14 -> SKU.
//! - `postings`: the search index: category or name word -> SKUs ([`index`]).
//! - `overlay`: SKU -> product JSON that replaces the block's ([`overlay`]).
//!
//! docs/storage.md ("Catalog generations") gives every key and value.
//!
//! # Layout
//! - this file: [`Catalog`], the handle on one generation, and a generation's life:
//!   open (dropping leftovers), commit (point `meta` at it), drop.
//! - [`block`]: the block format of every tree (sorted records packed into sealed,
//!   compressed blocks), the block writer and the one-block lookup.
//! - [`reader`]: what readers ask of a generation: a product by SKU or barcode, every
//!   product, paged search over the postings.
//! - [`import`]: [`CatalogImport`], an import in progress (replace or merge), and what
//!   it reports.
//! - [`stream`]: the thread that writes the `products` tree while an import whose SKUs
//!   arrive in order is still being read.
//! - [`index`]: an import's entries and the index records built from them as products
//!   arrive; writing a sorted generation.
//! - [`overlay`]: the bounded overlay a merge that changes no index is written to.
//! - [`migrate`]: rebuilding a schema-1 (plaintext) generation as an encrypted one.

mod block;
mod import;
mod index;
mod migrate;
mod overlay;
mod reader;
mod stream;

#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::sync::Arc;

use super::crypt::{self, AtRest, BlockFormat};
use super::{StoreError, meta_read, meta_seal};
use block::{INDEX_KEY, records};

pub use import::{CatalogImport, ImportConflict, ImportMode, ImportSummary};
pub(crate) use migrate::migrate_generation;
pub use overlay::OVERLAY_MAX;
pub use reader::Page;

const PARTS: [&str; 4] = ["products", "barcodes", "postings", "overlay"];
/// How new generations store their blocks (older ones keep the format they were
/// written in, see [`BlockFormat`]).
pub(crate) const NEW_FORMAT: BlockFormat = BlockFormat::Lz4;

/// The live catalog generation.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Generation number (0 = empty store).
    pub generation: u64,
    /// The version HQ or the importer gave this catalog.
    pub version: String,
    /// Number of products.
    pub len: u64,
    products: sled::Tree,
    barcodes: sled::Tree,
    postings: sled::Tree,
    overlay_tree: sled::Tree,
    /// The overlay's content, as of this handle (see [`overlay`]).
    overlay: Arc<HashMap<String, Vec<u8>>>,
    /// First record key of each `postings` block, by ordinal (see [`index`]).
    index: Arc<Vec<Vec<u8>>>,
    /// How this generation's blocks are laid out inside their seal.
    format: BlockFormat,
    at_rest: Arc<AtRest>,
}

fn tree_name(generation: u64, part: &str) -> String {
    format!("catalog.{generation}.{part}")
}

pub(crate) fn open_generation(
    db: &sled::Db,
    at_rest: &Arc<AtRest>,
    generation: u64,
    version: String,
    len: u64,
    format: BlockFormat,
) -> Result<Catalog, StoreError> {
    Ok(Catalog {
        generation,
        version,
        len,
        format,
        products: db.open_tree(tree_name(generation, "products"))?,
        barcodes: db.open_tree(tree_name(generation, "barcodes"))?,
        postings: db.open_tree(tree_name(generation, "postings"))?,
        overlay_tree: db.open_tree(tree_name(generation, "overlay"))?,
        overlay: Arc::new(HashMap::new()),
        index: Arc::new(Vec::new()),
        at_rest: at_rest.clone(),
    })
}

/// Drop every tree of a generation.
pub(crate) fn drop_generation(db: &sled::Db, generation: u64) -> Result<(), StoreError> {
    for part in PARTS {
        db.drop_tree(tree_name(generation, part))?;
    }
    Ok(())
}

/// Make `next` the live generation on disk.
pub(crate) fn commit_generation(
    db: &sled::Db,
    meta: &sled::Tree,
    at_rest: &AtRest,
    next: &Catalog,
) -> Result<(), StoreError> {
    // Flush the new trees first so the pointer never names a generation that is not
    // fully on disk.
    db.flush()?;
    let mut batch = sled::Batch::default();
    let seal = |k: &str, v: &[u8]| meta_seal(at_rest, k, v);
    batch.insert(
        "catalog_generation",
        seal("catalog_generation", &next.generation.to_be_bytes())?,
    );
    batch.insert(
        "catalog_version",
        seal("catalog_version", next.version.as_bytes())?,
    );
    batch.insert("catalog_len", seal("catalog_len", &next.len.to_be_bytes())?);
    batch.insert(
        "catalog_format",
        seal("catalog_format", &next.format.code().to_be_bytes())?,
    );
    meta.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn meta_u64(meta: &sled::Tree, at_rest: &AtRest, key: &str) -> Result<Option<u64>, StoreError> {
    meta_read(meta, at_rest, key)?
        .map(|v| super::keys::decode_u64(&v))
        .transpose()
}

impl Catalog {
    /// Open the live generation, dropping leftovers of imports that never finished.
    pub(crate) fn open_current(
        db: &sled::Db,
        meta: &sled::Tree,
        at_rest: &Arc<AtRest>,
    ) -> Result<Catalog, StoreError> {
        let generation = meta_u64(meta, at_rest, "catalog_generation")?.unwrap_or(0);
        let version = meta_read(meta, at_rest, "catalog_version")?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let len = meta_u64(meta, at_rest, "catalog_len")?.unwrap_or(0);
        // Absent: a generation written before compression (schema 2).
        let format =
            BlockFormat::from_code(meta_u64(meta, at_rest, "catalog_format")?.unwrap_or(0))?;
        for name in db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            let Some(rest) = name.strip_prefix("catalog.") else {
                continue;
            };
            let g: Option<u64> = rest.split('.').next().and_then(|g| g.parse().ok());
            if let Some(g) = g.filter(|g| *g != generation) {
                tracing::warn!(
                    generation = g,
                    "Dropping a catalog generation left by an unfinished import"
                );
                db.drop_tree(name.as_bytes())?;
            }
        }
        let mut catalog = open_generation(db, at_rest, generation, version, len, format)?;
        catalog.overlay = Arc::new(overlay::load(&catalog)?);
        catalog.index = Arc::new(catalog.load_index()?);
        Ok(catalog)
    }

    /// The sparse index of `postings`, decrypted.
    fn load_index(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some(sealed) = self.postings.get(INDEX_KEY)? else {
            return Ok(Vec::new());
        };
        let keys = self.at_rest.keys()?;
        let name = tree_name(self.generation, "postings");
        let v = self
            .format
            .unpack(crypt::open(&keys.catalog, &name, INDEX_KEY, &sealed)?)?;
        records(&v).map(|r| r.map(|(k, _)| k.to_vec())).collect()
    }

    /// This handle with nothing decrypted left in it (lockdown): every read fails
    /// with [`StoreError::DeviceLocked`] until the store is unlocked.
    pub(crate) fn locked(&self) -> Catalog {
        Catalog {
            version: String::new(),
            overlay: Arc::new(HashMap::new()),
            index: Arc::new(Vec::new()),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{import, product, skus};
    use super::*;
    use crate::store::crypt::BlockFormat;

    /// Sum of the sealed sizes of a generation's `products` values.
    fn stored_bytes(c: &Catalog) -> usize {
        c.products.iter().map(|kv| kv.unwrap().1.len()).sum()
    }

    #[test]
    fn an_uncompressed_schema_2_generation_stays_readable_and_the_next_import_compresses() {
        let dir = tempfile::tempdir().unwrap();
        let plain_bytes = {
            let store = crate::store::crypt::test_store(dir.path());
            let guard = store.catalog_change.clone().try_lock_owned().unwrap();
            let mut imp = CatalogImport::begin(
                store.clone(),
                ImportMode::Replace,
                guard,
                BlockFormat::Plain,
            )
            .unwrap();
            for i in 0..3000 {
                imp.add(&product(i, "tea", "Old Leaf"), i as u64 + 1)
                    .unwrap()
                    .unwrap();
            }
            imp.finish("v2").unwrap();
            // As a schema-2 build left it: no format in `meta`, schema 2.
            store.meta.remove("catalog_format").unwrap();
            store
                .meta
                .insert("schema_version", &2u64.to_be_bytes())
                .unwrap();
            store.db().flush().unwrap();
            stored_bytes(&store.catalog())
        };
        let store = crate::store::crypt::test_store(dir.path());
        let schema = store.meta.get("schema_version").unwrap().unwrap();
        assert_eq!(
            crate::store::keys::decode_u64(&schema).unwrap(),
            crate::store::SCHEMA_VERSION
        );
        let c = store.catalog();
        assert_eq!(c.format, BlockFormat::Plain);
        assert_eq!(c.product("S02500").unwrap().unwrap().name, "Old Leaf 2500");
        let p = c.product("S00007").unwrap().unwrap();
        assert_eq!(
            c.sku_by_gtin14(&p.barcodes[0].to_gtin14())
                .unwrap()
                .as_deref(),
            Some("S00007")
        );
        let (page, _) = c.search(Some("old"), Some("tea"), 5, None, 100).unwrap();
        assert_eq!(skus(&page)[0], "S00000");
        drop(c);
        // The next import writes compressed blocks (and reads them back after a restart).
        import(
            &store,
            ImportMode::Replace,
            (0..3000).map(|i| product(i, "tea", "Old Leaf")),
        );
        let c = store.catalog();
        assert_eq!(c.format, BlockFormat::Lz4);
        let lz4_bytes = stored_bytes(&c);
        assert!(
            lz4_bytes * 10 < plain_bytes * 7,
            "compressed {lz4_bytes} bytes, plain {plain_bytes}"
        );
        drop((c, store));
        let store = crate::store::crypt::test_store(dir.path());
        let c = store.catalog();
        assert_eq!(c.format, BlockFormat::Lz4);
        assert_eq!(c.product("S02999").unwrap().unwrap().name, "Old Leaf 2999");
        let (page, _) = c.search(None, Some("tea"), 3, None, 100).unwrap();
        assert_eq!(page.len(), 3);
    }
}
