//! `outpost import catalog FILE`: JSON lines, one product per line.
//!
//! Every line is parsed and validated as it is read and written into a new catalog
//! generation; the first bad line stops the import with its line number and nothing
//! of it becomes visible.

use std::io::BufRead;
use std::sync::Arc;

use crate::domain::money::Currency;
use crate::domain::product::parse_product_json;
use crate::store::{ImportMode, ImportSummary, Store, StoreError};

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

/// Import products from JSON lines. `progress` is called with the bytes read so far.
pub fn import_catalog(
    store: &Arc<Store>,
    input: impl BufRead,
    currency: &Currency,
    mode: ImportMode,
    version: &str,
    mut progress: impl FnMut(u64),
) -> Result<ImportSummary, ImportError> {
    let mut import = store.begin_catalog_import(mode)?;
    let mut read = 0u64;
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
        let p = parse_product_json(text).map_err(|e| ImportError::Line {
            line: n,
            // The error's text already names the field.
            message: e.to_string(),
        })?;
        if &p.currency != currency {
            return Err(ImportError::Line {
                line: n,
                message: format!(
                    "currency: {} is not the store's currency {currency}",
                    p.currency
                ),
            });
        }
        import.add(&p, n)?.map_err(|c| ImportError::Line {
            line: n,
            message: c.to_string(),
        })?;
    }
    progress(read);
    if import.imported() == 0 {
        return Err(ImportError::Empty);
    }
    Ok(import.finish(version)?)
}
