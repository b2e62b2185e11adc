//! Accepting connections on a gRPC port, bounded against slow and silent peers.
//!
//! Before a connection reaches tonic it must *open* within [`OPEN_TIMEOUT`]: on a TLS
//! port its handshake ([`crate::grpc_tls::incoming`]), on a plaintext port the 24-byte
//! HTTP/2 client preface ([`plaintext`]). Openings run in their own tasks, at most
//! [`MAX_OPENING`] at once; further connections wait in the listen backlog. So a peer
//! that connects and says nothing, or trickles bytes (slowloris), holds one slot for
//! ten seconds and is closed; the others are served. Once open, HTTP/2 keepalive pings
//! (`sync.grpc_keepalive_secs`) close connections whose peer vanished.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// How long a new connection may take to open (TLS handshake or HTTP/2 preface).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections opening at once at most.
pub const MAX_OPENING: usize = 256;
/// Opened connections not yet taken by the server.
const ACCEPTED_QUEUE: usize = 64;
/// Pause after a failed `accept` (out of file descriptors...), so the loop cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// What every HTTP/2 client sends first (RFC 9113, 3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How often a plaintext connection that sent part of its preface is looked at again.
const PREFACE_POLL: Duration = Duration::from_millis(50);

/// Counts of the connections an accept stream opened and refused.
#[derive(Debug, Default)]
pub struct HandshakeStats {
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl HandshakeStats {
    /// Connections that opened.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections that failed to open or took too long (closed).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Connections accepted on `listener` and opened by `open` (which must bound itself
/// in time), for `tonic::transport::Server::serve_with_incoming_shutdown`. A task owns
/// the listener; it stops when the returned stream is dropped (the server stopped).
/// `kind` names the opening in the log ("TLS", "plaintext").
pub fn accept<S, F, Fut>(
    listener: TcpListener,
    kind: &'static str,
    open: F,
) -> (ReceiverStream<io::Result<S>>, Arc<HandshakeStats>)
where
    S: Send + 'static,
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<S>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(ACCEPTED_QUEUE);
    let stats = Arc::new(HandshakeStats::default());
    let permits = Arc::new(Semaphore::new(MAX_OPENING));
    let task_stats = Arc::clone(&stats);
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = tx.closed() => break,
            };
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, kind, "Failed to accept a connection on the gRPC port");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
                () = tx.closed() => break,
            };
            let _ = tcp.set_nodelay(true);
            let opening = open(tcp);
            let tx = tx.clone();
            let stats = Arc::clone(&task_stats);
            tokio::spawn(async move {
                let _permit = permit;
                match opening.await {
                    Ok(conn) => {
                        stats.accepted.fetch_add(1, Ordering::Relaxed);
                        // The server stopped if this fails; the connection just closes.
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Err(e) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, error = %e, kind, "Refused a gRPC connection");
                    }
                }
            });
        }
    });
    (ReceiverStream::new(rx), stats)
}

/// Plaintext connections accepted on `listener` whose HTTP/2 client preface arrived
/// within [`OPEN_TIMEOUT`] (left unread for the server); anything else is closed.
pub fn plaintext(
    listener: TcpListener,
) -> (ReceiverStream<io::Result<TcpStream>>, Arc<HandshakeStats>) {
    plaintext_within(listener, OPEN_TIMEOUT)
}

fn plaintext_within(
    listener: TcpListener,
    within: Duration,
) -> (ReceiverStream<io::Result<TcpStream>>, Arc<HandshakeStats>) {
    accept(listener, "plaintext", move |tcp| async move {
        tokio::time::timeout(within, preface(&tcp))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no HTTP/2 preface within {within:?}"),
                )
            })??;
        Ok(tcp)
    })
}

/// Waits until `tcp` has the HTTP/2 client preface waiting to be read (peeked, not
/// consumed); refuses anything else.
async fn preface(tcp: &TcpStream) -> io::Result<()> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before its HTTP/2 preface",
            ));
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an HTTP/2 client (gRPC needs HTTP/2 with prior knowledge)",
            ));
        }
        if n == H2_PREFACE.len() {
            return Ok(());
        }
        // Part of it: peeking again at once would find the same bytes.
        tokio::time::sleep(PREFACE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;
    use tokio_stream::StreamExt as _;

    async fn listen() -> (TcpListener, std::net::SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    #[tokio::test]
    async fn a_whole_preface_opens_and_is_left_for_the_server() {
        let (l, addr) = listen().await;
        let (mut conns, stats) = plaintext(l);
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&H2_PREFACE[..10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        c.write_all(&H2_PREFACE[10..]).await.unwrap();
        let s = tokio::time::timeout(Duration::from_secs(5), conns.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let mut buf = [0u8; 24];
        assert_eq!(s.peek(&mut buf).await.unwrap(), 24);
        assert_eq!(&buf, H2_PREFACE);
        assert_eq!((stats.accepted(), stats.refused()), (1, 0));
    }

    #[tokio::test]
    async fn http1_junk_and_early_close_are_refused() {
        let (l, addr) = listen().await;
        // Junk is refused at once; a connection closed after part of its preface
        // still has those bytes to read, so it waits out the timeout.
        let (mut conns, stats) = plaintext_within(l, Duration::from_millis(500));
        let mut junk = TcpStream::connect(addr).await.unwrap();
        junk.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut early = TcpStream::connect(addr).await.unwrap();
        early.write_all(&H2_PREFACE[..5]).await.unwrap();
        drop(early);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while stats.refused() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not refused");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stats.accepted(), 0);
        // Nothing reached the server.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), conns.next())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn silent_and_trickling_peers_are_closed_after_the_open_timeout() {
        let (l, addr) = listen().await;
        let (_conns, stats) = plaintext_within(l, Duration::from_millis(300));
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut slow = TcpStream::connect(addr).await.unwrap();
        for b in &H2_PREFACE[..6] {
            // Refused (reset) once the timeout passed.
            let _ = slow.write_all(&[*b]).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while stats.refused() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "not closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stats.accepted(), 0);
    }
}
