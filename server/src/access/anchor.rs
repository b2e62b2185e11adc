//! The trust anchor a data dir's settings name (the TPM, or the software emulation for
//! development), and whether a data dir is enrolled.

use std::path::Path;

use outpost_security::anchor::{Anchor, SoftwareAnchor};
use outpost_security::seal::{BLOB_MAGIC, SealError};

use super::AccessError;
use crate::config::Settings;

/// The software anchor's state file in the data dir (development only).
pub const SOFTWARE_ANCHOR_FILE: &str = "software-anchor";

/// Whether the sealed key at `key_path` is an enrolled envelope (format 2).
pub fn is_enrolled(key_path: &Path) -> Result<bool, AccessError> {
    use std::io::Read as _;
    let mut head = [0u8; 7];
    match std::fs::File::open(key_path) {
        Ok(mut f) => match f.read_exact(&mut head) {
            Ok(()) => Ok(&head[..6] == BLOB_MAGIC && head[6] == 2),
            Err(_) => Ok(false),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(AccessError::Store(e.into())),
    }
}

/// The trust anchor `[security] sealer` names: the TPM (feature `tpm`), or the software
/// emulation in the data dir (development, refused unless allowed).
pub fn open_anchor(settings: &Settings) -> Result<Box<dyn Anchor>, AccessError> {
    let sec = &settings.security;
    match sec.sealer.as_str() {
        "tpm" => tpm_anchor(sec),
        "software" => Ok(Box::new(SoftwareAnchor::open(
            &settings.data_dir.join(SOFTWARE_ANCHOR_FILE),
            sec.allow_software,
        )?)),
        other => Err(SealError::Config(format!(
            "sealer {other:?} is unknown: \"tpm\" or \"software\""
        ))
        .into()),
    }
}

#[cfg(feature = "tpm")]
fn tpm_anchor(sec: &crate::config::SecuritySettings) -> Result<Box<dyn Anchor>, AccessError> {
    match outpost_security::anchor::TpmAnchor::new(sec.tpm_config()) {
        Ok(a) => Ok(Box::new(a)),
        Err(e @ SealError::Tpm { op: "connect", .. }) => Err(AccessError::TpmUnreachable {
            tcti: sec.tcti.clone(),
            source: e,
        }),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(feature = "tpm"))]
fn tpm_anchor(_: &crate::config::SecuritySettings) -> Result<Box<dyn Anchor>, AccessError> {
    Err(AccessError::TpmNotBuilt)
}
