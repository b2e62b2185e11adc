//! The catalog: products and their indexes, in generations.
//!
//! Each catalog generation is its own set of sled trees (`catalog.<gen>.products`,
//! `.barcodes`, `.categories`, `.terms`). An import writes a new generation beside the
//! live one, then one write to `meta` switches readers over. So readers see the old
//! catalog or the new one, never a mix, and an import that fails leaves nothing: its
//! trees are dropped (or, after a crash, dropped at the next start).

use std::collections::HashMap;
use std::sync::Arc;

use sled::IVec;

use super::{Store, StoreError, from_json, to_json};
use crate::domain::product::{Product, search_terms};

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
    categories: sled::Tree,
    terms: sled::Tree,
}

fn tree_name(generation: u64, part: &str) -> String {
    format!("catalog.{generation}.{part}")
}

fn open_generation(
    db: &sled::Db,
    generation: u64,
    version: String,
    len: u64,
) -> Result<Catalog, StoreError> {
    Ok(Catalog {
        generation,
        version,
        len,
        products: db.open_tree(tree_name(generation, "products"))?,
        barcodes: db.open_tree(tree_name(generation, "barcodes"))?,
        categories: db.open_tree(tree_name(generation, "categories"))?,
        terms: db.open_tree(tree_name(generation, "terms"))?,
    })
}

/// Drop every tree of a generation.
pub(crate) fn drop_generation(db: &sled::Db, generation: u64) -> Result<(), StoreError> {
    for part in ["products", "barcodes", "categories", "terms"] {
        db.drop_tree(tree_name(generation, part))?;
    }
    Ok(())
}

/// Make `next` the live generation on disk.
pub(crate) fn commit_generation(
    db: &sled::Db,
    meta: &sled::Tree,
    next: &Catalog,
) -> Result<(), StoreError> {
    // Flush the new trees first so the pointer never names a generation that is not
    // fully on disk.
    db.flush()?;
    let mut batch = sled::Batch::default();
    batch.insert("catalog_generation", &next.generation.to_be_bytes());
    batch.insert("catalog_version", next.version.as_bytes());
    batch.insert("catalog_len", &next.len.to_be_bytes());
    meta.apply_batch(batch)?;
    db.flush()?;
    Ok(())
}

fn meta_u64(meta: &sled::Tree, key: &str) -> Result<Option<u64>, StoreError> {
    meta.get(key)?
        .map(|v| super::keys::decode_u64(&v))
        .transpose()
}

impl Catalog {
    /// Open the live generation, dropping leftovers of imports that never finished.
    pub(crate) fn open_current(db: &sled::Db, meta: &sled::Tree) -> Result<Catalog, StoreError> {
        let generation = meta_u64(meta, "catalog_generation")?.unwrap_or(0);
        let version = meta
            .get("catalog_version")?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default();
        let len = meta_u64(meta, "catalog_len")?.unwrap_or(0);
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
        open_generation(db, generation, version, len)
    }

    /// The stored JSON of a product: what the API serves, without decoding.
    pub fn product_json(&self, sku: &str) -> Result<Option<IVec>, StoreError> {
        Ok(self.products.get(sku.as_bytes())?)
    }

    /// Every product's stored JSON, in SKU order.
    pub fn products_json(&self) -> impl Iterator<Item = Result<IVec, StoreError>> + '_ {
        self.products
            .iter()
            .values()
            .map(|v| v.map_err(StoreError::from))
    }

    /// A product by SKU.
    pub fn product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        self.product_json(sku)?
            .map(|v| from_json(&v, "product"))
            .transpose()
    }

    /// The SKU a barcode (as GTIN-14) belongs to.
    pub fn sku_by_gtin14(&self, gtin14: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .barcodes
            .get(gtin14.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Search products. `q` matches product names word by word (every query word must
    /// be the start of a word of the name); `category` matches exactly. Results come
    /// in index order; `cursor` is the last index key of the previous page. At most
    /// `max_scan` index entries are read per call so a rare match cannot make one
    /// request scan the whole catalog; the cursor then points past what was scanned.
    pub fn search(
        &self,
        q: Option<&str>,
        category: Option<&str>,
        limit: usize,
        cursor: Option<&[u8]>,
        max_scan: usize,
    ) -> Result<(Vec<IVec>, Option<Vec<u8>>), StoreError> {
        let words = q.map(search_terms).unwrap_or_default();
        // Drive the scan with the longest word (the most selective); check the rest.
        let driver = words.iter().max_by_key(|w| w.len()).cloned();
        let (tree, prefix): (&sled::Tree, Vec<u8>) = match (&driver, category) {
            (Some(w), _) => (&self.terms, w.as_bytes().to_vec()),
            (None, Some(c)) => (&self.categories, [c.as_bytes(), b"\0"].concat()),
            (None, None) => (&self.products, Vec::new()),
        };
        let start = match cursor {
            Some(c) if c.starts_with(&prefix) => {
                let mut s = c.to_vec();
                s.push(0);
                s
            }
            _ => prefix.clone(),
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut exhausted = true;
        for (scanned, kv) in tree.range(start..).enumerate() {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            if items.len() >= limit || scanned >= max_scan {
                exhausted = false;
                break;
            }
            last = Some(k.to_vec());
            let json = if driver.is_none() && category.is_none() {
                Some(v)
            } else {
                let sku = &k[k.iter().position(|b| *b == 0).map_or(k.len(), |p| p + 1)..];
                self.products.get(sku)?
            };
            let Some(json) = json else { continue };
            if let Some(w) = &driver {
                let p: Product = from_json(&json, "product")?;
                if category.is_some_and(|c| c != p.category) {
                    continue;
                }
                let name_terms = search_terms(&p.name);
                if !words
                    .iter()
                    .all(|w| name_terms.iter().any(|t| t.starts_with(w.as_str())))
                {
                    continue;
                }
                // A name with two words that start with the query word ("milk",
                // "milkshake") has two index entries: serve it only under the first,
                // so it appears once across all pages.
                let first = name_terms
                    .iter()
                    .filter(|t| t.starts_with(w.as_str()))
                    .min();
                let term = &k[..k.iter().position(|b| *b == 0).unwrap_or(k.len())];
                if first.map(|t| t.as_bytes()) != Some(term) {
                    continue;
                }
            }
            items.push(json);
        }
        Ok((items, if exhausted { None } else { last }))
    }
}

/// Whether an import replaces the catalog or updates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Products not in the import are removed.
    Replace,
    /// Products in the import are added or replaced; others stay.
    Merge,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Products written from the import.
    pub imported: u64,
    /// Products carried over from the previous catalog (merge).
    pub kept: u64,
    /// The new generation.
    pub generation: u64,
}

/// Why a product was refused by an import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportConflict {
    /// The same SKU twice.
    #[error("SKU {sku} already appears on line {first_line}")]
    DuplicateSku {
        /// The SKU.
        sku: String,
        /// Where it appeared first.
        first_line: u64,
    },
    /// The same barcode on two products.
    #[error("barcode {barcode} already belongs to SKU {sku}")]
    DuplicateBarcode {
        /// The barcode.
        barcode: String,
        /// Its first owner.
        sku: String,
    },
}

/// An import in progress. Dropping it without [`finish`](Self::finish) discards it.
pub struct CatalogImport {
    store: Arc<Store>,
    next: Option<Catalog>,
    mode: ImportMode,
    batches: [sled::Batch; 4],
    pending: usize,
    skus: HashMap<String, u64>,
    barcodes: HashMap<String, String>,
    imported: u64,
}

// Small batches: sled holds a whole batch in memory, and large ones cost far more
// memory than they save time (587 MB against 146 MB for 300,000 products).
const BATCH: usize = 1_000;

impl CatalogImport {
    pub(crate) fn begin(store: Arc<Store>, mode: ImportMode) -> Result<Self, StoreError> {
        let generation = store.catalog().generation + 1;
        // A crashed import may have left this generation's trees behind.
        drop_generation(store.db(), generation)?;
        let next = open_generation(store.db(), generation, String::new(), 0)?;
        Ok(CatalogImport {
            store,
            next: Some(next),
            mode,
            batches: Default::default(),
            pending: 0,
            skus: HashMap::new(),
            barcodes: HashMap::new(),
            imported: 0,
        })
    }

    fn next(&self) -> &Catalog {
        self.next
            .as_ref()
            .unwrap_or_else(|| unreachable!("next is only taken by finish"))
    }

    /// Add a validated product, read from `line` of the input.
    pub fn add(
        &mut self,
        p: &Product,
        line: u64,
    ) -> Result<Result<(), ImportConflict>, StoreError> {
        let sku = p.sku.as_str();
        if let Some(first) = self.skus.get(sku) {
            return Ok(Err(ImportConflict::DuplicateSku {
                sku: sku.to_owned(),
                first_line: *first,
            }));
        }
        let mut gtins = Vec::with_capacity(p.barcodes.len());
        for b in &p.barcodes {
            let g = b.to_gtin14();
            if let Some(owner) = self.barcodes.get(&g) {
                return Ok(Err(ImportConflict::DuplicateBarcode {
                    barcode: b.as_str().to_owned(),
                    sku: owner.clone(),
                }));
            }
            gtins.push(g);
        }
        self.skus.insert(sku.to_owned(), line);
        for g in gtins {
            self.batches[1].insert(g.as_bytes(), sku.as_bytes());
            self.barcodes.insert(g, sku.to_owned());
        }
        self.batches[0].insert(sku.as_bytes(), to_json(p));
        self.batches[2].insert([p.category.as_bytes(), b"\0", sku.as_bytes()].concat(), &[]);
        for t in search_terms(&p.name) {
            self.batches[3].insert([t.as_bytes(), b"\0", sku.as_bytes()].concat(), &[]);
        }
        self.imported += 1;
        self.pending += 1;
        if self.pending >= BATCH {
            self.apply()?;
        }
        Ok(Ok(()))
    }

    fn apply(&mut self) -> Result<(), StoreError> {
        let [p, b, c, t] = std::mem::take(&mut self.batches);
        let next = self.next();
        next.products.apply_batch(p)?;
        next.barcodes.apply_batch(b)?;
        next.categories.apply_batch(c)?;
        next.terms.apply_batch(t)?;
        self.pending = 0;
        Ok(())
    }

    /// Products added so far.
    pub fn imported(&self) -> u64 {
        self.imported
    }

    /// Make the import the live catalog under `version`.
    pub fn finish(mut self, version: &str) -> Result<ImportSummary, StoreError> {
        self.apply()?;
        let mut kept = 0;
        if self.mode == ImportMode::Merge {
            let old = self.store.catalog();
            for kv in old.products.iter() {
                let (sku, json) = kv?;
                let sku_s = String::from_utf8_lossy(&sku).into_owned();
                if self.skus.contains_key(&sku_s) {
                    continue;
                }
                let p: Product = from_json(&json, "product")?;
                let next = self.next();
                next.products.insert(&sku, json)?;
                for b in &p.barcodes {
                    let g = b.to_gtin14();
                    // A barcode the import gave to another product now belongs to it.
                    if !self.barcodes.contains_key(&g) {
                        next.barcodes.insert(g.as_bytes(), &*sku)?;
                    }
                }
                next.categories
                    .insert([p.category.as_bytes(), b"\0", &sku].concat(), &[])?;
                for t in search_terms(&p.name) {
                    next.terms
                        .insert([t.as_bytes(), b"\0", &sku].concat(), &[])?;
                }
                kept += 1;
            }
        }
        let mut next = self
            .next
            .take()
            .unwrap_or_else(|| unreachable!("finish runs once"));
        next.version = version.to_owned();
        next.len = self.imported + kept;
        let generation = next.generation;
        self.store.switch_catalog(next)?;
        Ok(ImportSummary {
            imported: self.imported,
            kept,
            generation,
        })
    }
}

impl Drop for CatalogImport {
    fn drop(&mut self) {
        if let Some(next) = self.next.take()
            && let Err(e) = drop_generation(self.store.db(), next.generation)
        {
            tracing::warn!(error = %e, "Failed to drop the trees of an abandoned import; they are dropped at next start");
        }
    }
}
