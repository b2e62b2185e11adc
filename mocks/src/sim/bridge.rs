//! What the coin changer and bill validator simulators share: the MDB bridge's
//! line framing and its wire faults in front of a simulated peripheral.

use std::collections::VecDeque;

use outpost_peripherals::mdb::protocol::{BridgeReply, MAX_LINE, parse_host_line};
use outpost_peripherals::transport::LineFramer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handle::{Handle, Model, WeakHandle};
pub use super::mdb::MdbFault;

/// A simulated MDB peripheral behind the bridge.
pub(crate) trait Peripheral {
    /// Carry out one command block: `Ok(None)` is a plain ACK, `Ok(Some)` data;
    /// `Err(())` a block the peripheral does not know (the bus stays silent).
    fn execute(&mut self, block: &[u8]) -> Result<Option<Vec<u8>>, ()>;
    /// Whether the block is the peripheral's POLL (where unACKed data is repeated).
    fn is_poll(&self, block: &[u8]) -> bool;
    /// Whether the block is the peripheral's RESET (which forgets unACKed data).
    fn is_reset(&self, block: &[u8]) -> bool;
    /// Whether the block is a command whose own faults are queued apart (the
    /// money-moving one: DISPENSE, ESCROW).
    fn is_money(&self, block: &[u8]) -> bool;
}

/// The bridge in front of a peripheral: its queued faults and the data the host
/// never ACKed.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    pub(crate) faults: VecDeque<MdbFault>,
    pub(crate) money_faults: VecDeque<MdbFault>,
    unacked: Option<Vec<u8>>,
    pub(crate) silent: bool,
    /// The next money command is carried out, then the bridge goes silent (its
    /// answer lost too).
    pub(crate) silent_after_money: bool,
    pub(crate) commands: u64,
}

impl Wire {
    /// The bridge's reply line to one host line, or nothing (silence).
    pub(crate) fn handle(
        &mut self,
        dev: &mut impl Peripheral,
        line: Result<Vec<u8>, ()>,
    ) -> Option<Vec<u8>> {
        self.commands += 1;
        if self.silent {
            return None;
        }
        let Some(block) = line.ok().and_then(|l| parse_host_line(&l).ok()) else {
            return Some(BridgeReply::NoResponse.line().into_bytes());
        };
        let money = dev.is_money(&block);
        if money && std::mem::take(&mut self.silent_after_money) {
            let _ = dev.execute(&block);
            self.silent = true;
            return None;
        }
        let fault = if money {
            self.money_faults
                .pop_front()
                .or_else(|| self.faults.pop_front())
        } else {
            self.faults.pop_front()
        };
        let mut run = |w: &mut Wire| -> Result<Option<Vec<u8>>, ()> {
            if dev.is_poll(&block)
                && let Some(d) = w.unacked.take()
            {
                return Ok(Some(d));
            }
            if dev.is_reset(&block) {
                w.unacked = None;
            }
            dev.execute(&block)
        };
        let reply = |r: Option<Vec<u8>>| match r {
            None => BridgeReply::Ack,
            Some(d) => BridgeReply::Data(d),
        };
        match fault {
            None => match run(self) {
                Ok(r) => Some(reply(r).line().into_bytes()),
                Err(()) => Some(BridgeReply::NoResponse.line().into_bytes()),
            },
            Some(MdbFault::Swallow) => None,
            Some(MdbFault::Nak) => Some(BridgeReply::Nak.line().into_bytes()),
            Some(MdbFault::LoseReply) => {
                if let Ok(Some(d)) = run(self) {
                    self.unacked = Some(d);
                }
                None
            }
            Some(MdbFault::NoResponse) => {
                if let Ok(Some(d)) = run(self) {
                    self.unacked = Some(d);
                }
                Some(BridgeReply::NoResponse.line().into_bytes())
            }
            Some(MdbFault::Garbage(g)) => {
                if let Ok(Some(d)) = run(self) {
                    self.unacked = Some(d);
                }
                Some(g)
            }
        }
    }
}

/// Serve one link: frame host lines, answer each through `answer` (which holds the
/// model's lock only for that line), write the replies.
pub(crate) async fn serve_lines<M, S, F>(sim: WeakHandle<M>, mut stream: S, answer: F)
where
    M: Model,
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: Fn(&Handle<M>, Vec<Result<Vec<u8>, ()>>) -> Vec<u8> + Send,
{
    let mut framer = LineFramer::new(MAX_LINE);
    let mut buf = [0u8; 256];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(sim) = sim.upgrade() else { return };
        let lines = framer
            .feed(&buf[..n])
            .into_iter()
            .map(|l| l.map_err(|_| ()))
            .collect();
        let out = answer(&sim, lines);
        drop(sim);
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
