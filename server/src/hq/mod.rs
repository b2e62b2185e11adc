//! The HQ link: the gRPC port HQ pushes to, the uplink that delivers the outbox, and
//! what they need: the records HQ pushed, the sync status, events and artifacts.
//!
//! # Layout
//! - [`service`]: `StoreService`, which HQ calls to push catalogs, promotions,
//!   stock counts and commands, and to ask the store's status.
//! - [`catalog_push`]: `PushCatalog` and `GetPushState`: the streamed, resumable
//!   catalog push, bounded in time (idle streams, parked pushes).
//! - [`auth`]: on a port without mutual TLS, who may call what: reads are open,
//!   changes need HQ's push token or an admin session.
//! - [`record_push`]: tax rates, store profile, planogram and device set pushes,
//!   stored by [`records`] (versioned records in the journal).
//! - [`convert`]: HQ's messages into domain types.
//! - [`loyalty_push`]: loyalty rules, customers and vouchers (`docs/loyalty.md`).
//! - [`roster_push`]: the store mesh's roster HQ pushes (kept in the data dir, applied
//!   to the running mesh).
//! - [`uplink`]: the task that delivers the outbox to HQ's `HqService` exactly once.
//! - [`status`]: the sync status (backlog, link, pushed versions).
//! - [`events`]: the watcher that writes device events, alerts and telemetry for HQ.
//! - [`metrics`]: the port's requests counted for `/metrics`.
//! - [`artifacts`]: catalog snapshots HQ offers through the store mesh.
//! - [`escrow`]: the escrow exchange an enrolled unit's sealed key needs
//!   (`HqService.Escrow`).
//! - [`enrol`]: enrolment with HQ's one-time token (`HqService.Enroll`), applied
//!   through the bundle path of `access`.
//!
//! The gRPC port also serves the standard health service and server reflection, so
//! `grpcurl -plaintext 127.0.0.1:50051 list` works on a bench (or, with mutual TLS,
//! `grpcurl -cacert … -cert … -key … HOST:50051 list` with a certificate from HQ's CA).
//! Both stay open, like the store's status reads.

pub mod artifacts;
pub mod auth;
pub mod catalog_push;
pub mod convert;
pub mod enrol;
pub mod escrow;
pub mod events;
pub mod loyalty_push;
pub mod metrics;
pub mod record_push;
pub mod records;
pub mod roster_push;
pub mod service;
pub mod status;
pub mod uplink;

use std::future::Future;
use std::sync::Arc;

use outpost_proto::hq::store_service_server::StoreServiceServer;

use crate::config::Settings;
use service::StoreGrpc;
use uplink::SyncState;

/// Largest gRPC message the store accepts (one catalog chunk).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// A storage failure as a gRPC status: busy, a data disk at its reserve and locked are
/// the caller's to retry or wait out; anything else is the store's fault, logged.
fn store_status(e: crate::store::StoreError) -> tonic::Status {
    use crate::store::StoreError;
    match e {
        StoreError::Busy(m) => tonic::Status::unavailable(m),
        full @ StoreError::DiskFull { .. } => tonic::Status::unavailable(full.to_string()),
        StoreError::DeviceLocked => tonic::Status::failed_precondition(
            "the device is locked: its data key is wiped from memory until a signed unlock",
        ),
        other => {
            tracing::error!(error = %other, "A push failed in storage");
            tonic::Status::internal(format!("storage failed: {other}"))
        }
    }
}

/// Serve the store's gRPC port on `listener` until `shutdown` resolves: mutual TLS
/// under `tls` (clients must present a certificate from HQ's CA), plaintext without;
/// then every call that changes the store needs HQ's push token or an admin session
/// ([`auth`]).
// Each argument is a distinct shared handle the services need; a struct would only
// rename them.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    sales: crate::sales::Sales,
    settings: Arc<Settings>,
    sync: Arc<SyncState>,
    security: Arc<crate::access::Access>,
    artifacts: Option<Arc<crate::hq::artifacts::Artifacts>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // Pings find a peer that vanished (its streams end, a push it held is parked);
    // a ping unanswered for as long again closes the connection.
    let keepalive = std::time::Duration::from_secs(settings.sync.grpc_keepalive_secs);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<StoreServiceServer<StoreGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(outpost_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| {
            // The descriptors are compiled in; failing here is a build defect.
            tracing::error!(error = %e, "gRPC reflection could not load its descriptors");
            e
        });
    // Without mutual TLS any local process reaches the port: calls are authenticated.
    let auth = tls.is_none().then(|| {
        Arc::new(auth::PushAuth::new(
            security.clone(),
            settings.store.id.clone(),
            settings.sync.unit_id.clone(),
        ))
    });
    let service = StoreServiceServer::new(
        StoreGrpc::new(sales, settings, sync)
            .with_security(security)
            .with_artifacts(artifacts),
    )
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(64)
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .layer(metrics::GrpcMetricsLayer);
    let mut router = builder.add_service(health);
    router = match auth {
        Some(auth) => router.add_service(auth::Authenticated::new(service, auth)),
        None => router.add_service(service),
    };
    if let Ok(reflection) = reflection {
        router = router.add_service(reflection);
    }
    match tls {
        Some(config) => {
            let (incoming, _stats) = outpost_proto::grpc_tls::incoming(listener, &config);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            // Silent and trickling peers are closed before tonic sees them.
            let (incoming, _stats) = outpost_proto::grpc_accept::plaintext(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}
