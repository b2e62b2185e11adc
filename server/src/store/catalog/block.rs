//! The block format every tree of a generation is stored in.
//!
//! Within a generation, data is stored like an SSTable: records sorted by key and
//! packed into blocks of about 16 KiB, each block stored under its first key. An
//! import sorts in memory and writes a few thousand large values in key order, which
//! sled handles far better than millions of small values in random order (measured:
//! 2.8 times less memory and half the time for the same keys, see BENCHMARKS.md). A
//! lookup reads the one block whose first key is at or before the key it wants.
//! (`postings` keys its blocks by ordinal instead, see [`BlockKeys`].)
//!
//! Every block (and every overlay value) is sealed with the catalog cipher and
//! associated data naming the tree (generation included) and the sled key, so a block
//! moved to another key, tree or generation fails to open. Decrypted blocks are kept
//! in a small bounded cache (`crate::store::crypt::AtRest`), wiped on lockdown.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::store::StoreError;
use crate::store::crypt::{self, AtRest, BlockFormat};

/// A block is closed once it holds this many bytes...
const BLOCK_BYTES: usize = 16 * 1024;
/// ...or this many records.
const BLOCK_RECORDS: usize = 128;
/// Blocks written per sled batch.
const BLOCKS_PER_BATCH: usize = 64;
/// The `postings` key of the sparse index (block ordinals are 4 bytes, so it cannot
/// collide with one).
pub(super) const INDEX_KEY: &[u8] = b"index";

/// The records of a block: `[u16 key length][key][u32 value length][value]`, repeated.
pub(super) struct Records<'a> {
    buf: &'a [u8],
}

/// A record of a block, copied out: key and value.
pub(super) type RawRecord = (Vec<u8>, Vec<u8>);

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

pub(super) fn records(block: &[u8]) -> Records<'_> {
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
pub(super) type Block = Arc<Zeroizing<Vec<u8>>>;

/// The value of `key` in a tree of blocks keyed by their first key.
pub(super) fn block_get(
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
pub(super) enum BlockKeys {
    /// Under the block's first record key (`products`, `barcodes`).
    First,
    /// Under the block's ordinal; the first keys are collected for the sparse index
    /// (`postings`).
    Ordinal(Vec<Vec<u8>>),
}

/// Writes sorted records into sealed blocks.
pub(super) struct BlockWriter<'a> {
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
    pub(super) fn new(
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
    pub(super) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
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
    pub(super) fn finish(mut self) -> Result<Vec<Vec<u8>>, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
