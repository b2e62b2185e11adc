//! Test fixtures (feature `test-utils`) shared by this crate's tests and the server's.
//!
//! - [`files`], [`all_bytes`], [`contains`]: read a data dir the way a thief would, to
//!   prove nothing readable is in it.
//! - With the `tpm` feature: [`Swtpm`], a software TPM on loopback for the length of one
//!   test, whose PCRs a test can extend to play "the boot state changed", which can
//!   restart keeping its state (a reboot), and whose dictionary-attack parameters a test
//!   can set; [`tpm2_tools_unseal_share`], the proof with the real `tpm2-tools` that a
//!   share of an envelope unseals outside this crate before a lock and not after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, by path relative to `dir`, with its bytes.
/// Panics on an I/O error (a test fixture).
pub fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let listing =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in listing {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
                .path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_owned();
                out.insert(relative, bytes);
            }
        }
    }
    out
}

/// Every file under `dir`, concatenated in path order.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    files(dir).into_values().flatten().collect()
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: impl AsRef<[u8]>) -> bool {
    let needle = needle.as_ref();
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(feature = "tpm")]
mod swtpm;
#[cfg(feature = "tpm")]
mod tpm2_tools;

#[cfg(feature = "tpm")]
pub use swtpm::Swtpm;
#[cfg(feature = "tpm")]
pub use tpm2_tools::{tpm2_tools_unseal_share, tpm2_tools_unseal_share_at};
