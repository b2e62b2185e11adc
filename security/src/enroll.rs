//! The enrolment bundle: what HQ fixes about a unit when it enrols it.
//!
//! A unit's trust anchors (who HQ is, which store and unit it is, how long it may sell
//! without a lease, which second factor releases its data key, HQ's escrow keys) must
//! not live in an editable config file: a thief would delete one line. HQ issues them
//! once as an [`Enrollment`] signed with its Ed25519 key; the server copies them into
//! its trust record (`crate::trust`), encrypted under the data key and tied to the
//! TPM, and from then on ignores what the config file says except to refuse a config
//! that names different anchors. The only way to change them afterwards is a newer
//! bundle signed by the HQ key the unit already trusts ([`Enrollment::verify_update`]).
//!
//! # Wire format
//! JSON `{"enrollment": {…fields…}, "signature": "<128 hex digits>"}`; the signature
//! is over a binary encoding of the fields (`OPENROL1`, then each field: strings as
//! `u8` length + UTF-8, integers big endian, keys as 32 raw bytes, absent keys as 32
//! zero bytes, flags as one byte), so the JSON may be reformatted freely.

use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::lease::{GuardConfig, HqSigner, MAX_ID_LEN, parse_hq_key};

/// Magic of the signed encoding.
pub const ENROLL_MAGIC: &[u8; 8] = b"OPENROL1";
/// Largest bundle file accepted.
pub const MAX_BUNDLE_BYTES: u64 = 16 * 1024;
/// Longest offline grace a bundle may set: 30 days. A unit that can sell for longer
/// without HQ is not protected by its lease at all.
pub const MAX_OFFLINE_GRACE_SECS: u64 = 30 * 24 * 3600;
/// Longest clock skew or command age a bundle may set: 7 days.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// The bundle does not parse, or a field is out of range.
    #[error("enrolment bundle: {0}")]
    Malformed(String),
    /// The signature is not the bundle's HQ key's (or, for an update, the trusted key's).
    #[error("enrolment bundle: the signature does not verify with {0}")]
    BadSignature(&'static str),
    /// An update names another store or unit than the one enrolled.
    #[error("enrolment update for store {store:?} unit {unit:?}, but this unit is {ours}")]
    WrongUnit {
        /// The store the update names.
        store: String,
        /// The unit the update names.
        unit: String,
        /// This unit, as `store/unit`.
        ours: String,
    },
    /// An update that is not newer than the bundle in force.
    #[error("enrolment update issued at {update} is not newer than the one in force ({current})")]
    Stale {
        /// The update's `issued_at`.
        update: i64,
        /// The bundle in force's `issued_at`.
        current: i64,
    },
}

fn malformed(detail: impl Into<String>) -> EnrollError {
    EnrollError::Malformed(detail.into())
}

/// How long the unit sells without HQ, and how it judges HQ's messages in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasePolicy {
    /// Selling goes on (with a warning) this long after the lease expired.
    pub offline_grace_secs: u64,
    /// How far in the future a lease or command may be issued.
    pub max_clock_skew_secs: u64,
    /// How old a command may be when it arrives.
    pub max_command_age_secs: u64,
}

impl Default for LeasePolicy {
    fn default() -> Self {
        LeasePolicy {
            offline_grace_secs: 72 * 3600,
            max_clock_skew_secs: 300,
            max_command_age_secs: 24 * 3600,
        }
    }
}

impl LeasePolicy {
    /// Checks the bounds (each is refused with the field and the limit).
    pub fn validate(&self) -> Result<(), EnrollError> {
        if self.offline_grace_secs > MAX_OFFLINE_GRACE_SECS {
            return Err(malformed(format!(
                "offline_grace_secs {} is over the limit of {MAX_OFFLINE_GRACE_SECS} (30 days)",
                self.offline_grace_secs
            )));
        }
        for (name, v) in [
            ("max_clock_skew_secs", self.max_clock_skew_secs),
            ("max_command_age_secs", self.max_command_age_secs),
        ] {
            if v == 0 || v > MAX_WINDOW_SECS {
                return Err(malformed(format!(
                    "{name} {v} must be between 1 and {MAX_WINDOW_SECS} (7 days)"
                )));
            }
        }
        Ok(())
    }

    /// The lease guard's configuration for `store` / `unit` under this policy.
    pub fn guard_config(&self, store: &str, unit: &str) -> GuardConfig {
        // Validated bounds fit `i64` seconds many times over.
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 4));
        let mut c = GuardConfig::new(store, unit);
        c.offline_grace = secs(self.offline_grace_secs);
        c.max_clock_skew = secs(self.max_clock_skew_secs);
        c.max_command_age = secs(self.max_command_age_secs);
        c
    }
}

/// Which second factor, besides the TPM, may release the data key. Any one of those
/// set suffices; none set means the TPM alone ("tpm only"), which a unit states loudly
/// as weaker: a thief who boots another OS with the same Secure Boot state and keeps
/// the lease from expiring needs nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondFactors {
    /// A share HQ holds (blinded exchange with HQ's escrow key over the HQ link).
    pub hq: bool,
    /// A store manager's PIN, entered at a terminal or the console (rate-limited by the
    /// TPM's dictionary-attack protection).
    pub pin: bool,
}

impl SecondFactors {
    /// No second factor: the TPM alone releases the key.
    pub fn is_tpm_only(&self) -> bool {
        !self.hq && !self.pin
    }

    /// For logs and status pages: `tpm`, `tpm+hq`, `tpm+pin`, `tpm+(hq|pin)`.
    pub fn describe(&self) -> &'static str {
        match (self.hq, self.pin) {
            (false, false) => "tpm",
            (true, false) => "tpm+hq",
            (false, true) => "tpm+pin",
            (true, true) => "tpm+(hq|pin)",
        }
    }
}

/// What HQ fixes about a unit at enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The store id.
    pub store_id: String,
    /// This unit's id within the store.
    pub unit_id: String,
    /// HQ's Ed25519 key (64 hex digits): signs leases, commands, push tokens, offers
    /// and later bundles.
    pub hq_public_key: String,
    /// HQ's escrow key for the second share (Ristretto255, 64 hex digits), when HQ holds
    /// one.
    #[serde(default)]
    pub escrow_share_key: Option<String>,
    /// HQ's escrow key for recovery after a lock (Ristretto255, 64 hex digits): the only
    /// way a locked unit gets its data key back.
    #[serde(default)]
    pub escrow_recovery_key: Option<String>,
    /// The lease policy.
    pub lease: LeasePolicy,
    /// The second factors.
    pub unlock: SecondFactors,
    /// When HQ issued it (Unix seconds); an update must be newer.
    pub issued_at: i64,
}

/// HQ's escrow public keys named by a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowKeyBytes {
    /// The key HQ releases the second share with.
    pub share: Option<[u8; 32]>,
    /// The key HQ releases the recovery of a locked unit with.
    pub recovery: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    enrollment: Enrollment,
    signature: String,
}

/// 32 bytes from 64 hex digits.
pub fn hex32(field: &str, s: &str) -> Result<[u8; 32], EnrollError> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!("{field} must be 64 hex digits")));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
            .map_err(|_| malformed(format!("{field} must be 64 hex digits")))?;
    }
    Ok(out)
}

/// 64 lower-case hex digits of 32 bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn put_str(out: &mut Vec<u8>, field: &str, s: &str) -> Result<(), EnrollError> {
    if s.is_empty() || s.len() > MAX_ID_LEN || s.chars().any(char::is_control) {
        return Err(malformed(format!(
            "{field} must be 1 to {MAX_ID_LEN} bytes without control characters"
        )));
    }
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl Enrollment {
    /// HQ's verifying key.
    pub fn hq_key(&self) -> Result<VerifyingKey, EnrollError> {
        parse_hq_key(&hex32("hq_public_key", &self.hq_public_key)?)
            .map_err(|e| malformed(format!("hq_public_key: {e}")))
    }

    /// HQ's escrow keys, as raw compressed points.
    pub fn escrow_keys(&self) -> Result<EscrowKeyBytes, EnrollError> {
        let share = self
            .escrow_share_key
            .as_deref()
            .map(|k| hex32("escrow_share_key", k))
            .transpose()?;
        let recovery = self
            .escrow_recovery_key
            .as_deref()
            .map(|k| hex32("escrow_recovery_key", k))
            .transpose()?;
        Ok(EscrowKeyBytes { share, recovery })
    }

    /// The encoding the signature covers; checks every field on the way.
    fn body(&self) -> Result<Vec<u8>, EnrollError> {
        self.lease.validate()?;
        let EscrowKeyBytes { share, recovery } = self.escrow_keys()?;
        if self.unlock.hq && share.is_none() {
            return Err(malformed(
                "unlock.hq needs escrow_share_key: HQ must hold the share it is to release",
            ));
        }
        if recovery.is_none() {
            return Err(malformed(
                "escrow_recovery_key is required: without it a unit locked in its TPM could never be unlocked",
            ));
        }
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(ENROLL_MAGIC);
        put_str(&mut out, "store_id", &self.store_id)?;
        put_str(&mut out, "unit_id", &self.unit_id)?;
        out.extend_from_slice(self.hq_key()?.as_bytes());
        out.extend_from_slice(&share.unwrap_or([0; 32]));
        out.extend_from_slice(&recovery.unwrap_or([0; 32]));
        out.extend_from_slice(&self.lease.offline_grace_secs.to_be_bytes());
        out.extend_from_slice(&self.lease.max_clock_skew_secs.to_be_bytes());
        out.extend_from_slice(&self.lease.max_command_age_secs.to_be_bytes());
        out.push(u8::from(self.unlock.hq) | u8::from(self.unlock.pin) << 1);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        Ok(out)
    }

    /// The signed bundle as JSON, signed by `hq` (whose key must be `hq_public_key`).
    pub fn sign(&self, hq: &HqSigner) -> Result<String, EnrollError> {
        if hq.verifying_key().as_bytes() != &hex32("hq_public_key", &self.hq_public_key)? {
            return Err(malformed("hq_public_key is not the signer's key"));
        }
        let sig = hq.sign_raw(&self.body()?);
        serde_json::to_string_pretty(&Signed {
            enrollment: self.clone(),
            signature: to_hex(&sig.to_bytes()),
        })
        .map_err(|e| malformed(e.to_string()))
    }

    fn parse(json: &[u8]) -> Result<(Enrollment, Signature, Vec<u8>), EnrollError> {
        if json.len() as u64 > MAX_BUNDLE_BYTES {
            return Err(malformed(format!(
                "{} bytes, more than {MAX_BUNDLE_BYTES}",
                json.len()
            )));
        }
        let signed: Signed = serde_json::from_slice(json).map_err(|e| malformed(e.to_string()))?;
        let sig = signed.signature.trim();
        if sig.len() != 128 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("signature must be 128 hex digits"));
        }
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&sig[2 * i..2 * i + 2], 16)
                .map_err(|_| malformed("signature must be 128 hex digits"))?;
        }
        let body = signed.enrollment.body()?;
        Ok((signed.enrollment, Signature::from_bytes(&bytes), body))
    }

    /// A first enrolment: the bundle must be signed by the HQ key it names (the unit has
    /// no earlier trust; what it gets is a bundle that is whole and self-consistent).
    pub fn verify(json: &[u8]) -> Result<Enrollment, EnrollError> {
        let (e, sig, body) = Self::parse(json)?;
        e.hq_key()?
            .verify_strict(&body, &sig)
            .map_err(|_| EnrollError::BadSignature("the HQ key it names"))?;
        Ok(e)
    }

    /// An update of the bundle in force (`current`): signed by the HQ key the unit
    /// already trusts, for the same store and unit, and newer.
    pub fn verify_update(json: &[u8], current: &Enrollment) -> Result<Enrollment, EnrollError> {
        let (e, sig, body) = Self::parse(json)?;
        current
            .hq_key()?
            .verify_strict(&body, &sig)
            .map_err(|_| EnrollError::BadSignature("the HQ key this unit trusts"))?;
        if e.store_id != current.store_id || e.unit_id != current.unit_id {
            return Err(EnrollError::WrongUnit {
                store: e.store_id,
                unit: e.unit_id,
                ours: format!("{}/{}", current.store_id, current.unit_id),
            });
        }
        if e.issued_at <= current.issued_at {
            return Err(EnrollError::Stale {
                update: e.issued_at,
                current: current.issued_at,
            });
        }
        Ok(e)
    }

    /// `issued_at` as a time.
    pub fn issued(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.issued_at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl HqSigner {
    /// Signs raw bytes (the enrolment encoding); domain separation is the caller's magic.
    pub(crate) fn sign_raw(&self, bytes: &[u8]) -> Signature {
        self.key().sign(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(hq: &HqSigner) -> Enrollment {
        Enrollment {
            store_id: "store-1".into(),
            unit_id: "unit-1".into(),
            hq_public_key: to_hex(hq.verifying_key().as_bytes()),
            escrow_share_key: Some("11".repeat(32)),
            escrow_recovery_key: Some("22".repeat(32)),
            lease: LeasePolicy::default(),
            unlock: SecondFactors {
                hq: true,
                pin: true,
            },
            issued_at: 1_800_000_000,
        }
    }

    #[test]
    fn a_signed_bundle_verifies_and_any_changed_field_does_not() {
        let hq = HqSigner::generate();
        let json = bundle(&hq).sign(&hq).unwrap();
        assert_eq!(Enrollment::verify(json.as_bytes()).unwrap(), bundle(&hq));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let edits: [(&str, serde_json::Value); 6] = [
            ("unit_id", "unit-2".into()),
            ("escrow_share_key", "33".repeat(32).into()),
            ("issued_at", 1_800_000_001.into()),
            (
                "lease",
                serde_json::json!({"offline_grace_secs": 1, "max_clock_skew_secs": 300, "max_command_age_secs": 86400}),
            ),
            ("unlock", serde_json::json!({"hq": true, "pin": false})),
            ("store_id", "store-2".into()),
        ];
        for (field, value) in edits {
            let mut w = v.clone();
            w["enrollment"][field] = value;
            let err = Enrollment::verify(w.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(err, EnrollError::BadSignature(_)),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn a_bundle_signed_by_another_key_than_it_names_is_refused() {
        let hq = HqSigner::generate();
        let other = HqSigner::generate();
        let mut e = bundle(&hq);
        assert!(e.sign(&other).is_err(), "the signer must be the named key");
        let json = e.sign(&hq).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        e.hq_public_key = to_hex(other.verifying_key().as_bytes());
        v["enrollment"]["hq_public_key"] = e.hq_public_key.clone().into();
        assert!(matches!(
            Enrollment::verify(v.to_string().as_bytes()),
            Err(EnrollError::BadSignature(_))
        ));
    }

    #[test]
    fn bad_fields_are_refused_with_the_field() {
        let hq = HqSigner::generate();
        type Edit = Box<dyn Fn(&mut Enrollment)>;
        let cases: Vec<(Edit, &str)> = vec![
            (
                Box::new(|e| e.lease.offline_grace_secs = u64::MAX),
                "offline_grace_secs",
            ),
            (
                Box::new(|e| e.lease.max_clock_skew_secs = 0),
                "max_clock_skew_secs",
            ),
            (
                Box::new(|e| e.escrow_recovery_key = None),
                "escrow_recovery_key",
            ),
            (Box::new(|e| e.escrow_share_key = None), "escrow_share_key"),
            (Box::new(|e| e.unit_id = String::new()), "unit_id"),
            (Box::new(|e| e.store_id = "x".repeat(65)), "store_id"),
            (
                Box::new(|e| e.escrow_share_key = Some("zz".into())),
                "escrow_share_key",
            ),
        ];
        for (edit, field) in cases {
            let mut e = bundle(&hq);
            edit(&mut e);
            let err = e.sign(&hq).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        for junk in [&b"{"[..], b"[]", &vec![b' '; MAX_BUNDLE_BYTES as usize + 1]] {
            assert!(matches!(
                Enrollment::verify(junk),
                Err(EnrollError::Malformed(_))
            ));
        }
    }

    #[test]
    fn updates_need_the_trusted_key_the_same_unit_and_a_newer_time() {
        let hq = HqSigner::generate();
        let current = bundle(&hq);
        let next_hq = HqSigner::generate();
        let mut next = bundle(&next_hq);
        next.issued_at += 10;
        next.lease.offline_grace_secs = 3600;
        // Signed by the new key only: refused (a thief could sign anything with a key of
        // their own).
        let by_new = next.sign(&next_hq).unwrap();
        assert!(matches!(
            Enrollment::verify_update(by_new.as_bytes(), &current),
            Err(EnrollError::BadSignature(_))
        ));
        // The trusted key signs the rotation to the new key.
        let body = next.body().unwrap();
        let sig = hq.sign_raw(&body);
        let rotated = serde_json::to_string(&Signed {
            enrollment: next.clone(),
            signature: to_hex(&sig.to_bytes()),
        })
        .unwrap();
        assert_eq!(
            Enrollment::verify_update(rotated.as_bytes(), &current).unwrap(),
            next
        );
        let mut same_time = current.clone();
        same_time.lease.offline_grace_secs = 60;
        let json = same_time.sign(&hq).unwrap();
        assert!(matches!(
            Enrollment::verify_update(json.as_bytes(), &current),
            Err(EnrollError::Stale { .. })
        ));
        let mut other_unit = current.clone();
        other_unit.unit_id = "unit-9".into();
        other_unit.issued_at += 1;
        let json = other_unit.sign(&hq).unwrap();
        assert!(matches!(
            Enrollment::verify_update(json.as_bytes(), &current),
            Err(EnrollError::WrongUnit { .. })
        ));
    }
}
