//! Opening a data dir: the configured sealer, the data key it unseals, the store and
//! the access layer opened with that key.

use std::sync::Arc;

use outpost_security::seal::{
    KeyOrigin, SealError, SealedKeyFile, Sealer, SealerKind, SoftwareSealer,
};
use outpost_security::vault::KeyVault;

use super::{Access, AccessError};
use crate::store::{Store, StoreError, StoreOptions};

/// Open a data dir: unseal the data key, open the store with it and the access layer,
/// and apply the lockdown the restored lease guard asks for. For the offline commands
/// (`outpost terminals`, `users`, `import`, `export`, `demo`) and tests: an enrolled
/// unit that needs a second factor is refused here with what it needs
/// ([`AccessError::NeedsFactor`]); the server waits for it instead
/// ([`unseal_data_dir`], [`super::unseal::Pending`]).
pub fn open_data_dir(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<(Arc<Store>, Arc<Access>), AccessError> {
    match unseal_data_dir(settings, opts)? {
        Opening::Open(store, access) => {
            access.enforce_lockdown();
            Ok((store, access))
        }
        Opening::Waiting(pending) => Err(AccessError::NeedsFactor(pending.needs_text())),
    }
}

/// How [`unseal_data_dir`] went.
#[derive(Debug)]
pub enum Opening {
    /// The data key is in memory: the store and the access layer are open. The lockdown
    /// a restored guard asks for is not applied yet: the server finishes building
    /// (loading what it keeps in memory) and then calls [`Access::enforce_lockdown`].
    Open(Arc<Store>, Arc<Access>),
    /// An enrolled unit whose data key needs HQ's share, the manager's PIN, or (locked
    /// in its TPM) HQ's recovery first.
    Waiting(super::unseal::Pending),
}

/// Unseal the data key (`[security] sealer`: `tpm` or `software`; see
/// docs/security.md) and open the store and the access layer with it, enrolling the
/// unit first when `[security] enrollment` names a bundle and it is not enrolled yet.
/// A sealed key that will not open (another TPM, changed PCRs, another sealer) is an
/// error that changes nothing. A data dir that already holds data under another key is
/// refused before anything is written; when the sealed key was just created for such a
/// dir it is deleted again, so no new key is left over old data.
pub fn unseal_data_dir(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<Opening, AccessError> {
    let data_dir = &settings.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| AccessError::Store(StoreError::from(e)))?;
    let key_path = data_dir.join(KEY_FILE);
    if !super::unseal::is_enrolled(&key_path)? {
        let Some(bundle) = &settings.security.enrollment else {
            return open_unenrolled(settings, opts).map(|(s, a)| Opening::Open(s, a));
        };
        let json = super::enrol::read_bundle(bundle)?;
        if let Some(e) = super::enrol::enroll(settings, opts, &json, None)? {
            let trust =
                super::enrolled::Trust::new(data_dir, &key_path, e.anchor, e.envelope, e.record)?;
            let access = Access::open(e.store.clone(), e.vault, Some(trust), settings)?;
            return Ok(Opening::Open(e.store, Arc::new(access)));
        }
    }
    super::unseal::open_enrolled(settings, opts)
}

/// The sealed key's file in the data dir.
pub const KEY_FILE: &str = "sealed-key";

/// A unit that was never enrolled: the data key sealed by itself (`sealed-key` format
/// 1), no lease, no lock. Refused on a TPM that holds an enrolment: a unit that was
/// enrolled never comes up unenrolled.
pub(super) fn open_unenrolled(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<(Arc<Store>, Arc<Access>), AccessError> {
    let data_dir = &settings.data_dir;
    if settings.security.sealer == "tpm"
        && super::unseal::open_anchor(settings)?.is_provisioned()?
    {
        return Err(AccessError::EnrolledTpm(data_dir.display().to_string()));
    }
    let Legacy { store, vault, .. } = open_legacy_key(settings, opts)?;
    let security = Access::open(store.clone(), vault, None, settings)?;
    Ok((store, Arc::new(security)))
}

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
