//! Encryption at rest of every business value the store writes.
//!
//! [`AtRest`] holds the ciphers derived from the data key (one subkey per tree, see
//! `outpost_security::vault`) and the key that hashes client-chosen strings before they
//! become sled keys. Every value is sealed with XChaCha20-Poly1305 and associated data
//! naming its tree and key, so a value swapped to another key or tree fails to open
//! instead of being served as the wrong record.
//!
//! On lockdown [`AtRest::wipe`] drops the ciphers (their key schedules zeroize on drop)
//! and the cache of decrypted catalog blocks: from then on every read or write of
//! business data fails with [`StoreError::DeviceLocked`] until [`AtRest::install`]
//! gets a freshly unsealed key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use outpost_security::vault::{Cipher, KeyVault};
use zeroize::Zeroizing;

use super::StoreError;

/// The constant sealed into `meta/key_check`: proves that the key in hand is the one
/// the data dir was written with before anything is read or written.
const KEY_CHECK: &[u8] = b"outpost data dir key check v1";
/// Most decrypted catalog blocks kept (16 KiB each: at most about 8 MiB).
const CACHE_BLOCKS: usize = 512;

/// The ciphers of one unsealed data key.
pub(crate) struct Keys {
    /// `journal`: sales, refunds, stock, movements, outbox, idempotency, payments,
    /// receipts.
    pub(crate) journal: Cipher,
    /// `meta`: catalog pointer and version, push versions.
    pub(crate) meta: Cipher,
    /// `promotions`.
    pub(crate) promotions: Cipher,
    /// Every `catalog.<gen>.*` tree (the tree name, generation included, is in the
    /// associated data).
    pub(crate) catalog: Cipher,
    /// Keyed-hash key for client-chosen strings used as sled keys.
    idem: Zeroizing<[u8; 32]>,
}

impl Keys {
    fn derive(vault: &KeyVault) -> Result<Keys, StoreError> {
        let e = |e: outpost_security::vault::CryptoError| StoreError::Key(e.to_string());
        Ok(Keys {
            journal: vault.cipher("tree:journal").map_err(e)?,
            meta: vault.cipher("tree:meta").map_err(e)?,
            promotions: vault.cipher("tree:promotions").map_err(e)?,
            catalog: vault.cipher("tree:catalog").map_err(e)?,
            idem: Zeroizing::new(*vault.subkey("hash:journal-keys").map_err(e)?.expose()),
        })
    }

    /// The keyed hash that replaces a client-chosen string in a sled key.
    pub(crate) fn hash_key(&self, s: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.idem, s).as_bytes()
    }
}

/// Open `sealed`, stored at `key` of `tree`, with `cipher`; a failure names where.
pub(crate) fn open(
    cipher: &Cipher,
    tree: &str,
    key: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    cipher.open_record(tree, key, sealed).map_err(|e| {
        StoreError::Corrupt(format!(
            "a value of tree {tree} (key of {} bytes) does not decrypt: {e}",
            key.len()
        ))
    })
}

/// The data key's ciphers, or nothing while the device is locked.
pub(crate) struct AtRest {
    keys: ArcSwapOption<Keys>,
    /// Decrypted catalog blocks by (tree name, first key). A std mutex: held for a
    /// map lookup or insert only, never across I/O or `.await`.
    cache: Mutex<BlockCache>,
}

/// A decrypted block, shared by the cache and its readers.
pub(crate) type Plain = Arc<Zeroizing<Vec<u8>>>;

#[derive(Default)]
struct BlockCache {
    /// By (tree name, sled key of the block).
    map: HashMap<(String, Vec<u8>), Plain>,
}

impl std::fmt::Debug for AtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtRest")
            .field("locked", &self.is_locked())
            .finish()
    }
}

impl AtRest {
    /// Ciphers derived from `vault`.
    pub(crate) fn new(vault: &KeyVault) -> Result<AtRest, StoreError> {
        Ok(AtRest {
            keys: ArcSwapOption::from_pointee(Keys::derive(vault)?),
            cache: Mutex::new(BlockCache::default()),
        })
    }

    /// The ciphers, or [`StoreError::DeviceLocked`].
    pub(crate) fn keys(&self) -> Result<Arc<Keys>, StoreError> {
        self.keys.load_full().ok_or(StoreError::DeviceLocked)
    }

    /// Whether the key is wiped.
    pub(crate) fn is_locked(&self) -> bool {
        self.keys.load().is_none()
    }

    /// Drop the ciphers and every decrypted block held in memory.
    pub(crate) fn wipe(&self) {
        self.keys.store(None);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .clear();
    }

    /// Use the ciphers of a freshly unsealed key.
    pub(crate) fn install(&self, vault: &KeyVault) -> Result<(), StoreError> {
        self.keys.store(Some(Arc::new(Keys::derive(vault)?)));
        Ok(())
    }

    /// A catalog block, decrypted (and decompressed when `format` says so): from the
    /// cache, or opened and cached.
    pub(crate) fn catalog_block(
        &self,
        tree: &str,
        first: &[u8],
        sealed: &[u8],
        format: BlockFormat,
    ) -> Result<Plain, StoreError> {
        let keys = self.keys()?;
        let id = (tree.to_owned(), first.to_vec());
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(&id)
        {
            return Ok(b.clone());
        }
        let block = Arc::new(format.unpack(open(&keys.catalog, tree, first, sealed)?)?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_locked() {
            // Wiped while decrypting: keep nothing.
            return Err(StoreError::DeviceLocked);
        }
        if cache.map.len() >= CACHE_BLOCKS {
            // Random eviction: cheap, and fair enough for a cache this small.
            if let Some(k) = cache.map.keys().next().cloned() {
                cache.map.remove(&k);
            }
        }
        cache.map.insert(id, block.clone());
        Ok(block)
    }

    /// Seal the key-check value for `meta`.
    pub(crate) fn key_check_value(&self) -> Result<Vec<u8>, StoreError> {
        Ok(self
            .keys()?
            .meta
            .seal_record("meta", KEY_CHECK_KEY, KEY_CHECK))
    }

    /// Whether `sealed` (the stored key check) opens under this key.
    pub(crate) fn key_matches(&self, sealed: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .keys()?
            .meta
            .open_record("meta", KEY_CHECK_KEY, sealed)
            .is_ok_and(|v| v.as_slice() == KEY_CHECK))
    }
}

/// How the plaintext of a catalog generation's blocks is laid out. Recorded per
/// generation (`meta/catalog_format`, written in the same batch as the pointer), so a
/// data dir keeps reading the generations written before compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockFormat {
    /// The records as they are (schema 2, `catalog_format` absent or 0).
    Plain,
    /// The records compressed with LZ4 (block format, uncompressed length first as
    /// u32 little-endian), then sealed (`catalog_format` 1).
    Lz4,
}

/// The largest block a compressed block may claim to expand to. Blocks are about
/// 16 KiB and the sparse index a few hundred KiB; the value is sealed, so only a bug
/// could claim more, but a bug must not make a reader allocate gigabytes.
const MAX_UNPACKED: usize = 64 * 1024 * 1024;

impl BlockFormat {
    /// The number stored in `meta/catalog_format`.
    pub(crate) fn code(self) -> u64 {
        match self {
            BlockFormat::Plain => 0,
            BlockFormat::Lz4 => 1,
        }
    }

    /// The format stored as `code`.
    pub(crate) fn from_code(code: u64) -> Result<BlockFormat, StoreError> {
        match code {
            0 => Ok(BlockFormat::Plain),
            1 => Ok(BlockFormat::Lz4),
            other => Err(StoreError::Corrupt(format!(
                "unknown catalog block format {other}"
            ))),
        }
    }

    /// A block's plaintext as it is sealed.
    pub(crate) fn pack(self, records: &[u8]) -> Zeroizing<Vec<u8>> {
        match self {
            BlockFormat::Plain => Zeroizing::new(records.to_vec()),
            BlockFormat::Lz4 => Zeroizing::new(lz4_flex::block::compress_prepend_size(records)),
        }
    }

    /// The records of a block from its opened plaintext.
    pub(crate) fn unpack(
        self,
        opened: Zeroizing<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match self {
            BlockFormat::Plain => Ok(opened),
            BlockFormat::Lz4 => {
                let corrupt = |what: &str| StoreError::Corrupt(format!("catalog block: {what}"));
                let Some((len, packed)) = opened.split_first_chunk::<4>() else {
                    return Err(corrupt("compressed block too short"));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if len > MAX_UNPACKED {
                    return Err(corrupt("compressed block claims an absurd length"));
                }
                let mut out = Zeroizing::new(vec![0u8; len]);
                let n = lz4_flex::block::decompress_into(packed, &mut out)
                    .map_err(|e| corrupt(&format!("does not decompress: {e}")))?;
                if n != len {
                    return Err(corrupt("decompressed length differs from the stored one"));
                }
                Ok(out)
            }
        }
    }
}

/// The `meta` key of the key check.
pub(crate) const KEY_CHECK_KEY: &[u8] = b"key_check";

#[cfg(test)]
pub(crate) fn test_vault() -> KeyVault {
    KeyVault::new(outpost_security::seal::DataKey::from_bytes([7; 32]))
}

/// A store in `dir` with default options under [`test_vault`], for unit tests.
#[cfg(test)]
pub(crate) fn test_store(dir: &std::path::Path) -> std::sync::Arc<super::Store> {
    super::Store::open(dir, &super::StoreOptions::default(), &test_vault())
        .unwrap_or_else(|e| panic!("test store opens: {e}"))
}
