//! The command line: clap's types, and how the flags every command shares become
//! settings and an open data dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use outpost_server::access::Access;
use outpost_server::config::{Flags, Settings};
use outpost_server::store::StoreOptions;

#[derive(Parser)]
#[command(
    name = "outpost",
    version,
    about = "Outpost store server: sells offline, durably, exactly once."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct Common {
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
pub enum Command {
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
        /// A vending site instead of a shop: a 6x8 machine with its slots filled
        /// from a catalog of snacks and drinks, a simulated MDB cashless reader,
        /// OSB/1 spiral board with drop sensor, and temperature sensor.
        #[arg(long)]
        vending: bool,
    },
    /// Enrol this unit with HQ's signed bundle (the server stopped): HQ's key, the
    /// lease policy and the unlock policy become fixed in the trust record and the TPM,
    /// and the data key's sealing gains the TPM lock and the second factor the bundle
    /// names. Nothing of the data is re-encrypted.
    ///
    /// With `--hq URL --token T` instead of `--bundle`: ask HQ for the bundle with its
    /// one-time token; the device key and the mesh identity are made here, and the
    /// certificate HQ issues for the key, the key and HQ's CA go where `[tls] cert`,
    /// `[tls] key` and `sync.hq_ca` say (or into the data dir when the config names
    /// none); HQ puts the unit on its store's mesh roster.
    Enroll {
        /// The bundle (JSON) HQ signed for this unit.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "hq",
            conflicts_with = "hq"
        )]
        bundle: Option<PathBuf>,
        /// HQ's enrolment endpoint: `https://HOST:PORT` with --hq-ca-pin, or
        /// `http://127.0.0.1:PORT` on loopback (an SSH tunnel to HQ).
        #[arg(long, value_name = "URL", requires = "token")]
        hq: Option<String>,
        /// The SHA-256 of HQ's CA certificate, as HQ printed it with the token
        /// (`sha256:` and 64 hex digits): the unit trusts the https:// endpoint only
        /// under that CA.
        #[arg(long, value_name = "PIN", requires = "hq")]
        hq_ca_pin: Option<String>,
        /// The one-time enrolment token HQ issued for this store.
        #[arg(long, value_name = "TOKEN", requires = "hq")]
        token: Option<String>,
        /// Read the store manager's PIN (4 to 64 characters) from the first line of
        /// standard input, for a bundle whose unlock policy takes one.
        #[arg(long)]
        pin_stdin: bool,
        #[command(flatten)]
        common: Common,
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
    /// Self-update: this unit's releases, checking and applying a release bundle (a
    /// directory with `manifest.json`, the archive and any deltas), rolling back.
    Update {
        #[command(subcommand)]
        what: UpdateWhat,
    },
    /// Start this binary on a copy of the data dir (its migrations run on the copy),
    /// run the health gate on loopback, stop, and say whether it passed. The updater
    /// runs a new release's self-test before it switches to it.
    SelfTest {
        #[command(flatten)]
        common: Common,
        /// The data dir given is already a scratch copy (the running server made it):
        /// use it as it is instead of copying it again.
        #[arg(long)]
        data_is_copy: bool,
    },
    /// A vending site (run on a stopped server's data dir).
    Vending {
        #[command(subcommand)]
        what: VendingWhat,
    },
    /// Check this machine for the settings: data dir and disk, sealer and TPM, clock,
    /// ports, HQ, mesh peers, devices. Each line ok, warning or error with the fix;
    /// exit code 1 on any error. Changes nothing.
    Doctor(Common),
    /// Write a new Prometheus scrape token to FILE (owner-only): name it in
    /// `[metrics] token_file` and give Prometheus the same token (`authorization:
    /// credentials_file`); it reads /metrics and nothing else.
    MetricsToken {
        /// Where to write it.
        file: PathBuf,
        /// Replace an existing token (Prometheus then needs the new one).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum UpdateWhat {
    /// The running, current, previous and installed releases, an update on probation
    /// and the last update's result (JSON).
    Status {
        #[command(flatten)]
        releases: Releases,
        #[command(flatten)]
        common: Common,
    },
    /// Verify a release bundle for this unit (signature, expiry, target, downgrade,
    /// every file); changes nothing (run on a stopped server's data dir).
    Check {
        /// The bundle directory.
        bundle: PathBuf,
        #[command(flatten)]
        releases: Releases,
        #[command(flatten)]
        common: Common,
    },
    /// Verify, stage, self-test and switch to a release bundle; the next start runs it
    /// on probation (run on a stopped server's data dir).
    Apply {
        /// The bundle directory.
        bundle: PathBuf,
        #[command(flatten)]
        releases: Releases,
        #[command(flatten)]
        common: Common,
    },
    /// Go back to the previous release (the server stopped).
    Rollback {
        #[command(flatten)]
        releases: Releases,
        #[command(flatten)]
        common: Common,
    },
}

/// Where the releases directory is.
#[derive(clap::Args, Clone)]
pub struct Releases {
    /// The releases directory (default: `[updates] releases_dir`, or OUTPOST_RELEASES).
    #[arg(long = "releases", value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum P2pWhat {
    /// Print this unit's peer id (created once, sealed in the data dir), for HQ's store
    /// roster (run on a stopped server's data dir).
    Id(Common),
}

#[derive(Subcommand)]
pub enum TerminalsWhat {
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
pub enum UsersWhat {
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

#[derive(Subcommand)]
pub enum VendingWhat {
    /// Print the DEX/UCS audit file (EVA-DTS): totals since initialisation and since
    /// the last reset, per slot, with its CRC.
    Dex {
        /// Close the audit interval: print the file up to now, then start the "since
        /// reset" totals again.
        #[arg(long)]
        reset: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum ExportWhat {
    /// Write the live catalog as JSON lines (the import format), in SKU order.
    Catalog {
        /// The file ("-" for standard output).
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
pub enum ImportWhat {
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

impl Common {
    /// These flags again, for a child process (the self-test of a new release).
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = Vec::new();
        if let Some(c) = &self.config {
            out.extend(["--config".into(), c.clone().into_os_string()]);
        }
        if let Some(l) = self.listen {
            out.extend(["--listen".into(), l.to_string().into()]);
        }
        if let Some(d) = &self.data_dir {
            out.extend(["--data-dir".into(), d.clone().into_os_string()]);
        }
        if let Some(g) = self.grpc_listen {
            out.extend(["--grpc-listen".into(), g.to_string().into()]);
        }
        if let Some(u) = &self.hq_url {
            out.extend(["--hq-url".into(), u.into()]);
        }
        out
    }

    /// The settings: the config file, then `OUTPOST_*` variables, then these flags.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let flags = Flags {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            grpc_listen: self.grpc_listen,
            hq_url: self.hq_url.clone(),
        };
        Ok(Settings::load(
            self.config.as_deref(),
            std::env::vars(),
            &flags,
        )?)
    }

    /// The settings and the open store of a stopped server's data dir.
    pub fn open_store(&self) -> anyhow::Result<(Settings, Arc<outpost_server::store::Store>)> {
        let s = self.settings()?;
        outpost_server::telemetry::init("warn");
        let (store, _security) = outpost_server::access::open_data_dir(&s, &StoreOptions::of(&s))
            .with_context(|| {
            format!(
                "Failed to open the data dir {} (is the server running?)",
                s.data_dir.display()
            )
        })?;
        Ok((s, store))
    }

    /// The settings and the access state of a stopped server's data dir, for the
    /// commands that manage terminals and staff.
    pub fn open_security(&self) -> anyhow::Result<(Settings, Arc<Access>)> {
        let s = self.settings()?;
        outpost_server::telemetry::init("warn");
        let (_store, security) = outpost_server::access::open_data_dir(&s, &StoreOptions::of(&s))
            .with_context(|| {
            format!(
                "Failed to open the data dir {} (is the server running?)",
                s.data_dir.display()
            )
        })?;
        Ok((s, security))
    }
}
