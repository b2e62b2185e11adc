//! The escrow exchange with HQ over gRPC (`HqService.Escrow`): how an enrolled unit
//! gets HQ's share of its data key at start, or the key back after a lock.
//!
//! One short call per exchange on a fresh connection to HQ's URL (the uplink's), with
//! the uplink's mutual TLS: HQ knows which unit asks from its certificate, and the
//! blinded point tells it nothing about the key.

use std::sync::Arc;
use std::time::Duration;

use outpost_proto::hq::hq_service_client::HqServiceClient;
use outpost_proto::hq::{EscrowPurpose as WirePurpose, EscrowRequest};

use crate::access::escrow_link::{EscrowAnswer, EscrowLink, EscrowLinkError, EscrowPurpose};

/// HQ's escrow service at the uplink's URL.
#[derive(Clone)]
pub struct GrpcEscrow {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl std::fmt::Debug for GrpcEscrow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcEscrow")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl GrpcEscrow {
    /// HQ at `url`, over `tls` (plaintext when `None`: loopback only, as the settings
    /// allow), each exchange bounded by `timeout`.
    pub fn new(url: String, tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration) -> Self {
        GrpcEscrow { url, tls, timeout }
    }
}

#[async_trait::async_trait]
impl EscrowLink for GrpcEscrow {
    async fn exchange(
        &self,
        store: &str,
        unit: &str,
        purpose: EscrowPurpose,
        point: [u8; 32],
    ) -> Result<EscrowAnswer, EscrowLinkError> {
        let unreachable = |e: String| EscrowLinkError::Unreachable(format!("{}: {e}", self.url));
        let endpoint = tonic::transport::Endpoint::from_shared(self.url.clone())
            .map_err(|e| unreachable(e.to_string()))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = match &self.tls {
            Some(tls) => {
                endpoint
                    .connect_with_connector(outpost_proto::grpc_tls::TlsConnector::new(tls))
                    .await
            }
            None => endpoint.connect().await,
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let request = EscrowRequest {
            store_id: store.to_owned(),
            unit_id: unit.to_owned(),
            purpose: match purpose {
                EscrowPurpose::Share => WirePurpose::Share,
                EscrowPurpose::Recovery => WirePurpose::Recovery,
            } as i32,
            point: point.to_vec(),
        };
        let reply = match HqServiceClient::new(channel).escrow(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                return Err(match s.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown => unreachable(s.message().to_owned()),
                    _ => EscrowLinkError::Refused(format!("{}: {}", s.code(), s.message())),
                });
            }
        };
        let point: [u8; 32] = reply.point.as_slice().try_into().map_err(|_| {
            EscrowLinkError::Refused(format!(
                "HQ answered a point of {} bytes, not 32",
                reply.point.len()
            ))
        })?;
        Ok(EscrowAnswer {
            point,
            signed_lease: reply.signed_lease,
            signed_command: reply.signed_command,
        })
    }
}
