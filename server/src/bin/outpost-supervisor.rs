//! `outpost-supervisor`: starts `current/outpost` of a releases directory and keeps it
//! running across updates, with the start guard before every start (so a release that
//! crashes, fails its health gate or never passes it is rolled back by itself).
//! `guard` runs the guard alone, for systemd's `ExecStartPre` where systemd restarts
//! the service instead. See docs/updates.md.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use outpost_updater::guard::{self, Decision, Policy};
use outpost_updater::layout::Layout;
use outpost_updater::supervisor::{self, Restart};

#[derive(Parser)]
#[command(
    name = "outpost-supervisor",
    version,
    about = "Starts Outpost from its releases directory and rolls a failed release back."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Options {
    /// The releases directory.
    #[arg(long = "releases", value_name = "DIR", env = "OUTPOST_RELEASES")]
    releases: PathBuf,
    /// Starts of a new release without passing its health gate before it is rolled back.
    #[arg(long, default_value_t = 3)]
    max_starts: u32,
    /// Seconds from the switch to a passed health gate before a rollback.
    #[arg(long, default_value_t = 300)]
    gate_timeout_secs: u64,
}

#[derive(clap::Args)]
struct Listen {
    /// Hold the REST port here and hand it to every server started (LISTEN_FDS), so
    /// checkouts sent while the server restarts for an update wait instead of being
    /// refused.
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Run `current/outpost ARGS` (e.g. `-- serve --config /etc/outpost/outpost.toml`)
    /// until it stops cleanly.
    Run {
        #[command(flatten)]
        options: Options,
        #[command(flatten)]
        listen: Listen,
        /// Arguments for `outpost`.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Run the start guard once and say what starts (systemd's `ExecStartPre`).
    Guard {
        #[command(flatten)]
        options: Options,
    },
}

fn policy(o: &Options) -> Policy {
    Policy {
        max_starts: o.max_starts.max(1),
        gate_timeout: Duration::from_secs(o.gate_timeout_secs.max(1)),
    }
}

/// The REST socket, bound at descriptor 3 (where `LISTEN_FDS` says the first one is)
/// and inherited by every server started.
fn hold(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    use std::os::fd::AsRawFd as _;
    let l = std::net::TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    if l.as_raw_fd() != 3 {
        return Err(format!(
            "the listening socket is descriptor {}, not 3: start the supervisor with only \
             standard input, output and error open",
            l.as_raw_fd()
        ));
    }
    rustix::io::fcntl_setfd(&l, rustix::io::FdFlags::empty())
        .map_err(|e| format!("cannot let the server inherit {addr}: {e}"))?;
    eprintln!("outpost-supervisor: holding {addr} for the server");
    Ok(l)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            options,
            listen,
            args,
        } => {
            let layout = Layout::new(&options.releases);
            // Bound first, so it is the first descriptor after the standard three.
            let held = match listen.listen.map(hold) {
                Some(Ok(l)) => Some(l),
                Some(Err(e)) => {
                    eprintln!("Error: {e}");
                    return std::process::ExitCode::FAILURE;
                }
                None => None,
            };
            let env: &[(&str, &str)] = if held.is_some() {
                &[("LISTEN_FDS", "1")]
            } else {
                &[]
            };
            supervisor::run(&layout, &policy(&options), &Restart::default(), &args, env)
        }
        Command::Guard { options } => {
            let layout = Layout::new(&options.releases);
            guard::before_start(&layout, &policy(&options), outpost_updater::unix_now()).map(|d| {
                match d {
                    Decision::Start(v) => println!("start {v}"),
                    Decision::Probation { to, start } => {
                        println!("start {to} on probation (start {start})")
                    }
                    Decision::RolledBack {
                        failed,
                        back,
                        reason,
                    } => println!("rolled back {failed} to {back}: {reason}"),
                }
                0
            })
        }
    };
    match result {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
