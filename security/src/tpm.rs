//! TPM 2.0 plumbing shared by the data-key sealer ([`crate::seal::TpmSealer`]) and the
//! trust anchor ([`crate::anchor::TpmAnchor`]) (cargo feature `tpm`).
//!
//! - **Primary key**: an ECC P-256 restricted decryption key of the owner hierarchy
//!   (AES-128-CFB, SHA-256 name, empty unique), re-derived from the TPM's storage seed on
//!   every use: fast, and nothing has to be persisted for it. A sealed object from another
//!   TPM fails its parent's integrity check. Two templates ([`Primary`]): the version-1
//!   sealer's, and the trust anchor's, which adds `noDA` so that loading under it still
//!   works while the TPM is in dictionary-attack lockout after wrong PINs (loading
//!   authorizes the parent, and a DA-protected parent is refused in lockout: one wrong
//!   PIN too many would otherwise stop the unit from loading even its TPM share). The
//!   sealer keeps its template so the blobs it already sealed still load.
//! - **Sealed objects** are KeyedHash objects (no signing or decryption ability) with
//!   `fixedTPM`, `fixedParent`, `adminWithPolicy`, **`userWithAuth` off** and an
//!   authorization policy: the only way to read one is a policy session that satisfies it.
//! - **Policy sessions** are salted with the primary key and encrypt the response, so a
//!   secret unsealed through them crosses the TPM bus encrypted. Every policy starts with
//!   `TPM2_PolicyPCR` over the configured PCRs (SHA-256 bank); callers append further
//!   assertions ([`PolicyStep`]) in the same order at sealing and unsealing.
//! - **Retry**: if a PCR is extended between `TPM2_PolicyPCR` and `TPM2_Unseal`, the TPM
//!   answers `TPM_RC_PCR_CHANGED`; the unseal starts over with a fresh session, a bounded
//!   number of times ([`TpmConfig::max_attempts`]).
//!
//! Each operation opens its own [`Context`] ([`connect`]) and flushes what it loaded, so
//! the types built on this are `Send` and nothing stays loaded between calls.

use std::convert::TryFrom;
use std::str::FromStr;

use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::handles::{KeyHandle, ObjectHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Auth, Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot,
    Private, Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
    SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use crate::seal::SealError;

/// How to reach the TPM and what to seal to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpmConfig {
    /// TCTI string: `device:/dev/tpmrm0` on real hardware (the kernel resource manager),
    /// `swtpm:host=127.0.0.1,port=2321` for a software TPM.
    pub tcti: String,
    /// PCR indexes (SHA-256 bank) the key is sealed to, at most 8, each below 24.
    /// The default, PCR 7 (Secure Boot state), survives kernel and firmware updates
    /// that keep the Secure Boot policy, as systemd-cryptenroll's default does.
    pub pcrs: Vec<u8>,
    /// How many policy sessions an unseal may try when PCRs change under it.
    pub max_attempts: u32,
}

impl Default for TpmConfig {
    fn default() -> Self {
        Self {
            tcti: "device:/dev/tpmrm0".into(),
            pcrs: vec![7],
            max_attempts: 3,
        }
    }
}

impl TpmConfig {
    /// Checks the TCTI string's syntax, the PCR selection and the attempt bound without
    /// touching a TPM (for configuration checks before anything starts).
    pub fn validate(&self) -> Result<(), SealError> {
        self.tcti_conf()?;
        self.pcr_bitmap().map(|_| ())
    }

    pub(crate) fn tcti_conf(&self) -> Result<TctiNameConf, SealError> {
        TctiNameConf::from_str(&self.tcti)
            .map_err(|e| SealError::Config(format!("TCTI {:?} is invalid: {e}", self.tcti)))
    }

    /// The PCR selection as a bitmap (bit n = PCR n), after checking it and the
    /// attempt bound.
    pub(crate) fn pcr_bitmap(&self) -> Result<u32, SealError> {
        if self.pcrs.is_empty() || self.pcrs.len() > 8 {
            return Err(SealError::Config(format!(
                "between 1 and 8 PCRs are needed, {} given",
                self.pcrs.len()
            )));
        }
        let mut bitmap = 0u32;
        for &pcr in &self.pcrs {
            if pcr >= 24 {
                return Err(SealError::Config(format!(
                    "PCR {pcr} does not exist (0..=23)"
                )));
            }
            if bitmap & (1 << pcr) != 0 {
                return Err(SealError::Config(format!("PCR {pcr} is listed twice")));
            }
            bitmap |= 1 << pcr;
        }
        if self.max_attempts == 0 || self.max_attempts > 100 {
            return Err(SealError::Config(format!(
                "max_attempts must be 1..=100, not {}",
                self.max_attempts
            )));
        }
        Ok(bitmap)
    }
}

/// Maps a TSS error to [`SealError::Tpm`] naming the operation.
pub(crate) fn tpm(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> SealError {
    move |source| SealError::Tpm { op, source }
}

/// The TPM response code's kind, when the error came from the TPM.
pub(crate) fn response_kind(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        _ => None,
    }
}

/// Opens a context on the configured TPM.
pub(crate) fn connect(config: &TpmConfig) -> Result<Context, SealError> {
    Context::new(config.tcti_conf()?).map_err(tpm("connect"))
}

/// The PCR selection (SHA-256 bank) of `bitmap`.
pub(crate) fn selection(bitmap: u32) -> Result<PcrSelectionList, SealError> {
    let slots: Vec<PcrSlot> = (0..24u32)
        .filter(|i| bitmap & (1 << i) != 0)
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<Result<_, _>>()
        .map_err(tpm("build PCR selection"))?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(tpm("build PCR selection"))
}

/// Which primary key template (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Primary {
    /// The version-1 sealer's (DA-protected).
    Sealer,
    /// The trust anchor's (`noDA`).
    Anchor,
}

/// Derives a primary storage key (see the module docs for its template).
pub(crate) fn primary(ctx: &mut Context, which: Primary) -> Result<KeyHandle, SealError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_no_da(which == Primary::Anchor)
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_decrypt(true)
        .with_restricted(true)
        .build()
        .map_err(tpm("build primary template"))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(tpm("build primary template"))?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(tpm("build primary template"))?;
    ctx.execute_with_nullauth_session(|ctx| {
        ctx.create_primary(Hierarchy::Owner, public, None, None, None, None)
    })
    .map(|r| r.key_handle)
    .map_err(tpm("create primary key"))
}

/// Runs `f` with the primary key loaded, and flushes it afterwards whatever happens.
pub(crate) fn with_primary<T>(
    ctx: &mut Context,
    which: Primary,
    f: impl FnOnce(&mut Context, KeyHandle) -> Result<T, SealError>,
) -> Result<T, SealError> {
    let primary = primary(ctx, which)?;
    let result = f(ctx, primary);
    let _ = ctx.flush_context(primary.into());
    result
}

/// Policy assertions appended after `TPM2_PolicyPCR`, identically at sealing (to
/// compute the policy digest) and at unsealing (to satisfy it).
pub(crate) type PolicyStep<'a> =
    &'a mut dyn FnMut(&mut Context, PolicySession) -> Result<(), SealError>;

/// A [`PolicyStep`] that adds nothing: the policy is `TPM2_PolicyPCR` alone.
pub(crate) fn pcr_only(_: &mut Context, _: PolicySession) -> Result<(), SealError> {
    Ok(())
}

/// Starts a policy session salted with the primary key, with response encryption, and
/// runs `TPM2_PolicyPCR` with the current values of the PCRs in `bitmap`, then `extra`.
/// The session is flushed if any step fails.
pub(crate) fn policy_session(
    ctx: &mut Context,
    primary: KeyHandle,
    bitmap: u32,
    extra: PolicyStep<'_>,
) -> Result<PolicySession, SealError> {
    let pcrs = selection(bitmap)?;
    let session = ctx
        .start_auth_session(
            Some(primary),
            None,
            None,
            SessionType::Policy,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(tpm("start policy session"))?
        .ok_or_else(|| SealError::Malformed("the TPM returned no session".into()))?;
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_encrypt(true)
        .with_continue_session(true)
        .build();
    let policy = PolicySession::try_from(session).map_err(tpm("start policy session"))?;
    let run = (|| {
        ctx.tr_sess_set_attributes(session, attributes, mask)
            .map_err(tpm("set session attributes"))?;
        ctx.policy_pcr(policy, Digest::default(), pcrs)
            .map_err(tpm("PolicyPCR"))?;
        extra(ctx, policy)
    })();
    if let Err(e) = run {
        flush_session(ctx, policy);
        return Err(e);
    }
    Ok(policy)
}

/// Flushes a session, ignoring errors (it may already be gone).
pub(crate) fn flush_session(ctx: &mut Context, session: PolicySession) {
    let handle: SessionHandle = session.into();
    let _ = ctx.flush_context(ObjectHandle::from(handle));
}

/// How a sealed object is made, beyond its policy.
pub(crate) struct SealedTemplate {
    /// Exempt from the dictionary-attack protection (`noDA`): right for objects whose
    /// policy has no secret to guess; wrong for a PIN, whose guesses must be counted.
    pub no_da: bool,
    /// The object's authValue, for policies that include `TPM2_PolicyAuthValue`.
    pub auth: Option<Auth>,
}

/// Creates a sealed object holding `data` under `primary`, whose policy is PolicyPCR
/// over `bitmap` then `extra`. Returns its public and private areas (the private area
/// is encrypted by the primary key: only this TPM can load it).
pub(crate) fn create_sealed(
    ctx: &mut Context,
    primary: KeyHandle,
    bitmap: u32,
    extra: PolicyStep<'_>,
    template: SealedTemplate,
    data: &[u8],
) -> Result<(Public, Private), SealError> {
    let session = policy_session(ctx, primary, bitmap, extra)?;
    let digest = ctx
        .policy_get_digest(session)
        .map_err(tpm("PolicyGetDigest"));
    flush_session(ctx, session);
    let digest = digest?;
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(template.no_da)
        .with_admin_with_policy(true)
        .with_user_with_auth(false)
        .build()
        .map_err(tpm("build sealed object template"))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(digest)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(tpm("build sealed object template"))?;
    let sensitive = SensitiveData::try_from(data.to_vec()).map_err(tpm("wrap the secret"))?;
    let created = ctx
        .execute_with_nullauth_session(|ctx| {
            ctx.create(primary, public, template.auth, Some(sensitive), None, None)
        })
        .map_err(tpm("create sealed object"))?;
    Ok((created.out_public, created.out_private))
}

/// Loads a sealed object under `primary`. A blob from another TPM fails its parent's
/// integrity check: [`SealError::WrongKey`].
pub(crate) fn load(
    ctx: &mut Context,
    primary: KeyHandle,
    public: Public,
    private: Private,
) -> Result<KeyHandle, SealError> {
    ctx.execute_with_nullauth_session(|ctx| ctx.load(primary, private, public))
        .map_err(|e| match response_kind(&e) {
            Some(Tss2ResponseCodeKind::Integrity) => SealError::WrongKey,
            _ => SealError::Tpm {
                op: "load sealed object",
                source: e,
            },
        })
}

/// Unseals a loaded object through a fresh policy session (PolicyPCR then `extra`),
/// retrying while PCRs change under it, at most `max_attempts` times. `between` runs
/// between the policy and the unseal with the attempt number (a test hook; a no-op
/// otherwise).
///
/// Failures: `TPM_RC_POLICY_FAIL` is [`SealError::PolicyMismatch`]; a wrong authValue
/// (`TPM_RC_AUTH_FAIL`/`TPM_RC_BAD_AUTH`) is [`SealError::WrongPin`]; DA lockout
/// (`TPM_RC_LOCKOUT`) is [`SealError::PinLockedOut`] without a time (the caller knows
/// where to read it).
pub(crate) fn unseal_loaded(
    ctx: &mut Context,
    primary: KeyHandle,
    object: KeyHandle,
    bitmap: u32,
    max_attempts: u32,
    extra: PolicyStep<'_>,
    between: &mut dyn FnMut(&mut Context, u32),
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    for attempt in 1..=max_attempts {
        let session = policy_session(ctx, primary, bitmap, &mut *extra)?;
        between(ctx, attempt);
        let unsealed = ctx.execute_with_session(Some(AuthSession::from(session)), |ctx| {
            ctx.unseal(object.into())
        });
        flush_session(ctx, session);
        match unsealed {
            Ok(data) => return Ok(Zeroizing::new(data.value().to_vec())),
            Err(e) => match response_kind(&e) {
                Some(Tss2ResponseCodeKind::PcrChanged) => {
                    tracing::warn!(
                        attempt,
                        "PCRs changed during the unseal policy session; retrying"
                    );
                }
                Some(Tss2ResponseCodeKind::PolicyFail) => return Err(SealError::PolicyMismatch),
                Some(Tss2ResponseCodeKind::AuthFail | Tss2ResponseCodeKind::BadAuth) => {
                    return Err(SealError::WrongPin);
                }
                Some(Tss2ResponseCodeKind::Lockout) => {
                    return Err(SealError::PinLockedOut {
                        retry_after_secs: None,
                    });
                }
                _ => {
                    return Err(SealError::Tpm {
                        op: "unseal",
                        source: e,
                    });
                }
            },
        }
    }
    Err(SealError::PcrsKeptChanging(max_attempts))
}

/// Appends `u16` big-endian length + marshalled `TPMT_PUBLIC`, then `u16` length +
/// the `TPM2B_PRIVATE` buffer: the two areas of a sealed object as this crate stores
/// them (so the stored bytes are exactly a `TPM2B_PUBLIC` and a `TPM2B_PRIVATE`, the
/// files `tpm2_load -u/-r` reads).
pub(crate) fn put_areas(
    out: &mut Vec<u8>,
    public: &Public,
    private: &Private,
) -> Result<(), SealError> {
    let public = public.marshall().map_err(tpm("marshal public area"))?;
    for part in [&public[..], private.value()] {
        let len = u16::try_from(part.len())
            .map_err(|_| SealError::Malformed("TPM area larger than 64 KiB".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(())
}

/// Reads `n` bytes off the front of `rest`, or says which part is truncated.
pub(crate) fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], SealError> {
    if rest.len() < n {
        return Err(SealError::Malformed(format!("truncated {what}")));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// Reads a `u16` big-endian length and that many bytes.
pub(crate) fn take_sized<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a [u8], SealError> {
    let len = take(rest, 2, what)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    take(rest, len, what)
}

/// Reads the two areas written by [`put_areas`].
pub(crate) fn take_areas(rest: &mut &[u8]) -> Result<(Public, Private), SealError> {
    let public = Public::unmarshall(take_sized(rest, "public area")?)
        .map_err(|e| SealError::Malformed(format!("public area: {e}")))?;
    let private = Private::try_from(take_sized(rest, "private area")?.to_vec())
        .map_err(|e| SealError::Malformed(format!("private area: {e}")))?;
    Ok((public, private))
}

/// Checks a stored PCR bitmap: at least one PCR, none above 23.
pub(crate) fn check_bitmap(bitmap: u32) -> Result<u32, SealError> {
    if bitmap == 0 || bitmap >> 24 != 0 {
        return Err(SealError::Malformed(format!(
            "PCR bitmap {bitmap:#x} is invalid"
        )));
    }
    Ok(bitmap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configs_are_refused() {
        for pcrs in [vec![], vec![24], vec![7, 7], (0..9).collect()] {
            let config = TpmConfig {
                pcrs,
                ..TpmConfig::default()
            };
            assert!(matches!(config.pcr_bitmap(), Err(SealError::Config(_))));
        }
        let config = TpmConfig {
            max_attempts: 0,
            ..TpmConfig::default()
        };
        assert!(matches!(config.pcr_bitmap(), Err(SealError::Config(_))));
    }
}
