//! What a new generation is built from: the import's entries (products, sorted by
//! SKU before writing) and the index records over them, built while products arrive
//! so that writing only sorts small records.
//!
//! - `barcodes`: GTIN-14 (zero-padded, whatever spelling the product used) -> SKU.
//! - `postings`: the search index. Its records are `c\0<category>\0<first sku>` and
//!   `t\0<name word>\0<first sku>` -> up to 512 SKUs, sorted, `\0`-separated; they are
//!   packed into blocks like the other trees, but a block is stored under its
//!   *ordinal* (u32 big-endian), never under its first key, so no word or category
//!   reaches a sled key. The first key of every block (the sparse index) is one
//!   sealed value under `index`, loaded into memory when the generation is opened; a
//!   prefix walk binary-searches it for the block to start at.

use rustc_hash::FxHashMap;

use super::block::{BlockKeys, BlockWriter};
use super::{Catalog, tree_name};
use crate::domain::gtin::Gtin;
use crate::domain::product::{Product, SearchTerms};
use crate::store::StoreError;

/// SKUs per postings block.
const POSTING_BLOCK: usize = 512;

/// One product of an import, kept in memory until the import is written in SKU order.
/// Its index records are in the import's [`IndexBuilder`], which refers to it by its
/// position in the import's list.
#[derive(Default)]
pub(super) struct Entry {
    pub(super) sku: String,
    /// The stored JSON; empty once streamed to the `products` tree.
    pub(super) json: Vec<u8>,
}

/// A GTIN-14 as a number: 14 digits at most, so it fits a `u64`, and numeric order is
/// the order of the zero-padded text (the `barcodes` key).
pub(super) fn gtin_number(g: &Gtin) -> u64 {
    // A `Gtin` is 8 to 14 ASCII digits (checked when it was parsed).
    g.as_str()
        .bytes()
        .fold(0u64, |n, d| n * 10 + u64::from(d.wrapping_sub(b'0')))
}

/// The `barcodes` key of a GTIN-14 number: 14 digits, zero-padded.
fn gtin14_key(mut n: u64) -> [u8; 14] {
    let mut key = [b'0'; 14];
    for d in key.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    key
}

/// The index records of an import (`barcodes` and `postings`), built while products
/// arrive, so that `finish` only sorts small records and writes them. Products are
/// referred to by their position in the import's entry list; when that list is
/// sorted by SKU, [`IndexBuilder::remap`] follows it.
#[derive(Default)]
pub(super) struct IndexBuilder {
    /// Category -> products, in list order.
    categories: FxHashMap<String, Vec<u32>>,
    /// Name word (see [`SearchTerms`]) -> products, in list order.
    terms: FxHashMap<String, Vec<u32>>,
    /// GTIN-14 (see [`gtin_number`]) -> product.
    barcodes: FxHashMap<u64, u32>,
    /// Reused for every name.
    words: SearchTerms,
}

impl IndexBuilder {
    /// The product that already has barcode `g`.
    pub(super) fn owner(&self, g: &Gtin) -> Option<u32> {
        self.barcodes.get(&gtin_number(g)).copied()
    }

    /// Index product `i`: its category and name words, and its barcodes that no
    /// other product has (an import's own barcodes were checked before; a product
    /// kept by a merge loses a barcode the import gave to another product).
    pub(super) fn add(&mut self, i: u32, p: &Product) {
        for b in &p.barcodes {
            self.barcodes.entry(gtin_number(b)).or_insert(i);
        }
        fn post(map: &mut FxHashMap<String, Vec<u32>>, key: &str, i: u32) {
            match map.get_mut(key) {
                Some(list) => list.push(i),
                None => {
                    map.insert(key.to_owned(), vec![i]);
                }
            }
        }
        post(&mut self.categories, &p.category, i);
        self.words.split(&p.name);
        for t in self.words.iter() {
            post(&mut self.terms, t, i);
        }
    }

    /// Follow a reordering of the entry list: product `i` is now at `rank[i]`.
    fn remap(&mut self, rank: &[u32]) {
        for list in self.categories.values_mut().chain(self.terms.values_mut()) {
            for i in list.iter_mut() {
                *i = rank[*i as usize];
            }
            list.sort_unstable();
        }
        for i in self.barcodes.values_mut() {
            *i = rank[*i as usize];
        }
    }
}

/// Sort `entries` by SKU, and the index with them.
pub(super) fn sort_entries(entries: &mut Vec<Entry>, index: &mut IndexBuilder) {
    if entries.windows(2).all(|w| w[0].sku < w[1].sku) {
        return;
    }
    let mut order: Vec<u32> = (0..entries.len() as u32).collect();
    order.sort_unstable_by(|a, b| entries[*a as usize].sku.cmp(&entries[*b as usize].sku));
    let mut rank = vec![0u32; entries.len()];
    for (new, old) in order.iter().enumerate() {
        rank[*old as usize] = new as u32;
    }
    index.remap(&rank);
    let mut old = std::mem::take(entries);
    *entries = order
        .iter()
        .map(|i| std::mem::take(&mut old[*i as usize]))
        .collect();
}

/// A product's position in the import's list.
pub(super) fn entry_number(len: usize) -> Result<u32, StoreError> {
    u32::try_from(len).map_err(|_| StoreError::Corrupt("too many products in one import".into()))
}

/// Write sorted entries and their index into a generation's trees, each in key order;
/// returns the sparse index of its postings. `products_written`: the `products` tree
/// was already streamed (entries have no JSON). The `barcodes` and `postings` trees are
/// written by two threads at once (different trees; each in key order).
pub(super) fn write_generation(
    next: &Catalog,
    entries: &[Entry],
    index: &IndexBuilder,
    products_written: bool,
) -> Result<Vec<Vec<u8>>, StoreError> {
    if !products_written {
        let mut w = BlockWriter::new(
            &next.products,
            tree_name(next.generation, "products"),
            &next.at_rest,
            BlockKeys::First,
            next.format,
        )?;
        for e in entries {
            w.push(e.sku.as_bytes(), &e.json)?;
        }
        w.finish()?;
    }
    std::thread::scope(|scope| {
        let barcodes = std::thread::Builder::new()
            .name("outpost-catalog-barcodes".into())
            .spawn_scoped(scope, || write_barcodes(next, entries, index))?;
        let postings = write_postings(next, entries, index);
        let barcodes = barcodes
            .join()
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the barcodes thread panicked".into())));
        barcodes.and(postings)
    })
}

fn write_barcodes(
    next: &Catalog,
    entries: &[Entry],
    index: &IndexBuilder,
) -> Result<(), StoreError> {
    // Numbers sort like the zero-padded keys they stand for.
    let mut gtins: Vec<(u64, u32)> = index.barcodes.iter().map(|(g, i)| (*g, *i)).collect();
    gtins.sort_unstable();
    let mut w = BlockWriter::new(
        &next.barcodes,
        tree_name(next.generation, "barcodes"),
        &next.at_rest,
        BlockKeys::First,
        next.format,
    )?;
    for (g, i) in gtins {
        w.push(&gtin14_key(g), entries[i as usize].sku.as_bytes())?;
    }
    w.finish().map(drop)
}

fn write_postings(
    next: &Catalog,
    entries: &[Entry],
    index: &IndexBuilder,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut w = BlockWriter::new(
        &next.postings,
        tree_name(next.generation, "postings"),
        &next.at_rest,
        BlockKeys::Ordinal(Vec::new()),
        next.format,
    )?;
    // Records `kind \0 word \0 first sku`: every `c` before every `t`, and within a
    // kind, word order is key order. Each list is in entry (SKU) order.
    // A catalog whose names carry a number per product has about as many words as
    // products: no lookup or allocation per word here.
    let (mut k, mut v) = (Vec::new(), Vec::new());
    for (kind, map) in [(b'c', &index.categories), (b't', &index.terms)] {
        let mut words: Vec<(&str, &Vec<u32>)> =
            map.iter().map(|(w, list)| (w.as_str(), list)).collect();
        words.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (word, list) in words {
            for chunk in list.chunks(POSTING_BLOCK) {
                k.clear();
                k.extend_from_slice(&[kind, 0]);
                k.extend_from_slice(word.as_bytes());
                k.push(0);
                k.extend_from_slice(entries[chunk[0] as usize].sku.as_bytes());
                v.clear();
                for (j, i) in chunk.iter().enumerate() {
                    if j > 0 {
                        v.push(0);
                    }
                    v.extend_from_slice(entries[*i as usize].sku.as_bytes());
                }
                w.push(&k, &v)?;
            }
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::skus;
    use super::*;
    use crate::domain::product::parse_product_json;
    use crate::store::catalog::{ImportConflict, ImportMode};

    fn with_barcodes(sku: &str, barcodes: &[&str]) -> Product {
        let json = format!(
            r#"{{"sku":"{sku}","barcodes":{},"name":"Item {sku}","category":"misc","price":100,"currency":"EUR","tax_class":"standard"}}"#,
            serde_json::to_string(barcodes).unwrap()
        );
        parse_product_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn barcodes_are_keyed_by_gtin_14_whatever_the_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        // GTIN-8, GTIN-12 and GTIN-13, out of SKU order (the import sorts).
        imp.add(&with_barcodes("B", &["96385074"]), 1)
            .unwrap()
            .unwrap();
        imp.add(&with_barcodes("A", &["036000291452", "4006381333931"]), 2)
            .unwrap()
            .unwrap();
        // The GTIN-13 spelling of A's GTIN-12 is the same item.
        assert_eq!(
            imp.add(&with_barcodes("C", &["0036000291452"]), 3).unwrap(),
            Err(ImportConflict::DuplicateBarcode {
                barcode: "0036000291452".into(),
                sku: "A".into()
            })
        );
        imp.finish("v").unwrap();
        let c = store.catalog();
        for (gtin14, sku) in [
            ("00000096385074", "B"),
            ("00036000291452", "A"),
            ("04006381333931", "A"),
        ] {
            assert_eq!(c.sku_by_gtin14(gtin14).unwrap().as_deref(), Some(sku));
        }
        assert_eq!(c.sku_by_gtin14("00000000000000").unwrap(), None);
    }

    #[test]
    fn a_merge_gives_a_barcode_to_its_new_owner_and_the_kept_product_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        imp.add(&with_barcodes("OLD", &["036000291452", "4006381333931"]), 1)
            .unwrap()
            .unwrap();
        imp.add(&with_barcodes("ZED", &["96385074"]), 2)
            .unwrap()
            .unwrap();
        imp.finish("v1").unwrap();
        // A new product takes OLD's GTIN-12 (spelled as a GTIN-13): a rebuild.
        let mut imp = store.begin_catalog_import(ImportMode::Merge).unwrap();
        imp.add(&with_barcodes("NEW", &["0036000291452"]), 1)
            .unwrap()
            .unwrap();
        let s = imp.finish("v2").unwrap();
        assert_eq!((s.imported, s.kept, s.overlay), (1, 2, false));
        let c = store.catalog();
        assert_eq!(c.len, 3);
        assert_eq!(
            c.sku_by_gtin14("00036000291452").unwrap().as_deref(),
            Some("NEW")
        );
        assert_eq!(
            c.sku_by_gtin14("04006381333931").unwrap().as_deref(),
            Some("OLD")
        );
        assert_eq!(
            c.sku_by_gtin14("00000096385074").unwrap().as_deref(),
            Some("ZED")
        );
        let (page, _) = c.search(Some("item"), Some("misc"), 10, None, 100).unwrap();
        assert_eq!(skus(&page), ["NEW", "OLD", "ZED"]);
    }
}
