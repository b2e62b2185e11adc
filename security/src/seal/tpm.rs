//! TPM 2.0 sealer (cargo feature `tpm`).
//!
//! The data key is stored inside a TPM *sealed data object* (a KeyedHash object with no
//! signing or decryption ability) created under a primary storage key of the owner
//! hierarchy. The object has `userWithAuth` off and an authorization policy of
//! `TPM2_PolicyPCR` over the configured PCRs of the SHA-256 bank, so the only way to read
//! it is a policy session in which the PCRs hold the values they had when it was sealed:
//! this TPM (the primary key is derived from the TPM's own storage seed, so the blob
//! does not even load elsewhere), in this boot state.
//!
//! The primary key is an ECC P-256 storage key re-derived on every use (fast, and
//! nothing has to be persisted in the TPM's NV memory). Sessions are salted with it,
//! so the unsealed key crosses the TPM bus encrypted.
//!
//! If a PCR is extended between `TPM2_PolicyPCR` and `TPM2_Unseal`, the TPM answers
//! `TPM_RC_PCR_CHANGED`; the unseal then starts over with a fresh policy session, a
//! bounded number of times.
//!
//! # Payload format (after the common 8-byte header)
//!
//! `u32` PCR bitmap (bit n = PCR n, little endian), `u16` length + marshalled
//! `TPM2B_PUBLIC` area, `u16` length + `TPM2B_PRIVATE` buffer (both big endian lengths).

use std::convert::TryFrom;
use std::fmt;
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
    Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private,
    Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use super::{DataKey, SealError, Sealer, SealerKind, blob_header, blob_payload};

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

    fn tcti_conf(&self) -> Result<TctiNameConf, SealError> {
        TctiNameConf::from_str(&self.tcti)
            .map_err(|e| SealError::Config(format!("TCTI {:?} is invalid: {e}", self.tcti)))
    }

    fn pcr_bitmap(&self) -> Result<u32, SealError> {
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

/// Test-only hook run between PolicyPCR and Unseal with the attempt number.
#[cfg(test)]
type TestHook = Box<dyn FnMut(&mut Context, u32) + Send>;

/// Seals the data key to this TPM and a PCR policy.
///
/// Holds only its configuration: each seal or unseal opens its own TPM context, so the
/// sealer is `Send` and nothing stays loaded in the TPM between calls.
pub struct TpmSealer {
    config: TpmConfig,
    pcr_bitmap: u32,
    #[cfg(test)]
    between_policy_and_unseal: Option<TestHook>,
}

impl fmt::Debug for TpmSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmSealer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn tpm(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> SealError {
    move |source| SealError::Tpm { op, source }
}

fn response_kind(e: &tss_esapi::Error) -> Option<Tss2ResponseCodeKind> {
    match e {
        tss_esapi::Error::Tss2Error(rc) => rc.kind(),
        _ => None,
    }
}

impl TpmSealer {
    /// Checks the configuration and that the TPM answers.
    pub fn new(config: TpmConfig) -> Result<Self, SealError> {
        let pcr_bitmap = config.pcr_bitmap()?;
        let sealer = Self {
            config,
            pcr_bitmap,
            #[cfg(test)]
            between_policy_and_unseal: None,
        };
        drop(sealer.context()?);
        Ok(sealer)
    }

    /// The configuration in use.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    fn context(&self) -> Result<Context, SealError> {
        Context::new(self.config.tcti_conf()?).map_err(tpm("connect"))
    }

    fn selection(bitmap: u32) -> Result<PcrSelectionList, SealError> {
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

    fn primary(ctx: &mut Context) -> Result<KeyHandle, SealError> {
        let attributes = ObjectAttributesBuilder::new()
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

    /// Starts a policy session salted with the primary key, with response encryption
    /// so the unsealed key is encrypted on the bus, and runs `TPM2_PolicyPCR` with the
    /// current PCR values.
    fn policy_session(
        ctx: &mut Context,
        primary: KeyHandle,
        selection: PcrSelectionList,
    ) -> Result<PolicySession, SealError> {
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
            ctx.policy_pcr(policy, Digest::default(), selection)
                .map_err(tpm("PolicyPCR"))
        })();
        if let Err(e) = run {
            Self::flush_session(ctx, policy);
            return Err(e);
        }
        Ok(policy)
    }

    fn flush_session(ctx: &mut Context, session: PolicySession) {
        let handle: SessionHandle = session.into();
        let _ = ctx.flush_context(ObjectHandle::from(handle));
    }

    fn seal_with(&self, ctx: &mut Context, key: &DataKey) -> Result<(Public, Private), SealError> {
        let primary = Self::primary(ctx)?;
        let result = (|| {
            let session = Self::policy_session(ctx, primary, Self::selection(self.pcr_bitmap)?)?;
            let digest = ctx
                .policy_get_digest(session)
                .map_err(tpm("PolicyGetDigest"));
            Self::flush_session(ctx, session);
            let digest = digest?;
            let attributes = ObjectAttributesBuilder::new()
                .with_fixed_tpm(true)
                .with_fixed_parent(true)
                .with_no_da(true)
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
            let sensitive =
                SensitiveData::try_from(key.expose().to_vec()).map_err(tpm("wrap the data key"))?;
            let created = ctx
                .execute_with_nullauth_session(|ctx| {
                    ctx.create(primary, public, None, Some(sensitive), None, None)
                })
                .map_err(tpm("create sealed object"))?;
            Ok((created.out_public, created.out_private))
        })();
        let _ = ctx.flush_context(primary.into());
        result
    }

    fn unseal_with(
        &mut self,
        ctx: &mut Context,
        bitmap: u32,
        public: Public,
        private: Private,
    ) -> Result<DataKey, SealError> {
        let primary = Self::primary(ctx)?;
        let result = (|| {
            let object = ctx
                .execute_with_nullauth_session(|ctx| ctx.load(primary, private, public))
                .map_err(|e| match response_kind(&e) {
                    // A blob from another TPM fails the integrity check of its parent.
                    Some(Tss2ResponseCodeKind::Integrity) => SealError::WrongKey,
                    _ => SealError::Tpm {
                        op: "load sealed object",
                        source: e,
                    },
                })?;
            let result = self.unseal_loaded(ctx, primary, object, bitmap);
            let _ = ctx.flush_context(object.into());
            result
        })();
        let _ = ctx.flush_context(primary.into());
        result
    }

    fn unseal_loaded(
        &mut self,
        ctx: &mut Context,
        primary: KeyHandle,
        object: KeyHandle,
        bitmap: u32,
    ) -> Result<DataKey, SealError> {
        for attempt in 1..=self.config.max_attempts {
            let session = Self::policy_session(ctx, primary, Self::selection(bitmap)?)?;
            #[cfg(test)]
            if let Some(hook) = self.between_policy_and_unseal.as_mut() {
                hook(ctx, attempt);
            }
            let unsealed = ctx.execute_with_session(Some(AuthSession::from(session)), |ctx| {
                ctx.unseal(object.into())
            });
            Self::flush_session(ctx, session);
            match unsealed {
                Ok(data) => {
                    let bytes = Zeroizing::new(data.value().to_vec());
                    if bytes.len() != 32 {
                        return Err(SealError::Malformed(format!(
                            "the sealed object holds {} bytes, not a 32-byte key",
                            bytes.len()
                        )));
                    }
                    let mut key = [0u8; 32];
                    key.copy_from_slice(&bytes);
                    return Ok(DataKey::from_bytes(key));
                }
                Err(e) => match response_kind(&e) {
                    Some(Tss2ResponseCodeKind::PcrChanged) => {
                        tracing::warn!(
                            attempt,
                            "PCRs changed during the unseal policy session; retrying"
                        );
                    }
                    Some(Tss2ResponseCodeKind::PolicyFail) => {
                        return Err(SealError::PolicyMismatch);
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
        Err(SealError::PcrsKeptChanging(self.config.max_attempts))
    }
}

fn parse_payload(payload: &[u8]) -> Result<(u32, Public, Private), SealError> {
    fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], SealError> {
        if rest.len() < n {
            return Err(SealError::Malformed(format!("truncated {what}")));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    let mut rest = payload;
    let mut bitmap = [0u8; 4];
    bitmap.copy_from_slice(take(&mut rest, 4, "PCR bitmap")?);
    let bitmap = u32::from_le_bytes(bitmap);
    if bitmap == 0 || bitmap >> 24 != 0 {
        return Err(SealError::Malformed(format!(
            "PCR bitmap {bitmap:#x} is invalid"
        )));
    }
    let len = take(&mut rest, 2, "public length")?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let public = Public::unmarshall(take(&mut rest, len, "public area")?)
        .map_err(|e| SealError::Malformed(format!("public area: {e}")))?;
    let len = take(&mut rest, 2, "private length")?;
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    let private = Private::try_from(take(&mut rest, len, "private area")?.to_vec())
        .map_err(|e| SealError::Malformed(format!("private area: {e}")))?;
    if !rest.is_empty() {
        return Err(SealError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok((bitmap, public, private))
}

impl Sealer for TpmSealer {
    fn kind(&self) -> SealerKind {
        SealerKind::Tpm
    }

    fn seal(&mut self, key: &DataKey) -> Result<Vec<u8>, SealError> {
        let mut ctx = self.context()?;
        let (public, private) = self.seal_with(&mut ctx, key)?;
        let public = public.marshall().map_err(tpm("marshal public area"))?;
        let private = private.value();
        let mut blob = Vec::with_capacity(8 + 4 + 4 + public.len() + private.len());
        blob.extend_from_slice(&blob_header(SealerKind::Tpm));
        blob.extend_from_slice(&self.pcr_bitmap.to_le_bytes());
        for part in [&public[..], private] {
            let len = u16::try_from(part.len())
                .map_err(|_| SealError::Malformed("TPM area larger than 64 KiB".into()))?;
            blob.extend_from_slice(&len.to_be_bytes());
            blob.extend_from_slice(part);
        }
        Ok(blob)
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<DataKey, SealError> {
        let (bitmap, public, private) = parse_payload(blob_payload(blob, SealerKind::Tpm)?)?;
        let mut ctx = self.context()?;
        self.unseal_with(&mut ctx, bitmap, public, private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::structures::DigestValues;

    use crate::testing::Swtpm;

    fn config(tpm: &Swtpm, pcrs: &[u8]) -> TpmConfig {
        TpmConfig {
            tcti: tpm.tcti(),
            pcrs: pcrs.to_vec(),
            max_attempts: 3,
        }
    }

    fn extend(ctx: &mut Context, pcr: PcrHandle) {
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(vec![0x42; 32]).unwrap(),
        );
        ctx.execute_with_nullauth_session(|ctx| ctx.pcr_extend(pcr, values))
            .unwrap();
    }

    #[test]
    fn pcr_change_between_policy_and_unseal_is_retried() {
        let tpm = Swtpm::start();
        let mut sealer = TpmSealer::new(config(&tpm, &[16])).unwrap();
        let key = DataKey::generate();
        let blob = sealer.seal(&key).unwrap();
        // PCR 10 is not in the policy, but extending it bumps the TPM's PCR update
        // counter, which makes the first unseal answer TPM_RC_PCR_CHANGED.
        sealer.between_policy_and_unseal = Some(Box::new(|ctx, attempt| {
            if attempt == 1 {
                extend(ctx, PcrHandle::Pcr10);
            }
        }));
        assert_eq!(sealer.unseal(&blob).unwrap().expose(), key.expose());
    }

    #[test]
    fn pcrs_changing_on_every_attempt_give_up_after_max_attempts() {
        let tpm = Swtpm::start();
        let mut sealer = TpmSealer::new(config(&tpm, &[16])).unwrap();
        let blob = sealer.seal(&DataKey::generate()).unwrap();
        sealer.between_policy_and_unseal = Some(Box::new(|ctx, _| extend(ctx, PcrHandle::Pcr10)));
        assert!(matches!(
            sealer.unseal(&blob),
            Err(SealError::PcrsKeptChanging(3))
        ));
    }

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

    #[test]
    fn bad_payloads_are_malformed() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 1],
            vec![0x80, 0, 0, 0],
            vec![0x80, 0, 0, 0, 0],
            vec![0x80, 0, 0, 0, 0, 9, 1, 2],
            vec![0x80, 0, 0, 0, 0, 3, 1, 2, 3],
        ];
        for payload in cases {
            assert!(
                matches!(parse_payload(&payload), Err(SealError::Malformed(_))),
                "{payload:?}"
            );
        }
    }
}
