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
//! for the reader's audit trail. The journal lives in memory: a restart loses it, and
//! the RESET at the next open releases every approval that never got VEND SUCCESS.
//!
//! # Concurrency
//!
//! One tokio mutex around the bridge link, held for one command and its one reply
//! line (the bridge answers every `T` line with exactly one line), as in the ESC/POS
//! and MT-SICS drivers. The journal and the reader's session state sit behind std
//! mutexes, held only to read or update, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout, timeout_at};

use super::protocol::{
    BridgeReply, Command, MAX_LINE, MdbError, ReaderConfig, Response, parse_bridge_line,
    parse_responses,
};
use crate::device::{
    Device, DeviceCore, DeviceInfo, DeviceKind, DeviceState, Health, HealthLevel, HealthReport,
    PowerState,
};
use crate::fault::DeviceFault;
use crate::payment::{
    Approval, KeyStatus, Outcome, PaymentError, PaymentKey, PaymentRequest, PaymentTerminal,
};
use crate::transport::{Connector, LineFramer, SerialConnector, Stream, TcpConnector};

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

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("MDB bridge link is down; open the device again")]
    NotConnected,
    #[error("MDB bridge did not answer {0:?} within {1:?}")]
    Timeout(Command, Duration),
    #[error("MDB bridge closed the connection during {0:?}")]
    Eof(Command),
    #[error("I/O error during {1:?}: {0}")]
    Io(#[source] std::io::Error, Command),
    #[error("malformed bridge reply to {1:?}: {0}")]
    Malformed(#[source] MdbError, Command),
}

impl LinkError {
    fn fault(&self) -> DeviceFault {
        let msg = self.to_string();
        match self {
            LinkError::NotConnected | LinkError::Eof(_) => DeviceFault::offline(msg),
            LinkError::Timeout(..) => DeviceFault::timeout(msg),
            LinkError::Io(e, _) => {
                let f = DeviceFault::from(std::io::Error::from(e.kind()));
                DeviceFault::new(crate::DeviceError::kind(&f), msg)
            }
            LinkError::Malformed(..) => DeviceFault::failure(msg),
        }
    }

    /// For a command that moves money, any failure after sending leaves the outcome
    /// unknown; only a link that was down before sending is offline.
    fn after_send(&self) -> PaymentError {
        match self {
            LinkError::NotConnected => PaymentError::Offline(self.to_string()),
            _ => PaymentError::OutcomeUnknown(self.to_string()),
        }
    }
}

/// What the bridge said to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Ack,
    Nak,
    NoResponse,
    Data(Vec<Response>),
}

struct Link {
    stream: Option<Box<dyn Stream>>,
    framer: LineFramer,
    dirty: bool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.stream.is_some())
            .field("dirty", &self.dirty)
            .finish()
    }
}

/// The reader as last heard.
#[derive(Debug, Default)]
struct Reader {
    config: Option<ReaderConfig>,
    just_reset: bool,
    /// Funds of the open session, if a card is presented.
    funds: Option<u16>,
    out_of_sequence: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    WaitingCard,
    /// VEND REQUEST sent, no answer yet.
    Requested {
        since: Instant,
    },
    Approved {
        amount_minor: i64,
    },
    Settled {
        amount_minor: i64,
    },
    Declined(String),
    Reversed,
    /// Resolved after a lost answer: the reader never had the request, or released
    /// it; nothing was charged.
    NeverCharged,
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    item: u16,
    success_sent: bool,
}

#[derive(Debug, Default)]
struct Book {
    entries: HashMap<PaymentKey, Entry>,
    order: VecDeque<PaymentKey>,
    /// The key of the vend in progress (waiting, requested or approved).
    current: Option<PaymentKey>,
    last_item: u16,
}

impl Book {
    fn insert(&mut self, key: PaymentKey, entry: Entry) {
        if self.order.len() >= JOURNAL_KEYS {
            let oldest = self
                .order
                .iter()
                .position(|k| Some(k) != self.current.as_ref());
            if let Some(i) = oldest
                && let Some(k) = self.order.remove(i)
            {
                self.entries.remove(&k);
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, entry);
    }

    fn next_item(&mut self) -> u16 {
        self.last_item = if self.last_item >= 0xFFFE {
            1
        } else {
            self.last_item + 1
        };
        self.last_item
    }

    fn set(&mut self, key: &PaymentKey, state: State) {
        if let Some(e) = self.entries.get_mut(key) {
            e.state = state;
        }
    }
}

#[derive(Debug)]
struct Shared {
    connector: Arc<dyn Connector>,
    config: MdbConfig,
    link: Mutex<Link>,
    core: DeviceCore,
    reader: StdMutex<Reader>,
    book: StdMutex<Book>,
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The approval the driver reports for vend number `item` (MDB level 1 has no
/// authorization code, so the vend sequence number stands in for it).
fn approval(item: u16) -> Approval {
    Approval {
        auth_code: format!("MDB{item:05}"),
        brand: None,
        last4: None,
    }
}

fn status_of(state: &State, item: u16) -> KeyStatus {
    match state {
        State::WaitingCard | State::Requested { .. } => KeyStatus::InProgress,
        State::Approved { .. } | State::Settled { .. } => {
            KeyStatus::Done(Outcome::Approved(approval(item)))
        }
        State::Declined(reason) => KeyStatus::Done(Outcome::Declined {
            reason: reason.clone(),
        }),
        State::Reversed => KeyStatus::Reversed,
        State::NeverCharged => KeyStatus::Unknown,
    }
}

impl Shared {
    fn lost(&self, link: &mut Link, e: LinkError) -> LinkError {
        link.stream = None;
        link.dirty = false;
        link.framer = LineFramer::new(MAX_LINE);
        tracing::warn!(device = %self.core.id(), error = %e, "MDB bridge link lost.");
        self.core.mark_closed(PowerState::Offline);
        e
    }

    /// Send one command and read the bridge's one reply line; reader responses in it
    /// are absorbed into the session state and the journal.
    async fn exchange(&self, cmd: Command) -> Result<Answer, LinkError> {
        let mut guard = self.link.lock().await;
        let link = &mut *guard;
        let t = self.config.io_timeout;
        if link.stream.is_none() {
            return Err(LinkError::NotConnected);
        }
        if link.dirty {
            self.drain(link).await?;
        }
        link.dirty = true;
        let Some(stream) = link.stream.as_mut() else {
            return Err(LinkError::NotConnected);
        };
        match timeout(t, stream.write_all(cmd.line().as_bytes())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.lost(link, LinkError::Io(e, cmd))),
            Err(_) => return Err(LinkError::Timeout(cmd, t)),
        }
        let deadline = Instant::now() + t;
        let mut buf = [0u8; 128];
        let line = loop {
            let Some(stream) = link.stream.as_mut() else {
                return Err(LinkError::NotConnected);
            };
            let n = match timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) => return Err(self.lost(link, LinkError::Eof(cmd))),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(self.lost(link, LinkError::Io(e, cmd))),
                Err(_) => return Err(LinkError::Timeout(cmd, t)),
            };
            let mut frames = link.framer.feed(&buf[..n]).into_iter();
            if let Some(first) = frames.next() {
                // One line per command: more means the link is out of step.
                link.dirty = frames.count() > 0 || link.framer.pending() > 0;
                link.framer = LineFramer::new(MAX_LINE);
                break first.map_err(|o| LinkError::Malformed(MdbError::TooLong(o.max), cmd))?;
            }
        };
        let answer = match parse_bridge_line(&line).map_err(|e| LinkError::Malformed(e, cmd))? {
            BridgeReply::Ack => Answer::Ack,
            BridgeReply::Nak => Answer::Nak,
            BridgeReply::NoResponse => Answer::NoResponse,
            BridgeReply::Data(d) => {
                Answer::Data(parse_responses(&d).map_err(|e| LinkError::Malformed(e, cmd))?)
            }
        };
        drop(guard);
        if let Answer::Data(rs) = &answer {
            for r in rs {
                self.absorb(r);
            }
        }
        Ok(answer)
    }

    async fn drain(&self, link: &mut Link) -> Result<(), LinkError> {
        let until = Instant::now() + self.config.io_timeout;
        let mut buf = [0u8; 128];
        loop {
            let Some(stream) = link.stream.as_mut() else {
                return Err(LinkError::NotConnected);
            };
            let quiet = (Instant::now() + self.config.drain_quiet).min(until);
            match timeout_at(quiet, stream.read(&mut buf)).await {
                Ok(Ok(0)) => return Err(self.lost(link, LinkError::Eof(Command::Poll))),
                Ok(Ok(n)) => self.core.count("bytes_drained", n as u64),
                Ok(Err(e)) => return Err(self.lost(link, LinkError::Io(e, Command::Poll))),
                Err(_) => break,
            }
            if Instant::now() >= until {
                break;
            }
        }
        link.framer = LineFramer::new(MAX_LINE);
        link.dirty = false;
        Ok(())
    }

    fn scale(&self) -> i64 {
        lock(&self.reader)
            .config
            .map_or(1, |c| i64::from(c.scale_factor.max(1)))
    }

    fn absorb(&self, r: &Response) {
        let mut reader = lock(&self.reader);
        match r {
            Response::JustReset => reader.just_reset = true,
            Response::Config(c) => reader.config = Some(*c),
            Response::DisplayRequest => self.core.count("display_requests", 1),
            Response::BeginSession { funds } => reader.funds = Some(*funds),
            Response::SessionCancelRequest | Response::EndSession | Response::Cancelled => {
                reader.funds = None;
            }
            Response::OutOfSequence => reader.out_of_sequence = true,
            Response::Malfunction { code } => {
                self.core.count("malfunctions", 1);
                self.core.raise_error(&DeviceFault::failure(format!(
                    "reader reports malfunction 0x{code:04X}"
                )));
            }
            Response::VendApproved { .. } | Response::VendDenied => {}
        }
        let scale = reader
            .config
            .map_or(1, |c| i64::from(c.scale_factor.max(1)));
        drop(reader);
        let mut book = lock(&self.book);
        let current = book.current.clone();
        let requested = current
            .as_ref()
            .and_then(|k| book.entries.get(k))
            .is_some_and(|e| matches!(e.state, State::Requested { .. }));
        match (r, current) {
            (Response::VendApproved { amount }, Some(k)) if requested => {
                book.set(
                    &k,
                    State::Approved {
                        amount_minor: i64::from(*amount) * scale,
                    },
                );
            }
            (Response::VendDenied, Some(k)) if requested => {
                book.set(&k, State::Declined("reader denied the vend".into()));
            }
            (Response::VendApproved { .. } | Response::VendDenied, _) => {
                drop(book);
                self.core.raise_error(&DeviceFault::failure(format!(
                    "reader sent {r:?} with no vend request waiting"
                )));
            }
            _ => {}
        }
    }

    fn take_out_of_sequence(&self) -> bool {
        std::mem::take(&mut lock(&self.reader).out_of_sequence)
    }

    fn state_of(&self, key: &PaymentKey) -> Option<Entry> {
        lock(&self.book).entries.get(key).cloned()
    }

    fn finish(&self, key: &PaymentKey, state: State) {
        let mut book = lock(&self.book);
        book.set(key, state);
        if book.current.as_ref() == Some(key) {
            book.current = None;
        }
    }

    fn response_timeout(&self) -> Duration {
        self.config.response_timeout.unwrap_or_else(|| {
            let secs = lock(&self.reader)
                .config
                .map_or(5, |c| u64::from(c.max_response_secs.max(1)));
            Duration::from_secs(secs)
        })
    }

    /// End the reader's session (SESSION COMPLETE, then poll for END SESSION).
    /// The outcome is already known, so failures here are only logged.
    async fn end_session(&self) {
        if let Err(e) = self.exchange(Command::SessionComplete).await {
            tracing::warn!(device = %self.core.id(), error = %e, "MDB session complete failed.");
            return;
        }
        for _ in 0..5 {
            if lock(&self.reader).funds.is_none() {
                return;
            }
            if self.exchange(Command::Poll).await.is_err() {
                return;
            }
        }
    }

    /// Poll until the requested vend under `key` is answered, within the reader's
    /// response time; then VEND CANCEL. Errors leave the outcome unknown.
    async fn await_answer(&self, key: &PaymentKey, since: Instant) -> Result<(), LinkError> {
        let limit = since + self.response_timeout();
        loop {
            match self.state_of(key).map(|e| e.state) {
                Some(State::Requested { .. }) => {}
                _ => return Ok(()),
            }
            if Instant::now() >= limit {
                return self.cancel_unanswered(key).await;
            }
            tokio::time::sleep(self.config.poll_interval).await;
            self.exchange(Command::Poll).await?;
        }
    }

    /// The reader let its response time pass: withdraw the request. VEND CANCEL is
    /// answered VEND DENIED by a reader that has it; out of sequence means it never
    /// had it, or approved it and the approval was lost, so VEND FAILURE releases
    /// any such approval. Either way nothing stays charged.
    async fn cancel_unanswered(&self, key: &PaymentKey) -> Result<(), LinkError> {
        self.take_out_of_sequence();
        self.exchange(Command::VendCancel).await?;
        if !matches!(
            self.state_of(key).map(|e| e.state),
            Some(State::Requested { .. })
        ) {
            return Ok(());
        }
        if self.take_out_of_sequence() {
            self.exchange(Command::VendFailure).await?;
            self.take_out_of_sequence();
            self.finish(key, State::NeverCharged);
            self.end_session().await;
            return Ok(());
        }
        // Acknowledged without a denial: the denial comes on the next poll.
        self.exchange(Command::Poll).await?;
        Ok(())
    }

    async fn authorize(&self, req: &PaymentRequest) -> Result<Outcome, PaymentError> {
        self.core.ensure_ready()?;
        if req.currency != self.config.currency {
            return Err(PaymentError::Illegal(format!(
                "reader takes {}, not {}",
                self.config.currency, req.currency
            )));
        }
        let scale = self.scale();
        if req.amount_minor <= 0 || req.amount_minor % scale != 0 {
            return Err(PaymentError::Illegal(format!(
                "amount {} is not a positive multiple of the reader's scale factor {scale}",
                req.amount_minor
            )));
        }
        let price = u16::try_from(req.amount_minor / scale)
            .ok()
            .filter(|p| *p < 0xFFFF)
            .ok_or_else(|| {
                PaymentError::Illegal(format!("amount {} is too large for MDB", req.amount_minor))
            })?;
        let key = req.key.clone();
        let item = {
            let mut book = lock(&self.book);
            if book.entries.contains_key(&key) {
                return Err(PaymentError::Illegal(format!("key {key} was already used")));
            }
            if book.current.is_some() {
                return Err(PaymentError::Busy);
            }
            let item = book.next_item();
            book.insert(
                key.clone(),
                Entry {
                    state: State::WaitingCard,
                    item,
                    success_sent: false,
                },
            );
            book.current = Some(key.clone());
            item
        };
        // Wait for a card. Nothing that moves money has been sent yet.
        let deadline = Instant::now() + self.config.session_wait;
        loop {
            if let Some(e) = self.state_of(&key)
                && e.state != State::WaitingCard
            {
                // Aborted by the caller.
                self.end_session().await;
                return Ok(match status_of(&e.state, e.item) {
                    KeyStatus::Done(o) => o,
                    _ => Outcome::Declined {
                        reason: "aborted".into(),
                    },
                });
            }
            if lock(&self.reader).funds.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let reason = format!("no card presented within {:?}", self.config.session_wait);
                self.finish(&key, State::Declined(reason.clone()));
                return Ok(Outcome::Declined { reason });
            }
            if let Err(e) = self.exchange(Command::Poll).await {
                // Never sent a vend: the key may be used again.
                let mut book = lock(&self.book);
                book.entries.remove(&key);
                book.order.retain(|k| k != &key);
                book.current = None;
                return Err(PaymentError::from(e.fault()));
            }
            if lock(&self.reader).funds.is_some() {
                break;
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
        let since = Instant::now();
        // Atomic with `abort`: a payment aborted while waiting never vends.
        let aborted = {
            let mut book = lock(&self.book);
            let waiting = book
                .entries
                .get(&key)
                .is_some_and(|e| e.state == State::WaitingCard);
            if waiting {
                book.set(&key, State::Requested { since });
            }
            !waiting
        };
        if aborted {
            self.end_session().await;
            return Ok(Outcome::Declined {
                reason: "aborted".into(),
            });
        }
        let answer = self
            .exchange(Command::VendRequest { price, item })
            .await
            .map_err(|e| {
                tracing::warn!(device = %self.core.id(), key = %key, error = %e,
                    "MDB vend request outcome unknown.");
                e.after_send()
            })?;
        match answer {
            Answer::Nak => {
                let reason = "reader refused the vend request block (NAK)".to_owned();
                self.finish(&key, State::Declined(reason.clone()));
                self.end_session().await;
                return Ok(Outcome::Declined { reason });
            }
            Answer::NoResponse => {
                return Err(PaymentError::OutcomeUnknown(
                    "reader did not answer the vend request on the MDB bus".into(),
                ));
            }
            Answer::Ack | Answer::Data(_) => {}
        }
        self.await_answer(&key, since)
            .await
            .map_err(|e| e.after_send())?;
        match self.state_of(&key).map(|e| e.state) {
            Some(State::Approved { .. }) => {
                self.core.count("vends_approved", 1);
                Ok(Outcome::Approved(approval(item)))
            }
            Some(State::Declined(reason)) => {
                self.finish(&key, State::Declined(reason.clone()));
                self.end_session().await;
                Ok(Outcome::Declined { reason })
            }
            Some(State::NeverCharged) => Ok(Outcome::Declined {
                reason: "reader did not answer in time; the vend was cancelled".into(),
            }),
            _ => Err(PaymentError::OutcomeUnknown(
                "reader has not answered the vend request".into(),
            )),
        }
    }

    async fn settle(&self, key: &PaymentKey, success: bool) -> Result<(), PaymentError> {
        self.core.ensure_ready()?;
        let Some(entry) = self.state_of(key) else {
            return Err(PaymentError::Illegal(format!("no payment under key {key}")));
        };
        match (&entry.state, success) {
            (State::Settled { .. }, true) | (State::Reversed, false) => return Ok(()),
            (State::Approved { .. }, _) => {}
            (State::Settled { .. }, false) => {
                return Err(PaymentError::Illegal(
                    "MDB level 1 cannot reverse a completed vend".into(),
                ));
            }
            (other, _) => {
                return Err(PaymentError::Illegal(format!(
                    "payment under {key} is not approved ({:?})",
                    status_of(other, entry.item)
                )));
            }
        }
        let State::Approved { amount_minor } = entry.state else {
            return Err(PaymentError::Illegal("not approved".into()));
        };
        let cmd = if success {
            Command::VendSuccess { item: entry.item }
        } else {
            Command::VendFailure
        };
        self.take_out_of_sequence();
        let retry = entry.success_sent;
        if let Some(e) = lock(&self.book).entries.get_mut(key) {
            e.success_sent = true;
        }
        let answer = self.exchange(cmd).await.map_err(|e| e.after_send())?;
        let oos = self.take_out_of_sequence();
        match answer {
            Answer::Ack | Answer::Data(_) if !oos || retry => {}
            Answer::Nak | Answer::NoResponse => {
                return Err(PaymentError::OutcomeUnknown(format!(
                    "reader did not take {cmd:?}; try again"
                )));
            }
            _ => {
                return Err(PaymentError::Failure(format!(
                    "reader says {cmd:?} is out of sequence"
                )));
            }
        }
        let state = if success {
            self.core.count("vends_settled", 1);
            State::Settled { amount_minor }
        } else {
            self.core.count("vends_reversed", 1);
            State::Reversed
        };
        self.finish(key, state);
        self.end_session().await;
        Ok(())
    }

    async fn status(&self, key: &PaymentKey) -> Result<KeyStatus, PaymentError> {
        let Some(entry) = self.state_of(key) else {
            return Ok(KeyStatus::Unknown);
        };
        let State::Requested { since } = entry.state else {
            return Ok(status_of(&entry.state, entry.item));
        };
        // The answer was lost: ask the reader.
        let resolved = async {
            self.exchange(Command::Poll).await?;
            if matches!(
                self.state_of(key).map(|e| e.state),
                Some(State::Requested { .. })
            ) && Instant::now() >= since + self.response_timeout()
            {
                self.cancel_unanswered(key).await?;
            }
            Ok::<_, LinkError>(())
        }
        .await;
        if let Err(e) = resolved {
            return Err(PaymentError::OutcomeUnknown(format!(
                "cannot ask the reader yet: {e}"
            )));
        }
        let entry = self.state_of(key);
        let state = entry.as_ref().map(|e| e.state.clone());
        if let Some(State::Declined(_)) = &state {
            let current = lock(&self.book).current.clone();
            if current.as_ref() == Some(key) {
                lock(&self.book).current = None;
                self.end_session().await;
            }
        }
        Ok(entry.map_or(KeyStatus::Unknown, |e| status_of(&e.state, e.item)))
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
                connector,
                config,
                link: Mutex::new(Link {
                    stream: None,
                    framer: LineFramer::new(MAX_LINE),
                    dirty: false,
                }),
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

    async fn setup(&self) -> Result<(), DeviceFault> {
        let s = &self.shared;
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

    /// Connects, then RESET, SETUP config data, SETUP prices and READER ENABLE. An
    /// open reader is not reset again. Cancel-safe, though a cancelled open leaves the
    /// device closed and needs another open.
    async fn open(&self) -> Result<(), DeviceFault> {
        {
            let mut link = self.shared.link.lock().await;
            if link.stream.is_some() && self.shared.core.state() != DeviceState::Closed {
                return Ok(());
            }
            let c = &self.shared.connector;
            let t = self.shared.config.connect_timeout;
            let stream = match timeout(t, c.connect()).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let f = DeviceFault::from(e);
                    return Err(DeviceFault::new(
                        crate::DeviceError::kind(&f),
                        format!("cannot connect to {}: {f}", c.describe()),
                    ));
                }
                Err(_) => {
                    return Err(DeviceFault::timeout(format!(
                        "no connection to {} within {t:?}",
                        c.describe()
                    )));
                }
            };
            link.stream = Some(stream);
            link.dirty = false;
            link.framer = LineFramer::new(MAX_LINE);
        }
        if let Err(f) = self.setup().await {
            self.shared.link.lock().await.stream = None;
            return Err(f);
        }
        self.shared.core.mark_opened();
        Ok(())
    }

    async fn close(&self) {
        // Best effort: a reader left enabled would start sessions nobody serves.
        let _ = self.shared.exchange(Command::ReaderDisable).await;
        let mut link = self.shared.link.lock().await;
        link.stream = None;
        drop(link);
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
}
