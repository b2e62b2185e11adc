//! A wire-level MDB bill validator (level 1, with escrow) behind the serial MDB
//! bridge, over TCP or an in-memory pipe.
//!
//! # Model
//! - Bill types with credits (scaled), a stacker (the cash box) with a capacity, and
//!   one escrow position.
//! - A note put in ([`ValidatorSim::insert_bill`]) while its type is enabled is held
//!   in escrow when escrow is enabled for it, else stacked at once; a disabled type
//!   is rejected; a note while one is in escrow, the validator jammed, or the cash
//!   box out is returned. Each is reported at the next POLL.
//! - ESCROW stacks (or returns) the note in escrow: the validator answers VALIDATOR
//!   BUSY for [`ValidatorOptions::busy_polls`] polls, then reports the routing. A
//!   full stacker returns a note asked to be stacked. ESCROW with no note is INVALID
//!   ESCROW REQUEST.
//! - RESET returns a note in escrow (the customer gets it back) and reports JUST
//!   RESET.
//! - The cash box can be removed (CASH BOX OUT OF POSITION) and put back emptied;
//!   the validator can jam (VALIDATOR JAMMED).
//! - Wire faults are queued as for the other MDB simulators ([`MdbFault`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use outpost_peripherals::mdb::bill::{
    BillActivity, StackerStatus, ValidatorCommand, ValidatorSetup, parse_validator_command,
};
use outpost_peripherals::mdb::coin::Identification;
use outpost_peripherals::validator::BillRoute;
use tokio::io::{AsyncRead, AsyncWrite};

use super::bridge::{MdbFault, Peripheral, Wire, serve_lines};
use super::handle::{Handle, Model, Serve, WeakHandle};

/// How the simulated validator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorOptions {
    /// What it answers to SETUP.
    pub setup: ValidatorSetup,
    /// Notes already in the stacker.
    pub stacked: u16,
    /// Polls that answer VALIDATOR BUSY after an ESCROW.
    pub busy_polls: u32,
}

impl ValidatorOptions {
    /// A euro validator: 5, 10, 20 and 50 euro notes (scaling 100), escrow, a
    /// stacker of 500.
    pub fn euro() -> Self {
        Self {
            setup: ValidatorSetup {
                level: 1,
                country: 0x1978,
                scaling: 100,
                decimal_places: 2,
                stacker_capacity: 500,
                security: 0,
                escrow: true,
                credits: vec![5, 10, 20, 50],
            },
            stacked: 0,
            busy_polls: 1,
        }
    }
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        Self::euro()
    }
}

#[derive(Debug)]
struct Validator {
    opts: ValidatorOptions,
    enabled: u16,
    escrow_enabled: u16,
    escrow: Option<u8>,
    stacker: u16,
    cash_box_in: bool,
    jammed: bool,
    outbox: VecDeque<BillActivity>,
    /// The routing to report once the busy polls are over.
    moving: Option<BillActivity>,
    busy: u32,
    /// Value in scaled units of every note stacked, and of every note given back.
    stacked_value: u64,
    returned_value: u64,
    wire: Wire,
}

const MAX_OUTBOX: usize = 1_000;

impl Validator {
    fn new(opts: ValidatorOptions) -> Self {
        Self {
            stacker: opts.stacked,
            opts,
            enabled: 0,
            escrow_enabled: 0,
            escrow: None,
            cash_box_in: true,
            jammed: false,
            outbox: VecDeque::new(),
            moving: None,
            busy: 0,
            stacked_value: 0,
            returned_value: 0,
            wire: Wire::default(),
        }
    }

    fn report(&mut self, a: BillActivity) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push_back(a);
        }
    }

    fn credit(&self, t: u8) -> u64 {
        u64::from(
            self.opts
                .setup
                .credits
                .get(usize::from(t))
                .copied()
                .unwrap_or(0),
        )
    }

    fn full(&self) -> bool {
        self.stacker >= self.opts.setup.stacker_capacity
    }

    fn insert(&mut self, t: u8) -> BillRoute {
        let t = t & 0x0F;
        let bill = |routing| BillActivity::Bill {
            bill_type: t,
            routing,
        };
        let route = if self.credit(t) == 0 || self.enabled & (1 << t) == 0 {
            self.report(bill(4));
            BillRoute::Rejected
        } else if self.escrow.is_some() || self.jammed || !self.cash_box_in {
            self.report(bill(2));
            BillRoute::Returned
        } else if self.escrow_enabled & (1 << t) != 0 {
            self.escrow = Some(t);
            self.report(bill(1));
            BillRoute::Escrowed
        } else if self.full() {
            self.report(bill(2));
            BillRoute::Returned
        } else {
            self.stacker += 1;
            self.stacked_value += self.credit(t);
            self.report(bill(0));
            BillRoute::Stacked
        };
        if route == BillRoute::Returned || route == BillRoute::Rejected {
            self.returned_value += self.credit(t);
        }
        route
    }
}

impl Peripheral for Validator {
    fn is_poll(&self, block: &[u8]) -> bool {
        block == [0x33]
    }

    fn is_reset(&self, block: &[u8]) -> bool {
        block == [0x30]
    }

    fn is_money(&self, block: &[u8]) -> bool {
        block.first() == Some(&0x35)
    }

    fn execute(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        let cmd = parse_validator_command(block).map_err(|_| ())?;
        Ok(match cmd {
            ValidatorCommand::Reset => {
                if let Some(t) = self.escrow.take() {
                    self.returned_value += self.credit(t);
                }
                self.moving = None;
                self.busy = 0;
                self.enabled = 0;
                self.escrow_enabled = 0;
                self.outbox = VecDeque::from([BillActivity::Status(6)]);
                None
            }
            ValidatorCommand::Setup => Some(self.opts.setup.bytes()),
            ValidatorCommand::Security(_) => None,
            ValidatorCommand::Identification => {
                let mut id = Identification {
                    manufacturer: "OUT".into(),
                    serial: "SIM-VALID-01".into(),
                    model: "VALIDATOR SIM".into(),
                    version: 0x0100,
                    features: 0,
                }
                .bytes();
                id.truncate(29);
                Some(id)
            }
            ValidatorCommand::BillType { enable, escrow } => {
                self.enabled = enable;
                self.escrow_enabled = escrow;
                None
            }
            ValidatorCommand::Stacker => Some(
                StackerStatus {
                    full: self.full(),
                    bills: self.stacker,
                }
                .bytes(),
            ),
            ValidatorCommand::Escrow(stack) => {
                match self.escrow.take() {
                    None => self.report(BillActivity::Status(10)),
                    Some(t) => {
                        let routing = if stack && !self.full() && self.cash_box_in {
                            self.stacker += 1;
                            self.stacked_value += self.credit(t);
                            0
                        } else {
                            self.returned_value += self.credit(t);
                            2
                        };
                        self.moving = Some(BillActivity::Bill {
                            bill_type: t,
                            routing,
                        });
                        self.busy = self.opts.busy_polls;
                    }
                }
                None
            }
            ValidatorCommand::Poll => {
                let mut out = Vec::new();
                if self.busy > 0 {
                    self.busy -= 1;
                    out.push(BillActivity::Status(3).byte());
                } else if let Some(m) = self.moving.take() {
                    out.push(m.byte());
                }
                while out.len() < 16
                    && let Some(a) = self.outbox.pop_front()
                {
                    out.push(a.byte());
                }
                (!out.is_empty()).then_some(out)
            }
        })
    }
}

/// The simulated validator and bridge behind a [`ValidatorSim`].
pub struct ValidatorModel {
    validator: Mutex<Validator>,
}

impl Model for ValidatorModel {
    type Addr = Option<SocketAddr>;
    const NAME: &'static str = "ValidatorSim";
}

impl Serve for ValidatorModel {
    const PIPE_CAPACITY: usize = 1024;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve_lines(sim, stream, |sim: &ValidatorSim, lines| {
            let mut v = sim.v();
            let mut out = Vec::new();
            for l in lines {
                // The wire is taken out for the line: it answers for the validator.
                let mut wire = std::mem::take(&mut v.wire);
                if let Some(r) = wire.handle(&mut *v, l) {
                    out.extend(r);
                }
                v.wire = wire;
            }
            out
        })
    }
}

/// A simulated MDB bill validator and bridge. Clones share it; it stops when the
/// last clone is dropped.
pub type ValidatorSim = Handle<ValidatorModel>;

impl ValidatorSim {
    /// A validator with no listener.
    pub fn new(options: ValidatorOptions) -> Self {
        Handle::detached(ValidatorModel {
            validator: Mutex::new(Validator::new(options)),
        })
    }

    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve every connection.
    pub async fn start(addr: SocketAddr, options: ValidatorOptions) -> std::io::Result<Self> {
        Handle::listen(
            addr,
            ValidatorModel {
                validator: Mutex::new(Validator::new(options)),
            },
        )
        .await
    }

    fn v(&self) -> MutexGuard<'_, Validator> {
        // Held to answer one line or read the state, never across an await.
        self.model()
            .validator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Put a note of `bill_type` in; where it went.
    pub fn insert_bill(&self, bill_type: u8) -> BillRoute {
        self.v().insert(bill_type)
    }

    /// The note in escrow, by type.
    pub fn in_escrow(&self) -> Option<u8> {
        self.v().escrow
    }

    /// Notes in the stacker.
    pub fn stacker(&self) -> u16 {
        self.v().stacker
    }

    /// Value in minor units of every note stacked so far.
    pub fn stacked_minor(&self) -> i64 {
        let v = self.v();
        (v.stacked_value * u64::from(v.opts.setup.scaling)) as i64
    }

    /// Value in minor units of every note given back (returned or rejected).
    pub fn returned_minor(&self) -> i64 {
        let v = self.v();
        (v.returned_value * u64::from(v.opts.setup.scaling)) as i64
    }

    /// Fill the stacker to `bills`.
    pub fn set_stacker(&self, bills: u16) {
        self.v().stacker = bills;
    }

    /// The cash box is taken out (CASH BOX OUT OF POSITION).
    pub fn remove_cash_box(&self) {
        let mut v = self.v();
        v.cash_box_in = false;
        v.report(BillActivity::Status(8));
    }

    /// The cash box is put back, emptied.
    pub fn replace_cash_box(&self) {
        let mut v = self.v();
        v.cash_box_in = true;
        v.stacker = 0;
    }

    /// A note jams (VALIDATOR JAMMED): notes are returned until
    /// [`clear_jam`](Self::clear_jam).
    pub fn jam(&self) {
        let mut v = self.v();
        v.jammed = true;
        v.report(BillActivity::Status(5));
    }

    /// A technician clears the jam.
    pub fn clear_jam(&self) {
        self.v().jammed = false;
    }

    /// Faults for the next commands of any kind, in order.
    pub fn fault_next(&self, faults: impl IntoIterator<Item = MdbFault>) {
        self.v().wire.faults.extend(faults);
    }

    /// Faults for the next ESCROWs only, in order.
    pub fn fault_next_escrow(&self, faults: impl IntoIterator<Item = MdbFault>) {
        self.v().wire.money_faults.extend(faults);
    }

    /// The next ESCROW is carried out, then the bridge goes silent (its answer
    /// lost, and every answer after it) until [`set_silent`](Self::set_silent)
    /// `(false)`.
    pub fn silent_after_next_escrow(&self) {
        self.v().wire.silent_after_money = true;
    }

    /// Answer nothing at all while set (the bridge lost power).
    pub fn set_silent(&self, silent: bool) {
        self.v().wire.silent = silent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::mdb::bill::{parse_bill_activities, parse_stacker};
    use outpost_peripherals::mdb::protocol::{BridgeReply, host_line, parse_bridge_line};

    fn send(v: &mut Validator, cmd: ValidatorCommand) -> Option<BridgeReply> {
        let line = host_line(&cmd.bytes());
        let mut wire = std::mem::take(&mut v.wire);
        let out = wire.handle(v, Ok(line.trim_end().as_bytes().to_vec()));
        v.wire = wire;
        let text = String::from_utf8(out?).unwrap();
        Some(parse_bridge_line(text.trim_end().as_bytes()).unwrap())
    }

    fn acts(r: Option<BridgeReply>) -> Vec<BillActivity> {
        match r {
            Some(BridgeReply::Data(d)) => parse_bill_activities(&d).unwrap(),
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn a_note_waits_in_escrow_then_is_stacked_and_a_reset_returns_one() {
        let mut v = Validator::new(ValidatorOptions::euro());
        send(&mut v, ValidatorCommand::Reset);
        assert_eq!(
            acts(send(&mut v, ValidatorCommand::Poll)),
            [BillActivity::Status(6)]
        );
        assert_eq!(v.insert(1), BillRoute::Rejected, "not enabled");
        send(
            &mut v,
            ValidatorCommand::BillType {
                enable: 0xF,
                escrow: 0xF,
            },
        );
        assert_eq!(v.insert(1), BillRoute::Escrowed);
        assert_eq!(v.insert(2), BillRoute::Returned, "escrow is taken");
        send(&mut v, ValidatorCommand::Escrow(true));
        acts(send(&mut v, ValidatorCommand::Poll));
        let a = acts(send(&mut v, ValidatorCommand::Poll));
        assert_eq!(
            a,
            [BillActivity::Bill {
                bill_type: 1,
                routing: 0
            }]
        );
        let s = parse_stacker(&match send(&mut v, ValidatorCommand::Stacker) {
            Some(BridgeReply::Data(d)) => d,
            other => panic!("{other:?}"),
        })
        .unwrap();
        assert_eq!((s.bills, s.full), (1, false));
        assert_eq!(v.insert(3), BillRoute::Escrowed);
        send(&mut v, ValidatorCommand::Reset);
        assert_eq!(v.escrow, None, "a reset gives the note back");
        assert_eq!(v.returned_value, 10 + 20 + 50, "rejected, returned, reset");
        assert_eq!(v.stacked_value, 10);
    }
}

/// `outpost-sim validator`: a euro MDB bill validator with escrow behind a serial MDB
/// bridge.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on for the driver.
    #[arg(long, default_value = "127.0.0.1:4005")]
    pub listen: SocketAddr,
    /// Where to listen for control commands (`bill <type>`, `cashbox out|in`, `jam`,
    /// `clear-jam`, `stacker <notes>`, `status`, `silent on|off`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
}

/// Run one control command and return its answer line.
pub fn control_command(sim: &ValidatorSim, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["bill", t] => match t.parse::<u8>() {
            Ok(t) if t < 16 => return format!("ok {:?}", sim.insert_bill(t)),
            _ => return "err bill <type 0-15>".into(),
        },
        ["cashbox", "out"] => sim.remove_cash_box(),
        ["cashbox", "in"] => sim.replace_cash_box(),
        ["jam"] => sim.jam(),
        ["clear-jam"] => sim.clear_jam(),
        ["stacker", n] => match n.parse::<u16>() {
            Ok(n) => sim.set_stacker(n),
            Err(_) => return "err stacker <notes>".into(),
        },
        ["status"] => {
            return format!(
                "ok escrow {:?} stacker {} stacked {} returned {}",
                sim.in_escrow(),
                sim.stacker(),
                sim.stacked_minor(),
                sim.returned_minor()
            );
        }
        ["silent", "on"] => sim.set_silent(true),
        ["silent", "off"] => sim.set_silent(false),
        _ => return format!("err unknown command {line:?}"),
    }
    "ok".into()
}

/// Run the simulator until Ctrl-C.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = ValidatorSim::start(args.listen, ValidatorOptions::euro()).await?;
    println!(
        "MDB bill validator simulator listening on {}",
        sim.local_addr().unwrap_or(args.listen)
    );
    let s = sim.clone();
    super::run_until_ctrl_c(args.control, move |l| control_command(&s, l)).await
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[tokio::test]
    async fn control_commands_script_the_validator() {
        let sim = ValidatorSim::new(ValidatorOptions::euro());
        assert_eq!(
            control_command(&sim, "bill 0"),
            "ok Rejected",
            "not enabled"
        );
        assert_eq!(control_command(&sim, "stacker 12"), "ok");
        assert_eq!(sim.stacker(), 12);
        assert!(control_command(&sim, "status").starts_with("ok escrow None"));
        assert!(control_command(&sim, "bill x").starts_with("err"));
        assert!(control_command(&sim, "fly").starts_with("err"));
    }
}
