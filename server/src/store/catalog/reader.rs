//! What readers ask of a catalog generation: a product by SKU or barcode, every
//! product in SKU order, and paged search over the postings. Each serves the overlay's
//! JSON where it has the SKU.

use super::block::{Block, RawRecord, block_get, records};
use super::{Catalog, tree_name};
use crate::domain::product::{Product, search_terms};
use crate::store::crypt;
use crate::store::{StoreError, from_json};

/// A page of product JSON and the cursor of the next page.
pub type Page = (Vec<Vec<u8>>, Option<Vec<u8>>);

/// Where a search page ends: the index entry (word or category, and SKU) it stopped at.
fn encode_cursor(term: &[u8], sku: &[u8]) -> Vec<u8> {
    [term, b"\0", sku].concat()
}

fn decode_cursor(c: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = c.iter().position(|b| *b == 0)?;
    Some((&c[..p], &c[p + 1..]))
}

impl Catalog {
    /// The postings block at `ordinal`, decrypted.
    fn postings_block(&self, ordinal: usize) -> Result<Block, StoreError> {
        let key = u32::try_from(ordinal)
            .map_err(|_| StoreError::Corrupt("postings ordinal".into()))?
            .to_be_bytes();
        let sealed = self
            .postings
            .get(key)?
            .ok_or_else(|| StoreError::Corrupt(format!("postings block {ordinal} is missing")))?;
        self.at_rest.catalog_block(
            &tree_name(self.generation, "postings"),
            &key,
            &sealed,
            self.format,
        )
    }

    /// A decrypted block of `products` or `barcodes`.
    fn block(&self, part: &str, first: &[u8], sealed: &[u8]) -> Result<Block, StoreError> {
        self.at_rest.catalog_block(
            &tree_name(self.generation, part),
            first,
            sealed,
            self.format,
        )
    }

    /// The stored JSON of a product: what the API serves, without decoding.
    pub fn product_json(&self, sku: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.at_rest.keys()?;
        if let Some(json) = self.overlay.get(sku) {
            return Ok(Some(json.clone()));
        }
        block_get(
            &self.at_rest,
            &self.products,
            &tree_name(self.generation, "products"),
            sku.as_bytes(),
            self.format,
        )
    }

    /// A record of `products` as served: the overlay's JSON when it has the SKU.
    fn served<'a>(&'a self, sku: &[u8], json: &'a [u8]) -> &'a [u8] {
        if self.overlay.is_empty() {
            return json;
        }
        std::str::from_utf8(sku)
            .ok()
            .and_then(|s| self.overlay.get(s))
            .map_or(json, Vec::as_slice)
    }

    /// Every product's stored JSON, in SKU order.
    pub fn products_json(&self) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        let locked = self.at_rest.keys().err();
        locked
            .into_iter()
            .map(Err)
            .chain(self.products.iter().flat_map(|kv| {
                let block = kv
                    .map_err(StoreError::from)
                    .and_then(|(first, sealed)| self.block("products", &first, &sealed));
                let out: Vec<Result<Vec<u8>, StoreError>> = match block {
                    Ok(block) => records(&block)
                        .map(|r| r.map(|(k, v)| self.served(k, v).to_vec()))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                out
            }))
    }

    /// Every record of `products` as written (the overlay is not applied), in SKU
    /// order, decrypted without the block cache: for an import that reads back its own
    /// unfinished generation and then rewrites it (a cached block could outlive the
    /// rewrite under the same tree name and key).
    pub(super) fn products_json_raw(
        &self,
    ) -> impl Iterator<Item = Result<RawRecord, StoreError>> + '_ {
        let name = tree_name(self.generation, "products");
        self.products.iter().flat_map(move |kv| {
            let block = kv.map_err(StoreError::from).and_then(|(first, sealed)| {
                let keys = self.at_rest.keys()?;
                self.format
                    .unpack(crypt::open(&keys.catalog, &name, &first, &sealed)?)
            });
            let out: Vec<Result<RawRecord, StoreError>> = match block {
                Ok(block) => records(&block)
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                    .collect(),
                Err(e) => vec![Err(e)],
            };
            out
        })
    }

    /// A product by SKU.
    pub fn product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        self.product_json(sku)?
            .map(|v| from_json(&v, "product"))
            .transpose()
    }

    /// The SKU a barcode (as GTIN-14) belongs to.
    pub fn sku_by_gtin14(&self, gtin14: &str) -> Result<Option<String>, StoreError> {
        Ok(block_get(
            &self.at_rest,
            &self.barcodes,
            &tree_name(self.generation, "barcodes"),
            gtin14.as_bytes(),
            self.format,
        )?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Search products. `q` matches product names word by word (every query word must
    /// be the start of a word of the name); `category` matches exactly. Without either,
    /// every product in SKU order. `cursor` is the `next` of the previous page. At most
    /// `max_scan` candidates are read per call so a rare match cannot make one request
    /// scan the whole catalog; the cursor then points past what was scanned.
    pub fn search(
        &self,
        q: Option<&str>,
        category: Option<&str>,
        limit: usize,
        cursor: Option<&[u8]>,
        max_scan: usize,
    ) -> Result<Page, StoreError> {
        self.at_rest.keys()?;
        let words = q.map(search_terms).unwrap_or_default();
        // Drive the scan with the longest word (the most selective); check the rest.
        let driver = words.iter().max_by_key(|w| w.len()).cloned();
        let mut items: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut scanned = 0;
        let mut last_scanned: Option<(Vec<u8>, Vec<u8>)> = None;
        let (prefix, term_from) = match (&driver, category) {
            (None, None) => return self.list(limit, cursor),
            (Some(w), _) => ([b"t\0".as_slice(), w.as_bytes()].concat(), 2),
            (None, Some(c)) => ([b"c\0".as_slice(), c.as_bytes(), b"\0"].concat(), 2),
        };
        let cursor = cursor.and_then(decode_cursor);
        let start = match cursor {
            Some((term, _)) => {
                let mut s = prefix[..term_from].to_vec();
                s.extend_from_slice(term);
                s.push(0);
                if s.starts_with(&prefix) {
                    s
                } else {
                    prefix.clone()
                }
            }
            None => prefix.clone(),
        };
        // The postings block to start at: the last whose first key is at or before
        // `start` (the sparse index is in key order).
        let first_block = self
            .index
            .partition_point(|f| f.as_slice() <= start.as_slice())
            .saturating_sub(1);
        let products_name = tree_name(self.generation, "products");
        for ordinal in first_block..self.index.len() {
            let postings = self.postings_block(ordinal)?;
            for r in records(&postings) {
                let (k, block) = r?;
                if k < start.as_slice() {
                    continue;
                }
                if !k.starts_with(&prefix) {
                    return Ok((items.into_iter().map(|(_, _, j)| j).collect(), None));
                }
                let rest = &k[term_from..];
                let term = &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())];
                for sku in block.split(|b| *b == 0) {
                    if let Some((ct, cs)) = cursor
                        && (term < ct || (term == ct && sku <= cs))
                    {
                        continue;
                    }
                    if items.len() >= limit || scanned >= max_scan {
                        // Resume after the last item served, or after the last candidate
                        // read when the scan budget ran out first.
                        let next = match (items.len() >= limit, items.last(), &last_scanned) {
                            (true, Some((t, s, _)), _) | (false, _, Some((t, s))) => {
                                encode_cursor(t, s)
                            }
                            _ => encode_cursor(term, sku),
                        };
                        return Ok((items.into_iter().map(|(_, _, j)| j).collect(), Some(next)));
                    }
                    scanned += 1;
                    last_scanned = Some((term.to_vec(), sku.to_vec()));
                    let json = match std::str::from_utf8(sku)
                        .ok()
                        .and_then(|s| self.overlay.get(s))
                    {
                        Some(json) => json.clone(),
                        None => {
                            match block_get(
                                &self.at_rest,
                                &self.products,
                                &products_name,
                                sku,
                                self.format,
                            )? {
                                Some(json) => json,
                                None => continue,
                            }
                        }
                    };
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
                        // "milkshake") is in two postings: serve it only under the first,
                        // so it appears once across all pages.
                        let first = name_terms
                            .iter()
                            .filter(|t| t.starts_with(w.as_str()))
                            .min();
                        if first.map(|t| t.as_bytes()) != Some(term) {
                            continue;
                        }
                    }
                    items.push((term.to_vec(), sku.to_vec(), json));
                }
            }
        }
        Ok((items.into_iter().map(|(_, _, j)| j).collect(), None))
    }

    /// Every product in SKU order, from after the SKU in `cursor`.
    fn list(&self, limit: usize, cursor: Option<&[u8]>) -> Result<Page, StoreError> {
        let after = cursor.map(<[u8]>::to_vec);
        // Start at the block that holds the cursor's SKU.
        let start = match &after {
            Some(a) => match self.products.range(..=a.as_slice()).next_back() {
                Some(kv) => kv?.0.to_vec(),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let mut items: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for kv in self.products.range(start..) {
            let (first, sealed) = kv?;
            let block = self.block("products", &first, &sealed)?;
            for r in records(&block) {
                let (sku, json) = r?;
                if after.as_deref().is_some_and(|a| sku <= a) {
                    continue;
                }
                if items.len() >= limit {
                    let next = items.last().map(|(s, _)| s.clone());
                    return Ok((items.into_iter().map(|(_, j)| j).collect(), next));
                }
                items.push((sku.to_vec(), self.served(sku, json).to_vec()));
            }
        }
        Ok((items.into_iter().map(|(_, j)| j).collect(), None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{import, product, skus};
    use crate::store::ImportMode;

    #[test]
    fn lookups_and_paging_across_many_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        // Imported in reverse order: the import sorts.
        let n = 3000;
        import(
            &store,
            ImportMode::Replace,
            (0..n)
                .rev()
                .map(|i| product(i, if i % 3 == 0 { "tea" } else { "coffee" }, "Green Leaf")),
        );
        let c = store.catalog();
        assert_eq!(c.len, n as u64);
        assert!(c.products.len() > 10, "many blocks");
        for i in (0..n).step_by(97) {
            let p = c.product(&format!("S{i:05}")).unwrap().unwrap();
            assert_eq!(
                c.sku_by_gtin14(&p.barcodes[0].to_gtin14())
                    .unwrap()
                    .as_deref(),
                Some(p.sku.as_str())
            );
        }
        assert!(c.product("S99999").unwrap().is_none());
        assert!(c.product("A").unwrap().is_none(), "before the first block");
        // Listing everything, page by page, visits each product once in order.
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (page, next) = c
                .search(None, None, 200, cursor.as_deref(), 20_000)
                .unwrap();
            all.extend(skus(&page));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(all.len(), n);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        // A category search with a tiny scan budget still finds every match exactly once.
        let mut tea = Vec::new();
        let mut cursor = None;
        for _ in 0..10_000 {
            let (page, next) = c
                .search(Some("green"), Some("tea"), 50, cursor.as_deref(), 7)
                .unwrap();
            tea.extend(skus(&page));
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(tea.len(), n / 3);
        let unique: std::collections::HashSet<_> = tea.iter().collect();
        assert_eq!(unique.len(), tea.len());
        let exported: Vec<_> = c.products_json().collect::<Result<_, _>>().unwrap();
        assert_eq!(exported.len(), n);
    }
}
