//! `outpost`: the store server's command line. Parses arguments and calls the library.

use std::io::{BufReader, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use outpost_server::config::{Overrides, Settings};
use outpost_server::startup::{Application, Devices};
use outpost_server::store::{ImportMode, Store, StoreOptions};

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
}

#[derive(Subcommand)]
enum P2pWhat {
    /// Print this unit's peer id (created once in the data dir), for HQ's store roster.
    Id(Common),
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
    let flags = Overrides {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(common) => {
            let s = settings(&common)?;
            outpost_server::telemetry::init(&s.log);
            let app = Application::build(s, Devices::default()).await?;
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
            if s.store.name == outpost_server::config::StoreSettings::default().name {
                s.store.name = "Outpost Demo Store".into();
            }
            {
                let store =
                    Store::open(&s.data_dir, &StoreOptions::default()).with_context(|| {
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
            }
            let app = Application::build(s, Devices::default()).await?;
            eprintln!(
                "Outpost demo serving on http://{}  (try /api/v1/products?q=milk, Ctrl-C to stop)",
                app.addr()
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
        Command::Export {
            what: ExportWhat::Catalog { file, common },
        } => {
            let s = settings(&common)?;
            outpost_server::telemetry::init("warn");
            let store = Store::open(&s.data_dir, &StoreOptions::default())
                .with_context(|| format!("Failed to open the data dir {}", s.data_dir.display()))?;
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
            let store = Store::open(&s.data_dir, &StoreOptions::default())
                .with_context(|| format!("Failed to open the data dir {}", s.data_dir.display()))?;
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
