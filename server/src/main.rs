//! `outpost`: the store server's command line. Parses arguments and calls the library.

use std::io::{BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use outpost_security::auth::password::generate_password;
use outpost_security::auth::roles::Role;
use outpost_server::config::{Flags, Settings};
use outpost_server::devices::InjectedDevices;
use outpost_server::startup::Application;
use outpost_server::store::{ImportMode, StoreOptions};

/// mimalloc instead of the system allocator: an import or a snapshot apply makes
/// millions of small allocations, and glibc's malloc spent a quarter of a 1,000,000
/// product import in its bookkeeping (BENCHMARKS.md, "Catalog import").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Outpost store server: sells offline, durably, exactly once."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to serve on (overrides OUTPOST_LISTEN and the file).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory (overrides OUTPOST_DATA_DIR and the file).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the gRPC port HQ pushes to (overrides OUTPOST_GRPC_LISTEN).
    #[arg(long, value_name = "ADDR")]
    grpc_listen: Option<SocketAddr>,
    /// HQ's gRPC URL for the uplink (overrides OUTPOST_HQ_URL).
    #[arg(long, value_name = "URL")]
    hq_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the store.
    Serve(Common),
    /// Fill an empty data dir with a demo store (catalog, stock, promotions) and serve
    /// it with simulated devices: an ESC/POS printer and drawer, a customer display and
    /// a nexo payment terminal, reached through the real drivers on loopback.
    Demo {
        #[command(flatten)]
        common: Common,
        /// Number of demo products.
        #[arg(long, default_value_t = 10_000)]
        products: usize,
    },
    /// Import data.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Export data.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// The store mesh.
    P2p {
        #[command(subcommand)]
        what: P2pWhat,
    },
    /// Terminal bearer tokens (run on a stopped server's data dir).
    Terminals {
        #[command(subcommand)]
        what: TerminalsWhat,
    },
    /// Staff accounts (run on a stopped server's data dir).
    Users {
        #[command(subcommand)]
        what: UsersWhat,
    },
}

#[derive(Subcommand)]
enum P2pWhat {
    /// Print this unit's peer id (created once in the data dir), for HQ's store roster.
    Id(Common),
}

#[derive(Subcommand)]
enum TerminalsWhat {
    /// Issue a token for terminal NAME; the token is printed once, only its hash is kept.
    Add {
        /// Terminal name (1 to 64 of A-Z a-z 0-9 - _ . @).
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// List terminals (names, ids, issue and revocation times; never tokens).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke terminal NAME's token.
    Revoke {
        /// Terminal name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum UsersWhat {
    /// Add (or replace) a staff account with a generated password, printed once.
    Add {
        /// Username (1 to 64 of A-Z a-z 0-9 - _ . @).
        username: String,
        /// Roles: supervisor, technician, admin (repeat or comma-separate).
        #[arg(long = "role", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List staff accounts (usernames, roles, disabled; never passwords).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Disable USERNAME: no more logins, open sessions end. `add` enables it again.
    Disable {
        /// Username.
        username: String,
        #[command(flatten)]
        common: Common,
    },
}

fn open_security(
    common: &Common,
) -> anyhow::Result<(Settings, std::sync::Arc<outpost_server::access::Access>)> {
    let s = settings(common)?;
    outpost_server::telemetry::init("warn");
    let (_store, security) = outpost_server::access::open_data_dir(&s, &StoreOptions::default())
        .with_context(|| {
            format!(
                "Failed to open the data dir {} (is the server running?)",
                s.data_dir.display()
            )
        })?;
    Ok((s, security))
}

#[derive(Subcommand)]
enum ExportWhat {
    /// Write the live catalog as JSON lines (the import format), in SKU order.
    Catalog {
        /// The file ("-" for standard output).
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Import products from a JSON-lines file (one product per line). Products in the
    /// file are added or replaced; with --replace, products not in the file are removed.
    Catalog {
        /// The file ("-" for standard input).
        file: PathBuf,
        /// Remove products that are not in the file.
        #[arg(long)]
        replace: bool,
        /// Version name of the imported catalog (default: import-<unix time>).
        #[arg(long)]
        catalog_version: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

fn settings(common: &Common) -> anyhow::Result<Settings> {
    let flags = Flags {
        listen: common.listen,
        data_dir: common.data_dir.clone(),
        grpc_listen: common.grpc_listen,
        hq_url: common.hq_url.clone(),
    };
    Ok(Settings::load(
        common.config.as_deref(),
        std::env::vars(),
        &flags,
    )?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: failed to start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace for a technician to wade through.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Creates the demo's terminal token and technician login (fresh ones at every start:
/// the previous demo terminal is revoked), writes them to
/// `<data-dir>/demo-credentials.json` (0600) and returns what to print.
fn demo_credentials(
    security: &outpost_server::access::Access,
    data_dir: &std::path::Path,
) -> anyhow::Result<String> {
    use secrecy::ExposeSecret as _;
    security.revoke_terminal("demo", "demo-terminal")?;
    let (_, token) = security.add_terminal("demo", "demo-terminal")?;
    let password = generate_password();
    security.set_user("demo", "demo-tech", &password, vec![Role::Technician])?;
    let path = outpost_security::auth::demo::write_demo_credentials(
        data_dir,
        &token,
        "demo-tech",
        &password,
    )
    .context("Failed to write the demo credentials")?;
    Ok(format!(
        "Demo credentials (also in {}):\n  terminal token: {}\n  technician:     demo-tech / {}",
        path.display(),
        token.expose_secret(),
        password.expose_secret()
    ))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(common) => {
            let s = settings(&common)?;
            outpost_server::telemetry::init(&s.log);
            let app = Application::build(s, InjectedDevices::default()).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Demo { common, products } => {
            let mut s = settings(&common)?;
            outpost_server::telemetry::init(&s.log);
            if s.devices.is_empty() {
                // Simulators speaking the real wire protocols, so the demo runs the
                // ESC/POS and nexo drivers end to end.
                s.devices = outpost_server::devices::demo_devices(s.payment.terminal == "none");
                s.validate()?;
            }
            // The demo runs on the development sealer (with its warning) unless a config
            // says otherwise.
            s.security.allow_software = true;
            if s.store.name == outpost_server::config::StoreSettings::default().name {
                s.store.name = "Outpost Demo Store".into();
            }
            {
                let (store, security) =
                    outpost_server::access::open_data_dir(&s, &StoreOptions::default())
                        .with_context(|| {
                            format!("Failed to open the data dir {}", s.data_dir.display())
                        })?;
                let started = Instant::now();
                match outpost_server::seed::seed_demo(&store, products).await? {
                    Some(seeded) => eprintln!(
                        "Demo store created in {}: {} products, {} promotions ({:.1} s)",
                        s.data_dir.display(),
                        seeded.products,
                        seeded.promotions,
                        started.elapsed().as_secs_f64()
                    ),
                    None => eprintln!("Using the existing store in {}", s.data_dir.display()),
                }
                eprintln!("{}", demo_credentials(&security, &s.data_dir)?);
                drop((store, security));
            }
            let app = Application::build(s, InjectedDevices::default()).await?;
            eprintln!(
                "Outpost demo serving on {}  (try /api/v1/products?q=milk, Ctrl-C to stop)",
                app.base_url()
            );
            app.run_until(shutdown_signal()).await
        }
        Command::P2p {
            what: P2pWhat::Id(common),
        } => {
            let s = settings(&common)?;
            println!("{}", outpost_server::mesh::peer_id(&s.data_dir)?);
            Ok(())
        }
        Command::Terminals { what } => match what {
            TerminalsWhat::Add { name, common } => {
                let (_, security) = open_security(&common)?;
                let (record, token) = security.add_terminal("cli", &name)?;
                eprintln!(
                    "Terminal {} (id {}) added. Its token is shown once; configure the terminal with it:",
                    record.name, record.id
                );
                println!("{}", secrecy::ExposeSecret::expose_secret(&token));
                Ok(())
            }
            TerminalsWhat::List { common } => {
                let (_, security) = open_security(&common)?;
                for t in security.terminals() {
                    let revoked = match t.revoked_at {
                        Some(at) => format!("revoked at {at}"),
                        None => "active".into(),
                    };
                    println!(
                        "{}\t{}\tcreated at {}\t{revoked}",
                        t.name, t.id, t.created_at
                    );
                }
                Ok(())
            }
            TerminalsWhat::Revoke { name, common } => {
                let (_, security) = open_security(&common)?;
                if security.revoke_terminal("cli", &name)? {
                    println!("Revoked the token of terminal {name}");
                    Ok(())
                } else {
                    anyhow::bail!("terminal {name:?} has no active token")
                }
            }
        },
        Command::Users {
            what: UsersWhat::List { common },
        } => {
            let (_, security) = open_security(&common)?;
            for u in security.users() {
                let names: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
                let state = if u.disabled { "disabled" } else { "enabled" };
                println!("{}\t{}\t{state}", u.username, names.join(","));
            }
            Ok(())
        }
        Command::Users {
            what: UsersWhat::Disable { username, common },
        } => {
            let (_, security) = open_security(&common)?;
            if security.disable_user("cli", &username)? {
                println!("Disabled {username}");
                Ok(())
            } else {
                anyhow::bail!("no staff account {username:?}")
            }
        }
        Command::Users {
            what:
                UsersWhat::Add {
                    username,
                    roles,
                    common,
                },
        } => {
            let roles = roles
                .iter()
                .map(|r| match r.trim() {
                    "supervisor" => Ok(Role::Supervisor),
                    "technician" => Ok(Role::Technician),
                    "admin" => Ok(Role::Admin),
                    other => Err(anyhow::anyhow!(
                        "unknown role {other:?}: use supervisor, technician or admin"
                    )),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (_, security) = open_security(&common)?;
            let password = generate_password();
            security.set_user("cli", &username, &password, roles)?;
            eprintln!("User {username} added. The password is shown once:");
            println!("{}", secrecy::ExposeSecret::expose_secret(&password));
            Ok(())
        }
        Command::Export {
            what: ExportWhat::Catalog { file, common },
        } => {
            let s = settings(&common)?;
            outpost_server::telemetry::init("warn");
            let (store, _security) =
                outpost_server::access::open_data_dir(&s, &StoreOptions::default()).with_context(
                    || format!("Failed to open the data dir {}", s.data_dir.display()),
                )?;
            let mut out: Box<dyn Write> = if file.as_os_str() == "-" {
                Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
            } else {
                let f = std::fs::File::create(&file)
                    .with_context(|| format!("Failed to create {}", file.display()))?;
                Box::new(std::io::BufWriter::with_capacity(1 << 20, f))
            };
            let catalog = store.catalog();
            let mut n = 0u64;
            for json in catalog.products_json() {
                out.write_all(&json?)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            out.flush().context("Failed to write the export")?;
            eprintln!(
                "Exported {n} products of catalog version {}",
                catalog.version
            );
            Ok(())
        }
        Command::Import {
            what:
                ImportWhat::Catalog {
                    file,
                    replace,
                    catalog_version,
                    common,
                },
        } => {
            let s = settings(&common)?;
            outpost_server::telemetry::init("warn");
            let (store, _security) =
                outpost_server::access::open_data_dir(&s, &StoreOptions::default()).with_context(
                    || format!("Failed to open the data dir {}", s.data_dir.display()),
                )?;
            let (reader, size): (Box<dyn std::io::BufRead>, u64) = if file.as_os_str() == "-" {
                (Box::new(BufReader::new(std::io::stdin().lock())), 0)
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("Failed to open {}", file.display()))?;
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Box::new(BufReader::with_capacity(1 << 20, f)), size)
            };
            let bar = if std::io::stderr().is_terminal() && size > 0 {
                let b = indicatif::ProgressBar::new(size);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                Some(b)
            } else {
                None
            };
            let version = catalog_version.unwrap_or_else(|| {
                format!(
                    "import-{}",
                    time::OffsetDateTime::now_utc().unix_timestamp()
                )
            });
            let mode = if replace {
                ImportMode::Replace
            } else {
                ImportMode::Merge
            };
            let started = Instant::now();
            let result = outpost_server::import::import_catalog(
                &store,
                reader,
                &s.currency(),
                mode,
                &version,
                |n| {
                    if let Some(b) = &bar {
                        b.set_position(n);
                    }
                },
            );
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            let summary = result.context("Import failed; the catalog is unchanged")?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "Imported {} products ({} kept) as catalog version {version} in {secs:.2} s ({:.0} products/s)",
                summary.imported,
                summary.kept,
                summary.imported as f64 / secs.max(1e-9)
            );
            Ok(())
        }
    }
}
