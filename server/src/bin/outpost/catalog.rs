//! `outpost import catalog` and `outpost export catalog`: the catalog as JSON lines,
//! on a stopped server's data dir.

use std::io::{BufReader, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use outpost_server::access::Access;
use outpost_server::config::Settings;
use outpost_server::store::{ImportMode, Store, StoreOptions};

use crate::cli::Common;

/// The settings, and the store and access state of the data dir they name (the
/// caller keeps both for as long as it uses the store).
fn open_store(common: &Common) -> anyhow::Result<(Settings, Arc<Store>, Arc<Access>)> {
    let s = common.settings()?;
    outpost_server::telemetry::init("warn");
    let (store, security) = outpost_server::access::open_data_dir(&s, &StoreOptions::of(&s))
        .with_context(|| format!("Failed to open the data dir {}", s.data_dir.display()))?;
    Ok((s, store, security))
}

/// `outpost export catalog FILE`: the live catalog in SKU order, to `file` ("-":
/// standard output).
pub fn export(file: &Path, common: &Common) -> anyhow::Result<()> {
    let (_, store, _security) = open_store(common)?;
    let mut out: Box<dyn Write> = if file.as_os_str() == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        let f = std::fs::File::create(file)
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

/// `outpost import catalog FILE`: products from `file` ("-": standard input), merged
/// into the catalog or (`replace`) replacing it, as catalog version
/// `catalog_version`; all or nothing.
pub fn import(
    file: &Path,
    replace: bool,
    catalog_version: Option<String>,
    common: &Common,
) -> anyhow::Result<()> {
    let (s, store, _security) = open_store(common)?;
    let (reader, size): (Box<dyn std::io::BufRead>, u64) = if file.as_os_str() == "-" {
        (Box::new(BufReader::new(std::io::stdin().lock())), 0)
    } else {
        let f = std::fs::File::open(file)
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
