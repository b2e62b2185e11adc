//! `outpost-hq`: the mock HQ (serve), pushes, leases, HQ's key and store status. See
//! `docs/mock-hq.md`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
mod enrol;
mod mesh;

use outpost_mocks::hq::{
    CatalogSource, Credentials, Faults, MockHq, PushError, PushKind, PushOptions, auth, push,
    push_catalog, store_status,
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
    /// Print what a data dir holds (the server must not be running on it), one JSON
    /// line per envelope: unit, seq, kind, id, at_unix_ms and the record.
    List(ListArgs),
    /// Print what a data dir knows of the units' audit chains (the server must not be
    /// running on it): one JSON line per unit with the last head it reported, then one
    /// per alert of a chain that went backwards. Exits 2 when there is an alert.
    Audit(AuditArgs),
    /// Push a tax table (the whole table) to a store.
    PushTax(PushTaxArgs),
    /// Push the store's name and receipt header.
    PushStoreConfig(PushStoreConfigArgs),
    /// Push a `[[devices]]` TOML file as the store's device set.
    PushDevices(PushFileArgs),
    /// Push a planogram: a JSON-lines file of shelf locations
    /// (`{"sku","aisle","bay","shelf","position","facings","capacity"}`).
    PushPlanogram(PushFileArgs),
    /// Print an enrolment bundle for a unit, signed with the keys in --data-dir (made
    /// there on first use, as `serve` does): the file `[security] enrollment` or
    /// `outpost enroll --bundle` takes.
    Enroll(EnrollArgs),
    /// Issue a one-time enrolment token for a store (`outpost enroll --hq URL --token
    /// T` on the unit spends it); run it while `serve` on the data dir is stopped.
    EnrollToken(enrol::EnrollTokenArgs),
    /// Print a store's mesh roster (signed JSON): the units that enrolled with their
    /// peer ids; run it while `serve` on the data dir is stopped.
    Roster(enrol::RosterArgs),
    /// Push a roster (`roster` prints it) to a unit of the store (`PushRoster`).
    PushRoster(enrol::PushRosterArgs),
    /// Send a store a presence lease signed with HQ's key (a unit that trusts an HQ key
    /// does not transact without one).
    SendLease(SendLeaseArgs),
    /// Make HQ's signing key (push tokens and leases) in a new file, mode 0600, and
    /// print its public key.
    Keygen {
        /// The key file to create (an existing file is never replaced).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Offer a sealed catalog snapshot, published at an HTTP origin, to a unit for its
    /// store mesh, signed with HQ's roster key.
    OfferArtifact(mesh::OfferArgs),
    /// Roll a release bundle out to a store's units through its mesh: the delta from
    /// the version they run (else the full archive), served once from a loopback
    /// origin, the first --unit (the canary) first and the others after its health
    /// gate passed; a refusal or rollback halts the store's rollout (exit 1).
    PublishRelease(mesh::PublishReleaseArgs),
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

/// What proves a push comes from HQ on a store port without mutual TLS (a plaintext
/// http:// store URL); over mutual TLS the client certificate does.
#[derive(Debug, Args)]
struct CredentialArgs {
    /// HQ's key: a key file (64 hex digits, mode 0600, from `outpost-hq keygen`), or a
    /// mock HQ's data dir (the key its `enroll` bundles name). Each call carries a push
    /// token signed with it; the store must be enrolled with its public half. Wins over
    /// --admin-session.
    #[arg(long, value_name = "FILE|DIR")]
    hq_key: Option<PathBuf>,
    /// The session id of a store admin (the `outpost_session` cookie that
    /// `POST /api/v1/auth/login` sets), sent as `authorization: Bearer`.
    #[arg(
        long,
        env = "OUTPOST_ADMIN_SESSION",
        value_name = "ID",
        hide_env_values = true
    )]
    admin_session: Option<String>,
}

impl CredentialArgs {
    fn credentials(&self) -> anyhow::Result<Credentials> {
        if let Some(path) = &self.hq_key {
            // A mock HQ's data dir holds its keys (`hq-keys`: the key its bundles name).
            let key = if path.is_dir() {
                let keys = outpost_mocks::hq::escrow::HqKeys::load_or_create(path)
                    .with_context(|| format!("Failed to load HQ's keys in {}", path.display()))?;
                auth::HqKey::from_bytes(keys.signer_secret())
            } else {
                auth::load_hq_key(path)
                    .with_context(|| format!("Failed to load HQ's key {}", path.display()))?
            };
            return Ok(Credentials::HqKey(Arc::new(key)));
        }
        Ok(match &self.admin_session {
            Some(id) => Credentials::AdminSession(id.clone()),
            None => Credentials::None,
        })
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
struct PushTaxArgs {
    /// The store's gRPC URL (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    auth: CredentialArgs,
    /// The version this table creates (must be newer than the store's).
    #[arg(long)]
    version: u64,
    /// CLASS=BASIS_POINTS, e.g. standard=2000 (repeat for each class).
    #[arg(long = "rate", required = true)]
    rates: Vec<String>,
    /// `inclusive` or `exclusive` (default: keep the store's mode).
    #[arg(long)]
    mode: Option<String>,
}

#[derive(Debug, Args)]
struct PushStoreConfigArgs {
    /// The store's gRPC URL (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    auth: CredentialArgs,
    /// The version this profile creates.
    #[arg(long)]
    version: u64,
    /// The store's name on receipts.
    #[arg(long)]
    name: String,
    /// A receipt header line (repeat for each, at most 6).
    #[arg(long = "header")]
    header: Vec<String>,
    /// The offline exposure caps, store and per card, in minor units
    /// (`--offline-caps 50000,10000`); absent: the unit's config file's.
    #[arg(long, value_name = "STORE,PER_CARD", value_parser = parse_caps)]
    offline_caps: Option<(i64, i64)>,
}

fn parse_caps(s: &str) -> Result<(i64, i64), String> {
    let (store, card) = s
        .split_once(',')
        .ok_or("give STORE,PER_CARD in minor units")?;
    let n = |x: &str| x.trim().parse::<i64>().map_err(|e| format!("{x:?}: {e}"));
    Ok((n(store)?, n(card)?))
}

#[derive(Debug, Args)]
struct PushFileArgs {
    /// The store's gRPC URL (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    auth: CredentialArgs,
    /// The version this push creates.
    #[arg(long)]
    version: u64,
    /// The file to push.
    file: PathBuf,
}

#[derive(Debug, Args)]
struct SendLeaseArgs {
    /// The store's gRPC URL (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    /// HQ's key file, or a mock HQ's data dir: signs the lease, and the call's push
    /// token.
    #[arg(long, value_name = "FILE|DIR")]
    hq_key: PathBuf,
    /// How long the lease is valid.
    #[arg(long, default_value_t = 24)]
    hours: u32,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// The `serve --data-dir` to read.
    #[arg(long)]
    data_dir: PathBuf,
    /// Only this unit.
    #[arg(long)]
    unit: Option<String>,
    /// Only this kind: sale, refund, inventory_movement, device_event, alert, telemetry,
    /// audit_head.
    #[arg(long)]
    kind: Option<String>,
    /// At most this many lines (the latest).
    #[arg(long, default_value_t = 1000)]
    limit: usize,
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// The mock HQ's data dir (its keys are in `hq-keys`).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store id.
    #[arg(long)]
    store_id: String,
    /// The unit id.
    #[arg(long)]
    unit_id: String,
    /// Second factors besides the TPM, any one releasing the data key: `hq`, `pin`,
    /// `hq,pin`, or `tpm` for none (weaker).
    #[arg(long, default_value = "hq")]
    unlock: String,
    /// How long the unit sells after its lease expired, in seconds.
    #[arg(long, default_value_t = 72 * 3600)]
    offline_grace_secs: u64,
}

fn enroll(args: EnrollArgs) -> anyhow::Result<()> {
    use outpost_security::enroll::{LeasePolicy, SecondFactors};
    let mut unlock = SecondFactors::default();
    for part in args.unlock.split(',').map(str::trim) {
        match part {
            "hq" => unlock.hq = true,
            "pin" => unlock.pin = true,
            "tpm" => {}
            other => anyhow::bail!("--unlock {other:?}: use hq, pin, hq,pin or tpm"),
        }
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("Failed to create {}", args.data_dir.display()))?;
    let keys = outpost_mocks::hq::escrow::HqKeys::load_or_create(&args.data_dir)?;
    let lease = LeasePolicy {
        offline_grace_secs: args.offline_grace_secs,
        ..LeasePolicy::default()
    };
    println!(
        "{}",
        keys.enrollment(&args.store_id, &args.unit_id, unlock, lease)?
    );
    Ok(())
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// The `serve --data-dir` to read.
    #[arg(long)]
    data_dir: PathBuf,
    /// Only this unit.
    #[arg(long)]
    unit: Option<String>,
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
    /// Also serve the enrolment endpoint here: Enroll only, TLS without a client
    /// certificate, its chain ending in HQ's CA (units pin it by the SHA-256 that
    /// `enroll-token` prints).
    #[arg(long, value_name = "ADDR")]
    enrol_listen: Option<SocketAddr>,
    /// A host name or IP units dial the enrolment endpoint by (repeat for more).
    #[arg(long = "enrol-name", value_name = "NAME", requires = "enrol_listen")]
    enrol_names: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["snapshot", "delta"])))]
struct PushArgs {
    /// The store's gRPC URL, e.g. http://127.0.0.1:50051 (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(flatten)]
    auth: CredentialArgs,
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
        Ok(code) => code,
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

/// Runs the command; `audit` decides its own exit code (2: a chain went backwards).
async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = match cli.command {
        Command::Audit(args) => return audit(args),
        Command::Serve(args) => serve(args).await,
        Command::PushCatalog(args) => push_cmd(args).await,
        Command::List(args) => list(args),
        Command::PushTax(args) => push_tax(args).await,
        Command::PushStoreConfig(args) => push_store_config(args).await,
        Command::PushDevices(args) => push_devices(args).await,
        Command::PushPlanogram(args) => push_planogram(args).await,
        Command::Enroll(args) => enroll(args),
        Command::EnrollToken(args) => enrol::enroll_token(args),
        Command::Roster(args) => enrol::roster(args),
        Command::PushRoster(args) => enrol::push_roster(args).await,
        Command::SendLease(args) => send_lease(args).await,
        Command::Keygen { out } => {
            let key = auth::write_hq_key(&out)
                .with_context(|| format!("Failed to create HQ's key {}", out.display()))?;
            println!(
                "{}",
                serde_json::json!({"key_file": out.display().to_string(), "hq_public_key": key.public_hex()})
            );
            Ok(())
        }
        Command::OfferArtifact(args) => mesh::offer_artifact(args).await,
        Command::PublishRelease(args) => mesh::publish_release(args).await,
        Command::Status { store, tls } => {
            let tls = tls.config()?;
            let status = store_status(&store, tls.as_ref()).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&push::status_json(&status))?
            );
            Ok(())
        }
    };
    done.map(|()| ExitCode::SUCCESS)
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
    let _enrolment = match args.enrol_listen {
        Some(addr) => {
            anyhow::ensure!(
                !args.enrol_names.is_empty(),
                "--enrol-listen needs at least one --enrol-name (the host name or IP units dial)"
            );
            let names: Vec<&str> = args.enrol_names.iter().map(String::as_str).collect();
            let endpoint = hq
                .serve_enrolment(addr, &names)
                .await
                .context("Failed to start the enrolment endpoint")?;
            tracing::info!(url = %endpoint.url(), ca_pin = %hq.ca().pin().context("HQ's CA certificate")?, "Enrolment endpoint started");
            Some(endpoint)
        }
        None => None,
    };
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
                    audit_alerts = hq.audit_alerts().len(),
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
    opts.credentials = args.auth.credentials()?;
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

fn list(args: ListArgs) -> anyhow::Result<()> {
    use outpost_proto::hq::EnvelopeKind;
    let kind = match args.kind.as_deref() {
        None => None,
        Some(k) => Some(
            EnvelopeKind::from_str_name(&format!("ENVELOPE_KIND_{}", k.to_ascii_uppercase()))
                .filter(|k| *k != EnvelopeKind::Unspecified)
                .with_context(|| format!("unknown kind {k:?}: use sale, refund, inventory_movement, device_event, alert, telemetry or audit_head"))?,
        ),
    };
    let storage = outpost_mocks::hq::storage::Storage::open(&args.data_dir)
        .context("Failed to open the data dir (is a server running on it?)")?;
    let units = match args.unit {
        Some(u) => vec![u],
        None => storage.units(),
    };
    for unit in units {
        let envs = match kind {
            Some(k) => storage.received_kind(&unit, k as i32),
            None => storage.received(&unit),
        };
        let skip = envs.len().saturating_sub(args.limit);
        for e in envs.into_iter().skip(skip) {
            let record: serde_json::Value = serde_json::from_slice(&e.json).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&e.json).into_owned())
            });
            let kind = EnvelopeKind::try_from(e.kind)
                .map(|k| {
                    k.as_str_name()
                        .trim_start_matches("ENVELOPE_KIND_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| e.kind.to_string());
            println!(
                "{}",
                serde_json::json!({"unit": unit, "seq": e.seq, "kind": kind, "id": e.id, "at_unix_ms": e.at_unix_ms, "record": record})
            );
        }
    }
    Ok(())
}

fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let storage = outpost_mocks::hq::storage::Storage::open(&args.data_dir)
        .context("Failed to open the data dir (is a server running on it?)")?;
    let units = match &args.unit {
        Some(u) => vec![u.clone()],
        None => storage.units(),
    };
    for unit in &units {
        println!(
            "{}",
            serde_json::json!({"unit": unit, "head": storage.audit_head(unit)})
        );
    }
    let alerts: Vec<_> = storage
        .audit_alerts()
        .into_iter()
        .filter(|a| args.unit.as_ref().is_none_or(|u| *u == a.unit))
        .collect();
    for alert in &alerts {
        println!("{}", serde_json::json!({"alert": alert}));
    }
    Ok(if alerts.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn print_reply(
    r: Result<tonic::Response<outpost_proto::hq::PushReply>, tonic::Status>,
) -> anyhow::Result<()> {
    match r {
        Ok(reply) => {
            println!(
                "{}",
                serde_json::json!({"version": reply.into_inner().version})
            );
            Ok(())
        }
        Err(status) => anyhow::bail!(
            "the store refused the push: {:?}: {}",
            status.code(),
            status.message()
        ),
    }
}

async fn push_tax(args: PushTaxArgs) -> anyhow::Result<()> {
    use outpost_proto::hq::{TaxMode, TaxRate, TaxRatesPush};
    let mut rates = Vec::with_capacity(args.rates.len());
    for r in &args.rates {
        let (class, bp) = r
            .split_once('=')
            .with_context(|| format!("--rate {r:?}: use CLASS=BASIS_POINTS"))?;
        let rate_bp = bp.parse().with_context(|| {
            format!("--rate {r:?}: {bp:?} is not a whole number of basis points")
        })?;
        rates.push(TaxRate {
            tax_class: class.to_owned(),
            rate_bp,
        });
    }
    let mode = match args.mode.as_deref() {
        None => TaxMode::Unspecified,
        Some("inclusive") => TaxMode::Inclusive,
        Some("exclusive") => TaxMode::Exclusive,
        Some(m) => anyhow::bail!("--mode {m:?}: use inclusive or exclusive"),
    };
    let mut client = outpost_mocks::hq::push::connect(
        &args.store,
        args.tls.config()?.as_ref(),
        &args.auth.credentials()?,
    )
    .await?;
    print_reply(
        client
            .push_tax_rates(TaxRatesPush {
                version: args.version,
                rates,
                mode: mode as i32,
            })
            .await,
    )
}

async fn push_store_config(args: PushStoreConfigArgs) -> anyhow::Result<()> {
    let mut client = outpost_mocks::hq::push::connect(
        &args.store,
        args.tls.config()?.as_ref(),
        &args.auth.credentials()?,
    )
    .await?;
    print_reply(
        client
            .push_store_config(outpost_proto::hq::StoreConfigPush {
                version: args.version,
                store_name: args.name,
                receipt_header: args.header,
                offline_exposure: args.offline_caps.map(|(store, per_card)| {
                    outpost_proto::hq::OfflineExposureCaps { store, per_card }
                }),
            })
            .await,
    )
}

async fn push_devices(args: PushFileArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("Failed to read {}", args.file.display()))?;
    let mut client = outpost_mocks::hq::push::connect(
        &args.store,
        args.tls.config()?.as_ref(),
        &args.auth.credentials()?,
    )
    .await?;
    print_reply(
        client
            .push_device_config(outpost_proto::hq::DeviceConfigPush {
                version: args.version,
                devices_toml: text,
            })
            .await,
    )
}

async fn push_planogram(args: PushFileArgs) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        sku: String,
        aisle: String,
        bay: u32,
        shelf: u32,
        position: u32,
        #[serde(default = "one")]
        facings: u32,
        #[serde(default)]
        capacity: u32,
    }
    fn one() -> u32 {
        1
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("Failed to read {}", args.file.display()))?;
    let mut locations = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", args.file.display(), i + 1))?;
        locations.push(outpost_proto::hq::ShelfLocation {
            sku: l.sku,
            aisle: l.aisle,
            bay: l.bay,
            shelf: l.shelf,
            position: l.position,
            facings: l.facings,
            capacity: l.capacity,
        });
    }
    let mut client = outpost_mocks::hq::push::connect(
        &args.store,
        args.tls.config()?.as_ref(),
        &args.auth.credentials()?,
    )
    .await?
    .max_encoding_message_size(16 * 1024 * 1024);
    print_reply(
        client
            .push_planogram(outpost_proto::hq::PlanogramPush {
                slots: vec![],
                version: args.version,
                locations,
            })
            .await,
    )
}

/// HQ's key from a key file, or from a mock HQ's data dir (`hq-keys`: the key its
/// `enroll` bundles name).
fn hq_key(path: &std::path::Path) -> anyhow::Result<auth::HqKey> {
    if path.is_dir() {
        let keys = outpost_mocks::hq::escrow::HqKeys::load_or_create(path)
            .with_context(|| format!("Failed to load HQ's keys in {}", path.display()))?;
        return Ok(auth::HqKey::from_bytes(keys.signer_secret()));
    }
    auth::load_hq_key(path).with_context(|| format!("Failed to load HQ's key {}", path.display()))
}

async fn send_lease(args: SendLeaseArgs) -> anyhow::Result<()> {
    use outpost_security::lease::Lease;
    let key = Arc::new(hq_key(&args.hq_key)?);
    let tls = args.tls.config()?;
    let status = store_status(&args.store, tls.as_ref()).await?;
    let now = std::time::SystemTime::now();
    let lease = key.leases.sign_lease(&Lease {
        store: status.store_id.clone(),
        unit: status.unit_id.clone(),
        issued_at: (now - Duration::from_secs(1)).into(),
        expires_at: (now + Duration::from_secs(u64::from(args.hours) * 3600)).into(),
        nonce: rand::random(),
    })?;
    let mut client =
        push::connect(&args.store, tls.as_ref(), &Credentials::HqKey(key.clone())).await?;
    let command_id = format!(
        "lease-{}",
        now.duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let reply = client
        .send_command(outpost_proto::hq::Command {
            command_id: command_id.clone(),
            kind: Some(outpost_proto::hq::command::Kind::SignedLease(lease)),
        })
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "the store refused the lease: {:?}: {}",
                status.code(),
                status.message()
            )
        })?
        .into_inner();
    println!(
        "{}",
        serde_json::json!({"command_id": command_id, "result": reply.result})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_caps;

    #[test]
    fn offline_caps_parse_as_store_comma_per_card() {
        assert_eq!(parse_caps("50000,10000"), Ok((50_000, 10_000)));
        assert_eq!(parse_caps(" 0 , 5 "), Ok((0, 5)));
        for bad in ["", "5", "a,5", "5,", "1.5,2"] {
            assert!(parse_caps(bad).is_err(), "{bad:?}");
        }
    }
}
