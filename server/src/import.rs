//! `outpost import catalog FILE`: JSON lines, one product per line.
//!
//! Every line is parsed and validated as it is read and written into a new catalog
//! generation (parsing and adding on two threads, see [`import_catalog`]); the first bad line stops the import with its line number and nothing
//! of it becomes visible.

use std::io::BufRead;
use std::sync::Arc;

use crate::domain::money::Currency;
use crate::domain::product::{Product, parse_product_json};
use crate::store::{CatalogImport, ImportMode, ImportSummary, Store, StoreError};

/// Why an import failed. Nothing of a failed import is applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A line is not a valid product.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: u64,
        /// What is wrong, with the field when known.
        message: String,
    },
    /// The input could not be read.
    #[error("cannot read the input: {0}")]
    Read(#[from] std::io::Error),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input had no product.
    #[error("the input has no products")]
    Empty,
}

/// Lines parsed before they are handed to the thread that adds them.
const BATCH: usize = 1024;
/// Batches parsed ahead of that thread.
const QUEUE: usize = 8;

/// Import products from JSON lines. `progress` is called with the bytes read so far.
///
/// Two threads: this one reads, parses and validates the lines; a second one adds them
/// to the import (duplicate checks, the stored JSON, the index entries), which in turn
/// may stream the `products` tree to a writer thread (see `CatalogImport`). The first
/// error by line number wins: the adding thread only ever sees lines before the first
/// line that failed to parse.
pub fn import_catalog(
    store: &Arc<Store>,
    input: impl BufRead,
    currency: &Currency,
    mode: ImportMode,
    version: &str,
    mut progress: impl FnMut(u64),
) -> Result<ImportSummary, ImportError> {
    let import = store.begin_catalog_import(mode)?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, Product)>>(QUEUE);
    let (parsed, added) = std::thread::scope(|scope| {
        let adder = std::thread::Builder::new()
            .name("outpost-import-add".into())
            .spawn_scoped(scope, move || add_all(import, rx))
            .map_err(ImportError::Read)?;
        let parsed = parse_all(input, currency, &mut progress, tx);
        let added = adder.join().unwrap_or_else(|_| {
            Err(ImportError::Store(StoreError::Corrupt(
                "the import thread panicked".into(),
            )))
        });
        Ok::<_, ImportError>((parsed, added))
    })?;
    // An error of the adding thread is about an earlier line than a parse error.
    let import = added?;
    parsed?;
    if import.imported() == 0 {
        return Err(ImportError::Empty);
    }
    Ok(import.finish(version)?)
}

/// Add every parsed product until the channel closes or one is refused.
fn add_all(
    mut import: CatalogImport,
    rx: std::sync::mpsc::Receiver<Vec<(u64, Product)>>,
) -> Result<CatalogImport, ImportError> {
    for batch in rx {
        for (n, p) in batch {
            import.add(&p, n)?.map_err(|c| ImportError::Line {
                line: n,
                message: c.to_string(),
            })?;
        }
    }
    Ok(import)
}

/// Read, parse and validate every line, sending them on in batches. Stops at the
/// first bad line, or when the adding thread stopped (its error is the one reported).
fn parse_all(
    input: impl BufRead,
    currency: &Currency,
    progress: &mut impl FnMut(u64),
    tx: std::sync::mpsc::SyncSender<Vec<(u64, Product)>>,
) -> Result<(), ImportError> {
    let mut read = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    for (i, line) in input.split(b'\n').enumerate() {
        let n = i as u64 + 1;
        let line = line?;
        read += line.len() as u64 + 1;
        if n.is_multiple_of(4096) {
            progress(read);
        }
        let text = line.strip_suffix(b"\r").unwrap_or(&line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = parse_product_json(text).map_err(|e| ImportError::Line {
            line: n,
            // The error's text already names the field.
            message: e.to_string(),
        });
        let p = match parsed {
            Ok(p) if &p.currency != currency => Err(ImportError::Line {
                line: n,
                message: format!(
                    "currency: {} is not the store's currency {currency}",
                    p.currency
                ),
            }),
            other => other,
        };
        match p {
            Ok(p) => batch.push((n, p)),
            Err(e) => {
                // The lines before it still go to the adding thread: one of them may
                // be refused, and that line comes first.
                let _ = tx.send(batch);
                return Err(e);
            }
        }
        if batch.len() >= BATCH
            && tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
        {
            // The adding thread refused a product: its error is reported.
            return Ok(());
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    progress(read);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, gtin_seed: u64) -> String {
        let body = format!("29{gtin_seed:010}");
        let check = crate::domain::gtin::check_digit(&body).unwrap();
        format!(
            r#"{{"sku":"{sku}","barcodes":["{body}{check}"],"name":"Green Tea {sku}","category":"tea","price":100,"currency":"EUR","tax_class":"standard"}}"#
        )
    }

    fn run(store: &Arc<Store>, lines: &[String]) -> Result<ImportSummary, ImportError> {
        let text = lines.join("\n");
        import_catalog(
            store,
            text.as_bytes(),
            &Currency::EUR,
            ImportMode::Replace,
            "v",
            |_| {},
        )
    }

    fn failed_line(r: Result<ImportSummary, ImportError>) -> u64 {
        match r {
            Err(ImportError::Line { line, .. }) => line,
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn the_first_bad_line_is_reported_whichever_thread_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::crypt::test_store(dir.path());
        // Enough lines that the parser is several batches ahead of the adding thread.
        let mut lines: Vec<String> = (0..5_000).map(|i| line(&format!("S{i:05}"), i)).collect();
        // A duplicate SKU (found by the adding thread) before a malformed line (found
        // by the parser): the duplicate's line wins.
        lines[3_000] = line("S00010", 90_000);
        lines[4_000] = "{\"sku\":".into();
        assert_eq!(failed_line(run(&store, &lines)), 3_001);
        // The malformed line first: it wins, though a duplicate follows.
        lines[2_000] = "{\"sku\":".into();
        assert_eq!(failed_line(run(&store, &lines)), 2_001);
        // A duplicate on the very last line, after every batch was sent.
        let mut lines: Vec<String> = (0..3_000).map(|i| line(&format!("S{i:05}"), i)).collect();
        lines.push(line("S00001", 90_001));
        assert_eq!(failed_line(run(&store, &lines)), 3_001);
        assert_eq!(store.catalog().generation, 0, "nothing was applied");
        // And a clean file imports every line.
        lines.pop();
        let s = run(&store, &lines).unwrap();
        assert_eq!(s.imported, 3_000);
        assert_eq!(
            store.catalog().product("S02999").unwrap().unwrap().name,
            "Green Tea S02999"
        );
    }
}
