//! What the mock HQ received: envelopes per unit in sled, mirrored in memory for tests.
//!
//! Sled tree `runs`: key = unit id length (u16 BE) ++ unit id ++ first seq (u64 BE),
//! value = the prost-encoded [`EnvelopeBatch`] of the envelopes one append newly
//! stored, contiguous from that sequence. One value per append rather than one per
//! envelope: a store draining a long outage sends batches of hundreds, and sled's
//! per-key cost was most of the mock's time. Keys sort by unit then sequence, so a
//! unit's envelopes read back in order. Sequences are contiguous from 1 (nothing after
//! a gap is ever stored), so a unit's acknowledged sequence is its envelope count.
//!
//! (Before runs, each envelope had its own key in a tree `envelopes`; a data dir still
//! holding one is refused rather than half read.)
//!
//! Each unit's audit heads are watched as they are stored ([`super::audit`]); the
//! heads and alerts are rebuilt from the stored envelopes at open.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use outpost_proto::hq::{Envelope, EnvelopeBatch};
use prost::Message;

use super::audit::{AuditHead, AuditWatch, ChainAlert};

/// Longest unit id accepted in a `Hello`, in bytes.
pub const MAX_UNIT_ID_LEN: usize = 128;

/// Why the HQ storage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Sled refused (I/O, corruption).
    #[error("HQ storage: {0}")]
    Sled(#[from] sled::Error),
    /// Another process (or a mock HQ not yet shut down) holds the data dir.
    #[error("HQ data dir {0} is locked by another process")]
    Locked(String),
    /// A stored record does not decode or breaks the contiguity rule.
    #[error("HQ storage is corrupt: {0}")]
    Corrupt(String),
}

/// Why a batch was only partly stored; everything before the offending envelope is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendStop {
    /// `seq` is already stored with other content.
    Conflict {
        /// The conflicting sequence.
        seq: u64,
    },
    /// `got` leaves a gap: the next sequence HQ can take is `expected`.
    Gap {
        /// Acknowledged + 1.
        expected: u64,
        /// What the store sent.
        got: u64,
    },
}

/// What one [`Storage::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Highest contiguous sequence stored for the unit afterwards.
    pub acked: u64,
    /// Envelopes newly stored.
    pub stored: u64,
    /// Envelopes already stored with identical content, ignored.
    pub duplicates: u64,
    /// Set when the batch stopped early.
    pub stop: Option<AppendStop>,
    /// Audit heads among the new envelopes that show the unit's audit chain went
    /// backwards.
    pub audit_alerts: Vec<ChainAlert>,
}

/// The envelopes per unit, on disk and in memory.
pub struct Storage {
    db: sled::Db,
    runs: sled::Tree,
    /// Envelopes per unit in sequence order (index = seq - 1). A std lock: it is held
    /// only for the in-memory update and the sled insert, never across `.await`,
    /// and it orders concurrent appends of one unit (two connections of the same unit).
    units: Mutex<HashMap<String, Vec<Envelope>>>,
    /// The audit heads of what is stored. Locked after `units`, never before it.
    audit: Mutex<AuditWatch>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("units", &self.lock().len())
            .finish()
    }
}

fn key(unit: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + unit.len() + 8);
    // Unit ids are at most MAX_UNIT_ID_LEN bytes, far below u16::MAX.
    k.extend_from_slice(&(unit.len() as u16).to_be_bytes());
    k.extend_from_slice(unit.as_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode_key(k: &[u8]) -> Option<(String, u64)> {
    let len = usize::from(u16::from_be_bytes(k.get(..2)?.try_into().ok()?));
    let unit = std::str::from_utf8(k.get(2..2 + len)?).ok()?;
    let seq = u64::from_be_bytes(k.get(2 + len..)?.try_into().ok()?);
    Some((unit.to_owned(), seq))
}

impl Storage {
    /// Opens (or creates) the store under `dir` and loads every unit into memory.
    ///
    /// A dir still being released (a restart in the same process or a previous process
    /// exiting) is retried for up to 2 s.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Sled(e.into()))?;
        let db = outpost_security::sled_lock::open_released(
            &sled::Config::new().path(dir.join("hq.sled")),
            Duration::from_secs(2),
        )
        .map_err(|e| {
            if outpost_security::sled_lock::is_lock_error(&e) {
                StorageError::Locked(dir.display().to_string())
            } else {
                StorageError::Sled(e)
            }
        })?;
        if db.tree_names().iter().any(|n| &n[..] == b"envelopes")
            && !db.open_tree("envelopes")?.is_empty()
        {
            return Err(StorageError::Corrupt(
                "the data dir holds envelopes in the old one-key-per-envelope layout; start with an empty dir".into(),
            ));
        }
        let runs = db.open_tree("runs")?;
        let mut units: HashMap<String, Vec<Envelope>> = HashMap::new();
        for kv in runs.iter() {
            let (k, v) = kv?;
            let (unit, seq) = decode_key(&k)
                .ok_or_else(|| StorageError::Corrupt(format!("bad key {:?}", &k[..])))?;
            let run = EnvelopeBatch::decode(&v[..])
                .map_err(|e| StorageError::Corrupt(format!("unit {unit} seq {seq}: {e}")))?;
            let list = units.entry(unit.clone()).or_default();
            for (i, env) in run.envelopes.into_iter().enumerate() {
                let expected = list.len() as u64 + 1;
                if seq + i as u64 != expected || env.seq != expected {
                    return Err(StorageError::Corrupt(format!(
                        "unit {unit}: seq {} follows {}",
                        env.seq,
                        list.len()
                    )));
                }
                list.push(env);
            }
        }
        let mut audit = AuditWatch::default();
        let mut names: Vec<&String> = units.keys().collect();
        names.sort();
        for unit in names {
            for env in &units[unit] {
                audit.observe(unit, env);
            }
        }
        Ok(Storage {
            db,
            runs,
            units: Mutex::new(units),
            audit: Mutex::new(audit),
        })
    }

    /// The one-time enrolment tokens, in this database ([`super::enrol::Tokens`]).
    pub fn enroll_tokens(&self) -> Result<super::enrol::Tokens, StorageError> {
        Ok(super::enrol::Tokens::new(
            self.db.open_tree(super::enrol::TOKENS_TREE)?,
        ))
    }

    /// The store rosters, in this database ([`super::roster::Rosters`]).
    pub fn rosters(&self) -> Result<super::roster::Rosters, StorageError> {
        Ok(super::roster::Rosters::new(
            self.db.open_tree(super::roster::ROSTERS_TREE)?,
        ))
    }

    fn audit(&self) -> MutexGuard<'_, AuditWatch> {
        // Updated in one call that leaves it consistent; a panic cannot half-apply it.
        self.audit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The last audit head `unit` reported.
    pub fn audit_head(&self, unit: &str) -> Option<AuditHead> {
        self.audit().head(unit)
    }

    /// Every report that showed a unit's audit chain went backwards, oldest first.
    pub fn audit_alerts(&self) -> Vec<ChainAlert> {
        self.audit().alerts().to_vec()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Envelope>>> {
        // A panic while holding it leaves consistent data (memory is updated last).
        self.units.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Highest contiguous sequence stored for `unit` (0 = none).
    pub fn acked(&self, unit: &str) -> u64 {
        self.lock().get(unit).map_or(0, |l| l.len() as u64)
    }

    /// The unit's envelopes in sequence order.
    pub fn received(&self, unit: &str) -> Vec<Envelope> {
        self.lock().get(unit).cloned().unwrap_or_default()
    }

    /// The unit's envelopes of one kind (an `EnvelopeKind` value), in sequence order.
    pub fn received_kind(&self, unit: &str, kind: i32) -> Vec<Envelope> {
        self.lock()
            .get(unit)
            .map(|l| l.iter().filter(|e| e.kind == kind).cloned().collect())
            .unwrap_or_default()
    }

    /// Units that uploaded anything, sorted.
    pub fn units(&self) -> Vec<String> {
        let mut units: Vec<String> = self.lock().keys().cloned().collect();
        units.sort();
        units
    }

    /// Stores `batch` (already validated envelopes, in the order sent) for `unit`:
    /// identical re-sends are ignored, the first conflict or gap stops the batch with
    /// everything before it stored. Not yet durable: call [`Storage::flush`] before
    /// acknowledging.
    pub fn append(&self, unit: &str, batch: &[Envelope]) -> Result<AppendOutcome, StorageError> {
        let mut units = self.lock();
        let list = units.entry(unit.to_owned()).or_default();
        let mut next = list.len() as u64 + 1;
        let mut fresh: Vec<&Envelope> = Vec::new();
        let mut duplicates = 0;
        let mut stop = None;
        for env in batch {
            if env.seq < next {
                // Either already stored before this batch or earlier in this batch.
                // Validated envelopes have seq >= 1; saturating keeps a bad one harmless.
                let index = env.seq.saturating_sub(1) as usize;
                let held = match list.get(index) {
                    Some(held) => held,
                    None => fresh[index - list.len()],
                };
                if held == env {
                    duplicates += 1;
                    continue;
                }
                stop = Some(AppendStop::Conflict { seq: env.seq });
                break;
            }
            if env.seq > next {
                stop = Some(AppendStop::Gap {
                    expected: next,
                    got: env.seq,
                });
                break;
            }
            fresh.push(env);
            next += 1;
        }
        let stored = fresh.len() as u64;
        let mut audit_alerts = Vec::new();
        if let Some(first) = fresh.first().map(|e| e.seq) {
            let run = EnvelopeBatch {
                envelopes: fresh.into_iter().cloned().collect(),
            };
            self.runs.insert(key(unit, first), run.encode_to_vec())?;
            let mut audit = self.audit();
            audit_alerts.extend(run.envelopes.iter().filter_map(|e| audit.observe(unit, e)));
            list.extend(run.envelopes);
        }
        Ok(AppendOutcome {
            acked: list.len() as u64,
            stored,
            duplicates,
            stop,
            audit_alerts,
        })
    }

    /// Makes everything appended so far durable (fsync). Concurrent callers share the
    /// work. Cancel-safe: dropping it only loses the wait.
    pub async fn flush(&self) -> Result<(), StorageError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_proto::hq::EnvelopeKind;

    fn env(seq: u64, body: &str) -> Envelope {
        Envelope {
            seq,
            kind: EnvelopeKind::Sale as i32,
            id: format!("id-{seq}"),
            at_unix_ms: 1,
            json: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_unit_then_seq() {
        assert_eq!(decode_key(&key("u-1", 7)), Some(("u-1".into(), 7)));
        assert!(key("a", 2) < key("a", 10));
        assert_eq!(decode_key(b"\x00"), None);
        assert_eq!(decode_key(b"\x00\x05ab"), None);
        assert_eq!(decode_key(&key("a", 1)[..4]), None);
    }

    #[test]
    fn append_dedups_within_and_across_batches_and_stops_at_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let out = s
            .append("u", &[env(1, "a"), env(2, "b"), env(2, "b")])
            .unwrap();
        assert_eq!((out.acked, out.stored, out.duplicates), (2, 2, 1));
        let out = s
            .append("u", &[env(2, "b"), env(3, "c"), env(5, "e")])
            .unwrap();
        assert_eq!(out.acked, 3);
        assert_eq!(
            out.stop,
            Some(AppendStop::Gap {
                expected: 4,
                got: 5
            })
        );
        let out = s.append("u", &[env(4, "d"), env(4, "X")]).unwrap();
        assert_eq!(out.stop, Some(AppendStop::Conflict { seq: 4 }));
        assert_eq!(out.acked, 4);
        assert_eq!(s.acked("other"), 0);
        drop(s);
        let s = Storage::open(dir.path()).unwrap();
        let got: Vec<u64> = s.received("u").iter().map(|e| e.seq).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(s.units(), vec!["u".to_owned()]);
    }

    #[test]
    fn a_data_dir_in_the_old_per_envelope_layout_is_refused() {
        // Reading only `runs` would have served an HQ that forgot what it acknowledged.
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("hq.sled")).unwrap();
            let old = db.open_tree("envelopes").unwrap();
            old.insert(key("u", 1), env(1, "a").encode_to_vec())
                .unwrap();
            db.flush().unwrap();
        }
        let err = Storage::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("old"), "{err}");
    }

    #[test]
    fn envelopes_are_listed_by_kind_in_sequence_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let mut alert = env(2, "{\"type\":\"alert\"}");
        alert.kind = EnvelopeKind::Alert as i32;
        let mut telemetry = env(4, "{}");
        telemetry.kind = EnvelopeKind::Telemetry as i32;
        let mut alert2 = env(5, "{}");
        alert2.kind = EnvelopeKind::Alert as i32;
        s.append("u", &[env(1, "a"), alert, env(3, "c"), telemetry, alert2])
            .unwrap();
        let alerts: Vec<u64> = s
            .received_kind("u", EnvelopeKind::Alert as i32)
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(alerts, vec![2, 5]);
        assert_eq!(
            s.received_kind("u", EnvelopeKind::Telemetry as i32).len(),
            1
        );
        assert!(
            s.received_kind("other", EnvelopeKind::Alert as i32)
                .is_empty()
        );
    }
}
