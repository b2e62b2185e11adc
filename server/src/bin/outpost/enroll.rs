//! `outpost enroll --bundle FILE [--pin-stdin]`, or `outpost enroll --hq URL --token T`.

use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context as _;
use outpost_server::store::StoreOptions;
use secrecy::SecretString;

use crate::cli::Common;

/// Enrols the stopped server's data dir with HQ's bundle.
pub fn run(bundle: &Path, pin_stdin: bool, common: &Common) -> anyhow::Result<()> {
    let s = common.settings()?;
    outpost_server::telemetry::init("warn");
    let json = outpost_server::access::enrol::read_bundle(bundle)?;
    let pin = if pin_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("Failed to read the PIN from standard input")?;
        Some(SecretString::from(
            line.trim_end_matches(['\r', '\n']).to_owned(),
        ))
    } else {
        None
    };
    let enrolled =
        outpost_server::access::enroll_data_dir(&s, &StoreOptions::of(&s), &json, pin.as_ref())
            .with_context(|| {
                format!(
                    "Failed to enrol the data dir {} (is the server running?)",
                    s.data_dir.display()
                )
            })?;
    if enrolled {
        println!(
            "Enrolled {}: HQ's key, the lease policy and the lock are now fixed in this unit's trust record and TPM",
            s.data_dir.display()
        );
    } else {
        println!("Already enrolled with this bundle: nothing to do");
    }
    Ok(())
}

/// Enrols the stopped server's data dir with HQ's one-time token, over gRPC.
pub async fn run_token(
    url: &str,
    token: &str,
    pin: Option<&str>,
    common: &Common,
) -> anyhow::Result<()> {
    let s = common.settings()?;
    outpost_server::telemetry::init("warn");
    let pin = pin
        .map(outpost_security::tls_pin::CaPin::parse)
        .transpose()
        .context("--hq-ca-pin")?;
    let token = SecretString::from(token.trim().to_owned());
    let done = outpost_server::hq::enrol::enroll_with_token(&s, url, &token, pin)
        .await
        .with_context(|| {
            format!(
                "Failed to enrol the data dir {} with HQ at {url} (is the server running?)",
                s.data_dir.display()
            )
        })?;
    println!(
        "Enrolled {} as {}/{}: HQ's key, the lease policy and the lock are fixed in the trust record and TPM; the certificate is in {}, its key in {}, HQ's CA in {}",
        s.data_dir.display(),
        done.store_id,
        done.unit_id,
        done.files[0].display(),
        done.files[1].display(),
        done.files[2].display()
    );
    match done.roster_version {
        Some(v) => println!(
            "On the store mesh as {} (roster version {v}); HQ pushes the new roster to the store's other units",
            done.peer_id
        ),
        None => println!(
            "HQ sent no mesh roster: this unit ({}) is not on its store's mesh yet",
            done.peer_id
        ),
    }
    if s.sync.awaiting_enrolment.is_some() {
        println!("Restart the service to start the HQ link: systemctl restart outpost");
    }
    Ok(())
}
