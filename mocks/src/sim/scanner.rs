//! A wire-level serial barcode scanner: sends scans as terminated lines with AIM
//! symbology identifiers to every connected driver, over TCP or an in-memory pipe,
//! and can be told to send garbage, over-long or cut-off frames, or drop the link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, watch};

use super::handle::{Handle, Model, Serve, WeakHandle};

/// What the scanner sends to its links.
#[derive(Debug, Clone)]
enum Out {
    Bytes(Vec<u8>),
    Drop,
}

/// The simulated scanner behind a [`ScannerSim`]: what it sends, to how many links.
#[derive(Debug)]
pub struct ScannerModel {
    tx: broadcast::Sender<Out>,
    connected: watch::Sender<usize>,
    frames: AtomicU64,
}

impl ScannerModel {
    fn new() -> Self {
        let (tx, _) = broadcast::channel(256);
        Self {
            tx,
            connected: watch::channel(0).0,
            frames: AtomicU64::new(0),
        }
    }
}

impl Drop for ScannerModel {
    fn drop(&mut self) {
        // Ends every link task at its next select.
        let _ = self.tx.send(Out::Drop);
    }
}

impl Model for ScannerModel {
    type Addr = Option<SocketAddr>;
    const NAME: &'static str = "ScannerSim";
}

impl Serve for ScannerModel {
    const PIPE_CAPACITY: usize = 4096;

    fn serve<S>(sim: WeakHandle<Self>, stream: S) -> impl Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Subscribed and counted now, before the task runs, so a scan sent right
        // after attaching reaches this link.
        let rx = sim.upgrade().map(|s| {
            s.model().connected.send_modify(|n| *n += 1);
            s.model().tx.subscribe()
        });
        async move {
            if let Some(rx) = rx {
                link(sim, rx, stream).await;
            }
        }
    }
}

/// A simulated scanner. Clones share it; it stops when the last clone is dropped.
/// [`local_addr`](Handle::local_addr) is where it listens when started with
/// [`start`](Self::start); [`attach`](Handle::attach) and
/// [`connector`](Handle::connector) plug in other links.
pub type ScannerSim = Handle<ScannerModel>;

impl Default for ScannerSim {
    fn default() -> Self {
        Self::new()
    }
}

impl ScannerSim {
    /// A scanner with no listener: links come through [`attach`](Handle::attach) or
    /// [`connector`](Handle::connector).
    pub fn new() -> Self {
        Handle::detached(ScannerModel::new())
    }

    /// Bind `addr` (use `127.0.0.1:0` in tests) and serve every connection.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Handle::listen(addr, ScannerModel::new()).await
    }

    /// Wait until at least `n` links are up, at most `limit`.
    pub async fn wait_connected(&self, n: usize, limit: Duration) -> bool {
        let mut rx = self.model().connected.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Links up now.
    pub fn connected(&self) -> usize {
        *self.model().connected.borrow()
    }

    /// Send a scan: `aim` is the identifier (`]E0`, or empty for none), then the
    /// data and CR LF.
    pub fn scan(&self, aim: &str, data: &str) {
        self.send_raw(format!("{aim}{data}\r\n").as_bytes());
    }

    /// Send bytes as they are: garbage, a frame without terminator, half a frame.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.model().frames.fetch_add(1, Ordering::Relaxed);
        let _ = self.model().tx.send(Out::Bytes(bytes.to_vec()));
    }

    /// Close every link, as if the cable were pulled.
    pub fn drop_connections(&self) {
        let _ = self.model().tx.send(Out::Drop);
    }

    /// Sends made so far.
    pub fn sent(&self) -> u64 {
        self.model().frames.load(Ordering::Relaxed)
    }
}

async fn link<S>(sim: WeakHandle<ScannerModel>, mut rx: broadcast::Receiver<Out>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut r, mut w) = tokio::io::split(stream);
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Ok(Out::Bytes(b)) => {
                    if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                        break;
                    }
                }
                Ok(Out::Drop) | Err(broadcast::error::RecvError::Closed) => break,
                // A link that fell behind loses scans, as a real one would.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
            },
            // A scanner ignores what it is sent; reading notices a closed link.
            n = r.read(&mut sink) => if matches!(n, Ok(0) | Err(_)) { break },
        }
    }
    if let Some(s) = sim.upgrade() {
        s.model()
            .connected
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// `outpost-sim scanner`: a serial barcode scanner behind a serial-to-IP converter.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on for the driver.
    #[arg(long, default_value = "127.0.0.1:4001")]
    pub listen: SocketAddr,
    /// Where to listen for control commands (`scan ]E04006381333931`, `raw <hex>`,
    /// `drop`; see `docs/devices-serial.md`).
    #[arg(long)]
    pub control: Option<SocketAddr>,
}

/// Run one control command and return its answer line.
pub fn control_command(sim: &ScannerSim, line: &str) -> String {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "scan" if !rest.is_empty() => {
            sim.send_raw(format!("{rest}\r\n").as_bytes());
            "ok".into()
        }
        "raw" => match hex_bytes(rest.trim()) {
            Some(b) => {
                sim.send_raw(&b);
                "ok".into()
            }
            None => "err raw needs hex bytes".into(),
        },
        "drop" => {
            sim.drop_connections();
            "ok".into()
        }
        "status" => format!("ok connected={} sent={}", sim.connected(), sim.sent()),
        _ => format!("err unknown command {line:?}"),
    }
}

/// Hex digits (spaces allowed) to bytes.
pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Run the simulator until Ctrl-C.
pub async fn run(args: Args) -> std::io::Result<()> {
    let sim = ScannerSim::start(args.listen).await?;
    println!(
        "Barcode scanner simulator listening on {}",
        sim.local_addr().unwrap_or(args.listen)
    );
    let s = sim.clone();
    super::run_until_ctrl_c(args.control, move |l| control_command(&s, l)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn control_commands_drive_the_scanner() {
        let sim = ScannerSim::new();
        assert_eq!(control_command(&sim, "scan ]E04006381333931"), "ok");
        assert_eq!(control_command(&sim, "raw ff 00 0d 0a"), "ok");
        assert!(control_command(&sim, "raw f").starts_with("err"));
        assert!(control_command(&sim, "jump").starts_with("err"));
        assert_eq!(control_command(&sim, "status"), "ok connected=0 sent=2");
        assert_eq!(hex_bytes("0D0a"), Some(vec![13, 10]));
    }
}
