//! [`Bus`]: one MDB block and the bridge's one reply line over the [`Link`], for the
//! peripherals whose answers depend on the command they answer (the coin changer
//! and the bill validator), so the caller parses the data itself.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::protocol::{BridgeReply, MAX_LINE, MdbError, host_line, parse_bridge_line};
use crate::device::{DeviceCore, PowerState};
use crate::fault::DeviceFault;
use crate::link::{Failure, Link, io_kind};
use crate::transport::Connector;

/// Why an exchange with the bridge failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BusError {
    #[error("MDB bridge link is down; open the device again")]
    NotConnected,
    #[error("MDB bridge did not answer {0:02X?} within {1:?}")]
    Timeout(Vec<u8>, Duration),
    #[error("MDB bridge closed the connection during {0:02X?}")]
    Eof(Vec<u8>),
    #[error("I/O error during {1:02X?}: {0}")]
    Io(#[source] std::io::Error, Vec<u8>),
    #[error("malformed bridge reply to {1:02X?}: {0}")]
    Malformed(#[source] MdbError, Vec<u8>),
}

impl BusError {
    /// As a device fault, for a command that moves nothing.
    pub(crate) fn fault(&self) -> DeviceFault {
        let msg = self.to_string();
        match self {
            BusError::NotConnected | BusError::Eof(_) => DeviceFault::offline(msg),
            BusError::Timeout(..) => DeviceFault::timeout(msg),
            BusError::Io(e, _) => DeviceFault::new(io_kind(e), msg),
            BusError::Malformed(..) => DeviceFault::failure(msg),
        }
    }

    /// As a device fault, for a command that moves money once sent: only a link that
    /// was down before sending is offline; anything after is outcome unknown.
    pub(crate) fn after_send(&self) -> DeviceFault {
        match self {
            BusError::NotConnected => DeviceFault::offline(self.to_string()),
            _ => DeviceFault::outcome_unknown(self.to_string()),
        }
    }
}

/// Timing of a bus.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BusTiming {
    pub(crate) io_timeout: Duration,
    pub(crate) drain_quiet: Duration,
}

/// The link to one MDB peripheral through the bridge.
#[derive(Debug)]
pub(crate) struct Bus {
    /// A tokio mutex: held for one command and its one reply line.
    link: Mutex<Link>,
    timing: BusTiming,
}

impl Bus {
    pub(crate) fn new(
        connector: std::sync::Arc<dyn Connector>,
        connect_timeout: Duration,
        timing: BusTiming,
    ) -> Self {
        Self {
            link: Mutex::new(Link::new(connector, connect_timeout)),
            timing,
        }
    }

    /// Connect, unless connected. Cancel-safe.
    pub(crate) async fn connect(&self) -> Result<(), DeviceFault> {
        let mut link = self.link.lock().await;
        if link.is_connected() {
            return Ok(());
        }
        link.connect().await
    }

    pub(crate) async fn disconnect(&self) {
        self.link.lock().await.disconnect();
    }

    pub(crate) async fn is_connected(&self) -> bool {
        self.link.lock().await.is_connected()
    }

    fn failed(&self, core: &DeviceCore, link: &mut Link, f: Failure, block: &[u8]) -> BusError {
        let b = block.to_vec();
        let e = match f {
            Failure::NotConnected => BusError::NotConnected,
            Failure::Timeout => BusError::Timeout(b, self.timing.io_timeout),
            Failure::Eof => BusError::Eof(b),
            Failure::Io(e) => BusError::Io(e, b),
        };
        if matches!(e, BusError::Eof(_) | BusError::Io(..)) {
            link.disconnect();
            tracing::warn!(device = %core.id(), error = %e, "MDB bridge link lost.");
            core.mark_closed(PowerState::Offline);
        }
        e
    }

    /// Send `cmd` (as `block`) to a device that must ACK it or answer with data: the
    /// data, if any. Any other reply is a failure naming `device` and the command.
    pub(crate) async fn command(
        &self,
        core: &DeviceCore,
        device: &str,
        cmd: &impl std::fmt::Debug,
        block: &[u8],
    ) -> Result<Option<Vec<u8>>, DeviceFault> {
        match self.exchange(core, block).await.map_err(|e| e.fault())? {
            BridgeReply::Ack => Ok(None),
            BridgeReply::Data(d) => Ok(Some(d)),
            other => Err(DeviceFault::failure(format!(
                "{device} did not take {cmd:?}: {other:?}"
            ))),
        }
    }

    /// [`command`](Self::command) for a command that must be answered with data.
    pub(crate) async fn data(
        &self,
        core: &DeviceCore,
        device: &str,
        cmd: &impl std::fmt::Debug,
        block: &[u8],
    ) -> Result<Vec<u8>, DeviceFault> {
        self.command(core, device, cmd, block)
            .await?
            .ok_or_else(|| DeviceFault::failure(format!("{device} sent no data to {cmd:?}")))
    }

    /// Send `block` (address and command, then data) and read the bridge's one
    /// reply line. A dirty link (a reply that never came, or came late) is drained
    /// first. Cancel-safe in that a cancelled exchange leaves the link dirty.
    pub(crate) async fn exchange(
        &self,
        core: &DeviceCore,
        block: &[u8],
    ) -> Result<BridgeReply, BusError> {
        let mut guard = self.link.lock().await;
        let link = &mut *guard;
        let t = self.timing.io_timeout;
        if !link.is_connected() {
            return Err(BusError::NotConnected);
        }
        if link.is_dirty() {
            let mut buf = [0u8; 128];
            let drained = link.drain(&mut buf, self.timing.drain_quiet, t, |n| {
                core.count("bytes_drained", n as u64);
            });
            if let Err(f) = drained.await {
                return Err(self.failed(core, link, f, block));
            }
        }
        let sent = match link.begin() {
            Ok(()) => link.send(host_line(block).as_bytes(), t).await,
            Err(f) => Err(f),
        };
        if let Err(f) = sent {
            return Err(self.failed(core, link, f, block));
        }
        let mut buf = [0u8; 128];
        let line = match link.read_line(MAX_LINE, &mut buf, Instant::now() + t).await {
            Ok(line) => {
                line.map_err(|o| BusError::Malformed(MdbError::TooLong(o.max), block.to_vec()))?
            }
            Err(f) => return Err(self.failed(core, link, f, block)),
        };
        parse_bridge_line(&line).map_err(|e| BusError::Malformed(e, block.to_vec()))
    }
}
