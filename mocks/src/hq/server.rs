//! The mock HQ's gRPC server: `HqService.Upload`, fault injection, start/stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use outpost_proto::hq::hq_service_server::{HqService, HqServiceServer};
use outpost_proto::hq::{
    EnrollReply, EnrollRequest, Envelope, EnvelopeBatch, EnvelopeKind, EscrowReply, EscrowRequest,
    UploadAck, UploadMessage, upload_message,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::audit::{AuditHead, ChainAlert};
use super::enrol::{HqCa, Tokens};
use super::escrow::{Escrow, HqKeys};
use super::storage::{AppendStop, MAX_UNIT_ID_LEN, Storage, StorageError};

/// Most envelopes accepted in one `EnvelopeBatch`.
pub const MAX_BATCH_ENVELOPES: usize = 10_000;
/// Largest `Envelope.json` accepted, in bytes.
pub const MAX_ENVELOPE_JSON: usize = 256 * 1024;
/// Largest `Envelope.id` accepted, in bytes.
pub const MAX_ENVELOPE_ID: usize = 128;
/// Largest gRPC message the mock HQ decodes (tonic's default is 4 MiB too).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Acks buffered per connection before the server waits for the client to read them.
const ACK_BUFFER: usize = 16;
/// How long [`MockHqHandle::stop`] waits for connections to close before abandoning them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Faults the mock HQ injects; settable at start and at runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Answer every Upload (and every message of an open one) with `UNAVAILABLE`.
    pub fail: bool,
    /// Wait this long before sending each ack (the Hello's included).
    pub ack_delay: Duration,
    /// Cut each connection after this many `UploadMessage`s (the Hello counts): the
    /// N-th message is stored and flushed, but its ack is never sent and the stream
    /// ends with `UNAVAILABLE`. Must be at least 2, or no connection would ever get
    /// past its Hello. `None` = never.
    pub cut_every: Option<u64>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// With `fail` set.
    pub fn with_fail(mut self, fail: bool) -> Faults {
        self.fail = fail;
        self
    }

    /// With `ack_delay` set.
    pub fn with_ack_delay(mut self, delay: Duration) -> Faults {
        self.ack_delay = delay;
        self
    }

    /// With `cut_every` set.
    pub fn with_cut_every(mut self, every: Option<u64>) -> Faults {
        self.cut_every = every;
        self
    }

    fn check(&self) -> Result<(), HqError> {
        match self.cut_every {
            Some(n) if n < 2 => Err(HqError::BadFaults(format!(
                "cut_every must be at least 2 (the Hello counts as a message), got {n}"
            ))),
            _ => Ok(()),
        }
    }
}

/// Why the mock HQ could not start or change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HqError {
    /// The data dir could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The listen address could not be bound.
    #[error("Failed to bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A fault setting that makes no sense.
    #[error("invalid faults: {0}")]
    BadFaults(String),
    /// `start` on a server already serving.
    #[error("the mock HQ is already serving on {0}")]
    AlreadyServing(SocketAddr),
    /// The enrolment endpoint's certificate could not be made.
    #[error("the enrolment endpoint's TLS: {0}")]
    EnrolmentTls(String),
}

/// Counters since the mock HQ started (not persisted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HqStats {
    /// Envelopes newly stored.
    pub envelopes_stored: u64,
    /// Envelopes re-sent with identical content, ignored and re-acked.
    pub duplicates_ignored: u64,
    /// Upload calls accepted (refused ones under `fail` are not counted).
    pub connections: u64,
    /// Connections cut by `cut_every`.
    pub cuts: u64,
    /// Upload calls refused or ended by `fail`.
    pub refused: u64,
    /// Streams ended with an error status other than cuts and refusals (the client's
    /// mistakes: gaps, conflicts, malformed messages).
    pub errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    envelopes_stored: AtomicU64,
    duplicates_ignored: AtomicU64,
    connections: AtomicU64,
    cuts: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug)]
pub(super) struct Shared {
    storage: Storage,
    /// A std lock: copied out in a moment, never held across `.await`.
    faults: Mutex<Faults>,
    counters: Counters,
    /// `true` while serving; open uploads end when it turns `false`.
    serving: watch::Sender<bool>,
    /// HQ's keys and its escrow policy.
    escrow: Arc<Escrow>,
    /// The one-time enrolment tokens (in `storage`'s database).
    tokens: Tokens,
    /// The store rosters (in `storage`'s database).
    rosters: super::roster::Rosters,
    /// HQ's CA, which signs the units' certificates at enrolment.
    ca: HqCa,
}

impl Shared {
    fn faults(&self) -> Faults {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one Enroll ([`super::enrol::enroll`]) off the async workers (sled and
    /// the signatures block).
    pub(super) async fn enroll(
        self: &Arc<Self>,
        request: EnrollRequest,
    ) -> Result<Response<EnrollReply>, Status> {
        if self.faults().fail {
            return Err(Status::unavailable("the mock HQ is set to fail"));
        }
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            super::enrol::enroll(
                &shared.tokens,
                &shared.ca,
                shared.escrow.keys(),
                &shared.rosters,
                &request,
            )
        })
        .await
        .map_err(|e| Status::internal(format!("enrolment task failed: {e}")))?
        .map(Response::new)
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// The tonic service; clones share everything.
#[derive(Debug, Clone)]
struct HqSvc {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl HqService for HqSvc {
    type UploadStream = ReceiverStream<Result<UploadAck, Status>>;

    async fn escrow(
        &self,
        request: Request<EscrowRequest>,
    ) -> Result<Response<EscrowReply>, Status> {
        if self.shared.faults().fail {
            return Err(Status::unavailable("the mock HQ is set to fail"));
        }
        self.shared
            .escrow
            .exchange(request.get_ref())
            .map(Response::new)
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollReply>, Status> {
        self.shared.enroll(request.into_inner()).await
    }

    async fn upload(
        &self,
        request: Request<Streaming<UploadMessage>>,
    ) -> Result<Response<Self::UploadStream>, Status> {
        let shared = Arc::clone(&self.shared);
        if shared.faults().fail {
            Shared::bump(&shared.counters.refused, 1);
            return Err(Status::unavailable("mock HQ is set to fail"));
        }
        Shared::bump(&shared.counters.connections, 1);
        let peer = request.remote_addr();
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(ACK_BUFFER);
        tokio::spawn(async move {
            let mut serving = shared.serving.subscribe();
            let outcome = tokio::select! {
                r = run_upload(&shared, inbound, &tx, peer) => r,
                _ = serving.wait_for(|s| !*s) => Err(Status::unavailable("mock HQ stopped")),
            };
            if let Err(status) = outcome {
                // Cuts and refusals count themselves; a client that went away is no error.
                if matches!(
                    status.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::DataLoss
                        | tonic::Code::Internal
                ) {
                    Shared::bump(&shared.counters.errors, 1);
                }
                tracing::info!(?peer, code = ?status.code(), message = status.message(), "Upload ended with an error");
                // The client may be gone or not reading; it gets a second, then nothing.
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Err(status))).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type AckTx = mpsc::Sender<Result<UploadAck, Status>>;

/// Sends an ack after the configured delay; `false` when the client is gone.
async fn send_ack(shared: &Shared, tx: &AckTx, acked_seq: u64) -> bool {
    let delay = shared.faults().ack_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    tx.send(Ok(UploadAck { acked_seq })).await.is_ok()
}

/// Whether the connection is cut after its `n`-th message.
fn cut_now(shared: &Shared, n: u64) -> Result<(), Status> {
    match shared.faults().cut_every {
        Some(every) if every > 0 && n.is_multiple_of(every) => {
            Shared::bump(&shared.counters.cuts, 1);
            Err(Status::unavailable(format!(
                "mock HQ cut the connection after {n} messages"
            )))
        }
        _ => Ok(()),
    }
}

fn storage_status(e: StorageError) -> Status {
    tracing::error!(error = %e, "HQ storage failed");
    Status::internal(format!("HQ storage failed: {e}"))
}

/// Checks one envelope: a known kind and every field present.
fn check_envelope(env: &Envelope) -> Result<(), String> {
    if env.seq == 0 {
        return Err("seq is 0; sequences start at 1".into());
    }
    match EnvelopeKind::try_from(env.kind) {
        Ok(EnvelopeKind::Unspecified) => return Err("kind is UNSPECIFIED".into()),
        Err(_) => return Err(format!("kind {} is unknown", env.kind)),
        Ok(_) => {}
    }
    if env.id.is_empty() {
        return Err("id is empty".into());
    }
    if env.id.len() > MAX_ENVELOPE_ID {
        return Err(format!(
            "id is {} bytes; at most {MAX_ENVELOPE_ID} are allowed",
            env.id.len()
        ));
    }
    if env.at_unix_ms <= 0 {
        return Err(format!("at_unix_ms is {}; it must be set", env.at_unix_ms));
    }
    if env.json.is_empty() {
        return Err("json is empty".into());
    }
    if env.json.len() > MAX_ENVELOPE_JSON {
        return Err(format!(
            "json is {} bytes; at most {MAX_ENVELOPE_JSON} are allowed",
            env.json.len()
        ));
    }
    Ok(())
}

fn check_batch(batch: &EnvelopeBatch) -> Result<(), Status> {
    if batch.envelopes.len() > MAX_BATCH_ENVELOPES {
        return Err(Status::invalid_argument(format!(
            "batch of {} envelopes; at most {MAX_BATCH_ENVELOPES} are allowed",
            batch.envelopes.len()
        )));
    }
    for (i, env) in batch.envelopes.iter().enumerate() {
        check_envelope(env).map_err(|why| {
            Status::invalid_argument(format!("envelope {i} (seq {}): {why}", env.seq))
        })?;
    }
    Ok(())
}

/// The next message, or `None` when the client closed its side.
async fn next_message(
    inbound: &mut Streaming<UploadMessage>,
) -> Result<Option<UploadMessage>, Status> {
    inbound.message().await
}

/// One Upload call: Hello, then batches, until the client closes or an error.
async fn run_upload(
    shared: &Shared,
    mut inbound: Streaming<UploadMessage>,
    tx: &AckTx,
    peer: Option<SocketAddr>,
) -> Result<(), Status> {
    let Some(first) = next_message(&mut inbound).await? else {
        return Ok(());
    };
    let hello = match first.body {
        Some(upload_message::Body::Hello(hello)) => hello,
        Some(upload_message::Body::Batch(_)) => {
            return Err(Status::invalid_argument(
                "the first message must be a Hello, got a batch",
            ));
        }
        None => {
            return Err(Status::invalid_argument(
                "the first message must be a Hello, got an empty message",
            ));
        }
    };
    let unit = hello.unit_id;
    if unit.is_empty() || unit.len() > MAX_UNIT_ID_LEN {
        return Err(Status::invalid_argument(format!(
            "Hello.unit_id must be 1 to {MAX_UNIT_ID_LEN} bytes, got {}",
            unit.len()
        )));
    }
    let acked = shared.storage.acked(&unit);
    tracing::info!(
        ?peer,
        unit = %unit,
        store = %hello.store_id,
        software = %hello.software_version,
        acked,
        "Store connected"
    );
    let mut n: u64 = 1;
    cut_now(shared, n)?;
    if !send_ack(shared, tx, acked).await {
        return Ok(());
    }
    // Group commit: batches that have already arrived are stored together and made
    // durable with one flush, then acknowledged with one ack (acks are cumulative).
    // A store draining a long outage keeps several batches in flight, and one fsync
    // per batch was what bounded the drain.
    let mut unflushed: Option<u64> = None;
    loop {
        let msg = match unflushed {
            None => next_message(&mut inbound).await?,
            // Cancel safe: `Streaming::message` loses nothing when not ready.
            Some(acked) => match tokio::time::timeout(Duration::ZERO, inbound.message()).await {
                Ok(msg) => msg?,
                Err(_) => {
                    unflushed = None;
                    if !settle(shared, tx, acked).await? {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        let Some(msg) = msg else { break };
        n += 1;
        if shared.faults().fail {
            if unflushed.is_some() {
                shared.storage.flush().await.map_err(storage_status)?;
            }
            Shared::bump(&shared.counters.refused, 1);
            return Err(Status::unavailable("mock HQ is set to fail"));
        }
        let batch = match msg.body {
            Some(upload_message::Body::Batch(batch)) => batch,
            Some(upload_message::Body::Hello(_)) => {
                return Err(Status::invalid_argument("Hello sent twice on one stream"));
            }
            None => return Err(Status::invalid_argument("empty UploadMessage")),
        };
        check_batch(&batch)?;
        let out = shared
            .storage
            .append(&unit, &batch.envelopes)
            .map_err(storage_status)?;
        Shared::bump(&shared.counters.envelopes_stored, out.stored);
        Shared::bump(&shared.counters.duplicates_ignored, out.duplicates);
        for alert in &out.audit_alerts {
            tracing::warn!(
                unit = %alert.unit,
                held_seq = alert.held.as_ref().map(|h| h.seq),
                reported_seq = alert.reported.seq,
                reason = %alert.reason,
                "A unit's audit chain went backwards"
            );
        }
        unflushed = Some(out.acked);
        if let Err(cut) = cut_now(shared, n) {
            // The N-th message is stored and flushed, never acknowledged.
            shared.storage.flush().await.map_err(storage_status)?;
            return Err(cut);
        }
        if let Some(stop) = out.stop {
            if !settle(shared, tx, out.acked).await? {
                return Ok(());
            }
            return Err(match stop {
                AppendStop::Conflict { seq } => Status::data_loss(format!(
                    "unit {unit}: seq {seq} is already stored with different content"
                )),
                AppendStop::Gap { expected, got } => Status::failed_precondition(format!(
                    "unit {unit}: expected seq {expected}, got {got}; nothing after the gap was stored"
                )),
            });
        }
    }
    if let Some(acked) = unflushed {
        settle(shared, tx, acked).await?;
    }
    Ok(())
}

/// Flush what was stored, then acknowledge `acked`; `false` when the client is gone.
async fn settle(shared: &Shared, tx: &AckTx, acked: u64) -> Result<bool, Status> {
    shared.storage.flush().await.map_err(storage_status)?;
    Ok(send_ack(shared, tx, acked).await)
}

/// The mock HQ: a tonic `HqService` that stores envelopes in sled under a data dir.
#[derive(Debug)]
#[non_exhaustive]
pub struct MockHq;

impl MockHq {
    /// Opens `data_dir`, binds `listen` (port 0 picks one) and serves plaintext h2 until
    /// [`MockHqHandle::shutdown`].
    pub async fn start(
        listen: SocketAddr,
        data_dir: &Path,
        faults: Faults,
    ) -> Result<MockHqHandle, HqError> {
        Self::start_with(listen, data_dir, faults, None).await
    }

    /// Like [`MockHq::start`], serving TLS under `tls` when given: HQ's side of the
    /// mutual TLS link (`outpost_security::tls::mtls_server_config` with the CA that
    /// issues store certificates). A store whose certificate is refused never reaches
    /// the service; [`MockHqHandle::tls_refused`] counts those handshakes.
    pub async fn start_with(
        listen: SocketAddr,
        data_dir: &Path,
        faults: Faults,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<MockHqHandle, HqError> {
        faults.check()?;
        let dir = data_dir.to_owned();
        let storage = tokio::task::spawn_blocking(move || Storage::open(&dir))
            .await
            .map_err(|e| {
                HqError::Storage(StorageError::Corrupt(format!("open task failed: {e}")))
            })??;
        let keys = HqKeys::load_or_create(data_dir)
            .map_err(|e| HqError::Storage(StorageError::Corrupt(e.to_string())))?;
        let tokens = storage.enroll_tokens()?;
        let rosters = storage.rosters()?;
        let ca = HqCa::load_or_create(data_dir)
            .map_err(|e| HqError::Storage(StorageError::Corrupt(e.to_string())))?;
        let (serving, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            storage,
            faults: Mutex::new(faults),
            counters: Counters::default(),
            serving,
            escrow: Arc::new(Escrow::new(keys)),
            tokens,
            rosters,
            ca,
        });
        let handle = MockHqHandle {
            shared,
            addr: Mutex::new(listen),
            running: tokio::sync::Mutex::new(None),
            tls,
            handshakes: Mutex::new(Vec::new()),
        };
        handle.serve(listen).await?;
        Ok(handle)
    }
}

#[derive(Debug)]
struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// A running (or stopped) mock HQ. Dropping it without [`MockHqHandle::shutdown`]
/// leaves the server task serving until the runtime ends.
#[derive(Debug)]
pub struct MockHqHandle {
    shared: Arc<Shared>,
    /// The bound address; after the first start it keeps the real port, so
    /// [`MockHqHandle::start`] rebinds the same one.
    addr: Mutex<SocketAddr>,
    /// An async lock: stop awaits the server task while holding it.
    running: tokio::sync::Mutex<Option<Running>>,
    /// Serve TLS under this configuration; plaintext when `None`.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The handshake counters of each start (TLS only).
    handshakes: Mutex<Vec<Arc<outpost_proto::grpc_tls::HandshakeStats>>>,
}

/// A listener on `listen`, and the address it got.
pub(super) async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), HqError> {
    let err = |source| HqError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

impl MockHqHandle {
    async fn serve(&self, listen: SocketAddr) -> Result<(), HqError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Err(HqError::AlreadyServing(self.addr()));
        }
        let (listener, bound) = bind(listen).await?;
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        self.shared.serving.send_replace(true);
        let svc = HqServiceServer::new(HqSvc {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (shutdown, rx) = oneshot::channel::<()>();
        let router = tonic::transport::Server::builder().add_service(svc);
        let stopped = async {
            let _ = rx.await;
        };
        let task = match &self.tls {
            Some(config) => {
                let (incoming, stats) = outpost_proto::grpc_tls::incoming(listener, config);
                self.handshakes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(stats);
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
            }
            None => tokio::spawn(
                router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped),
            ),
        };
        tracing::info!(addr = %bound, tls = self.tls.is_some(), "Mock HQ serving");
        *running = Some(Running { shutdown, task });
        Ok(())
    }

    /// Issues a one-time enrolment token for `store_id`, valid `ttl_secs`
    /// (`outpost-hq enroll-token` on a stopped HQ does the same).
    pub fn issue_enroll_token(
        &self,
        store_id: &str,
        ttl_secs: u64,
    ) -> Result<String, super::enrol::EnrolError> {
        self.shared.tokens.issue(store_id, ttl_secs)
    }

    /// The current roster of `store_id` (what `PushRoster` sends the store's units).
    pub fn roster(
        &self,
        store_id: &str,
    ) -> Result<Option<outpost_p2p::roster::SignedRoster>, super::roster::RosterStoreError> {
        self.shared.rosters.get(store_id)
    }

    /// What the enrolment endpoint serves ([`super::enrol_endpoint`]).
    pub(super) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// HQ's CA: its certificate, and certificates it issues (HQ's own server
    /// certificate for mutual TLS).
    pub fn ca(&self) -> &HqCa {
        &self.shared.ca
    }

    /// HQ's keys and escrow policy: sign bundles, leases and commands; mark a unit
    /// stolen; approve an unlock.
    pub fn escrow(&self) -> &Arc<Escrow> {
        &self.shared.escrow
    }

    /// The address the server is (or was last) bound to.
    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://ADDR` (`https://ADDR` with TLS), for a tonic client or a store's
    /// `sync.hq_url`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr())
    }

    /// TLS handshakes refused since the first start (no, an expired or a foreign client
    /// certificate, a client that does not trust this HQ). 0 without TLS.
    pub fn tls_refused(&self) -> u64 {
        self.handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| s.refused())
            .sum()
    }

    /// Stops serving: open uploads end with `UNAVAILABLE`, the port is released and
    /// new connections are refused until [`MockHqHandle::start`]. Stopping a stopped
    /// server does nothing.
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        let Some(Running { shutdown, mut task }) = running.take() else {
            return;
        };
        self.shared.serving.send_replace(false);
        let _ = shutdown.send(());
        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "Mock HQ server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "Mock HQ server task failed"),
            Err(_) => {
                tracing::warn!("Mock HQ connections did not close in time; abandoning them");
                task.abort();
            }
        }
        tracing::info!(addr = %self.addr(), "Mock HQ stopped");
    }

    /// Serves again on the same address (same port) after [`MockHqHandle::stop`].
    pub async fn start(&self) -> Result<(), HqError> {
        self.serve(self.addr()).await
    }

    /// Stops serving and makes everything durable. The data dir can be opened again
    /// (by a new [`MockHq::start`]) once this returns.
    pub async fn shutdown(self) -> Result<(), HqError> {
        self.stop().await;
        self.shared.storage.flush().await?;
        Ok(())
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Changes the faults; open connections see the change at their next message.
    pub fn set_faults(&self, faults: Faults) -> Result<(), HqError> {
        faults.check()?;
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
        Ok(())
    }

    /// The unit's stored envelopes in sequence order.
    pub fn received(&self, unit: &str) -> Vec<Envelope> {
        self.shared.storage.received(unit)
    }

    /// The unit's stored envelopes of one kind (sales, device events, alerts,
    /// telemetry, ...) in sequence order.
    pub fn received_kind(&self, unit: &str, kind: EnvelopeKind) -> Vec<Envelope> {
        self.shared.storage.received_kind(unit, kind as i32)
    }

    /// Highest contiguous sequence stored for the unit (0 = none).
    pub fn acked(&self, unit: &str) -> u64 {
        self.shared.storage.acked(unit)
    }

    /// Units that uploaded anything, sorted.
    pub fn units(&self) -> Vec<String> {
        self.shared.storage.units()
    }

    /// The last audit chain head the unit reported.
    pub fn audit_head(&self, unit: &str) -> Option<AuditHead> {
        self.shared.storage.audit_head(unit)
    }

    /// Every report so far (this data dir's, across restarts) that showed a unit's
    /// audit chain went backwards, oldest first.
    pub fn audit_alerts(&self) -> Vec<ChainAlert> {
        self.shared.storage.audit_alerts()
    }

    /// The counters since start.
    pub fn stats(&self) -> HqStats {
        let c = &self.shared.counters;
        HqStats {
            envelopes_stored: c.envelopes_stored.load(Ordering::Relaxed),
            duplicates_ignored: c.duplicates_ignored.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
            cuts: c.cuts.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Envelope {
        Envelope {
            seq: 1,
            kind: EnvelopeKind::Sale as i32,
            id: "a".into(),
            at_unix_ms: 1,
            json: b"{}".to_vec(),
        }
    }

    #[test]
    fn envelope_checks_name_the_missing_field() {
        assert_eq!(check_envelope(&good()), Ok(()));
        type Breakage = Box<dyn Fn(&mut Envelope)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|e| e.seq = 0), "seq"),
            (Box::new(|e| e.kind = 0), "UNSPECIFIED"),
            (Box::new(|e| e.kind = 99), "unknown"),
            (Box::new(|e| e.id.clear()), "id"),
            (Box::new(|e| e.id = "x".repeat(129)), "id"),
            (Box::new(|e| e.at_unix_ms = 0), "at_unix_ms"),
            (Box::new(|e| e.json.clear()), "json"),
            (
                Box::new(|e| e.json = vec![b' '; MAX_ENVELOPE_JSON + 1]),
                "json",
            ),
        ];
        for (i, (breakit, word)) in cases.iter().enumerate() {
            let mut e = good();
            breakit(&mut e);
            let err = check_envelope(&e).unwrap_err();
            assert!(err.contains(word), "case {i}: {err}");
        }
    }

    #[test]
    fn cut_every_below_two_is_refused() {
        assert!(Faults::none().with_cut_every(Some(1)).check().is_err());
        assert!(Faults::none().with_cut_every(Some(0)).check().is_err());
        assert!(Faults::none().with_cut_every(Some(2)).check().is_ok());
    }
}
