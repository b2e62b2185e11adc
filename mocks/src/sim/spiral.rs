//! A wire-level spiral-motor vending board speaking OSB/1
//! (`outpost_peripherals::spiral`), over TCP or an in-memory pipe.
//!
//! # Model
//! - Slots hold units; `VEND` on a stocked slot drops one (`DROP`), on an empty one
//!   turns the spiral for nothing (`NODROP`). A slot can be set to jam (`JAM`) or to
//!   hold its product back (`NODROP`: the drop sensor sees nothing) for its next vends.
//! - Every key's outcome is remembered (the board's non-volatile journal, which
//!   survives its links and the host's restarts): `STATUS` answers from it, and a
//!   used key is `REFUSED`.
//! - Faults for the next `VEND`: the reply lost after the motor ran (the host times
//!   out; `STATUS` says what happened), or the command swallowed before the motor
//!   ran (the host times out; `STATUS` says `UNKNOWN`).
//! - [`SpiralSim::dispensed`] counts real drops per key, so tests can check that no key
//!   dropped twice.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use outpost_peripherals::spiral::{Command, MAX_LINE, parse_command};
use outpost_peripherals::transport::LineFramer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handle::{Handle, Model, Serve, WeakHandle};

/// What the next `VEND` does beyond its normal work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiralFault {
    /// Run the motor, then lose the reply.
    LoseReply,
    /// Lose the command before the motor runs (power cut at the board).
    Swallow,
}

/// What a slot does on its next vends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotTrouble {
    /// The motor stalls.
    Jam,
    /// The spiral turns and the product hangs (the drop sensor sees nothing).
    Hang,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    Drop,
    NoDrop(String),
    Jam(String),
}

#[derive(Debug, Default)]
struct Board {
    trays: u8,
    columns: u8,
    stock: BTreeMap<String, u32>,
    trouble: HashMap<String, VecDeque<SlotTrouble>>,
    outcomes: HashMap<String, Done>,
    dropped: HashMap<String, u32>,
    faults: VecDeque<SpiralFault>,
    commands: u64,
}

/// The board behind a [`SpiralSim`].
#[derive(Debug)]
pub struct SpiralModel {
    board: Mutex<Board>,
}

impl Model for SpiralModel {
    type Addr = Option<SocketAddr>;
    const NAME: &'static str = "SpiralSim";
}

impl Serve for SpiralModel {
    const PIPE_CAPACITY: usize = 1024;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        serve(sim, stream)
    }
}

/// A simulated spiral board. Clones share it; it stops when the last clone is dropped.
pub type SpiralSim = Handle<SpiralModel>;

impl SpiralSim {
    /// A board of `trays` x `columns` with `stock` units per slot, with no listener.
    pub fn new(trays: u8, columns: u8, stock: &[(&str, u32)]) -> Self {
        Handle::detached(Self::board_of(trays, columns, stock))
    }

    /// The same, listening on `addr` (use `127.0.0.1:0` in tests).
    pub async fn start(
        addr: SocketAddr,
        trays: u8,
        columns: u8,
        stock: &[(&str, u32)],
    ) -> std::io::Result<Self> {
        Handle::listen(addr, Self::board_of(trays, columns, stock)).await
    }

    fn board_of(trays: u8, columns: u8, stock: &[(&str, u32)]) -> SpiralModel {
        SpiralModel {
            board: Mutex::new(Board {
                trays,
                columns,
                stock: stock.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect(),
                ..Board::default()
            }),
        }
    }

    fn b(&self) -> MutexGuard<'_, Board> {
        // Held to answer one line or read a count, never across an await.
        self.model().board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put `units` into `slot`.
    pub fn refill(&self, slot: &str, units: u32) {
        *self.b().stock.entry(slot.to_owned()).or_default() += units;
    }

    /// Units left in `slot`.
    pub fn stock(&self, slot: &str) -> u32 {
        self.b().stock.get(slot).copied().unwrap_or(0)
    }

    /// Trouble for the next vends of `slot`, in order.
    pub fn trouble(&self, slot: &str, t: impl IntoIterator<Item = SlotTrouble>) {
        self.b()
            .trouble
            .entry(slot.to_owned())
            .or_default()
            .extend(t);
    }

    /// Faults for the next `VEND`s, in order.
    pub fn fault_next(&self, f: impl IntoIterator<Item = SpiralFault>) {
        self.b().faults.extend(f);
    }

    /// Products that really dropped under `key`.
    pub fn dispensed(&self, key: &str) -> u32 {
        self.b().dropped.get(key).copied().unwrap_or(0)
    }

    /// Products dropped under every key.
    pub fn dispensed_total(&self) -> u32 {
        self.b().dropped.values().sum()
    }

    /// Commands received.
    pub fn commands(&self) -> u64 {
        self.b().commands
    }
}

fn reply(key: &str, d: &Done) -> String {
    match d {
        Done::Drop => format!("DROP {key}"),
        Done::NoDrop(r) => format!("NODROP {key} {r}"),
        Done::Jam(r) => format!("JAM {key} {r}"),
    }
}

impl Board {
    /// The reply to one line; `None` when it is lost.
    fn answer(&mut self, line: &[u8]) -> Option<String> {
        self.commands += 1;
        let cmd = match parse_command(line) {
            Ok(c) => c,
            // The board has no error reply of its own: it refuses under key `-`.
            Err(e) => return Some(format!("REFUSED - {e}")),
        };
        match cmd {
            Command::Hello => Some(format!("HELLO OSB/1 {} {}", self.trays, self.columns)),
            Command::Status { key } => Some(match self.outcomes.get(&key) {
                Some(d) => reply(&key, d),
                None => format!("UNKNOWN {key}"),
            }),
            Command::Vend { key, slot } => {
                if self.outcomes.contains_key(&key) {
                    return Some(format!("REFUSED {key} used"));
                }
                if !self.stock.contains_key(&slot) {
                    return Some(format!("REFUSED {key} no slot {slot}"));
                }
                let fault = self.faults.pop_front();
                if fault == Some(SpiralFault::Swallow) {
                    return None;
                }
                let trouble = self.trouble.get_mut(&slot).and_then(VecDeque::pop_front);
                let left = self.stock.get(&slot).copied().unwrap_or(0);
                let done = match trouble {
                    Some(SlotTrouble::Jam) => Done::Jam("motor stalled".into()),
                    Some(SlotTrouble::Hang) => Done::NoDrop("product hanging".into()),
                    None if left == 0 => Done::NoDrop("spiral empty".into()),
                    None => {
                        self.stock.insert(slot, left - 1);
                        *self.dropped.entry(key.clone()).or_default() += 1;
                        Done::Drop
                    }
                };
                let r = reply(&key, &done);
                self.outcomes.insert(key, done);
                (fault != Some(SpiralFault::LoseReply)).then_some(r)
            }
        }
    }
}

async fn serve<S>(sim: WeakHandle<SpiralModel>, mut stream: S)
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
        let mut out = Vec::new();
        {
            let mut b = sim.b();
            for line in framer.feed(&buf[..n]) {
                let r = match line {
                    Ok(l) => b.answer(&l),
                    Err(_) => Some("REFUSED - line too long".into()),
                };
                if let Some(r) = r {
                    out.extend(r.as_bytes());
                    out.extend(b"\r\n");
                }
            }
        }
        drop(sim);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_drops_once_and_its_status_tells_the_truth() {
        let sim = SpiralSim::new(6, 8, &[("A1", 1), ("A2", 0)]);
        let mut b = sim.b();
        assert_eq!(b.answer(b"VEND k1 A1").unwrap(), "DROP k1");
        assert_eq!(b.answer(b"VEND k1 A1").unwrap(), "REFUSED k1 used");
        assert_eq!(b.answer(b"VEND k2 A1").unwrap(), "NODROP k2 spiral empty");
        assert_eq!(b.answer(b"STATUS k1").unwrap(), "DROP k1");
        assert_eq!(b.answer(b"STATUS k9").unwrap(), "UNKNOWN k9");
        assert_eq!(b.answer(b"VEND k3 C1").unwrap(), "REFUSED k3 no slot C1");
        assert!(b.answer(b"VEND k3").unwrap().starts_with("REFUSED -"));
        assert_eq!(b.dropped.get("k1"), Some(&1));
    }
}
