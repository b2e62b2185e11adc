//! `PushCatalog`: HQ's catalog streamed in chunks into a [`CatalogImport`], resumable,
//! and bounded in time.
//!
//! The import builds a new catalog generation beside the live one; only the last chunk
//! switches readers over, so a push that fails, is malformed, or is cut short changes
//! nothing that is served. A snapshot whose products arrive in SKU order has its
//! `products` tree written while the chunks arrive (`CatalogImport` streams it to a
//! writer thread), so the apply after the last chunk writes only the barcodes and the
//! search index.
//!
//! A push cut short stays *parked* (its import, holding what arrived, in memory or in
//! the unswitched new generation) so HQ can resume it from the offset `GetPushState`
//! reports; a newer push replaces a parked one and its trees are dropped. Parked pushes
//! do not survive a restart: HQ then starts again from offset 0.
//!
//! Time bounds, so that no peer holds the push lock or the catalog for good:
//! - a stream whose next chunk does not arrive whole within `sync.push_idle_secs` is
//!   treated as cut short (parked, `ABORTED`), which frees the push lock for
//!   `GetPushState` and other pushes;
//! - a parked push holds the catalog's change lock (no import or artifact can change
//!   the catalog meanwhile), so it expires after `sync.push_resume_secs`.
//!
//! Every error of the stream itself is answered with the status `hq.proto` documents
//! ([`stream_fault`]): a message over the size limit is `RESOURCE_EXHAUSTED`, one that
//! does not decode `INVALID_ARGUMENT`, a broken or idle stream `ABORTED`; in each case
//! nothing of the faulty message was taken and the push stays resumable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outpost_proto::hq;
use tokio::sync::Mutex;
use tonic::{Status, Streaming};

use super::convert;
use super::store_status;
use crate::config::Settings;
use crate::store::{CatalogImport, ImportMode, Store};

/// Most products in one chunk.
pub const MAX_CHUNK_PRODUCTS: usize = 100_000;

/// A push that has not received its last chunk yet.
struct Parked {
    header: hq::CatalogPushHeader,
    import: CatalogImport,
    received: u64,
}

/// The push in progress or parked, and the timer that expires a parked one.
#[derive(Default)]
struct Slot {
    parked: Option<Parked>,
    /// Counts parkings, so that a timer expires only the parking it was set for.
    parkings: u64,
    /// The timer of the parked push, aborted when a stream takes the slot.
    expiry: Option<tokio::task::AbortHandle>,
}

/// The store's side of `PushCatalog` and `GetPushState`.
pub struct CatalogPushes {
    store: Arc<Store>,
    settings: Arc<Settings>,
    /// A tokio mutex: a push holds it for its whole stream, across awaits, so two
    /// pushes never interleave; the idle timeout bounds how long a silent one holds it.
    slot: Arc<Mutex<Slot>>,
}

/// Why a chunk did not arrive.
#[derive(Debug)]
enum Fault {
    /// Nothing came for the idle timeout.
    Idle(Duration),
    /// The stream failed: transport, size limit or decoding (tonic's status).
    Broken(Status),
}

/// Why a chunk was refused.
enum Refusal {
    /// Nothing of the chunk was taken: the push can still resume.
    Untaken(Status),
    /// The push can never apply.
    Fatal(Status),
}

/// The next chunk of `stream`, `None` at its end, waiting `idle` at most. Cancel-safe
/// (tonic's `Streaming::message` is).
async fn next_chunk(
    stream: &mut Streaming<hq::CatalogChunk>,
    idle: Duration,
) -> Result<Option<hq::CatalogChunk>, Fault> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(Ok(chunk)) => Ok(chunk),
        Ok(Err(status)) => Err(Fault::Broken(status)),
        Err(_) => Err(Fault::Idle(idle)),
    }
}

/// The documented answer to a stream fault; `resume` is where a parked push resumes.
fn stream_fault(fault: Fault, resume: Option<(&str, u64)>) -> Status {
    let then = match resume {
        Some((id, at)) => {
            format!("; push {id} is parked: resume from offset {at} (GetPushState)")
        }
        None => String::new(),
    };
    match fault {
        Fault::Idle(idle) => Status::aborted(format!(
            "no message for {} s: the store stopped waiting{then}",
            idle.as_secs()
        )),
        Fault::Broken(s) => match s.code() {
            // tonic answers a message over the decoding limit with OUT_OF_RANGE, and
            // one that decompresses past it with RESOURCE_EXHAUSTED.
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
                Status::resource_exhausted(format!(
                    "a chunk is over the {} MiB message limit ({}); nothing of it was taken: send smaller chunks{then}",
                    super::MAX_MESSAGE_BYTES / (1024 * 1024),
                    s.message()
                ))
            }
            // A transport failure carries its cause (h2, hyper, I/O); a stream that
            // ends inside a message was cut too.
            tonic::Code::Internal
                if std::error::Error::source(&s).is_none()
                    && !s.message().starts_with("Unexpected EOF") =>
            {
                Status::invalid_argument(format!(
                    "a chunk does not decode as a CatalogChunk ({}); nothing of it was taken{then}",
                    s.message()
                ))
            }
            _ => Status::aborted(format!("the stream broke ({}){then}", s.message())),
        },
    }
}

/// The live catalog's version as HQ numbers it, if it came from HQ.
fn live_version(store: &Store) -> Option<u64> {
    store.catalog().version.parse().ok()
}

fn check_header(
    h: &hq::CatalogPushHeader,
    live: Option<u64>,
    max_products: u64,
) -> Result<ImportMode, Status> {
    if h.push_id.is_empty() || h.push_id.len() > 128 {
        return Err(Status::invalid_argument(
            "header.push_id must be 1 to 128 characters",
        ));
    }
    if h.total_products > max_products {
        return Err(Status::resource_exhausted(format!(
            "push of {} products is over this store's limit of {max_products}",
            h.total_products
        )));
    }
    match hq::CatalogPushKind::try_from(h.kind) {
        Ok(hq::CatalogPushKind::Snapshot) => {
            if h.total_removals != 0 {
                return Err(Status::invalid_argument(
                    "a snapshot has no removals: products not in it are removed",
                ));
            }
            if let Some(live) = live
                && h.version <= live
            {
                return Err(Status::failed_precondition(format!(
                    "snapshot version {} is not newer than the live version {live}",
                    h.version
                )));
            }
            Ok(ImportMode::Replace)
        }
        Ok(hq::CatalogPushKind::Delta) => {
            match live {
                Some(live) if live == h.base_version => {}
                Some(live) => {
                    return Err(Status::failed_precondition(format!(
                        "delta applies to version {} but the live version is {live}",
                        h.base_version
                    )));
                }
                None => {
                    return Err(Status::failed_precondition(format!(
                        "delta applies to version {} but the live catalog did not come from HQ (version {:?}): push a snapshot first",
                        h.base_version, ""
                    )));
                }
            }
            if h.version <= h.base_version {
                return Err(Status::invalid_argument(format!(
                    "delta version {} must be newer than its base {}",
                    h.version, h.base_version
                )));
            }
            Ok(ImportMode::Merge)
        }
        _ => Err(Status::invalid_argument(
            "header.kind must be SNAPSHOT or DELTA",
        )),
    }
}

/// Take in one chunk. Errors leave the live catalog as it was; `Ok(true)` means the
/// chunk was the last.
fn take_chunk(parked: &mut Parked, chunk: hq::CatalogChunk) -> Result<bool, Refusal> {
    if chunk.offset != parked.received {
        return Err(Refusal::Untaken(Status::out_of_range(format!(
            "chunk offset {} but the store expects offset {}",
            chunk.offset, parked.received
        ))));
    }
    if chunk.products.len() > MAX_CHUNK_PRODUCTS {
        return Err(Refusal::Untaken(Status::resource_exhausted(format!(
            "chunk of {} products is over the limit of {MAX_CHUNK_PRODUCTS}; nothing of it was taken: send smaller chunks from offset {}",
            chunk.products.len(),
            parked.received
        ))));
    }
    let fatal = |s| Refusal::Fatal(s);
    let end = parked.received + chunk.products.len() as u64;
    if end > parked.header.total_products {
        return Err(fatal(Status::invalid_argument(format!(
            "chunk ends at product {end} but the header announced {}",
            parked.header.total_products
        ))));
    }
    for (i, p) in chunk.products.into_iter().enumerate() {
        let at = parked.received + i as u64;
        let sku = p.sku.clone();
        let product = convert::product(p).map_err(|e| {
            fatal(Status::invalid_argument(format!(
                "product {at} (sku {sku:?}): {e}"
            )))
        })?;
        if let Err(conflict) = parked
            .import
            .add_owned(product, at)
            .map_err(|e| fatal(store_status(e)))?
        {
            return Err(fatal(Status::invalid_argument(format!(
                "product {at}: {conflict}"
            ))));
        }
    }
    parked.received = end;
    if !chunk.removed_skus.is_empty() {
        if parked.header.kind != hq::CatalogPushKind::Delta as i32 {
            return Err(fatal(Status::invalid_argument(
                "removed_skus in a snapshot",
            )));
        }
        if chunk.removed_skus.len() as u64 > parked.header.total_removals {
            return Err(fatal(Status::invalid_argument(format!(
                "{} removals but the header announced {}",
                chunk.removed_skus.len(),
                parked.header.total_removals
            ))));
        }
        for sku in &chunk.removed_skus {
            parked.import.remove(sku);
        }
    }
    if chunk.last && parked.received != parked.header.total_products {
        return Err(fatal(Status::invalid_argument(format!(
            "last chunk after {} products but the header announced {}",
            parked.received, parked.header.total_products
        ))));
    }
    Ok(chunk.last)
}

impl CatalogPushes {
    /// Pushes into `store`, under the limits and time bounds of `settings.sync`.
    pub fn new(store: Arc<Store>, settings: Arc<Settings>) -> Self {
        CatalogPushes {
            store,
            settings,
            slot: Arc::default(),
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.settings.sync.push_idle_secs)
    }

    /// Parks `parked` in `slot` and sets the timer that expires it.
    fn park(&self, slot: &mut Slot, parked: Parked) {
        slot.parkings += 1;
        let parking = slot.parkings;
        let resume = Duration::from_secs(self.settings.sync.push_resume_secs);
        let shared = self.slot.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(resume).await;
            let mut slot = shared.lock().await;
            if slot.parkings == parking
                && let Some(gone) = slot.parked.take()
            {
                slot.expiry = None;
                tracing::warn!(push = %gone.header.push_id, received = gone.received, resume_secs = resume.as_secs(), "A parked catalog push expired unresumed");
            }
        });
        if let Some(old) = slot.expiry.replace(timer.abort_handle()) {
            old.abort();
        }
        slot.parked = Some(parked);
    }

    /// Receives one `PushCatalog` stream; applies the push when its last chunk arrives.
    pub async fn receive(
        &self,
        mut stream: Streaming<hq::CatalogChunk>,
    ) -> Result<hq::PushCatalogReply, Status> {
        let idle = self.idle();
        // The first chunk arrives before the lock is taken: a stream that sends none
        // holds nothing.
        let first = match next_chunk(&mut stream, idle).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(Status::invalid_argument("empty push: no chunks")),
            Err(fault) => return Err(stream_fault(fault, None)),
        };
        let Some(header) = first.header.clone() else {
            return Err(Status::invalid_argument(
                "the first chunk of a push must carry the header",
            ));
        };
        let mut slot = self.slot.lock().await;
        if let Some(timer) = slot.expiry.take() {
            timer.abort();
        }
        let mut parked = match slot.parked.take() {
            Some(p) if p.header.push_id == header.push_id => {
                if p.header != header {
                    let msg = "header differs from the one this push started with";
                    self.park(&mut slot, p);
                    return Err(Status::invalid_argument(msg));
                }
                p
            }
            other => {
                // A newer push replaces a parked one (and frees its catalog lock).
                if let Some(old) = &other {
                    tracing::warn!(push = %old.header.push_id, received = old.received, "Dropping an unfinished catalog push for a new one");
                }
                drop(other);
                let mode = check_header(
                    &header,
                    live_version(&self.store),
                    self.settings.sync.max_push_products,
                )?;
                let import = self
                    .store
                    .begin_catalog_import(mode)
                    .map_err(store_status)?;
                Parked {
                    header,
                    import,
                    received: 0,
                }
            }
        };
        let mut chunk = first;
        loop {
            match take_chunk(&mut parked, chunk) {
                Ok(true) => break,
                Ok(false) => {}
                Err(Refusal::Untaken(status)) => {
                    self.park(&mut slot, parked);
                    return Err(status);
                }
                Err(Refusal::Fatal(status)) => return Err(status),
            }
            chunk = match next_chunk(&mut stream, idle).await {
                Ok(Some(c)) => {
                    if c.header.is_some() {
                        return Err(Status::invalid_argument(
                            "only the first chunk of a stream carries the header",
                        ));
                    }
                    c
                }
                Ok(None) => {
                    let msg = format!(
                        "push {} incomplete: {} of {} products received; resume from offset {}",
                        parked.header.push_id,
                        parked.received,
                        parked.header.total_products,
                        parked.received
                    );
                    self.park(&mut slot, parked);
                    return Err(Status::aborted(msg));
                }
                Err(fault) => {
                    // Keep what arrived: the push resumes after the last whole chunk.
                    let status =
                        stream_fault(fault, Some((&parked.header.push_id, parked.received)));
                    tracing::warn!(push = %parked.header.push_id, received = parked.received, code = ?status.code(), error = status.message(), "A catalog push stream failed; the push is parked");
                    self.park(&mut slot, parked);
                    return Err(status);
                }
            };
        }
        drop(slot);
        let started = Instant::now();
        let version = parked.header.version;
        let products = parked.received;
        let kind = parked.header.kind;
        let push_id = parked.header.push_id.clone();
        let summary =
            tokio::task::spawn_blocking(move || parked.import.finish(&version.to_string()))
                .await
                .map_err(|e| Status::internal(format!("apply task failed: {e}")))?
                .map_err(store_status)?;
        let apply_ms = started.elapsed().as_millis() as u64;
        tracing::info!(push = %push_id, version, products, kind, apply_ms, generation = summary.generation, "Applied a catalog push");
        Ok(hq::PushCatalogReply {
            version,
            products: self.store.catalog().len,
            apply_ms,
        })
    }

    /// How much of push `id` the store holds. UNAVAILABLE while a push is being
    /// received (it holds the lock; the idle timeout bounds how long).
    pub fn state(&self, id: String) -> Result<hq::PushState, Status> {
        let slot = self
            .slot
            .try_lock()
            .map_err(|_| Status::unavailable("a catalog push is being received right now"))?;
        let (received, header) = match slot.parked.as_ref() {
            Some(p) if p.header.push_id == id => (p.received, Some(p.header.clone())),
            _ => (0, None),
        };
        Ok(hq::PushState {
            push_id: id,
            received,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_faults_map_to_the_documented_statuses() {
        let too_big = Status::out_of_range(
            "Error, decoded message length too large: found 17825817 bytes, the limit is: 16777216 bytes",
        );
        let s = stream_fault(Fault::Broken(too_big), Some(("p", 10)));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("16 MiB"), "{}", s.message());
        assert!(s.message().contains("offset 10"), "{}", s.message());
        let inflated = Status::resource_exhausted("Error decompressing: size limit");
        assert_eq!(
            stream_fault(Fault::Broken(inflated), None).code(),
            tonic::Code::ResourceExhausted
        );
        let undecodable =
            Status::internal("failed to decode Protobuf message: invalid string value");
        assert_eq!(
            stream_fault(Fault::Broken(undecodable), None).code(),
            tonic::Code::InvalidArgument
        );
        let cut_mid_message = Status::internal("Unexpected EOF decoding stream.");
        let reset = Status::cancelled("h2 protocol error: stream reset");
        let io = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        for broken in [cut_mid_message, reset, io] {
            assert_eq!(
                stream_fault(Fault::Broken(broken), None).code(),
                tonic::Code::Aborted
            );
        }
        let idle = stream_fault(Fault::Idle(Duration::from_secs(30)), Some(("p", 3)));
        assert_eq!(idle.code(), tonic::Code::Aborted);
        assert!(idle.message().contains("30 s"), "{}", idle.message());
    }
}
