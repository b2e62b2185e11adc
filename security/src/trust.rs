//! The trust record: what decides the lock, kept where a thief cannot edit it.
//!
//! An enrolled unit keeps its trust anchors (the [`Enrollment`] HQ signed), the lease
//! guard's state ([`GuardSnapshot`]: the lease, the command counter, a latched lock, the
//! highest time seen), the pair of times that makes its clock trustworthy, and its
//! **epoch** in one record, AEAD-sealed under a subkey of the data key in
//! `<data-dir>/trust`. Editing it needs the data key; deleting it is caught because the
//! TPM remembers the unit was enrolled; restoring an older copy is caught because the
//! record's epoch is behind the TPM's epoch counter (see [`TrustRecord::check_epoch`]).
//!
//! # Time that only goes forward
//! [`TrustedClock`]: now is the latest of the wall clock, the record's trusted time plus
//! the TPM clock's advance since it was saved (the TPM clock never goes back and a BIOS
//! clock setting does not move it; it does not count time powered off, so this is a
//! lower bound on the true time), and, while the process runs, the start value plus a
//! monotonic in-process timer. So a clock set back before or after a restart revives
//! nothing.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::enroll::Enrollment;
use crate::fsutil::{self, FsError};
use crate::lease::{Clock, GuardSnapshot};
use crate::vault::{Cipher, CryptoError, KeyVault};

/// File name of the record in the data dir.
pub const TRUST_FILE: &str = "trust";
/// Magic of the file.
const MAGIC: &[u8; 8] = b"OPTRUST1";
/// Largest record accepted from disk (a lease, a bundle and a few numbers).
const MAX_BYTES: u64 = 64 * 1024;
/// The cipher purpose, and the associated data of the one sealed value.
const PURPOSE: &str = "file:trust";

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The file could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The file is not a trust record, or does not open with this data key.
    #[error("the trust record {path} does not open with this unit's data key: {detail}")]
    Unreadable {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The record is older than the TPM's epoch: this data dir is an older copy.
    #[error(
        "this data dir is older than this unit's TPM: its trust record is at epoch {record} but the TPM is at epoch {anchor}. It was restored from an older copy (which could undo a lock), so it is refused and nothing was changed. Restore the newest copy, or have HQ re-enrol the unit"
    )]
    Rollback {
        /// The record's epoch.
        record: u64,
        /// The TPM's epoch counter.
        anchor: u64,
    },
    /// Key derivation failed.
    #[error("trust record key: {0}")]
    Crypto(#[from] CryptoError),
}

/// A trusted time and the anchor's clock when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TimeBase {
    /// The trusted time, Unix seconds.
    pub trusted_unix: i64,
    /// The anchor's (TPM's) clock then, milliseconds.
    pub anchor_ms: u64,
}

/// The record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRecord {
    /// The anchors in force: the bundle HQ signed at enrolment, or its latest update.
    pub enrollment: Enrollment,
    /// The signed bundle itself, so an update can be checked against it later and a
    /// config naming another bundle recognised.
    pub enrollment_json: String,
    /// The lease guard's state.
    pub guard: GuardSnapshot,
    /// Bumped on every write that decides a lock (lock, unlock, lease, command); the TPM's
    /// epoch counter follows it.
    pub epoch: u64,
    /// Trusted time at the last save.
    pub time: TimeBase,
}

impl TrustRecord {
    fn cipher(vault: &KeyVault) -> Result<Cipher, TrustError> {
        Ok(vault.cipher(PURPOSE)?)
    }

    /// The record in `data_dir`, if any.
    pub fn load(data_dir: &Path, vault: &KeyVault) -> Result<Option<TrustRecord>, TrustError> {
        let path = data_dir.join(TRUST_FILE);
        let Some(bytes) = fsutil::read_private(&path, MAX_BYTES)? else {
            return Ok(None);
        };
        let unreadable = |detail: String| TrustError::Unreadable {
            path: path.display().to_string(),
            detail,
        };
        let sealed = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| unreadable("no OPTRUST1 header".into()))?;
        let json = Self::cipher(vault)?
            .open(PURPOSE.as_bytes(), sealed)
            .map_err(|e| unreadable(e.to_string()))?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
    }

    /// Writes the record atomically (0600, fsync'd).
    pub fn save(&self, data_dir: &Path, vault: &KeyVault) -> Result<(), TrustError> {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).map_err(|e| {
            TrustError::Unreadable {
                path: TRUST_FILE.into(),
                detail: e.to_string(),
            }
        })?);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&Self::cipher(vault)?.seal(PURPOSE.as_bytes(), &json));
        fsutil::write_private(&data_dir.join(TRUST_FILE), &out)?;
        Ok(())
    }

    /// Whether a record exists (without opening it).
    pub fn exists(data_dir: &Path) -> bool {
        data_dir.join(TRUST_FILE).exists()
    }

    /// Refuses a record behind the anchor's epoch counter. A record one ahead is a save
    /// whose counter increment a power cut interrupted: the caller advances the counter.
    pub fn check_epoch(&self, anchor_epoch: u64) -> Result<(), TrustError> {
        if self.epoch < anchor_epoch {
            return Err(TrustError::Rollback {
                record: self.epoch,
                anchor: anchor_epoch,
            });
        }
        Ok(())
    }
}

/// The clock the lease guard reads on an enrolled unit (see the module doc).
pub struct TrustedClock {
    wall: Arc<dyn Clock>,
    base: OffsetDateTime,
    started: Instant,
    /// The latest time returned (Unix ms): a wall clock that ran ahead and is then set
    /// back does not take the answer back with it.
    highest_ms: AtomicI64,
}

impl std::fmt::Debug for TrustedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedClock")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl TrustedClock {
    /// The clock at start: `saved` is the record's time base, `anchor_ms_now` the anchor's
    /// clock now. An anchor clock behind the saved one (only a TPM clear does that, which
    /// also destroys the sealed key) counts as no advance.
    pub fn start(wall: Arc<dyn Clock>, saved: TimeBase, anchor_ms_now: u64) -> TrustedClock {
        let advanced = anchor_ms_now.saturating_sub(saved.anchor_ms) / 1000;
        let floor = saved
            .trusted_unix
            .saturating_add(i64::try_from(advanced).unwrap_or(i64::MAX));
        let floor =
            OffsetDateTime::from_unix_timestamp(floor).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        TrustedClock {
            base: wall.now().max(floor),
            wall,
            started: Instant::now(),
            highest_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// The time base to save now, with the anchor's clock `anchor_ms_now`.
    pub fn time_base(&self, anchor_ms_now: u64) -> TimeBase {
        TimeBase {
            trusted_unix: self.now().unix_timestamp(),
            anchor_ms: anchor_ms_now,
        }
    }
}

impl Clock for TrustedClock {
    fn now(&self) -> OffsetDateTime {
        let running = self
            .base
            .checked_add(
                time::Duration::try_from(self.started.elapsed()).unwrap_or(time::Duration::ZERO),
            )
            .unwrap_or(self.base);
        let now = self.wall.now().max(running);
        let ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let highest = self.highest_ms.fetch_max(ms, Ordering::Relaxed).max(ms);
        if highest > ms {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(highest) * 1_000_000)
                .unwrap_or(now)
        } else {
            now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enroll::{LeasePolicy, SecondFactors, to_hex};
    use crate::lease::{HqSigner, ManualClock};
    use crate::seal::DataKey;
    use time::macros::datetime;

    fn record() -> TrustRecord {
        let hq = HqSigner::generate();
        let enrollment = Enrollment {
            store_id: "s".into(),
            unit_id: "u".into(),
            hq_public_key: to_hex(hq.verifying_key().as_bytes()),
            escrow_share_key: None,
            escrow_recovery_key: Some("22".repeat(32)),
            lease: LeasePolicy::default(),
            unlock: SecondFactors::default(),
            issued_at: 1,
        };
        TrustRecord {
            enrollment_json: enrollment.sign(&hq).unwrap(),
            enrollment,
            guard: GuardSnapshot::default(),
            epoch: 3,
            time: TimeBase {
                trusted_unix: 1_800_000_000,
                anchor_ms: 5_000,
            },
        }
    }

    #[test]
    fn the_record_round_trips_and_is_ciphertext_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let vault = KeyVault::new(DataKey::generate());
        assert!(TrustRecord::load(dir.path(), &vault).unwrap().is_none());
        let r = record();
        r.save(dir.path(), &vault).unwrap();
        assert_eq!(TrustRecord::load(dir.path(), &vault).unwrap(), Some(r));
        let raw = std::fs::read(dir.path().join(TRUST_FILE)).unwrap();
        assert!(!raw.windows(7).any(|w| w == b"store_i"), "no JSON in clear");
        let other = KeyVault::new(DataKey::generate());
        assert!(matches!(
            TrustRecord::load(dir.path(), &other),
            Err(TrustError::Unreadable { .. })
        ));
        let mut flipped = raw.clone();
        *flipped.last_mut().unwrap() ^= 1;
        fsutil::write_private(&dir.path().join(TRUST_FILE), &flipped).unwrap();
        assert!(matches!(
            TrustRecord::load(dir.path(), &vault),
            Err(TrustError::Unreadable { .. })
        ));
    }

    #[test]
    fn a_record_behind_the_anchor_epoch_is_refused() {
        let r = record();
        assert!(r.check_epoch(3).is_ok());
        assert!(r.check_epoch(2).is_ok(), "one ahead: an interrupted save");
        let e = r.check_epoch(4).unwrap_err();
        assert!(matches!(
            e,
            TrustError::Rollback {
                record: 3,
                anchor: 4
            }
        ));
        assert!(e.to_string().contains("older copy"), "{e}");
    }

    #[test]
    fn a_clock_set_back_does_not_move_trusted_time_back() {
        let saved = TimeBase {
            trusted_unix: datetime!(2026-12-07 12:00 UTC).unix_timestamp(),
            anchor_ms: 10_000,
        };
        // The BIOS clock says a week earlier; the TPM ran one hour since the save.
        let wall = Arc::new(ManualClock::new(datetime!(2026-11-30 12:00 UTC)));
        // (The in-process timer adds the test's own run time: well under a second.)
        let near = |got: OffsetDateTime, want: OffsetDateTime| {
            let d = got - want;
            assert!(
                d >= time::Duration::ZERO && d < time::Duration::SECOND,
                "{got} vs {want}"
            );
        };
        let c = TrustedClock::start(wall.clone(), saved, 10_000 + 3_600_000);
        near(c.now(), datetime!(2026-12-07 13:00 UTC));
        // A wall clock ahead wins.
        wall.set(datetime!(2026-12-10 00:00 UTC));
        assert_eq!(c.now(), datetime!(2026-12-10 00:00 UTC));
        // Set back again while running: trusted time does not go back.
        wall.set(datetime!(2026-01-01 00:00 UTC));
        assert_eq!(c.now(), datetime!(2026-12-10 00:00 UTC));
        // An anchor clock behind the saved one counts as no advance.
        let c = TrustedClock::start(wall, saved, 0);
        near(c.now(), datetime!(2026-12-07 12:00 UTC));
        assert_eq!(c.time_base(7).anchor_ms, 7);
    }
}
