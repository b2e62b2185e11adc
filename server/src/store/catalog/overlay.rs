//! The overlay of a generation: SKU -> product JSON that replaces the block's.
//!
//! A merge that changes nothing any index is built from (prices, descriptions, flags
//! of existing products: the everyday price delta) is written here instead of a new
//! generation, so its cost grows with the delta, not with the catalog. The overlay is
//! also held in memory, swapped with the catalog handle, so readers still see the old
//! catalog or the new one. It is bounded ([`OVERLAY_MAX`]); a merge that would outgrow
//! it, or that adds, removes or re-indexes products, builds a new generation, which
//! folds the overlay in.

use std::collections::HashMap;
use std::sync::Arc;

use super::index::{Entry, gtin_number};
use super::{Catalog, tree_name};
use crate::domain::product::{Product, search_terms};
use crate::store::crypt;
use crate::store::{StoreError, from_json, meta_seal};

/// Most products the overlay of one generation holds before a merge rebuilds.
pub const OVERLAY_MAX: usize = 65_536;

/// A product of the overlay: SKU and JSON.
pub(super) type OverlayEntry = (String, Vec<u8>);

/// Write `entries` to the overlay of `live` and make them visible under `version`:
/// the overlay entries and the version change in one sled transaction, flushed
/// before the new handle is returned.
pub(super) fn commit_overlay(
    db: &sled::Db,
    meta: &sled::Tree,
    live: &Catalog,
    entries: &[OverlayEntry],
    version: &str,
) -> Result<Catalog, StoreError> {
    use sled::Transactional as _;
    let keys = live.at_rest.keys()?;
    let name = tree_name(live.generation, "overlay");
    let sealed: Vec<(&[u8], Vec<u8>)> = entries
        .iter()
        .map(|(sku, json)| {
            (
                sku.as_bytes(),
                keys.catalog.seal_record(&name, sku.as_bytes(), json),
            )
        })
        .collect();
    let version_value = meta_seal(&live.at_rest, "catalog_version", version.as_bytes())?;
    (&live.overlay_tree, meta)
        .transaction(|(o, m)| {
            for (sku, value) in &sealed {
                o.insert(*sku, value.as_slice())?;
            }
            m.insert("catalog_version", version_value.as_slice())?;
            Ok(())
        })
        .map_err(|e: sled::transaction::TransactionError<()>| match e {
            sled::transaction::TransactionError::Storage(e) => StoreError::from(e),
            sled::transaction::TransactionError::Abort(()) => {
                StoreError::Corrupt("overlay transaction aborted".into())
            }
        })?;
    db.flush()?;
    let mut overlay = (*live.overlay).clone();
    for (sku, json) in entries {
        overlay.insert(sku.clone(), json.clone());
    }
    let mut next = live.clone();
    next.version = version.to_owned();
    next.overlay = Arc::new(overlay);
    Ok(next)
}

/// The overlay of `catalog`'s generation as stored, decrypted: SKU -> JSON.
pub(super) fn load(catalog: &Catalog) -> Result<HashMap<String, Vec<u8>>, StoreError> {
    let keys = catalog.at_rest.keys()?;
    let name = tree_name(catalog.generation, "overlay");
    let mut overlay = HashMap::new();
    for kv in catalog.overlay_tree.iter() {
        let (k, v) = kv?;
        let json = crypt::open(&keys.catalog, &name, &k, &v)?;
        overlay.insert(String::from_utf8_lossy(&k).into_owned(), json.to_vec());
    }
    Ok(overlay)
}

/// The overlay entries of a merge of `entries` into `live`, if it changes no index and
/// fits the overlay: every product already exists in `live` with the same category,
/// name words and barcodes. (The import checks first that it is a merge that removes
/// nothing.)
pub(super) fn merge_delta(
    entries: &[Entry],
    live: &Catalog,
) -> Result<Option<Vec<OverlayEntry>>, StoreError> {
    if live.generation == 0 || entries.len() + live.overlay.len() > OVERLAY_MAX {
        return Ok(None);
    }
    // What the index is built from: category, name words, barcodes.
    let indexed = |p: &Product| {
        let mut gtins: Vec<u64> = p.barcodes.iter().map(gtin_number).collect();
        gtins.sort_unstable();
        (p.category.clone(), search_terms(&p.name), gtins)
    };
    for e in entries {
        if e.json.is_empty() {
            // Streamed (an import into an empty catalog): not a delta.
            return Ok(None);
        }
        let Some(json) = live.product_json(&e.sku)? else {
            return Ok(None);
        };
        let old = from_json::<Product>(&json, "product")?;
        let new = from_json::<Product>(&e.json, "product")?;
        if indexed(&old) != indexed(&new) {
            return Ok(None);
        }
    }
    Ok(Some(
        entries
            .iter()
            .map(|e| (e.sku.clone(), e.json.clone()))
            .collect(),
    ))
}

impl Catalog {
    /// Products served from the overlay rather than the blocks.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{import, product};
    use super::*;
    use crate::store::ImportMode;

    fn priced(i: usize, name: &str, price: i64) -> Product {
        let mut p = product(i, "tea", name);
        p.price = crate::domain::money::Money(price);
        p
    }

    #[test]
    fn a_price_only_merge_goes_to_the_overlay_atomically_and_durably() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        import(
            &store,
            ImportMode::Replace,
            (0..2000).map(|i| priced(i, "Leaf", 100)),
        );
        let before = store.catalog();
        let s = import(
            &store,
            ImportMode::Merge,
            (0..2000).step_by(10).map(|i| priced(i, "Leaf", 250)),
        );
        assert!(s.overlay, "{s:?}");
        assert_eq!(
            (s.imported, s.kept, s.generation),
            (200, 1800, before.generation)
        );
        let c = store.catalog();
        assert_eq!(c.overlay_len(), 200);
        assert_eq!(c.len, 2000);
        assert_eq!(c.product("S00010").unwrap().unwrap().price.0, 250);
        assert_eq!(c.product("S00011").unwrap().unwrap().price.0, 100);
        // A reader that loaded the catalog before still sees the old prices.
        assert_eq!(before.product("S00010").unwrap().unwrap().price.0, 100);
        // Search, listing and export serve the overlay too.
        let (page, _) = c.search(Some("leaf"), None, 20, None, 1000).unwrap();
        let first: Product = from_json(&page[0], "p").unwrap();
        assert_eq!((first.sku.as_str(), first.price.0), ("S00000", 250));
        let (page, _) = c.search(None, None, 20, None, 1000).unwrap();
        let first: Product = from_json(&page[0], "p").unwrap();
        assert_eq!(first.price.0, 250);
        let exported: Vec<Product> = c
            .products_json()
            .map(|j| from_json(&j.unwrap(), "p").unwrap())
            .collect();
        assert_eq!(exported.iter().filter(|p| p.price.0 == 250).count(), 200);
        drop((c, before, store));

        // After a restart the overlay is still there, with its version.
        let store = crate::store::crypt::test_store(dir.path());
        let c = store.catalog();
        assert_eq!((c.overlay_len(), c.version.as_str()), (200, "v"));
        assert_eq!(c.product("S00020").unwrap().unwrap().price.0, 250);

        // A merge that renames a product rebuilds, folding the overlay in.
        let s = import(
            &store,
            ImportMode::Merge,
            std::iter::once(priced(5, "Bark", 300)),
        );
        assert!(!s.overlay);
        let c2 = store.catalog();
        assert_eq!(c2.generation, c.generation + 1);
        assert_eq!(c2.overlay_len(), 0);
        assert_eq!(c2.product("S00010").unwrap().unwrap().price.0, 250);
        assert_eq!(c2.product("S00005").unwrap().unwrap().name, "Bark 5");
        let (page, _) = c2.search(Some("bark"), None, 20, None, 1000).unwrap();
        assert_eq!(page.len(), 1);
        // A merge that adds a product rebuilds too.
        let s = import(
            &store,
            ImportMode::Merge,
            std::iter::once(priced(5000, "New", 1)),
        );
        assert!(!s.overlay);
        assert_eq!(store.catalog().len, 2001);
        // Once nobody reads the old generations, their trees (overlay too) are gone.
        drop((c, c2));
        store.sweep_retired_catalogs().unwrap();
        let live = store.catalog().generation;
        let names: Vec<String> = store
            .db()
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with("catalog."))
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with(&format!("catalog.{live}."))),
            "{names:?}"
        );
    }
}
