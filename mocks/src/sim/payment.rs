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
//! [`NexoTerminal`]: outpost_peripherals::nexo::NexoTerminal

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use outpost_peripherals::nexo::codec::{encode_frame, read_message, write_message};
use outpost_peripherals::nexo::message::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

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
            masked_pan: "************4242".into(),
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    InProgress,
    Charged {
        result: PaymentResult,
    },
    Refunded {
        result: PaymentResult,
    },
    Declined {
        condition: ErrorCondition,
        reason: String,
    },
    Reversed,
}

impl Entry {
    fn recorded(&self) -> Recorded {
        match self {
            Entry::InProgress => Recorded::InProgress,
            Entry::Charged { .. } => Recorded::Charged,
            Entry::Refunded { .. } => Recorded::Refunded,
            Entry::Declined { .. } => Recorded::Declined,
            Entry::Reversed => Recorded::Reversed,
        }
    }
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Mode>,
    default: Mode,
    journal: HashMap<String, Entry>,
    charge_counts: HashMap<String, u32>,
    payments_seen: u64,
    next_auth: u64,
    /// Wakes a late payment when it is aborted.
    aborts: HashMap<String, Arc<Notify>>,
}

struct PowerOff {
    off_for: Duration,
    done: oneshot::Sender<()>,
}

struct Shared {
    /// A std mutex: every critical section is bookkeeping, never across an await.
    state: Mutex<State>,
    options: SimOptions,
    powered: AtomicBool,
    power_tx: mpsc::Sender<PowerOff>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections leave the journal consistent; a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running simulator. Clones share it; it stops when the last clone is dropped
/// or [`PaymentSim::shutdown`] is called.
#[derive(Clone)]
pub struct PaymentSim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PaymentSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentSim")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

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
            }),
            options,
            powered: AtomicBool::new(true),
            power_tx,
        });
        let task = tokio::spawn(serve(listener, addr, Arc::clone(&shared), power_rx));
        Ok(Self {
            inner: Arc::new(Inner { addr, shared, task }),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
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

    /// Stop serving and drop every connection.
    pub fn shutdown(&self) {
        self.inner.task.abort();
    }
}

/// The owner of the listener and of every connection task.
async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut power_rx: mpsc::Receiver<PowerOff>,
) {
    let mut listener = listener;
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if conns.len() >= shared.options.max_connections {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                conns.spawn(connection(stream, Arc::clone(&shared)));
            }
            Some(cmd) = power_rx.recv() => {
                // Off: stop listening first, so nothing can connect, then drop every
                // connection (the one that lost power included).
                drop(listener);
                shared.powered.store(false, Ordering::SeqCst);
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                {
                    // Whatever was running did not finish: it never charged.
                    let mut st = shared.lock();
                    st.journal.retain(|_, e| !matches!(e, Entry::InProgress));
                    st.aborts.clear();
                }
                let _ = cmd.done.send(());
                tokio::time::sleep(cmd.off_for).await;
                match rebind(addr).await {
                    Some(l) => listener = l,
                    None => return,
                }
                shared.powered.store(true, Ordering::SeqCst);
            }
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    // Bounded: the port was ours a moment ago; give up after about two seconds.
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// What to do with the connection after a request.
enum After {
    Answer(Box<Response>),
    Nothing,
    Close,
    Garbage,
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    loop {
        let message = match read_message(&mut stream).await {
            Ok(Some(m)) => m,
            // End of stream, or bytes that are not a message: a real terminal hangs up.
            Ok(None) | Err(_) => return,
        };
        let Message::Request(request) = message else {
            return;
        };
        let after = handle(&shared, request).await;
        match after {
            After::Answer(r) => {
                if write_message(&mut stream, &Message::Response(*r))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            After::Nothing => {}
            After::Close => return,
            After::Garbage => {
                if let Ok(frame) = encode_frame(b"\x00\x13garbage{{") {
                    let _ = stream.write_all(&frame).await;
                }
                return;
            }
        }
    }
}

fn respond(header: &MessageHeader, body: ResponseBody) -> After {
    After::Answer(Box::new(Response {
        header: header.response(),
        body,
    }))
}

fn payment_response(entry: &Entry) -> Option<PaymentResponse> {
    match entry {
        Entry::Charged { result } | Entry::Refunded { result } => Some(PaymentResponse {
            response: ResponseResult::success(),
            payment_result: Some(result.clone()),
        }),
        Entry::Declined { condition, reason } => Some(PaymentResponse {
            response: ResponseResult::failure(*condition, reason.clone()),
            payment_result: None,
        }),
        Entry::InProgress | Entry::Reversed => None,
    }
}

async fn handle(shared: &Arc<Shared>, request: Request) -> After {
    let header = request.header;
    match request.body {
        RequestBody::PaymentRequest(p) => payment(shared, &header, p).await,
        RequestBody::ReversalRequest(r) => {
            let key = r.original.service_id;
            let mut st = shared.lock();
            let result = match st.journal.get(&key) {
                Some(Entry::Charged { .. }) => {
                    st.journal.insert(key, Entry::Reversed);
                    ResponseResult::success()
                }
                Some(Entry::Reversed) => ResponseResult::success(),
                Some(Entry::InProgress) => {
                    ResponseResult::failure(ErrorCondition::NotAllowed, "payment in progress")
                }
                Some(Entry::Refunded { .. }) => {
                    ResponseResult::failure(ErrorCondition::NotAllowed, "a refund is not reversed")
                }
                Some(Entry::Declined { .. }) => {
                    ResponseResult::failure(ErrorCondition::NotAllowed, "payment was not approved")
                }
                None => ResponseResult::failure(ErrorCondition::NotFound, "no such payment"),
            };
            respond(
                &header,
                ResponseBody::ReversalResponse(ReversalResponse { response: result }),
            )
        }
        RequestBody::TransactionStatusRequest(s) => {
            let key = s.message_reference.service_id;
            let st = shared.lock();
            let (response, repeated) = match st.journal.get(&key) {
                None => (
                    ResponseResult::failure(ErrorCondition::NotFound, "no such payment"),
                    None,
                ),
                Some(Entry::InProgress) => (
                    ResponseResult::failure(ErrorCondition::InProgress, "payment in progress"),
                    None,
                ),
                Some(entry) => {
                    let (category, body) = match payment_response(entry) {
                        Some(p) => (MessageCategory::Payment, RepeatedBody::PaymentResponse(p)),
                        None => (
                            MessageCategory::Reversal,
                            RepeatedBody::ReversalResponse(ReversalResponse {
                                response: ResponseResult::success(),
                            }),
                        ),
                    };
                    let repeated = RepeatedMessageResponse {
                        message_header: MessageHeader::new(
                            category,
                            MessageType::Response,
                            key.clone(),
                            s.message_reference.sale_id.clone(),
                            shared.options.poi_id.clone(),
                        ),
                        repeated_response_message_body: body,
                    };
                    (ResponseResult::success(), Some(repeated))
                }
            };
            respond(
                &header,
                ResponseBody::TransactionStatusResponse(TransactionStatusResponse {
                    response,
                    repeated_message_response: repeated,
                }),
            )
        }
        RequestBody::AbortRequest(a) => {
            let key = a.message_reference.service_id;
            let mut st = shared.lock();
            let aborted = Entry::Declined {
                condition: ErrorCondition::Aborted,
                reason: "aborted".into(),
            };
            match st.journal.get(&key) {
                Some(Entry::InProgress) => {
                    st.journal.insert(key.clone(), aborted);
                    if let Some(n) = st.aborts.remove(&key) {
                        n.notify_one();
                    }
                }
                // Never seen: remember the abort, so a payment arriving late under
                // this key is refused instead of charged.
                None => {
                    st.journal.insert(key, aborted);
                }
                Some(_) => {}
            }
            After::Nothing
        }
        RequestBody::DiagnosisRequest(_) => {
            let busy = shared
                .lock()
                .journal
                .values()
                .any(|e| matches!(e, Entry::InProgress));
            let global_status = if busy {
                GlobalStatus::Busy
            } else {
                GlobalStatus::Ok
            };
            respond(
                &header,
                ResponseBody::DiagnosisResponse(DiagnosisResponse {
                    response: ResponseResult::success(),
                    poi_status: PoiStatus { global_status },
                }),
            )
        }
        // A request kind this simulator does not know: refuse it in form.
        _ => After::Close,
    }
}

fn every(n: u64, rule: Option<u64>) -> bool {
    matches!(rule, Some(k) if k > 0 && n.is_multiple_of(k))
}

/// Start a payment: refuse a used key, or record it in progress and pick its mode.
fn begin(shared: &Shared, key: &str) -> Result<Mode, ResponseResult> {
    let mut st = shared.lock();
    if st.journal.contains_key(key) {
        return Err(ResponseResult::failure(
            ErrorCondition::NotAllowed,
            "ServiceID already used",
        ));
    }
    if st.journal.len() >= shared.options.journal_capacity {
        return Err(ResponseResult::failure(
            ErrorCondition::UnavailableService,
            "journal full",
        ));
    }
    st.payments_seen += 1;
    let n = st.payments_seen;
    let o = &shared.options;
    let mode = match st.queue.pop_front() {
        Some(m) => m,
        None if every(n, o.power_loss_every) => Mode::PowerLoss {
            charged: true,
            off_for: o.power_off_for,
        },
        None if every(n, o.lose_response_every) => Mode::LoseResponse,
        None if every(n, o.garbage_every) => Mode::Garbage,
        None if every(n, o.late_every) => Mode::Late(o.late_by),
        None if every(n, o.decline_every) => Mode::Decline("Refusal".into()),
        None => st.default.clone(),
    };
    st.journal.insert(key.to_owned(), Entry::InProgress);
    Ok(mode)
}

/// Finish a payment still in progress: charge it, or decline it. Returns what the
/// journal holds afterwards (an abort may have got there first).
fn finish(shared: &Shared, key: &str, p: &PaymentRequest, decline: Option<String>) -> Entry {
    let mut st = shared.lock();
    st.aborts.remove(key);
    match st.journal.get(key) {
        Some(Entry::InProgress) => {}
        Some(other) => return other.clone(),
        // Power was lost meanwhile and the entry dropped: nothing happened.
        None => {
            return Entry::Declined {
                condition: ErrorCondition::Aborted,
                reason: "power lost".into(),
            };
        }
    }
    let entry = match decline {
        Some(reason) => Entry::Declined {
            condition: ErrorCondition::Refusal,
            reason,
        },
        None => {
            st.next_auth += 1;
            let result = PaymentResult {
                payment_brand: Some("VISA".into()),
                masked_pan: Some(shared.options.masked_pan.clone()),
                approval_code: format!("{:06}", st.next_auth),
                authorized_amount: p.amounts_req.requested_amount,
                currency: p.amounts_req.currency.clone(),
            };
            *st.charge_counts.entry(key.to_owned()).or_default() += 1;
            if p.is_refund() {
                Entry::Refunded { result }
            } else {
                Entry::Charged { result }
            }
        }
    };
    st.journal.insert(key.to_owned(), entry.clone());
    entry
}

async fn payment(shared: &Arc<Shared>, header: &MessageHeader, p: PaymentRequest) -> After {
    let key = header.service_id.as_str();
    let answer = |entry: &Entry| match payment_response(entry) {
        Some(r) => respond(header, ResponseBody::PaymentResponse(r)),
        None => After::Close,
    };
    let mode = match begin(shared, key) {
        Ok(m) => m,
        Err(refusal) => {
            return respond(
                header,
                ResponseBody::PaymentResponse(PaymentResponse {
                    response: refusal,
                    payment_result: None,
                }),
            );
        }
    };
    match mode {
        Mode::Approve => answer(&finish(shared, key, &p, None)),
        Mode::Decline(reason) => answer(&finish(shared, key, &p, Some(reason))),
        Mode::Late(delay) => {
            let notify = Arc::new(Notify::new());
            shared
                .lock()
                .aborts
                .insert(key.to_owned(), Arc::clone(&notify));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = notify.notified() => {}
            }
            answer(&finish(shared, key, &p, None))
        }
        Mode::LoseResponse => {
            finish(shared, key, &p, None);
            After::Close
        }
        Mode::Garbage => {
            finish(shared, key, &p, None);
            After::Garbage
        }
        Mode::PowerLoss { charged, off_for } => {
            if charged {
                finish(shared, key, &p, None);
            }
            // Not charged: the entry stays in progress and the power loss drops it.
            let (done, off) = oneshot::channel();
            if shared
                .power_tx
                .send(PowerOff { off_for, done })
                .await
                .is_ok()
            {
                // The power-off aborts this task (and drops its connection) before
                // answering; waiting here only covers a simulator shutting down.
                let _ = off.await;
            }
            After::Close
        }
    }
}

/// `outpost-sim payment`: a simulated nexo terminal for the bench.
///
/// Fault rules count payments and refunds from 1; when several match the same
/// payment, the first of power loss, lost response, garbage, late, decline wins.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where to listen for the driver, e.g. `0.0.0.0:4100`.
    #[arg(long, default_value = "127.0.0.1:4100")]
    pub listen: SocketAddr,
    /// Where to listen for control commands (one per line; see `docs/nexo.md`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// The terminal's POIID.
    #[arg(long, default_value = "sim-poi")]
    pub poi_id: String,
    /// Decline every Nth payment.
    #[arg(long, value_name = "N")]
    pub decline_every: Option<u64>,
    /// Charge, then lose the response of every Nth payment.
    #[arg(long, value_name = "N")]
    pub lose_response_every: Option<u64>,
    /// Charge, then answer garbage to every Nth payment.
    #[arg(long, value_name = "N")]
    pub garbage_every: Option<u64>,
    /// Answer every Nth payment late.
    #[arg(long, value_name = "N")]
    pub late_every: Option<u64>,
    /// How late, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub late_ms: u64,
    /// Lose power during every Nth payment, after charging.
    #[arg(long, value_name = "N")]
    pub power_loss_every: Option<u64>,
    /// How long a power loss lasts, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub power_off_ms: u64,
    /// What to report as the card number (`MaskedPAN`); a misbehaving terminal sends
    /// the whole number.
    #[arg(long, value_name = "DIGITS", default_value = "************4242")]
    pub masked_pan: String,
}

impl Args {
    /// The simulator options these flags describe.
    pub fn options(&self) -> SimOptions {
        SimOptions {
            poi_id: self.poi_id.clone(),
            decline_every: self.decline_every,
            lose_response_every: self.lose_response_every,
            garbage_every: self.garbage_every,
            late_every: self.late_every,
            late_by: Duration::from_millis(self.late_ms),
            power_loss_every: self.power_loss_every,
            power_off_for: Duration::from_millis(self.power_off_ms),
            masked_pan: self.masked_pan.clone(),
            ..SimOptions::default()
        }
    }
}

/// Run the simulator (and its control channel when asked) until Ctrl-C.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = PaymentSim::start(args.listen, args.options()).await?;
    println!(
        "Payment terminal simulator listening on {}",
        sim.local_addr()
    );
    let control = match args.control {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await?;
            println!("Control channel on {}", listener.local_addr()?);
            Some(tokio::spawn(serve_control(listener, sim.clone())))
        }
        None => None,
    };
    tokio::signal::ctrl_c().await?;
    if let Some(c) = control {
        c.abort();
    }
    sim.shutdown();
    Ok(())
}

/// The longest control line accepted.
const MAX_CONTROL_LINE: usize = 256;

/// Serve the control channel: one command per line, one answer line each
/// (`ok ...` or `err ...`). Commands are in `docs/nexo.md`. Connections are served
/// one at a time, which is all a bench needs.
pub async fn serve_control(listener: TcpListener, sim: PaymentSim) {
    while let Ok((stream, _)) = listener.accept().await {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(64 * 1024)).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let answer = if line.len() > MAX_CONTROL_LINE {
                "err line too long".to_owned()
            } else {
                control_command(&sim, line.trim()).await
            };
            if write
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// Run one control command and return its answer line.
pub async fn control_command(sim: &PaymentSim, line: &str) -> String {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    match verb {
        "next" => match rest.parse::<Mode>() {
            Ok(m) => {
                sim.next([m]);
                "ok".into()
            }
            Err(e) => format!("err {e}"),
        },
        "default" => match rest.parse::<Mode>() {
            Ok(m) => {
                sim.set_default(m);
                "ok".into()
            }
            Err(e) => format!("err {e}"),
        },
        "charges" if !rest.is_empty() => format!("ok {}", sim.charge_count(rest)),
        "doubles" => format!("ok {}", sim.double_charges()),
        "total" => format!("ok {}", sim.total_charges()),
        "state" if !rest.is_empty() => match sim.recorded(rest) {
            Some(r) => format!("ok {}", format!("{r:?}").to_lowercase()),
            None => "ok unknown".into(),
        },
        "power-off" => match rest.parse::<u64>() {
            Ok(ms) => {
                sim.power_off(Duration::from_millis(ms)).await;
                "ok".into()
            }
            Err(e) => format!("err bad milliseconds: {e}"),
        },
        _ => format!("err unknown command {line:?}"),
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

    #[test]
    fn every_n_rules() {
        assert!(every(4, Some(2)));
        assert!(!every(3, Some(2)));
        assert!(!every(3, None));
        assert!(!every(3, Some(0)));
    }
}
