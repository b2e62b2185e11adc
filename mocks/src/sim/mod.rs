//! Wire-level device simulators: real drivers are tested against them, and a
//! technician runs them on a bench through `outpost-sim`.
//!
//! - [`escpos`]: an ESC/POS receipt printer on TCP.
//! - [`payment`]: a nexo-style payment terminal on TCP ([`PaymentSim`]).
//! - [`scanner`]: a serial barcode scanner ([`ScannerSim`]), over TCP or in memory.
//! - [`scale`]: an MT-SICS scale ([`ScaleSim`]), over TCP or in memory.
//! - [`mdb`]: an MDB cashless reader behind a serial bridge ([`MdbSim`]).

pub mod escpos;
pub mod mdb;
pub mod payment;
pub mod scale;
pub mod scanner;

pub use mdb::MdbSim;
pub use payment::PaymentSim;
pub use scale::ScaleSim;
pub use scanner::ScannerSim;

/// Accept every connection on `listener` and hand it to `attach`, for as long as the
/// simulator behind `weak` lives (the simulators' shared TCP listener).
fn accept_links<T: Send + Sync + 'static>(
    listener: tokio::net::TcpListener,
    weak: std::sync::Weak<T>,
    attach: fn(std::sync::Arc<T>, tokio::net::TcpStream),
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let Some(inner) = weak.upgrade() else { return };
            attach(inner, stream);
        }
    })
}

/// An in-memory connector whose every connect is a new link to the simulator behind
/// `weak`, handed to `attach`; refused once the simulator is gone.
fn link_connector<T: Send + Sync + 'static>(
    name: &str,
    capacity: usize,
    weak: std::sync::Weak<T>,
    attach: fn(std::sync::Arc<T>, tokio::io::DuplexStream),
) -> outpost_peripherals::transport::DuplexConnector {
    outpost_peripherals::transport::DuplexConnector::new(
        name,
        capacity,
        std::sync::Arc::new(move |far| match weak.upgrade() {
            Some(inner) => {
                attach(inner, far);
                Ok(())
            }
            None => Err(std::io::ErrorKind::ConnectionRefused.into()),
        }),
    )
}

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
