//! Opening a data dir: enrolled or not, enrolling it first when the config names a
//! bundle, for the server and for the offline commands.

use std::sync::Arc;

use super::legacy::{KEY_FILE, Legacy, open_legacy_key};
use super::unseal::Opening;
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
    if !super::anchor::is_enrolled(&key_path)? {
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

/// A unit that was never enrolled: the data key sealed by itself (`sealed-key` format
/// 1), no lease, no lock. Refused on a TPM that holds an enrolment: a unit that was
/// enrolled never comes up unenrolled.
pub(super) fn open_unenrolled(
    settings: &crate::config::Settings,
    opts: &StoreOptions,
) -> Result<(Arc<Store>, Arc<Access>), AccessError> {
    let data_dir = &settings.data_dir;
    if settings.security.sealer == "tpm"
        && super::anchor::open_anchor(settings)?.is_provisioned()?
    {
        return Err(AccessError::EnrolledTpm(data_dir.display().to_string()));
    }
    let Legacy { store, vault, .. } = open_legacy_key(settings, opts)?;
    let security = Access::open(store.clone(), vault, None, settings)?;
    Ok((store, Arc::new(security)))
}
