//! [`Link`]: the one connection a request-then-reply driver keeps to its device over a
//! [`Connector`] (TCP, serial or an in-memory pipe). The ESC/POS printer, the MT-SICS
//! scale and the MDB bridge use it; the scanner, which only listens, opens its stream
//! with [`connect`] and hands it to its reader task.
//!
//! A driver keeps its `Link` in a tokio mutex held for one whole exchange. What the
//! link does for every driver:
//! - (re)connects, bounded by the connect timeout, failing with the same wording and
//!   error kinds for every device;
//! - knows whether an exchange is in flight: [`Link::begin`] marks it dirty, and it is
//!   clean again only once the whole reply is read ([`Link::end`],
//!   [`Link::read_line`]) or what was left on the wire is drained ([`Link::drain`]). A
//!   link still dirty when the next exchange starts was part of an exchange that
//!   failed or was cancelled: what is in flight on it is unknown;
//! - bounds every write by a timeout and every read by a deadline, and reports what
//!   went wrong as a [`Failure`].
//!
//! What a failure means stays with the driver: which error it words it as, whether
//! the link is dropped and the device marked offline, and whether a dirty link is
//! drained (the line protocols, which can find the next line) or dropped (ESC/POS,
//! whose status bytes cannot be told apart from a late answer).
// Each driver uses part of the link (the scanner only `connect`); built without all
// of them, the rest is unused.
#![cfg_attr(
    not(all(feature = "escpos", feature = "scale-serial", feature = "mdb")),
    allow(dead_code)
)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::error::ErrorKind;
use crate::fault::DeviceFault;
use crate::transport::{Connector, LineFramer, Overlong, Stream};

/// What went wrong on the link itself, before any reply was looked at.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// There is no stream: the device was never opened, or the link was dropped.
    #[error("link is down")]
    NotConnected,
    /// The write took longer than its timeout, or no reply came before the deadline.
    #[error("timed out")]
    Timeout,
    /// The device closed the stream.
    #[error("closed by the device")]
    Eof,
    /// The stream failed.
    #[error(transparent)]
    Io(std::io::Error),
}

impl Failure {
    /// Whether the stream itself is broken (closed or failed), so keeping it is
    /// pointless; a timeout leaves a stream that may still work once drained.
    pub(crate) fn is_broken(&self) -> bool {
        matches!(self, Failure::Eof | Failure::Io(_))
    }
}

/// The kind of a failed read or write, as [`DeviceFault`] maps I/O errors.
pub(crate) fn io_kind(e: &std::io::Error) -> ErrorKind {
    crate::DeviceError::kind(&DeviceFault::from(std::io::Error::from(e.kind())))
}

/// Open a stream through `connector` within `limit`. The fault names the transport:
/// a refused or failed connect keeps the kind of its I/O error, one that takes too
/// long is a timeout.
pub(crate) async fn connect(
    connector: &dyn Connector,
    limit: Duration,
) -> Result<Box<dyn Stream>, DeviceFault> {
    match timeout(limit, connector.connect()).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            let f = DeviceFault::from(e);
            Err(DeviceFault::new(
                crate::DeviceError::kind(&f),
                format!("cannot connect to {}: {f}", connector.describe()),
            ))
        }
        Err(_) => Err(DeviceFault::timeout(format!(
            "no connection to {} within {limit:?}",
            connector.describe()
        ))),
    }
}

/// One connection to a device, and whether an exchange on it is unfinished.
pub(crate) struct Link {
    connector: Arc<dyn Connector>,
    connect_timeout: Duration,
    stream: Option<Box<dyn Stream>>,
    /// An exchange started and has not finished (it failed, or its future was
    /// dropped): what is in flight on the stream is unknown.
    dirty: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("transport", &self.connector.describe())
            .field("connected", &self.stream.is_some())
            .field("dirty", &self.dirty)
            .finish()
    }
}

impl Link {
    /// A link that is not connected yet; [`connect`](Self::connect) opens it.
    pub(crate) fn new(connector: Arc<dyn Connector>, connect_timeout: Duration) -> Self {
        Self {
            connector,
            connect_timeout,
            stream: None,
            dirty: false,
        }
    }

    /// Whether there is a stream.
    pub(crate) fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether an exchange on this stream did not finish.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Open a new stream. On success it replaces the old one and the link is clean;
    /// on failure the link is left as it was (call [`disconnect`](Self::disconnect)
    /// first to be sure no old stream is kept). Cancel-safe: a cancelled connect
    /// changes nothing.
    pub(crate) async fn connect(&mut self) -> Result<(), DeviceFault> {
        let stream = connect(&*self.connector, self.connect_timeout).await?;
        self.stream = Some(stream);
        self.dirty = false;
        Ok(())
    }

    /// Drop the stream, if any.
    pub(crate) fn disconnect(&mut self) {
        self.stream = None;
        self.dirty = false;
    }

    /// An exchange starts: the link is dirty until it ends. Fails when there is no
    /// stream.
    pub(crate) fn begin(&mut self) -> Result<(), Failure> {
        if self.stream.is_none() {
            return Err(Failure::NotConnected);
        }
        self.dirty = true;
        Ok(())
    }

    /// The exchange ended with its whole reply read: the link is clean.
    pub(crate) fn end(&mut self) {
        self.dirty = false;
    }

    fn stream(&mut self) -> Result<&mut Box<dyn Stream>, Failure> {
        self.stream.as_mut().ok_or(Failure::NotConnected)
    }

    /// Write all of `bytes` within `limit`.
    pub(crate) async fn send(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Failure> {
        let stream = self.stream()?;
        match timeout(limit, stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Flush what was written, within `limit`.
    pub(crate) async fn flush(&mut self, limit: Duration) -> Result<(), Failure> {
        let stream = self.stream()?;
        match timeout(limit, stream.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Read what has arrived into `buf` (at least one byte), waiting until
    /// `deadline` at most. A closed stream is [`Failure::Eof`].
    pub(crate) async fn read(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<usize, Failure> {
        let stream = self.stream()?;
        match timeout_at(deadline, stream.read(buf)).await {
            Ok(Ok(0)) => Err(Failure::Eof),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(Failure::Io(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Read one reply line of at most `max` bytes (CR, LF or CR LF ended), reading
    /// into `buf`, by `deadline`. The exchange ends with it: the link is clean, unless
    /// more bytes came after the line, which means the device is out of step and the
    /// next exchange must drain first. An over-long line is returned as such and ends
    /// the exchange the same way.
    pub(crate) async fn read_line(
        &mut self,
        max: usize,
        buf: &mut [u8],
        deadline: Instant,
    ) -> Result<Result<Vec<u8>, Overlong>, Failure> {
        let mut framer = LineFramer::new(max);
        loop {
            let n = self.read(buf, deadline).await?;
            let mut frames = framer.feed(&buf[..n]).into_iter();
            if let Some(first) = frames.next() {
                self.dirty = frames.count() > 0 || framer.pending() > 0;
                return Ok(first);
            }
        }
    }

    /// Read and drop whatever arrives until the link has been quiet for `quiet`, or
    /// `limit` has passed, reading into `buf`; `drained` is told every read's size.
    /// The link is clean afterwards. A late reply to a timed-out or cancelled
    /// exchange is thus never read as the reply to the next one.
    pub(crate) async fn drain(
        &mut self,
        buf: &mut [u8],
        quiet: Duration,
        limit: Duration,
        mut drained: impl FnMut(usize),
    ) -> Result<(), Failure> {
        let until = Instant::now() + limit;
        loop {
            let stream = self.stream()?;
            let quiet_until = (Instant::now() + quiet).min(until);
            match timeout_at(quiet_until, stream.read(buf)).await {
                Ok(Ok(0)) => return Err(Failure::Eof),
                Ok(Ok(n)) => drained(n),
                Ok(Err(e)) => return Err(Failure::Io(e)),
                Err(_) => break,
            }
            if Instant::now() >= until {
                break;
            }
        }
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{SerialConnector, TcpConnector};
    use tokio::net::TcpListener;

    const T: Duration = Duration::from_secs(2);

    fn soon() -> Instant {
        Instant::now() + T
    }

    /// A listener on loopback and a link to it.
    async fn tcp() -> (TcpListener, Link) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let link = Link::new(Arc::new(TcpConnector::new(&addr, 1)), T);
        (listener, link)
    }

    #[tokio::test]
    async fn a_reply_line_ends_the_exchange_clean_unless_more_followed_it() {
        let (listener, mut link) = tcp().await;
        assert!(matches!(link.begin(), Err(Failure::NotConnected)));
        link.connect().await.unwrap();
        let (mut device, _) = listener.accept().await.unwrap();
        link.begin().unwrap();
        assert!(link.is_dirty());
        link.send(b"SI\r\n", T).await.unwrap();
        let mut cmd = [0u8; 4];
        device.read_exact(&mut cmd).await.unwrap();
        assert_eq!(&cmd, b"SI\r\n");
        // The reply split over two writes is still one line.
        device.write_all(b"S S 1").await.unwrap();
        let mut buf = [0u8; 64];
        let (line, ()) = tokio::join!(link.read_line(64, &mut buf, soon()), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            device.write_all(b"00 g\r\n").await.unwrap();
        });
        assert_eq!(line.unwrap().unwrap(), b"S S 100 g");
        assert!(!link.is_dirty());
        // A second line in the same read leaves the link out of step.
        link.begin().unwrap();
        device.write_all(b"Z A\r\nES\r\n").await.unwrap();
        assert_eq!(
            link.read_line(64, &mut buf, soon()).await.unwrap().unwrap(),
            b"Z A"
        );
        assert!(link.is_dirty());
        let quiet = Duration::from_millis(30);
        let mut drained = 0;
        link.drain(&mut buf, quiet, T, |n| drained += n)
            .await
            .unwrap();
        assert_eq!(drained, 0, "the extra line came in the same read");
        assert!(!link.is_dirty());
        // A reply that comes after its exchange timed out is drained, not read as the
        // reply to the next command.
        link.begin().unwrap();
        let quick = Instant::now() + Duration::from_millis(30);
        let f = link.read_line(64, &mut buf, quick).await.unwrap_err();
        assert!(matches!(f, Failure::Timeout));
        assert!(link.is_dirty());
        device.write_all(b"S S 1 g\r\n").await.unwrap();
        link.drain(&mut buf, quiet, T, |n| drained += n)
            .await
            .unwrap();
        assert_eq!(drained, 9);
        assert!(!link.is_dirty() && link.is_connected());
    }

    #[tokio::test]
    async fn silence_times_out_and_a_closed_stream_is_broken() {
        let (listener, mut link) = tcp().await;
        link.connect().await.unwrap();
        let (device, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 8];
        let quick = Instant::now() + Duration::from_millis(30);
        let f = link.read(&mut buf, quick).await.unwrap_err();
        assert!(matches!(f, Failure::Timeout) && !f.is_broken());
        drop(device);
        let f = link.read_line(8, &mut buf, soon()).await.unwrap_err();
        assert!(matches!(f, Failure::Eof) && f.is_broken());
        let f = link.drain(&mut buf, T, T, |_| {}).await.unwrap_err();
        assert!(matches!(f, Failure::Eof));
        link.disconnect();
        assert!(matches!(
            link.send(b"x", T).await,
            Err(Failure::NotConnected)
        ));
    }

    #[tokio::test]
    async fn an_overlong_line_is_reported_as_the_reply() {
        let (listener, mut link) = tcp().await;
        link.connect().await.unwrap();
        let (mut device, _) = listener.accept().await.unwrap();
        link.begin().unwrap();
        device.write_all(b"0123456789\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let line = link.read_line(4, &mut buf, soon()).await.unwrap();
        assert_eq!(line, Err(Overlong { max: 4 }));
        assert!(!link.is_dirty(), "its terminator came with it");
    }

    #[tokio::test]
    async fn a_failed_connect_names_the_transport_and_keeps_the_old_stream() {
        let (listener, mut link) = tcp().await;
        link.connect().await.unwrap();
        drop(listener);
        let f = link.connect().await.unwrap_err();
        assert_eq!(crate::DeviceError::kind(&f), ErrorKind::Offline);
        assert!(
            f.message()
                .starts_with("cannot connect to tcp://127.0.0.1:"),
            "{f}"
        );
        assert!(link.is_connected(), "the old stream is kept");
        link.disconnect();
        assert!(!link.is_connected());
    }

    /// A connector that never connects.
    #[derive(Debug)]
    struct Hang;

    #[async_trait::async_trait]
    impl Connector for Hang {
        async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
            std::future::pending().await
        }
        fn describe(&self) -> String {
            "hang://".into()
        }
    }

    #[tokio::test]
    async fn a_connect_that_takes_too_long_is_a_timeout() {
        let mut link = Link::new(Arc::new(Hang), Duration::from_millis(20));
        let f = link.connect().await.unwrap_err();
        assert_eq!(crate::DeviceError::kind(&f), ErrorKind::Timeout);
        assert_eq!(f.message(), "no connection to hang:// within 20ms");
        assert!(!link.is_connected());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_serial_port_carries_an_exchange() {
        use tokio_serial::SerialPort;
        let (mut device, port) = tokio_serial::SerialStream::pair().expect("a pseudo-terminal");
        let path = port.name().expect("the pty has a path");
        let mut link = Link::new(Arc::new(SerialConnector::new(&path, 9600)), T);
        link.connect().await.unwrap();
        link.begin().unwrap();
        link.send(b"I4\r\n", T).await.unwrap();
        link.flush(T).await.unwrap();
        let mut cmd = [0u8; 4];
        device.read_exact(&mut cmd).await.unwrap();
        assert_eq!(&cmd, b"I4\r\n");
        device.write_all(b"I4 A \"1\"\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let line = link.read_line(64, &mut buf, soon()).await.unwrap();
        assert_eq!(line.unwrap(), b"I4 A \"1\"");
        assert!(!link.is_dirty());
        drop(port);
    }

    #[tokio::test]
    async fn a_missing_serial_port_is_offline_and_named() {
        let mut link = Link::new(
            Arc::new(SerialConnector::new("/dev/outpost-no-such-tty", 9600)),
            T,
        );
        let f = link.connect().await.unwrap_err();
        assert_eq!(crate::DeviceError::kind(&f), ErrorKind::Offline);
        assert!(
            f.message().contains("serial:///dev/outpost-no-such-tty"),
            "{f}"
        );
    }
}
