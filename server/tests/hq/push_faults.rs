//! Catalog pushes that break at the transport: a message over the size limit, a stream
//! that stalls after its header, a peer that stops answering. Each is answered with
//! the status `hq.proto` documents, and none holds the push lock or the catalog.

use std::time::Duration;

use outpost_proto::hq;
use outpost_proto::hq::CatalogPushKind::Snapshot;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;

use crate::helpers::*;

/// Every wait in these tests ends by this bound.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {} s", BOUND.as_secs()))
}

async fn push_state(app: &HqTestApp, id: &str) -> Result<hq::PushState, tonic::Status> {
    app.client()
        .await
        .get_push_state(hq::GetPushStateRequest { push_id: id.into() })
        .await
        .map(tonic::Response::into_inner)
}

/// Products `from..to` in chunks of 5, none carrying the header (a resume adds it).
fn rest(from: u64, to: u64) -> Vec<hq::CatalogChunk> {
    let products: Vec<_> = (from..to).map(|i| product(i, 7)).collect();
    let mut chunks = chunks(header("x", Snapshot, 0, 0, 0, 0), products, 5, vec![]);
    for c in &mut chunks {
        c.header = None;
        c.offset += from;
    }
    chunks
}

/// Regression: a chunk over the 16 MiB message limit was answered OUT_OF_RANGE (tonic's
/// decode error passed through), which tells HQ to resume at GetPushState's offset: it
/// sent the same chunk again, forever.
#[tokio::test]
async fn a_chunk_over_the_message_limit_is_resource_exhausted_and_the_push_resumes() {
    let app = spawn(None).await;
    snapshot(&app, 1, 5).await;
    let h = header("big", Snapshot, 2, 0, 30, 0);
    let first = hq::CatalogChunk {
        header: Some(h.clone()),
        offset: 0,
        products: (0..10).map(|i| product(i, 7)).collect(),
        removed_skus: vec![],
        last: false,
    };
    let mut huge = product(10, 7);
    huge.description = "x".repeat(17 * 1024 * 1024);
    let oversized = hq::CatalogChunk {
        header: None,
        offset: 10,
        products: vec![huge],
        removed_skus: vec![],
        last: false,
    };
    let mut c = app.client().await;
    let err = bounded("the oversized push", push(&mut c, vec![first, oversized]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("16 MiB"), "{}", err.message());
    // Nothing of the oversized chunk was taken: HQ resumes at 10 with smaller chunks.
    let state = bounded("GetPushState", push_state(&app, "big"))
        .await
        .unwrap();
    assert_eq!((state.received, state.header), (10, Some(h.clone())));
    let mut resume = rest(10, 30);
    resume[0].header = Some(h);
    let reply = bounded("the resumed push", push(&mut c, resume))
        .await
        .unwrap();
    assert_eq!((reply.version, reply.products), (2, 30));
    app.stop().await;
}

/// A message the store cannot decode is INVALID_ARGUMENT (a malformed push, as the
/// contract says), and the push it interrupted stays resumable.
#[tokio::test]
async fn an_undecodable_chunk_is_invalid_argument_and_the_push_resumes() {
    let app = spawn(None).await;
    snapshot(&app, 1, 5).await;
    let h = header("bad-bytes", Snapshot, 2, 0, 20, 0);
    let mut c = app.client().await;
    let mut wire: Vec<Wire> = rest(0, 10)
        .into_iter()
        .map(|c| Wire {
            header: c.header,
            offset: c.offset,
            products: c.products,
            junk: vec![],
            last: false,
        })
        .collect();
    wire[0].header = Some(h.clone());
    wire.push(Wire {
        header: None,
        offset: 10,
        products: vec![product(10, 7)],
        junk: vec![0xff, 0xfe],
        last: true,
    });
    let err = bounded("the push", async {
        let channel = tonic::transport::Channel::from_shared(app.grpc.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::from_static("/outpost.hq.v1.StoreService/PushCatalog");
        grpc.client_streaming::<_, Wire, hq::PushCatalogReply, _>(
            app.authorize(tonic::Request::new(tokio_stream::iter(wire))),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err()
    })
    .await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let state = bounded("GetPushState", push_state(&app, "bad-bytes"))
        .await
        .unwrap();
    assert_eq!(state.received, 10);
    let mut resume = rest(10, 20);
    resume[0].header = Some(h);
    let reply = bounded("the resumed push", push(&mut c, resume))
        .await
        .unwrap();
    assert_eq!((reply.version, reply.products), (2, 20));
    app.stop().await;
}

/// Regression: a push stream that sent its header and then stalled held the push lock
/// with no timeout: GetPushState answered UNAVAILABLE and every other push waited,
/// until the store restarted.
#[tokio::test]
async fn a_stalled_push_stream_times_out_parks_and_lets_the_next_push_run() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path(), None);
    s.sync.push_idle_secs = 1;
    let app = spawn_with(s).await;
    let mut c = app.client().await;
    let h = header("stalled", Snapshot, 2, 0, 30, 0);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut first = rest(0, 10);
    first[0].header = Some(h.clone());
    for mut chunk in first {
        chunk.last = false;
        tx.send(chunk).await.unwrap();
    }
    let mut stalled_client = c.clone();
    let stalled = tokio::spawn(async move {
        stalled_client
            .push_catalog(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    // The sender stays open: the stream is alive and silent.
    eventually(20, "the stalled push to be parked", || async {
        matches!(push_state(&app, "stalled").await, Ok(s) if s.received == 10)
    })
    .await;
    let err = bounded("the stalled push's answer", stalled)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("offset 10"), "{}", err.message());
    // Another push runs at once (it replaces the parked one).
    let products = (0..3).map(|i| product(i, 9)).collect();
    let reply = bounded(
        "the next push",
        push(
            &mut c,
            chunks(header("next", Snapshot, 3, 0, 3, 0), products, 2, vec![]),
        ),
    )
    .await
    .unwrap();
    assert_eq!((reply.version, reply.products), (3, 3));
    drop(tx);
    app.stop().await;
}

/// A parked push holds the catalog's change lock; it expires, so a push cut short and
/// never resumed does not block the catalog (pushes, imports, artifacts) for good.
#[tokio::test]
async fn a_parked_push_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path(), None);
    s.sync.push_resume_secs = 1;
    let app = spawn_with(s).await;
    let mut c = app.client().await;
    let mut cut = rest(0, 10);
    cut[0].header = Some(header("cut", Snapshot, 2, 0, 30, 0));
    cut.last_mut().unwrap().last = false;
    let err = bounded("the cut push", push(&mut c, cut))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert_eq!(
        bounded("GetPushState", push_state(&app, "cut"))
            .await
            .unwrap()
            .received,
        10
    );
    eventually(20, "the parked push to expire", || async {
        matches!(push_state(&app, "cut").await, Ok(s) if s.header.is_none() && s.received == 0)
    })
    .await;
    app.stop().await;
}

/// A peer that opens a connection and then answers nothing (a half-open connection)
/// is pinged, and closed when it does not answer.
#[tokio::test]
async fn a_silent_peer_is_pinged_and_disconnected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = settings(tmp.path(), None);
    s.sync.grpc_keepalive_secs = 1;
    let app = spawn_with(s).await;
    let addr = app.grpc.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame; then silence (no ACK, ever).
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let pinged = bounded("the server to close the silent connection", async {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        // Walk the frames the server sent: 9-byte header (length, type, flags, stream).
        let (mut at, mut pinged) = (0, false);
        while at + 9 <= bytes.len() {
            let len = usize::from(bytes[at]) << 16
                | usize::from(bytes[at + 1]) << 8
                | usize::from(bytes[at + 2]);
            let (kind, flags) = (bytes[at + 3], bytes[at + 4]);
            pinged |= kind == 6 && flags & 1 == 0;
            at += 9 + len;
        }
        pinged
    })
    .await;
    assert!(pinged, "the server closed the connection without a PING");
    app.stop().await;
}

/// A CatalogChunk on the wire, with `removed_skus` (field 4, strings) as raw bytes:
/// bytes that are not UTF-8 make a message the store cannot decode.
#[derive(Clone, PartialEq, prost::Message)]
struct Wire {
    #[prost(message, optional, tag = "1")]
    header: Option<hq::CatalogPushHeader>,
    #[prost(uint64, tag = "2")]
    offset: u64,
    #[prost(message, repeated, tag = "3")]
    products: Vec<hq::Product>,
    #[prost(bytes = "vec", tag = "4")]
    junk: Vec<u8>,
    #[prost(bool, tag = "5")]
    last: bool,
}
