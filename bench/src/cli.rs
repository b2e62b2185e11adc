//! The command-line options and the scenarios they name.

use clap::{Parser, ValueEnum};

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "outpost-load",
    version,
    about = "HTTP load generator for the Outpost store server"
)]
pub(crate) struct Cli {
    /// Base URL of the server (plain http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub(crate) url: String,
    /// What to load.
    #[arg(long, value_enum, default_value_t = Scenario::Sku)]
    pub(crate) scenario: Scenario,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub(crate) connections: usize,
    /// Seconds recorded.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) duration: u64,
    /// Seconds of load before recording starts (not recorded).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub(crate) warmup: u64,
    /// How many products to sample from the catalog for SKUs and barcodes.
    #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000_000))]
    pub(crate) sample: usize,
    /// Tokio worker threads for the client (1 = a current-thread runtime).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub(crate) threads: usize,
    /// `login-storm`: guess this account's password on every request (default: a
    /// fresh unknown username each time, which costs the server the same argon2 work).
    #[arg(long, value_name = "USERNAME")]
    pub(crate) login_user: Option<String>,
    /// Spread the connections over this many loopback source addresses (127.1.x.y,
    /// connection i from address i mod N), as if from that many hosts: the server
    /// throttles logins per address. Needs a 127.x.x.x `--url`.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=60_000))]
    pub(crate) sources: usize,
    /// `shopper`: the file with the secret the unit shares with its QR payment provider
    /// (`[payment.qr] secret_file`): the load plays the provider's notifications.
    #[arg(long, value_name = "FILE")]
    pub(crate) qr_secret_file: Option<std::path::PathBuf>,
    /// `shopper`: milliseconds a shopper thinks between steps (uniformly half to one
    /// and a half times this).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub(crate) think_ms: u64,
    /// Process id of the server, to report its peak and current resident memory
    /// (`VmHWM`, `VmRSS` from `/proc/PID/status`; Linux, same machine).
    #[arg(long, value_name = "PID")]
    pub(crate) server_pid: Option<u32>,
}

/// The kind of request sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// `GET /api/v1/products/{sku}`.
    Sku,
    /// `GET /api/v1/products?barcode=…`.
    Barcode,
    /// `POST /api/v1/checkout`, paid in cash.
    Checkout,
    /// `POST /api/v1/checkout`, paid by card through the server's payment terminal.
    CardCheckout,
    /// `POST /api/v1/auth/login` with a wrong password (no token needed).
    LoginStorm,
    /// Shoppers on their phones: whole visits, paid by QR (`shopper.rs`).
    Shopper,
}

impl Scenario {
    /// The name used on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Sku => "sku",
            Scenario::Barcode => "barcode",
            Scenario::Checkout => "checkout",
            Scenario::CardCheckout => "card-checkout",
            Scenario::LoginStorm => "login-storm",
            Scenario::Shopper => "shopper",
        }
    }
}
