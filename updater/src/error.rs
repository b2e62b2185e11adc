//! Why an update was refused or failed. Every variant names what was wrong in words a
//! technician can act on, and has a stable [`UpdateError::code`] for the audit log,
//! the API and HQ's report.

use std::path::PathBuf;

/// An update refused, or a step of one that failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The document carries no signature at all.
    #[error("the {what} is not signed")]
    Unsigned {
        /// "release manifest" or "release root".
        what: &'static str,
    },
    /// Fewer valid signatures from trusted keys than the threshold.
    #[error(
        "the {what} has {valid} valid signature(s) from trusted release keys; {threshold} needed"
    )]
    BadSignature {
        /// "release manifest" or "release root".
        what: &'static str,
        /// Distinct trusted keys whose signature verified.
        valid: usize,
        /// The root's threshold.
        threshold: u32,
    },
    /// The document is not what it claims to be or is malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest (or root) is past its expiry: a freeze attack or a stale copy.
    #[error("the {what} expired at {expired} (unix time), now is {now}: ask HQ for a fresh one")]
    Expired {
        /// "release manifest" or "release root".
        what: &'static str,
        /// Its expiry, unix seconds.
        expired: i64,
        /// The trusted time, unix seconds.
        now: i64,
    },
    /// A release older than the highest ever installed on this unit.
    #[error(
        "release {release} is older than {highest}, the highest ever installed here: downgrades are refused"
    )]
    Downgrade {
        /// The offered release.
        release: String,
        /// The anti-rollback floor.
        highest: String,
    },
    /// The release is the one running.
    #[error("release {0} is already running")]
    AlreadyRunning(String),
    /// The running version is older than the release's minimum.
    #[error("release {release} upgrades only from {min_from} or later; this unit runs {running}")]
    TooOld {
        /// The offered release.
        release: String,
        /// Its minimum.
        min_from: String,
        /// The running version.
        running: String,
    },
    /// Built for another machine.
    #[error("release {release} is built for {target}; this unit is {ours}")]
    WrongTarget {
        /// The offered release.
        release: String,
        /// Its target triple.
        target: String,
        /// This unit's.
        ours: String,
    },
    /// A file whose size or hash is not the manifest's.
    #[error(
        "{name} does not belong to release {release}: {detail} (a damaged or tampered file, or one from another release)"
    )]
    FileMismatch {
        /// The file's name in the manifest.
        name: String,
        /// The release of the manifest.
        release: String,
        /// Which of size or hash differs, with both values.
        detail: String,
    },
    /// The binary inside the release says it is another version.
    #[error(
        "the binary of release {release} says it is {stamped}: the files are of another release"
    )]
    StampMismatch {
        /// The manifest's release.
        release: String,
        /// What the binary's version slot holds.
        stamped: String,
    },
    /// A root rotation that does not chain from the trusted root.
    #[error("release root {next} does not follow root {current}: {reason}")]
    RootChain {
        /// The trusted root's version.
        current: u64,
        /// The offered root's version.
        next: u64,
        /// Why.
        reason: String,
    },
    /// No delta from the running version here, and no full archive: HQ must send the
    /// full artifact.
    #[error(
        "release {release} came without a delta from {from} (the running binary) and without its full archive: HQ must offer the full artifact"
    )]
    NoDelta {
        /// The offered release.
        release: String,
        /// The running version.
        from: String,
    },
    /// An update is already switched and waiting for its health gate.
    #[error("release {0} is switched and waiting for its health gate; one update at a time")]
    Busy(String),
    /// Nothing to roll back to.
    #[error("there is no previous release to roll back to")]
    NoPrevious,
    /// The new binary's self-test failed; nothing was switched.
    #[error("release {release} failed its self-test: {reason}")]
    SelfTest {
        /// The release.
        release: String,
        /// What the self-test printed or why it could not run.
        reason: String,
    },
    /// A file-system step failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "rename", ...).
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl UpdateError {
    /// A stable code for logs, the API, the audit log and HQ.
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::Unsigned { .. } => "unsigned",
            UpdateError::BadSignature { .. } => "bad_signature",
            UpdateError::Malformed { .. } => "malformed",
            UpdateError::Expired { .. } => "expired",
            UpdateError::Downgrade { .. } => "downgrade",
            UpdateError::AlreadyRunning(_) => "already_running",
            UpdateError::TooOld { .. } => "too_old",
            UpdateError::WrongTarget { .. } => "wrong_target",
            UpdateError::FileMismatch { .. } => "file_mismatch",
            UpdateError::StampMismatch { .. } => "stamp_mismatch",
            UpdateError::RootChain { .. } => "root_chain",
            UpdateError::NoDelta { .. } => "no_delta",
            UpdateError::Busy(_) => "busy",
            UpdateError::NoPrevious => "no_previous",
            UpdateError::SelfTest { .. } => "self_test_failed",
            UpdateError::Io { .. } => "io",
        }
    }

    /// An I/O error at `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        UpdateError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
