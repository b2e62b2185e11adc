//! `outpost-hq enroll-token`: a one-time enrolment token for a store, kept in the
//! HQ's sled storage (`outpost_mocks::hq::enrol`); `outpost-hq roster` prints the
//! store's mesh roster the enrolments made, and `push-roster` sends it to a unit. The
//! storage is one process's at a time: run them while `serve` on the same data dir is
//! stopped.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use outpost_mocks::hq::storage::Storage;

#[derive(Debug, Args)]
pub struct EnrollTokenArgs {
    /// The mock HQ's data dir (the one `serve --data-dir` uses).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store the token enrols a unit into.
    #[arg(long)]
    store_id: String,
    /// How long the token is valid, in seconds (at most 30 days).
    #[arg(long, default_value_t = 24 * 3600)]
    ttl_secs: u64,
}

/// Issues the token and prints it, then (on standard error) HQ's CA pin and the
/// command a technician runs on the unit over the WAN.
pub fn enroll_token(args: EnrollTokenArgs) -> anyhow::Result<()> {
    let storage = Storage::open(&args.data_dir).with_context(|| {
        format!(
            "Failed to open the mock HQ's storage in {} (stop `serve` on it first)",
            args.data_dir.display()
        )
    })?;
    let token = storage
        .enroll_tokens()?
        .issue(&args.store_id, args.ttl_secs)
        .context("Failed to issue the token")?;
    let ca = outpost_mocks::hq::enrol::HqCa::load_or_create(&args.data_dir)
        .context("Failed to read HQ's CA")?;
    println!("{token}");
    eprintln!(
        "HQ's CA pin: {pin}\nOn the unit: outpost enroll --hq https://HQ-ENROLMENT-HOST:PORT --token {token} --hq-ca-pin {pin}",
        pin = ca.pin().context("HQ's CA certificate")?
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct RosterArgs {
    /// The mock HQ's data dir (the one `serve --data-dir` uses).
    #[arg(long)]
    data_dir: PathBuf,
    /// The store whose roster to print.
    #[arg(long)]
    store_id: String,
}

/// Prints a store's roster (signed JSON), as units enrolling onto it got it.
pub fn roster(args: RosterArgs) -> anyhow::Result<()> {
    let storage = Storage::open(&args.data_dir).with_context(|| {
        format!(
            "Failed to open the mock HQ's storage in {} (stop `serve` on it first)",
            args.data_dir.display()
        )
    })?;
    let roster = storage
        .rosters()?
        .get(&args.store_id)?
        .with_context(|| format!("No unit of store {:?} is on a roster", args.store_id))?;
    println!("{}", serde_json::to_string(&roster)?);
    Ok(())
}

#[derive(Debug, Args)]
pub struct PushRosterArgs {
    /// The unit's gRPC URL (https:// with --ca).
    #[arg(long)]
    store: String,
    #[command(flatten)]
    tls: super::ClientTlsArgs,
    #[command(flatten)]
    auth: super::CredentialArgs,
    /// The roster file (`outpost-hq roster` prints it).
    file: PathBuf,
}

/// Pushes a roster to one unit (`StoreService.PushRoster`).
pub async fn push_roster(args: PushRosterArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("Failed to read {}", args.file.display()))?;
    let mut client = outpost_mocks::hq::push::connect(
        &args.store,
        args.tls.config()?.as_ref(),
        &args.auth.credentials()?,
    )
    .await?;
    super::print_reply(
        client
            .push_roster(outpost_proto::hq::RosterPush { roster_json: text })
            .await,
    )
}
