//! HQ's enrolment endpoint: `Enroll` over TLS with no client certificate, for units
//! that have none yet, on its own port. It sends HQ's CA certificate in its chain, so
//! a unit that was given the CA's SHA-256 pin with its token can trust it over the WAN
//! (`outpost_security::tls_pin`). Every other call is refused there: uploads and
//! escrow stay behind mutual TLS on HQ's main port.

use std::net::SocketAddr;
use std::sync::Arc;

use outpost_proto::hq::hq_service_server::{HqService, HqServiceServer};
use outpost_proto::hq::{
    EnrollReply, EnrollRequest, EscrowReply, EscrowRequest, UploadAck, UploadMessage,
};
use outpost_security::tls::DeviceIdentity;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::server::{HqError, MockHqHandle, Shared};

/// The enrolment endpoint's service: `Enroll` only.
#[derive(Debug, Clone)]
struct EnrolOnly {
    shared: Arc<Shared>,
}

fn enrolment_only() -> Status {
    Status::permission_denied(
        "this is HQ's enrolment endpoint: it serves Enroll only; uploads and escrow need mutual TLS on HQ's main port",
    )
}

#[tonic::async_trait]
impl HqService for EnrolOnly {
    type UploadStream = ReceiverStream<Result<UploadAck, Status>>;

    async fn upload(
        &self,
        _: Request<Streaming<UploadMessage>>,
    ) -> Result<Response<Self::UploadStream>, Status> {
        Err(enrolment_only())
    }

    async fn escrow(&self, _: Request<EscrowRequest>) -> Result<Response<EscrowReply>, Status> {
        Err(enrolment_only())
    }

    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollReply>, Status> {
        self.shared.enroll(request.into_inner()).await
    }
}

/// A running enrolment endpoint; stopped when dropped.
#[derive(Debug)]
pub struct EnrolmentEndpoint {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl EnrolmentEndpoint {
    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for EnrolmentEndpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

impl MockHqHandle {
    /// Serves the enrolment endpoint on `listen`, with a server certificate HQ's CA
    /// issues for `names` (the host names units dial), its chain ending in HQ's CA.
    pub async fn serve_enrolment(
        &self,
        listen: SocketAddr,
        names: &[&str],
    ) -> Result<EnrolmentEndpoint, HqError> {
        let ca = self.ca();
        let tls_err = HqError::EnrolmentTls;
        let (cert, key) = ca.issue(names).map_err(|e| tls_err(e.to_string()))?;
        let chain = format!("{cert}{}", ca.pem());
        let identity = DeviceIdentity::from_pem(chain.as_bytes(), key.as_bytes())
            .map_err(|e| tls_err(e.to_string()))?;
        let config =
            outpost_security::tls::server_config(&identity).map_err(|e| tls_err(e.to_string()))?;
        let (listener, addr) = super::server::bind(listen).await?;
        let (incoming, _stats) = outpost_proto::grpc_tls::incoming(listener, &config);
        let (shutdown, rx) = oneshot::channel::<()>();
        let svc = HqServiceServer::new(EnrolOnly {
            shared: self.shared(),
        });
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                }),
        );
        tracing::info!(%addr, "Mock HQ enrolment endpoint serving");
        Ok(EnrolmentEndpoint {
            addr,
            shutdown: Some(shutdown),
            task,
        })
    }
}
