//! HQ's keys and its side of an enrolled unit's sealed key: the enrolment bundles it
//! signs, and the blinded escrow exchange (`HqService.Escrow`) with its policy.
//!
//! The keys (HQ's Ed25519 signing key, the escrow secrets for the second share and for
//! recovery) live in `<data-dir>/hq-keys` (0600), made on first start, so the units a
//! mock HQ enrolled keep working across its restarts.
//!
//! Policy, kept in memory (a test or the operator sets it):
//! - a unit marked **stolen** gets `PERMISSION_DENIED` for every exchange;
//! - `SHARE` is answered for every other unit;
//! - `RECOVERY` (a unit locked in its TPM asks for its data key back) is answered for
//!   every unit not stolen, with a fresh lease, and with a signed unlock when the
//!   operator approved one ([`Escrow::approve_unlock`]): a unit locked by a command or a
//!   tamper signal stays locked until HQ says otherwise, while one locked by its lease
//!   running out only needed the lease.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use outpost_proto::hq::{EscrowPurpose, EscrowReply, EscrowRequest};
use outpost_security::enroll::{Enrollment, LeasePolicy, SecondFactors, to_hex};
use outpost_security::escrow::{EscrowPublic, EscrowSecret};
use outpost_security::fsutil;
use outpost_security::lease::{Action, Command, HqSigner, Lease};
use time::OffsetDateTime;
use tonic::Status;

/// File of the keys in the data dir.
const KEYS_FILE: &str = "hq-keys";
const KEYS_MAGIC: &[u8; 8] = b"OPHQKEY1";

/// Why the keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The file could not be read or written.
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
    /// The file is not a key file.
    #[error("{0} is not a mock HQ key file")]
    Malformed(String),
}

/// HQ's secrets.
pub struct HqKeys {
    /// Signs leases, commands, bundles, push tokens and offers.
    pub signer: HqSigner,
    /// Releases the second share.
    pub share: EscrowSecret,
    /// Releases a locked unit's data key.
    pub recovery: EscrowSecret,
    /// The signing key's secret bytes, to write the file again.
    signer_secret: [u8; 32],
}

impl std::fmt::Debug for HqKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HqKeys")
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl HqKeys {
    /// Fresh random keys.
    pub fn generate() -> HqKeys {
        let signer_secret: [u8; 32] = rand::random();
        HqKeys {
            signer: HqSigner::from_bytes(signer_secret),
            share: EscrowSecret::generate(),
            recovery: EscrowSecret::generate(),
            signer_secret,
        }
    }

    /// The keys in `data_dir`, made and written (0600) when there are none.
    pub fn load_or_create(data_dir: &Path) -> Result<HqKeys, KeysError> {
        let path = data_dir.join(KEYS_FILE);
        let bad = || KeysError::Malformed(path.display().to_string());
        if let Some(bytes) = fsutil::read_private(&path, 1024)? {
            let bytes = zeroize::Zeroizing::new(bytes);
            if bytes.len() != 8 + 96 || &bytes[..8] != KEYS_MAGIC {
                return Err(bad());
            }
            let part = |i: usize| -> [u8; 32] {
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes[8 + 32 * i..8 + 32 * (i + 1)]);
                k
            };
            let signer_secret = part(0);
            return Ok(HqKeys {
                signer: HqSigner::from_bytes(signer_secret),
                share: EscrowSecret::from_bytes(&part(1)).map_err(|_| bad())?,
                recovery: EscrowSecret::from_bytes(&part(2)).map_err(|_| bad())?,
                signer_secret,
            });
        }
        let keys = HqKeys::generate();
        let mut out = zeroize::Zeroizing::new(KEYS_MAGIC.to_vec());
        out.extend_from_slice(&keys.signer_secret);
        out.extend_from_slice(&keys.share.to_bytes()[..]);
        out.extend_from_slice(&keys.recovery.to_bytes()[..]);
        fsutil::write_private(&path, &out)?;
        Ok(keys)
    }

    /// The signing key's 32 secret bytes (for the CLI's push tokens).
    pub fn signer_secret(&self) -> [u8; 32] {
        self.signer_secret
    }

    /// The signing key as the store mesh's roster key (the same Ed25519 key: an
    /// enrolled unit trusts rosters and offers signed by the key its bundle names).
    pub fn roster_keypair(&self) -> outpost_p2p::roster::HqKeypair {
        let mut secret = zeroize::Zeroizing::new(self.signer_secret);
        let secret = outpost_p2p::identity::ed25519::SecretKey::try_from_bytes(&mut secret[..])
            .unwrap_or_else(|_| unreachable!("any 32 bytes are an Ed25519 secret key"));
        outpost_p2p::roster::HqKeypair::from(secret)
    }

    /// HQ's public keys as a unit pins them.
    pub fn publics(&self) -> (String, EscrowPublic, EscrowPublic) {
        (
            to_hex(self.signer.verifying_key().as_bytes()),
            self.share.public(),
            self.recovery.public(),
        )
    }

    /// A signed enrolment bundle for `store` / `unit`.
    pub fn enrollment(
        &self,
        store: &str,
        unit: &str,
        unlock: SecondFactors,
        lease: LeasePolicy,
    ) -> Result<String, outpost_security::enroll::EnrollError> {
        let (hq, share, recovery) = self.publics();
        Enrollment {
            store_id: store.into(),
            unit_id: unit.into(),
            hq_public_key: hq,
            escrow_share_key: Some(share.to_hex()),
            escrow_recovery_key: Some(recovery.to_hex()),
            lease,
            unlock,
            issued_at: OffsetDateTime::now_utc().unix_timestamp(),
        }
        .sign(&self.signer)
    }

    /// A lease for `store` / `unit`, valid `secs` from now.
    pub fn lease(&self, store: &str, unit: &str, secs: i64) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        self.signer
            .sign_lease(&Lease {
                store: store.into(),
                unit: unit.into(),
                issued_at: now - time::Duration::seconds(1),
                expires_at: now + time::Duration::seconds(secs.max(1)),
                nonce: rand::random(),
            })
            .unwrap_or_default()
    }

    /// A signed command for `store` / `unit` with `counter`.
    pub fn command(&self, store: &str, unit: &str, action: Action, counter: u64) -> Vec<u8> {
        self.signer
            .sign_command(&Command {
                action,
                store: store.into(),
                unit: unit.into(),
                counter,
                issued_at: OffsetDateTime::now_utc() - time::Duration::seconds(1),
            })
            .unwrap_or_default()
    }
}

/// What HQ decided about each unit (keyed `store/unit`).
#[derive(Debug, Default)]
struct Policy {
    stolen: HashSet<String>,
    approved_unlock: HashSet<String>,
    /// Escrow answers given, by purpose name, for tests.
    answered: HashMap<&'static str, u64>,
}

/// The keys and the policy, shared by the service and the handle.
#[derive(Debug)]
pub struct Escrow {
    keys: HqKeys,
    /// A std lock: held for a lookup, never across `.await`.
    policy: Mutex<Policy>,
    /// How long the leases HQ hands out with a recovery last.
    lease_secs: i64,
}

fn unit_key(store: &str, unit: &str) -> String {
    format!("{store}/{unit}")
}

impl Escrow {
    /// HQ's escrow over `keys`.
    pub fn new(keys: HqKeys) -> Escrow {
        Escrow {
            keys,
            policy: Mutex::new(Policy::default()),
            lease_secs: 3600,
        }
    }

    /// The keys.
    pub fn keys(&self) -> &HqKeys {
        &self.keys
    }

    fn policy(&self) -> std::sync::MutexGuard<'_, Policy> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// HQ learns the unit was stolen: no more exchanges for it.
    pub fn mark_stolen(&self, store: &str, unit: &str, stolen: bool) {
        let mut p = self.policy();
        if stolen {
            p.stolen.insert(unit_key(store, unit));
        } else {
            p.stolen.remove(&unit_key(store, unit));
        }
    }

    /// The next recovery of this unit also carries a signed unlock.
    pub fn approve_unlock(&self, store: &str, unit: &str) {
        self.policy().approved_unlock.insert(unit_key(store, unit));
    }

    /// Exchanges answered for `purpose` (`share` or `recovery`).
    pub fn answered(&self, purpose: &str) -> u64 {
        self.policy().answered.get(purpose).copied().unwrap_or(0)
    }

    /// Answers one exchange.
    pub fn exchange(&self, req: &EscrowRequest) -> Result<EscrowReply, Status> {
        let point: [u8; 32] = req
            .point
            .as_slice()
            .try_into()
            .map_err(|_| Status::invalid_argument("point must be 32 bytes"))?;
        let who = unit_key(&req.store_id, &req.unit_id);
        let purpose = EscrowPurpose::try_from(req.purpose)
            .map_err(|_| Status::invalid_argument("unknown escrow purpose"))?;
        let mut p = self.policy();
        if p.stolen.contains(&who) {
            tracing::warn!(unit = %who, "Refused an escrow exchange: the unit is marked stolen");
            return Err(Status::permission_denied(format!(
                "{who} is reported stolen: HQ releases nothing to it"
            )));
        }
        let (secret, name) = match purpose {
            EscrowPurpose::Share => (&self.keys.share, "share"),
            EscrowPurpose::Recovery => (&self.keys.recovery, "recovery"),
            EscrowPurpose::Unspecified => {
                return Err(Status::invalid_argument("escrow purpose is required"));
            }
        };
        let answer = secret
            .respond(&point)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        *p.answered.entry(name).or_default() += 1;
        let mut reply = EscrowReply {
            point: answer.to_vec(),
            ..EscrowReply::default()
        };
        if purpose == EscrowPurpose::Recovery {
            reply.signed_lease = self
                .keys
                .lease(&req.store_id, &req.unit_id, self.lease_secs);
            if p.approved_unlock.remove(&who) {
                // Counters only grow: Unix milliseconds do, across restarts of HQ too.
                let counter =
                    u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
                        .unwrap_or(u64::MAX);
                reply.signed_command =
                    self.keys
                        .command(&req.store_id, &req.unit_id, Action::Unlock, counter);
            }
            tracing::info!(unit = %who, unlock = !reply.signed_command.is_empty(), "Answered a recovery");
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_and_a_bad_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = HqKeys::load_or_create(dir.path()).unwrap();
        let b = HqKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(a.publics().0, b.publics().0);
        assert_eq!(a.share.public(), b.share.public());
        fsutil::write_private(&dir.path().join(KEYS_FILE), b"junk").unwrap();
        assert!(matches!(
            HqKeys::load_or_create(dir.path()),
            Err(KeysError::Malformed(_))
        ));
    }

    #[test]
    fn stolen_units_get_nothing_and_recovery_carries_a_lease_and_an_approved_unlock() {
        let e = Escrow::new(HqKeys::generate());
        let point = EscrowSecret::generate().public().to_bytes().to_vec();
        let req = |purpose: EscrowPurpose| EscrowRequest {
            store_id: "s".into(),
            unit_id: "u".into(),
            purpose: purpose as i32,
            point: point.clone(),
        };
        let share = e.exchange(&req(EscrowPurpose::Share)).unwrap();
        assert_eq!(share.point.len(), 32);
        assert!(share.signed_lease.is_empty());
        let rec = e.exchange(&req(EscrowPurpose::Recovery)).unwrap();
        assert!(!rec.signed_lease.is_empty());
        assert!(rec.signed_command.is_empty(), "no unlock approved");
        e.approve_unlock("s", "u");
        let rec = e.exchange(&req(EscrowPurpose::Recovery)).unwrap();
        assert!(!rec.signed_command.is_empty());
        let again = e.exchange(&req(EscrowPurpose::Recovery)).unwrap();
        assert!(again.signed_command.is_empty(), "an approval is used once");
        e.mark_stolen("s", "u", true);
        assert_eq!(
            e.exchange(&req(EscrowPurpose::Share)).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let mut bad = req(EscrowPurpose::Share);
        bad.point = vec![1; 3];
        e.mark_stolen("s", "u", false);
        assert_eq!(
            e.exchange(&bad).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(e.answered("share"), 1);
        assert_eq!(e.answered("recovery"), 3);
    }
}
