//! A wire-level nexo payment terminal on TCP, for testing [`NexoTerminal`] and for
//! a technician's bench (`outpost-sim payment --listen ADDR`).
//!
//! It speaks the subset in `docs/nexo.md` and keeps a truthful journal by ServiceID
//! (charged, declined, reversed, refunded, in progress), whatever it told the caller,
//! so tests can prove that an in-doubt payment was resolved without a second charge:
//! [`PaymentSim::charge_count`] counts every time money actually moved under a key,
//! [`PaymentSim::double_charges`] the keys where that happened more than once.
//!
//! What the next payment or refund does is a [`Mode`]: taken from a queue
//! ([`PaymentSim::next`]), else from the every-N rules of [`SimOptions`], else the
//! default ([`PaymentSim::set_default`]). Reversals, status queries, aborts and
//! diagnosis always answer truthfully while the terminal has power.
//!
//! # Layout
//! - this module: the handle, [`PaymentSim`], and what it is told and asked;
//! - `terminal`: the journal, the mode queue and the power switch, and how a payment
//!   starts and finishes in them;
//! - `wire`: the task owning the listener and every connection, and the answer to
//!   each request;
//! - `control`: `outpost-sim payment`'s [`Args`] and the bench's control channel.
//!
//! [`NexoTerminal`]: outpost_peripherals::nexo::NexoTerminal

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::handle::{Handle, Model};
use terminal::{Entry, PowerOff, Shared, State};

mod control;
mod terminal;
mod wire;

pub use control::{Args, control_command, run, serve_control};

/// What the simulated terminal does with one payment or refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Charge and answer approved.
    Approve,
    /// Do not charge; answer `Failure` / `Refusal` with this reason.
    Decline(String),
    /// Wait this long (the card holder is slow), then charge and answer approved.
    /// Status says in progress meanwhile; an abort in the meantime cancels it.
    Late(Duration),
    /// Charge, then close the connection without answering.
    LoseResponse,
    /// Lose power mid-transaction: charge first when `charged`, drop every
    /// connection, refuse connections for `off_for`, keep the journal, come back.
    PowerLoss {
        /// Whether the charge went through before the power went.
        charged: bool,
        /// How long the terminal stays off.
        off_for: Duration,
    },
    /// Charge, then answer with a frame that is not JSON and close.
    Garbage,
}

impl std::str::FromStr for Mode {
    type Err = String;
    /// Parses the control-channel spelling: `approve`, `decline [REASON]`,
    /// `late MS`, `lose-response`, `garbage`, `power-loss MS charged|not-charged`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut words = s.split_whitespace();
        let ms = |w: Option<&str>| -> Result<Duration, String> {
            w.ok_or("milliseconds missing")?
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|e| format!("bad milliseconds: {e}"))
        };
        let mode = match words.next() {
            Some("approve") => Mode::Approve,
            Some("decline") => {
                let reason = words.by_ref().collect::<Vec<_>>().join(" ");
                Mode::Decline(if reason.is_empty() {
                    "Refusal".into()
                } else {
                    reason
                })
            }
            Some("late") => Mode::Late(ms(words.next())?),
            Some("lose-response") => Mode::LoseResponse,
            Some("garbage") => Mode::Garbage,
            Some("power-loss") => {
                let off_for = ms(words.next())?;
                let charged = match words.next() {
                    Some("charged") => true,
                    Some("not-charged") => false,
                    other => return Err(format!("charged or not-charged, not {other:?}")),
                };
                Mode::PowerLoss { charged, off_for }
            }
            other => return Err(format!("unknown mode {other:?}")),
        };
        match words.next() {
            Some(extra) => Err(format!("unexpected {extra:?}")),
            None => Ok(mode),
        }
    }
}

/// What the simulator knows about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A payment or refund is running.
    InProgress,
    /// Charged and standing.
    Charged,
    /// Refunded to the card.
    Refunded,
    /// Declined or aborted: no money moved.
    Declined,
    /// Charged, then reversed.
    Reversed,
}

/// Settings of a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The terminal's POIID (reported, not enforced).
    pub poi_id: String,
    /// What a payment does when neither the queue nor a rule says otherwise.
    pub default_mode: Mode,
    /// Decline every Nth payment (counted over payments and refunds from 1).
    pub decline_every: Option<u64>,
    /// Lose the response of every Nth payment after charging.
    pub lose_response_every: Option<u64>,
    /// Answer every Nth payment late, by `late_by`.
    pub late_every: Option<u64>,
    /// How late a late answer is.
    pub late_by: Duration,
    /// Answer garbage to every Nth payment after charging.
    pub garbage_every: Option<u64>,
    /// Lose power during every Nth payment, after charging.
    pub power_loss_every: Option<u64>,
    /// How long a power loss lasts.
    pub power_off_for: Duration,
    /// At most this many connections at once; more are closed on accept.
    pub max_connections: usize,
    /// At most this many keys in the journal. A full journal refuses new payments
    /// (`Failure` / `UnavailableService`) rather than forget what it did.
    pub journal_capacity: usize,
    /// At most this many offline approvals wait to be forwarded (at most
    /// `nexo::message::MAX_STORED`); a full store declines while the acquirer is away.
    pub store_capacity: usize,
    /// What the terminal reports as the card number (`MaskedPAN`). A real terminal
    /// masks all but the last four digits; a misbehaving one may send the whole number,
    /// which is how tests prove Outpost keeps only the last four.
    pub masked_pan: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            poi_id: "sim-poi".into(),
            default_mode: Mode::Approve,
            decline_every: None,
            lose_response_every: None,
            late_every: None,
            late_by: Duration::from_secs(5),
            garbage_every: None,
            power_loss_every: None,
            power_off_for: Duration::from_secs(5),
            max_connections: 64,
            journal_capacity: 1_000_000,
            store_capacity: 256,
            masked_pan: "************4242".into(),
        }
    }
}

/// The simulated terminal behind a [`PaymentSim`]: its journal, modes and power.
pub struct TerminalModel {
    /// Shared with the serving task, which the handle aborts when it goes.
    shared: Arc<Shared>,
}

impl Model for TerminalModel {
    type Addr = SocketAddr;
    const NAME: &'static str = "PaymentSim";
}

/// A running simulator. Clones share it; it stops when the last clone is dropped
/// or [`shutdown`](Handle::shutdown) is called, which drops every connection.
/// [`local_addr`](Handle::local_addr) is where it listens.
pub type PaymentSim = Handle<TerminalModel>;

impl PaymentSim {
    /// Listen on `addr` (port 0 picks one) and serve until dropped.
    pub async fn start(addr: SocketAddr, options: SimOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (power_tx, power_rx) = mpsc::channel(4);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                default: options.default_mode.clone(),
                journal: HashMap::new(),
                charge_counts: HashMap::new(),
                payments_seen: 0,
                next_auth: 0,
                aborts: HashMap::new(),
                wallet: "ApplePay".into(),
                card: "card-1".into(),
                host_reachable: true,
                stored: VecDeque::new(),
            }),
            options,
            powered: AtomicBool::new(true),
            power_tx,
        });
        let model = TerminalModel {
            shared: Arc::clone(&shared),
        };
        Ok(Handle::spawn(model, addr, |_| {
            tokio::spawn(wire::serve(listener, addr, shared, power_rx))
        }))
    }

    fn shared(&self) -> &Shared {
        &self.model().shared
    }

    /// Queue modes for the next payments and refunds, in order.
    pub fn next(&self, modes: impl IntoIterator<Item = Mode>) -> &Self {
        self.shared().lock().queue.extend(modes);
        self
    }

    /// The mode used when the queue is empty and no rule applies.
    pub fn set_default(&self, mode: Mode) -> &Self {
        self.shared().lock().default = mode;
        self
    }

    /// Queued modes not used yet.
    pub fn pending_modes(&self) -> usize {
        self.shared().lock().queue.len()
    }

    /// How many times money actually moved under `key` (charges and refunds).
    pub fn charge_count(&self, key: &str) -> u32 {
        self.shared()
            .lock()
            .charge_counts
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    /// Keys under which money moved more than once: zero unless something is wrong.
    pub fn double_charges(&self) -> usize {
        self.shared()
            .lock()
            .charge_counts
            .values()
            .filter(|n| **n > 1)
            .count()
    }

    /// Money movements in total.
    pub fn total_charges(&self) -> u64 {
        self.shared()
            .lock()
            .charge_counts
            .values()
            .map(|n| u64::from(*n))
            .sum()
    }

    /// What the journal says about `key`; `None` when it never saw it.
    pub fn recorded(&self, key: &str) -> Option<Recorded> {
        self.shared().lock().journal.get(key).map(Entry::recorded)
    }

    /// The payment brand of the wallet customers hold to the terminal from now on when
    /// a payment allows only wallets (default `ApplePay`).
    pub fn set_wallet(&self, brand: &str) -> &Self {
        brand.clone_into(&mut self.shared().lock().wallet);
        self
    }

    /// The payment brand an approved payment or refund under `key` was made with.
    pub fn brand(&self, key: &str) -> Option<String> {
        match self.shared().lock().journal.get(key) {
            Some(Entry::Charged { result } | Entry::Refunded { result }) => {
                result.payment_brand.clone()
            }
            _ => None,
        }
    }

    /// The token (`PaymentToken`) of the card or wallet customers present from now on
    /// (default `card-1`): what a per-card limit counts.
    pub fn set_card(&self, token: &str) -> &Self {
        token.clone_into(&mut self.shared().lock().card);
        self
    }

    /// Cut the terminal off its acquirer (`false`): it then approves offline and
    /// queues what it approved; or bring the acquirer back (`true`): the queue is
    /// forwarded at once. Returns how many transactions were forwarded.
    pub fn set_host_reachable(&self, reachable: bool) -> usize {
        let mut st = self.shared().lock();
        st.host_reachable = reachable;
        if reachable {
            let n = st.stored.len();
            st.stored.clear();
            n
        } else {
            0
        }
    }

    /// The offline approvals not yet forwarded, oldest first.
    pub fn stored(&self) -> Vec<String> {
        self.shared().lock().stored.iter().cloned().collect()
    }

    /// Whether it has power (accepts connections).
    pub fn powered(&self) -> bool {
        self.shared().powered.load(Ordering::SeqCst)
    }

    /// Lose power now for `off_for`: every connection drops and new ones are refused
    /// until it comes back. Returns once the power is off.
    pub async fn power_off(&self, off_for: Duration) {
        let (done, off) = oneshot::channel();
        if self
            .shared()
            .power_tx
            .send(PowerOff { off_for, done })
            .await
            .is_ok()
        {
            let _ = off.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_from_their_control_spelling() {
        assert_eq!("approve".parse::<Mode>(), Ok(Mode::Approve));
        assert_eq!(
            "decline no funds".parse::<Mode>(),
            Ok(Mode::Decline("no funds".into()))
        );
        assert_eq!(
            "late 250".parse::<Mode>(),
            Ok(Mode::Late(Duration::from_millis(250)))
        );
        assert_eq!(
            "power-loss 100 not-charged".parse::<Mode>(),
            Ok(Mode::PowerLoss {
                charged: false,
                off_for: Duration::from_millis(100)
            })
        );
        for bad in ["", "late", "late x", "power-loss 5", "approve now", "fly"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?}");
        }
    }
}
