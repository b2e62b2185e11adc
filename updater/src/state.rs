//! The update journal (`update-state.json` in the releases directory): the release
//! switched and waiting for its health gate, and the last update's result. Written
//! whole (temp file, fsync, rename) before every step it records, so whoever starts
//! next (the guard, the new release, the old one after a rollback) knows where the
//! update stands.

use std::path::Path;

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::error::UpdateError;
use crate::fsx;

/// The journal.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdateState {
    /// A release switched to and not yet through its gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The last update's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Outcome>,
    /// A technician asked the running server to roll back; the guard does it before
    /// the next start, with the server stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_requested: Option<RollbackRequest>,
}

/// A rollback asked of a running server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RollbackRequest {
    /// The release running when it was asked.
    pub from: Version,
    /// The release to go back to (`previous` then).
    pub to: Version,
    /// Who asked.
    pub by: String,
    /// Unix seconds.
    pub at: i64,
}

/// A switched release on probation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The release that was running before.
    pub from: Version,
    /// The release switched to.
    pub to: Version,
    /// Unix seconds of the switch.
    pub switched_at: i64,
    /// Starts of `to` so far (the guard counts each before it happens).
    pub starts: u32,
    /// Set by `to` when its gate failed: the guard rolls back at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_failed: Option<String>,
    /// The data dir to snapshot before `to`'s first start (a migrating release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Whether the snapshot of `data_dir` was taken.
    #[serde(default)]
    pub snapshot_taken: bool,
}

/// How an update ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Result {
    /// The release passed its gate and runs.
    Installed,
    /// The release failed (crash loop, failed gate, no gate in time) and the previous
    /// one runs again.
    RolledBack,
    /// A technician rolled back a release that had passed.
    RolledBackByHand,
}

impl Result {
    /// Its name, as in the journal: `installed`, `rolled_back`, `rolled_back_by_hand`.
    pub fn as_str(self) -> &'static str {
        match self {
            Result::Installed => "installed",
            Result::RolledBack => "rolled_back",
            Result::RolledBackByHand => "rolled_back_by_hand",
        }
    }
}

/// The last update's result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    /// The release the update was to.
    pub version: Version,
    /// The release before it.
    pub from: Version,
    /// What happened.
    pub result: Result,
    /// Why, in words.
    pub reason: String,
    /// Unix seconds.
    pub at: i64,
    /// Whether the running server has reported it to HQ.
    #[serde(default)]
    pub reported: bool,
}

impl UpdateState {
    /// The journal at `path`; none yet is the empty journal.
    pub fn load(path: &Path) -> std::result::Result<UpdateState, UpdateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| UpdateError::Malformed {
                what: "update journal",
                reason: format!("{}: {e}", path.display()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UpdateState::default()),
            Err(e) => Err(UpdateError::io("read", path, e)),
        }
    }

    /// The journal of the releases directory `releases`, or the empty journal when
    /// there is none (no directory, no journal yet, or one that cannot be read: this
    /// is for reports, which must not fail for it).
    pub fn of_releases(releases: Option<&Path>) -> UpdateState {
        releases
            .map(|d| crate::layout::Layout::new(d).state_path())
            .and_then(|p| UpdateState::load(&p).ok())
            .unwrap_or_default()
    }

    /// Writes the journal durably.
    pub fn save(&self, path: &Path) -> std::result::Result<(), UpdateError> {
        // Versions, strings and numbers always serialise.
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        fsx::write_atomic(path, &bytes, 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("update-state.json");
        assert_eq!(UpdateState::load(&p).unwrap(), UpdateState::default());
        let s = UpdateState {
            pending: Some(Pending {
                from: Version::new(1, 0, 0),
                to: Version::new(1, 1, 0),
                switched_at: 5,
                starts: 1,
                gate_failed: None,
                data_dir: None,
                snapshot_taken: false,
            }),
            last: None,
            rollback_requested: None,
        };
        s.save(&p).unwrap();
        assert_eq!(UpdateState::load(&p).unwrap(), s);
        for r in [
            Result::Installed,
            Result::RolledBack,
            Result::RolledBackByHand,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        std::fs::write(&p, b"{not json").unwrap();
        assert_eq!(UpdateState::load(&p).unwrap_err().code(), "malformed");
    }
}
