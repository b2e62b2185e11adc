//! A wire-level MDB cashless reader behind a serial MDB bridge, speaking the bridge's
//! line framing (`docs/devices-serial.md`) over TCP or an in-memory pipe.
//!
//! # Model
//! - The reader follows the level 1 cashless states: inactive until READER ENABLE,
//!   then a session starts at the next POLL while a card is presented (by default
//!   always, with [`MdbOptions::card_funds`]); VEND REQUEST is approved when the
//!   price is within the funds (or as scripted with [`MdbSim::decide_next`]) and
//!   answered at once; VEND SUCCESS settles the charge, VEND FAILURE refunds it; SESSION
//!   COMPLETE ends the session (END SESSION).
//! - A command out of its state is answered COMMAND OUT OF SEQUENCE: VEND SUCCESS
//!   or VEND FAILURE outside a vend (none approved, or already settled), SESSION
//!   COMPLETE during one, VEND REQUEST outside a session.
//! - The reader is a device of its own: it keeps its session when the controller
//!   restarts (a new link, a new driver), and reports JUST RESET only after its own
//!   power-up or a RESET ([`MdbSim::power_cut`] is the machine losing power).
//! - Taking the card away ([`MdbSim::remove_card`], [`Decision::CardRemoved`]) makes
//!   the reader ask for the session's end (SESSION CANCEL REQUEST).
//! - A data reply the bridge did not pass on (a lost reply) is repeated at the next
//!   POLL, as MDB peripherals repeat data the master never ACKed.
//! - RESET releases an approval that never got VEND SUCCESS.
//! - The ledger records every approval by item number, so tests count real charges.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use outpost_peripherals::mdb::protocol::{
    BridgeReply, Command, MAX_LINE, ReaderConfig, Response, parse_command, parse_host_line,
};
use outpost_peripherals::transport::LineFramer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handle::{Handle, Model, Serve, WeakHandle};

/// What happens to the next command (or the next VEND REQUEST).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MdbFault {
    /// The reader carries the command out; its reply never reaches the host (the
    /// bridge goes silent), and unACKed data is repeated at the next POLL.
    LoseReply,
    /// The bridge swallows the command: the reader never sees it, the host hears
    /// nothing.
    Swallow,
    /// The reader carries the command out, and the bridge answers `X` (no answer on
    /// the bus) instead of its reply.
    NoResponse,
    /// The reader NAKs the command without carrying it out.
    Nak,
    /// The reader carries the command out; the host gets these bytes instead.
    Garbage(Vec<u8>),
}

/// The reader's decision on a VEND REQUEST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve it.
    Approve,
    /// Deny it.
    Deny,
    /// The customer takes the card away before the reader approves: the reader
    /// denies the vend and asks to end the session (SESSION CANCEL REQUEST).
    CardRemoved,
}

/// Where a charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Approved, waiting for VEND SUCCESS or FAILURE: the money is held.
    Held,
    /// VEND SUCCESS: the money moved.
    Settled,
    /// VEND FAILURE: given back.
    Refunded,
    /// Released by a RESET before VEND SUCCESS.
    Released,
}

/// One approval in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The item number of the VEND REQUEST.
    pub item: u16,
    /// Price in scaled units.
    pub price: u16,
    /// Where it stands.
    pub charge: Charge,
}

/// How the simulated reader starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdbOptions {
    /// The reader's config data.
    pub config: ReaderConfig,
    /// Funds of the card presented, in scaled units; `None`: no card until
    /// [`MdbSim::present_card`].
    pub card_funds: Option<u16>,
}

impl Default for MdbOptions {
    fn default() -> Self {
        Self {
            config: ReaderConfig {
                feature_level: 1,
                country: 0x1978,
                scale_factor: 1,
                decimal_places: 2,
                max_response_secs: 1,
                options: 0,
            },
            card_funds: Some(50_000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Inactive,
    Enabled,
    Session { funds: u16 },
    Approved { funds: u16, ledger: usize },
}

#[derive(Debug)]
struct Reader {
    opts: MdbOptions,
    phase: Phase,
    outbox: VecDeque<Response>,
    unacked: Option<Vec<Response>>,
    decisions: VecDeque<Decision>,
    faults: VecDeque<MdbFault>,
    vend_faults: VecDeque<MdbFault>,
    silent: bool,
    ledger: Vec<LedgerEntry>,
    commands: u64,
}

const MAX_LEDGER: usize = 100_000;

impl Reader {
    fn new(opts: MdbOptions) -> Self {
        Self {
            opts,
            phase: Phase::Inactive,
            // Powered up: the first POLL hears JUST RESET.
            outbox: VecDeque::from([Response::JustReset]),
            unacked: None,
            decisions: VecDeque::new(),
            faults: VecDeque::new(),
            vend_faults: VecDeque::new(),
            silent: false,
            ledger: Vec::new(),
            commands: 0,
        }
    }

    fn release_held(&mut self, to: Charge) {
        if let Phase::Approved { ledger, .. } = self.phase
            && let Some(e) = self.ledger.get_mut(ledger)
        {
            e.charge = to;
        }
    }

    /// Carry out one command; `None` is a plain ACK.
    fn execute(&mut self, cmd: Command) -> Option<Vec<Response>> {
        use Response as R;
        let oos = Some(vec![R::OutOfSequence]);
        match cmd {
            Command::Reset => {
                self.release_held(Charge::Released);
                self.phase = Phase::Inactive;
                self.outbox = VecDeque::from([R::JustReset]);
                self.unacked = None;
                None
            }
            Command::SetupConfig { .. } => Some(vec![R::Config(self.opts.config)]),
            Command::SetupPrices { .. } => None,
            Command::Poll => {
                if let Some(d) = self.unacked.take() {
                    return Some(d);
                }
                if !self.outbox.is_empty() {
                    return Some(self.outbox.drain(..).collect());
                }
                if self.phase == Phase::Enabled
                    && let Some(funds) = self.opts.card_funds
                {
                    self.phase = Phase::Session { funds };
                    return Some(vec![R::BeginSession { funds }]);
                }
                None
            }
            Command::ReaderEnable => {
                if self.phase == Phase::Inactive {
                    self.phase = Phase::Enabled;
                }
                None
            }
            Command::ReaderDisable => {
                if self.phase == Phase::Enabled {
                    self.phase = Phase::Inactive;
                }
                None
            }
            Command::ReaderCancel => match self.phase {
                Phase::Session { .. } => {
                    self.phase = Phase::Enabled;
                    Some(vec![R::Cancelled, R::EndSession])
                }
                _ => Some(vec![R::Cancelled]),
            },
            Command::VendRequest { price, item } => {
                let Phase::Session { funds } = self.phase else {
                    return oos;
                };
                let decision = self.decisions.pop_front().unwrap_or(if price <= funds {
                    Decision::Approve
                } else {
                    Decision::Deny
                });
                match decision {
                    Decision::Approve => {
                        if self.ledger.len() >= MAX_LEDGER {
                            self.ledger.remove(0);
                        }
                        self.ledger.push(LedgerEntry {
                            item,
                            price,
                            charge: Charge::Held,
                        });
                        self.phase = Phase::Approved {
                            funds,
                            ledger: self.ledger.len() - 1,
                        };
                        Some(vec![R::VendApproved { amount: price }])
                    }
                    Decision::Deny => Some(vec![R::VendDenied]),
                    Decision::CardRemoved => {
                        self.opts.card_funds = None;
                        Some(vec![R::SessionCancelRequest, R::VendDenied])
                    }
                }
            }
            // Approval is immediate here, so there is never a request to withdraw.
            Command::VendCancel => oos,
            Command::VendSuccess { .. } | Command::VendFailure => {
                let Phase::Approved { funds, .. } = self.phase else {
                    return oos;
                };
                let to = if cmd == Command::VendFailure {
                    Charge::Refunded
                } else {
                    Charge::Settled
                };
                self.release_held(to);
                self.phase = Phase::Session { funds };
                None
            }
            Command::SessionComplete => match self.phase {
                Phase::Session { .. } => {
                    self.phase = Phase::Enabled;
                    Some(vec![R::EndSession])
                }
                Phase::Approved { .. } => oos,
                _ => oos,
            },
        }
    }

    /// The bridge's reply line to one host line, or nothing (silence).
    fn handle(&mut self, line: Result<Vec<u8>, ()>) -> Option<Vec<u8>> {
        self.commands += 1;
        if self.silent {
            return None;
        }
        let cmd = line
            .ok()
            .and_then(|l| parse_host_line(&l).ok())
            .and_then(|b| parse_command(&b).ok());
        let Some(cmd) = cmd else {
            // The bridge passes what it cannot parse to nobody: the bus says nothing.
            return Some(BridgeReply::NoResponse.line().into_bytes());
        };
        let fault = match cmd {
            Command::VendRequest { .. } => self
                .vend_faults
                .pop_front()
                .or_else(|| self.faults.pop_front()),
            _ => self.faults.pop_front(),
        };
        let reply_of = |r: Option<Vec<Response>>| match r {
            None => BridgeReply::Ack,
            Some(rs) => BridgeReply::Data(rs.iter().flat_map(Response::bytes).collect()),
        };
        match fault {
            None => {
                let r = self.execute(cmd);
                Some(reply_of(r).line().into_bytes())
            }
            Some(MdbFault::Swallow) => None,
            Some(MdbFault::Nak) => Some(BridgeReply::Nak.line().into_bytes()),
            Some(MdbFault::LoseReply) => {
                if let Some(d) = self.execute(cmd) {
                    self.unacked = Some(d);
                }
                None
            }
            Some(MdbFault::NoResponse) => {
                if let Some(d) = self.execute(cmd) {
                    self.unacked = Some(d);
                }
                Some(BridgeReply::NoResponse.line().into_bytes())
            }
            Some(MdbFault::Garbage(g)) => {
                if let Some(d) = self.execute(cmd) {
                    self.unacked = Some(d);
                }
                Some(g)
            }
        }
    }
}

/// The simulated reader and bridge behind an [`MdbSim`]: its session, ledger,
/// scripted decisions and faults.
pub struct ReaderModel {
    reader: Mutex<Reader>,
}

impl ReaderModel {
    fn new(options: MdbOptions) -> Self {
        Self {
            reader: Mutex::new(Reader::new(options)),
        }
    }
}

impl Model for ReaderModel {
    type Addr = Option<SocketAddr>;
    const NAME: &'static str = "MdbSim";
}

impl Serve for ReaderModel {
    const PIPE_CAPACITY: usize = 1024;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve(sim, stream)
    }
}

/// A simulated MDB cashless reader and bridge. Clones share it; it stops when the
/// last clone is dropped. [`local_addr`](Handle::local_addr) is where it listens
/// when started with [`start`](Self::start); [`attach`](Handle::attach) and
/// [`connector`](Handle::connector) plug in other links.
pub type MdbSim = Handle<ReaderModel>;

impl MdbSim {
    /// A reader with no listener: links come through [`attach`](Handle::attach) or
    /// [`connector`](Handle::connector).
    pub fn new(options: MdbOptions) -> Self {
        Handle::detached(ReaderModel::new(options))
    }

    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve every connection.
    pub async fn start(addr: SocketAddr, options: MdbOptions) -> std::io::Result<Self> {
        Handle::listen(addr, ReaderModel::new(options)).await
    }

    fn r(&self) -> MutexGuard<'_, Reader> {
        // Held to answer one line or read the ledger, never across an await.
        self.model()
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Present a card with these funds (scaled units) from now on; `None` takes it
    /// away (no new session starts).
    pub fn present_card(&self, funds: Option<u16>) {
        self.r().opts.card_funds = funds;
    }

    /// The customer takes the card away now: no new session starts, and a session
    /// open (approved vend or not) is asked to end with SESSION CANCEL REQUEST at
    /// the next POLL; a vend approved still waits for VEND SUCCESS or FAILURE.
    pub fn remove_card(&self) {
        let mut r = self.r();
        r.opts.card_funds = None;
        if matches!(r.phase, Phase::Session { .. } | Phase::Approved { .. }) {
            r.outbox.push_back(Response::SessionCancelRequest);
        }
    }

    /// The whole machine loses its power (the reader too): an approval that never
    /// got VEND SUCCESS is released, and the reader comes back up inactive,
    /// reporting JUST RESET. (A restart of the controller alone changes nothing
    /// here: the reader keeps its power and its session.)
    pub fn power_cut(&self) {
        let mut r = self.r();
        r.release_held(Charge::Released);
        r.phase = Phase::Inactive;
        r.outbox = VecDeque::from([Response::JustReset]);
        r.unacked = None;
    }

    /// Script the decisions on the next VEND REQUESTs, in order.
    pub fn decide_next(&self, decisions: impl IntoIterator<Item = Decision>) {
        self.r().decisions.extend(decisions);
    }

    /// Faults for the next commands of any kind, in order.
    pub fn fault_next(&self, faults: impl IntoIterator<Item = MdbFault>) {
        self.r().faults.extend(faults);
    }

    /// Faults for the next VEND REQUESTs only, in order.
    pub fn fault_next_vend(&self, faults: impl IntoIterator<Item = MdbFault>) {
        self.r().vend_faults.extend(faults);
    }

    /// Answer nothing at all while set (the bridge lost power).
    pub fn set_silent(&self, silent: bool) {
        self.r().silent = silent;
    }

    /// Every approval so far.
    pub fn ledger(&self) -> Vec<LedgerEntry> {
        self.r().ledger.clone()
    }

    /// Approvals under `item`: each moved (or held) money once, whatever happened to
    /// it after (see [`ledger`](Self::ledger) for that).
    pub fn charge_count(&self, item: u16) -> u32 {
        self.r().ledger.iter().filter(|e| e.item == item).count() as u32
    }

    /// Commands received.
    pub fn commands(&self) -> u64 {
        self.r().commands
    }
}

async fn serve<S>(sim: WeakHandle<ReaderModel>, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut framer = LineFramer::new(MAX_LINE);
    let mut buf = [0u8; 256];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(sim) = sim.upgrade() else { return };
        let out: Vec<u8> = {
            let mut r = sim.r();
            framer
                .feed(&buf[..n])
                .into_iter()
                .filter_map(|l| r.handle(l.map_err(|_| ())))
                .flatten()
                .collect()
        };
        drop(sim);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::mdb::protocol::{parse_bridge_line, parse_responses};

    fn send(r: &mut Reader, cmd: Command) -> Option<BridgeReply> {
        let line = cmd.line();
        let out = r.handle(Ok(line.trim_end().as_bytes().to_vec()))?;
        let text = String::from_utf8(out).unwrap();
        Some(parse_bridge_line(text.trim_end().as_bytes()).unwrap())
    }

    fn data(reply: Option<BridgeReply>) -> Vec<Response> {
        match reply {
            Some(BridgeReply::Data(d)) => parse_responses(&d).unwrap(),
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn a_vend_session_runs_and_a_lost_approval_is_repeated_at_the_next_poll() {
        let mut r = Reader::new(MdbOptions::default());
        assert_eq!(send(&mut r, Command::Reset), Some(BridgeReply::Ack));
        assert_eq!(data(send(&mut r, Command::Poll)), vec![Response::JustReset]);
        assert_eq!(send(&mut r, Command::ReaderEnable), Some(BridgeReply::Ack));
        assert_eq!(
            data(send(&mut r, Command::Poll)),
            vec![Response::BeginSession { funds: 50_000 }]
        );
        r.vend_faults.push_back(MdbFault::LoseReply);
        assert_eq!(
            send(
                &mut r,
                Command::VendRequest {
                    price: 100,
                    item: 1
                }
            ),
            None
        );
        assert_eq!(
            data(send(&mut r, Command::Poll)),
            vec![Response::VendApproved { amount: 100 }]
        );
        assert_eq!(
            send(&mut r, Command::VendSuccess { item: 1 }),
            Some(BridgeReply::Ack)
        );
        assert_eq!(r.ledger[0].charge, Charge::Settled);
        assert_eq!(
            data(send(&mut r, Command::SessionComplete)),
            vec![Response::EndSession]
        );
        assert_eq!(
            data(send(&mut r, Command::VendFailure)),
            vec![Response::OutOfSequence]
        );
    }
}

/// `outpost-sim mdb`: an MDB cashless reader behind a serial MDB bridge.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on for the driver.
    #[arg(long, default_value = "127.0.0.1:4003")]
    pub listen: SocketAddr,
    /// Where to listen for control commands (`card <funds>|none`, `approve`, `deny`,
    /// `lose-vend`, `swallow-vend`, `noresponse-vend`, `nak-vend`, `silent on|off`,
    /// `ledger`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
}

/// Run one control command and return its answer line.
pub fn control_command(sim: &MdbSim, line: &str) -> String {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let arg = words.next();
    match (verb, arg) {
        ("card", Some("none")) => sim.present_card(None),
        ("card", Some(f)) => match f.parse::<u16>() {
            Ok(f) => sim.present_card(Some(f)),
            Err(_) => return "err card <funds in scaled units>|none".into(),
        },
        ("approve", None) => sim.decide_next([Decision::Approve]),
        ("deny", None) => sim.decide_next([Decision::Deny]),
        ("lose-vend", None) => sim.fault_next_vend([MdbFault::LoseReply]),
        ("swallow-vend", None) => sim.fault_next_vend([MdbFault::Swallow]),
        ("noresponse-vend", None) => sim.fault_next_vend([MdbFault::NoResponse]),
        ("nak-vend", None) => sim.fault_next_vend([MdbFault::Nak]),
        ("silent", Some("on")) => sim.set_silent(true),
        ("silent", Some("off")) => sim.set_silent(false),
        ("ledger", None) => return format!("ok {:?}", sim.ledger()),
        _ => return format!("err unknown command {line:?}"),
    }
    "ok".into()
}

/// Run the simulator until Ctrl-C.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = MdbSim::start(args.listen, MdbOptions::default()).await?;
    println!(
        "MDB cashless reader simulator listening on {}",
        sim.local_addr().unwrap_or(args.listen)
    );
    let s = sim.clone();
    super::run_until_ctrl_c(args.control, move |l| control_command(&s, l)).await
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[tokio::test]
    async fn control_commands_script_the_reader() {
        let sim = MdbSim::new(MdbOptions::default());
        assert_eq!(control_command(&sim, "card 250"), "ok");
        assert_eq!(sim.r().opts.card_funds, Some(250));
        assert_eq!(control_command(&sim, "deny"), "ok");
        assert_eq!(control_command(&sim, "lose-vend"), "ok");
        assert_eq!(sim.r().vend_faults.len(), 1);
        assert!(control_command(&sim, "card lots").starts_with("err"));
        assert!(control_command(&sim, "explode").starts_with("err"));
        assert_eq!(control_command(&sim, "ledger"), "ok []");
    }
}
