//! The catalog: products and their indexes, in generations of sorted blocks.
//!
//! Each catalog generation is its own set of sled trees (`catalog.<gen>.products`,
//! `.barcodes`, `.postings`). An import writes a new generation beside the live one,
//! then one write to `meta` switches readers over. So readers see the old catalog or
//! the new one, never a mix, and an import that fails leaves nothing: its trees are
//! dropped (or, after a crash, dropped at the next start).
//!
//! Within a generation, data is stored like an SSTable: records sorted by key and
//! packed into blocks of about 16 KiB, each block stored under its first key. An
//! import sorts in memory and writes a few thousand large values in key order, which
//! sled handles far better than millions of small values in random order (measured:
//! 2.8 times less memory and half the time for the same keys, see BENCHMARKS.md). A
//! lookup reads the one block whose first key is at or before the key it wants.
//!
//! - `products`: SKU -> the product's JSON (what the API serves, as stored).
//! - `barcodes`: GTIN-14 -> SKU.
//! - `postings`: the search index. Its records are `c\0<category>\0<first sku>` and
//!   `t\0<name word>\0<first sku>` -> up to 512 SKUs, sorted, `\0`-separated; they are
//!   packed into blocks like the other trees, but a block is stored under its
//!   *ordinal* (u32 big-endian), never under its first key, so no word or category
//!   reaches a sled key. The first key of every block (the sparse index) is one
//!   sealed value under `index`, loaded into memory when the generation is opened; a
//!   prefix walk binary-searches it for the block to start at.
//! - `overlay`: SKU -> product JSON that replaces the block's. A merge that changes
//!   nothing any index is built from (prices, descriptions, flags of existing products:
//!   the everyday price delta) is written here instead of a new generation, so its
//!   cost grows with the delta, not with the catalog. The overlay is also held in
//!   memory, swapped with the catalog handle, so readers still see the old catalog or
//!   the new one. It is bounded ([`OVERLAY_MAX`]); a merge that would outgrow it, or
//!   that adds, removes or re-indexes products, builds a new generation, which folds
//!   the overlay in.
//!
//! Every block (and every overlay value) is sealed with the catalog cipher and
//! associated data naming the tree (generation included) and the sled key, so a block
//! moved to another key, tree or generation fails to open. Decrypted blocks are kept
//! in a small bounded cache (`super::crypt::AtRest`), wiped on lockdown.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use zeroize::Zeroizing;

use super::crypt::{self, AtRest, BlockFormat};
use super::{Store, StoreError, from_json, meta_read, meta_seal, to_json};
use crate::domain::gtin::Gtin;
use crate::domain::product::{Product, SearchTerms, search_terms};

const PARTS: [&str; 4] = ["products", "barcodes", "postings", "overlay"];
/// Most products the overlay of one generation holds before a merge rebuilds.
pub const OVERLAY_MAX: usize = 65_536;
/// A block is closed once it holds this many bytes...
const BLOCK_BYTES: usize = 16 * 1024;
/// ...or this many records.
const BLOCK_RECORDS: usize = 128;
/// SKUs per postings block.
const POSTING_BLOCK: usize = 512;
/// Blocks written per sled batch.
const BLOCKS_PER_BATCH: usize = 64;
/// The `postings` key of the sparse index (block ordinals are 4 bytes, so it cannot
/// collide with one).
const INDEX_KEY: &[u8] = b"index";
/// How new generations store their blocks (older ones keep the format they were
/// written in, see [`BlockFormat`]).
pub(crate) const NEW_FORMAT: BlockFormat = BlockFormat::Lz4;

/// A page of product JSON and the cursor of the next page.
pub type Page = (Vec<Vec<u8>>, Option<Vec<u8>>);

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
    /// The overlay's content, as of this handle (see the module doc).
    overlay: Arc<HashMap<String, Vec<u8>>>,
    /// First record key of each `postings` block, by ordinal (see the module doc).
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

/// A product of the overlay: SKU and JSON.
type OverlayEntry = (String, Vec<u8>);

/// Write `entries` to the overlay of `live` and make them visible under `version`:
/// the overlay entries and the version change in one sled transaction, flushed
/// before the new handle is returned.
pub(crate) fn commit_overlay(
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

/// The records of a block: `[u16 key length][key][u32 value length][value]`, repeated.
struct Records<'a> {
    buf: &'a [u8],
}

/// A record of a block, copied out: key and value.
type RawRecord = (Vec<u8>, Vec<u8>);
/// Products on their way to the [`ProductStream`] thread, in order: SKUs and JSON
/// serialized by [`CatalogImport::add`] one after the other in one buffer (one
/// allocation per batch, not two per product), or products handed over whole by
/// [`CatalogImport::add_owned`], which that thread serializes.
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

impl<'a> Iterator for Records<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let corrupt = || Some(Err(StoreError::Corrupt("truncated catalog block".into())));
        let Some((kl, rest)) = self.buf.split_first_chunk::<2>() else {
            return corrupt();
        };
        let kl = usize::from(u16::from_le_bytes(*kl));
        let Some((key, rest)) = rest.split_at_checked(kl) else {
            return corrupt();
        };
        let Some((vl, rest)) = rest.split_first_chunk::<4>() else {
            return corrupt();
        };
        let vl = u32::from_le_bytes(*vl) as usize;
        let Some((value, rest)) = rest.split_at_checked(vl) else {
            return corrupt();
        };
        self.buf = rest;
        Some(Ok((key, value)))
    }
}

fn records(block: &[u8]) -> Records<'_> {
    Records { buf: block }
}

/// Append one record to a block.
fn push_record(block: &mut Vec<u8>, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let kl =
        u16::try_from(key.len()).map_err(|_| StoreError::Corrupt("catalog key too long".into()))?;
    let vl = u32::try_from(value.len())
        .map_err(|_| StoreError::Corrupt("catalog value too long".into()))?;
    block.extend_from_slice(&kl.to_le_bytes());
    block.extend_from_slice(key);
    block.extend_from_slice(&vl.to_le_bytes());
    block.extend_from_slice(value);
    Ok(())
}

/// A decrypted block.
type Block = Arc<Zeroizing<Vec<u8>>>;

/// The value of `key` in a tree of blocks keyed by their first key.
fn block_get(
    at_rest: &AtRest,
    tree: &sled::Tree,
    name: &str,
    key: &[u8],
    format: BlockFormat,
) -> Result<Option<Vec<u8>>, StoreError> {
    at_rest.keys()?;
    let Some(kv) = tree.range(..=key).next_back() else {
        return Ok(None);
    };
    let (first, sealed) = kv?;
    let block = at_rest.catalog_block(name, &first, &sealed, format)?;
    for r in records(&block) {
        let (k, v) = r?;
        if k == key {
            return Ok(Some(v.to_vec()));
        }
        if k > key {
            break;
        }
    }
    Ok(None)
}

/// How a [`BlockWriter`] keys its blocks.
enum BlockKeys {
    /// Under the block's first record key (`products`, `barcodes`).
    First,
    /// Under the block's ordinal; the first keys are collected for the sparse index
    /// (`postings`).
    Ordinal(Vec<Vec<u8>>),
}

/// Writes sorted records into sealed blocks.
struct BlockWriter<'a> {
    tree: &'a sled::Tree,
    name: String,
    keys: Arc<crypt::Keys>,
    keyed: BlockKeys,
    format: BlockFormat,
    batch: sled::Batch,
    batched: usize,
    block: Vec<u8>,
    first: Vec<u8>,
    records: usize,
    last: Vec<u8>,
}

impl<'a> BlockWriter<'a> {
    fn new(
        tree: &'a sled::Tree,
        name: String,
        at_rest: &AtRest,
        keyed: BlockKeys,
        format: BlockFormat,
    ) -> Result<Self, StoreError> {
        Ok(BlockWriter {
            tree,
            name,
            keys: at_rest.keys()?,
            keyed,
            format,
            batch: sled::Batch::default(),
            batched: 0,
            block: Vec::with_capacity(BLOCK_BYTES + 1024),
            first: Vec::new(),
            records: 0,
            last: Vec::new(),
        })
    }

    /// Add a record; keys must come in strictly increasing order.
    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if self.records > 0 && key <= self.last.as_slice() {
            return Err(StoreError::Corrupt("catalog keys out of order".into()));
        }
        push_record(&mut self.block, key, value)?;
        if self.records == 0 {
            self.first = key.to_vec();
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        self.records += 1;
        if self.block.len() >= BLOCK_BYTES || self.records >= BLOCK_RECORDS {
            self.close_block()?;
        }
        Ok(())
    }

    /// Pack (compress) and seal `value` and store it under `key`.
    fn put(&mut self, key: Vec<u8>, value: &[u8]) -> Result<(), StoreError> {
        let packed = self.format.pack(value);
        let sealed = self.keys.catalog.seal_record(&self.name, &key, &packed);
        self.batch.insert(key, sealed);
        self.batched += 1;
        if self.batched >= BLOCKS_PER_BATCH {
            self.tree.apply_batch(std::mem::take(&mut self.batch))?;
            self.batched = 0;
        }
        Ok(())
    }

    fn close_block(&mut self) -> Result<(), StoreError> {
        if self.records == 0 {
            return Ok(());
        }
        let block = Zeroizing::new(std::mem::replace(
            &mut self.block,
            Vec::with_capacity(BLOCK_BYTES + 1024),
        ));
        let first = std::mem::take(&mut self.first);
        self.records = 0;
        let key = match &mut self.keyed {
            BlockKeys::First => first,
            BlockKeys::Ordinal(firsts) => {
                let ordinal = u32::try_from(firsts.len())
                    .map_err(|_| StoreError::Corrupt("too many postings blocks".into()))?;
                firsts.push(first);
                ordinal.to_be_bytes().to_vec()
            }
        };
        self.put(key, &block)
    }

    /// Close the last block, write the sparse index (ordinal keying) and apply.
    fn finish(mut self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.close_block()?;
        let index = match std::mem::replace(&mut self.keyed, BlockKeys::First) {
            BlockKeys::First => Vec::new(),
            BlockKeys::Ordinal(firsts) => {
                let mut v = Vec::new();
                for f in &firsts {
                    push_record(&mut v, f, b"")?;
                }
                self.put(INDEX_KEY.to_vec(), &v)?;
                firsts
            }
        };
        self.tree.apply_batch(std::mem::take(&mut self.batch))?;
        Ok(index)
    }
}

/// Where a search page ends: the index entry (word or category, and SKU) it stopped at.
fn encode_cursor(term: &[u8], sku: &[u8]) -> Vec<u8> {
    [term, b"\0", sku].concat()
}

fn decode_cursor(c: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = c.iter().position(|b| *b == 0)?;
    Some((&c[..p], &c[p + 1..]))
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
        let keys = at_rest.keys()?;
        let name = tree_name(generation, "overlay");
        let mut overlay = HashMap::new();
        for kv in catalog.overlay_tree.iter() {
            let (k, v) = kv?;
            let json = crypt::open(&keys.catalog, &name, &k, &v)?;
            overlay.insert(String::from_utf8_lossy(&k).into_owned(), json.to_vec());
        }
        catalog.overlay = Arc::new(overlay);
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

    /// Products served from the overlay rather than the blocks.
    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
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
    fn products_json_raw(&self) -> impl Iterator<Item = Result<RawRecord, StoreError>> + '_ {
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

/// One product of an import, kept in memory until the import is written in SKU order.
/// Its index records are in the import's [`IndexBuilder`], which refers to it by its
/// position in the import's list.
#[derive(Default)]
struct Entry {
    sku: String,
    /// The stored JSON; empty once streamed to the `products` tree.
    json: Vec<u8>,
}

/// A GTIN-14 as a number: 14 digits at most, so it fits a `u64`, and numeric order is
/// the order of the zero-padded text (the `barcodes` key).
fn gtin_number(g: &Gtin) -> u64 {
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
struct IndexBuilder {
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
    fn owner(&self, g: &Gtin) -> Option<u32> {
        self.barcodes.get(&gtin_number(g)).copied()
    }

    /// Index product `i`: its category and name words, and its barcodes that no
    /// other product has (an import's own barcodes were checked before; a product
    /// kept by a merge loses a barcode the import gave to another product).
    fn add(&mut self, i: u32, p: &Product) {
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
fn sort_entries(entries: &mut Vec<Entry>, index: &mut IndexBuilder) {
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
fn entry_number(len: usize) -> Result<u32, StoreError> {
    u32::try_from(len).map_err(|_| StoreError::Corrupt("too many products in one import".into()))
}

/// Products handed to the [`ProductStream`] thread at once.
const STREAM_BATCH: usize = 1024;
/// Batches queued for the [`ProductStream`] thread before `add` waits for it.
const STREAM_QUEUE: usize = 8;

/// The `products` tree of a replace import, written while the import is still being
/// read: while SKUs arrive in increasing order (a generated file, an HQ snapshot),
/// each product's JSON goes to a thread that packs, compresses, seals and writes the
/// blocks, so that work overlaps with parsing and the JSON is not held until `finish`.
struct ProductStream {
    /// `None` once closed.
    tx: Option<std::sync::mpsc::SyncSender<StreamBatch>>,
    pending: StreamBatch,
    thread: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
    /// Entries (a prefix of the import, in order) whose JSON went to the thread.
    streamed: usize,
    /// False once a SKU arrived out of order: from then on JSON is kept in memory and
    /// `finish` reads the streamed prefix back (see [`CatalogImport::finish`]).
    in_order: bool,
}

impl ProductStream {
    fn start(next: &Catalog) -> Result<ProductStream, StoreError> {
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
    fn push(&mut self, p: Cow<'_, Product>) -> Result<(), StoreError> {
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
    fn close(&mut self) -> Result<(), StoreError> {
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
        if self.mode != ImportMode::Merge
            || !self.removed.is_empty()
            || live.generation == 0
            || self.entries.len() + live.overlay.len() > OVERLAY_MAX
        {
            return Ok(None);
        }
        // What the index is built from: category, name words, barcodes.
        let indexed = |p: &Product| {
            let mut gtins: Vec<u64> = p.barcodes.iter().map(gtin_number).collect();
            gtins.sort_unstable();
            (p.category.clone(), search_terms(&p.name), gtins)
        };
        for e in &self.entries {
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
            self.entries
                .iter()
                .map(|e| (e.sku.clone(), e.json.clone()))
                .collect(),
        ))
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

/// Write sorted entries and their index into a generation's trees, each in key order;
/// returns the sparse index of its postings. `products_written`: the `products` tree
/// was already streamed (entries have no JSON). The `barcodes` and `postings` trees are
/// written by two threads at once (different trees; each in key order).
fn write_generation(
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

/// Schema-1 migration of the live generation (see `super::migrate`): when its
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
    use super::*;
    use crate::domain::product::parse_product_json;

    fn product(i: usize, category: &str, name: &str) -> Product {
        let gtin = format!("29{i:010}");
        let check = crate::domain::gtin::check_digit(&gtin).unwrap();
        let json = format!(
            r#"{{"sku":"S{i:05}","barcodes":["{gtin}{check}"],"name":"{name} {i}","category":"{category}","price":100,"currency":"EUR","tax_class":"standard"}}"#
        );
        parse_product_json(json.as_bytes()).unwrap()
    }

    fn import(
        store: &Arc<Store>,
        mode: ImportMode,
        products: impl Iterator<Item = Product>,
    ) -> ImportSummary {
        let mut imp = store.begin_catalog_import(mode).unwrap();
        for (i, p) in products.enumerate() {
            imp.add(&p, i as u64 + 1).unwrap().unwrap();
        }
        imp.finish("v").unwrap()
    }

    fn skus(page: &[Vec<u8>]) -> Vec<String> {
        page.iter()
            .map(|j| {
                from_json::<Product>(j, "p")
                    .unwrap()
                    .sku
                    .as_str()
                    .to_owned()
            })
            .collect()
    }

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

    #[test]
    fn a_compressed_block_that_claims_a_huge_length_is_corruption() {
        let packed = BlockFormat::Lz4.pack(b"some records");
        assert_eq!(
            BlockFormat::Lz4.unpack(packed.clone()).unwrap().as_slice(),
            b"some records"
        );
        let mut bad = packed.to_vec();
        bad[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            BlockFormat::Lz4.unpack(Zeroizing::new(bad)),
            Err(StoreError::Corrupt(_))
        ));
        let mut short = packed.to_vec();
        short[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            BlockFormat::Lz4.unpack(Zeroizing::new(short)),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            BlockFormat::Lz4.unpack(Zeroizing::new(vec![1, 2])),
            Err(StoreError::Corrupt(_))
        ));
    }

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

    #[test]
    fn truncated_blocks_are_corruption_not_panics() {
        let mut w = Vec::new();
        w.extend_from_slice(&3u16.to_le_bytes());
        w.extend_from_slice(b"abc");
        w.extend_from_slice(&100u32.to_le_bytes());
        w.extend_from_slice(b"short");
        assert!(matches!(
            records(&w).next(),
            Some(Err(StoreError::Corrupt(_)))
        ));
        assert!(matches!(
            records(&w[..3]).next(),
            Some(Err(StoreError::Corrupt(_)))
        ));
    }
}
