//! Scales speaking Mettler-Toledo MT-SICS (Standard Interface Command Set), level 0
//! subset, over a serial port or a serial-to-IP converter. `docs/devices-serial.md`
//! lists the commands and replies.
//!
//! - [`parse_reply`] turns one reply line into a [`SicsReply`] (the fuzz entry
//!   point, with [`parse_replies`]).
//! - [`SicsScale`] is the driver.
//!
//! # Stable weight: polling `SI`, not `S`
//!
//! A selling weight is a reading with status `S` (stable). The driver polls `SI`
//! (send immediately) until one comes, within the caller's timeout, instead of
//! sending `S`: a scale answers `S` only once it has settled, after a delay of its own
//! choosing, so a caller's timeout would leave that late answer on the link to be
//! mistaken for the reply to the next command. `SI` is answered at once, so every
//! exchange is bounded and every reading that arrives is also a live reading.
//!
//! # Concurrency: a tokio `Mutex` around the link
//!
//! MT-SICS is strictly request then reply, started by the caller, so (as for the
//! ESC/POS driver) one tokio mutex held for one exchange gives the order an owner task
//! would, with nothing to supervise. An exchange marks the link dirty before writing
//! and clean after its reply; a timed-out or cancelled exchange leaves it dirty, and
//! the next exchange first drains what arrives during a short quiet window, so a late
//! reply is not read as the answer to a new command.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::event::{DataEvent, EventBody};
use crate::fault::{Condition, DeviceFault};
use crate::link::{Failure, Link, io_kind};
use crate::scale::{Scale, WeightReading};
use crate::transport::{Connector, LineFramer, SerialConnector, TcpConnector};

/// The TCP port of serial-to-IP converters when the address has none.
pub const DEFAULT_PORT: u16 = 4001;
/// Longest reply line accepted, in bytes (MT-SICS replies are under 40).
pub const MAX_LINE: usize = 128;
/// Largest weight accepted, in milligrams (10 tonnes): more is a malformed reply.
pub const MAX_MILLIGRAMS: i64 = 10_000_000_000;

/// MT-SICS error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SicsErrorCode {
    /// `ES`: the scale did not recognise the command.
    Syntax,
    /// `ET`: the scale received a faulty command (parity, framing, too long).
    Transmission,
    /// `EL`: the scale understood the command but cannot carry it out.
    Logical,
}

/// One reply from the scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SicsReply {
    /// `S S <value> <unit>` (stable) or `S D <value> <unit>` (dynamic), in grams.
    Weight(WeightReading),
    /// `S +`: overload, above the weighing range.
    Overload,
    /// `S -`: underload, below the weighing range.
    Underload,
    /// `S I`: the weight command cannot be carried out now (busy, or no stable
    /// weight within the scale's own timeout).
    WeightNotExecutable,
    /// `Z A`: zeroed.
    Zeroed,
    /// `Z I`: zero not carried out now (unstable, busy).
    ZeroNotExecutable,
    /// `Z +` or `Z -`: the load is outside the zero range.
    ZeroOutOfRange {
        /// `+`: above the range.
        above: bool,
    },
    /// `I2 A "..."`, `I3 A "..."`, `I4 A "..."`: an identification answer.
    Info {
        /// The command answered, e.g. `I4`.
        command: String,
        /// The quoted text.
        text: String,
    },
    /// `ES`, `ET` or `EL`.
    Error(SicsErrorCode),
}

/// Why a reply line is not an MT-SICS reply this driver understands.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SicsError {
    /// Not printable ASCII.
    #[error("reply is not printable ASCII (byte 0x{byte:02X} at {at})")]
    NotAscii {
        /// Offset.
        at: usize,
        /// The byte.
        byte: u8,
    },
    /// Longer than [`MAX_LINE`] before a terminator.
    #[error("reply longer than {0} bytes")]
    TooLong(usize),
    /// A reply this driver does not know.
    #[error("unknown reply {0:?}")]
    Unknown(String),
    /// A weight reply whose value does not parse or is out of range.
    #[error("bad weight value {0:?}")]
    BadWeight(String),
    /// A weight in a unit the driver does not sell by.
    #[error("unsupported weight unit {0:?} (set the scale to g or kg)")]
    BadUnit(String),
}

/// Milligrams in one `unit`.
fn unit_mg(unit: &str) -> Option<i64> {
    match unit {
        "mg" => Some(1),
        "g" => Some(1_000),
        "kg" => Some(1_000_000),
        _ => None,
    }
}

/// A decimal like `-12.345` in `unit`, to whole grams (half away from zero).
fn grams(value: &str, unit: &str) -> Result<i64, SicsError> {
    let bad = || SicsError::BadWeight(value.to_owned());
    let per = unit_mg(unit).ok_or_else(|| SicsError::BadUnit(unit.to_owned()))?;
    let (neg, digits) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || !all_digits(frac) || int.len() + frac.len() > 12 {
        return Err(bad());
    }
    // Milligrams exactly: int * per + frac * per / 10^len(frac), rounded.
    let int_v: i64 = int.parse().map_err(|_| bad())?;
    let mut mg = int_v.checked_mul(per).ok_or_else(bad)?;
    if !frac.is_empty() {
        let frac_v: i64 = frac.parse().map_err(|_| bad())?;
        let scale = 10i64.checked_pow(frac.len() as u32).ok_or_else(bad)?;
        let num = frac_v.checked_mul(per).ok_or_else(bad)?;
        mg += (num + scale / 2) / scale;
    }
    if mg > MAX_MILLIGRAMS {
        return Err(bad());
    }
    let g = (mg + 500) / 1000;
    Ok(if neg { -g } else { g })
}

/// Parse one reply line (terminator removed). Never panics, whatever the bytes.
pub fn parse_reply(line: &[u8]) -> Result<SicsReply, SicsError> {
    if let Some((at, &byte)) = line
        .iter()
        .enumerate()
        .find(|(_, b)| !(b' '..=b'~').contains(*b))
    {
        return Err(SicsError::NotAscii { at, byte });
    }
    // Printable ASCII is UTF-8.
    let text = String::from_utf8_lossy(line);
    let unknown = || SicsError::Unknown(text.chars().take(40).collect());
    let mut parts = text.split_whitespace();
    let cmd = parts.next().ok_or_else(unknown)?;
    match cmd {
        "ES" | "ET" | "EL" if parts.next().is_none() => {
            return Ok(SicsReply::Error(match cmd {
                "ES" => SicsErrorCode::Syntax,
                "ET" => SicsErrorCode::Transmission,
                _ => SicsErrorCode::Logical,
            }));
        }
        _ => {}
    }
    let status = parts.next().ok_or_else(unknown)?;
    match (cmd, status) {
        ("S", "S" | "D") => {
            let value = parts.next().ok_or_else(unknown)?;
            let unit = parts
                .next()
                .ok_or_else(|| SicsError::BadUnit(String::new()))?;
            if parts.next().is_some() {
                return Err(unknown());
            }
            Ok(SicsReply::Weight(WeightReading {
                grams: grams(value, unit)?,
                stable: status == "S",
            }))
        }
        ("S", _) | ("Z", _) if parts.next().is_some() => Err(unknown()),
        ("S", "+") => Ok(SicsReply::Overload),
        ("S", "-") => Ok(SicsReply::Underload),
        ("S", "I") => Ok(SicsReply::WeightNotExecutable),
        ("Z", "A") => Ok(SicsReply::Zeroed),
        ("Z", "I") => Ok(SicsReply::ZeroNotExecutable),
        ("Z", "+") => Ok(SicsReply::ZeroOutOfRange { above: true }),
        ("Z", "-") => Ok(SicsReply::ZeroOutOfRange { above: false }),
        ("I2" | "I3" | "I4", "A") => {
            // The rest of the line after `Ix A `, one quoted string.
            let rest = text
                .split_once(" A ")
                .map(|(_, r)| r.trim())
                .ok_or_else(unknown)?;
            let quoted = rest
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .filter(|r| !r.contains('"'))
                .ok_or_else(unknown)?;
            Ok(SicsReply::Info {
                command: cmd.to_owned(),
                text: quoted.trim().to_owned(),
            })
        }
        _ => Err(unknown()),
    }
}

/// Frame `bytes` into reply lines and parse each. The fuzz entry point.
pub fn parse_replies(bytes: &[u8]) -> Vec<Result<SicsReply, SicsError>> {
    LineFramer::new(MAX_LINE)
        .feed(bytes)
        .into_iter()
        .map(|r| match r {
            Ok(line) => parse_reply(&line),
            Err(o) => Err(SicsError::TooLong(o.max)),
        })
        .collect()
}

/// Settings of one scale.
#[derive(Debug, Clone)]
pub struct SicsConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Bound on one command and its reply.
    pub io_timeout: Duration,
    /// How often `stable_weight` asks again while the weight moves.
    pub poll_interval: Duration,
    /// Quiet time that ends draining a late reply after a timed-out exchange.
    pub drain_quiet: Duration,
}

impl Default for SicsConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            drain_quiet: Duration::from_millis(50),
        }
    }
}

/// Why an exchange failed; a [`DeviceFault`] at the trait boundary.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("scale link is down; open the device again")]
    NotConnected,
    #[error("scale did not answer {0} within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("scale closed the connection during {0}")]
    Eof(&'static str),
    #[error("I/O error during {1}: {0}")]
    Io(#[source] std::io::Error, &'static str),
    #[error("malformed reply to {1}: {0}")]
    Reply(#[source] SicsError, &'static str),
}

impl LinkError {
    /// A link failure during `command`, after waiting `t` at most.
    fn at(f: Failure, command: &'static str, t: Duration) -> Self {
        match f {
            Failure::NotConnected => LinkError::NotConnected,
            Failure::Timeout => LinkError::Timeout(command, t),
            Failure::Eof => LinkError::Eof(command),
            Failure::Io(e) => LinkError::Io(e, command),
        }
    }

    fn fault(&self) -> DeviceFault {
        let msg = self.to_string();
        match self {
            LinkError::NotConnected | LinkError::Eof(_) => DeviceFault::offline(msg),
            LinkError::Timeout(..) => DeviceFault::timeout(msg),
            LinkError::Io(e, _) => DeviceFault::new(io_kind(e), msg),
            LinkError::Reply(..) => DeviceFault::failure(msg),
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: SicsConfig,
    link: Mutex<Link>,
    core: DeviceCore,
    /// The reading last published, so only changes raise events. A std mutex: held
    /// to compare and store, never across an await.
    last: StdMutex<Option<WeightReading>>,
}

impl Shared {
    /// A link failure during `command`: a broken stream is dropped and the scale is
    /// offline; a timeout keeps the link, dirty, to be drained by the next exchange.
    fn failed(&self, link: &mut Link, f: Failure, command: &'static str) -> LinkError {
        let broken = f.is_broken();
        let e = LinkError::at(f, command, self.config.io_timeout);
        if broken {
            link.disconnect();
            tracing::warn!(device = %self.core.id(), error = %e, "Scale link lost.");
            self.core.mark_closed(PowerState::Offline);
        }
        e
    }

    /// Send `command` and read one reply line. One reply per command: anything more
    /// leaves the link dirty, and the next exchange drains it first.
    async fn exchange(&self, command: &'static str) -> Result<SicsReply, LinkError> {
        let mut guard = self.link.lock().await;
        let link = &mut *guard;
        let t = self.config.io_timeout;
        if !link.is_connected() {
            return Err(LinkError::NotConnected);
        }
        if link.is_dirty() {
            self.drain(link).await?;
        }
        let line = format!("{command}\r\n");
        let sent = match link.begin() {
            Ok(()) => link.send(line.as_bytes(), t).await,
            Err(f) => Err(f),
        };
        if let Err(f) = sent {
            return Err(self.failed(link, f, command));
        }
        let mut buf = [0u8; 64];
        let line = match link.read_line(MAX_LINE, &mut buf, Instant::now() + t).await {
            Ok(line) => line,
            Err(f) => return Err(self.failed(link, f, command)),
        };
        line.map_err(|o| SicsError::TooLong(o.max))
            .and_then(|l| parse_reply(&l))
            .map_err(|e| LinkError::Reply(e, command))
    }

    /// Read and drop whatever arrives until the link is quiet for `drain_quiet`,
    /// bounded by `io_timeout`.
    async fn drain(&self, link: &mut Link) -> Result<(), LinkError> {
        let mut buf = [0u8; 64];
        let (quiet, limit) = (self.config.drain_quiet, self.config.io_timeout);
        let drained = link.drain(&mut buf, quiet, limit, |n| {
            self.core.count("bytes_drained", n as u64);
        });
        match drained.await {
            Ok(()) => Ok(()),
            Err(f) => Err(self.failed(link, f, "draining")),
        }
    }

    fn publish(&self, r: WeightReading) {
        let changed = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *last != Some(r);
            *last = Some(r);
            changed
        };
        if changed {
            self.core.events().publish(EventBody::Data {
                data: DataEvent::Weight(r),
            });
        }
    }

    /// One `SI` reading, as a fault for over- and underload.
    async fn reading(&self) -> Result<Option<WeightReading>, DeviceFault> {
        match self.exchange("SI").await.map_err(|e| e.fault())? {
            SicsReply::Weight(r) => {
                self.publish(r);
                Ok(Some(r))
            }
            SicsReply::WeightNotExecutable => Ok(None),
            SicsReply::Overload => Err(DeviceFault::condition(
                Condition::OverWeight,
                "scale overloaded (S +): take weight off",
            )),
            SicsReply::Underload => Err(DeviceFault::condition(
                Condition::UnderWeight,
                "scale underloaded (S -): is the pan in place?",
            )),
            other => Err(unexpected("SI", &other)),
        }
    }
}

fn unexpected(command: &str, reply: &SicsReply) -> DeviceFault {
    match reply {
        SicsReply::Error(code) => {
            DeviceFault::failure(format!("scale refused {command}: {code:?} error"))
        }
        other => DeviceFault::failure(format!("scale answered {command} with {other:?}")),
    }
}

/// An MT-SICS scale over serial, TCP or any byte stream.
///
/// Clones share the scale. Counters: `stable_weighings`, `unstable_refusals`,
/// `zeroings`, `bytes_drained`.
#[derive(Debug, Clone)]
pub struct SicsScale {
    shared: Arc<Shared>,
}

impl SicsScale {
    /// A scale on serial port `path` at `baud` (MT-SICS scales default to 9600).
    pub fn serial(id: &str, path: &str, baud: u32, config: SicsConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A scale behind a serial-to-IP converter or with its own Ethernet port at
    /// `address` (`host` means port [`DEFAULT_PORT`]).
    pub fn tcp(id: &str, address: &str, config: SicsConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, DEFAULT_PORT)),
            config,
        )
    }

    /// A scale over any transport.
    pub fn with_connector(id: &str, connector: Arc<dyn Connector>, config: SicsConfig) -> Self {
        let info = DeviceInfo::new(id, DeviceKind::Scale, "mt-sics", connector.describe());
        Self {
            shared: Arc::new(Shared {
                link: Mutex::new(Link::new(connector, config.connect_timeout)),
                config,
                core: DeviceCore::new(info),
                last: StdMutex::new(None),
            }),
        }
    }

    async fn stable(&self, limit: Duration) -> Result<u32, DeviceFault> {
        self.shared.core.ensure_ready()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(WeightReading {
                grams,
                stable: true,
            }) = self.shared.reading().await?
            {
                if grams <= 0 {
                    return Err(DeviceFault::condition(
                        Condition::UnderWeight,
                        format!("stable weight is {grams} g: nothing to sell"),
                    ));
                }
                self.shared.core.count("stable_weighings", 1);
                return Ok(u32::try_from(grams).unwrap_or(u32::MAX));
            }
            let now = Instant::now();
            if now + self.shared.config.poll_interval > deadline {
                self.shared.core.count("unstable_refusals", 1);
                return Err(DeviceFault::condition(
                    Condition::Unstable,
                    format!("weight did not settle within {limit:?}"),
                ));
            }
            tokio::time::sleep(self.shared.config.poll_interval).await;
        }
    }
}

#[async_trait]
impl Device for SicsScale {
    fn core(&self) -> &DeviceCore {
        &self.shared.core
    }

    /// Connects and asks the scale who it is (`I2` model, `I4` serial number); a
    /// scale that does not answer does not open. Cancel-safe.
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
        let mut ident = [None, None];
        for (slot, cmd) in ident.iter_mut().zip(["I2", "I4"]) {
            match self.shared.exchange(cmd).await {
                Ok(SicsReply::Info { text, .. }) => *slot = Some(text),
                // A scale without this identification command still weighs.
                Ok(_) => {}
                Err(e) => {
                    self.shared.link.lock().await.disconnect();
                    return Err(e.fault());
                }
            }
        }
        let [model, serial] = ident;
        self.shared.core.set_identity(None, model, None, serial);
        if fresh || self.shared.core.state() == DeviceState::Closed {
            self.shared.core.mark_opened();
        }
        Ok(())
    }

    async fn close(&self) {
        self.shared.link.lock().await.disconnect();
        self.shared.core.mark_closed(PowerState::Unknown);
    }

    /// Both levels take one `SI` reading: a scale has nothing visible to exercise.
    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self.shared.reading().await {
            Ok(Some(r)) => HealthReport::now(
                Health::Ok,
                format!(
                    "scale answers: {} g, {}",
                    r.grams,
                    if r.stable { "stable" } else { "moving" }
                ),
            ),
            Ok(None) => HealthReport::now(Health::Degraded, "scale answers but is busy (S I)"),
            Err(f) if f.device_condition().is_some() => {
                HealthReport::now(Health::Degraded, format!("scale answers: {f}"))
            }
            Err(f) => HealthReport::now(Health::Failed, f.to_string()),
        };
        self.shared.core.set_health(report.clone());
        report
    }
}

#[async_trait]
impl Scale for SicsScale {
    /// Polls `SI` every `poll_interval` until a stable reading, bounded by
    /// `timeout`. Cancel-safe (a cancelled exchange is drained before the next).
    async fn stable_weight(&self, timeout: Duration) -> Result<u32, DeviceFault> {
        let result = self.stable(timeout).await;
        self.shared.core.record(&result);
        result
    }

    async fn live_weight(&self) -> Result<WeightReading, DeviceFault> {
        let result = async {
            self.shared.core.ensure_ready()?;
            self.shared.reading().await?.ok_or_else(|| {
                DeviceFault::new(crate::ErrorKind::Busy, "scale cannot weigh now (S I)")
            })
        }
        .await;
        self.shared.core.record(&result);
        result
    }

    async fn zero(&self) -> Result<(), DeviceFault> {
        let result = async {
            self.shared.core.ensure_ready()?;
            match self.shared.exchange("Z").await.map_err(|e| e.fault())? {
                SicsReply::Zeroed => {
                    self.shared.core.count("zeroings", 1);
                    Ok(())
                }
                SicsReply::ZeroNotExecutable => Err(DeviceFault::condition(
                    Condition::Unstable,
                    "scale did not zero (Z I): the weight is moving or the scale is busy",
                )),
                SicsReply::ZeroOutOfRange { above } => Err(DeviceFault::illegal(format!(
                    "load is {} the zero range (Z {})",
                    if above { "above" } else { "below" },
                    if above { '+' } else { '-' }
                ))
                .with_condition(if above {
                    Condition::OverWeight
                } else {
                    Condition::UnderWeight
                })),
                other => Err(unexpected("Z", &other)),
            }
        }
        .await;
        self.shared.core.record(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(grams: i64, stable: bool) -> SicsReply {
        SicsReply::Weight(WeightReading { grams, stable })
    }

    #[test]
    fn weight_replies_parse_to_grams() {
        assert_eq!(parse_reply(b"S S      100.00 g"), Ok(w(100, true)));
        assert_eq!(parse_reply(b"S D      1.2345 kg"), Ok(w(1235, false)));
        assert_eq!(parse_reply(b"S S     -0.6 g"), Ok(w(-1, true)));
        assert_eq!(parse_reply(b"S S   2500 mg"), Ok(w(3, true)));
        assert_eq!(parse_reply(b"S +"), Ok(SicsReply::Overload));
        assert_eq!(parse_reply(b"S -"), Ok(SicsReply::Underload));
        assert_eq!(parse_reply(b"S I"), Ok(SicsReply::WeightNotExecutable));
        assert_eq!(parse_reply(b"Z A"), Ok(SicsReply::Zeroed));
        assert_eq!(
            parse_reply(b"Z -"),
            Ok(SicsReply::ZeroOutOfRange { above: false })
        );
        assert_eq!(
            parse_reply(b"EL"),
            Ok(SicsReply::Error(SicsErrorCode::Logical))
        );
        assert_eq!(
            parse_reply(b"I4 A \"B021002593\""),
            Ok(SicsReply::Info {
                command: "I4".into(),
                text: "B021002593".into()
            })
        );
    }

    #[test]
    fn malformed_replies_are_rejected() {
        assert!(matches!(
            parse_reply(b"S S 12,5 g"),
            Err(SicsError::BadWeight(_))
        ));
        assert!(matches!(
            parse_reply(b"S S 12.5 lb"),
            Err(SicsError::BadUnit(_))
        ));
        assert!(matches!(
            parse_reply(b"S S 12.5"),
            Err(SicsError::BadUnit(_))
        ));
        assert!(matches!(
            parse_reply(b"S S . g"),
            Err(SicsError::BadWeight(_))
        ));
        assert!(matches!(
            parse_reply(b"S S 99999999999999 kg"),
            Err(SicsError::BadWeight(_))
        ));
        assert!(matches!(
            parse_reply(b"S X 1 g"),
            Err(SicsError::Unknown(_))
        ));
        assert!(matches!(
            parse_reply(b"S + extra"),
            Err(SicsError::Unknown(_))
        ));
        assert!(matches!(
            parse_reply(b"S S 1 g g"),
            Err(SicsError::Unknown(_))
        ));
        assert!(matches!(parse_reply(b""), Err(SicsError::Unknown(_))));
        assert!(matches!(parse_reply(b"ES x"), Err(SicsError::Unknown(_))));
        assert!(matches!(
            parse_reply(b"I4 A B02"),
            Err(SicsError::Unknown(_))
        ));
        assert!(matches!(
            parse_reply(b"S S 1\x00 g"),
            Err(SicsError::NotAscii { at: 5, .. })
        ));
        assert!(matches!(
            parse_reply(b"S S \xff g"),
            Err(SicsError::NotAscii { .. })
        ));
    }

    #[test]
    fn truncated_and_random_replies_never_panic() {
        let good: &[&[u8]] = &[
            b"S S      100.00 g\r\n",
            b"I4 A \"B021002593\"\r\n",
            b"Z A\r\n",
        ];
        for line in good {
            for cut in 0..line.len() {
                let _ = parse_replies(&line[..cut]);
                let _ = parse_reply(&line[..cut]);
            }
        }
        let mut x: u64 = 0xD1B5_4A32_D192_ED03;
        let alphabet = b"SDIZAE+-.0123456789 gk\"\r\n\xff";
        for _ in 0..3_000 {
            let mut bytes = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            x = x.wrapping_add(3);
            for r in parse_replies(&bytes).into_iter().flatten() {
                if let SicsReply::Weight(r) = r {
                    assert!(r.grams.abs() <= MAX_MILLIGRAMS / 1000 + 1);
                }
            }
        }
    }
}
