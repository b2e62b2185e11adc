//! Byte-stream transports the drivers share: TCP, serial (through `tokio-serial`
//! built without libudev, so no system library is needed) and in-memory duplex pipes,
//! so simulators test a serial driver without hardware.
//!
//! A driver holds an `Arc<dyn Connector>` and calls [`Connector::connect`] at every
//! (re)connect. [`LineFramer`] splits a byte stream into bounded, terminated lines, for
//! the line-based protocols (scanners, MT-SICS scales, the MDB bridge).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};

/// A byte stream to a device.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens a new stream to the device; called at every (re)connect.
#[async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Open the stream. The driver bounds this with its connect timeout.
    async fn connect(&self) -> std::io::Result<Box<dyn Stream>>;

    /// The transport, as shown in [`DeviceInfo::transport`](crate::DeviceInfo).
    fn describe(&self) -> String;
}

/// A device on the network over raw TCP, or a serial device behind a serial-to-IP
/// converter.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    address: String,
}

impl TcpConnector {
    /// `address` is `host:port`, or just `host`, which means `default_port`.
    pub fn new(address: &str, default_port: u16) -> Self {
        let has_port = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.ends_with(':') && port.parse::<u16>().is_ok());
        let address = if has_port {
            address.to_owned()
        } else {
            format!("{address}:{default_port}")
        };
        Self { address }
    }

    /// The `host:port` it connects to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

#[async_trait]
impl Connector for TcpConnector {
    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        let s = tokio::net::TcpStream::connect(&self.address).await?;
        // Device commands are a few bytes: send them now, not after Nagle's delay.
        s.set_nodelay(true)?;
        Ok(Box::new(s))
    }

    fn describe(&self) -> String {
        format!("tcp://{}", self.address)
    }
}

/// A device on a serial port, 8N1 at the given baud rate, no flow control, through
/// `tokio-serial` built without libudev (no system library needed).
#[derive(Debug, Clone)]
pub struct SerialConnector {
    path: String,
    baud: u32,
}

impl SerialConnector {
    /// A port such as `/dev/ttyUSB0` at `baud`.
    pub fn new(path: &str, baud: u32) -> Self {
        Self {
            path: path.to_owned(),
            baud,
        }
    }
}

#[async_trait]
impl Connector for SerialConnector {
    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        use tokio_serial::SerialPortBuilderExt;
        let port = tokio_serial::new(&self.path, self.baud)
            .data_bits(tokio_serial::DataBits::Eight)
            .parity(tokio_serial::Parity::None)
            .stop_bits(tokio_serial::StopBits::One)
            .flow_control(tokio_serial::FlowControl::None)
            .open_native_async()
            .map_err(std::io::Error::from)?;
        Ok(Box::new(port))
    }

    fn describe(&self) -> String {
        format!("serial://{}?baud={}", self.path, self.baud)
    }
}

/// What a [`DuplexConnector`] does with the far end of each new pipe: usually hands
/// it to a simulator (`attach`). An error refuses the connection.
pub type FarEnd = Arc<dyn Fn(DuplexStream) -> std::io::Result<()> + Send + Sync>;

/// An in-memory transport: every connect makes a new `tokio::io::duplex` pipe, keeps
/// one end and gives the other to `far_end`. Lets a simulator stand in for a serial
/// device in tests and demos.
#[derive(Clone)]
pub struct DuplexConnector {
    name: String,
    capacity: usize,
    far_end: FarEnd,
}

impl std::fmt::Debug for DuplexConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DuplexConnector")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl DuplexConnector {
    /// Pipes named `name` (shown as `memory://name`) buffering up to `capacity` bytes
    /// each way.
    pub fn new(name: &str, capacity: usize, far_end: FarEnd) -> Self {
        Self {
            name: name.to_owned(),
            capacity: capacity.max(1),
            far_end,
        }
    }
}

#[async_trait]
impl Connector for DuplexConnector {
    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        let (ours, theirs) = tokio::io::duplex(self.capacity);
        (self.far_end)(theirs)?;
        Ok(Box::new(ours))
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }
}

/// Where a configured device is, as the registry reads it from `[[devices]]`
/// (`address = "host:port"` or `port = "/dev/ttyUSB0"` with `baud`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Raw TCP to `host:port` (or `host` and the driver's default port).
    Tcp {
        /// `host:port` or `host`.
        address: String,
    },
    /// A serial port.
    Serial {
        /// The device path, e.g. `/dev/ttyUSB0`.
        port: String,
        /// Baud rate.
        baud: u32,
    },
}

impl Transport {
    /// The connector for this transport; `default_port` completes a bare TCP host.
    pub fn connector(&self, default_port: u16) -> Arc<dyn Connector> {
        match self {
            Transport::Tcp { address } => Arc::new(TcpConnector::new(address, default_port)),
            Transport::Serial { port, baud } => Arc::new(SerialConnector::new(port, *baud)),
        }
    }
}

/// A line that ran past the framer's limit; its bytes up to the next terminator are
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line longer than {max} bytes")]
pub struct Overlong {
    /// The limit.
    pub max: usize,
}

/// Splits a byte stream into lines ended by CR, LF or CR LF, each at most `max`
/// bytes (terminator excluded). Empty lines are skipped. An over-long line is
/// reported once and discarded up to its terminator, so one bad frame never
/// swallows the next good one, and memory stays bounded by `max`.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max: usize,
    line: Vec<u8>,
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            line: Vec::new(),
            discarding: false,
        }
    }

    /// Feed one byte; returns a finished line or an over-long report.
    pub fn push(&mut self, b: u8) -> Option<Result<Vec<u8>, Overlong>> {
        if b == b'\r' || b == b'\n' {
            if self.discarding {
                self.discarding = false;
                return None;
            }
            if self.line.is_empty() {
                return None;
            }
            return Some(Ok(std::mem::take(&mut self.line)));
        }
        if self.discarding {
            return None;
        }
        if self.line.len() == self.max {
            self.line.clear();
            self.discarding = true;
            return Some(Err(Overlong { max: self.max }));
        }
        self.line.push(b);
        None
    }

    /// Feed many bytes; every finished line and over-long report, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Vec<u8>, Overlong>> {
        bytes.iter().filter_map(|&b| self.push(b)).collect()
    }

    /// Bytes of an unfinished line held (0 while discarding).
    pub fn pending(&self) -> usize {
        self.line.len()
    }

    /// Drop an unfinished line (after a timeout or at end of stream), returning it.
    pub fn take_partial(&mut self) -> Option<Vec<u8>> {
        self.discarding = false;
        if self.line.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.line))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_bare_host_gets_the_default_port() {
        assert_eq!(
            TcpConnector::new("10.0.0.5", 9100).address(),
            "10.0.0.5:9100"
        );
        assert_eq!(
            TcpConnector::new("10.0.0.5:4001", 9100).address(),
            "10.0.0.5:4001"
        );
        assert_eq!(
            TcpConnector::new("scale.lan", 4001).address(),
            "scale.lan:4001"
        );
        assert_eq!(TcpConnector::new("[::1]:9100", 1).address(), "[::1]:9100");
    }

    #[test]
    fn lines_split_on_any_terminator_and_overlong_lines_are_dropped_whole() {
        let mut f = LineFramer::new(4);
        let out = f.feed(b"ab\r\ncd\n\nefghij\rkl\r");
        assert_eq!(
            out,
            vec![
                Ok(b"ab".to_vec()),
                Ok(b"cd".to_vec()),
                Err(Overlong { max: 4 }),
                Ok(b"kl".to_vec()),
            ]
        );
        f.feed(b"xyz");
        assert_eq!(f.pending(), 3);
        assert_eq!(f.take_partial(), Some(b"xyz".to_vec()));
        assert_eq!(f.take_partial(), None);
    }

    #[test]
    fn random_bytes_never_make_a_line_longer_than_the_limit() {
        // A bounded property loop: deterministic pseudo-random input.
        let mut x: u32 = 0x1234_5678;
        let mut f = LineFramer::new(16);
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let b = (x % 40) as u8 + if x.is_multiple_of(7) { 0 } else { 60 };
            if let Some(Ok(line)) = f.push(b) {
                assert!(!line.is_empty() && line.len() <= 16);
            }
            assert!(f.pending() <= 16);
        }
    }

    #[tokio::test]
    async fn a_duplex_connector_hands_the_far_end_over_at_every_connect() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let c = DuplexConnector::new(
            "scale",
            64,
            Arc::new(move |far| {
                tx.try_send(far)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            }),
        );
        assert_eq!(c.describe(), "memory://scale");
        let mut ours = c.connect().await.unwrap();
        let mut theirs = rx.recv().await.unwrap();
        ours.write_all(b"SI\r\n").await.unwrap();
        let mut buf = [0u8; 4];
        theirs.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"SI\r\n");
    }
}
