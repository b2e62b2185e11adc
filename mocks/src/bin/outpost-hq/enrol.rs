//! `outpost-hq enroll-token`: a one-time enrolment token for a store, kept in the
//! HQ's sled storage (`outpost_mocks::hq::enrol`). The storage is one process's at a
//! time: run it while `serve` on the same data dir is stopped.

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
