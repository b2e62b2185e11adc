//! TLS for both ends of the HQ link, on rustls configurations made elsewhere
//! (`outpost_security::tls`): this module only carries them into tonic.
//!
//! tonic's own TLS (`tls-ring`) builds its rustls configuration itself; the HQ link needs
//! ours (TLS 1.3 only, exactly one pinned CA, the device identity), so:
//!
//! - **Serving**: [`incoming`] accepts TCP connections, runs each TLS handshake in its
//!   own task (bounded in time and in number, [`crate::grpc_accept`]), and yields only
//!   the streams whose handshake succeeded, for `Server::serve_with_incoming_shutdown`. A refused
//!   handshake (no client certificate, one from another CA, an expired one) is logged
//!   with the peer's address and rustls' reason, and never reaches a service.
//! - **Dialing**: [`TlsConnector`] is the connector for `Endpoint::connect_with_connector`:
//!   TCP, then a TLS handshake that checks the server's certificate against the pinned CA
//!   and the URL's host (DNS name or IP address).
//!
//! Both set ALPN to `h2`, as gRPC clients (grpc-go, grpcurl) require.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Uri;

/// A server-side TLS stream over TCP; tonic's `Connected` gives services the peer's
/// address and certificates (`TlsConnectInfo`).
pub type ServerTlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// How long a peer may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = crate::grpc_accept::OPEN_TIMEOUT;

const H2: &[u8] = b"h2";

pub use crate::grpc_accept::HandshakeStats;

/// `config` with ALPN `h2`, the only protocol gRPC speaks.
pub fn server_config_h2(config: &ServerConfig) -> Arc<ServerConfig> {
    let mut c = config.clone();
    c.alpn_protocols = vec![H2.to_vec()];
    Arc::new(c)
}

/// TLS connections accepted on `listener` under `config`, for
/// `tonic::transport::Server::serve_with_incoming_shutdown`: each handshake runs in its
/// own task, bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number
/// ([`crate::grpc_accept`]), so a peer that connects and says nothing holds up no one.
pub fn incoming(
    listener: TcpListener,
    config: &ServerConfig,
) -> (
    ReceiverStream<io::Result<ServerTlsStream>>,
    Arc<HandshakeStats>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config_h2(config));
    crate::grpc_accept::accept(listener, "TLS", move |tcp| {
        let acceptor = acceptor.clone();
        async move { handshake(&acceptor, tcp).await }
    })
}

async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
) -> Result<ServerTlsStream, io::Error> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake not completed within {HANDSHAKE_TIMEOUT:?}"),
            )
        })?
}

/// Why a TLS connection could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL has no host, or a host that cannot be a TLS server name.
    #[error("{0} has no host usable as a TLS server name")]
    BadHost(String),
    /// TCP connection failed.
    #[error("TCP connection to {addr} failed: {source}")]
    Tcp {
        /// `host:port`.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// The TLS handshake failed: the peer's certificate was refused (expired, another
    /// CA, another name), or the peer refused ours.
    #[error("TLS handshake with {addr} failed: {source}")]
    Handshake {
        /// `host:port`.
        addr: String,
        /// rustls' reason, as an I/O error.
        source: io::Error,
    },
}

/// A tonic connector (`Endpoint::connect_with_connector`) that dials TLS with one
/// rustls client configuration; the server name is the URL's host.
///
/// In TLS 1.3 the client's handshake ends before the server has checked the client's
/// certificate: a server that refuses it sends its alert afterwards, and tonic reports
/// only "connection closed". The connector keeps the first TLS error its connections
/// read or write ([`TlsConnector::take_error`]), so the caller can say why.
#[derive(Clone)]
pub struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    /// The first I/O error of this connector's connections since the last take.
    error: ErrorSlot,
}

/// The first error seen, and whether it came from a read. A read error (the peer's
/// alert) says why; a write error (broken pipe) only that the peer hung up, so a later
/// read error replaces it. A std mutex: held only to swap a string, never across an
/// await.
type ErrorSlot = Arc<std::sync::Mutex<Option<(bool, String)>>>;

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector using `config` (its ALPN is set to `h2`).
    pub fn new(config: &ClientConfig) -> TlsConnector {
        let mut c = config.clone();
        c.alpn_protocols = vec![H2.to_vec()];
        TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(c)),
            error: Arc::default(),
        }
    }

    /// The first error a connection made by this connector (or a clone) met after its
    /// handshake, e.g. `received fatal alert: UnknownCA` when the server refused the
    /// client certificate; cleared by the call.
    pub fn take_error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|(_, e)| e)
    }

    /// Dials `uri` (`https://HOST:PORT`; 443 when no port).
    pub async fn connect(
        &self,
        uri: &Uri,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let host = uri
            .host()
            .ok_or_else(|| ConnectError::BadHost(uri.to_string()))?;
        // An IPv6 host comes bracketed.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(443);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ConnectError::BadHost(uri.to_string()))?;
        let addr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port).to_string(),
            Err(_) => format!("{host}:{port}"),
        };
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.inner.connect(name, tcp))
            .await
            .map_err(|_| ConnectError::Handshake {
                addr: addr.clone(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("not completed within {HANDSHAKE_TIMEOUT:?}"),
                ),
            })?
            .map_err(|source| ConnectError::Handshake { addr, source })
    }
}

/// A client TLS stream that reports its first I/O error to its connector.
pub struct ClientTlsStream {
    inner: tokio_rustls::client::TlsStream<TcpStream>,
    error: ErrorSlot,
}

impl fmt::Debug for ClientTlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsStream").finish_non_exhaustive()
    }
}

impl ClientTlsStream {
    fn record(&self, e: &io::Error, read: bool) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        let replace = match &*slot {
            None => true,
            Some((from_read, _)) => read && !from_read,
        };
        if replace {
            *slot = Some((read, e.to_string()));
        }
    }

    fn note<T>(&self, r: Poll<io::Result<T>>, read: bool) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            self.record(e, read);
        }
        r
    }

    /// After a failed write the connection is dead; read what the peer sent before it
    /// hung up (its alert, which says why) so the reason is not lost.
    fn note_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r {
            self.record(e, false);
            let mut scratch = [0u8; 512];
            // Bounded: a dead connection yields an error or EOF within a few records.
            for _ in 0..8 {
                let mut buf = tokio::io::ReadBuf::new(&mut scratch);
                match tokio::io::AsyncRead::poll_read(Pin::new(&mut self.inner), cx, &mut buf) {
                    Poll::Ready(Err(e)) => {
                        self.record(&e, true);
                        break;
                    }
                    Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                    _ => break,
                }
            }
        }
        r
    }
}

impl tokio::io::AsyncRead for ClientTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(r, true)
    }
}

impl tokio::io::AsyncWrite for ClientTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::codegen::Service<Uri> for TlsConnector {
    type Response = TokioIo<ClientTlsStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let inner = this.connect(&uri).await?;
            Ok(TokioIo::new(ClientTlsStream {
                inner,
                error: this.error,
            }))
        })
    }
}

/// `e` and each of its sources, joined with `": "`: tonic's transport errors say only
/// "transport error" at the top, and the reason (a refused certificate) is underneath.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    // Bounded: error chains are short, and a cyclic one must not hang a log line.
    for _ in 0..16 {
        let Some(s) = next else { break };
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn error_chain_shows_what_lies_under_a_vague_error() {
        let e = Outer(io::Error::other("received fatal alert: UnknownCA"));
        assert_eq!(error_chain(&e), "outer: received fatal alert: UnknownCA");
    }

    #[tokio::test]
    async fn urls_without_a_usable_host_are_refused_before_dialing() {
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        let connector = TlsConnector::new(&config);
        for url in ["/just/a/path", "https://bad_host!:1/"] {
            let uri: Uri = match url.parse() {
                Ok(u) => u,
                Err(_) => continue,
            };
            let err = connector.connect(&uri).await.unwrap_err();
            assert!(matches!(err, ConnectError::BadHost(_)), "{url}: {err}");
        }
        // A closed port is a TCP error naming the address.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let uri: Uri = format!("https://{addr}").parse().unwrap();
        let err = connector.connect(&uri).await.unwrap_err();
        assert!(matches!(err, ConnectError::Tcp { .. }), "{err}");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
