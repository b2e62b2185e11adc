//! The durable receipt queue and the spooler that prints it.
//!
//! Every recorded sale puts its receipt in the queue *in the same atomic write* as the
//! sale (`q/<enqueue id>` in the journal tree), so no crash can lose a receipt. The
//! spooler, one task and the only one that prints receipts, takes the oldest entry,
//! prints it through the [`ReceiptPrinter`] trait, and only then removes it and writes
//! `t/<sale id>` (printed, with a copy count). A printer that refuses (out of paper,
//! cover open, offline, absent) stops the spooler until the supervisor reports the
//! printer healthy again or the retry timer fires; then the queue prints in order,
//! once each. A crash between a print and its removal prints that one receipt again
//! after the restart: the only way a receipt is printed twice.
//!
//! A checkout waits (bounded) for its own receipt: `printed` when the spooler got it
//! out in time, `queued` otherwise. While the printer is failing the checkout does not
//! wait at all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use outpost_peripherals::printer::{Align, PrintJob, PrintOp, ReceiptPrinter, TextStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use uuid::Uuid;

use crate::domain::receipt::Receipt;
use crate::store::writer::Tx;
use crate::store::{Store, StoreError, from_json, to_json};

/// Queue entries: `q/` + enqueue id (UUIDv7: time order) -> [`QueuedReceipt`].
pub const QUEUE: &[u8] = b"q/";
/// Printed receipts: `t/` + sale id -> [`PrintedReceipt`].
pub const PRINTED: &[u8] = b"t/";
/// Bound on one print call, whatever the driver's own timeouts.
const PRINT_BOUND: Duration = Duration::from_secs(60);

fn key(prefix: &[u8], id: Uuid) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A receipt waiting for the printer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueuedReceipt {
    /// The sale whose receipt it is.
    pub sale_id: Uuid,
    /// When it was queued, ms since the Unix epoch.
    pub queued_at_ms: u64,
    /// `sale` (queued with the sale) or `reprint` (asked for).
    pub reason: String,
}

/// A receipt that was printed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PrintedReceipt {
    /// Copies printed so far.
    pub copies: u32,
    /// When the last copy printed, ms since the Unix epoch.
    pub last_printed_at_ms: u64,
}

/// Where a sale's receipt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Printed.
    Printed,
    /// Waiting in the reprint queue.
    Queued,
    /// Neither: the queue was full when the sale was recorded. Reprint it by hand.
    NotQueued,
}

/// The queue's in-memory index. A std mutex: held for a map lookup or update, never
/// across an await.
#[derive(Debug, Default)]
struct Index {
    /// Sale id -> its queue key, for every queued receipt (a sale is queued at most once).
    by_sale: HashMap<Uuid, Vec<u8>>,
}

/// The durable reprint queue.
#[derive(Debug)]
pub struct ReceiptQueue {
    store: Arc<Store>,
    max: usize,
    index: Mutex<Index>,
    /// Set while full, so a store selling on with a dead printer logs "full" once,
    /// not once per sale.
    full: AtomicBool,
}

/// A place in the queue taken before the write that fills it; given back if the
/// write does not happen ([`ReceiptQueue::release`]).
#[derive(Debug, Clone)]
pub struct Reservation {
    sale_id: Uuid,
    key: Vec<u8>,
}

impl ReceiptQueue {
    /// Load the index of what is queued.
    pub fn open(store: Arc<Store>, max: usize) -> Result<Self, StoreError> {
        // Receipts print in the order of their ids, after a restart with the clock
        // set back too.
        store.raise_id_floor(QUEUE)?;
        let mut by_sale = HashMap::new();
        for kv in store.journal_scan_from(QUEUE, QUEUE) {
            let (k, v) = kv?;
            let e: QueuedReceipt = from_json(&v, "queued receipt")?;
            by_sale.insert(e.sale_id, k);
        }
        Ok(ReceiptQueue {
            store,
            max,
            index: Mutex::new(Index { by_sale }),
            full: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // Every critical section leaves the map consistent.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receipts waiting.
    pub fn len(&self) -> usize {
        self.lock().by_sale.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take a place for `sale_id` unless the queue is full or already holds it.
    pub fn reserve(&self, sale_id: Uuid) -> Option<Reservation> {
        let mut ix = self.lock();
        if ix.by_sale.len() >= self.max {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    queued = ix.by_sale.len(),
                    "The receipt queue is full; new receipts are not queued until the printer catches up."
                );
            }
            return None;
        }
        self.full.store(false, Ordering::Relaxed);
        if ix.by_sale.contains_key(&sale_id) {
            return None;
        }
        let key = key(QUEUE, crate::domain::ids::next());
        ix.by_sale.insert(sale_id, key.clone());
        Some(Reservation { sale_id, key })
    }

    /// Give back a place whose write did not happen.
    pub fn release(&self, r: &Reservation) {
        let mut ix = self.lock();
        if ix.by_sale.get(&r.sale_id) == Some(&r.key) {
            ix.by_sale.remove(&r.sale_id);
        }
    }

    /// Write the reserved entry as part of a writer job.
    pub fn put(tx: &mut Tx<'_>, r: &Reservation, reason: &str) {
        tx.put(
            r.key.clone(),
            to_json(&QueuedReceipt {
                sale_id: r.sale_id,
                queued_at_ms: now_ms(),
                reason: reason.into(),
            }),
        );
    }

    /// Queue a reprint of a recorded sale. `Ok(false)` when it is queued already.
    pub async fn enqueue_reprint(&self, sale_id: Uuid) -> Result<bool, QueueError> {
        if self.lock().by_sale.contains_key(&sale_id) {
            return Ok(false);
        }
        let r = self.reserve(sale_id).ok_or(QueueError::Full(self.max))?;
        let r2 = r.clone();
        let written = self
            .store
            .write(move |tx| {
                ReceiptQueue::put(tx, &r2, "reprint");
                Ok::<(), StoreError>(())
            })
            .await;
        match written {
            Ok(Ok(())) => Ok(true),
            Ok(Err(e)) | Err(e) => {
                self.release(&r);
                Err(QueueError::Store(e))
            }
        }
    }

    /// The oldest entry.
    pub fn first(&self) -> Result<Option<(Vec<u8>, QueuedReceipt)>, StoreError> {
        match self.store.journal_scan_from(QUEUE, QUEUE).next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k, from_json(&v, "queued receipt")?)))
            }
        }
    }

    /// Up to `limit` entries, oldest first.
    pub fn list(&self, limit: usize) -> Result<Vec<QueuedReceipt>, StoreError> {
        self.store
            .journal_scan_from(QUEUE, QUEUE)
            .take(limit)
            .map(|kv| kv.and_then(|(_, v)| from_json(&v, "queued receipt")))
            .collect()
    }

    /// Where `sale_id`'s receipt is.
    pub fn status(&self, sale_id: Uuid) -> Result<ReceiptStatus, StoreError> {
        if self.lock().by_sale.contains_key(&sale_id) {
            return Ok(ReceiptStatus::Queued);
        }
        Ok(match self.printed(sale_id)? {
            Some(_) => ReceiptStatus::Printed,
            None => ReceiptStatus::NotQueued,
        })
    }

    /// Whether `sale_id` waits in the queue.
    pub fn contains(&self, sale_id: Uuid) -> bool {
        self.lock().by_sale.contains_key(&sale_id)
    }

    /// The printed record of a sale's receipt.
    pub fn printed(&self, sale_id: Uuid) -> Result<Option<PrintedReceipt>, StoreError> {
        self.store
            .journal_get(&key(PRINTED, sale_id))?
            .map(|v| from_json(&v, "printed receipt"))
            .transpose()
    }

    /// Remove a printed entry and count the copy, durably, then drop it from the index.
    async fn mark_printed(&self, qkey: Vec<u8>, sale_id: Uuid) -> Result<(), StoreError> {
        let tkey = key(PRINTED, sale_id);
        self.store
            .write(move |tx| {
                let copies = match tx.get(&tkey)? {
                    Some(v) => from_json::<PrintedReceipt>(&v, "printed receipt")?.copies,
                    None => 0,
                };
                tx.remove(qkey);
                tx.put(
                    tkey,
                    to_json(&PrintedReceipt {
                        copies: copies + 1,
                        last_printed_at_ms: now_ms(),
                    }),
                );
                Ok::<(), StoreError>(())
            })
            .await??;
        self.lock().by_sale.remove(&sale_id);
        Ok(())
    }

    /// Drop an entry whose sale is gone (cannot happen unless the data is damaged).
    async fn drop_entry(&self, qkey: Vec<u8>, sale_id: Uuid) -> Result<(), StoreError> {
        self.store
            .write(move |tx| {
                tx.remove(qkey);
                Ok::<(), StoreError>(())
            })
            .await??;
        self.lock().by_sale.remove(&sale_id);
        Ok(())
    }
}

/// Why a receipt could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The queue holds its maximum.
    #[error("the receipt queue is full ({0} receipts wait for the printer)")]
    Full(usize),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What became of one receipt a caller waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrintOutcome {
    /// Printed.
    Printed,
    /// Left in the queue, with the reason.
    Queued(String),
}

/// The one task that prints receipts.
pub struct Spooler {
    queue: Arc<ReceiptQueue>,
    store: Arc<Store>,
    printer: Option<Arc<dyn ReceiptPrinter>>,
    width: usize,
    retry: Duration,
    wake: Notify,
    /// The last print failed and the printer has not printed since.
    blocked: AtomicBool,
    /// Why, for callers that do not wait. A std mutex, never held across an await.
    last_error: Mutex<Option<String>>,
    /// Callers waiting for a sale's receipt. A std mutex, never held across an await.
    waiters: Mutex<HashMap<Uuid, Vec<oneshot::Sender<PrintOutcome>>>>,
}

impl std::fmt::Debug for Spooler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spooler")
            .field("queued", &self.queue.len())
            .field("blocked", &self.blocked.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Spooler {
    /// A spooler over `queue`; `printer` is `None` when none is configured.
    pub fn new(
        queue: Arc<ReceiptQueue>,
        store: Arc<Store>,
        printer: Option<Arc<dyn ReceiptPrinter>>,
        width: usize,
        retry: Duration,
    ) -> Self {
        Spooler {
            queue,
            store,
            printer,
            width,
            retry,
            wake: Notify::new(),
            blocked: AtomicBool::new(false),
            last_error: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<ReceiptQueue> {
        &self.queue
    }

    /// Look at the queue now (new entry, or the printer is healthy again).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Why the last print failed, while the spooler is stopped by it.
    pub fn last_error(&self) -> Option<String> {
        if self.printer.is_none() {
            return Some("no receipt printer is configured".into());
        }
        if self.blocked.load(Ordering::Acquire) {
            lock(&self.last_error).clone()
        } else {
            None
        }
    }

    /// Wait up to `wait` for `sale_id`'s queued receipt to print. Returns at once when
    /// there is no printer or the printer is failing. Cancel-safe.
    pub async fn wait_printed(&self, sale_id: Uuid, wait: Duration) -> PrintOutcome {
        if self.printer.is_none() {
            return PrintOutcome::Queued("no receipt printer is configured".into());
        }
        if let Some(e) = self.last_error() {
            return PrintOutcome::Queued(e);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).entry(sale_id).or_default().push(tx);
        // Registered first, checked second: the spooler drops a printed sale from the
        // index before it answers the waiters, so either the check sees it printed or
        // the spooler answers us.
        if !self.queue.contains(sale_id) {
            lock(&self.waiters).remove(&sale_id);
            return match self.queue.printed(sale_id) {
                Ok(Some(_)) => PrintOutcome::Printed,
                _ => PrintOutcome::Queued("not in the queue".into()),
            };
        }
        self.wake();
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(o)) => o,
            _ => {
                lock(&self.waiters).remove(&sale_id);
                PrintOutcome::Queued(format!("not printed within {wait:?}; it stays queued"))
            }
        }
    }

    fn answer(&self, sale_id: Uuid, o: PrintOutcome) {
        if let Some(ws) = lock(&self.waiters).remove(&sale_id) {
            for w in ws {
                let _ = w.send(o.clone());
            }
        }
    }

    fn answer_all(&self, o: PrintOutcome) {
        let all: Vec<_> = lock(&self.waiters).drain().collect();
        for (_, ws) in all {
            for w in ws {
                let _ = w.send(o.clone());
            }
        }
    }

    fn fail(&self, why: String) {
        *lock(&self.last_error) = Some(why.clone());
        self.blocked.store(true, Ordering::Release);
        self.answer_all(PrintOutcome::Queued(why));
    }

    /// Print the queue, oldest first, until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            let progressed = self.step().await;
            if !progressed {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(self.retry) => {}
                }
            }
        }
    }

    /// Try the oldest entry. Returns whether it printed (so the next one goes at once).
    async fn step(&self) -> bool {
        let next = match self.queue.first() {
            Ok(n) => n,
            // Locked down: wait for the unlock; the queue is kept as it is.
            Err(StoreError::DeviceLocked) => return false,
            Err(e) => {
                tracing::error!(error = %e, "Failed to read the receipt queue.");
                return false;
            }
        };
        let Some((qkey, entry)) = next else {
            self.blocked.store(false, Ordering::Release);
            return false;
        };
        let Some(printer) = self.printer.clone() else {
            self.fail("no receipt printer is configured".into());
            return false;
        };
        let sale = match self.store.sale(entry.sale_id) {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::error!(sale_id = %entry.sale_id, "A queued receipt names no sale; dropping it.");
                if let Err(e) = self.queue.drop_entry(qkey, entry.sale_id).await {
                    tracing::error!(error = %e, "Failed to drop a queued receipt.");
                }
                return true;
            }
            Err(e) => {
                tracing::error!(error = %e, "Failed to read a sale for its receipt.");
                return false;
            }
        };
        let job = render(&sale.receipt, self.width);
        let result = tokio::time::timeout(PRINT_BOUND, printer.print(&job)).await;
        match result {
            Ok(Ok(())) => {
                if let Err(e) = self.queue.mark_printed(qkey, entry.sale_id).await {
                    // Printed but still queued: it would print again. Stop rather than
                    // loop on it; storage errors are logged loudly elsewhere too.
                    tracing::error!(sale_id = %entry.sale_id, error = %e, "Printed a receipt but failed to take it off the queue.");
                    self.fail(format!("storage failed: {e}"));
                    return false;
                }
                self.blocked.store(false, Ordering::Release);
                tracing::info!(sale_id = %entry.sale_id, reason = %entry.reason, "Receipt printed.");
                self.answer(entry.sale_id, PrintOutcome::Printed);
                true
            }
            Ok(Err(f)) => {
                tracing::warn!(sale_id = %entry.sale_id, error = %f, "Receipt not printed; it stays queued.");
                self.fail(format!("printer: {f}"));
                false
            }
            Err(_) => {
                self.fail(format!("printer did not finish within {PRINT_BOUND:?}"));
                false
            }
        }
    }
}

/// A sale's receipt as a print job: the store name large, the body as the plain-text
/// rendering lays it out, the total in bold, a QR code of the sale id, and a cut.
pub fn render(receipt: &Receipt, width: usize) -> PrintJob {
    let text = receipt.render_text(width);
    let mut ops = Vec::new();
    ops.push(PrintOp::Text {
        text: format!("{}\n", receipt.store_name.trim()),
        style: TextStyle {
            bold: true,
            double_height: true,
            align: Align::Center,
            ..TextStyle::default()
        },
    });
    // The first line of the plain rendering is the store name, printed above.
    for line in text.lines().skip(1) {
        let bold = line.starts_with("TOTAL");
        ops.push(PrintOp::Text {
            text: format!("{line}\n"),
            style: TextStyle {
                bold,
                ..TextStyle::default()
            },
        });
    }
    ops.push(PrintOp::Feed { lines: 1 });
    ops.push(PrintOp::Qr {
        data: receipt.sale_id.clone(),
        module: 4,
    });
    ops.push(PrintOp::Feed { lines: 2 });
    ops.push(PrintOp::Cut { partial: true });
    PrintJob {
        id: format!("receipt:{}", receipt.sale_id),
        ops,
    }
}
