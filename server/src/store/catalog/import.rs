//! An import in progress: products added one by one (replace or merge), then written
//! as a new generation, or as an overlay delta, and switched to in one step.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::index::{Entry, IndexBuilder, entry_number, sort_entries, write_generation};
use super::overlay::{self, OverlayEntry, commit_overlay};
use super::stream::ProductStream;
use super::{Catalog, drop_generation, open_generation};
use crate::domain::product::Product;
use crate::store::crypt::BlockFormat;
use crate::store::{Store, StoreError, from_json, to_json};

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
    /// The live generation after the import.
    pub generation: u64,
    /// Whether the change went to the live generation's overlay (a merge that changes
    /// no index) instead of a new generation.
    pub overlay: bool,
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

/// Products added between two looks at the data disk's reserve (a few MiB of
/// catalog: the reserve's default is 64 MiB).
const SPACE_CHECK_EVERY: usize = 4096;

/// An import in progress. Dropping it without [`finish`](Self::finish) discards it.
///
/// A replace import whose SKUs arrive in increasing order writes its `products` tree
/// as it goes ([`ProductStream`]) and keeps only SKUs and the index records
/// ([`IndexBuilder`]) in memory (about 100 bytes a product); otherwise products are
/// held in memory (about 350 bytes each) and written sorted at `finish`.
pub struct CatalogImport {
    store: Arc<Store>,
    next: Option<Catalog>,
    mode: ImportMode,
    /// SKUs a merge removes from the previous catalog.
    removed: std::collections::HashSet<String>,
    /// The one-change-at-a-time guard, released when the import ends.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    entries: Vec<Entry>,
    skus: FxHashMap<String, u64>,
    index: IndexBuilder,
    /// Writes `products` as the import arrives (replace, or merge into an empty
    /// catalog).
    stream: Option<ProductStream>,
}

impl CatalogImport {
    pub(crate) fn begin(
        store: Arc<Store>,
        mode: ImportMode,
        guard: tokio::sync::OwnedMutexGuard<()>,
        format: BlockFormat,
    ) -> Result<Self, StoreError> {
        // A catalog is the biggest write there is: none starts on a disk at its
        // reserve, and a running one stops when the disk reaches it (`add`).
        store.space().check()?;
        let generation = store.catalog().generation + 1;
        // A crashed import may have left this generation's trees behind.
        drop_generation(store.db(), generation)?;
        let next = open_generation(
            store.db(),
            store.at_rest(),
            generation,
            String::new(),
            0,
            format,
        )?;
        // A merge into an empty catalog is a replace; into a non-empty one it must
        // interleave the products it keeps, and a delta may go to the overlay.
        let stream = if mode == ImportMode::Replace || store.catalog().len == 0 {
            Some(ProductStream::start(&next)?)
        } else {
            None
        };
        Ok(CatalogImport {
            stream,
            store,
            next: Some(next),
            mode,
            removed: std::collections::HashSet::new(),
            _guard: guard,
            entries: Vec::new(),
            skus: FxHashMap::default(),
            index: IndexBuilder::default(),
        })
    }

    /// Add a validated product, read from `line` of the input.
    pub fn add(
        &mut self,
        p: &Product,
        line: u64,
    ) -> Result<Result<(), ImportConflict>, StoreError> {
        self.add_product(Cow::Borrowed(p), line)
    }

    /// [`add`](Self::add) for a product the caller no longer needs (a snapshot push):
    /// a streamed product goes to the products thread as it is and is serialized
    /// there, off the thread that decodes the push. (`outpost import catalog` uses
    /// `add`: there the products thread is the busier one, and serializing on the
    /// adding thread measured faster.)
    pub fn add_owned(
        &mut self,
        p: Product,
        line: u64,
    ) -> Result<Result<(), ImportConflict>, StoreError> {
        self.add_product(Cow::Owned(p), line)
    }

    fn add_product(
        &mut self,
        p: Cow<'_, Product>,
        line: u64,
    ) -> Result<Result<(), ImportConflict>, StoreError> {
        let sku = p.sku.as_str();
        if let Some(first) = self.skus.get(sku) {
            return Ok(Err(ImportConflict::DuplicateSku {
                sku: sku.to_owned(),
                first_line: *first,
            }));
        }
        for b in &p.barcodes {
            if let Some(owner) = self.index.owner(b) {
                return Ok(Err(ImportConflict::DuplicateBarcode {
                    barcode: b.as_str().to_owned(),
                    sku: self.entries[owner as usize].sku.clone(),
                }));
            }
        }
        if self.entries.len() % SPACE_CHECK_EVERY == SPACE_CHECK_EVERY - 1 {
            self.store.space().check()?;
        }
        let i = entry_number(self.entries.len())?;
        let sku = sku.to_owned();
        self.skus.insert(sku.clone(), line);
        self.index.add(i, &p);
        // Streamed while SKUs come in order; from the first that does not, kept.
        let json = match &mut self.stream {
            Some(s) if s.in_order => {
                if self.entries.last().is_none_or(|e| e.sku < sku) {
                    s.push(p)?;
                    Vec::new()
                } else {
                    s.in_order = false;
                    to_json(&*p)
                }
            }
            _ => to_json(&*p),
        };
        self.entries.push(Entry { sku, json });
        Ok(Ok(()))
    }

    /// Remove `sku` from the previous catalog (merge only; a SKU also added by the
    /// import stays, as added).
    pub fn remove(&mut self, sku: &str) {
        self.removed.insert(sku.to_owned());
    }

    /// The catalog this import replaces or updates.
    pub fn base(&self) -> Arc<Catalog> {
        self.store.catalog()
    }

    /// Products added so far.
    pub fn imported(&self) -> u64 {
        self.entries.len() as u64
    }

    /// The overlay entries of this merge, if it changes no index and fits the
    /// overlay: every product already exists in `live` with the same category, name
    /// words and barcodes, and nothing is removed.
    fn overlay_entries(&self, live: &Catalog) -> Result<Option<Vec<OverlayEntry>>, StoreError> {
        if self.mode != ImportMode::Merge || !self.removed.is_empty() {
            return Ok(None);
        }
        overlay::merge_delta(&self.entries, live)
    }

    /// Make the import the live catalog under `version`.
    pub fn finish(mut self, version: &str) -> Result<ImportSummary, StoreError> {
        let imported = self.entries.len() as u64;
        let live = self.store.catalog();
        if let Some(entries) = self.overlay_entries(&live)? {
            if let Some(next) = self.next.take() {
                drop_generation(self.store.db(), next.generation)?;
            }
            let next = commit_overlay(self.store.db(), &self.store.meta, &live, &entries, version)?;
            self.store.flush_durably()?;
            self.store.switch_overlay(next);
            return Ok(ImportSummary {
                imported,
                kept: live.len.saturating_sub(imported),
                generation: live.generation,
                overlay: true,
            });
        }
        drop(live);
        let mut kept = 0;
        if self.mode == ImportMode::Merge {
            let old = self.store.catalog();
            for json in old.products_json() {
                let json = json?;
                let p: Product = from_json(&json, "product")?;
                if self.skus.contains_key(p.sku.as_str()) || self.removed.contains(p.sku.as_str()) {
                    continue;
                }
                // A barcode the import gave to another product now belongs to it
                // (`IndexBuilder::add` keeps the first owner).
                self.index.add(entry_number(self.entries.len())?, &p);
                self.entries.push(Entry {
                    sku: p.sku.as_str().to_owned(),
                    json,
                });
                kept += 1;
            }
        }
        let mut products_written = false;
        if let Some(mut stream) = self.stream.take() {
            stream.close()?;
            // Complete only if every product came in order and none was kept from
            // the previous catalog (a stream starts only when there is none).
            if stream.in_order && kept == 0 {
                products_written = true;
            } else {
                self.refill_streamed(stream.streamed)?;
            }
        }
        sort_entries(&mut self.entries, &mut self.index);
        let mut next = self
            .next
            .take()
            .unwrap_or_else(|| unreachable!("finish runs once"));
        match write_generation(&next, &self.entries, &self.index, products_written) {
            Ok(index) => next.index = Arc::new(index),
            Err(e) => {
                // Dropping `self` would not see `next` any more: drop its trees here.
                let _ = drop_generation(self.store.db(), next.generation);
                return Err(e);
            }
        }
        next.version = version.to_owned();
        next.len = self.entries.len() as u64;
        let generation = next.generation;
        self.store.switch_catalog(next)?;
        Ok(ImportSummary {
            imported,
            kept,
            generation,
            overlay: false,
        })
    }
}

impl CatalogImport {
    /// The products streamed before a SKU came out of order: read their JSON back
    /// from the `products` tree (they are its whole content, in the order they were
    /// added) into the first `streamed` entries, and empty the tree for the sorted
    /// write.
    fn refill_streamed(&mut self, streamed: usize) -> Result<(), StoreError> {
        let Some(next) = &self.next else {
            return Ok(());
        };
        let mut written = next.products_json_raw();
        for e in &mut self.entries[..streamed] {
            let (sku, json) = written.next().ok_or_else(|| {
                StoreError::Corrupt("a streamed product is missing from its block".into())
            })??;
            if sku != e.sku.as_bytes() {
                return Err(StoreError::Corrupt("streamed products out of step".into()));
            }
            e.json = json;
        }
        drop(written);
        next.products.clear()?;
        Ok(())
    }
}

impl Drop for CatalogImport {
    fn drop(&mut self) {
        // Stop the products thread before its trees are dropped.
        drop(self.stream.take());
        if let Some(next) = self.next.take()
            && let Err(e) = drop_generation(self.store.db(), next.generation)
        {
            tracing::warn!(error = %e, "Failed to drop the trees of an abandoned import; they are dropped at next start");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{import, product};
    use super::*;

    #[test]
    fn merge_keeps_others_and_an_abandoned_import_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        import(
            &store,
            ImportMode::Replace,
            (0..500).map(|i| product(i, "tea", "Old")),
        );
        let s = import(
            &store,
            ImportMode::Merge,
            (400..600).map(|i| product(i, "tea", "New")),
        );
        assert_eq!((s.imported, s.kept), (200, 400));
        let c = store.catalog();
        assert_eq!(c.len, 600);
        assert_eq!(c.product("S00010").unwrap().unwrap().name, "Old 10");
        assert_eq!(c.product("S00450").unwrap().unwrap().name, "New 450");
        let (page, _) = c.search(Some("old"), None, 1000, None, 100_000).unwrap();
        assert_eq!(
            page.len(),
            400,
            "replaced products left the old search index"
        );
        // An import dropped before finish leaves the live catalog as it was.
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        imp.add(&product(9, "x", "Gone"), 1).unwrap().unwrap();
        drop(imp);
        assert_eq!(store.catalog().generation, c.generation);
        assert_eq!(
            store.catalog().product("S00009").unwrap().unwrap().name,
            "Old 9"
        );
    }

    #[test]
    fn duplicates_in_an_import_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        imp.add(&product(1, "x", "A"), 1).unwrap().unwrap();
        assert!(matches!(
            imp.add(&product(1, "x", "A"), 2).unwrap(),
            Err(ImportConflict::DuplicateSku { first_line: 1, .. })
        ));
    }
}
