//! Storage: sled trees, key encoding, group commit and the schema version.
//!
//! # Layout
//! - [`writer`]: the single writer thread and its group commit.
//! - [`keys`]: the key layout of the journal tree (sales, refunds, stock, movements,
//!   outbox, idempotency records, pending payments).
//! - [`catalog`]: products and their indexes, switched atomically by generation.
//!
//! - [`crypt`]: encryption at rest: per-tree ciphers from the data key, the cache of
//!   decrypted catalog blocks, lockdown (wipe) and unlock (install).
//! - [`migrate`]: in-place migration of a schema-1 (plaintext) data dir.
//! - [`outbox`]: what this unit owes HQ: entries in sequence, their blocks, the
//!   backlog, deleting what HQ acknowledged, and the capped event records.
//! - [`space`]: the data disk's reserve, and the failure of the storage engine when
//!   the disk fills anyway.
//!
//! Values are JSON, sealed with XChaCha20-Poly1305 (docs/storage.md, "Encryption at
//! rest"): the stored product is the API's product, so a lookup serves the decrypted
//! bytes without decoding them.

pub mod catalog;
pub(crate) mod crypt;
mod durable;
pub mod keys;
pub(crate) mod migrate;
pub mod outbox;
pub mod space;
pub mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use outpost_security::vault::KeyVault;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::domain::promotion::{Promotion, PromotionSet};
use crate::domain::sale::{Movement, Refund, Sale};
pub use catalog::{Catalog, CatalogImport, ImportMode, ImportSummary};
pub use writer::{Tx, WriterStats};
use writer::{Writer, WriterThread};

/// The schema this build reads and writes. Bump it with a migration when a stored
/// format changes. 1: plaintext; 2: every business value encrypted at rest; 3: new
/// catalog generations compress their blocks before sealing them (`meta/catalog_format`
/// says how each generation is laid out, so schema-2 generations stay readable and
/// 2 → 3 rewrites nothing; a schema-2 build refuses a schema-3 dir instead of
/// misreading compressed blocks); 4: the outbox is kept in blocks of entries with
/// their records' bytes (`ob/`), the per-entry `o/` keys of schema ≤ 3 are moved into
/// blocks at open ([`migrate::outbox_to_blocks`]; a schema-3 build refuses a schema-4
/// dir instead of finding its outbox empty).
pub const SCHEMA_VERSION: u64 = 4;
/// The `meta` key of the version of the live promotions (HQ's, big-endian u64).
pub const PROMOTIONS_VERSION: &str = "promotions_version";

/// Why storage failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// sled failed.
    #[error("storage engine error: {0}")]
    Sled(Arc<sled::Error>),
    /// The file system failed.
    #[error("I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// A stored value does not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The data dir was written by a newer Outpost.
    #[error(
        "the data dir has schema version {found}; this Outpost reads version {supported}: upgrade Outpost or restore a matching backup"
    )]
    SchemaTooNew {
        /// Version on disk.
        found: u64,
        /// Version this build supports.
        supported: u64,
    },
    /// Another process has the data dir open.
    #[error("the data dir {0} is in use by another Outpost process; stop it first")]
    Locked(String),
    /// The writer thread stopped.
    #[error("the storage writer has stopped")]
    WriterGone,
    /// Something that runs one at a time is already running.
    #[error("busy: {0}")]
    Busy(String),
    /// The device is locked: the data key is wiped from memory, so business data can
    /// be neither read nor written until a signed unlock.
    #[error("the device is locked: the data key is not in memory")]
    DeviceLocked,
    /// The data dir was encrypted under another data key.
    #[error(
        "the data dir was encrypted under another data key: the sealed key does not match it (restore the data dir's own sealed-key and sealer key, or start from an empty data dir); nothing was changed"
    )]
    WrongKey,
    /// Subkeys could not be derived from the data key.
    #[error("data key: {0}")]
    Key(String),
    /// The data disk is down to its reserve: nothing was written.
    #[error(
        "the data disk is nearly full ({free} bytes free, {reserve} kept in reserve): nothing was written; free space on the data disk and writes resume by themselves"
    )]
    DiskFull {
        /// Bytes free.
        free: u64,
        /// Bytes kept free.
        reserve: u64,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Sled(Arc::new(e))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(Arc::new(e))
    }
}

/// Options for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most jobs flushed together.
    pub max_group: usize,
    /// Jobs that may wait for the writer before callers wait to enqueue.
    pub queue: usize,
    /// sled page cache size.
    pub cache_bytes: u64,
    /// Bytes kept free on the data disk: below them, writes are refused
    /// ([`StoreError::DiskFull`]) before sled can meet a full disk ([`space`]).
    pub reserve_bytes: u64,
}

impl StoreOptions {
    /// The options `settings` ask for (`[storage]`).
    pub fn of(settings: &crate::config::Settings) -> StoreOptions {
        StoreOptions {
            max_group: settings.storage.max_group,
            cache_bytes: settings.storage.cache_mib.saturating_mul(1024 * 1024),
            reserve_bytes: settings.storage.reserve_mib.saturating_mul(1024 * 1024),
            ..StoreOptions::default()
        }
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_group: 512,
            queue: 4096,
            cache_bytes: 256 * 1024 * 1024,
            reserve_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Raise the process's id floor ([`crate::domain::ids`]) to the newest id under
/// `prefix` of `tree` (keys: `prefix`, then a UUIDv7), so ids made after a restart
/// with the clock set back still sort after the ones on disk.
fn raise_id_floor(tree: &sled::Tree, prefix: &[u8]) -> Result<(), StoreError> {
    if let Some((key, _)) = tree.scan_prefix(prefix).next_back().transpose()?
        && let Some(id) = key
            .get(prefix.len()..prefix.len() + 16)
            .and_then(|b| Uuid::from_slice(b).ok())
    {
        crate::domain::ids::at_least(id);
    }
    Ok(())
}

/// Encode a value as stored JSON.
pub fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing our own plain data types to a Vec cannot fail (no maps with
    // non-string keys, no I/O); an error here is a programming mistake.
    serde_json::to_vec(v).unwrap_or_else(|e| panic!("stored types always serialize: {e}"))
}

/// Decode stored JSON.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The open data dir.
pub struct Store {
    db: sled::Db,
    /// sled's files, fsync'd after each flush that acknowledges something ([`durable`]).
    files: Arc<durable::DurableDb>,
    /// The ciphers of the data key (shared with the writer thread and the catalog).
    at_rest: Arc<crypt::AtRest>,
    meta: sled::Tree,
    journal: sled::Tree,
    promotions_tree: sled::Tree,
    catalog: ArcSwap<Catalog>,
    promotions: ArcSwap<PromotionSet>,
    writer: Writer,
    writer_thread: WriterThread,
    /// The data disk's reserve and the engine's failure (shared with the writer).
    space: Arc<space::Space>,
    /// Catalog generations replaced but maybe still read by a request that loaded
    /// them before the switch; their trees are dropped once nobody holds them.
    retired: std::sync::Mutex<Vec<Arc<Catalog>>>,
    /// Held by the one catalog change (import or push) allowed at a time.
    catalog_change: Arc<tokio::sync::Mutex<()>>,
    /// Held while a promotions push checks the live version and replaces the set, so
    /// two pushes never interleave.
    promotions_change: std::sync::Mutex<()>,
}

impl Drop for Store {
    fn drop(&mut self) {
        self.writer_thread.close(&mut self.writer);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("catalog_generation", &self.catalog().generation)
            .finish()
    }
}

impl Store {
    /// Open (or create) the data dir with the data key in `vault` (unsealed by the
    /// caller before the store opens). A new data dir is stamped with a key check; a
    /// data dir written under another key is refused ([`StoreError::WrongKey`]) before
    /// anything is read or written; a schema-1 (plaintext) data dir is encrypted in
    /// place first ([`migrate`]).
    pub fn open(
        dir: &Path,
        opts: &StoreOptions,
        vault: &KeyVault,
    ) -> Result<Arc<Store>, StoreError> {
        std::fs::create_dir_all(dir)?;
        migrate::recover_swap(dir)?;
        let config = |path: &Path| {
            sled::Config::new()
                .path(path)
                .cache_capacity(opts.cache_bytes)
        };
        // Another process, or a store dropped just before, may be releasing the dir (a
        // restart): wait a moment for it.
        let mut db = outpost_security::sled_lock::open_released(
            &config(&dir.join("db")),
            std::time::Duration::from_secs(2),
        )
        .map_err(|e| {
            if outpost_security::sled_lock::is_lock_error(&e) {
                StoreError::Locked(dir.display().to_string())
            } else {
                StoreError::from(e)
            }
        })?;
        let at_rest = Arc::new(crypt::AtRest::new(vault)?);
        let mut meta = db.open_tree("meta")?;
        match meta.get(crypt::KEY_CHECK_KEY)? {
            Some(check) => {
                if !at_rest.key_matches(&check)? {
                    return Err(StoreError::WrongKey);
                }
            }
            None => {
                meta.insert(crypt::KEY_CHECK_KEY, at_rest.key_check_value()?)?;
            }
        }
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = keys::decode_u64(&v)?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < 2 {
                    migrate::to_encrypted(&db, &meta, &at_rest)?;
                }
                if found < 4 {
                    migrate::outbox_to_blocks(&db, &at_rest)?;
                }
                if found < SCHEMA_VERSION {
                    meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                    db.flush()?;
                    tracing::info!(
                        from = found,
                        to = SCHEMA_VERSION,
                        "Migrated the data dir to the current schema"
                    );
                }
            }
        }
        if meta.get(migrate::RESIDUE)?.is_some() {
            drop(meta);
            db = migrate::compact(dir, db, config)?;
            meta = db.open_tree("meta")?;
        }
        let journal = db.open_tree("journal")?;
        for prefix in [keys::SALE, keys::REFUND, keys::MOVEMENT] {
            raise_id_floor(&journal, prefix)?;
        }
        let promotions_tree = db.open_tree("promotions")?;
        let catalog = Catalog::open_current(&db, &meta, &at_rest)?;
        let promos = load_promotions(&promotions_tree, &at_rest)?;
        let space = Arc::new(space::Space::new(dir, opts.reserve_bytes));
        let files = Arc::new(durable::DurableDb::open(db.clone(), &dir.join("db"))?);
        let (writer, writer_thread) = Writer::start(
            files.clone(),
            journal.clone(),
            at_rest.clone(),
            space.clone(),
            opts.max_group,
            opts.queue,
        )?;
        files.flush()?;
        Ok(Arc::new(Store {
            db,
            files,
            at_rest,
            meta,
            journal,
            promotions_tree,
            catalog: ArcSwap::from_pointee(catalog),
            promotions: ArcSwap::from_pointee(PromotionSet::new(promos)),
            writer,
            writer_thread,
            space,
            retired: std::sync::Mutex::new(Vec::new()),
            catalog_change: Arc::new(tokio::sync::Mutex::new(())),
            promotions_change: std::sync::Mutex::new(()),
        }))
    }

    /// Lockdown: wipe the data key's ciphers and every decrypted catalog block,
    /// overlay and index from memory. Until [`Store::unlock`], every read or write of
    /// business data fails with [`StoreError::DeviceLocked`]; nothing on disk changes.
    pub fn lock(&self) {
        self.at_rest.wipe();
        let live = self.catalog();
        self.catalog.store(Arc::new(live.locked()));
        drop(live);
        self.promotions
            .store(Arc::new(PromotionSet::new(Vec::new())));
        if let Err(e) = self.sweep_retired_catalogs() {
            tracing::warn!(error = %e, "Failed to sweep retired catalogs while locking");
        }
    }

    /// Undo [`Store::lock`] with a freshly unsealed key: refused (and still locked)
    /// when it is not the data dir's key.
    pub fn unlock(&self, vault: &KeyVault) -> Result<(), StoreError> {
        let candidate = crypt::AtRest::new(vault)?;
        let check = self
            .meta
            .get(crypt::KEY_CHECK_KEY)?
            .ok_or_else(|| StoreError::Corrupt("meta key check is missing".into()))?;
        if !candidate.key_matches(&check)? {
            return Err(StoreError::WrongKey);
        }
        self.at_rest.install(vault)?;
        let reload = || -> Result<(Catalog, Vec<Promotion>), StoreError> {
            Ok((
                Catalog::open_current(&self.db, &self.meta, &self.at_rest)?,
                load_promotions(&self.promotions_tree, &self.at_rest)?,
            ))
        };
        match reload() {
            Ok((catalog, promos)) => {
                self.catalog.store(Arc::new(catalog));
                self.promotions.store(Arc::new(PromotionSet::new(promos)));
                Ok(())
            }
            Err(e) => {
                self.at_rest.wipe();
                Err(e)
            }
        }
    }

    /// Whether the data key is wiped (lockdown).
    pub fn is_locked(&self) -> bool {
        self.at_rest.is_locked()
    }

    /// The physical journal key of `key` (client-chosen strings become keyed hashes).
    fn journal_key(&self, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(keys::physical(&*self.at_rest.keys()?, key))
    }

    /// Decrypt a journal value stored at physical key `pkey`.
    fn open_journal(&self, pkey: &[u8], v: &[u8]) -> Result<Vec<u8>, StoreError> {
        let keys = self.at_rest.keys()?;
        Ok(crypt::open(&keys.journal, "journal", pkey, v)?.to_vec())
    }

    /// The catalog readers should use now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.load_full()
    }

    /// The promotions now loaded.
    pub fn promotions(&self) -> Arc<PromotionSet> {
        self.promotions.load_full()
    }

    /// Replace all promotions.
    pub fn replace_promotions(&self, promos: Vec<Promotion>) -> Result<(), StoreError> {
        let _one = self
            .promotions_change
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.write_promotions(promos, None)
    }

    /// Replace the live promotions with HQ's set `version`, and record the version,
    /// in one durable transaction: after a crash both are the old or both the new.
    /// Refused with `Ok(Err(live))` (nothing written) unless `version` is newer than
    /// the live version `live`. Pushes are serialised, so two running at once apply in
    /// version order or the older is refused.
    pub fn push_promotions(
        &self,
        promos: Vec<Promotion>,
        version: u64,
    ) -> Result<Result<(), u64>, StoreError> {
        let _one = self
            .promotions_change
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let live = match self.meta_get(PROMOTIONS_VERSION)? {
            Some(v) => keys::decode_u64(&v)?,
            None => 0,
        };
        if version <= live {
            return Ok(Err(live));
        }
        self.write_promotions(promos, Some(version))?;
        Ok(Ok(()))
    }

    /// The set and, when given, its version, in one transaction. The caller holds
    /// `promotions_change`.
    fn write_promotions(
        &self,
        promos: Vec<Promotion>,
        version: Option<u64>,
    ) -> Result<(), StoreError> {
        use sled::Transactional as _;
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let keys = self.at_rest.keys()?;
        let old: Vec<sled::IVec> = self
            .promotions_tree
            .iter()
            .keys()
            .collect::<Result<_, _>>()?;
        // Keyed by ordinal: promotion ids are HQ's words and stay out of the keys.
        let new: Vec<([u8; 8], Vec<u8>)> = promos
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let k = (i as u64).to_be_bytes();
                let v = keys.promotions.seal_record("promotions", &k, &to_json(p));
                (k, v)
            })
            .collect();
        let version = version
            .map(|v| meta_seal(&self.at_rest, PROMOTIONS_VERSION, &v.to_be_bytes()))
            .transpose()?;
        (&self.promotions_tree, &self.meta)
            .transaction(|(pt, mt)| {
                for k in &old {
                    pt.remove(k)?;
                }
                for (k, v) in &new {
                    pt.insert(k.as_slice(), v.as_slice())?;
                }
                if let Some(v) = &version {
                    mt.insert(PROMOTIONS_VERSION, v.as_slice())?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| match e {
                TransactionError::Storage(e) => StoreError::from(e),
                TransactionError::Abort(()) => {
                    StoreError::Corrupt("promotions write aborted".into())
                }
            })?;
        self.flush_durably()?;
        self.promotions.store(Arc::new(PromotionSet::new(promos)));
        Ok(())
    }

    /// Start importing a catalog. Nothing is visible until [`CatalogImport::finish`].
    /// One catalog change runs at a time: a second is refused with
    /// [`StoreError::Busy`] until the first finishes or is dropped.
    pub fn begin_catalog_import(
        self: &Arc<Self>,
        mode: ImportMode,
    ) -> Result<CatalogImport, StoreError> {
        let guard =
            self.catalog_change.clone().try_lock_owned().map_err(|_| {
                StoreError::Busy("another catalog import or push is running".into())
            })?;
        CatalogImport::begin(self.clone(), mode, guard, catalog::NEW_FORMAT)
    }

    pub(crate) fn switch_catalog(&self, next: Catalog) -> Result<(), StoreError> {
        catalog::commit_generation(&self.db, &self.meta, &self.at_rest, &next)?;
        // Its flushes are sled's alone (it also runs in migrations, before the store
        // has its files): make the switch durable before anyone is told.
        self.flush_durably()?;
        let old = self.catalog.swap(Arc::new(next));
        // A request that loaded the old generation just before the swap may still be
        // reading it: drop its trees only once nobody holds it.
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(old);
        self.sweep_retired_catalogs()
    }

    /// Serve `next`, a new handle on the live generation with a grown overlay. The
    /// generation's trees stay: only a later switch to another generation drops them.
    pub(crate) fn switch_overlay(&self, next: Catalog) {
        let old = self.catalog.swap(Arc::new(next));
        // Kept with the retired so a later switch does not drop the generation's trees
        // while a request still reads them through this handle.
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(old);
    }

    /// Drop the trees of replaced catalog generations nobody reads any more. Called
    /// at every switch and periodically by the server.
    pub fn sweep_retired_catalogs(&self) -> Result<(), StoreError> {
        let done: Vec<Arc<Catalog>> = {
            // Held only to split the list; no I/O under the lock.
            let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
            let (done, keep) = retired.drain(..).partition(|c| Arc::strong_count(c) == 1);
            *retired = keep;
            done
        };
        let live = self.catalog().generation;
        let mut dropped = std::collections::HashSet::new();
        for old in done {
            let g = old.generation;
            let still_read = self
                .retired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|c| c.generation == g);
            if g != live && !still_read && dropped.insert(g) {
                catalog::drop_generation(&self.db, g)?;
            }
        }
        Ok(())
    }

    /// A small value of the `meta` tree (versions of what HQ pushed).
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        meta_read(&self.meta, &self.at_rest, key)
    }

    /// Set a small value of the `meta` tree, durably.
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta
            .insert(key, meta_seal(&self.at_rest, key, value)?)?;
        self.flush_durably()?;
        Ok(())
    }

    /// Copies the database, tree by tree, into a new sled database at `path` (which
    /// must not exist), while writes go on: each tree is copied as its iterator reads
    /// it. For a self-test of a new release, not a backup.
    pub fn copy_database(&self, path: &Path) -> Result<(), StoreError> {
        self.db.flush()?;
        let copy = sled::Config::new().path(path).open()?;
        for name in self.db.tree_names() {
            let from = self.db.open_tree(&name)?;
            let to = copy.open_tree(&name)?;
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for kv in from.iter() {
                let (k, v) = kv?;
                batch.insert(k, v);
                n += 1;
                if n.is_multiple_of(10_000) {
                    to.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            to.apply_batch(batch)?;
        }
        copy.flush()?;
        Ok(())
    }

    /// Flush sled and make what it wrote durable ([`durable`]).
    pub(crate) fn flush_durably(&self) -> Result<(), StoreError> {
        self.files.flush()
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    pub(crate) fn at_rest(&self) -> &Arc<crypt::AtRest> {
        &self.at_rest
    }

    /// Run `f` in the writer and return once its writes are on disk. See
    /// [`Tx`] for what `f` sees; `Err` from `f` discards its writes.
    pub async fn write<R, E, F>(&self, f: F) -> Result<Result<R, E>, StoreError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Raise the process's id floor to the newest id under `prefix` of the journal
    /// (keys: `prefix`, then a UUIDv7): for the layers above that key records by id.
    pub fn raise_id_floor(&self, prefix: &[u8]) -> Result<(), StoreError> {
        raise_id_floor(&self.journal, prefix)
    }

    /// The data disk's reserve and the storage engine's failure, if any.
    pub fn space(&self) -> &space::Space {
        &self.space
    }

    /// Group commit counters.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.writer.stats
    }

    /// A sale by id.
    pub fn sale(&self, id: Uuid) -> Result<Option<Sale>, StoreError> {
        self.journal_get(&keys::sale(id))?
            .map(|v| from_json(&v, "sale"))
            .transpose()
    }

    /// Sales with ids after `after` (or from the first), oldest first.
    pub fn sales_after(&self, after: Option<Uuid>, limit: usize) -> Result<Vec<Sale>, StoreError> {
        self.at_rest.keys()?;
        let start = match after {
            Some(id) => {
                let mut k = keys::sale(id);
                k.push(0);
                k
            }
            None => keys::SALE.to_vec(),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for kv in self.journal.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(keys::SALE) || out.len() >= limit {
                break;
            }
            out.push(from_json(&self.open_journal(&k, &v)?, "sale")?);
        }
        Ok(out)
    }

    /// Refunds of a sale, oldest first.
    pub fn refunds_of(&self, sale: Uuid) -> Result<Vec<Refund>, StoreError> {
        self.at_rest.keys()?;
        let mut out = Vec::new();
        for kv in self.journal.scan_prefix(keys::sale_refunds(sale)) {
            let (k, _) = kv?;
            let id = keys::uuid_suffix(&k)?;
            if let Some(v) = self.journal_get(&keys::refund(id))? {
                out.push(from_json(&v, "refund")?);
            }
        }
        Ok(out)
    }

    /// A refund by id.
    pub fn refund(&self, id: Uuid) -> Result<Option<Refund>, StoreError> {
        self.journal_get(&keys::refund(id))?
            .map(|v| from_json(&v, "refund"))
            .transpose()
    }

    /// Stock of a SKU (0 when never counted).
    pub fn stock(&self, sku: &str) -> Result<i64, StoreError> {
        Ok(match self.journal_get(&keys::stock(sku))? {
            Some(v) => keys::decode_i64(&v)?,
            None => 0,
        })
    }

    /// The latest inventory movements (of one SKU, or of all), oldest first, at most
    /// `limit`.
    pub fn movements(&self, sku: Option<&str>, limit: usize) -> Result<Vec<Movement>, StoreError> {
        self.at_rest.keys()?;
        let mut out = Vec::new();
        match sku {
            Some(sku) => {
                for kv in self
                    .journal
                    .scan_prefix(keys::sku_movements(sku))
                    .rev()
                    .take(limit)
                {
                    let (k, _) = kv?;
                    if let Some(v) = self.journal_get(&keys::movement(keys::uuid_suffix(&k)?))? {
                        out.push(from_json(&v, "movement")?);
                    }
                }
            }
            None => {
                for kv in self.journal.scan_prefix(keys::MOVEMENT).rev().take(limit) {
                    let (k, v) = kv?;
                    out.push(from_json(&self.open_journal(&k, &v)?, "movement")?);
                }
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Number of outbox entries waiting for HQ, without reading them: sequences are
    /// contiguous, so it is the next sequence minus the oldest waiting one. Needs no
    /// key (block keys are clear; the next sequence and the acknowledged watermark are
    /// kept in memory), so status and metrics still count the backlog while locked
    /// down.
    pub fn outbox_pending(&self) -> Result<u64, StoreError> {
        let next = self
            .writer
            .stats
            .outbox_next
            .load(std::sync::atomic::Ordering::Relaxed);
        Ok(next.saturating_sub(self.outbox_first_seq()?))
    }

    /// The sequence of the oldest outbox entry waiting, or the next one to be written
    /// when none waits. Needs no key.
    pub fn outbox_first_seq(&self) -> Result<u64, StoreError> {
        let stats = &self.writer.stats;
        let next = stats.outbox_next.load(std::sync::atomic::Ordering::Relaxed);
        Ok(
            match self.journal.scan_prefix(keys::OUTBOX_BLOCKS).keys().next() {
                // The first block may be partly acknowledged.
                Some(k) => {
                    let acked = stats
                        .outbox_acked
                        .load(std::sync::atomic::Ordering::Relaxed);
                    keys::outbox_block_first(&k?)?.max(acked + 1).min(next)
                }
                None => next,
            },
        )
    }

    /// The first sequence of the outbox block holding `seq` (the last block starting
    /// at or before it), if any. Needs no key.
    pub fn outbox_block_holding(&self, seq: u64) -> Result<Option<u64>, StoreError> {
        match self
            .journal
            .range(keys::OUTBOX_BLOCKS.to_vec()..=keys::outbox_block(seq))
            .keys()
            .next_back()
        {
            Some(k) => Ok(Some(keys::outbox_block_first(&k?)?)),
            None => Ok(None),
        }
    }

    /// Every pending payment record (checkouts and refunds waiting on the terminal).
    /// Ids are clear keys: works while locked down (the metrics count them).
    pub fn pending_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        self.journal
            .scan_prefix(keys::PENDING)
            .map(|kv| {
                kv.map_err(StoreError::from)
                    .and_then(|(k, _)| keys::uuid_suffix(&k))
            })
            .collect()
    }

    /// Raw scan of journal keys under `prefix`, starting at `from` (inclusive), in key
    /// order (for records the service layer owns).
    pub fn journal_scan_from(
        &self,
        prefix: &[u8],
        from: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        // Keys under a client-chosen prefix are hashed: they cannot be scanned in
        // order, and no caller does.
        let prefix = prefix.to_vec();
        self.journal
            .range(from.to_vec()..)
            .take_while(move |kv| kv.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix)))
            .map(|kv| {
                let (k, v) = kv.map_err(StoreError::from)?;
                let v = self.open_journal(&k, &v)?;
                Ok((k.to_vec(), v))
            })
    }

    /// Read of a journal key (for records the service layer owns), decrypted.
    pub fn journal_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let pkey = self.journal_key(key)?;
        match self.journal.get(&pkey)? {
            Some(v) => Ok(Some(self.open_journal(&pkey, &v)?)),
            None => Ok(None),
        }
    }
}

/// Read and decrypt a value of `meta`.
pub(crate) fn meta_read(
    meta: &sled::Tree,
    at_rest: &crypt::AtRest,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let keys = at_rest.keys()?;
    match meta.get(key)? {
        Some(v) => Ok(Some(
            crypt::open(&keys.meta, "meta", key.as_bytes(), &v)?.to_vec(),
        )),
        None => Ok(None),
    }
}

/// Seal a value for `meta` at `key`.
pub(crate) fn meta_seal(
    at_rest: &crypt::AtRest,
    key: &str,
    value: &[u8],
) -> Result<Vec<u8>, StoreError> {
    Ok(at_rest
        .keys()?
        .meta
        .seal_record("meta", key.as_bytes(), value))
}

fn load_promotions(
    tree: &sled::Tree,
    at_rest: &crypt::AtRest,
) -> Result<Vec<Promotion>, StoreError> {
    let keys = at_rest.keys()?;
    let mut promos = Vec::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        let json = crypt::open(&keys.promotions, "promotions", &k, &v)?;
        promos.push(from_json::<Promotion>(&json, "promotion")?);
    }
    Ok(promos)
}
