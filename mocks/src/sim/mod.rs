//! Wire-level device simulators: real drivers are tested against them, and a
//! technician runs them on a bench through `outpost-sim`.
//!
//! - [`escpos`]: an ESC/POS receipt printer on TCP.
//! - [`payment`]: a nexo-style payment terminal on TCP ([`PaymentSim`]).
//! - [`scanner`]: a serial barcode scanner ([`ScannerSim`]), over TCP or in memory.
//! - [`scale`]: an MT-SICS scale ([`ScaleSim`]), over TCP or in memory.
//! - [`mdb`]: an MDB cashless reader behind a serial bridge ([`MdbSim`]).
//! - [`changer`]: an MDB coin changer behind a serial bridge ([`ChangerSim`]).
//! - [`validator`]: an MDB bill validator with escrow behind a serial bridge
//!   ([`ValidatorSim`]).
//! - `bridge` (private): the bridge's framing and wire faults the changer and
//!   validator simulators share.
//! - [`spiral`]: a spiral-motor vending board speaking OSB/1 ([`SpiralSim`]).
//! - [`handle`]: [`Handle`], what starting any of them gives back (where it listens,
//!   `attach` and `connector` for more links, `shutdown`, stop on last drop); each
//!   simulator's handle type is `Handle` of its model.

mod bridge;
pub mod changer;
pub mod escpos;
pub mod handle;
pub mod mdb;
pub mod payment;
pub mod scale;
pub mod scanner;
pub mod spiral;
pub mod validator;

pub use changer::ChangerSim;
pub use handle::Handle;
pub use mdb::MdbSim;
pub use payment::PaymentSim;
pub use scale::ScaleSim;
pub use scanner::ScannerSim;
pub use spiral::SpiralSim;
pub use validator::ValidatorSim;

/// The longest control line accepted.
const MAX_CONTROL_LINE: usize = 256;

/// Serve a bench control channel: one command per line, one answer line each, from
/// `handle`. Connections are served one at a time, which is all a bench needs.
pub async fn serve_control<F>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(&str) -> String,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    while let Ok((stream, _)) = listener.accept().await {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(64 * 1024)).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let answer = if line.len() > MAX_CONTROL_LINE {
                "err line too long".to_owned()
            } else {
                handle(line.trim())
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

/// Run a simulator's control channel (when `control` is set) until Ctrl-C.
async fn run_until_ctrl_c<F>(
    control: Option<std::net::SocketAddr>,
    handle: F,
) -> std::io::Result<()>
where
    F: Fn(&str) -> String + Send + 'static,
{
    let task = match control {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("Control channel on {}", listener.local_addr()?);
            Some(tokio::spawn(serve_control(listener, handle)))
        }
        None => None,
    };
    let r = tokio::signal::ctrl_c().await;
    if let Some(t) = task {
        t.abort();
    }
    r
}
