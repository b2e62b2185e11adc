//! Enrolment: a unit takes HQ's signed bundle and fixes its trust anchors.
//!
//! The legacy sealed key (format 1, the data key sealed by itself) becomes an envelope
//! (format 2) around the same data key, so nothing is re-encrypted: a TPM share bound to
//! the TPM's lock, the second shares the bundle's policy names, HQ's recovery box. The
//! trust record (anchors, guard state, epoch, time) is written sealed under the data
//! key, the TPM's counters are provisioned, and an identity secret sealed to the TPM
//! (not to its lock) wraps the unit's long-term keys. Order, for power cuts: the record,
//! the identity, then the envelope over the old key file (one atomic rename); until
//! that rename the unit is still unenrolled and enrolling again finishes the job.

use std::path::Path;

use outpost_security::anchor::Secret;
use outpost_security::enroll::{EnrollError, Enrollment, MAX_BUNDLE_BYTES};
use outpost_security::escrow::EscrowPublic;
use outpost_security::fsutil;
use outpost_security::lease::GuardSnapshot;
use outpost_security::seal::{Envelope, HqEscrowKeys, UnlockPolicy};
use outpost_security::trust::{TimeBase, TrustRecord};
use secrecy::SecretString;

use super::AccessError;
use super::anchor::{is_enrolled, open_anchor};
use super::enrolled::IDENTITY_FILE;
use super::legacy::{KEY_FILE, Legacy, open_legacy_key};
use crate::config::Settings;
use crate::store::StoreOptions;

/// The public copy of the bundle in force, beside the sealed key: who this unit is
/// before its data key opens. Not trusted for anything else (the sealed trust record
/// is).
pub const PUBLIC_BUNDLE_FILE: &str = "enrollment.json";

/// Reads a bundle file (bounded).
pub fn read_bundle(path: &Path) -> Result<Vec<u8>, AccessError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        AccessError::Enroll(EnrollError::Malformed(format!(
            "cannot read {}: {e}",
            path.display()
        )))
    })?;
    if meta.len() > MAX_BUNDLE_BYTES {
        return Err(AccessError::Enroll(EnrollError::Malformed(format!(
            "{} is {} bytes, more than a bundle's {MAX_BUNDLE_BYTES}",
            path.display(),
            meta.len()
        ))));
    }
    std::fs::read(path).map_err(|e| {
        AccessError::Enroll(EnrollError::Malformed(format!(
            "cannot read {}: {e}",
            path.display()
        )))
    })
}

/// The public copy of the bundle in force.
pub(super) fn public_bundle(data_dir: &Path) -> Result<Enrollment, AccessError> {
    let path = data_dir.join(PUBLIC_BUNDLE_FILE);
    let json = fsutil::read_private(&path, MAX_BUNDLE_BYTES)
        .map_err(|e| AccessError::Crypto(e.to_string()))?
        .ok_or_else(|| AccessError::TrustMissing(data_dir.display().to_string()))?;
    Ok(Enrollment::verify(&json)?)
}

/// Refuses a config that names other anchors than the ones in force: another bundle,
/// another store or unit id. Leaving them out is fine (the record is what counts).
pub(super) fn check_config(settings: &Settings, record: &TrustRecord) -> Result<(), AccessError> {
    let e = &record.enrollment;
    let defaults = Settings::default();
    let differs = |field: &'static str, set: &str, default: &str, enrolled: &str| {
        if set != default && set != enrolled {
            Err(AccessError::ConfigDisagrees {
                field,
                detail: format!("the config says {set:?}, this unit is enrolled as {enrolled:?}"),
            })
        } else {
            Ok(())
        }
    };
    differs(
        "store.id",
        &settings.store.id,
        &defaults.store.id,
        &e.store_id,
    )?;
    differs(
        "sync.unit_id",
        &settings.sync.unit_id,
        &defaults.sync.unit_id,
        &e.unit_id,
    )?;
    if let Some(path) = &settings.security.enrollment {
        let named = Enrollment::verify(&read_bundle(path)?)?;
        if named != *e {
            return Err(AccessError::ConfigDisagrees {
                field: "security.enrollment",
                detail: format!(
                    "{} is not the enrolment in force (HQ changes a unit's anchors with a signed update, not through the config file); remove the setting or point it at the bundle this unit was enrolled with",
                    path.display()
                ),
            });
        }
    }
    Ok(())
}

/// What an enrolment leaves open: the unit's key is in memory, so it serves at once.
pub(super) struct Enrolled {
    pub store: std::sync::Arc<crate::store::Store>,
    pub vault: outpost_security::vault::KeyVault,
    pub anchor: Box<dyn outpost_security::anchor::Anchor>,
    pub envelope: Envelope,
    pub record: TrustRecord,
}

/// Enrols the unit in `settings.data_dir` with the signed bundle `json` (and the
/// store manager's PIN when its policy accepts one): `outpost enroll`. A unit already
/// enrolled with the same bundle is left as it is (`Ok(false)`); with another bundle
/// it is refused.
pub fn enroll_data_dir(
    settings: &Settings,
    opts: &StoreOptions,
    json: &[u8],
    pin: Option<&SecretString>,
) -> Result<bool, AccessError> {
    Ok(enroll(settings, opts, json, pin)?.is_some())
}

/// [`enroll_data_dir`] that also hands back the new data key's ciphers for
/// `purposes`, so secrets made with the enrolment (the mesh identity, HQ's CA pin) are
/// sealed under it before the data dir is ever opened. `None`: the data dir was
/// enrolled with this bundle already.
pub fn enroll_data_dir_with_ciphers(
    settings: &Settings,
    opts: &StoreOptions,
    json: &[u8],
    purposes: &[&str],
) -> Result<Option<Vec<outpost_security::vault::Cipher>>, AccessError> {
    let Some(enrolled) = enroll(settings, opts, json, None)? else {
        return Ok(None);
    };
    purposes
        .iter()
        .map(|p| {
            enrolled
                .vault
                .cipher(p)
                .map_err(|e| AccessError::Crypto(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// [`enroll_data_dir`], keeping what it opened.
pub(super) fn enroll(
    settings: &Settings,
    opts: &StoreOptions,
    json: &[u8],
    pin: Option<&SecretString>,
) -> Result<Option<Enrolled>, AccessError> {
    let bundle = Enrollment::verify(json)?;
    let data_dir = &settings.data_dir;
    let key_path = data_dir.join(KEY_FILE);
    if is_enrolled(&key_path)? {
        let current = public_bundle(data_dir)?;
        if current == bundle {
            return Ok(None);
        }
        return Err(AccessError::ConfigDisagrees {
            field: "enrolment bundle",
            detail: format!(
                "this unit is already enrolled as {}/{} (issued {}); HQ changes that with a signed update",
                current.store_id, current.unit_id, current.issued_at
            ),
        });
    }
    if bundle.unlock.pin && pin.is_none() {
        return Err(AccessError::Enroll(EnrollError::Malformed(
            "this bundle's unlock policy accepts a PIN: enrol with `outpost enroll --bundle FILE --pin-stdin` and the store manager's PIN".into(),
        )));
    }
    for (field, set, enrolled) in [
        ("store.id", &settings.store.id, &bundle.store_id),
        ("sync.unit_id", &settings.sync.unit_id, &bundle.unit_id),
    ] {
        let default = if field == "store.id" {
            Settings::default().store.id
        } else {
            Settings::default().sync.unit_id
        };
        if *set != default && set != enrolled {
            return Err(AccessError::ConfigDisagrees {
                field,
                detail: format!("the config says {set:?}, the bundle enrols {enrolled:?}"),
            });
        }
    }
    let keys = bundle.escrow_keys()?;
    let point = |k: [u8; 32]| {
        EscrowPublic::from_bytes(&k)
            .map_err(|e| AccessError::Enroll(EnrollError::Malformed(format!("escrow key: {e}"))))
    };
    let recovery = point(keys.recovery.ok_or_else(|| {
        AccessError::Enroll(EnrollError::Malformed(
            "escrow_recovery_key is required".into(),
        ))
    })?)?;
    let share = match keys.share {
        Some(k) => point(k)?,
        // A bundle without HQ's share names no HQ factor (checked by `verify`); the
        // envelope still wants a share key for its format: the recovery key's point is
        // never used for a share then.
        None => recovery,
    };
    let policy = UnlockPolicy {
        hq: bundle.unlock.hq,
        pin: bundle.unlock.pin,
    };

    let Legacy { key, store, vault } = open_legacy_key(settings, opts)?;
    let mut anchor = open_anchor(settings)?;
    anchor.provision()?;
    let envelope = Envelope::create(
        anchor.as_mut(),
        &key,
        policy,
        Some(&HqEscrowKeys { share, recovery }),
        pin,
    )?;
    let identity = Secret::generate();
    let identity_blob = anchor.seal_identity(&identity)?;
    // The device key (if the unit made one) moves from the data key to the identity
    // secret, which a locked unit can still open.
    let identity_vault = outpost_security::vault::KeyVault::new(
        outpost_security::seal::DataKey::from_bytes(*identity.expose()),
    );
    let crypto = |e: outpost_security::vault::CryptoError| AccessError::Crypto(e.to_string());
    outpost_security::tls::DeviceIdentity::reseal_key(
        data_dir,
        &vault.cipher(super::DEVICE_KEY_PURPOSE).map_err(crypto)?,
        &identity_vault
            .cipher(super::DEVICE_KEY_PURPOSE)
            .map_err(crypto)?,
    )
    .map_err(|e| AccessError::Crypto(e.to_string()))?;
    let epoch = anchor.epoch()? + 1;
    let record = TrustRecord {
        enrollment: bundle.clone(),
        enrollment_json: String::from_utf8_lossy(json).into_owned(),
        guard: GuardSnapshot::default(),
        epoch,
        time: TimeBase {
            trusted_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
            anchor_ms: anchor.clock_ms()?,
        },
    };
    record.save(data_dir, &vault)?;
    anchor.advance_epoch(epoch)?;
    fsutil::write_private(&data_dir.join(IDENTITY_FILE), &identity_blob)
        .map_err(|e| AccessError::Crypto(e.to_string()))?;
    fsutil::write_private(&data_dir.join(PUBLIC_BUNDLE_FILE), json)
        .map_err(|e| AccessError::Crypto(e.to_string()))?;
    envelope.write(&key_path)?;
    // The legacy sealer's own key (the software sealer's KEK) opens nothing any more.
    let kek = data_dir.join("software-kek");
    if kek.exists()
        && let Err(e) = fsutil::destroy(&kek)
    {
        tracing::warn!(error = %e, "Failed to destroy the legacy sealer's key file");
    }
    tracing::warn!(
        store = %bundle.store_id,
        unit = %bundle.unit_id,
        unlock = %policy,
        "Enrolled: HQ's key, the lease policy and the lock are fixed in the trust record and the TPM"
    );
    Ok(Some(Enrolled {
        store,
        vault,
        anchor,
        envelope,
        record,
    }))
}
