//! The uplink: the outbox, delivered to HQ exactly once.
//!
//! One task dials HQ's `Upload` stream, says hello, and learns the highest sequence
//! HQ holds for this unit. It deletes outbox entries up to that point and sends the
//! rest in order, in bounded batches, with a bounded window of unacknowledged
//! batches. Each acknowledgment deletes what it covers, in a writer job that runs
//! while the next batches go out (acknowledgments arriving meanwhile are deleted
//! together by the next job), from the entries the session holds: nothing is read
//! back to be deleted. Any failure (HQ down, a cut
//! connection, an acknowledgment that does not come) ends the session; the next
//! starts after an exponential backoff with full jitter and resumes from what HQ
//! says it holds. Sales never wait for any of this.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use outpost_proto::hq::hq_service_client::HqServiceClient;
use outpost_proto::hq::{
    Envelope, EnvelopeBatch, EnvelopeKind, Hello, UploadMessage, upload_message,
};
use rand::Rng as _;
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::SyncSettings;
use crate::store::outbox::{self, BlockSpan, Outgoing};
use crate::store::outbox::{OutboxEntry, OutboxKind};
use crate::store::{Store, StoreError};

/// Bytes of records per batch, about (a batch holds at least one entry).
const BATCH_BYTES: usize = 1024 * 1024;
/// How long an idle session waits for HQ to say something (effectively forever).
const IDLE_FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);
/// How often a caught-up uplink looks for new entries.
const POLL: Duration = Duration::from_millis(100);

/// What the uplink needs from the settings.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// HQ's URL.
    pub hq_url: String,
    /// This unit.
    pub unit_id: String,
    /// This store.
    pub store_id: String,
    /// Envelopes per batch.
    pub batch_max: usize,
    /// Unacknowledged batches in flight.
    pub window: usize,
    /// First retry delay.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// How long to wait for an acknowledgment (and for the connection).
    pub ack_timeout: Duration,
    /// Mutual TLS to HQ (HQ's CA pinned, the device certificate presented); plaintext
    /// when `None` (the settings allow that only to a loopback HQ).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl UplinkConfig {
    /// From the settings; `None` when no HQ URL is configured.
    pub fn from_settings(sync: &SyncSettings, store_id: &str) -> Option<UplinkConfig> {
        Some(UplinkConfig {
            hq_url: sync.hq_url.clone()?,
            unit_id: sync.unit_id.clone(),
            store_id: store_id.to_owned(),
            batch_max: sync.batch_max,
            window: sync.window,
            backoff_min: Duration::from_millis(sync.backoff_min_ms),
            backoff_max: Duration::from_secs(sync.backoff_max_secs),
            ack_timeout: Duration::from_secs(sync.ack_timeout_secs),
            tls: None,
        })
    }

    /// Dial HQ over TLS with `tls` (or plaintext with `None`).
    pub fn with_tls(mut self, tls: Option<Arc<rustls::ClientConfig>>) -> UplinkConfig {
        self.tls = tls;
        self
    }
}

/// The uplink's state, shared with the status API and the metrics.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Whether an uplink is configured at all.
    pub enabled: AtomicBool,
    /// Whether a session with HQ is up now.
    pub connected: AtomicBool,
    /// The highest sequence HQ acknowledged (0: none yet).
    pub acked_seq: AtomicU64,
    /// Unix milliseconds of the last acknowledgment (0: never).
    pub last_sync_ms: AtomicI64,
    /// Envelopes sent (including resends after reconnects).
    pub sent: AtomicU64,
    /// Sessions started.
    pub sessions: AtomicU64,
    /// Sessions that ended in an error.
    pub failures: AtomicU64,
    /// Why the last session failed, for the technician.
    pub last_error: Mutex<Option<String>>,
    /// Wakes the uplink now (a resync command, or a new sale).
    pub wake: Notify,
    /// The version of HQ's device set the running devices were opened with (0: the
    /// config file's), for status: a pushed set applies at the next start.
    pub device_config_applied: AtomicU64,
}

impl SyncState {
    fn set_error(&self, e: Option<String>) {
        // Held only to swap a string.
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// Why the last session failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Why an uplink session ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UplinkError {
    /// HQ could not be reached (or its certificate was refused, or it refused ours).
    #[error("cannot reach HQ at {url}: {}", outpost_proto::grpc_tls::error_chain(.source))]
    Connect {
        /// HQ's URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// HQ answered with an error or the stream broke.
    #[error("HQ stream failed: {}", status_text(.0))]
    Status(#[from] tonic::Status),
    /// HQ closed the stream.
    #[error("HQ closed the upload stream")]
    Closed,
    /// No acknowledgment came in time.
    #[error("no acknowledgment from HQ within {0:?}")]
    AckTimeout(Duration),
    /// HQ acknowledged a sequence this unit never sent.
    #[error("HQ acknowledged sequence {acked} but this unit has only written up to {written}")]
    AckAhead {
        /// What HQ said.
        acked: u64,
        /// What exists.
        written: u64,
    },
    /// HQ holds less than this unit already deleted: HQ lost data.
    #[error(
        "HQ holds sequences up to {acked} but this unit's outbox starts at {first}: HQ lost entries it had acknowledged"
    )]
    HqBehind {
        /// What HQ said.
        acked: u64,
        /// The oldest entry still here.
        first: u64,
    },
    /// The outbox could not be read or updated.
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
}

/// Run the uplink until the task is dropped. Cancel-safe at every await: all it
/// owns is a connection; the outbox changes only through durable writer jobs.
pub async fn run(store: Arc<Store>, cfg: UplinkConfig, state: Arc<SyncState>) {
    state.enabled.store(true, Ordering::Relaxed);
    let mut delay = cfg.backoff_min;
    loop {
        state.sessions.fetch_add(1, Ordering::Relaxed);
        let acked_before = state.acked_seq.load(Ordering::Relaxed);
        let connector = cfg
            .tls
            .as_deref()
            .map(outpost_proto::grpc_tls::TlsConnector::new);
        let result = session(&store, &cfg, &state, connector.as_ref()).await;
        state.connected.store(false, Ordering::Relaxed);
        if let Err(e) = result {
            state.failures.fetch_add(1, Ordering::Relaxed);
            let mut why = e.to_string();
            // A refused client certificate shows only as a TLS alert read after the
            // handshake; tonic's error just says the connection closed.
            if let Some(tls) = connector.as_ref().and_then(|c| c.take_error())
                && !why.contains(&tls)
            {
                why = format!("{why} (TLS: {tls})");
            }
            tracing::warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "HQ uplink session ended");
            state.set_error(Some(why));
        }
        if state.acked_seq.load(Ordering::Relaxed) > acked_before {
            // The session made progress: the link works, retry soon.
            delay = cfg.backoff_min;
        }
        // Full jitter: a store full of units coming back online does not dial HQ in step.
        let sleep = rand::rng().random_range(Duration::ZERO..=delay);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = state.wake.notified() => {}
        }
        delay = (delay * 2).min(cfg.backoff_max);
    }
}

/// A status's code and message, and what lies under it (a TLS alert from HQ that
/// refused the device certificate surfaces only there).
fn status_text(s: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", s.code(), s.message());
    if let Some(source) = std::error::Error::source(s) {
        text.push_str(": ");
        text.push_str(&outpost_proto::grpc_tls::error_chain(source));
    }
    text
}

fn envelope(o: Outgoing) -> Envelope {
    let kind = match o.entry.kind {
        OutboxKind::Sale => EnvelopeKind::Sale,
        OutboxKind::Refund => EnvelopeKind::Refund,
        OutboxKind::InventoryMovement => EnvelopeKind::InventoryMovement,
        OutboxKind::DeviceEvent => EnvelopeKind::DeviceEvent,
        OutboxKind::Alert => EnvelopeKind::Alert,
        OutboxKind::Telemetry => EnvelopeKind::Telemetry,
        OutboxKind::AuditHead => EnvelopeKind::AuditHead,
        OutboxKind::PaymentReturn => EnvelopeKind::PaymentReturn,
        OutboxKind::SlotCount => EnvelopeKind::SlotCount,
    };
    Envelope {
        seq: o.entry.seq,
        kind: kind as i32,
        id: o.entry.id.to_string(),
        at_unix_ms: (o.entry.at.unix_timestamp_nanos() / 1_000_000) as i64,
        json: o.record,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn session(
    store: &Arc<Store>,
    cfg: &UplinkConfig,
    state: &SyncState,
    connector: Option<&outpost_proto::grpc_tls::TlsConnector>,
) -> Result<(), UplinkError> {
    let endpoint = tonic::transport::Endpoint::from_shared(cfg.hq_url.clone())
        .map_err(|source| UplinkError::Connect {
            url: cfg.hq_url.clone(),
            source,
        })?
        .connect_timeout(cfg.ack_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(cfg.ack_timeout);
    let channel = match connector {
        Some(connector) => endpoint.connect_with_connector(connector.clone()).await,
        None => endpoint.connect().await,
    }
    .map_err(|source| UplinkError::Connect {
        url: cfg.hq_url.clone(),
        source,
    })?;
    let mut client = HqServiceClient::new(channel)
        .max_decoding_message_size(1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<UploadMessage>(cfg.window + 1);
    let hello = UploadMessage {
        body: Some(upload_message::Body::Hello(Hello {
            unit_id: cfg.unit_id.clone(),
            store_id: cfg.store_id.clone(),
            software_version: outpost_updater::stamp::running_version().to_string(),
        })),
    };
    // The channel is empty and its receiver is alive: this cannot fail or wait.
    tx.send(hello).await.map_err(|_| UplinkError::Closed)?;
    let mut acks = tokio::time::timeout(cfg.ack_timeout, client.upload(ReceiverStream::new(rx)))
        .await
        .map_err(|_| UplinkError::AckTimeout(cfg.ack_timeout))??
        .into_inner();
    let first = tokio::time::timeout(cfg.ack_timeout, acks.message())
        .await
        .map_err(|_| UplinkError::AckTimeout(cfg.ack_timeout))??
        .ok_or(UplinkError::Closed)?;
    state.connected.store(true, Ordering::Relaxed);
    state.set_error(None);
    let backlog = outbox::backlog(store)?;
    let written = backlog.first_seq + backlog.pending - 1;
    if first.acked_seq > written {
        return Err(UplinkError::AckAhead {
            acked: first.acked_seq,
            written,
        });
    }
    if backlog.pending > 0 && first.acked_seq + 1 < backlog.first_seq {
        return Err(UplinkError::HqBehind {
            acked: first.acked_seq,
            first: backlog.first_seq,
        });
    }
    acknowledge(store, state, first.acked_seq).await?;
    tracing::info!(hq = %cfg.hq_url, acked = first.acked_seq, pending = backlog.pending, "Connected to HQ");
    let mut next = first.acked_seq.max(backlog.first_seq.saturating_sub(1)) + 1;
    // Last sequence of each batch in flight, oldest first.
    let mut in_flight: VecDeque<u64> = VecDeque::new();
    // Every entry sent and not yet deleted, oldest first: what an acknowledgment
    // deletes, without reading it back.
    let mut sent: VecDeque<(OutboxEntry, BlockSpan)> = VecDeque::new();
    // The delete of acknowledged entries under way, if any. It runs while the next
    // batches are read and sent, and the acknowledgments that arrive meanwhile are
    // deleted together by the next one (one writer job and one flush for many).
    let mut deleting: Option<Deleting> = None;
    let mut acked = first.acked_seq;
    loop {
        // Fill the window with whatever is waiting.
        while in_flight.len() < cfg.window {
            let batch = outbox::read_from(store, next, cfg.batch_max, BATCH_BYTES)?;
            let Some(last) = batch.last().map(|o| o.entry.seq) else {
                break;
            };
            let n = batch.len() as u64;
            sent.extend(batch.iter().map(|o| (o.entry.clone(), o.block)));
            let msg = UploadMessage {
                body: Some(upload_message::Body::Batch(EnvelopeBatch {
                    envelopes: batch.into_iter().map(envelope).collect(),
                })),
            };
            tx.send(msg).await.map_err(|_| UplinkError::Closed)?;
            state.sent.fetch_add(n, Ordering::Relaxed);
            in_flight.push_back(last);
            next = last + 1;
        }
        if deleting.is_none() && sent.front().is_some_and(|(e, _)| e.seq <= acked) {
            let mut done = Vec::new();
            while sent.front().is_some_and(|(e, _)| e.seq <= acked) {
                done.extend(sent.pop_front());
            }
            let store = Arc::clone(store);
            deleting = Some(Box::pin(
                async move { outbox::delete_sent(&store, done).await },
            ));
        }
        let waiting_for_ack = !in_flight.is_empty();
        // With batches in flight an acknowledgment must come in time; without, HQ may
        // stay silent for as long as it likes (but may still close or fail).
        let limit = if waiting_for_ack {
            cfg.ack_timeout
        } else {
            IDLE_FOREVER
        };
        tokio::select! {
            ack = tokio::time::timeout(limit, acks.message()) => {
                let ack = ack.map_err(|_| UplinkError::AckTimeout(cfg.ack_timeout))??
                    .ok_or(UplinkError::Closed)?;
                if ack.acked_seq >= next {
                    return Err(UplinkError::AckAhead { acked: ack.acked_seq, written: next - 1 });
                }
                if ack.acked_seq > acked {
                    acked = ack.acked_seq;
                    state.acked_seq.fetch_max(acked, Ordering::Relaxed);
                    state.last_sync_ms.store(now_ms(), Ordering::Relaxed);
                }
                while in_flight.front().is_some_and(|last| *last <= acked) {
                    in_flight.pop_front();
                }
            }
            deleted = async {
                match deleting.as_mut() {
                    Some(d) => d.await,
                    None => std::future::pending().await,
                }
            }, if deleting.is_some() => {
                deleting = None;
                deleted?;
            }
            () = tokio::time::sleep(POLL), if !waiting_for_ack => {}
            () = state.wake.notified(), if !waiting_for_ack => {}
        }
    }
}

/// A delete of acknowledged entries in progress. Dropping it (the session ended)
/// loses only the answer: a job already queued still runs, before anything the next
/// session queues.
type Deleting = std::pin::Pin<Box<dyn Future<Output = Result<u64, StoreError>> + Send>>;

async fn acknowledge(store: &Arc<Store>, state: &SyncState, upto: u64) -> Result<(), UplinkError> {
    if upto == 0 {
        return Ok(());
    }
    outbox::ack_through(store, upto).await?;
    state.acked_seq.fetch_max(upto, Ordering::Relaxed);
    state.last_sync_ms.store(now_ms(), Ordering::Relaxed);
    Ok(())
}
