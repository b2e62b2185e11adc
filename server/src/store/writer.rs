//! The single writer: group commit for everything a sale writes.
//!
//! All writes to the journal tree go through one thread. It takes every job that is
//! waiting (up to a bound), runs each against the tree plus the writes of the jobs
//! before it in the same group, applies the whole group as one atomic sled `Batch`,
//! calls `fsync` once ([`DurableDb::flush`]), and only then answers each job. So a 2xx is sent only after
//! its sale is on disk, many concurrent checkouts share one flush, and a crash leaves
//! either all of a sale's records or none of them.
//!
//! Being the only writer also makes read-modify-write safe without locks (stock
//! levels, outbox sequence numbers), and it keeps outbox sequences contiguous.
//!
//! Outbox entries are not written as keys by the jobs: a job appends each entry (an
//! opaque item from `store::outbox`, holding the record's bytes) with
//! [`Tx::append_outbox`], and the writer packs the items of the whole group, in
//! sequence order, into blocks under `ob/<first sequence>` ([`keys::outbox_block`];
//! at most [`BLOCK_ENTRIES`] entries or about [`BLOCK_BYTES`] each) in the same batch.
//! One seal and one key per block instead of per entry: the uplink reads, decrypts and
//! deletes a block at a time (docs/storage.md, "The outbox").
//!
//! Jobs see plaintext: `Tx` decrypts what it reads from the tree, and the group is
//! sealed value by value (`super::crypt`) just before it is applied. A group that
//! meets a wiped key (lockdown) writes nothing and answers every job
//! [`StoreError::DeviceLocked`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::crypt::{self, AtRest, Keys};
use super::durable::DurableDb;
use super::keys;
use super::space::{self, Space};

/// What a job hands back to the writer: whether to keep its writes, and how to answer
/// its caller once the group's flush is done.
pub(crate) type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
pub(crate) type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Reply) + Send>;

/// A group stops taking jobs once its writes reach this size.
const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// Most outbox entries in one block.
pub const BLOCK_ENTRIES: usize = 256;
/// A block is closed once its items reach this size.
pub const BLOCK_BYTES: usize = 256 * 1024;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Counters the metrics endpoint and the benchmarks read.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Groups flushed to disk (one fsync each).
    pub flushes: AtomicU64,
    /// Jobs that kept their writes.
    pub committed_jobs: AtomicU64,
    /// Jobs run (committed or not).
    pub jobs: AtomicU64,
    /// Bytes of the records the outbox names, not yet acknowledged by HQ (kept in
    /// `meta/outbox_bytes` beside the sequence, so it survives restarts).
    pub outbox_bytes: AtomicU64,
    /// The next outbox sequence as of the last durable group (also in the journal):
    /// in memory so the backlog can be counted while locked down.
    pub outbox_next: AtomicU64,
    /// The highest sequence HQ acknowledged and the store deleted, as of the last
    /// durable group (also in the journal, `meta/outbox_acked`): a block stays until
    /// all its entries are acknowledged, so the entries of a partly acknowledged block
    /// up to this one count as gone.
    pub outbox_acked: AtomicU64,
}

/// A job's view of the journal: the tree as of the last group, plus the writes of
/// earlier jobs in this group, plus its own writes.
pub struct Tx<'a> {
    tree: &'a sled::Tree,
    /// The ciphers as of the start of the group; `None` when locked.
    keys: Option<&'a Keys>,
    group: &'a mut HashMap<Vec<u8>, Option<Vec<u8>>>,
    op: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    next_seq: &'a mut u64,
    op_next_seq: u64,
    op_outbox_bytes: i64,
    /// Outbox items this job appended, in sequence order.
    op_outbox: Vec<Vec<u8>>,
    /// The acknowledged watermark this job set, if any.
    op_outbox_acked: Option<u64>,
    /// The acknowledged watermark as of the earlier jobs of the group.
    group_outbox_acked: &'a mut u64,
}

impl Tx<'_> {
    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let keys = self.keys.ok_or(StoreError::DeviceLocked)?;
        let key = keys::physical(keys, key);
        if let Some(v) = self.op.get(&key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.group.get(&key) {
            return Ok(v.clone());
        }
        match self.tree.get(&key)? {
            Some(v) => Ok(Some(
                crypt::open(&keys.journal, "journal", &key, &v)?.to_vec(),
            )),
            None => Ok(None),
        }
    }

    fn physical(&self, key: Vec<u8>) -> Vec<u8> {
        match self.keys {
            Some(keys) => keys::physical(keys, &key),
            // Locked: the group is refused before anything is applied.
            None => key,
        }
    }

    /// Set `key` to `value` when the job commits.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let key = self.physical(key);
        self.op.insert(key, Some(value));
    }

    /// Remove `key` when the job commits.
    pub fn remove(&mut self, key: Vec<u8>) {
        let key = self.physical(key);
        self.op.insert(key, None);
    }

    /// Every key and value under `prefix`, in key order, as this job sees them.
    /// Keys under `i/` are hashed, so scanning them yields hashes.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let keys = self.keys.ok_or(StoreError::DeviceLocked)?;
        let mut out: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            let v = crypt::open(&keys.journal, "journal", &k, &v)?.to_vec();
            out.insert(k.to_vec(), Some(v));
        }
        for (k, v) in self.group.iter().filter(|(k, _)| k.starts_with(prefix)) {
            out.insert(k.clone(), v.clone());
        }
        for (k, v) in self
            .op
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            out.insert(k.clone(), v.clone());
        }
        Ok(out
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// Append `item` to the outbox under the next sequence number, which it returns.
    /// Sequences of committed jobs are contiguous: a job that does not commit gives its
    /// numbers back. The writer packs the group's items into blocks when it commits.
    pub fn append_outbox(&mut self, item: Vec<u8>) -> u64 {
        let s = self.op_next_seq;
        self.op_next_seq += 1;
        self.op_outbox.push(item);
        s
    }

    /// The acknowledged watermark: every entry up to it was acknowledged by HQ and
    /// deleted (as this job sees it; 0 when none ever was).
    pub fn outbox_acked(&self) -> u64 {
        self.op_outbox_acked.unwrap_or(*self.group_outbox_acked)
    }

    /// Raise the acknowledged watermark to `upto` when the job commits (never lowers
    /// it).
    pub fn set_outbox_acked(&mut self, upto: u64) {
        if upto > self.outbox_acked() {
            self.op_outbox_acked = Some(upto);
        }
    }

    /// Count bytes added to (positive) or acknowledged out of (negative) the outbox.
    pub fn add_outbox_bytes(&mut self, delta: i64) {
        self.op_outbox_bytes += delta;
    }
}

/// Handle to the writer thread.
pub(crate) struct Writer {
    /// `None` once the store is closing.
    jobs: Option<mpsc::Sender<Job>>,
    pub(crate) stats: Arc<WriterStats>,
}

/// Closes the writer: ends the job channel and waits for the thread, so the data dir
/// is released when the store is dropped.
pub(crate) struct WriterThread(Option<std::thread::JoinHandle<()>>);

impl WriterThread {
    pub(crate) fn close(&mut self, writer: &mut Writer) {
        writer.jobs = None;
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Start the writer thread. It stops when every `Writer` clone is dropped.
    pub(crate) fn start(
        db: Arc<DurableDb>,
        tree: sled::Tree,
        at_rest: Arc<AtRest>,
        space: Arc<Space>,
        max_group: usize,
        queue: usize,
    ) -> Result<(Writer, WriterThread), StoreError> {
        let counter = |key: &[u8]| -> Result<Option<u64>, StoreError> {
            let keys = at_rest.keys()?;
            match tree.get(key)? {
                Some(v) => Ok(Some(keys::decode_u64(&crypt::open(
                    &keys.journal,
                    "journal",
                    key,
                    &v,
                )?)?)),
                None => Ok(None),
            }
        };
        let next_seq = counter(keys::OUTBOX_NEXT)?.unwrap_or(1);
        let acked = counter(keys::OUTBOX_ACKED)?.unwrap_or(0);
        let (tx, rx) = mpsc::channel::<Job>(queue);
        let stats = Arc::new(WriterStats::default());
        stats.outbox_next.store(next_seq, Ordering::Relaxed);
        stats.outbox_acked.store(acked, Ordering::Relaxed);
        if let Some(v) = counter(keys::OUTBOX_BYTES)? {
            stats.outbox_bytes.store(v, Ordering::Relaxed);
        }
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("outpost-writer".into())
            .spawn(move || {
                run(
                    Journal { db, tree, space },
                    at_rest,
                    rx,
                    max_group.max(1),
                    next_seq,
                    thread_stats,
                )
            })?;
        Ok((
            Writer {
                jobs: Some(tx),
                stats,
            },
            WriterThread(Some(thread)),
        ))
    }

    /// Run `f` in the writer, durably. `Ok(Ok(r))` means its writes are on disk;
    /// `Ok(Err(e))` means `f` refused and nothing it wrote was kept.
    ///
    /// Cancel safety: if the caller is dropped, the job still runs and its writes are
    /// kept; only the answer is lost. Callers that must know the outcome look it up by
    /// their idempotency key.
    pub(crate) async fn write<R, E, F>(&self, f: F) -> Result<Result<R, E>, StoreError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |t: &mut Tx<'_>| {
            let r = f(t);
            let keep = r.is_ok();
            let reply: Reply = Box::new(move |flushed| {
                let _ = tx.send(flushed.map(|()| r));
            });
            (keep, reply)
        });
        let jobs = self.jobs.as_ref().ok_or(StoreError::WriterGone)?;
        jobs.send(job).await.map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Where the writer writes: the data dir's database (flushed durably), its journal
/// tree, and the disk's reserve.
struct Journal {
    db: Arc<DurableDb>,
    tree: sled::Tree,
    space: Arc<Space>,
}

fn run(
    journal: Journal,
    at_rest: Arc<AtRest>,
    mut rx: mpsc::Receiver<Job>,
    max_group: usize,
    mut next_seq: u64,
    stats: Arc<WriterStats>,
) {
    let Journal { db, tree, space } = journal;
    let mut jobs = Vec::with_capacity(max_group);
    loop {
        if jobs.is_empty() {
            match rx.blocking_recv() {
                Some(first) => jobs.push(first),
                None => break,
            }
        }
        while jobs.len() < max_group {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut group: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut group_bytes = 0usize;
        let mut replies = Vec::with_capacity(jobs.len());
        let seq_before = next_seq;
        let bytes_before = stats.outbox_bytes.load(Ordering::Relaxed);
        let mut outbox_bytes = bytes_before;
        let acked_before = stats.outbox_acked.load(Ordering::Relaxed);
        let mut outbox_acked = acked_before;
        let mut outbox_items: Vec<Vec<u8>> = Vec::new();
        let group_keys = at_rest.keys().ok();
        let mut jobs_iter = jobs.drain(..);
        for job in jobs_iter.by_ref() {
            let mut t = Tx {
                tree: &tree,
                keys: group_keys.as_deref(),
                group: &mut group,
                op: BTreeMap::new(),
                next_seq: &mut next_seq,
                op_next_seq: 0,
                op_outbox_bytes: 0,
                op_outbox: Vec::new(),
                op_outbox_acked: None,
                group_outbox_acked: &mut outbox_acked,
            };
            t.op_next_seq = *t.next_seq;
            // A panicking job is a bug; it must not take the writer (and every later
            // sale) down with it. Its caller sees the writer as gone for that job.
            let Ok((keep, reply)) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut t)))
            else {
                tracing::error!("A storage job panicked; its writes are discarded");
                continue;
            };
            stats.jobs.fetch_add(1, Ordering::Relaxed);
            if keep {
                stats.committed_jobs.fetch_add(1, Ordering::Relaxed);
                let Tx {
                    op,
                    op_next_seq,
                    next_seq,
                    group,
                    op_outbox_bytes,
                    op_outbox,
                    op_outbox_acked,
                    group_outbox_acked,
                    ..
                } = t;
                *next_seq = op_next_seq;
                if let Some(a) = op_outbox_acked {
                    *group_outbox_acked = a;
                }
                outbox_bytes = outbox_bytes.saturating_add_signed(op_outbox_bytes);
                group_bytes += op
                    .iter()
                    .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
                    + op_outbox.iter().map(Vec::len).sum::<usize>();
                outbox_items.extend(op_outbox);
                group.extend(op);
            }
            replies.push(reply);
            if group_bytes >= MAX_GROUP_BYTES {
                // Bounded memory: the jobs left wait for the next group.
                break;
            }
        }
        let rest: Vec<Job> = jobs_iter.collect();
        let flushed = !group.is_empty() || !outbox_items.is_empty() || outbox_acked != acked_before;
        let result = if !flushed {
            Ok(())
        } else if let Err(full) = space.check() {
            // Down to the reserve: nothing is applied, so sled never meets a full disk.
            Err(full)
        } else if let (Some(keys), false) = (group_keys.as_deref(), at_rest.is_locked()) {
            if next_seq != seq_before {
                group.insert(
                    keys::OUTBOX_NEXT.to_vec(),
                    Some(next_seq.to_be_bytes().to_vec()),
                );
            }
            if outbox_bytes != bytes_before {
                group.insert(
                    keys::OUTBOX_BYTES.to_vec(),
                    Some(outbox_bytes.to_be_bytes().to_vec()),
                );
            }
            if outbox_acked != acked_before {
                group.insert(
                    keys::OUTBOX_ACKED.to_vec(),
                    Some(outbox_acked.to_be_bytes().to_vec()),
                );
            }
            debug_assert_eq!(outbox_items.len() as u64, next_seq - seq_before);
            for (first, block) in pack_blocks(seq_before, std::mem::take(&mut outbox_items)) {
                group.insert(keys::outbox_block(first), Some(block));
            }
            let mut batch = sled::Batch::default();
            for (k, v) in group {
                match v {
                    Some(v) => {
                        let sealed = keys.journal.seal_record("journal", &k, &v);
                        batch.insert(k, sealed)
                    }
                    None => batch.remove(k),
                }
            }
            // sled's own flush is not durable by itself (`durable`).
            tree.apply_batch(batch)
                .map_err(StoreError::from)
                .and_then(|()| db.flush())
        } else {
            Err(StoreError::DeviceLocked)
        };
        drop(group_keys);
        if result.is_ok() {
            if flushed {
                stats.flushes.fetch_add(1, Ordering::Relaxed);
            }
            stats.outbox_bytes.store(outbox_bytes, Ordering::Relaxed);
            stats.outbox_next.store(next_seq, Ordering::Relaxed);
            stats.outbox_acked.store(outbox_acked, Ordering::Relaxed);
        } else {
            if let Err(e) = &result
                && space::is_engine_failure(e)
            {
                space.fail(e);
            }
            if !matches!(result, Err(StoreError::DiskFull { .. })) {
                tracing::error!(error = ?result, "Failed to commit a group of writes; answering every job with an error");
            }
            // The batch may be in memory but not on disk: take the sequence numbers
            // from what the tree says, so they stay contiguous with what is durable.
            if matches!(
                result,
                Err(StoreError::DeviceLocked | StoreError::DiskFull { .. })
            ) {
                // Nothing was applied.
                next_seq = seq_before;
            } else if let Ok(keys) = at_rest.keys()
                && let Ok(Some(v)) = tree.get(keys::OUTBOX_NEXT)
                && let Ok(v) = crypt::open(&keys.journal, "journal", keys::OUTBOX_NEXT, &v)
                && let Ok(n) = keys::decode_u64(&v)
            {
                next_seq = n;
            }
        }
        for reply in replies {
            reply(result.clone());
        }
        jobs.extend(rest);
    }
}

/// Pack `items` (outbox entries from sequence `first` on) into blocks: each block is
/// its first sequence and its value (see [`unpack_block`]).
pub(crate) fn pack_blocks(first: u64, items: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut seq = first;
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let start = seq;
        let mut value = Vec::new();
        let mut n = 0usize;
        while let Some(item) = items.next_if(|_| n < BLOCK_ENTRIES && value.len() < BLOCK_BYTES) {
            value.extend_from_slice(&(item.len() as u32).to_be_bytes());
            value.extend_from_slice(&item);
            n += 1;
            seq += 1;
        }
        blocks.push((start, value));
    }
    blocks
}

/// The items of a block value, in sequence order.
pub fn unpack_block(mut v: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let bad = || StoreError::Corrupt("outbox block".into());
    let mut items = Vec::new();
    while !v.is_empty() {
        let (len, rest) = v.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad());
        }
        let (item, rest) = rest.split_at(len);
        items.push(item);
        v = rest;
    }
    Ok(items)
}
