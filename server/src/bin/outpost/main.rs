//! `outpost`: the store server's command line. Parses arguments and calls the library.
//!
//! # Layout
//! - [`cli`]: the commands and flags, and how the shared flags become settings.
//! - [`serve`]: `serve` and `demo`.
//! - [`terminals`], [`users`]: terminal tokens and staff accounts.
//! - [`catalog`]: `import catalog` and `export catalog`.
//! - [`enroll`]: enrolment with HQ's bundle (`outpost enroll`).
//! - [`p2p`]: `p2p id`.
//! - [`doctor`]: `doctor`, what a technician runs first.
//! - [`update`]: `update status|check|apply|rollback` and `self-test`.

mod catalog;
mod cli;
mod doctor;
mod enroll;
mod p2p;
mod serve;
mod terminals;
mod update;
mod users;
mod vending;

use clap::{CommandFactory as _, FromArgMatches as _};

use cli::{Cli, Command, ExportWhat, ImportWhat, VendingWhat};

/// mimalloc instead of the system allocator: an import or a snapshot apply makes
/// millions of small allocations, and glibc's malloc spent a quarter of a 1,000,000
/// product import in its bookkeeping (BENCHMARKS.md, "Catalog import").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // The version is the binary's release stamp, which a release tool may rewrite.
    let version: &'static str = Box::leak(
        outpost_updater::stamp::running_version()
            .to_string()
            .into_boxed_str(),
    );
    let cli = match Cli::from_arg_matches(&Cli::command().version(version).get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
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
        Command::Serve(common) => serve::serve(&common).await,
        Command::Demo {
            common,
            products,
            vending,
        } => serve::demo(&common, products, vending).await,
        Command::P2p { what } => p2p::run(what),
        Command::Enroll {
            bundle,
            hq,
            token,
            hq_ca_pin,
            pin_stdin,
            common,
        } => match (bundle, hq, token) {
            (Some(bundle), _, _) => enroll::run(&bundle, pin_stdin, &common),
            (None, Some(hq), Some(token)) => {
                enroll::run_token(&hq, &token, hq_ca_pin.as_deref(), &common).await
            }
            _ => anyhow::bail!("give --bundle FILE, or --hq URL and --token TOKEN"),
        },
        Command::Terminals { what } => terminals::run(what),
        Command::Users { what } => users::run(what),
        Command::Update { what } => update::run(what).await,
        Command::SelfTest {
            common,
            data_is_copy,
        } => update::self_test(&common, data_is_copy).await,
        Command::Doctor(common) => doctor::run(&common),
        Command::MetricsToken { file, force } => metrics_token(&file, force),
        Command::Vending {
            what: VendingWhat::Dex { reset, common },
        } => vending::dex(reset, &common).await,
        Command::Export {
            what: ExportWhat::Catalog { file, common },
        } => catalog::export(&file, &common),
        Command::Import {
            what:
                ImportWhat::Catalog {
                    file,
                    replace,
                    catalog_version,
                    common,
                },
        } => catalog::import(&file, replace, catalog_version, &common),
    }
}

/// `outpost metrics-token FILE [--force]`: 32 random bytes as 64 hex characters.
fn metrics_token(file: &std::path::Path, force: bool) -> anyhow::Result<()> {
    use rand::RngCore as _;
    if file.exists() && !force {
        anyhow::bail!(
            "{} exists: pass --force to replace it (Prometheus then needs the new token)",
            file.display()
        );
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    outpost_security::fsutil::write_private(file, format!("{token}\n").as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
    println!(
        "Wrote a new scrape token to {}. Set [metrics] token_file = {:?} in the config, and give Prometheus the same token (authorization: {{ type: Bearer, credentials_file: ... }})",
        file.display(),
        file.display().to_string()
    );
    Ok(())
}
