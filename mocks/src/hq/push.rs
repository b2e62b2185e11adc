//! HQ's side of `StoreService`: push a catalog (resumable), ask a store's status.
//! Calls that change the store carry [`Credentials`] on a port without mutual TLS.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outpost_proto::grpc_tls::TlsConnector;
use outpost_proto::hq::store_service_client::StoreServiceClient;
use outpost_proto::hq::{
    CatalogChunk, CatalogPushHeader, CatalogPushKind, GetPushStateRequest, GetStatusRequest,
    Product, PushCatalogReply, StoreStatus,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::auth::{Authorizer, Credentials, StoreClient};
use super::product::{LineError, Scan, check_removed_sku, for_each_product};

/// Most products in one chunk.
pub const MAX_CHUNK: usize = 10_000;
/// Chunks produced ahead of the network.
const CHUNKS_AHEAD: usize = 4;
/// How long to wait for the store's TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the products come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CatalogSource {
    /// A JSON-lines file, read twice (checked whole first, then streamed), never held
    /// in memory.
    File(PathBuf),
    /// JSON lines in memory.
    JsonLines(Arc<[u8]>),
    /// Products already converted (benchmarks); not checked here, the store checks.
    Products(Arc<[Product]>),
}

/// Snapshot or delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushKind {
    /// The whole catalog.
    Snapshot,
    /// Upserts and removals against a base version.
    Delta,
}

/// How to push.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PushOptions {
    /// Snapshot or delta.
    pub kind: PushKind,
    /// The version the push creates; default: the store's live version + 1.
    pub version: Option<u64>,
    /// For a delta, the version it applies to; default: the store's live version.
    pub base_version: Option<u64>,
    /// Products per chunk, 1 to [`MAX_CHUNK`].
    pub chunk: usize,
    /// The push's id; default: derived from the kind, versions and content, so running
    /// the same push again resumes it.
    pub push_id: Option<String>,
    /// SKUs to remove (delta only).
    pub removals: Vec<String>,
    /// Draw a progress bar on stderr (indicatif draws nothing when it is not a TTY).
    pub progress: bool,
    /// Dial the store over TLS with this configuration (an `https://` URL): HQ's side of
    /// the mutual TLS link, trusting the CA that issued the store's certificate and
    /// presenting a certificate the store accepts. Plaintext when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// What proves the push comes from HQ on a plaintext port (unneeded over mutual
    /// TLS, where the certificate does).
    pub credentials: Credentials,
}

impl PushOptions {
    /// A push of `kind` with the defaults: versions from the store, 1,000 products per
    /// chunk, a content-derived push id, no removals, no progress bar.
    pub fn new(kind: PushKind) -> PushOptions {
        PushOptions {
            kind,
            version: None,
            base_version: None,
            chunk: 1000,
            push_id: None,
            removals: Vec::new(),
            progress: false,
            tls: None,
            credentials: Credentials::None,
        }
    }
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// Options that contradict each other.
    #[error("invalid push options: {0}")]
    Options(String),
    /// The file could not be read.
    #[error("Failed to read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bad input lines; nothing was pushed.
    #[error("{bad_lines} bad line(s), nothing was pushed:\n{}", list(.errors))]
    BadLines {
        /// The first bad lines.
        errors: Vec<LineError>,
        /// How many lines were bad in all.
        bad_lines: u64,
    },
    /// The store could not be reached (or a certificate was refused).
    #[error("Failed to connect to the store at {url}: {}", outpost_proto::grpc_tls::error_chain(.source))]
    Connect {
        /// The URL given.
        url: String,
        /// tonic's error.
        source: tonic::transport::Error,
    },
    /// The store answered a call with an error status.
    #[error("{call} failed: {code:?}: {message}", code = .status.code(), message = .status.message())]
    Rpc {
        /// The gRPC method.
        call: &'static str,
        /// The store's answer.
        status: tonic::Status,
    },
    /// The store knows this push id with another header.
    #[error("the store holds push {push_id} with another header ({held}); use another --push-id")]
    PushIdConflict {
        /// The id.
        push_id: String,
        /// The store's header, debug-printed.
        held: String,
    },
    /// The store reports more products received than the push has.
    #[error("the store reports {received} products of push {push_id} received, but it has {total}")]
    BadPushState {
        /// The id.
        push_id: String,
        /// What the store reported.
        received: u64,
        /// The push's size.
        total: u64,
    },
    /// The file changed between the check and the upload: what the store got (and
    /// may have applied, if the change came after the last product) is not what was
    /// checked.
    #[error("the input changed while it was pushed; check the store's catalog and push again")]
    SourceChanged,
    /// A worker task panicked.
    #[error("push worker failed: {0}")]
    Task(String),
    /// The credentials cannot be sent to this store.
    #[error("credentials: {0}")]
    Credentials(String),
}

fn list(errors: &[LineError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Connects to a store's gRPC port: `http://HOST:PORT` plaintext, or `https://HOST:PORT`
/// with `tls` (mutual TLS; the store's certificate must be valid for HOST). Every call
/// of the client carries `credentials`; for [`Credentials::HqKey`] the store's
/// `GetStatus` says which store and unit the tokens name.
pub async fn connect(
    store_url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    credentials: &Credentials,
) -> Result<StoreClient, PushError> {
    connect_tls(store_url, tls, credentials)
        .await
        .map(|(client, _)| client)
}

/// A store client, and its TLS connector (which keeps the TLS error that made a later
/// call fail: in TLS 1.3 a store that refuses HQ's client certificate says so only after
/// the handshake, and tonic reports just "transport error").
async fn connect_tls(
    store_url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    credentials: &Credentials,
) -> Result<(StoreClient, Option<TlsConnector>), PushError> {
    let connect_err = |source| PushError::Connect {
        url: store_url.to_owned(),
        source,
    };
    let https = store_url.starts_with("https://");
    if https != tls.is_some() {
        return Err(PushError::Options(format!(
            "{store_url}: an https:// store URL needs TLS options, and TLS options need an https:// URL"
        )));
    }
    let endpoint = tonic::transport::Endpoint::from_shared(store_url.to_owned())
        .map_err(connect_err)?
        .connect_timeout(CONNECT_TIMEOUT);
    let connector = tls.map(|tls| TlsConnector::new(tls));
    let channel = match &connector {
        Some(connector) => endpoint.connect_with_connector(connector.clone()).await,
        None => endpoint.connect().await,
    }
    .map_err(connect_err)?;
    let authorizer = match credentials {
        Credentials::None => Authorizer::none(),
        Credentials::AdminSession(id) => {
            Authorizer::admin_session(id).map_err(PushError::Credentials)?
        }
        Credentials::HqKey(key) => {
            let mut plain =
                StoreServiceClient::with_interceptor(channel.clone(), Authorizer::none());
            let status = get_status(&mut plain, connector.as_ref()).await?;
            Authorizer::hq_token(key.clone(), &status.store_id, &status.unit_id)
                .map_err(PushError::Credentials)?
        }
    };
    Ok((
        StoreServiceClient::with_interceptor(channel, authorizer),
        connector,
    ))
}

/// `PushError::Rpc` for `status`, with the connection's TLS error when there is one.
fn rpc_error(call: &'static str, status: tonic::Status, tls: Option<&TlsConnector>) -> PushError {
    let status = match tls.and_then(TlsConnector::take_error) {
        Some(why) => {
            tonic::Status::new(status.code(), format!("{} (TLS: {why})", status.message()))
        }
        None => status,
    };
    PushError::Rpc { call, status }
}

/// The store's `GetStatus` (over TLS with `tls`, see [`connect`]).
pub async fn store_status(
    store_url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<StoreStatus, PushError> {
    let (mut client, connector) = connect_tls(store_url, tls, &Credentials::None).await?;
    get_status(&mut client, connector.as_ref()).await
}

async fn get_status(
    client: &mut StoreClient,
    tls: Option<&TlsConnector>,
) -> Result<StoreStatus, PushError> {
    client
        .get_status(GetStatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| rpc_error("GetStatus", status, tls))
}

/// A [`StoreStatus`] as JSON, field names as in `hq.proto`.
pub fn status_json(s: &StoreStatus) -> serde_json::Value {
    serde_json::json!({
        "unit_id": s.unit_id,
        "store_id": s.store_id,
        "software_version": s.software_version,
        "catalog_version": s.catalog_version,
        "catalog_products": s.catalog_products,
        "promotions_version": s.promotions_version,
        "tax_rates_version": s.tax_rates_version,
        "planogram_version": s.planogram_version,
        "store_config_version": s.store_config_version,
        "device_config_version": s.device_config_version,
        "device_config_applied_version": s.device_config_applied_version,
        "stock_counts_version": s.stock_counts_version,
        "outbox_pending": s.outbox_pending,
        "outbox_oldest_age_secs": s.outbox_oldest_age_secs,
        "outbox_bytes": s.outbox_bytes,
        "acked_seq": s.acked_seq,
        "last_sync_unix_ms": s.last_sync_unix_ms,
        "health": s.health,
        "health_reasons": s.health_reasons,
    })
}

/// Calls `f` with each product of `source` in order; bad lines are collected.
fn each_product(source: &CatalogSource, mut f: impl FnMut(Product)) -> Result<Scan, PushError> {
    match source {
        CatalogSource::File(path) => {
            let io = |source| PushError::Io {
                path: path.display().to_string(),
                source,
            };
            let file = File::open(path).map_err(io)?;
            for_each_product(BufReader::with_capacity(256 * 1024, file), f).map_err(io)
        }
        CatalogSource::JsonLines(bytes) => {
            for_each_product(&bytes[..], f).map_err(|source| PushError::Io {
                path: "<memory>".into(),
                source,
            })
        }
        CatalogSource::Products(products) => {
            for p in products.iter() {
                f(p.clone());
            }
            Ok(Scan {
                products: products.len() as u64,
                ..Scan::default()
            })
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PushError> + Send + 'static,
) -> Result<T, PushError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PushError::Task(e.to_string()))?
}

/// Checks `source` whole, then streams it to the store's `PushCatalog` in chunks,
/// resuming at the offset `GetPushState` reports (from 0 when the store does not know
/// the push or does not implement `GetPushState`). A bad line fails the push before
/// anything is sent. Not cancel-safe in effect: dropping it mid-way leaves a partial
/// push at the store, which the next call with the same push id resumes.
pub async fn push_catalog(
    store_url: &str,
    source: CatalogSource,
    opts: &PushOptions,
) -> Result<PushCatalogReply, PushError> {
    if !(1..=MAX_CHUNK).contains(&opts.chunk) {
        return Err(PushError::Options(format!(
            "chunk must be 1 to {MAX_CHUNK} products, got {}",
            opts.chunk
        )));
    }
    if opts.kind == PushKind::Snapshot && (!opts.removals.is_empty() || opts.base_version.is_some())
    {
        return Err(PushError::Options(
            "a snapshot has no base version and no removals (they are for --delta)".into(),
        ));
    }
    for sku in &opts.removals {
        check_removed_sku(sku).map_err(|m| PushError::Options(format!("--remove {sku:?}: {m}")))?;
    }

    // Pass 1: check every line and hash the content (for the default push id).
    let scan_source = source.clone();
    let (scan, digest) = blocking(move || {
        let mut hasher = blake3::Hasher::new();
        let mut buf = Vec::new();
        let scan = each_product(&scan_source, |p| {
            buf.clear();
            p.encode_length_delimited(&mut buf)
                .unwrap_or_else(|_| unreachable!("a Vec grows as needed"));
            hasher.update(&buf);
        })?;
        Ok((scan, hasher.finalize()))
    })
    .await?;
    if scan.bad_lines > 0 {
        return Err(PushError::BadLines {
            errors: scan.errors,
            bad_lines: scan.bad_lines,
        });
    }
    let total = scan.products;

    let (mut client, connector) =
        connect_tls(store_url, opts.tls.as_ref(), &opts.credentials).await?;
    let tls = connector.as_ref();
    let live = if opts.version.is_none()
        || (opts.kind == PushKind::Delta && opts.base_version.is_none())
    {
        Some(get_status(&mut client, tls).await?.catalog_version)
    } else {
        None
    };
    let version = opts
        .version
        .or_else(|| live.map(|v| v + 1))
        .unwrap_or_default();
    let (kind, base_version) = match opts.kind {
        PushKind::Snapshot => (CatalogPushKind::Snapshot, 0),
        PushKind::Delta => (
            CatalogPushKind::Delta,
            opts.base_version.or(live).unwrap_or_default(),
        ),
    };
    let push_id = match &opts.push_id {
        Some(id) => id.clone(),
        None => {
            let mut h = blake3::Hasher::new();
            h.update(&(kind as i32).to_be_bytes());
            h.update(&version.to_be_bytes());
            h.update(&base_version.to_be_bytes());
            h.update(digest.as_bytes());
            for sku in &opts.removals {
                h.update(sku.as_bytes());
                h.update(b"\n");
            }
            format!("push-{}", &h.finalize().to_hex()[..32])
        }
    };
    let header = CatalogPushHeader {
        push_id: push_id.clone(),
        kind: kind as i32,
        version,
        base_version,
        total_products: total,
        total_removals: opts.removals.len() as u64,
    };

    let skip = match client
        .get_push_state(GetPushStateRequest {
            push_id: push_id.clone(),
        })
        .await
    {
        Ok(state) => {
            let state = state.into_inner();
            match state.header {
                None => 0,
                Some(held) if held == header => state.received,
                Some(held) => {
                    return Err(PushError::PushIdConflict {
                        push_id,
                        held: format!("{held:?}"),
                    });
                }
            }
        }
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unimplemented | tonic::Code::NotFound
            ) =>
        {
            0
        }
        Err(status) => return Err(rpc_error("GetPushState", status, tls)),
    };
    if skip > total {
        return Err(PushError::BadPushState {
            push_id,
            received: skip,
            total,
        });
    }
    tracing::info!(%push_id, total, skip, version, base_version, "Pushing catalog");

    let bar = if opts.progress {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} products [{bar:40}] {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(skip);

    // Pass 2: stream the products from `skip` on, in chunks, from a blocking reader.
    let (tx, rx) = mpsc::channel::<CatalogChunk>(CHUNKS_AHEAD);
    let chunk_size = opts.chunk;
    let removals = opts.removals.clone();
    let producer_bar = bar.clone();
    let producer = tokio::task::spawn_blocking(move || {
        produce_chunks(
            &source,
            header,
            skip,
            total,
            chunk_size,
            removals,
            &tx,
            &producer_bar,
        )
    });
    let reply = client.push_catalog(ReceiverStream::new(rx)).await;
    let produced = producer.await.map_err(|e| PushError::Task(e.to_string()))?;
    bar.finish_and_clear();
    produced?;
    let reply = reply
        .map(tonic::Response::into_inner)
        .map_err(|status| rpc_error("PushCatalog", status, tls))?;
    tracing::info!(
        %push_id,
        version = reply.version,
        products = reply.products,
        apply_ms = reply.apply_ms,
        "Catalog pushed"
    );
    Ok(reply)
}

/// Builds and sends the chunks; stops quietly when the store stops reading (its answer
/// says why). `SourceChanged` when the second pass does not match the first.
#[allow(clippy::too_many_arguments)]
fn produce_chunks(
    source: &CatalogSource,
    header: CatalogPushHeader,
    skip: u64,
    total: u64,
    chunk_size: usize,
    removals: Vec<String>,
    tx: &mpsc::Sender<CatalogChunk>,
    bar: &ProgressBar,
) -> Result<(), PushError> {
    let mut header = Some(header);
    let mut index: u64 = 0;
    let mut offset = skip;
    let mut products: Vec<Product> = Vec::with_capacity(chunk_size);
    let mut gone = false;
    let mut sent_last = false;
    let mut removals = Some(removals);
    let mut send = |products: Vec<Product>, offset: u64, last: bool| -> bool {
        let n = products.len() as u64;
        let chunk = CatalogChunk {
            header: header.take(),
            offset,
            products,
            removed_skus: if last {
                removals.take().unwrap_or_default()
            } else {
                Vec::new()
            },
            last,
        };
        if tx.blocking_send(chunk).is_err() {
            return false;
        }
        bar.inc(n);
        true
    };
    let scan = each_product(source, |p| {
        if gone {
            return;
        }
        index += 1;
        if index <= skip || index > total {
            return;
        }
        products.push(p);
        if products.len() == chunk_size {
            let last = index == total;
            let full = std::mem::replace(&mut products, Vec::with_capacity(chunk_size));
            if !send(full, offset, last) {
                gone = true;
            }
            sent_last = last;
            offset = index;
        }
    })?;
    if gone {
        return Ok(());
    }
    if scan.bad_lines > 0 || scan.products != total {
        // No `last` chunk was sent: the store holds an incomplete push, applies nothing.
        return Err(PushError::SourceChanged);
    }
    if !sent_last {
        // The remainder, or an empty chunk carrying `last` (and the header, when the
        // store already held every product of a resumed push, or the push is empty).
        send(products, offset, true);
    }
    Ok(())
}
