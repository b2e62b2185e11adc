//! Input devices: the scans of each barcode scanner, kept for terminals to fetch,
//! and the weighing of checkout lines on a scale.
//!
//! Every scanner gets a pump task that takes its scans ([`BarcodeScanner::next_scan`]),
//! resolves each barcode to a catalog product, and appends it to a bounded ring with
//! a sequence number; `GET /api/v1/devices/{id}/scans?after=SEQ` reads the ring and
//! may wait for the next scan. Input the driver rejects (garbage, truncated frames)
//! never reaches the ring: the driver counts it (`scans_rejected`) and raises an
//! error event, which the device list shows as `last_event_error`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use outpost_peripherals::scale::Scale;
use outpost_peripherals::scanner::{BarcodeScanner, Scan, Symbology};
use outpost_peripherals::{Condition, DeviceError, DeviceFault, DeviceState, ErrorKind};
use serde::Serialize;
use tokio::sync::Notify;

use crate::domain::gtin::Gtin;
use crate::store::Store;

/// Scans kept per scanner; older ones are dropped (a terminal that falls this far
/// behind sees `first_seq` past its `after`).
pub const SCAN_RING: usize = 256;
/// Longest a scans request may wait for the next scan.
pub const MAX_SCAN_WAIT: Duration = Duration::from_secs(30);
/// Pause of a scanner's pump while the scanner is closed or failing; the supervisor
/// reopens it meanwhile.
const PUMP_IDLE: Duration = Duration::from_millis(200);

/// One scan as terminals see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScanRecord {
    /// Sequence number, from 1, per scanner.
    pub seq: u64,
    /// When it arrived, ms since the Unix epoch.
    pub at_ms: u64,
    /// The decoded data.
    pub data: String,
    /// `ean13`, `code128`, `qr`, ..., `unknown` when the scanner did not say.
    #[schema(value_type = String)]
    pub symbology: Symbology,
    /// The product the barcode resolves to, when the catalog has one.
    pub sku: Option<String>,
    /// Its name.
    pub product_name: Option<String>,
    /// Why no product: not a GTIN, no product with it, or the catalog failed.
    pub unresolved: Option<String>,
}

#[derive(Debug, Default)]
struct Ring {
    scans: VecDeque<ScanRecord>,
    next_seq: u64,
}

/// The scans of one scanner.
pub struct ScanFeed {
    /// The scanner's id.
    pub id: String,
    scanner: Arc<dyn BarcodeScanner>,
    /// A std mutex: held to push or copy, never across an await.
    ring: Mutex<Ring>,
    arrived: Notify,
}

impl std::fmt::Debug for ScanFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanFeed").field("id", &self.id).finish()
    }
}

/// A page of scans.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScanPage {
    /// The scanner.
    pub device: String,
    /// Scans after the asked-for sequence number, oldest first.
    pub items: Vec<ScanRecord>,
    /// Pass as `after` next time (the last sequence number seen).
    pub last_seq: u64,
    /// The oldest scan still kept (0: none yet); scans between `after` and this were
    /// dropped from the ring.
    pub first_seq: u64,
    /// Input the driver rejected so far (garbage, truncated or overlong frames).
    pub rejected: u64,
    /// The latest error event of the scanner (a rejected input, a lost link).
    pub last_event_error: Option<String>,
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ScanFeed {
    /// A feed of `scanner`'s scans.
    pub fn new(id: &str, scanner: Arc<dyn BarcodeScanner>) -> Self {
        ScanFeed {
            id: id.to_owned(),
            scanner,
            ring: Mutex::new(Ring {
                scans: VecDeque::with_capacity(SCAN_RING),
                next_seq: 1,
            }),
            arrived: Notify::new(),
        }
    }

    fn push(&self, scan: Scan, store: &Store) {
        let (sku, product_name, unresolved) = resolve(&scan.data, store);
        {
            let mut r = lock(&self.ring);
            let seq = r.next_seq;
            r.next_seq += 1;
            if r.scans.len() == SCAN_RING {
                r.scans.pop_front();
            }
            r.scans.push_back(ScanRecord {
                seq,
                at_ms: super::now_ms(),
                data: scan.data,
                symbology: scan.symbology,
                sku,
                product_name,
                unresolved,
            });
        }
        self.arrived.notify_waiters();
    }

    /// Take scans until the task is aborted. A closed or failing scanner is waited
    /// out (the supervisor reopens it).
    pub async fn pump(self: Arc<Self>, store: Arc<Store>) {
        loop {
            if self.scanner.core().state() == DeviceState::Closed {
                tokio::time::sleep(PUMP_IDLE).await;
                continue;
            }
            match self.scanner.next_scan().await {
                Ok(scan) => self.push(scan, &store),
                Err(_) => tokio::time::sleep(PUMP_IDLE).await,
            }
        }
    }

    /// Scans after `after`, at most `limit`; waits up to `wait` for one when there
    /// is none yet. Cancel-safe.
    pub async fn page(&self, after: u64, limit: usize, wait: Duration) -> ScanPage {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_SCAN_WAIT);
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let page = self.snapshot(after, limit);
            if !page.items.is_empty() || tokio::time::Instant::now() >= deadline {
                return page;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.snapshot(after, limit);
            }
        }
    }

    fn snapshot(&self, after: u64, limit: usize) -> ScanPage {
        let r = lock(&self.ring);
        let items: Vec<ScanRecord> = r
            .scans
            .iter()
            .filter(|s| s.seq > after)
            .take(limit)
            .cloned()
            .collect();
        let last_seq = items.last().map_or(after, |s| s.seq);
        let first_seq = r.scans.front().map_or(0, |s| s.seq);
        drop(r);
        let core = self.scanner.core();
        ScanPage {
            device: self.id.clone(),
            items,
            last_seq,
            first_seq,
            rejected: core
                .statistics()
                .counters
                .get("scans_rejected")
                .copied()
                .unwrap_or(0),
            last_event_error: super::last_event_error(core),
        }
    }
}

/// The product a scanned barcode names: (sku, name, why not).
fn resolve(data: &str, store: &Store) -> (Option<String>, Option<String>, Option<String>) {
    let gtin = match Gtin::parse(data) {
        Ok(g) => g,
        Err(e) => return (None, None, Some(format!("not a product barcode: {e}"))),
    };
    let catalog = store.catalog();
    let found = catalog
        .sku_by_gtin14(&gtin.to_gtin14())
        .and_then(|sku| match sku {
            Some(sku) => catalog.product(&sku),
            None => Ok(None),
        });
    match found {
        Ok(Some(p)) => (Some(p.sku.as_str().to_owned()), Some(p.name), None),
        Ok(None) => (None, None, Some("no product has this barcode".into())),
        Err(e) => (None, None, Some(format!("catalog lookup failed: {e}"))),
    }
}

/// Why a scale could not give a weight to sell by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WeighError {
    /// HTTP status: 409 for what the customer or cashier can fix at the scale, 503
    /// when the scale cannot be used, 404/422 for a request naming no scale.
    pub status: u16,
    /// Stable code: `scale_unstable`, `scale_overload`, `scale_underload`,
    /// `device_unavailable`, `device_not_found`, `not_a_scale`.
    pub code: &'static str,
    /// For the cashier.
    pub message: String,
}

/// A scale's fault as a checkout or weight refusal.
pub fn weigh_error(id: &str, f: &DeviceFault) -> WeighError {
    let (status, code) = match (f.device_condition(), f.kind()) {
        (Some(Condition::Unstable), _) => (409, "scale_unstable"),
        (Some(Condition::OverWeight), _) => (409, "scale_overload"),
        (Some(Condition::UnderWeight), _) => (409, "scale_underload"),
        (_, ErrorKind::Busy) => (409, "scale_unstable"),
        _ => (503, "device_unavailable"),
    };
    WeighError {
        status,
        code,
        message: format!("scale {id}: {f}"),
    }
}

/// A scale's live and stable weight.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WeightView {
    /// The scale.
    pub device: String,
    /// Net grams now, settled or not.
    pub grams: i64,
    /// Whether the scale says the weight has settled.
    pub stable: bool,
    /// The weight a checkout would sell by now: `grams` when stable and above zero.
    pub stable_grams: Option<u32>,
}

/// One reading of `scale` for the weight route.
pub async fn read_weight(
    id: &str,
    scale: &dyn Scale,
    bound: Duration,
) -> Result<WeightView, WeighError> {
    let reading = match tokio::time::timeout(bound, scale.live_weight()).await {
        Ok(r) => r.map_err(|f| weigh_error(id, &f))?,
        Err(_) => {
            return Err(WeighError {
                status: 503,
                code: "device_unavailable",
                message: format!("scale {id} did not answer within {bound:?}"),
            });
        }
    };
    Ok(WeightView {
        device: id.to_owned(),
        grams: reading.grams,
        stable: reading.stable,
        stable_grams: (reading.stable && reading.grams > 0)
            .then(|| u32::try_from(reading.grams).unwrap_or(u32::MAX)),
    })
}

/// The stable weight to sell by, waiting up to `wait` for it to settle.
pub async fn stable_grams(
    id: &str,
    scale: &dyn Scale,
    wait: Duration,
    bound: Duration,
) -> Result<u32, WeighError> {
    if scale.core().state() == DeviceState::Closed {
        return Err(WeighError {
            status: 503,
            code: "device_unavailable",
            message: format!("scale {id} is not connected"),
        });
    }
    match tokio::time::timeout(bound + wait, scale.stable_weight(wait)).await {
        Ok(r) => r.map_err(|f| weigh_error(id, &f)),
        Err(_) => Err(WeighError {
            status: 503,
            code: "device_unavailable",
            message: format!("scale {id} did not answer within {:?}", bound + wait),
        }),
    }
}
