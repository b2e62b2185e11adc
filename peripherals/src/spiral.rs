//! A spiral-motor vending board speaking OSB/1, Outpost's line protocol for a board
//! that drives the spirals and watches the drop sensor, over serial or TCP.
//!
//! # OSB/1
//! ASCII lines ending CR LF (LF alone accepted), at most [`MAX_LINE`] bytes. The host
//! sends one command and the board answers exactly one line:
//!
//! | host | board |
//! |---|---|
//! | `HELLO` | `HELLO OSB/1 <trays> <columns>` |
//! | `VEND <key> <slot>` | `DROP <key>`, `NODROP <key> <reason>`, `JAM <key> <reason>` or `REFUSED <key> <reason>` |
//! | `STATUS <key>` | `DROP <key>`, `NODROP <key> <reason>`, `JAM <key> <reason>`, `RUNNING <key>` or `UNKNOWN <key>` |
//!
//! - `<key>` is the host's key for the vend: 1 to 64 visible ASCII characters, no
//!   space. The board keeps the outcome of at least its last 1,000 keys through its
//!   own power loss, and refuses a key it has seen (`REFUSED <key> used`): a key runs
//!   the motor at most once.
//! - `<slot>` is tray letter and column: `A1` to `Z99`.
//! - `VEND` turns the slot's spiral one revolution and answers after the drop window:
//!   `DROP` when the drop sensor (a light curtain across the delivery chute) saw a
//!   product fall, `NODROP` when the spiral turned and nothing fell (an empty spiral, a
//!   product caught), `JAM` when the motor stalled (nothing fell). `REFUSED` means
//!   nothing ran (a used key, no such slot, the door open).
//! - `STATUS` tells what happened under a key: `RUNNING` while its vend is running,
//!   `UNKNOWN` when the board never took it (nothing ran).
//! - `<reason>` is free text to the end of the line.
//!
//! [`parse_reply`] and [`parse_command`] are the fuzz entry points.
//!
//! # The driver
//! [`SpiralBoard`] is a [`VendDispenser`]: `vend` is `VEND`, `vend_status` is
//! `STATUS`. A reply that does not come within `vend_timeout` (or comes for another
//! key) is [`ErrorKind::OutcomeUnknown`](crate::ErrorKind::OutcomeUnknown): the caller
//! asks `vend_status` about the key. One tokio mutex around the link, held for one
//! command and its reply line; a late reply is drained before the next command.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::event::{DataEvent, EventBody};
use crate::fault::DeviceFault;
use crate::key::CommandKey;
use crate::link::{Failure, Link, io_kind};
use crate::transport::{Connector, SerialConnector, TcpConnector};
use crate::vend::{VendDispenser, VendOutcome, VendStatus};

/// Longest line either way.
pub const MAX_LINE: usize = 160;
/// Longest key.
pub const MAX_KEY: usize = 64;
/// The TCP port of serial-to-IP converters when the address has none.
pub const DEFAULT_PORT: u16 = 4001;

/// Why a line is not OSB/1.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiralError {
    /// Not a line of the protocol.
    #[error("not an OSB/1 line: {0:?}")]
    BadLine(String),
    /// A key that is empty, too long or not visible ASCII.
    #[error("bad key in {0:?}")]
    BadKey(String),
    /// A slot that is not a tray letter and a column.
    #[error("bad slot {0:?}")]
    BadSlot(String),
    /// Longer than [`MAX_LINE`].
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
}

/// A host command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELLO`.
    Hello,
    /// `VEND <key> <slot>`.
    Vend {
        /// The host's key.
        key: String,
        /// The slot.
        slot: String,
    },
    /// `STATUS <key>`.
    Status {
        /// The host's key.
        key: String,
    },
}

impl Command {
    /// The line, with CR LF.
    pub fn line(&self) -> String {
        match self {
            Command::Hello => "HELLO\r\n".into(),
            Command::Vend { key, slot } => format!("VEND {key} {slot}\r\n"),
            Command::Status { key } => format!("STATUS {key}\r\n"),
        }
    }
}

/// What a key's vend came to, as the board says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `DROP`: the sensor saw the product fall.
    Drop,
    /// `NODROP <reason>`: the spiral turned, nothing fell.
    NoDrop(String),
    /// `JAM <reason>`: the motor stalled, nothing fell.
    Jam(String),
}

/// A board reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `HELLO OSB/1 <trays> <columns>`.
    Hello {
        /// Trays.
        trays: u8,
        /// Columns per tray.
        columns: u8,
    },
    /// A finished vend under `key`.
    Done {
        /// The key.
        key: String,
        /// What happened.
        outcome: Outcome,
    },
    /// `RUNNING <key>`.
    Running {
        /// The key.
        key: String,
    },
    /// `UNKNOWN <key>`.
    Unknown {
        /// The key.
        key: String,
    },
    /// `REFUSED <key> <reason>`: nothing ran.
    Refused {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned()
}

/// Whether `k` is a valid key.
pub fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether `s` is a slot name (`A1` to `Z99`).
pub fn valid_slot(s: &str) -> bool {
    let b = s.as_bytes();
    matches!(b.len(), 2 | 3)
        && b[0].is_ascii_uppercase()
        && b[1] != b'0'
        && b[1..].iter().all(u8::is_ascii_digit)
}

fn words(line: &[u8]) -> Result<(String, Vec<&str>), SpiralError> {
    if line.len() > MAX_LINE {
        return Err(SpiralError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| SpiralError::BadLine(shown(line)))?;
    if text.bytes().any(|b| b.is_ascii_control()) {
        return Err(SpiralError::BadLine(shown(line)));
    }
    Ok((text.to_owned(), text.splitn(3, ' ').collect()))
}

fn key(k: &str, line: &str) -> Result<String, SpiralError> {
    if valid_key(k) {
        Ok(k.to_owned())
    } else {
        Err(SpiralError::BadKey(line.chars().take(40).collect()))
    }
}

/// Parse one board line (terminator removed). Never panics.
pub fn parse_reply(line: &[u8]) -> Result<Reply, SpiralError> {
    let (text, w) = words(line)?;
    let bad = || SpiralError::BadLine(shown(line));
    let reason = |w: &[&str]| w.get(2).map(|r| (*r).to_owned()).unwrap_or_default();
    match w.as_slice() {
        ["HELLO", rest @ ..] => {
            let joined = rest.join(" ");
            let parts: Vec<&str> = joined.split(' ').collect();
            match parts.as_slice() {
                ["OSB/1", t, c] => Ok(Reply::Hello {
                    trays: t.parse().map_err(|_| bad())?,
                    columns: c.parse().map_err(|_| bad())?,
                }),
                _ => Err(bad()),
            }
        }
        ["DROP", k] => Ok(Reply::Done {
            key: key(k, &text)?,
            outcome: Outcome::Drop,
        }),
        ["NODROP", k, ..] => Ok(Reply::Done {
            key: key(k, &text)?,
            outcome: Outcome::NoDrop(reason(&w)),
        }),
        ["JAM", k, ..] => Ok(Reply::Done {
            key: key(k, &text)?,
            outcome: Outcome::Jam(reason(&w)),
        }),
        ["RUNNING", k] => Ok(Reply::Running {
            key: key(k, &text)?,
        }),
        ["UNKNOWN", k] => Ok(Reply::Unknown {
            key: key(k, &text)?,
        }),
        ["REFUSED", k, ..] => Ok(Reply::Refused {
            key: key(k, &text)?,
            reason: reason(&w),
        }),
        _ => Err(bad()),
    }
}

/// Parse one host line (terminator removed). Never panics.
pub fn parse_command(line: &[u8]) -> Result<Command, SpiralError> {
    let (text, w) = words(line)?;
    match w.as_slice() {
        ["HELLO"] => Ok(Command::Hello),
        ["VEND", k, s] => {
            if !valid_slot(s) {
                return Err(SpiralError::BadSlot((*s).chars().take(8).collect()));
            }
            Ok(Command::Vend {
                key: key(k, &text)?,
                slot: (*s).to_owned(),
            })
        }
        ["STATUS", k] => Ok(Command::Status {
            key: key(k, &text)?,
        }),
        _ => Err(SpiralError::BadLine(shown(line))),
    }
}

/// Settings of one board.
#[derive(Debug, Clone)]
pub struct SpiralConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Bound on `HELLO` and `STATUS`.
    pub io_timeout: Duration,
    /// Bound on `VEND`: one revolution and the drop window.
    pub vend_timeout: Duration,
    /// Quiet time that ends draining a late reply.
    pub drain_quiet: Duration,
}

impl Default for SpiralConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(1),
            vend_timeout: Duration::from_secs(8),
            drain_quiet: Duration::from_millis(50),
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: SpiralConfig,
    link: Mutex<Link>,
    core: DeviceCore,
}

/// A spiral board over serial, TCP or any byte stream, as a [`VendDispenser`].
///
/// Clones share the board. Counters: `vends`, `drops`, `jams`, `bytes_drained`.
#[derive(Debug, Clone)]
pub struct SpiralBoard {
    shared: Arc<Shared>,
}

impl SpiralBoard {
    /// A board on serial port `path` at `baud`.
    pub fn serial(id: &str, path: &str, baud: u32, config: SpiralConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A board behind a serial-to-IP converter at `address` (`host` means port
    /// [`DEFAULT_PORT`]).
    pub fn tcp(id: &str, address: &str, config: SpiralConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, DEFAULT_PORT)),
            config,
        )
    }

    /// A board over any transport.
    pub fn with_connector(id: &str, connector: Arc<dyn Connector>, config: SpiralConfig) -> Self {
        let info = DeviceInfo::new(id, DeviceKind::VendDispenser, "osb1", connector.describe());
        Self {
            shared: Arc::new(Shared {
                link: Mutex::new(Link::new(connector, config.connect_timeout)),
                config,
                core: DeviceCore::new(info),
            }),
        }
    }
}

impl Shared {
    /// Send `cmd`, read one reply line within `limit`. A timeout after the command
    /// went out is outcome-unknown (the link stays, dirty, and is drained next time);
    /// a broken stream closes the device.
    async fn exchange(&self, cmd: &Command, limit: Duration) -> Result<Reply, DeviceFault> {
        let mut guard = self.link.lock().await;
        let link = &mut *guard;
        if !link.is_connected() {
            return Err(DeviceFault::offline(
                "board link is down; open the device again",
            ));
        }
        if link.is_dirty() {
            let mut buf = [0u8; 128];
            let (quiet, bound) = (self.config.drain_quiet, self.config.io_timeout);
            let core = &self.core;
            if let Err(f) = link
                .drain(&mut buf, quiet, bound, |n| {
                    core.count("bytes_drained", n as u64)
                })
                .await
            {
                return Err(self.failed(link, f, false));
            }
        }
        let sent = match link.begin() {
            Ok(()) => {
                link.send(cmd.line().as_bytes(), self.config.io_timeout)
                    .await
            }
            Err(f) => Err(f),
        };
        if let Err(f) = sent {
            // Nothing may have reached the board, but a partial write might have:
            // only an unsent command is certain, and Link cannot tell.
            return Err(self.failed(link, f, true));
        }
        let mut buf = [0u8; 256];
        let line = match link
            .read_line(MAX_LINE, &mut buf, Instant::now() + limit)
            .await
        {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => return Err(DeviceFault::outcome_unknown("board reply too long")),
            Err(f) => return Err(self.failed(link, f, true)),
        };
        parse_reply(&line)
            .map_err(|e| DeviceFault::outcome_unknown(format!("board reply unreadable: {e}")))
    }

    fn failed(&self, link: &mut Link, f: Failure, sent: bool) -> DeviceFault {
        let msg = format!("spiral board: {f}");
        let fault = match &f {
            Failure::NotConnected => DeviceFault::offline(msg),
            Failure::Io(e) if !sent => DeviceFault::new(io_kind(e), msg),
            _ if sent => DeviceFault::outcome_unknown(msg),
            _ => DeviceFault::timeout(msg),
        };
        if f.is_broken() {
            link.disconnect();
            tracing::warn!(device = %self.core.id(), error = %fault, "Spiral board link lost.");
            self.core.mark_closed(PowerState::Offline);
        }
        fault
    }
}

fn status_of(outcome: Outcome) -> VendOutcome {
    match outcome {
        Outcome::Drop => VendOutcome::Dispensed,
        Outcome::NoDrop(reason) => VendOutcome::NotDispensed {
            reason: format!("the drop sensor saw nothing: {reason}"),
        },
        Outcome::Jam(reason) => VendOutcome::NotDispensed {
            reason: format!("the motor jammed: {reason}"),
        },
    }
}

#[async_trait]
impl Device for SpiralBoard {
    fn core(&self) -> &DeviceCore {
        &self.shared.core
    }

    /// Connects and says `HELLO`; a board that does not answer OSB/1 does not open.
    /// Cancel-safe.
    async fn open(&self) -> Result<(), DeviceFault> {
        let fresh = {
            let mut link = self.shared.link.lock().await;
            if link.is_connected() {
                false
            } else {
                link.connect().await?;
                true
            }
        };
        match self
            .shared
            .exchange(&Command::Hello, self.shared.config.io_timeout)
            .await
        {
            Ok(Reply::Hello { trays, columns }) => {
                self.shared.core.set_identity(
                    None,
                    Some(format!("OSB/1 board, {trays} trays of {columns}")),
                    None,
                    None,
                );
            }
            other => {
                self.shared.link.lock().await.disconnect();
                return Err(match other {
                    Err(f) => f,
                    Ok(r) => DeviceFault::failure(format!("board answered HELLO with {r:?}")),
                });
            }
        }
        if fresh || self.shared.core.state() == DeviceState::Closed {
            self.shared.core.mark_opened();
        }
        Ok(())
    }

    async fn close(&self) {
        self.shared.link.lock().await.disconnect();
        self.shared.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self
            .shared
            .exchange(&Command::Hello, self.shared.config.io_timeout)
            .await
        {
            Ok(Reply::Hello { .. }) => HealthReport::now(Health::Ok, "board answers HELLO"),
            Ok(r) => HealthReport::now(Health::Failed, format!("board answered {r:?}")),
            Err(f) => HealthReport::now(Health::Failed, f.to_string()),
        };
        self.shared.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl VendDispenser for SpiralBoard {
    /// Not cancel-safe once sent: ask `vend_status` about the key after a cancelled
    /// call.
    async fn vend(&self, key: &CommandKey, slot: &str) -> Result<VendOutcome, DeviceFault> {
        let s = &self.shared;
        s.core.ensure_ready()?;
        if !valid_key(&key.0) {
            return Err(DeviceFault::illegal(format!(
                "key {key} is not 1 to {MAX_KEY} visible ASCII characters"
            )));
        }
        if !valid_slot(slot) {
            return Err(DeviceFault::illegal(format!("no slot {slot:?}")));
        }
        let cmd = Command::Vend {
            key: key.0.clone(),
            slot: slot.to_owned(),
        };
        s.core.count("vends", 1);
        let r = match s.exchange(&cmd, s.config.vend_timeout).await {
            Ok(Reply::Done { key: k, outcome }) if k == key.0 => {
                match &outcome {
                    Outcome::Drop => {
                        s.core.count("drops", 1);
                        s.core.events().publish(EventBody::Data {
                            data: DataEvent::Drop {
                                slot: slot.to_owned(),
                            },
                        });
                    }
                    Outcome::Jam(_) => s.core.count("jams", 1),
                    Outcome::NoDrop(_) => {}
                }
                Ok(status_of(outcome))
            }
            Ok(Reply::Refused { key: k, reason }) if k == key.0 => Err(DeviceFault::illegal(
                format!("board refused the vend: {reason}"),
            )),
            Ok(other) => Err(DeviceFault::outcome_unknown(format!(
                "board answered VEND {} with {other:?}",
                key.0
            ))),
            Err(f) => Err(f),
        };
        s.core.record(&r);
        r
    }

    async fn vend_status(&self, key: &CommandKey) -> Result<VendStatus, DeviceFault> {
        let s = &self.shared;
        if !valid_key(&key.0) {
            return Ok(VendStatus::Unknown);
        }
        let cmd = Command::Status { key: key.0.clone() };
        let r = match s.exchange(&cmd, s.config.io_timeout).await? {
            Reply::Done { key: k, outcome } if k == key.0 => {
                Ok(VendStatus::Done(status_of(outcome)))
            }
            Reply::Running { key: k } if k == key.0 => Ok(VendStatus::InProgress),
            Reply::Unknown { key: k } if k == key.0 => Ok(VendStatus::Unknown),
            other => Err(DeviceFault::failure(format!(
                "board answered STATUS {} with {other:?}",
                key.0
            ))),
        };
        s.core.record(&r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_replies_parse() {
        for c in [
            Command::Hello,
            Command::Vend {
                key: "vend-1".into(),
                slot: "B7".into(),
            },
            Command::Status { key: "k".into() },
        ] {
            let line = c.line();
            assert_eq!(
                parse_command(line.trim_end().as_bytes()).unwrap(),
                c,
                "{line}"
            );
        }
        assert_eq!(
            parse_reply(b"HELLO OSB/1 6 8").unwrap(),
            Reply::Hello {
                trays: 6,
                columns: 8
            }
        );
        assert_eq!(
            parse_reply(b"NODROP k empty spiral").unwrap(),
            Reply::Done {
                key: "k".into(),
                outcome: Outcome::NoDrop("empty spiral".into())
            }
        );
        assert_eq!(
            parse_reply(b"REFUSED k used").unwrap(),
            Reply::Refused {
                key: "k".into(),
                reason: "used".into()
            }
        );
        assert!(matches!(
            parse_reply(b"UNKNOWN k").unwrap(),
            Reply::Unknown { .. }
        ));
    }

    #[test]
    fn bad_lines_are_refused_with_what_is_wrong() {
        assert!(matches!(parse_reply(b"DROP"), Err(SpiralError::BadLine(_))));
        assert!(matches!(
            parse_reply(b"HELLO OSB/2 6 8"),
            Err(SpiralError::BadLine(_))
        ));
        assert!(matches!(
            parse_command(b"VEND k A0"),
            Err(SpiralError::BadSlot(_))
        ));
        let long_key = format!("STATUS {}", "k".repeat(MAX_KEY + 1));
        assert!(matches!(
            parse_command(long_key.as_bytes()),
            Err(SpiralError::BadKey(_))
        ));
        assert!(matches!(
            parse_reply(&[b'D'; MAX_LINE + 1]),
            Err(SpiralError::TooLong)
        ));
        assert!(matches!(
            parse_reply(b"DROP k\x07"),
            Err(SpiralError::BadLine(_))
        ));
        for s in ["A1", "Z99", "F8"] {
            assert!(valid_slot(s), "{s}");
        }
        for s in ["", "A", "a1", "A0", "A100", "AA1", "A-1"] {
            assert!(!valid_slot(s), "{s}");
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let alphabet = b"HELOVNDSTATUSRPJMKCFW 0123456789/AZ-\xff\x07";
        for _ in 0..3_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 48) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            x = x.wrapping_add(3);
            let _ = parse_reply(&bytes);
            let _ = parse_command(&bytes);
        }
    }
}
