//! The HTTP/1.1 client side: where requests go (`--url`), opening connections, the
//! request headers every request carries, the few requests made outside the load
//! (sampling, `/metrics`), and reading a response body.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

/// Time limit of each request made outside the load itself (sampling, `/metrics`).
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How many bytes of a non-2xx body to keep.
const BODY_CAPTURE_LIMIT: usize = 2048;

/// Where requests go.
#[derive(Debug)]
pub(crate) struct Target {
    /// The URL as given.
    pub(crate) url: String,
    /// The resolved address connections are opened to.
    pub(crate) addr: SocketAddr,
    /// The `Host` header of every request.
    pub(crate) host: HeaderValue,
    /// Path prefix of the URL without a trailing slash (usually empty).
    pub(crate) base: String,
}

impl Target {
    /// Parses `--url` and resolves its host once.
    pub(crate) async fn resolve(url: &str) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("--url {url:?}: only http:// is supported, not {other}://"),
            None => bail!("--url {url:?} needs a scheme, e.g. http://127.0.0.1:8080"),
        }
        if uri.query().is_some() {
            bail!("--url {url:?} must not have a query string");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("--url {url:?} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}:{port}"))?
            .next()
            .with_context(|| format!("{host}:{port} resolves to no address"))?;
        let host_header = HeaderValue::from_str(authority.as_str())
            .context("the URL's host is not a valid Host header")?;
        Ok(Self {
            url: url.to_owned(),
            addr,
            host: host_header,
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The request target for `path` (which starts with `/`) under the base path.
    pub(crate) fn uri(&self, path: &str) -> Result<Uri> {
        let full = format!("{}{path}", self.base);
        Uri::try_from(full.as_str())
            .with_context(|| format!("{full:?} is not a valid request path"))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// The loopback source address of connection `id` when the connections are spread over
/// `sources` addresses (`--sources`): 127.1.x.y, never a .0 or .255 last octet; `None`
/// for one source (the system picks it).
pub(crate) fn source_address(target: &Target, id: usize, sources: usize) -> Result<Option<IpAddr>> {
    if sources <= 1 {
        return Ok(None);
    }
    if !target.addr.ip().is_loopback() || !target.addr.is_ipv4() {
        bail!(
            "--sources needs a 127.x.x.x server address, not {}",
            target.addr
        );
    }
    let k = id % sources;
    let third = u8::try_from(k / 254).context("too many sources")?;
    let fourth = u8::try_from(k % 254 + 1).context("too many sources")?;
    Ok(Some(IpAddr::V4(Ipv4Addr::new(127, 1, third, fourth))))
}

/// Opens one HTTP/1.1 connection with `TCP_NODELAY` (from `source` when given) and
/// drives it on its own task.
pub(crate) async fn connect(
    target: &Target,
    source: Option<IpAddr>,
) -> Result<SendRequest<Full<Bytes>>> {
    let stream = match source {
        None => TcpStream::connect(target.addr).await,
        Some(ip) => {
            let socket = TcpSocket::new_v4().context("opening a socket")?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding to {ip}"))?;
            socket.connect(target.addr).await
        }
    }
    .with_context(|| format!("connecting to {}", target.addr))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP/1.1 handshake")?;
    // Errors of the connection surface through the sender; nothing to do with them here.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `Authorization: Bearer $OUTPOST_TOKEN` (a terminal token from `outpost terminals
/// add`), sent with every request when the variable is set: the server needs
/// credentials on every route but `/healthz`.
pub(crate) fn auth_header() -> Option<&'static HeaderValue> {
    static AUTH: std::sync::OnceLock<Option<HeaderValue>> = std::sync::OnceLock::new();
    AUTH.get_or_init(|| {
        std::env::var("OUTPOST_TOKEN")
            .ok()
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.trim())).ok())
    })
    .as_ref()
}

/// A plain GET request for `uri` with the `Host` (and, when set, `Authorization`) header.
pub(crate) fn get_request(uri: Uri, host: &HeaderValue) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri;
    req.headers_mut().insert(HOST, host.clone());
    if let Some(a) = auth_header() {
        req.headers_mut()
            .insert(hyper::header::AUTHORIZATION, a.clone());
    }
    req
}

/// A connection for the few requests made outside the load (sampling, `/metrics`).
pub(crate) struct SimpleClient<'a> {
    /// Where requests go.
    target: &'a Target,
    /// The open connection.
    sender: SendRequest<Full<Bytes>>,
}

impl<'a> SimpleClient<'a> {
    /// Opens a connection to `target`.
    pub(crate) async fn connect(target: &'a Target) -> Result<Self> {
        let sender = timeout(SETUP_TIMEOUT, connect(target, None))
            .await
            .with_context(|| format!("connecting to {} timed out", target.url))?
            .with_context(|| format!("cannot reach the server at {}", target.url))?;
        Ok(Self { target, sender })
    }

    /// `GET path`, returning the status and the whole body.
    pub(crate) async fn get(&mut self, path: &str) -> Result<(StatusCode, Bytes)> {
        let req = get_request(self.target.uri(path)?, &self.target.host);
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        timeout(SETUP_TIMEOUT, exchange)
            .await
            .with_context(|| format!("GET {path} timed out"))?
            .with_context(|| format!("GET {path} on {}", self.target.url))
    }
}

/// The request target of a checkout.
pub(crate) fn checkout_uri(target: &Target) -> Result<Uri> {
    if target.base.is_empty() {
        Ok(Uri::from_static("/api/v1/checkout"))
    } else {
        target.uri("/api/v1/checkout")
    }
}

/// The request target of a login.
pub(crate) fn login_uri(target: &Target) -> Result<Uri> {
    target.uri("/api/v1/auth/login")
}

/// Reads a response body to its end, keeping up to [`BODY_CAPTURE_LIMIT`] bytes in `keep`.
pub(crate) async fn drain(
    mut body: Incoming,
    mut keep: Option<&mut Vec<u8>>,
) -> Result<(), hyper::Error> {
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let (Some(buf), Some(data)) = (keep.as_deref_mut(), frame.data_ref()) {
            let room = BODY_CAPTURE_LIMIT.saturating_sub(buf.len());
            buf.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_connections_over_loopback_sources() -> Result<()> {
        let target = |addr: &str| Target {
            url: String::new(),
            addr: addr.parse().unwrap(),
            host: HeaderValue::from_static("x"),
            base: String::new(),
        };
        let lo = target("127.0.0.1:8080");
        assert_eq!(source_address(&lo, 7, 1)?, None);
        assert_eq!(
            source_address(&lo, 0, 500)?,
            Some("127.1.0.1".parse().unwrap())
        );
        assert_eq!(
            source_address(&lo, 253, 500)?,
            Some("127.1.0.254".parse().unwrap())
        );
        assert_eq!(
            source_address(&lo, 254, 500)?,
            Some("127.1.1.1".parse().unwrap())
        );
        assert_eq!(source_address(&lo, 500, 500)?, source_address(&lo, 0, 500)?);
        assert!(source_address(&target("10.0.0.1:80"), 0, 2).is_err());
        Ok(())
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(percent_encode("SKU-000001"), "SKU-000001");
        assert_eq!(percent_encode("a b/c+d=é"), "a%20b%2Fc%2Bd%3D%C3%A9");
    }
}
