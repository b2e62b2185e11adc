//! `outpost vending dex [--reset]`: the DEX audit file of a stopped server's data dir.

use std::io::Write as _;

use anyhow::Context as _;
use outpost_server::vending::dex::{DexIdentity, export, export_and_reset};

use crate::cli::Common;

pub async fn dex(reset: bool, common: &Common) -> anyhow::Result<()> {
    let (settings, store) = common.open_store()?;
    let who = DexIdentity {
        unit: settings.store.id.clone(),
        location: settings.store.name.clone(),
    };
    let file = if reset {
        export_and_reset(&store, &who).await
    } else {
        export(&store, &who)
    }
    .context("Failed to read the sales journal")?;
    std::io::stdout()
        .write_all(file.as_bytes())
        .context("Failed to write the DEX file")?;
    Ok(())
}
