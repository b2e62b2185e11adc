//! Shared fixtures: a mock HQ on port 0 with its own data dir, an upload conversation.

use std::time::Duration;

use outpost_mocks::hq::{Faults, MockHq, MockHqHandle};
use outpost_proto::hq::hq_service_client::HqServiceClient;
use outpost_proto::hq::{
    Envelope, EnvelopeBatch, EnvelopeKind, Hello, UploadAck, UploadMessage, upload_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn start_hq(faults: Faults) -> (MockHqHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hq = MockHq::start("127.0.0.1:0".parse().unwrap(), dir.path(), faults)
        .await
        .unwrap();
    (hq, dir)
}

pub fn env(seq: u64, body: &str) -> Envelope {
    Envelope {
        seq,
        kind: EnvelopeKind::Sale as i32,
        id: format!("sale-{seq}"),
        at_unix_ms: 1_700_000_000_000 + seq as i64,
        json: format!("{{\"seq\":{seq},\"body\":\"{body}\"}}").into_bytes(),
    }
}

pub fn envs(seqs: std::ops::RangeInclusive<u64>) -> Vec<Envelope> {
    seqs.map(|s| env(s, "x")).collect()
}

pub fn hello(unit: &str) -> UploadMessage {
    UploadMessage {
        body: Some(upload_message::Body::Hello(Hello {
            unit_id: unit.into(),
            store_id: "store-1".into(),
            software_version: "test".into(),
        })),
    }
}

pub fn batch(envelopes: Vec<Envelope>) -> UploadMessage {
    UploadMessage {
        body: Some(upload_message::Body::Batch(EnvelopeBatch { envelopes })),
    }
}

/// One open Upload stream.
pub struct Conversation {
    pub tx: mpsc::Sender<UploadMessage>,
    pub acks: Streaming<UploadAck>,
}

impl Conversation {
    /// Opens an Upload call; `Err` when the server refuses the call itself.
    pub async fn open(url: &str) -> Result<Conversation, Status> {
        Self::open_with(url, None).await
    }

    /// Opens an Upload call, over TLS with `tls` (an `https://` URL).
    pub async fn open_with(
        url: &str,
        tls: Option<&rustls::ClientConfig>,
    ) -> Result<Conversation, Status> {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap();
        let channel = match tls {
            Some(tls) => {
                let connector = outpost_proto::grpc_tls::TlsConnector::new(tls);
                tokio::time::timeout(WAIT, endpoint.connect_with_connector(connector)).await
            }
            None => tokio::time::timeout(WAIT, endpoint.connect()).await,
        }
        .expect("connect timed out")
        .map_err(|e| Status::unavailable(outpost_proto::grpc_tls::error_chain(&e)))?;
        let mut client = HqServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(16);
        let acks = tokio::time::timeout(WAIT, client.upload(ReceiverStream::new(rx)))
            .await
            .expect("upload call timed out")?
            .into_inner();
        Ok(Conversation { tx, acks })
    }

    pub async fn send(&self, msg: UploadMessage) {
        // The server may have ended the stream; the test reads the status then.
        let _ = self.tx.send(msg).await;
    }

    /// The next ack (`Ok(None)` = stream ended cleanly).
    pub async fn next(&mut self) -> Result<Option<u64>, Status> {
        tokio::time::timeout(WAIT, self.acks.message())
            .await
            .expect("no ack within the wait")
            .map(|a| a.map(|a| a.acked_seq))
    }

    /// Sends a message and expects an ack.
    pub async fn ack_of(&mut self, msg: UploadMessage) -> u64 {
        self.send(msg).await;
        self.next().await.unwrap().expect("stream ended")
    }

    /// Opens a stream for `unit` and returns it with the Hello's ack.
    pub async fn hello(url: &str, unit: &str) -> (Conversation, u64) {
        let mut c = Conversation::open(url).await.unwrap();
        let acked = c.ack_of(hello(unit)).await;
        (c, acked)
    }
}

pub fn seqs(envelopes: &[Envelope]) -> Vec<u64> {
    envelopes.iter().map(|e| e.seq).collect()
}
