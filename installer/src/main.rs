//! `outpost-install`: puts Outpost on a store machine, or takes it off
//! (`docs/install.md`).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use outpost_installer::config::{Sealer, Template};
use outpost_installer::install::{self, ConfigSource, Options, Step};
use outpost_installer::paths::Root;
use outpost_installer::uninstall;

#[derive(Parser)]
#[command(
    name = "outpost-install",
    version,
    about = "Installs Outpost as a hardened systemd service, or removes it."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Args)]
struct Target {
    /// Work in this staging tree instead of the machine (nothing is enabled or started).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum SealerArg {
    Tpm,
    Software,
}

// Parsed once per run: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Create the outpost user, the directories, the first release, the config and
    /// the systemd units; enable and start them (not under --root).
    Install {
        #[command(flatten)]
        target: Target,
        /// The `outpost` binary (its version slot names the release).
        #[arg(long, value_name = "PATH")]
        binary: PathBuf,
        /// The `outpost-supervisor` binary (the start guard).
        #[arg(long, value_name = "PATH")]
        supervisor: PathBuf,
        /// Install this config file (it must parse as TOML) instead of the template.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["store_id", "listen", "store_name", "hq_url", "grpc_listen", "tls_name", "sealer"])]
        config_from: Option<PathBuf>,
        /// Overwrite an installed config that differs from the one this run writes.
        #[arg(long)]
        replace_config: bool,
        /// The store id HQ knows (writes the config from the template).
        #[arg(long)]
        store_id: Option<String>,
        /// The REST address terminals reach.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// The name printed on receipts.
        #[arg(long)]
        store_name: Option<String>,
        /// HQ's gRPC URL (https://host:port).
        #[arg(long)]
        hq_url: Option<String>,
        /// The gRPC address HQ pushes to.
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// A name (DNS or IP) terminals use for this unit, for its TLS certificate.
        #[arg(long)]
        tls_name: Vec<String>,
        /// What seals the data key.
        #[arg(long, value_enum, default_value = "tpm")]
        sealer: SealerArg,
    },
    /// Remove what install put on the machine; the data dir stays unless --purge.
    Uninstall {
        #[command(flatten)]
        target: Target,
        /// Also remove the data dir and everything in the config dir.
        #[arg(long, conflicts_with = "keep_config")]
        purge: bool,
        /// Keep the config dir (what a Debian package removal does; the purge removes
        /// it).
        #[arg(long)]
        keep_config: bool,
    },
}

fn root(t: &Target) -> Root {
    t.root.as_ref().map_or_else(Root::system, Root::staged)
}

/// Prints each step on a terminal as it finishes (and every step of a dry run).
fn progress(dry_run: bool) -> impl FnMut(&Step) {
    let tty = std::io::stderr().is_terminal();
    let mut n = 0;
    move |s: &Step| {
        n += 1;
        let state = match (dry_run, s.changed) {
            (true, true) => "would change",
            (false, true) => "changed",
            (_, false) => "ok",
        };
        let line = format!("[{n}] {:<12} {:<12} {}", s.name, state, s.detail);
        if dry_run {
            println!("{line}");
        } else if tty {
            eprintln!("{line}");
        }
    }
}

fn summary(what: &str, dry_run: bool, steps: &[Step]) {
    let changed: Vec<&str> = steps.iter().filter(|s| s.changed).map(|s| s.name).collect();
    if dry_run {
        if changed.is_empty() {
            println!("Dry run: nothing would change.");
        } else {
            println!(
                "Dry run: {} would change ({}); nothing was changed.",
                what,
                changed.join(", ")
            );
        }
    } else if changed.is_empty() {
        println!("Nothing changed: {what} was already done.");
    } else {
        println!("Done: {what} ({} changed).", changed.join(", "));
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Install {
            target,
            binary,
            supervisor,
            config_from,
            replace_config,
            store_id,
            listen,
            store_name,
            hq_url,
            grpc_listen,
            tls_name,
            sealer,
        } => {
            let config = match (config_from, store_id) {
                (Some(f), _) => ConfigSource::File(f),
                (None, Some(store_id)) => ConfigSource::Template(Template {
                    listen,
                    store_id,
                    store_name,
                    hq_url,
                    grpc_listen,
                    tls_names: tls_name,
                    sealer: match sealer {
                        SealerArg::Tpm => Sealer::Tpm,
                        SealerArg::Software => Sealer::Software,
                    },
                }),
                (None, None) => ConfigSource::Installed,
            };
            let o = Options {
                root: root(&target),
                binary,
                supervisor,
                config,
                replace_config,
            };
            let steps = install::install(&o, !target.dry_run, &mut progress(target.dry_run))
                .context("Failed to install Outpost")?;
            summary("the install", target.dry_run, &steps);
        }
        Cmd::Uninstall {
            target,
            purge,
            keep_config,
        } => {
            let steps = uninstall::uninstall(
                &root(&target),
                uninstall::Removal { purge, keep_config },
                !target.dry_run,
                &mut progress(target.dry_run),
            )
            .context("Failed to uninstall Outpost")?;
            summary("the uninstall", target.dry_run, &steps);
        }
    }
    Ok(())
}
