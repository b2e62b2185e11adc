//! HQ's CA, fixed into the unit's protected state: the SHA-256 of the CA certificate
//! the unit was enrolled with is kept in `<data-dir>/hq-ca.pin`, sealed under the data
//! key. At every start of an enrolled unit the CA file `sync.hq_ca` names must still
//! hash to it; a CA swapped on the disk (or a config pointed at another one) would let
//! a stranger pose as HQ to the uplink and the gRPC port, so the HQ link stays off and
//! the technician is told why, while the unit goes on selling.
//!
//! A token enrolment seals the pin of the CA HQ answered ([`seal`]); a unit enrolled
//! with a bundle file gets the pin of its configured CA at its first start.

use std::path::{Path, PathBuf};

use outpost_security::fsutil::{self, FsError};
use outpost_security::tls_pin::CaPin;
use outpost_security::vault::Cipher;

use super::{Access, AccessError};
use crate::config::Settings;

/// The data-key purpose of the sealed pin.
pub const PIN_PURPOSE: &str = "file:hq-ca-pin";
/// The sealed pin, in the data dir.
pub const PIN_FILE: &str = "hq-ca.pin";
/// Bound to the ciphertext.
const PIN_AD: &[u8] = b"outpost hq-ca.pin v1";

/// Why HQ's CA is not the one the unit was enrolled with, or cannot be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The CA file hashes to another pin.
    #[error(
        "HQ's CA {path} ({found}) is not the CA this unit was enrolled with ({pinned}): it was replaced, or the config names another file. The HQ link stays off: put the enrolled CA back, or re-enrol the unit"
    )]
    Mismatch {
        /// `sync.hq_ca`.
        path: PathBuf,
        /// The pin kept at enrolment.
        pinned: CaPin,
        /// The file's pin.
        found: CaPin,
    },
    /// The CA file or the sealed pin cannot be read.
    #[error("HQ's CA pin cannot be checked: {0}")]
    Unreadable(String),
    /// The data key is not available.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The sealed pin cannot be written.
    #[error(transparent)]
    File(#[from] FsError),
}

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    /// Not an enrolled unit with an HQ CA: nothing to check.
    NotApplicable,
    /// The CA is the one pinned.
    Matches,
    /// No pin was kept yet (a unit enrolled with a bundle file): this CA's is now.
    PinnedNow,
}

/// Seals `pin` as HQ's CA pin in `data_dir`, with `cipher` (for [`PIN_PURPOSE`]).
pub fn seal(data_dir: &Path, cipher: &Cipher, pin: CaPin) -> Result<(), FsError> {
    fsutil::write_private(
        &data_dir.join(PIN_FILE),
        &cipher.seal(PIN_AD, &pin.to_bytes()),
    )
}

/// Checks the configured HQ CA of an open, enrolled unit against its sealed pin (and
/// pins it when none was kept).
pub fn check(settings: &Settings, access: &Access) -> Result<PinCheck, PinError> {
    let (Some(ca), Some(_)) = (&settings.sync.hq_ca, access.hq_verifying_key()) else {
        return Ok(PinCheck::NotApplicable);
    };
    let pem = std::fs::read(ca)
        .map_err(|e| PinError::Unreadable(format!("cannot read {}: {e}", ca.display())))?;
    let found = CaPin::of_pem("HQ's CA", &pem).map_err(|e| PinError::Unreadable(e.to_string()))?;
    let cipher = access.cipher(PIN_PURPOSE)?;
    let path = settings.data_dir.join(PIN_FILE);
    let Some(sealed) = fsutil::read_private(&path, 1024)? else {
        seal(&settings.data_dir, &cipher, found)?;
        tracing::info!(ca = %ca.display(), pin = %found, "Pinned HQ's CA in the unit's protected state");
        return Ok(PinCheck::PinnedNow);
    };
    let plain = cipher.open(PIN_AD, &sealed).map_err(|e| {
        PinError::Unreadable(format!(
            "{} does not open under this data dir's key ({e}): it was changed or belongs to another unit",
            path.display()
        ))
    })?;
    let pinned: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| PinError::Unreadable(format!("{} is not a pin", path.display())))?;
    let pinned = CaPin::from_bytes(pinned);
    if pinned == found {
        Ok(PinCheck::Matches)
    } else {
        Err(PinError::Mismatch {
            path: ca.clone(),
            pinned,
            found,
        })
    }
}
