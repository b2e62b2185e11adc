//! TPM 2.0 sealer of the version-1 sealed key (cargo feature `tpm`).
//!
//! The data key is stored inside a TPM *sealed data object* created under the primary
//! storage key of the owner hierarchy, with `userWithAuth` off and an authorization
//! policy of `TPM2_PolicyPCR` over the configured PCRs of the SHA-256 bank, so the only
//! way to read it is a policy session in which the PCRs hold the values they had when it
//! was sealed: this TPM (the primary key is derived from the TPM's own storage seed, so
//! the blob does not even load elsewhere), in this boot state. The primary key, the
//! salted policy sessions and the PCR-changed retry are the shared plumbing of
//! [`crate::tpm`].
//!
//! # Payload format (after the common 8-byte header)
//!
//! `u32` PCR bitmap (bit n = PCR n, little endian), `u16` length + marshalled
//! `TPM2B_PUBLIC` area, `u16` length + `TPM2B_PRIVATE` buffer (both big endian lengths).

use std::fmt;

use tss_esapi::Context;
use tss_esapi::structures::{Private, Public};

use super::{DataKey, SealError, Sealer, SealerKind, blob_header, blob_payload};
use crate::tpm::{self as plumbing, Primary, SealedTemplate, TpmConfig};

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
        drop(plumbing::connect(&sealer.config)?);
        Ok(sealer)
    }

    /// The configuration in use.
    pub fn config(&self) -> &TpmConfig {
        &self.config
    }

    fn unseal_with(
        &mut self,
        ctx: &mut Context,
        bitmap: u32,
        public: Public,
        private: Private,
    ) -> Result<DataKey, SealError> {
        let max_attempts = self.config.max_attempts;
        #[cfg(test)]
        let mut hook = self.between_policy_and_unseal.take();
        let result = plumbing::with_primary(ctx, Primary::Sealer, |ctx, primary| {
            let object = plumbing::load(ctx, primary, public, private)?;
            let mut between = |_ctx: &mut Context, _attempt: u32| {
                #[cfg(test)]
                if let Some(hook) = hook.as_mut() {
                    hook(_ctx, _attempt);
                }
            };
            let result = plumbing::unseal_loaded(
                ctx,
                primary,
                object,
                bitmap,
                max_attempts,
                &mut plumbing::pcr_only,
                &mut between,
            );
            let _ = ctx.flush_context(object.into());
            result
        });
        #[cfg(test)]
        {
            self.between_policy_and_unseal = hook;
        }
        let bytes = result?;
        let key: [u8; 32] = bytes[..].try_into().map_err(|_| {
            SealError::Malformed(format!(
                "the sealed object holds {} bytes, not a 32-byte key",
                bytes.len()
            ))
        })?;
        Ok(DataKey::from_bytes(key))
    }
}

fn parse_payload(payload: &[u8]) -> Result<(u32, Public, Private), SealError> {
    let mut rest = payload;
    let mut bitmap = [0u8; 4];
    bitmap.copy_from_slice(plumbing::take(&mut rest, 4, "PCR bitmap")?);
    let bitmap = plumbing::check_bitmap(u32::from_le_bytes(bitmap))?;
    let (public, private) = plumbing::take_areas(&mut rest)?;
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
        let mut ctx = plumbing::connect(&self.config)?;
        let bitmap = self.pcr_bitmap;
        let (public, private) =
            plumbing::with_primary(&mut ctx, Primary::Sealer, |ctx, primary| {
                plumbing::create_sealed(
                    ctx,
                    primary,
                    bitmap,
                    &mut plumbing::pcr_only,
                    SealedTemplate {
                        no_da: true,
                        auth: None,
                    },
                    key.expose(),
                )
            })?;
        let mut blob = Vec::with_capacity(512);
        blob.extend_from_slice(&blob_header(SealerKind::Tpm));
        blob.extend_from_slice(&self.pcr_bitmap.to_le_bytes());
        plumbing::put_areas(&mut blob, &public, &private)?;
        Ok(blob)
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<DataKey, SealError> {
        let (bitmap, public, private) = parse_payload(blob_payload(blob, SealerKind::Tpm)?)?;
        let mut ctx = plumbing::connect(&self.config)?;
        self.unseal_with(&mut ctx, bitmap, public, private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tss_esapi::handles::PcrHandle;
    use tss_esapi::interface_types::algorithm::HashingAlgorithm;
    use tss_esapi::structures::{Digest, DigestValues};

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
