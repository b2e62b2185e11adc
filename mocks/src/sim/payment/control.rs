//! The bench: `outpost-sim payment`'s arguments, and the control channel that
//! scripts a running simulator.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{Mode, PaymentSim, SimOptions};

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
        "wallet" if !rest.is_empty() && !rest.contains(' ') => {
            sim.set_wallet(rest);
            "ok".into()
        }
        "card" if !rest.is_empty() && !rest.contains(' ') => {
            sim.set_card(rest);
            "ok".into()
        }
        "host" => match rest {
            "down" => {
                sim.set_host_reachable(false);
                "ok".into()
            }
            "up" => format!("ok {}", sim.set_host_reachable(true)),
            _ => "err host up or host down".into(),
        },
        "stored" => format!("ok {}", sim.stored().len()),
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
