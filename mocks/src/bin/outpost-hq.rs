//! `outpost-hq`: the mock HQ (serve), catalog pushes and store status. See
//! `docs/mock-hq.md`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use outpost_mocks::hq::{
    CatalogSource, Faults, MockHq, PushError, PushKind, PushOptions, push, push_catalog,
    store_status,
};

/// The mock HQ of Outpost: receives store uploads, pushes catalogs to stores.
#[derive(Debug, Parser)]
#[command(name = "outpost-hq", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HqService (the stores' upload stream) until Ctrl-C.
    Serve(ServeArgs),
    /// Push a JSON-lines catalog to a store's StoreService.
    PushCatalog(PushArgs),
    /// Print a store's GetStatus as JSON.
    Status {
        /// The store's gRPC URL, e.g. http://127.0.0.1:50051 (https:// with --ca).
        #[arg(long)]
        store: String,
        #[command(flatten)]
        tls: ClientTlsArgs,
    },
}

/// Mutual TLS to a store's gRPC port (an https:// --store URL).
#[derive(Debug, Args)]
struct ClientTlsArgs {
    /// CA certificate (PEM) that issued the store's certificate; the only one trusted.
    #[arg(long, value_name = "FILE", requires_all = ["cert", "key"])]
    ca: Option<PathBuf>,
    /// HQ's client certificate (PEM), issued by the CA the store pins (its sync.hq_ca).
    #[arg(long, value_name = "FILE", requires = "ca")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, mode 0600).
    #[arg(long, value_name = "FILE", requires = "ca")]
    key: Option<PathBuf>,
}

impl ClientTlsArgs {
    fn config(&self) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
        let (Some(ca), Some(cert), Some(key)) = (&self.ca, &self.cert, &self.key) else {
            return Ok(None);
        };
        let identity = outpost_security::tls::DeviceIdentity::load(cert, key)
            .with_context(|| format!("Failed to load the client certificate {}", cert.display()))?;
        let config = outpost_security::tls::hq_client_config(&read_pem(ca)?, &identity)
            .with_context(|| format!("Failed to use the CA certificate {}", ca.display()))?;
        Ok(Some(config))
    }
}

/// Serve mutual TLS: a server certificate, and the CA whose client certificates (the
/// stores') are accepted.
#[derive(Debug, Args)]
struct ServerTlsArgs {
    /// HQ's server certificate chain (PEM, leaf first); valid for the host stores dial.
    #[arg(long, value_name = "FILE", requires_all = ["tls_key", "client_ca"])]
    tls_cert: Option<PathBuf>,
    /// Its private key (PEM, mode 0600).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that issues store certificates; stores without one are refused.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

impl ServerTlsArgs {
    fn config(&self) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.client_ca)
        else {
            return Ok(None);
        };
        let identity = outpost_security::tls::DeviceIdentity::load(cert, key)
            .with_context(|| format!("Failed to load the server certificate {}", cert.display()))?;
        let config = outpost_security::tls::mtls_server_config(&identity, &read_pem(ca)?)
            .with_context(|| format!("Failed to use the client CA {}", ca.display()))?;
        Ok(Some(config))
    }
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("Failed to read {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= outpost_security::tls::MAX_PEM_LEN,
        "{} is over {} bytes: not a CA certificate",
        path.display(),
        outpost_security::tls::MAX_PEM_LEN
    );
    std::fs::read(path).with_context(|| format!("Failed to read {}", path.display()))
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks one; the bound address is logged).
    #[arg(long)]
    listen: SocketAddr,
    /// Where received envelopes are kept (sled); a restart on the same dir keeps them.
    #[arg(long)]
    data_dir: PathBuf,
    /// Answer every Upload with UNAVAILABLE.
    #[arg(long)]
    fail: bool,
    /// Delay each ack by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
    /// Cut each connection after N messages (the Hello counts; N >= 2).
    #[arg(long)]
    cut_every: Option<u64>,
    /// Seconds between summary log lines.
    #[arg(long, default_value_t = 10)]
    summary_secs: u64,
    #[command(flatten)]
    tls: ServerTlsArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["snapshot", "delta"])))]
struct PushArgs {
    /// The store's gRPC URL, e.g. http://127.0.0.1:50051 (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// Push FILE as a whole-catalog snapshot.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Push FILE as a delta (upserts) against --base-version.
    #[arg(long, value_name = "FILE")]
    delta: Option<PathBuf>,
    /// Catalog version the push creates (default: the store's live version + 1).
    #[arg(long)]
    version: Option<u64>,
    /// For a delta, the version it applies to (default: the store's live version).
    #[arg(long)]
    base_version: Option<u64>,
    /// Products per chunk.
    #[arg(long, default_value_t = 1000)]
    chunk: usize,
    /// The push's id (default: derived from the content, so a re-run resumes).
    #[arg(long)]
    push_id: Option<String>,
    /// SKUs to remove (delta only).
    #[arg(long, num_args = 1..)]
    remove: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: failed to start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::PushCatalog(args) => push_cmd(args).await,
        Command::Status { store, tls } => {
            let tls = tls.config()?;
            let status = store_status(&store, tls.as_ref()).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&push::status_json(&status))?
            );
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let faults = Faults::none()
        .with_fail(args.fail)
        .with_ack_delay(Duration::from_millis(args.ack_delay_ms))
        .with_cut_every(args.cut_every);
    let tls = args.tls.config()?;
    let hq = MockHq::start_with(args.listen, &args.data_dir, faults, tls)
        .await
        .context("Failed to start the mock HQ")?;
    tracing::info!(url = %hq.url(), data_dir = %args.data_dir.display(), ?faults, "Mock HQ started");
    let mut tick = tokio::time::interval(Duration::from_secs(args.summary_secs.max(1)));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let s = hq.stats();
                let units = hq.units();
                let acked: Vec<String> =
                    units.iter().map(|u| format!("{u}={}", hq.acked(u))).collect();
                tracing::info!(
                    stored = s.envelopes_stored,
                    duplicates = s.duplicates_ignored,
                    connections = s.connections,
                    cuts = s.cuts,
                    refused = s.refused,
                    tls_refused = hq.tls_refused(),
                    errors = s.errors,
                    acked = %acked.join(","),
                    "Summary"
                );
            }
            r = tokio::signal::ctrl_c() => {
                r.context("Failed to wait for Ctrl-C")?;
                break;
            }
        }
    }
    tracing::info!("Shutting down");
    hq.shutdown().await.context("Failed to shut down cleanly")?;
    Ok(())
}

async fn push_cmd(args: PushArgs) -> anyhow::Result<()> {
    let (kind, file) = match (args.snapshot, args.delta) {
        (Some(f), None) => (PushKind::Snapshot, f),
        (None, Some(f)) => (PushKind::Delta, f),
        _ => anyhow::bail!("give exactly one of --snapshot FILE and --delta FILE"),
    };
    let mut opts = PushOptions::new(kind);
    opts.version = args.version;
    opts.base_version = args.base_version;
    opts.chunk = args.chunk;
    opts.push_id = args.push_id;
    opts.removals = args.remove;
    opts.progress = std::io::stderr().is_terminal();
    opts.tls = args.tls.config()?;
    match push_catalog(&args.store, CatalogSource::File(file), &opts).await {
        Ok(reply) => {
            println!(
                "{}",
                serde_json::json!({
                    "version": reply.version,
                    "products": reply.products,
                    "apply_ms": reply.apply_ms,
                })
            );
            Ok(())
        }
        Err(e @ PushError::BadLines { .. }) => Err(anyhow::anyhow!(e)),
        Err(e) => Err(e).context("Catalog push failed"),
    }
}
