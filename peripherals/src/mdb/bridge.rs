//! The bridge side of the driver: one command and the bridge's one reply line over
//! the [`Link`], and what the reader's responses in it say about its session and the
//! journal.

use std::sync::{Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::driver::MdbConfig;
use super::journal::{Book, Entry, State};
use super::protocol::{
    BridgeReply, Command, MAX_LINE, MdbError, ReaderConfig, Response, parse_bridge_line,
    parse_responses,
};
use crate::device::{DeviceCore, PowerState};
use crate::fault::DeviceFault;
use crate::link::{Failure, Link, io_kind};
use crate::payment::{PaymentError, PaymentKey};

/// Why an exchange with the bridge failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
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
    /// A link failure during `cmd`, after waiting `t` at most.
    fn at(f: Failure, cmd: Command, t: Duration) -> Self {
        match f {
            Failure::NotConnected => LinkError::NotConnected,
            Failure::Timeout => LinkError::Timeout(cmd, t),
            Failure::Eof => LinkError::Eof(cmd),
            Failure::Io(e) => LinkError::Io(e, cmd),
        }
    }

    pub(super) fn fault(&self) -> DeviceFault {
        let msg = self.to_string();
        match self {
            LinkError::NotConnected | LinkError::Eof(_) => DeviceFault::offline(msg),
            LinkError::Timeout(..) => DeviceFault::timeout(msg),
            LinkError::Io(e, _) => DeviceFault::new(io_kind(e), msg),
            LinkError::Malformed(..) => DeviceFault::failure(msg),
        }
    }

    /// For a command that moves money, any failure after sending leaves the outcome
    /// unknown; only a link that was down before sending is offline.
    pub(super) fn after_send(&self) -> PaymentError {
        match self {
            LinkError::NotConnected => PaymentError::Offline(self.to_string()),
            _ => PaymentError::OutcomeUnknown(self.to_string()),
        }
    }
}

/// What the bridge said to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Ack,
    Nak,
    NoResponse,
    Data(Vec<Response>),
}

/// The reader as last heard.
#[derive(Debug, Default)]
pub(super) struct Reader {
    pub(super) config: Option<ReaderConfig>,
    pub(super) just_reset: bool,
    /// Funds of the open session, if a card is presented.
    pub(super) funds: Option<u16>,
    pub(super) out_of_sequence: bool,
    /// Open found the reader running (no JUST RESET at its first POLL): a session
    /// a previous process left may be open on it, for `resume` to bind to a key.
    pub(super) inherited: bool,
    /// Open put off the RESET (see `inherited`): the next vend resets first.
    pub(super) needs_reset: bool,
}

/// What the clones of one [`MdbCashless`](super::MdbCashless) share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) config: MdbConfig,
    pub(super) link: Mutex<Link>,
    pub(super) core: DeviceCore,
    pub(super) reader: StdMutex<Reader>,
    pub(super) book: StdMutex<Book>,
}

pub(super) fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a poisoned lock is usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// A link failure during `cmd`: a broken stream is dropped and the reader is
    /// offline; a timeout keeps the link, dirty, to be drained by the next exchange.
    fn failed(&self, link: &mut Link, f: Failure, cmd: Command) -> LinkError {
        let broken = f.is_broken();
        let e = LinkError::at(f, cmd, self.config.io_timeout);
        if broken {
            link.disconnect();
            tracing::warn!(device = %self.core.id(), error = %e, "MDB bridge link lost.");
            self.core.mark_closed(PowerState::Offline);
        }
        e
    }

    /// Send one command and read the bridge's one reply line; reader responses in it
    /// are absorbed into the session state and the journal. One line per command:
    /// more leaves the link dirty, and the next exchange drains it first.
    pub(super) async fn exchange(&self, cmd: Command) -> Result<Answer, LinkError> {
        let mut guard = self.link.lock().await;
        let link = &mut *guard;
        let t = self.config.io_timeout;
        if !link.is_connected() {
            return Err(LinkError::NotConnected);
        }
        if link.is_dirty() {
            self.drain(link).await?;
        }
        let sent = match link.begin() {
            Ok(()) => link.send(cmd.line().as_bytes(), t).await,
            Err(f) => Err(f),
        };
        if let Err(f) = sent {
            return Err(self.failed(link, f, cmd));
        }
        let mut buf = [0u8; 128];
        let line = match link.read_line(MAX_LINE, &mut buf, Instant::now() + t).await {
            Ok(line) => line.map_err(|o| LinkError::Malformed(MdbError::TooLong(o.max), cmd))?,
            Err(f) => return Err(self.failed(link, f, cmd)),
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

    /// Read and drop whatever arrives until the link is quiet for `drain_quiet`,
    /// bounded by `io_timeout`.
    async fn drain(&self, link: &mut Link) -> Result<(), LinkError> {
        let mut buf = [0u8; 128];
        let (quiet, limit) = (self.config.drain_quiet, self.config.io_timeout);
        let drained = link.drain(&mut buf, quiet, limit, |n| {
            self.core.count("bytes_drained", n as u64);
        });
        match drained.await {
            Ok(()) => Ok(()),
            Err(f) => Err(self.failed(link, f, Command::Poll)),
        }
    }

    pub(super) fn scale(&self) -> i64 {
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
        let inheriting = reader.inherited || reader.needs_reset;
        let scale = reader
            .config
            .map_or(1, |c| i64::from(c.scale_factor.max(1)));
        drop(reader);
        let mut book = lock(&self.book);
        let current = book.current.clone();
        let requested = current
            .as_ref()
            .and_then(|k| book.entries.get(k))
            .is_some_and(|e| matches!(e.state, State::Requested { .. } | State::Inherited));
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
            // The customer took the card away while the vend waited for approval.
            (Response::SessionCancelRequest, Some(k)) if requested => {
                book.set(
                    &k,
                    State::Declined(
                        "the card was taken away: the reader cancelled the session".into(),
                    ),
                );
            }
            // The denial that goes with a session the reader cancelled.
            (Response::VendDenied, Some(k))
                if book
                    .entries
                    .get(&k)
                    .is_some_and(|e| matches!(e.state, State::Declined(_))) => {}
            // A repeat of an answer the previous process never heard, read by the
            // first POLL of open: the session it belongs to is resumed by key.
            (Response::VendApproved { .. } | Response::VendDenied, _) if inheriting => {}
            (Response::VendApproved { .. } | Response::VendDenied, _) => {
                drop(book);
                self.core.raise_error(&DeviceFault::failure(format!(
                    "reader sent {r:?} with no vend request waiting"
                )));
            }
            _ => {}
        }
    }

    pub(super) fn take_out_of_sequence(&self) -> bool {
        std::mem::take(&mut lock(&self.reader).out_of_sequence)
    }

    pub(super) fn state_of(&self, key: &PaymentKey) -> Option<Entry> {
        lock(&self.book).entries.get(key).cloned()
    }

    pub(super) fn finish(&self, key: &PaymentKey, state: State) {
        let mut book = lock(&self.book);
        book.set(key, state);
        if book.current.as_ref() == Some(key) {
            book.current = None;
        }
    }

    pub(super) fn response_timeout(&self) -> Duration {
        self.config.response_timeout.unwrap_or_else(|| {
            let secs = lock(&self.reader)
                .config
                .map_or(5, |c| u64::from(c.max_response_secs.max(1)));
            Duration::from_secs(secs)
        })
    }
}
