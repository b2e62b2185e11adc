//! [`MdbCashless`]: an MDB cashless reader as a [`PaymentTerminal`].
//!
//! # The mapping
//!
//! - `authorize` enables the reader's session: it polls until the customer presents
//!   a card (BEGIN SESSION), then sends VEND REQUEST for the amount and waits for
//!   VEND APPROVED or VEND DENIED.
//! - `complete` is VEND SUCCESS (the product left the machine: the charge stands),
//!   then SESSION COMPLETE.
//! - `void` is VEND FAILURE (nothing was dispensed: the reader gives the money back),
//!   then SESSION COMPLETE. A settled vend cannot be reversed on level 1.
//! - `refund` is refused: level 1 has no refund (negative vend is level 3).
//! - `abort` withdraws a payment still waiting for a card.
//! - `status` answers from the driver's journal of keys, and resolves a vend whose
//!   answer was lost: it polls (a reader repeats data the bridge never ACKed), and
//!   once the reader's maximum response time has passed with no answer it sends
//!   VEND CANCEL and VEND FAILURE, which release any approval the driver never heard
//!   of, so the key ends declined or unknown with nothing charged.
//!
//! MDB carries no key, so the journal maps keys to the item number field of VEND
//! REQUEST, which carries the driver's vend sequence number (1 to 65534, wrapping)
//! for the reader's audit trail. The journal lives in memory: a restart loses it.
//!
//! # A restart of the controller
//!
//! Open polls the reader before anything else. A reader that lost its power (or
//! was never set up) answers JUST RESET, and open sets it up: RESET, which releases
//! every approval that never got VEND SUCCESS. One that answers anything else kept
//! its power while the controller restarted, and may still hold the session of a
//! vend a previous process left open: open leaves it as it is. `resume` binds that
//! vend's key to the kept session (the item number is not known any more: VEND
//! SUCCESS carries `FFFF`, "not given"); `complete`, `void` or `abort` under the key
//! finish it on the wire (an answer of COMMAND OUT OF SEQUENCE to VEND SUCCESS
//! means the reader is not in a vend: the VEND SUCCESS sent before the restart took
//! the charge), then SESSION COMPLETE and the RESET open put off. A kept session
//! nobody resumes is reset before the next `authorize`.
//!
//! # Concurrency
//!
//! One tokio mutex around the bridge link, held for one command and its one reply
//! line (the bridge answers every `T` line with exactly one line), as in the ESC/POS
//! and MT-SICS drivers. The journal and the reader's session state sit behind std
//! mutexes, held only to read or update, never across an await.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::bridge::{Answer, LinkError, Reader, Shared, lock};
use super::journal::{Book, State, status_of};
use super::protocol::{Command, ReaderConfig};
use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::fault::DeviceFault;
use crate::link::Link;
use crate::payment::{
    KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest, PaymentTerminal,
};
use crate::transport::{Connector, SerialConnector, TcpConnector};

/// The TCP port of serial-to-IP converters when the address has none.
pub const DEFAULT_PORT: u16 = 4001;
/// Keys the journal remembers; the oldest finished ones go first.
pub const JOURNAL_KEYS: usize = 10_000;

/// Settings of one reader.
#[derive(Debug, Clone)]
pub struct MdbConfig {
    /// Bound on opening the transport.
    pub connect_timeout: Duration,
    /// Bound on one bridge command and its reply line.
    pub io_timeout: Duration,
    /// How often the reader is polled while waiting.
    pub poll_interval: Duration,
    /// How long `authorize` waits for the customer to present a card.
    pub session_wait: Duration,
    /// The currency the reader is set up for (ISO 4217 code).
    pub currency: String,
    /// Decimal places of `currency`; the reader's config must agree.
    pub decimal_places: u8,
    /// How long a VEND REQUEST may go unanswered before it is cancelled; `None`
    /// uses the reader's own maximum response time from its config.
    pub response_timeout: Option<Duration>,
    /// Quiet time that ends draining a late reply after a timed-out exchange.
    pub drain_quiet: Duration,
}

impl Default for MdbConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            io_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
            session_wait: Duration::from_secs(30),
            currency: "EUR".into(),
            decimal_places: 2,
            response_timeout: None,
            drain_quiet: Duration::from_millis(50),
        }
    }
}

/// An MDB cashless reader through a serial MDB bridge, as a payment terminal.
///
/// Clones share the reader. Counters: `vends_approved`, `vends_settled`,
/// `vends_reversed`, `malfunctions`, `display_requests`, `bytes_drained`.
#[derive(Debug, Clone)]
pub struct MdbCashless {
    shared: Arc<Shared>,
}

impl MdbCashless {
    /// A bridge on serial port `path` at `baud` (115200 is common for USB bridges).
    pub fn serial(id: &str, path: &str, baud: u32, config: MdbConfig) -> Self {
        Self::with_connector(id, Arc::new(SerialConnector::new(path, baud)), config)
    }

    /// A bridge behind a serial-to-IP converter at `address` (`host` means port
    /// [`DEFAULT_PORT`]).
    pub fn tcp(id: &str, address: &str, config: MdbConfig) -> Self {
        Self::with_connector(
            id,
            Arc::new(TcpConnector::new(address, DEFAULT_PORT)),
            config,
        )
    }

    /// A bridge over any transport.
    pub fn with_connector(id: &str, connector: Arc<dyn Connector>, config: MdbConfig) -> Self {
        let info = DeviceInfo::new(id, DeviceKind::PaymentTerminal, "mdb", connector.describe());
        Self {
            shared: Arc::new(Shared {
                link: Mutex::new(Link::new(connector, config.connect_timeout)),
                config,
                core: DeviceCore::new(info),
                reader: StdMutex::new(Reader::default()),
                book: StdMutex::new(Book::default()),
            }),
        }
    }

    /// The item number (vend sequence number) the VEND REQUEST under `key` carried,
    /// to match the reader's audit trail (and a simulator's ledger).
    pub fn item_of(&self, key: &PaymentKey) -> Option<u16> {
        self.shared.state_of(key).map(|e| e.item)
    }

    /// What the reader said about itself at open.
    pub fn reader_config(&self) -> Option<ReaderConfig> {
        lock(&self.shared.reader).config
    }

    /// POLL the reader before anything else. A reader that lost its power (or was
    /// never set up) answers JUST RESET: set it up (RESET included). One that
    /// answers anything else kept its power while the controller restarted, and may
    /// hold the session of a vend a previous process left open: leave it as it is
    /// for recovery ([`PaymentTerminal::resume`]), and reset it after.
    async fn probe_then_setup(&self) -> Result<(), DeviceFault> {
        let s = &self.shared;
        {
            let mut r = lock(&s.reader);
            *r = Reader::default();
            r.needs_reset = true;
        }
        let mut kept = false;
        for _ in 0..10 {
            match s.exchange(Command::Poll).await.map_err(|e| e.fault())? {
                _ if lock(&s.reader).just_reset => break,
                Answer::Ack => {
                    kept = true;
                    break;
                }
                // Data: the reader still had something to say; poll until quiet.
                Answer::Data(_) => kept = true,
                Answer::Nak | Answer::NoResponse => {
                    kept = false;
                    break;
                }
            }
        }
        if kept && !lock(&s.reader).just_reset {
            let mut r = lock(&s.reader);
            r.inherited = true;
            r.needs_reset = true;
            tracing::info!(device = %s.core.id(),
                "MDB reader kept its power through the restart; its session is left for recovery.");
            return Ok(());
        }
        s.setup().await
    }
}

impl Shared {
    /// RESET, then SETUP config data, SETUP prices and READER ENABLE.
    pub(super) async fn setup(&self) -> Result<(), DeviceFault> {
        let s = self;
        let fail = |e: LinkError| e.fault();
        {
            let mut r = lock(&s.reader);
            *r = Reader::default();
        }
        match s.exchange(Command::Reset).await.map_err(fail)? {
            Answer::Ack | Answer::Data(_) => {}
            other => {
                return Err(DeviceFault::offline(format!(
                    "reader did not take RESET: {other:?}"
                )));
            }
        }
        // RESET releases every approval that never got VEND SUCCESS.
        {
            let mut book = lock(&s.book);
            let keys: Vec<_> = book.entries.keys().cloned().collect();
            for k in keys {
                let next = match book.entries.get(&k).map(|e| &e.state) {
                    Some(State::WaitingCard) => Some(State::Declined("reader was reset".into())),
                    Some(State::Requested { .. }) => Some(State::NeverCharged),
                    Some(State::Approved { .. }) => Some(State::Reversed),
                    Some(State::Inherited) => Some(State::NeverCharged),
                    _ => None,
                };
                if let Some(n) = next {
                    book.set(&k, n);
                }
            }
            book.current = None;
        }
        for _ in 0..10 {
            if lock(&s.reader).just_reset {
                break;
            }
            s.exchange(Command::Poll).await.map_err(fail)?;
        }
        if !lock(&s.reader).just_reset {
            return Err(DeviceFault::failure("reader never reported JUST RESET"));
        }
        s.exchange(Command::SetupConfig {
            vmc_level: 1,
            columns: 0,
            rows: 0,
            display: 0,
        })
        .await
        .map_err(fail)?;
        for _ in 0..10 {
            if lock(&s.reader).config.is_some() {
                break;
            }
            s.exchange(Command::Poll).await.map_err(fail)?;
        }
        let Some(cfg) = lock(&s.reader).config else {
            return Err(DeviceFault::failure("reader sent no READER CONFIG DATA"));
        };
        if cfg.decimal_places != s.config.decimal_places || cfg.scale_factor == 0 {
            return Err(DeviceFault::illegal(format!(
                "reader is set up for {} decimal places and scale factor {}; Outpost expects {} \
                 decimal places",
                cfg.decimal_places, cfg.scale_factor, s.config.decimal_places
            )));
        }
        for cmd in [
            Command::SetupPrices {
                max: 0xFFFE,
                min: 0,
            },
            Command::ReaderEnable,
        ] {
            match s.exchange(cmd).await.map_err(fail)? {
                Answer::Ack | Answer::Data(_) => {}
                other => {
                    return Err(DeviceFault::failure(format!(
                        "reader did not take {cmd:?}: {other:?}"
                    )));
                }
            }
        }
        s.core.set_identity(
            None,
            Some(format!("MDB cashless, feature level {}", cfg.feature_level)),
            None,
            None,
        );
        Ok(())
    }
}

#[async_trait]
impl Device for MdbCashless {
    fn core(&self) -> &DeviceCore {
        &self.shared.core
    }

    /// Connects and polls; then RESET, SETUP config data, SETUP prices and READER
    /// ENABLE, unless the reader kept a session through a restart (see the module
    /// docs: then after that session ends). An open reader is not reset again. Cancel-safe, though a cancelled open leaves the
    /// device closed and needs another open.
    async fn open(&self) -> Result<(), DeviceFault> {
        {
            let mut link = self.shared.link.lock().await;
            if link.is_connected() && self.shared.core.state() != DeviceState::Closed {
                return Ok(());
            }
            link.connect().await?;
        }
        if let Err(f) = self.probe_then_setup().await {
            self.shared.link.lock().await.disconnect();
            return Err(f);
        }
        self.shared.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        // Best effort: a reader left enabled would start sessions nobody serves.
        let _ = self.shared.exchange(Command::ReaderDisable).await;
        self.shared.link.lock().await.disconnect();
        self.shared.core.mark_closed(PowerState::Unknown);
    }

    async fn check_health(&self, _level: HealthLevel) -> HealthReport {
        let report = match self.shared.exchange(Command::Poll).await {
            Ok(Answer::Ack | Answer::Data(_)) => {
                HealthReport::now(Health::Ok, "reader answers POLL")
            }
            Ok(other) => HealthReport::now(
                Health::Failed,
                format!("bridge answers but the reader does not: {other:?}"),
            ),
            Err(e) => HealthReport::now(Health::Failed, e.to_string()),
        };
        self.shared.core.set_health(report.clone());
        report
    }
}

fn record<T>(core: &DeviceCore, r: &Result<T, PaymentError>) {
    match r {
        Ok(_) => core.record::<()>(&Ok(())),
        Err(e) => core.record::<()>(&Err(DeviceFault::new(
            crate::DeviceError::kind(e),
            e.to_string(),
        ))),
    }
}

#[async_trait]
impl PaymentTerminal for MdbCashless {
    /// Waits up to `session_wait` for a card, then vends. Not cancel-safe once the
    /// VEND REQUEST is sent: ask `status` about the key after a cancelled call.
    async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        let r = self.shared.authorize(req).await;
        record(&self.shared.core, &r);
        r
    }

    async fn complete(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        let r = self.shared.settle(key, true).await;
        record(&self.shared.core, &r);
        r
    }

    async fn abort(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        if matches!(
            self.shared.state_of(key).map(|e| e.state),
            Some(State::Inherited)
        ) {
            let r = self.shared.abort_inherited(key).await;
            record(&self.shared.core, &r);
            return r;
        }
        let r = async {
            let mut book = lock(&self.shared.book);
            match book.entries.get(key).map(|e| (e.state.clone(), e.item)) {
                Some((State::WaitingCard, _)) => {
                    let reason = "aborted by the caller".to_owned();
                    book.set(key, State::Declined(reason.clone()));
                    book.current = None;
                    Ok(KeyStatus::Done(Outcome::Declined { reason }))
                }
                Some((s, item)) => Ok(status_of(&s, item)),
                None => Ok(KeyStatus::Unknown),
            }
        }
        .await;
        record(&self.shared.core, &r);
        r
    }

    async fn void(&self, key: &PaymentKey) -> Result<(), PaymentError> {
        let r = self.shared.settle(key, false).await;
        record(&self.shared.core, &r);
        r
    }

    async fn refund(&self, _req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        let r = Err(PaymentError::Illegal(
            "MDB cashless level 1 has no refund (negative vend needs level 3)".into(),
        ));
        record(&self.shared.core, &r);
        r
    }

    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        let r = self.shared.status(key).await;
        record(&self.shared.core, &r);
        r
    }

    /// Binds a key this process never saw to the session the reader kept through
    /// the restart (see [`MdbCashless`]'s open), so `complete`, `void` and `abort`
    /// under it finish that session on the wire. A reader that was reset holds
    /// nothing: the key is unknown.
    async fn resume(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        Ok(self.shared.resume(key))
    }
}
