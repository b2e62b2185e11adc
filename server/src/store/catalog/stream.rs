//! The `products` tree of an import whose SKUs arrive in increasing order (a
//! generated file, an HQ snapshot), written by a thread while the import is still
//! being read.

use std::borrow::Cow;

use super::Catalog;
use super::block::{BlockKeys, BlockWriter};
use super::tree_name;
use crate::domain::product::Product;
use crate::store::StoreError;

/// Products handed to the [`ProductStream`] thread at once.
const STREAM_BATCH: usize = 1024;
/// Batches queued for the [`ProductStream`] thread before `add` waits for it.
const STREAM_QUEUE: usize = 8;

/// Products on their way to the [`ProductStream`] thread, in order: SKUs and JSON
/// serialized by [`CatalogImport::add`](super::CatalogImport::add) one after the other in one buffer (one
/// allocation per batch, not two per product), or products handed over whole by
/// [`CatalogImport::add_owned`](super::CatalogImport::add_owned), which that thread
/// serializes.
#[derive(Default)]
struct StreamBatch {
    data: Vec<u8>,
    records: Vec<Streamed>,
}

/// A record of a [`StreamBatch`].
enum Streamed {
    /// Where the SKU and the JSON end in `data` (they start where the previous
    /// serialized record ended).
    Serialized { sku_end: usize, end: usize },
    /// To be serialized by the products thread.
    Product(Box<Product>),
}

impl StreamBatch {
    fn with_capacity(products: usize) -> StreamBatch {
        StreamBatch {
            data: Vec::new(),
            records: Vec::with_capacity(products),
        }
    }

    fn push_serialized(&mut self, p: &Product) {
        if self.data.capacity() == 0 {
            self.data.reserve(self.records.capacity() * 320);
        }
        self.data.extend_from_slice(p.sku.as_str().as_bytes());
        let sku_end = self.data.len();
        write_json(&mut self.data, p);
        self.records.push(Streamed::Serialized {
            sku_end,
            end: self.data.len(),
        });
    }

    /// Write every record to `w`, in order.
    fn write_to(self, w: &mut BlockWriter<'_>, json: &mut Vec<u8>) -> Result<(), StoreError> {
        let mut start = 0;
        for r in self.records {
            match r {
                Streamed::Serialized { sku_end, end } => {
                    w.push(&self.data[start..sku_end], &self.data[sku_end..end])?;
                    start = end;
                }
                Streamed::Product(p) => {
                    json.clear();
                    write_json(json, &p);
                    w.push(p.sku.as_str().as_bytes(), json)?;
                }
            }
        }
        Ok(())
    }
}

/// Append a product's stored JSON (as `to_json`: our own plain type always
/// serializes).
fn write_json(out: &mut Vec<u8>, p: &Product) {
    serde_json::to_writer(out, p).unwrap_or_else(|e| panic!("stored types always serialize: {e}"));
}

/// The `products` tree of a replace import, written while the import is still being
/// read: while SKUs arrive in increasing order (a generated file, an HQ snapshot),
/// each product's JSON goes to a thread that packs, compresses, seals and writes the
/// blocks, so that work overlaps with parsing and the JSON is not held until `finish`.
pub(super) struct ProductStream {
    /// `None` once closed.
    tx: Option<std::sync::mpsc::SyncSender<StreamBatch>>,
    pending: StreamBatch,
    thread: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
    /// Entries (a prefix of the import, in order) whose JSON went to the thread.
    pub(super) streamed: usize,
    /// False once a SKU arrived out of order: from then on JSON is kept in memory and
    /// `finish` reads the streamed prefix back (see [`CatalogImport::finish`](super::CatalogImport::finish)).
    pub(super) in_order: bool,
}

impl ProductStream {
    pub(super) fn start(next: &Catalog) -> Result<ProductStream, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<StreamBatch>(STREAM_QUEUE);
        let tree = next.products.clone();
        let name = tree_name(next.generation, "products");
        let at_rest = next.at_rest.clone();
        let format = next.format;
        let thread = std::thread::Builder::new()
            .name("outpost-catalog-products".into())
            .spawn(move || {
                let mut w = BlockWriter::new(&tree, name, &at_rest, BlockKeys::First, format)?;
                let mut json = Vec::with_capacity(1024);
                for batch in rx {
                    batch.write_to(&mut w, &mut json)?;
                }
                w.finish().map(drop)
            })?;
        Ok(ProductStream {
            tx: Some(tx),
            pending: StreamBatch::with_capacity(STREAM_BATCH),
            thread: Some(thread),
            streamed: 0,
            in_order: true,
        })
    }

    /// Stream a product: a borrowed one is serialized here, an owned one by the thread.
    pub(super) fn push(&mut self, p: Cow<'_, Product>) -> Result<(), StoreError> {
        match p {
            Cow::Owned(p) => self.pending.records.push(Streamed::Product(Box::new(p))),
            Cow::Borrowed(p) => self.pending.push_serialized(p),
        }
        self.streamed += 1;
        if self.pending.records.len() < STREAM_BATCH {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.pending, StreamBatch::with_capacity(STREAM_BATCH));
        match &self.tx {
            Some(tx) if tx.send(batch).is_ok() => Ok(()),
            // The thread stopped: its error says why.
            _ => self.close().and(Err(StoreError::Corrupt(
                "the catalog writer thread stopped".into(),
            ))),
        }
    }

    /// Write what is pending, stop the thread and wait for it: its error, if any.
    pub(super) fn close(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut self.pending);
        if let Some(tx) = self.tx.take()
            && !batch.records.is_empty()
        {
            // A send fails only when the thread stopped, and then `join` has its error.
            let _ = tx.send(batch);
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(StoreError::Corrupt(
                    "the catalog writer thread panicked".into(),
                ))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for ProductStream {
    fn drop(&mut self) {
        // Stop the thread before anyone drops the trees it writes.
        self.pending = StreamBatch::default();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{import, product, skus};
    use crate::domain::product::Product;
    use crate::store::{ImportMode, from_json};

    #[test]
    fn an_import_that_turns_out_of_order_midway_is_written_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        // In order for more than two stream batches (so some went to the thread and
        // some are pending), then a SKU before them, then in order again.
        let order: Vec<usize> = (1000..3500).chain([5]).chain(3500..4000).collect();
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        for (line, i) in order.iter().enumerate() {
            imp.add(&product(*i, "tea", "Leaf"), line as u64 + 1)
                .unwrap()
                .unwrap();
        }
        imp.finish("v").unwrap();
        let c = store.catalog();
        assert_eq!(c.len, order.len() as u64);
        let exported: Vec<Product> = c
            .products_json()
            .map(|j| from_json(&j.unwrap(), "p").unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(
            exported
                .iter()
                .map(|p| p.sku.as_str().to_owned())
                .collect::<Vec<_>>(),
            sorted
                .iter()
                .map(|i| format!("S{i:05}"))
                .collect::<Vec<_>>()
        );
        for i in [5, 1000, 2023, 3499, 3500, 3999] {
            let p = c.product(&format!("S{i:05}")).unwrap().unwrap();
            assert_eq!(p.name, format!("Leaf {i}"));
            assert_eq!(
                c.sku_by_gtin14(&p.barcodes[0].to_gtin14()).unwrap(),
                Some(format!("S{i:05}"))
            );
        }
        let (page, _) = c.search(Some("leaf"), None, 10, None, 100).unwrap();
        assert_eq!(skus(&page)[0], "S00005");
    }

    #[test]
    fn an_abandoned_streamed_import_leaves_no_trees() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        import(
            &store,
            ImportMode::Replace,
            (0..10).map(|i| product(i, "tea", "Old")),
        );
        let live = store.catalog().generation;
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        for i in 0..3000 {
            imp.add(&product(i, "tea", "New"), i as u64 + 1)
                .unwrap()
                .unwrap();
        }
        drop(imp);
        let names: Vec<String> = store
            .db()
            .tree_names()
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| n.starts_with("catalog.") && !n.starts_with(&format!("catalog.{live}.")))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        assert_eq!(
            store.catalog().product("S00001").unwrap().unwrap().name,
            "Old 1"
        );
    }

    #[test]
    fn borrowed_and_owned_products_stream_in_their_order() {
        // `add` serializes on the caller's thread, `add_owned` on the products thread;
        // mixed in one import, the records still reach the blocks in order.
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        let mut imp = store.begin_catalog_import(ImportMode::Replace).unwrap();
        for i in 0..3000 {
            let p = product(i, "tea", "Mixed");
            let added = if i % 3 == 0 {
                imp.add_owned(p, i as u64 + 1)
            } else {
                imp.add(&p, i as u64 + 1)
            };
            added.unwrap().unwrap();
        }
        imp.finish("v").unwrap();
        let c = store.catalog();
        let exported: Vec<Product> = c
            .products_json()
            .map(|j| from_json(&j.unwrap(), "p").unwrap())
            .collect();
        assert_eq!(exported.len(), 3000);
        for (i, p) in exported.iter().enumerate() {
            assert_eq!(p.sku.as_str(), format!("S{i:05}"));
            assert_eq!(p.name, format!("Mixed {i}"));
        }
    }
}
