//! A wire-level MT-SICS scale: answers `SI`, `S`, `Z`, `I2`, `I4` (and `ES` to
//! anything else) over TCP or an in-memory pipe, with a load that can be placed,
//! left moving for a number of readings, overloaded, or answered with garbage, a lost
//! reply or silence.
//!
//! # Model
//! - Weights are kept in milligrams and reported in grams with two decimals.
//! - Readings while the load moves (after [`ScaleSim::place`] with settling
//!   readings, or [`ScaleSim::set_unstable`]) are `S D` with a small wobble; each
//!   weight command counts one reading towards settling.
//! - `S` when moving answers `S I`: the simulated scale's own stability timeout is
//!   immediate, so a test never waits on it.
//! - Above capacity a weight command answers `S +`; below minus 2% of capacity
//!   `S -`. `Z` zeroes within ±2% of capacity (`Z +`/`Z -` beyond), `Z I` while
//!   moving.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use outpost_peripherals::sics::MAX_LINE;
use outpost_peripherals::transport::LineFramer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handle::{Handle, Model, Serve, WeakHandle};

/// A fault for the next command's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleFault {
    /// Carry the command out and send nothing back.
    LoseReply,
    /// Send these bytes instead of the reply (garbage, a malformed weight).
    Garbage(Vec<u8>),
    /// Close the connection instead of answering.
    Drop,
}

/// How the simulated scale starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleOptions {
    /// Capacity in grams.
    pub capacity_g: i64,
    /// Model, answered to `I2`.
    pub model: String,
    /// Serial number, answered to `I4`.
    pub serial: String,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            capacity_g: 6_000,
            model: "Outpost SICS simulator 6000 g".into(),
            serial: "SIM0000001".into(),
        }
    }
}

/// Counters of what the simulator saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScaleCounters {
    /// Commands received.
    pub commands: u64,
    /// Weight replies sent (stable or moving).
    pub readings: u64,
    /// Zeroings carried out.
    pub zeroings: u64,
    /// Lines answered `ES` or `ET`.
    pub errors: u64,
}

#[derive(Debug)]
struct State {
    opts: ScaleOptions,
    gross_mg: i64,
    zero_mg: i64,
    moving: u32,
    faults: VecDeque<ScaleFault>,
    silent: bool,
    counters: ScaleCounters,
}

impl State {
    fn range_mg(&self) -> i64 {
        self.opts.capacity_g * 1000 / 50
    }

    fn weight_line(&mut self, settle_only: bool) -> String {
        let capacity = self.opts.capacity_g * 1000;
        if self.gross_mg > capacity {
            return "S +".into();
        }
        if self.gross_mg < -self.range_mg() {
            return "S -".into();
        }
        let moving = self.moving > 0;
        self.moving = self.moving.saturating_sub(1);
        if moving && settle_only {
            return "S I".into();
        }
        self.counters.readings += 1;
        let wobble = if moving {
            (i64::from(self.moving % 3) - 1) * 1_370
        } else {
            0
        };
        let net = self.gross_mg - self.zero_mg + wobble;
        let sign = if net < 0 { "-" } else { "" };
        let abs = net.abs();
        let value = format!("{sign}{}.{:02}", abs / 1000, (abs % 1000) / 10);
        format!("S {} {value:>10} g", if moving { 'D' } else { 'S' })
    }

    fn answer(&mut self, line: &[u8]) -> String {
        self.counters.commands += 1;
        match line {
            b"SI" => self.weight_line(false),
            b"S" => self.weight_line(true),
            b"Z" => {
                let offset = self.gross_mg;
                if self.moving > 0 {
                    self.moving -= 1;
                    "Z I".into()
                } else if offset > self.range_mg() {
                    "Z +".into()
                } else if offset < -self.range_mg() {
                    "Z -".into()
                } else {
                    self.zero_mg = offset;
                    self.counters.zeroings += 1;
                    "Z A".into()
                }
            }
            b"I2" => format!("I2 A \"{}\"", self.opts.model),
            b"I4" => format!("I4 A \"{}\"", self.opts.serial),
            _ => {
                self.counters.errors += 1;
                "ES".into()
            }
        }
    }
}

/// The simulated scale behind a [`ScaleSim`]: its load, queued faults and counters.
pub struct ScaleModel {
    state: Mutex<State>,
}

impl ScaleModel {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Held to answer one line or change the load, never across an await.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Model for ScaleModel {
    type Addr = Option<SocketAddr>;
    const NAME: &'static str = "ScaleSim";
}

impl Serve for ScaleModel {
    const PIPE_CAPACITY: usize = 1024;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve(sim, stream)
    }
}

/// A simulated MT-SICS scale. Clones share it; it stops when the last clone is
/// dropped. [`local_addr`](Handle::local_addr) is where it listens when started with
/// [`start`](Self::start); [`attach`](Handle::attach) and
/// [`connector`](Handle::connector) plug in other links.
pub type ScaleSim = Handle<ScaleModel>;

impl ScaleSim {
    /// A scale with no listener: links come through [`attach`](Handle::attach) or
    /// [`connector`](Handle::connector).
    pub fn new(options: ScaleOptions) -> Self {
        Handle::detached(ScaleModel {
            state: Mutex::new(State::new(options)),
        })
    }

    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve every connection.
    pub async fn start(addr: SocketAddr, options: ScaleOptions) -> std::io::Result<Self> {
        let model = ScaleModel {
            state: Mutex::new(State::new(options)),
        };
        Handle::listen(addr, model).await
    }

    fn s(&self) -> MutexGuard<'_, State> {
        self.model().lock()
    }

    /// Put `grams` on the pan (gross); it moves for `settle_readings` readings.
    pub fn place(&self, grams: i64, settle_readings: u32) {
        let mut s = self.s();
        s.gross_mg = grams * 1000;
        s.moving = settle_readings;
    }

    /// Keep the load moving for the next `readings` readings (0: settle now).
    pub fn set_unstable(&self, readings: u32) {
        self.s().moving = readings;
    }

    /// Queue faults for the next replies, in order.
    pub fn fault_next(&self, faults: impl IntoIterator<Item = ScaleFault>) {
        self.s().faults.extend(faults);
    }

    /// Answer nothing at all while set.
    pub fn set_silent(&self, silent: bool) {
        self.s().silent = silent;
    }

    /// What it saw.
    pub fn counters(&self) -> ScaleCounters {
        self.s().counters
    }
}

impl State {
    fn new(opts: ScaleOptions) -> Self {
        Self {
            opts,
            gross_mg: 0,
            zero_mg: 0,
            moving: 0,
            faults: VecDeque::new(),
            silent: false,
            counters: ScaleCounters::default(),
        }
    }
}

async fn serve<S>(sim: WeakHandle<ScaleModel>, mut stream: S)
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
        let mut out: Vec<u8> = Vec::new();
        let mut drop_now = false;
        {
            let mut s = sim.s();
            for line in framer.feed(&buf[..n]) {
                let reply = match line {
                    Ok(l) => s.answer(&l),
                    Err(_) => {
                        s.counters.errors += 1;
                        "ET".into()
                    }
                };
                if s.silent {
                    continue;
                }
                match s.faults.pop_front() {
                    None => {
                        out.extend(reply.as_bytes());
                        out.extend(b"\r\n");
                    }
                    Some(ScaleFault::LoseReply) => {}
                    Some(ScaleFault::Garbage(g)) => out.extend(g),
                    Some(ScaleFault::Drop) => {
                        drop_now = true;
                        break;
                    }
                }
            }
        }
        drop(sim);
        if drop_now {
            return;
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_peripherals::scale::WeightReading;
    use outpost_peripherals::sics::{SicsReply, parse_reply};

    fn ask(s: &mut State, cmd: &[u8]) -> SicsReply {
        let line = s.answer(cmd);
        parse_reply(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn readings_move_then_settle_and_the_limits_answer() {
        let mut s = State::new(ScaleOptions::default());
        s.gross_mg = 1_234_560;
        s.moving = 2;
        assert!(matches!(
            ask(&mut s, b"SI"),
            SicsReply::Weight(WeightReading { stable: false, .. })
        ));
        assert_eq!(ask(&mut s, b"S"), SicsReply::WeightNotExecutable);
        assert_eq!(
            ask(&mut s, b"SI"),
            SicsReply::Weight(WeightReading {
                grams: 1235,
                stable: true
            })
        );
        s.gross_mg = 7_000_000;
        assert_eq!(ask(&mut s, b"SI"), SicsReply::Overload);
        assert_eq!(ask(&mut s, b"Z"), SicsReply::ZeroOutOfRange { above: true });
        s.gross_mg = -500_000;
        assert_eq!(ask(&mut s, b"S"), SicsReply::Underload);
        s.gross_mg = 50_000;
        assert_eq!(ask(&mut s, b"Z"), SicsReply::Zeroed);
        assert_eq!(
            ask(&mut s, b"SI"),
            SicsReply::Weight(WeightReading {
                grams: 0,
                stable: true
            })
        );
        assert_eq!(s.answer(b"XYZ"), "ES");
    }
}

/// `outpost-sim scale`: an MT-SICS scale behind a serial-to-IP converter.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on for the driver.
    #[arg(long, default_value = "127.0.0.1:4002")]
    pub listen: SocketAddr,
    /// Where to listen for control commands (`place 1234 5`, `unstable 10`, `lose`,
    /// `garbage <text>`, `drop`, `silent on|off`, `counters`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
    /// Capacity in grams.
    #[arg(long, default_value_t = 6_000)]
    pub capacity_g: i64,
}

/// Run one control command and return its answer line.
pub fn control_command(sim: &ScaleSim, line: &str) -> String {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let num = |w: Option<&str>| w.and_then(|s| s.parse::<i64>().ok());
    match verb {
        "place" => match (num(words.next()), words.next()) {
            (Some(g), None) => {
                sim.place(g, 0);
                "ok".into()
            }
            (Some(g), Some(n)) => match n.parse::<u32>() {
                Ok(n) => {
                    sim.place(g, n);
                    "ok".into()
                }
                Err(_) => "err settle readings must be a count".into(),
            },
            _ => "err place <grams> [settle readings]".into(),
        },
        "unstable" => match words.next().and_then(|s| s.parse::<u32>().ok()) {
            Some(n) => {
                sim.set_unstable(n);
                "ok".into()
            }
            None => "err unstable <readings>".into(),
        },
        "lose" => {
            sim.fault_next([ScaleFault::LoseReply]);
            "ok".into()
        }
        "garbage" => {
            let text = line.strip_prefix("garbage").unwrap_or("").trim();
            sim.fault_next([ScaleFault::Garbage(format!("{text}\r\n").into_bytes())]);
            "ok".into()
        }
        "drop" => {
            sim.fault_next([ScaleFault::Drop]);
            "ok".into()
        }
        "silent" => match words.next() {
            Some("on") => {
                sim.set_silent(true);
                "ok".into()
            }
            Some("off") => {
                sim.set_silent(false);
                "ok".into()
            }
            _ => "err silent on|off".into(),
        },
        "counters" => format!("ok {:?}", sim.counters()),
        _ => format!("err unknown command {line:?}"),
    }
}

/// Run the simulator until Ctrl-C.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = ScaleSim::start(
        args.listen,
        ScaleOptions {
            capacity_g: args.capacity_g,
            ..ScaleOptions::default()
        },
    )
    .await?;
    println!(
        "MT-SICS scale simulator listening on {}",
        sim.local_addr().unwrap_or(args.listen)
    );
    let s = sim.clone();
    super::run_until_ctrl_c(args.control, move |l| control_command(&s, l)).await
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[tokio::test]
    async fn control_commands_drive_the_scale() {
        let sim = ScaleSim::new(ScaleOptions::default());
        assert_eq!(control_command(&sim, "place 1234 3"), "ok");
        assert_eq!(sim.s().moving, 3);
        assert_eq!(control_command(&sim, "unstable 9"), "ok");
        assert_eq!(control_command(&sim, "garbage S S 1,0 g"), "ok");
        assert_eq!(
            sim.s().faults.back(),
            Some(&ScaleFault::Garbage(b"S S 1,0 g\r\n".to_vec()))
        );
        assert!(control_command(&sim, "place heavy").starts_with("err"));
        assert!(control_command(&sim, "silent maybe").starts_with("err"));
        assert!(control_command(&sim, "counters").starts_with("ok"));
    }
}
