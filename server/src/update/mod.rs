//! Self-update in the server: the release root and the anti-rollback floor kept
//! sealed in the data dir ([`trust`]), and the health gate a new release must pass
//! after it starts ([`gate`]) and what passing or failing it means ([`probation`]). Verifying, staging, switching and rolling back are
//! `outpost-updater`'s; `docs/updates.md` tells the whole flow.

pub mod gate;
pub mod probation;
pub mod trust;

/// Why an update step in the server failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateFlowError {
    /// The updater refused or failed.
    #[error(transparent)]
    Update(Box<outpost_updater::UpdateError>),
    /// The data dir could not be read or written.
    #[error("the data dir: {0}")]
    Store(#[from] crate::store::StoreError),
    /// No release root is trusted yet, and none is configured.
    #[error(
        "no release root is trusted yet: set [updates] release_root to HQ's root document (first use only)"
    )]
    NoRoot,
    /// A stored or configured value is unreadable.
    #[error("{0}")]
    Invalid(String),
}

impl From<outpost_updater::UpdateError> for UpdateFlowError {
    fn from(e: outpost_updater::UpdateError) -> Self {
        UpdateFlowError::Update(Box::new(e))
    }
}

impl UpdateFlowError {
    /// A stable code: the updater's, or `untrusted`, `store`, `invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            UpdateFlowError::Update(e) => e.code(),
            UpdateFlowError::Store(_) => "store",
            UpdateFlowError::NoRoot => "untrusted",
            UpdateFlowError::Invalid(_) => "invalid",
        }
    }
}
