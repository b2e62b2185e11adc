//! A wire-level MDB coin changer (level 3) behind the serial MDB bridge, over TCP or
//! an in-memory pipe.
//!
//! # Model
//! - Coin types with credits (scaled), routing (which have a tube), tubes with
//!   counts and a capacity, and a cash box.
//! - A coin put in ([`ChangerSim::insert_coin`]) while its type is enabled goes to
//!   its tube, or to the cash box when it has none or the tube is full; while
//!   disabled (or during a coin jam) it is returned. Each is reported at the next
//!   POLL with its routing and tube count.
//! - DISPENSE pays what the tube holds of it at once (the coins leave the tube),
//!   then the changer reports PAYOUT BUSY for [`ChangerOptions::busy_polls`] polls.
//!   A tube jam ([`ChangerSim::jam_next_payout`]) stops the next payout after some
//!   coins, reported as TUBE JAM.
//! - RESET empties the report queue and reports JUST RESET; tubes and cash box keep
//!   their coins, as in a real changer.
//! - Wire faults (a lost reply, a swallowed command, ...) are queued like the
//!   reader simulator's ([`MdbFault`]); data not passed on is repeated at the next
//!   POLL.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use outpost_peripherals::changer::CoinRoute;
use outpost_peripherals::mdb::coin::{
    Activity, ChangerCommand, ChangerSetup, Identification, TubeStatus, parse_changer_command,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::bridge::{MdbFault, Peripheral, Wire, serve_lines};
use super::handle::{Handle, Model, Serve, WeakHandle};

/// How the simulated changer starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangerOptions {
    /// What it answers to SETUP (coin credits, scaling, routing).
    pub setup: ChangerSetup,
    /// Coins in each coin type's tube.
    pub tubes: Vec<u8>,
    /// Coins a tube holds; at this count it is full.
    pub capacity: u8,
    /// Polls that answer PAYOUT BUSY after a DISPENSE.
    pub busy_polls: u32,
}

impl ChangerOptions {
    /// A euro changer: 5c (cash box only), 10c, 20c, 50c, 1€ and 2€ with tubes of
    /// 50, holding 20, 20, 20, 10 and 5.
    pub fn euro() -> Self {
        Self {
            setup: ChangerSetup {
                level: 3,
                country: 0x1978,
                scaling: 5,
                decimal_places: 2,
                routing: 0b11_1110,
                credits: vec![1, 2, 4, 10, 20, 40],
            },
            tubes: vec![0, 20, 20, 20, 10, 5],
            capacity: 50,
            busy_polls: 1,
        }
    }

    /// A changer of coins `values` (minor units, scaling 1, every one with a tube)
    /// holding `counts`.
    pub fn with_coins(values: &[u8], counts: &[u8]) -> Self {
        Self {
            setup: ChangerSetup {
                level: 3,
                country: 0x1840,
                scaling: 1,
                decimal_places: 2,
                routing: (1u16 << values.len().min(16)).wrapping_sub(1),
                credits: values.to_vec(),
            },
            tubes: counts.to_vec(),
            capacity: 100,
            busy_polls: 1,
        }
    }
}

impl Default for ChangerOptions {
    fn default() -> Self {
        Self::euro()
    }
}

#[derive(Debug)]
struct Changer {
    opts: ChangerOptions,
    tubes: [u8; 16],
    cash_box: [u32; 16],
    enabled: u16,
    outbox: VecDeque<Activity>,
    busy: u32,
    /// Coins the next payout pays before its tube jams.
    jam_after: Option<u32>,
    coin_jam: bool,
    /// Coins that physically left the tubes through DISPENSE, per type.
    paid: [u32; 16],
    wire: Wire,
}

/// Most activities queued; a changer with no one polling stops reporting.
const MAX_OUTBOX: usize = 1_000;

impl Changer {
    fn new(opts: ChangerOptions) -> Self {
        let mut tubes = [0u8; 16];
        for (t, n) in tubes.iter_mut().zip(&opts.tubes) {
            *t = *n;
        }
        Self {
            opts,
            tubes,
            cash_box: [0; 16],
            enabled: 0,
            outbox: VecDeque::new(),
            busy: 0,
            jam_after: None,
            coin_jam: false,
            paid: [0; 16],
            wire: Wire::default(),
        }
    }

    fn has_tube(&self, t: usize) -> bool {
        self.opts.setup.routing & (1 << t) != 0
    }

    fn report(&mut self, a: Activity) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push_back(a);
        }
    }

    fn insert(&mut self, t: u8) -> CoinRoute {
        let i = usize::from(t & 0x0F);
        let known = self.opts.setup.credits.get(i).is_some_and(|c| *c > 0);
        let route = if !known || self.enabled & (1 << i) == 0 || self.coin_jam {
            CoinRoute::Returned
        } else if self.has_tube(i) && self.tubes[i] < self.opts.capacity {
            self.tubes[i] += 1;
            CoinRoute::Tube
        } else {
            self.cash_box[i] += 1;
            CoinRoute::CashBox
        };
        let routing = match route {
            CoinRoute::CashBox => 0,
            CoinRoute::Tube => 1,
            CoinRoute::Returned => 3,
        };
        self.report(Activity::Deposited {
            coin_type: i as u8,
            routing,
            tube: self.tubes[i],
        });
        route
    }

    fn tube_status(&self) -> TubeStatus {
        let n = self.opts.setup.credits.len().min(16);
        let full = (0..n)
            .filter(|&i| self.has_tube(i) && self.tubes[i] >= self.opts.capacity)
            .fold(0u16, |m, i| m | (1 << i));
        TubeStatus {
            full,
            counts: self.tubes[..n].to_vec(),
        }
    }
}

impl Peripheral for Changer {
    fn is_poll(&self, block: &[u8]) -> bool {
        block == [0x0B]
    }

    fn is_money(&self, block: &[u8]) -> bool {
        block.first() == Some(&0x0D)
    }

    fn is_reset(&self, block: &[u8]) -> bool {
        block == [0x08]
    }

    fn execute(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        let cmd = parse_changer_command(block).map_err(|_| ())?;
        Ok(match cmd {
            ChangerCommand::Reset => {
                self.outbox = VecDeque::from([Activity::Status(11)]);
                self.enabled = 0;
                self.busy = 0;
                None
            }
            ChangerCommand::Setup => Some(self.opts.setup.bytes()),
            ChangerCommand::TubeStatus => Some(self.tube_status().bytes()),
            ChangerCommand::Identification => Some(
                Identification {
                    manufacturer: "OUT".into(),
                    serial: "SIM-CHANGER".into(),
                    model: "CHANGER SIM".into(),
                    version: 0x0100,
                    features: 0,
                }
                .bytes(),
            ),
            ChangerCommand::CoinType { enable, .. } => {
                self.enabled = enable;
                None
            }
            ChangerCommand::Dispense { coin_type, count } => {
                let i = usize::from(coin_type);
                let mut n = count.min(self.tubes[i]);
                if let Some(left) = self.jam_after.take() {
                    if u32::from(n) > left {
                        n = left as u8;
                        self.report(Activity::Status(7));
                    } else {
                        self.jam_after = Some(left - u32::from(n));
                    }
                }
                self.tubes[i] -= n;
                self.paid[i] += u32::from(n);
                self.busy = self.opts.busy_polls;
                None
            }
            ChangerCommand::Poll => {
                let mut out = Vec::new();
                if self.busy > 0 {
                    self.busy -= 1;
                    out.push(2u8);
                }
                while let Some(a) = self.outbox.front() {
                    let b = a.bytes();
                    if out.len() + b.len() > 16 {
                        break;
                    }
                    out.extend(b);
                    self.outbox.pop_front();
                }
                (!out.is_empty()).then_some(out)
            }
        })
    }
}

/// The simulated changer and bridge behind a [`ChangerSim`].
pub struct ChangerModel {
    changer: Mutex<Changer>,
}

impl Model for ChangerModel {
    type Addr = Option<SocketAddr>;
    const NAME: &'static str = "ChangerSim";
}

impl Serve for ChangerModel {
    const PIPE_CAPACITY: usize = 1024;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve_lines(sim, stream, |sim: &ChangerSim, lines| {
            let mut c = sim.c();
            let mut out = Vec::new();
            for l in lines {
                // The wire is taken out for the line: it answers for the changer.
                let mut wire = std::mem::take(&mut c.wire);
                if let Some(r) = wire.handle(&mut *c, l) {
                    out.extend(r);
                }
                c.wire = wire;
            }
            out
        })
    }
}

/// A simulated MDB coin changer and bridge. Clones share it; it stops when the last
/// clone is dropped.
pub type ChangerSim = Handle<ChangerModel>;

impl ChangerSim {
    /// A changer with no listener: links come through
    /// [`connector`](Handle::connector) or [`attach`](Handle::attach).
    pub fn new(options: ChangerOptions) -> Self {
        Handle::detached(ChangerModel {
            changer: Mutex::new(Changer::new(options)),
        })
    }

    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve every connection.
    pub async fn start(addr: SocketAddr, options: ChangerOptions) -> std::io::Result<Self> {
        Handle::listen(
            addr,
            ChangerModel {
                changer: Mutex::new(Changer::new(options)),
            },
        )
        .await
    }

    fn c(&self) -> MutexGuard<'_, Changer> {
        // Held to answer one line or read the state, never across an await.
        self.model()
            .changer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Put a coin of `coin_type` in; where it went.
    pub fn insert_coin(&self, coin_type: u8) -> CoinRoute {
        self.c().insert(coin_type)
    }

    /// The customer presses the coin return lever (ESCROW REQUEST).
    pub fn press_return(&self) {
        self.c().report(Activity::Status(1));
    }

    /// The next payout jams after `coins` coins (TUBE JAM).
    pub fn jam_next_payout(&self, coins: u32) {
        self.c().jam_after = Some(coins);
    }

    /// A coin jams in the acceptor (COIN JAM): coins are returned until
    /// [`clear_coin_jam`](Self::clear_coin_jam).
    pub fn coin_jam(&self) {
        let mut c = self.c();
        c.coin_jam = true;
        c.report(Activity::Status(12));
    }

    /// A technician clears the coin jam.
    pub fn clear_coin_jam(&self) {
        self.c().coin_jam = false;
    }

    /// Set the coins in a tube.
    pub fn set_tube(&self, coin_type: u8, count: u8) {
        self.c().tubes[usize::from(coin_type & 0x0F)] = count;
    }

    /// Coins in each tube, by coin type.
    pub fn tubes(&self) -> Vec<u8> {
        let c = self.c();
        let n = c.opts.setup.credits.len().min(16);
        c.tubes[..n].to_vec()
    }

    /// Coins in the cash box, by coin type.
    pub fn cash_box(&self) -> Vec<u32> {
        let c = self.c();
        let n = c.opts.setup.credits.len().min(16);
        c.cash_box[..n].to_vec()
    }

    /// Value in minor units of every coin DISPENSE paid so far.
    pub fn paid_out_minor(&self) -> i64 {
        let c = self.c();
        let scale = i64::from(c.opts.setup.scaling);
        c.paid
            .iter()
            .zip(&c.opts.setup.credits)
            .map(|(n, cr)| i64::from(*n) * i64::from(*cr) * scale)
            .sum()
    }

    /// Coins DISPENSE paid so far, by coin type.
    pub fn paid_out(&self) -> Vec<u32> {
        let c = self.c();
        let n = c.opts.setup.credits.len().min(16);
        c.paid[..n].to_vec()
    }

    /// Faults for the next commands of any kind, in order.
    pub fn fault_next(&self, faults: impl IntoIterator<Item = MdbFault>) {
        self.c().wire.faults.extend(faults);
    }

    /// Faults for the next DISPENSEs only, in order.
    pub fn fault_next_dispense(&self, faults: impl IntoIterator<Item = MdbFault>) {
        self.c().wire.money_faults.extend(faults);
    }

    /// The next DISPENSE is carried out, then the bridge goes silent (its answer
    /// lost, and every answer after it) until [`set_silent`](Self::set_silent)
    /// `(false)`.
    pub fn silent_after_next_dispense(&self) {
        self.c().wire.silent_after_money = true;
    }

    /// Answer nothing at all while set (the bridge lost power).
    pub fn set_silent(&self, silent: bool) {
        self.c().wire.silent = silent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::mdb::coin::{parse_activities, parse_tube_status};
    use outpost_peripherals::mdb::protocol::{BridgeReply, host_line, parse_bridge_line};

    fn send(c: &mut Changer, cmd: ChangerCommand) -> Option<BridgeReply> {
        let line = host_line(&cmd.bytes());
        let mut wire = std::mem::take(&mut c.wire);
        let out = wire.handle(c, Ok(line.trim_end().as_bytes().to_vec()));
        c.wire = wire;
        let text = String::from_utf8(out?).unwrap();
        Some(parse_bridge_line(text.trim_end().as_bytes()).unwrap())
    }

    fn data(r: Option<BridgeReply>) -> Vec<u8> {
        match r {
            Some(BridgeReply::Data(d)) => d,
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn coins_route_by_tube_and_enable_and_dispense_empties_the_tube() {
        let mut c = Changer::new(ChangerOptions::euro());
        send(&mut c, ChangerCommand::Reset);
        assert_eq!(
            parse_activities(&data(send(&mut c, ChangerCommand::Poll))).unwrap(),
            [Activity::Status(11)]
        );
        assert_eq!(c.insert(2), CoinRoute::Returned, "not enabled yet");
        send(
            &mut c,
            ChangerCommand::CoinType {
                enable: 0x3F,
                manual: 0,
            },
        );
        assert_eq!(c.insert(2), CoinRoute::Tube);
        assert_eq!(c.insert(0), CoinRoute::CashBox, "5c has no tube");
        c.tubes[3] = 50;
        assert_eq!(c.insert(3), CoinRoute::CashBox, "full tube");
        let acts = parse_activities(&data(send(&mut c, ChangerCommand::Poll))).unwrap();
        assert_eq!(acts.len(), 4);
        let t = parse_tube_status(&data(send(&mut c, ChangerCommand::TubeStatus))).unwrap();
        assert_eq!(t.counts[2], 21);
        assert_eq!(t.full, 1 << 3);
        c.jam_after = Some(2);
        send(
            &mut c,
            ChangerCommand::Dispense {
                coin_type: 1,
                count: 5,
            },
        );
        assert_eq!(c.tubes[1], 18, "jammed after two");
        let acts = parse_activities(&data(send(&mut c, ChangerCommand::Poll))).unwrap();
        assert_eq!(acts, [Activity::Status(2), Activity::Status(7)]);
    }
}

/// `outpost-sim changer`: a euro MDB coin changer behind a serial MDB bridge.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on for the driver.
    #[arg(long, default_value = "127.0.0.1:4004")]
    pub listen: SocketAddr,
    /// Where to listen for control commands (`coin <type>`, `return`, `jam-payout
    /// <coins>`, `coin-jam`, `clear-jam`, `tube <type> <coins>`, `tubes`, `paid`,
    /// `silent on|off`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
}

/// Run one control command and return its answer line.
pub fn control_command(sim: &ChangerSim, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u8>().ok());
    match words.as_slice() {
        ["coin", _] => match num(1) {
            Some(t) if t < 16 => return format!("ok {:?}", sim.insert_coin(t)),
            _ => return "err coin <type 0-15>".into(),
        },
        ["return"] => sim.press_return(),
        ["jam-payout", _] => match num(1) {
            Some(n) => sim.jam_next_payout(u32::from(n)),
            None => return "err jam-payout <coins>".into(),
        },
        ["coin-jam"] => sim.coin_jam(),
        ["clear-jam"] => sim.clear_coin_jam(),
        ["tube", _, _] => match (num(1), num(2)) {
            (Some(t), Some(n)) if t < 16 => sim.set_tube(t, n),
            _ => return "err tube <type 0-15> <coins>".into(),
        },
        ["tubes"] => return format!("ok {:?}", sim.tubes()),
        ["paid"] => return format!("ok {}", sim.paid_out_minor()),
        ["silent", "on"] => sim.set_silent(true),
        ["silent", "off"] => sim.set_silent(false),
        _ => return format!("err unknown command {line:?}"),
    }
    "ok".into()
}

/// Run the simulator until Ctrl-C.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = ChangerSim::start(args.listen, ChangerOptions::euro()).await?;
    println!(
        "MDB coin changer simulator listening on {}",
        sim.local_addr().unwrap_or(args.listen)
    );
    let s = sim.clone();
    super::run_until_ctrl_c(args.control, move |l| control_command(&s, l)).await
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[tokio::test]
    async fn control_commands_script_the_changer() {
        let sim = ChangerSim::new(ChangerOptions::euro());
        assert_eq!(
            control_command(&sim, "coin 1"),
            "ok Returned",
            "not enabled"
        );
        assert_eq!(control_command(&sim, "tube 2 7"), "ok");
        assert_eq!(sim.tubes()[2], 7);
        assert_eq!(control_command(&sim, "paid"), "ok 0");
        assert!(control_command(&sim, "coin 99").starts_with("err"));
        assert!(control_command(&sim, "tube x").starts_with("err"));
        assert!(control_command(&sim, "explode").starts_with("err"));
    }
}
