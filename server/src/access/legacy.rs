//! Sealing outside an enrolment, and what every sealed key shares: the data key sealed
//! by itself (`sealed-key` format 1, units never enrolled), the configured sealer, and
//! the errors a TPM that will not open a key turns into.

use std::sync::Arc;

use outpost_security::seal::{
    KeyOrigin, SealError, SealedKeyFile, Sealer, SealerKind, SoftwareSealer,
};
use outpost_security::vault::KeyVault;

use super::AccessError;
use crate::store::{Store, StoreError, StoreOptions};

/// The sealed key's file in the data dir.
pub const KEY_FILE: &str = "sealed-key";

/// The legacy (format 1) sealed key, unsealed (or, in a new data dir, created), and the
/// store opened with it.
pub(super) struct Legacy {
    /// The data key (enrolment wraps it into an envelope).
    pub key: outpost_security::seal::DataKey,
    /// The store.
    pub store: Arc<Store>,
    /// The vault over the key.
    pub vault: KeyVault,
}

pub(super) fn open_legacy_key(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<Legacy, AccessError> {
    let data_dir = &settings.data_dir;
    let key_file = SealedKeyFile::new(data_dir.join(KEY_FILE));
    let mut sealer = open_sealer(settings, &key_file)?;
    let (key, origin) = key_file
        .load_or_create(sealer.as_mut())
        .map_err(|e| unseal_error(settings, &key_file, e))?;
    let vault = KeyVault::new(key.clone());
    let store = match Store::open(data_dir, opts, &vault) {
        Ok(store) => store,
        Err(StoreError::WrongKey) if origin == KeyOrigin::Created => {
            if let Err(e) = std::fs::remove_file(key_file.path()) {
                tracing::error!(error = %e, "Failed to remove the sealed key just made for an encrypted data dir");
            }
            return Err(AccessError::KeyMissing(
                key_file.path().display().to_string(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Legacy { key, store, vault })
}

/// The configured sealer. A sealed key made by another kind of sealer is refused
/// first, from its header, so a wrong `sealer` setting writes nothing (the software
/// sealer would otherwise create its key file).
pub(super) fn open_sealer(
    settings: &crate::config::Settings,
    key_file: &SealedKeyFile,
) -> Result<Box<dyn Sealer>, AccessError> {
    let sec = &settings.security;
    let expected = match sec.sealer.as_str() {
        "tpm" => SealerKind::Tpm,
        "software" => SealerKind::Software,
        other => {
            return Err(SealError::Config(format!(
                "sealer {other:?} is unknown: \"tpm\" or \"software\""
            ))
            .into());
        }
    };
    if let Some(found) = key_file.sealed_kind()?
        && found != expected
    {
        return Err(SealError::WrongSealer { expected, found }.into());
    }
    if expected == SealerKind::Tpm {
        return tpm_sealer(sec);
    }
    Ok(Box::new(SoftwareSealer::open(
        &settings.data_dir.join("software-kek"),
        sec.allow_software,
    )?))
}

#[cfg(feature = "tpm")]
fn tpm_sealer(sec: &crate::config::SecuritySettings) -> Result<Box<dyn Sealer>, AccessError> {
    let config = sec.tpm_config();
    tracing::info!(tcti = %config.tcti, pcrs = ?config.pcrs, "Using the TPM sealer");
    match outpost_security::seal::TpmSealer::new(config) {
        Ok(sealer) => Ok(Box::new(sealer)),
        Err(e) => Err(tpm_connect_error(sec, e)),
    }
}

#[cfg(not(feature = "tpm"))]
fn tpm_sealer(_: &crate::config::SecuritySettings) -> Result<Box<dyn Sealer>, AccessError> {
    Err(AccessError::TpmNotBuilt)
}

/// An enrolled unit's TPM share that will not open here: another TPM, or another boot
/// state (PCRs), named with the data dir; anything else unchanged.
pub(super) fn anchor_error(settings: &crate::config::Settings, e: SealError) -> AccessError {
    let sec = &settings.security;
    match e {
        SealError::WrongKey | SealError::PolicyMismatch if sec.sealer == "tpm" => {
            AccessError::ForeignTpm(Box::new(ForeignTpm {
                data_dir: settings.data_dir.display().to_string(),
                key_file: settings.data_dir.join(KEY_FILE).display().to_string(),
                tcti: sec.tcti.clone(),
                pcrs: sec.pcrs.clone(),
                reason: e,
            }))
        }
        e => tpm_connect_error(sec, e),
    }
}

/// A failed TPM connection, with the TCTI that failed; anything else unchanged.
fn tpm_connect_error(sec: &crate::config::SecuritySettings, e: SealError) -> AccessError {
    #[cfg(feature = "tpm")]
    if let SealError::Tpm { op: "connect", .. } = e {
        return AccessError::TpmUnreachable {
            tcti: sec.tcti.clone(),
            source: e,
        };
    }
    let _ = sec;
    e.into()
}

/// A TPM that answers but will not open the sealed key (it belongs to another TPM,
/// or a sealed PCR changed) says so, naming the data dir.
pub(super) fn unseal_error(
    settings: &crate::config::Settings,
    key_file: &SealedKeyFile,
    e: SealError,
) -> AccessError {
    let sec = &settings.security;
    if sec.sealer != "tpm" {
        return e.into();
    }
    match e {
        SealError::WrongKey | SealError::PolicyMismatch => {
            AccessError::ForeignTpm(Box::new(ForeignTpm {
                data_dir: settings.data_dir.display().to_string(),
                key_file: key_file.path().display().to_string(),
                tcti: sec.tcti.clone(),
                // What the blob was sealed to; the setting only applies to new keys.
                pcrs: key_file
                    .sealed_pcrs()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| sec.pcrs.clone()),
                reason: e,
            }))
        }
        e => tpm_connect_error(sec, e),
    }
}

/// Why a data dir's TPM-sealed key does not open here (boxed in [`AccessError`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "the data dir {data_dir} belongs to another TPM or another boot state: its sealed data key {key_file} does not unseal on the TPM at {tcti:?} with PCRs {pcrs:?} as they are now ({reason}). Nothing in the data dir was changed or overwritten. Start it on the machine it was sealed on, in the boot state it was sealed in (undo the firmware, boot loader or Secure Boot change), or give this machine a fresh data dir and let HQ restore it"
)]
pub struct ForeignTpm {
    /// The data dir.
    pub data_dir: String,
    /// Its sealed key.
    pub key_file: String,
    /// The TPM tried.
    pub tcti: String,
    /// The PCRs the key was sealed to.
    pub pcrs: Vec<u8>,
    /// What the TPM said (in the message, not a `source`: printed once).
    pub reason: SealError,
}
