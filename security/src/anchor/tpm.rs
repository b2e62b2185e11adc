//! The TPM 2.0 trust anchor (cargo feature `tpm`).
//!
//! # What lives in the TPM
//!
//! | handle | what | attributes |
//! |---|---|---|
//! | NV `0x01804F50` ([`LOCK_COUNTER_INDEX`]) | the lock counter | `TPM_NT_COUNTER`, 8 bytes, authRead + authWrite with an empty authValue, noDA |
//! | NV `0x01804F51` ([`EPOCH_COUNTER_INDEX`]) | the epoch counter | the same |
//! | persistent `0x81404F50` ([`LOCK_KEY_HANDLE`]) | the lock key | KeyedHash object created by the TPM under the primary key, random content, empty authValue, `userWithAuth`, noDA, `fixedTPM`, `fixedParent` |
//!
//! The handles are in the owner ranges of the TCG handle registry (NV `0x01800000`–
//! `0x01BFFFFF`; persistent `0x81000000`–`0x817FFFFF`, outside the sub-ranges reserved
//! for storage and endorsement primary keys). The owner hierarchy's authValue is
//! assumed empty, as it is on a TPM nobody took ownership of; the endorsement
//! hierarchy's too (for the clock).
//!
//! # The lock
//!
//! A share's policy is `TPM2_PolicyPCR(configured PCRs)` then `TPM2_PolicySecret(lock
//! key)`. PolicySecret names the lock key in the policy digest by its *Name*, a hash of
//! its public area, which commits to the random value only the TPM ever held (the key's
//! private area is never written anywhere: it is created, loaded, made persistent, and
//! its blob dropped). [`Anchor::lock`] evicts the lock key: from then on no policy
//! session can satisfy PolicySecret with that Name, on any OS, because nobody can make
//! an object with the same Name again (a public-only copy loaded with
//! `TPM2_LoadExternal` has the Name but no authValue, and PolicySecret needs one).
//! Then it increments the lock counter, which records that a lock happened. The next
//! [`Anchor::seal_share`] makes a new lock key; shares sealed then are bound to it.
//!
//! Why not `TPM2_PolicyNV` on the lock counter (the same effect, with the counter
//! itself as the lock)? `tss-esapi` 7 has no safe wrapper for `PolicyNV` (nor for
//! `PolicyCounterTimer`), and this workspace forbids `unsafe`. PolicySecret over a
//! TPM-resident key gives the same guarantees: one-way, effective before `lock`
//! returns, enforced by the TPM, reproducible with `tpm2-tools`
//! (`tpm2_policysecret -c 0x81404F50`).
//!
//! The order inside `lock` (evict, then increment) means a power cut between the two
//! leaves the shares dead and the counter one short, never the reverse. A share is
//! reported [`SealError::Locked`] when the lock key is missing or has another Name than
//! the one recorded in the blob, or when the lock counter differs from the value
//! recorded (someone incremented it with `tpm2_nvincrement`: a lock all the same);
//! otherwise a policy failure is [`SealError::PolicyMismatch`] (PCRs).
//!
//! # The PIN
//!
//! A PIN share adds `TPM2_PolicyAuthValue`: the object's authValue is BLAKE3
//! `derive_key("outpost tpm pin v1", salt ‖ PIN)` with a random 16-byte salt per blob
//! (32 bytes, the SHA-256 limit), and the object is **not** noDA, so every wrong PIN
//! counts toward the TPM's dictionary-attack lockout: after `TPM_PT_MAX_AUTH_FAIL`
//! failures the TPM refuses every DA-protected authorization, forgiving one failure per
//! `TPM_PT_LOCKOUT_INTERVAL` seconds (the TPM's own settings; a fresh swtpm has 3 and
//! 1000 s). [`Anchor::pin_lockout`] reads
//! those values; [`SealError::PinLockedOut`] carries the interval. A technician sees
//! "Too many wrong PINs… one more attempt in at most N s" and either waits, or resets
//! the counter with the lockout authorization (`tpm2_dictionarylockout
//! --clear-lockout`), or unlocks through HQ instead. A power cut after a failed attempt
//! may count as one more failure (the TPM cannot tell it from an attack that pulls the
//! plug to avoid the count).
//!
//! # Blob payloads (after the 9-byte anchor header)
//!
//! - share and PIN: PCR bitmap (u32 LE), lock count at sealing (u64 LE), the lock key's
//!   Name (`u16` BE length first), for PIN 16 bytes of salt, then the two areas: a
//!   `u16` BE length and the marshalled `TPMT_PUBLIC`, a `u16` BE length and the
//!   `TPM2B_PRIVATE` buffer (so they are a `TPM2B_PUBLIC` and a `TPM2B_PRIVATE` exactly
//!   as `tpm2_load` reads them);
//! - identity: PCR bitmap, then the two areas.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use tss_esapi::Context;
use tss_esapi::attributes::{NvIndexAttributesBuilder, ObjectAttributesBuilder};
use tss_esapi::constants::nv_index_type::NvIndexType;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::{CapabilityType, PropertyTag};
use tss_esapi::handles::{
    AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle,
    TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::resource_handles::{NvAuth, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, CapabilityData, Data, Digest, KeyedHashScheme, Nonce, NvPublic, NvPublicBuilder, Private,
    Public, PublicBuilder, PublicKeyedHashParameters, SensitiveData, SignatureScheme,
};
use zeroize::Zeroizing;

use super::{Anchor, PinLockout, Purpose, Secret, blob_header, blob_payload};
use crate::seal::{SealError, SealerKind};
use crate::tpm::{self as plumbing, Primary, SealedTemplate, TpmConfig, response_kind, tpm};

/// NV index of the lock counter.
pub const LOCK_COUNTER_INDEX: u32 = 0x0180_4F50;
/// NV index of the epoch counter.
pub const EPOCH_COUNTER_INDEX: u32 = 0x0180_4F51;
/// Persistent handle of the lock key.
pub const LOCK_KEY_HANDLE: u32 = 0x8140_4F50;
/// At most this many increments per [`Anchor::advance_epoch`]: each is an NV write, and
/// callers move one epoch at a time.
pub const MAX_EPOCH_STEP: u64 = 1024;

/// The trust anchor in a TPM 2.0 (see the module docs).
///
/// Holds only its configuration: each call opens its own TPM context, so the anchor is
/// `Send` and nothing transient stays loaded in the TPM between calls.
pub struct TpmAnchor {
    config: TpmConfig,
    pcr_bitmap: u32,
}

impl fmt::Debug for TpmAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmAnchor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A parsed share, PIN or identity blob.
pub(crate) struct TpmBlob<'a> {
    pub bitmap: u32,
    /// Lock count and lock key Name at sealing (share and PIN only).
    pub lock: Option<(u64, &'a [u8])>,
    pub salt: Option<[u8; 16]>,
    /// The stored `TPM2B_PUBLIC` then `TPM2B_PRIVATE`, length prefixes included.
    areas: &'a [u8],
}

impl<'a> TpmBlob<'a> {
    pub(crate) fn parse(blob: &'a [u8], purpose: Purpose) -> Result<Self, SealError> {
        let mut rest = blob_payload(blob, SealerKind::Tpm, purpose)?;
        let mut word = [0u8; 4];
        word.copy_from_slice(plumbing::take(&mut rest, 4, "PCR bitmap")?);
        let bitmap = plumbing::check_bitmap(u32::from_le_bytes(word))?;
        let lock = if purpose == Purpose::Identity {
            None
        } else {
            let mut count = [0u8; 8];
            count.copy_from_slice(plumbing::take(&mut rest, 8, "lock count")?);
            let name = plumbing::take_sized(&mut rest, "lock key name")?;
            Some((u64::from_le_bytes(count), name))
        };
        let salt = if purpose == Purpose::Pin {
            let mut salt = [0u8; 16];
            salt.copy_from_slice(plumbing::take(&mut rest, 16, "PIN salt")?);
            Some(salt)
        } else {
            None
        };
        let parsed = Self {
            bitmap,
            lock,
            salt,
            areas: rest,
        };
        // Unparsable areas or trailing bytes fail here rather than at the TPM.
        parsed.areas()?;
        Ok(parsed)
    }

    pub(crate) fn areas(&self) -> Result<(Public, Private), SealError> {
        let mut rest = self.areas;
        let areas = plumbing::take_areas(&mut rest)?;
        if !rest.is_empty() {
            return Err(SealError::Malformed(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        Ok(areas)
    }

    /// The stored `TPM2B_PUBLIC` and `TPM2B_PRIVATE` (length prefixes included): the
    /// files `tpm2_load -u` and `-r` read.
    pub(crate) fn tpm2b_areas(&self) -> (&'a [u8], &'a [u8]) {
        let public_len = 2 + usize::from(u16::from_be_bytes([self.areas[0], self.areas[1]]));
        self.areas.split_at(public_len)
    }
}

fn pin_auth(salt: &[u8; 16], pin: &SecretString) -> Result<Auth, SealError> {
    let mut input = Zeroizing::new(Vec::with_capacity(16 + pin.expose_secret().len()));
    input.extend_from_slice(salt);
    input.extend_from_slice(pin.expose_secret().as_bytes());
    let value = Zeroizing::new(blake3::derive_key("outpost tpm pin v1", &input));
    Auth::try_from(value.to_vec()).map_err(tpm("build the PIN authValue"))
}

/// Opens the NV index at `index`, `None` when it is not defined.
fn nv_index(ctx: &mut Context, index: u32) -> Result<Option<(NvIndexHandle, NvPublic)>, SealError> {
    let handle = NvIndexTpmHandle::new(index).map_err(tpm("NV index handle"))?;
    let object = match ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(handle)))
    {
        Ok(object) => object,
        Err(e) if response_kind(&e) == Some(Tss2ResponseCodeKind::Handle) => return Ok(None),
        Err(e) => return Err(tpm("open NV index")(e)),
    };
    let nv = NvIndexHandle::from(object);
    let (public, _) = ctx
        .execute_without_session(|ctx| ctx.nv_read_public(nv))
        .map_err(tpm("read NV index public area"))?;
    Ok(Some((nv, public)))
}

fn counter_attributes_ok(public: &NvPublic) -> bool {
    let a = public.attributes();
    matches!(a.index_type(), Ok(NvIndexType::Counter))
        && a.auth_read()
        && a.auth_write()
        && a.no_da()
        && public.data_size() == 8
}

/// Opens a counter, checking that the index holds what this crate defines there.
fn counter(ctx: &mut Context, index: u32) -> Result<Option<(NvIndexHandle, bool)>, SealError> {
    match nv_index(ctx, index)? {
        None => Ok(None),
        Some((handle, public)) if counter_attributes_ok(&public) => {
            Ok(Some((handle, public.attributes().written())))
        }
        Some(_) => Err(SealError::Config(format!(
            "NV index {index:#010x} exists but is not the counter this crate defines there \
             (another program uses it); free it or use another TPM"
        ))),
    }
}

fn define_counter(ctx: &mut Context, index: u32) -> Result<NvIndexHandle, SealError> {
    let attributes = NvIndexAttributesBuilder::new()
        .with_nv_index_type(NvIndexType::Counter)
        .with_auth_read(true)
        .with_auth_write(true)
        .with_no_da(true)
        .build()
        .map_err(tpm("build counter attributes"))?;
    let public = NvPublicBuilder::new()
        .with_nv_index(NvIndexTpmHandle::new(index).map_err(tpm("NV index handle"))?)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(8)
        .build()
        .map_err(tpm("build counter public area"))?;
    ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.nv_define_space(Provision::Owner, None, public)
    })
    .map_err(tpm("define NV counter"))
}

fn read_counter(ctx: &mut Context, handle: NvIndexHandle) -> Result<u64, SealError> {
    let data = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_read(NvAuth::NvIndex(handle), handle, 8, 0)
        })
        .map_err(tpm("read NV counter"))?;
    let bytes: [u8; 8] = data
        .value()
        .try_into()
        .map_err(|_| SealError::Malformed("an NV counter did not read as 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn increment(ctx: &mut Context, handle: NvIndexHandle) -> Result<(), SealError> {
    ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.nv_increment(NvAuth::NvIndex(handle), handle)
    })
    .map_err(tpm("increment NV counter"))
}

/// Opens a provisioned counter and reads it.
fn counter_value(ctx: &mut Context, index: u32) -> Result<(NvIndexHandle, u64), SealError> {
    match counter(ctx, index)? {
        Some((handle, true)) => Ok((handle, read_counter(ctx, handle)?)),
        _ => Err(SealError::NotProvisioned),
    }
}

fn lock_key_handle() -> Result<PersistentTpmHandle, SealError> {
    PersistentTpmHandle::new(LOCK_KEY_HANDLE).map_err(tpm("persistent handle"))
}

/// The lock key and its Name, `None` when there is none (never made, or locked).
fn lock_key(ctx: &mut Context) -> Result<Option<(ObjectHandle, Vec<u8>)>, SealError> {
    let handle = lock_key_handle()?;
    let object = match ctx
        .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::Persistent(handle)))
    {
        Ok(object) => object,
        Err(e) if response_kind(&e) == Some(Tss2ResponseCodeKind::Handle) => return Ok(None),
        Err(e) => return Err(tpm("open the lock key")(e)),
    };
    let name = ctx
        .tr_get_name(object)
        .map_err(tpm("read the lock key's name"))?;
    Ok(Some((object, name.value().to_vec())))
}

/// Makes a new lock key: created by the TPM under the primary key, made persistent,
/// its private blob dropped (see the module docs).
fn create_lock_key(ctx: &mut Context) -> Result<(ObjectHandle, Vec<u8>), SealError> {
    plumbing::with_primary(ctx, Primary::Anchor, |ctx, primary| {
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_no_da(true)
            .with_user_with_auth(true)
            .build()
            .map_err(tpm("build lock key template"))?;
        let public = PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::KeyedHash)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
            .with_keyed_hash_unique_identifier(Digest::default())
            .build()
            .map_err(tpm("build lock key template"))?;
        let content = Zeroizing::new(rand::random::<[u8; 32]>());
        let sensitive =
            SensitiveData::try_from(content.to_vec()).map_err(tpm("build lock key content"))?;
        let created = ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.create(primary, public, None, Some(sensitive), None, None)
            })
            .map_err(tpm("create the lock key"))?;
        let loaded = plumbing::load(ctx, primary, created.out_public, created.out_private)?;
        let persistent = Persistent::Persistent(lock_key_handle()?);
        let persisted = ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.evict_control(Provision::Owner, loaded.into(), persistent)
        });
        let _ = ctx.flush_context(loaded.into());
        let persisted = persisted.map_err(tpm("make the lock key persistent"))?;
        let name = ctx
            .tr_get_name(persisted)
            .map_err(tpm("read the lock key's name"))?;
        tracing::info!(handle = LOCK_KEY_HANDLE, "Created a new TPM lock key");
        Ok((persisted, name.value().to_vec()))
    })
}

/// `TPM2_PolicySecret` with the lock key (empty authValue through a password session).
fn policy_lock(
    ctx: &mut Context,
    session: PolicySession,
    key: ObjectHandle,
) -> Result<(), SealError> {
    ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.policy_secret(
            session,
            AuthHandle::from(key),
            Nonce::default(),
            Digest::default(),
            Nonce::default(),
            None,
        )
    })
    .map(|_| ())
    .map_err(tpm("PolicySecret with the lock key"))
}

impl TpmAnchor {
    /// Checks the configuration and that the TPM answers. Nothing is written to the TPM
    /// until [`Anchor::provision`].
    pub fn new(config: TpmConfig) -> Result<Self, SealError> {
        let pcr_bitmap = config.pcr_bitmap()?;
        drop(plumbing::connect(&config)?);
        Ok(Self { config, pcr_bitmap })
    }

    /// The configuration in use.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    fn connect(&self) -> Result<Context, SealError> {
        plumbing::connect(&self.config)
    }

    /// Seals `secret` bound to the lock, and with `pin` if given.
    fn seal_bound(
        &mut self,
        secret: &Secret,
        pin: Option<&SecretString>,
    ) -> Result<Vec<u8>, SealError> {
        let mut ctx = self.connect()?;
        let (_, count) = counter_value(&mut ctx, LOCK_COUNTER_INDEX)?;
        let (key, name) = match lock_key(&mut ctx)? {
            Some(found) => found,
            None => create_lock_key(&mut ctx)?,
        };
        let salt: Option<[u8; 16]> = pin.map(|_| rand::random());
        let auth = match (pin, &salt) {
            (Some(pin), Some(salt)) => Some(pin_auth(salt, pin)?),
            _ => None,
        };
        let with_pin = pin.is_some();
        let bitmap = self.pcr_bitmap;
        let (public, private) =
            plumbing::with_primary(&mut ctx, Primary::Anchor, |ctx, primary| {
                let mut extra = |ctx: &mut Context, session: PolicySession| {
                    policy_lock(ctx, session, key)?;
                    if with_pin {
                        ctx.policy_auth_value(session)
                            .map_err(tpm("PolicyAuthValue"))?;
                    }
                    Ok(())
                };
                plumbing::create_sealed(
                    ctx,
                    primary,
                    bitmap,
                    &mut extra,
                    SealedTemplate {
                        no_da: !with_pin,
                        auth,
                    },
                    secret.expose(),
                )
            })?;
        let purpose = if with_pin {
            Purpose::Pin
        } else {
            Purpose::Share
        };
        let mut blob = blob_header(SealerKind::Tpm, purpose).to_vec();
        blob.extend_from_slice(&bitmap.to_le_bytes());
        blob.extend_from_slice(&count.to_le_bytes());
        let name_len = u16::try_from(name.len())
            .map_err(|_| SealError::Malformed("lock key name too long".into()))?;
        blob.extend_from_slice(&name_len.to_be_bytes());
        blob.extend_from_slice(&name);
        if let Some(salt) = salt {
            blob.extend_from_slice(&salt);
        }
        plumbing::put_areas(&mut blob, &public, &private)?;
        Ok(blob)
    }

    /// Opens a share or PIN blob.
    fn unseal_bound(
        &mut self,
        blob: &[u8],
        purpose: Purpose,
        pin: Option<&SecretString>,
    ) -> Result<Secret, SealError> {
        let parsed = TpmBlob::parse(blob, purpose)?;
        let Some((sealed_at, sealed_name)) = parsed.lock else {
            return Err(SealError::Malformed("a bound blob without its lock".into()));
        };
        let auth = match (pin, &parsed.salt) {
            (Some(pin), Some(salt)) => Some(pin_auth(salt, pin)?),
            _ => None,
        };
        let (public, private) = parsed.areas()?;
        let mut ctx = self.connect()?;
        // No lock counter: the anchor was never provisioned here, or someone deleted it.
        let (_, now) = counter_value(&mut ctx, LOCK_COUNTER_INDEX)?;
        let key = match lock_key(&mut ctx)? {
            Some((key, name)) if name == sealed_name && now == sealed_at => key,
            _ => {
                // A blob from another TPM names another lock key too: say which it is.
                plumbing::with_primary(&mut ctx, Primary::Anchor, |ctx, primary| {
                    let object = plumbing::load(ctx, primary, public.clone(), private.clone())?;
                    let _ = ctx.flush_context(object.into());
                    Ok(())
                })?;
                return Err(SealError::Locked { sealed_at, now });
            }
        };
        let with_pin = auth.is_some();
        let result = self.unseal_areas(
            &mut ctx,
            parsed.bitmap,
            public,
            private,
            auth,
            &mut |ctx, session| {
                policy_lock(ctx, session, key)?;
                if with_pin {
                    ctx.policy_auth_value(session)
                        .map_err(tpm("PolicyAuthValue"))?;
                }
                Ok(())
            },
        );
        match result {
            Err(SealError::PinLockedOut { .. }) => Err(SealError::PinLockedOut {
                retry_after_secs: read_lockout(&mut ctx)
                    .ok()
                    .map(|l| u64::from(l.recovery_secs)),
            }),
            other => other,
        }
    }

    fn unseal_areas(
        &self,
        ctx: &mut Context,
        bitmap: u32,
        public: Public,
        private: Private,
        auth: Option<Auth>,
        extra: plumbing::PolicyStep<'_>,
    ) -> Result<Secret, SealError> {
        let max_attempts = self.config.max_attempts;
        let bytes = plumbing::with_primary(ctx, Primary::Anchor, |ctx, primary| {
            let object = plumbing::load(ctx, primary, public, private)?;
            let result = (|| {
                if let Some(auth) = auth {
                    ctx.tr_set_auth(object.into(), auth)
                        .map_err(tpm("set the PIN authValue"))?;
                }
                plumbing::unseal_loaded(
                    ctx,
                    primary,
                    object,
                    bitmap,
                    max_attempts,
                    extra,
                    &mut |_, _| {},
                )
            })();
            let _ = ctx.flush_context(object.into());
            result
        })?;
        Secret::from_slice(&bytes, "the sealed object")
    }

    fn seal_identity_with(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError> {
        let mut ctx = self.connect()?;
        let bitmap = self.pcr_bitmap;
        let (public, private) =
            plumbing::with_primary(&mut ctx, Primary::Anchor, |ctx, primary| {
                plumbing::create_sealed(
                    ctx,
                    primary,
                    bitmap,
                    &mut plumbing::pcr_only,
                    SealedTemplate {
                        no_da: true,
                        auth: None,
                    },
                    secret.expose(),
                )
            })?;
        let mut blob = blob_header(SealerKind::Tpm, Purpose::Identity).to_vec();
        blob.extend_from_slice(&bitmap.to_le_bytes());
        plumbing::put_areas(&mut blob, &public, &private)?;
        Ok(blob)
    }
}

fn read_lockout(ctx: &mut Context) -> Result<PinLockout, SealError> {
    let (data, _) = ctx
        .get_capability(
            CapabilityType::TpmProperties,
            PropertyTag::LockoutCounter.into(),
            3,
        )
        .map_err(tpm("read the dictionary-attack parameters"))?;
    let CapabilityData::TpmProperties(list) = data else {
        return Err(SealError::Malformed(
            "the TPM answered properties with something else".into(),
        ));
    };
    let get = |tag: PropertyTag| -> Result<u32, SealError> {
        list.find(tag)
            .map(|p| p.value())
            .ok_or_else(|| SealError::Malformed(format!("the TPM did not report {tag:?}")))
    };
    Ok(PinLockout {
        failed: get(PropertyTag::LockoutCounter)?,
        max_tries: get(PropertyTag::MaxAuthFail)?,
        recovery_secs: get(PropertyTag::LockoutInterval)?,
    })
}

impl Anchor for TpmAnchor {
    fn kind(&self) -> SealerKind {
        SealerKind::Tpm
    }

    fn provision(&mut self) -> Result<(), SealError> {
        let mut ctx = self.connect()?;
        for index in [LOCK_COUNTER_INDEX, EPOCH_COUNTER_INDEX] {
            let (handle, written) = match counter(&mut ctx, index)? {
                Some(found) => found,
                None => {
                    let handle = define_counter(&mut ctx, index)?;
                    tracing::info!(index, "Defined a TPM NV counter");
                    (handle, false)
                }
            };
            // A counter has no value until its first increment (which starts it at the
            // highest value any counter of this TPM ever had, so deleting and defining
            // it again never takes it back).
            if !written {
                increment(&mut ctx, handle)?;
            }
        }
        if lock_key(&mut ctx)?.is_none() {
            create_lock_key(&mut ctx)?;
        }
        Ok(())
    }

    fn is_provisioned(&mut self) -> Result<bool, SealError> {
        let mut ctx = self.connect()?;
        Ok(counter(&mut ctx, LOCK_COUNTER_INDEX)?.is_some())
    }

    fn erase(&mut self) -> Result<bool, SealError> {
        let mut ctx = self.connect()?;
        let mut found = false;
        // The lock key first: without it no share sealed so far satisfies its policy,
        // on any OS; a power cut after this leaves only the counters for the next run.
        if let Some((key, _)) = lock_key(&mut ctx)? {
            let persistent = Persistent::Persistent(lock_key_handle()?);
            ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, key, persistent)
            })
            .map_err(tpm("evict the lock key"))?;
            found = true;
        }
        // The lock counter last: its presence is what says "this TPM is enrolled".
        for index in [EPOCH_COUNTER_INDEX, LOCK_COUNTER_INDEX] {
            if let Some((handle, _)) = counter(&mut ctx, index)? {
                ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.nv_undefine_space(Provision::Owner, handle)
                })
                .map_err(tpm("undefine an NV counter"))?;
                found = true;
            }
        }
        if found {
            tracing::warn!(
                "Erased the TPM trust anchor: the lock key is evicted and the counters undefined"
            );
        }
        Ok(found)
    }

    fn lock_count(&mut self) -> Result<u64, SealError> {
        let mut ctx = self.connect()?;
        Ok(counter_value(&mut ctx, LOCK_COUNTER_INDEX)?.1)
    }

    fn lock(&mut self) -> Result<u64, SealError> {
        let mut ctx = self.connect()?;
        let (counter_handle, _) = counter_value(&mut ctx, LOCK_COUNTER_INDEX)?;
        if let Some((key, _)) = lock_key(&mut ctx)? {
            let persistent = Persistent::Persistent(lock_key_handle()?);
            ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.evict_control(Provision::Owner, key, persistent)
            })
            .map_err(tpm("evict the lock key"))?;
        }
        increment(&mut ctx, counter_handle)?;
        let count = read_counter(&mut ctx, counter_handle)?;
        tracing::warn!(
            lock_count = count,
            "Locked the TPM trust anchor: shares sealed before are revoked"
        );
        Ok(count)
    }

    fn epoch(&mut self) -> Result<u64, SealError> {
        let mut ctx = self.connect()?;
        Ok(counter_value(&mut ctx, EPOCH_COUNTER_INDEX)?.1)
    }

    fn advance_epoch(&mut self, to: u64) -> Result<(), SealError> {
        let mut ctx = self.connect()?;
        let (handle, current) = counter_value(&mut ctx, EPOCH_COUNTER_INDEX)?;
        if to < current {
            return Err(SealError::EpochBackwards {
                current,
                requested: to,
            });
        }
        if to - current > MAX_EPOCH_STEP {
            return Err(SealError::Config(format!(
                "advancing the epoch from {current} to {to} takes more than {MAX_EPOCH_STEP} increments"
            )));
        }
        for _ in current..to {
            increment(&mut ctx, handle)?;
        }
        let now = read_counter(&mut ctx, handle)?;
        if now != to {
            // Someone else incremented it meanwhile: it is past `to`, which only makes
            // older copies of the data dir older.
            tracing::warn!(
                epoch = now,
                requested = to,
                "The TPM epoch moved past the requested value"
            );
        }
        Ok(())
    }

    fn clock_ms(&mut self) -> Result<u64, SealError> {
        let mut ctx = self.connect()?;
        // TPM2_ReadClock has no safe tss-esapi wrapper; TPM2_GetTime returns the same
        // TPMS_CLOCK_INFO inside its (here unsigned) attestation. It needs the
        // endorsement hierarchy's authorization, empty on an unowned TPM.
        let (attest, _) = ctx
            .execute_with_sessions(
                (
                    Some(AuthSession::Password),
                    Some(AuthSession::Password),
                    None,
                ),
                |ctx| ctx.get_time(KeyHandle::Null, Data::default(), SignatureScheme::Null),
            )
            .map_err(tpm("read the TPM clock (GetTime)"))?;
        Ok(attest.clock_info().clock())
    }

    fn seal_share(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError> {
        self.seal_bound(secret, None)
    }

    fn unseal_share(&mut self, blob: &[u8]) -> Result<Secret, SealError> {
        self.unseal_bound(blob, Purpose::Share, None)
    }

    fn seal_pin(&mut self, secret: &Secret, pin: &SecretString) -> Result<Vec<u8>, SealError> {
        self.seal_bound(secret, Some(pin))
    }

    fn unseal_pin(&mut self, blob: &[u8], pin: &SecretString) -> Result<Secret, SealError> {
        self.unseal_bound(blob, Purpose::Pin, Some(pin))
    }

    fn pin_lockout(&mut self) -> Result<PinLockout, SealError> {
        let mut ctx = self.connect()?;
        read_lockout(&mut ctx)
    }

    fn seal_identity(&mut self, secret: &Secret) -> Result<Vec<u8>, SealError> {
        self.seal_identity_with(secret)
    }

    fn unseal_identity(&mut self, blob: &[u8]) -> Result<Secret, SealError> {
        let parsed = TpmBlob::parse(blob, Purpose::Identity)?;
        let (public, private) = parsed.areas()?;
        let mut ctx = self.connect()?;
        self.unseal_areas(
            &mut ctx,
            parsed.bitmap,
            public,
            private,
            None,
            &mut plumbing::pcr_only,
        )
    }
}
