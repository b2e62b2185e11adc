//! What the unit trusts about releases, kept in the data dir's sealed `meta` tree (so
//! neither a thief with the disk nor an edited config can change it): the release root
//! (the first one from `[updates] release_root`, trusted at first use; later ones
//! only by rotation from the kept one) and the highest release ever installed (the
//! anti-rollback floor, raised when a release passes its gate).

use std::path::Path;

use outpost_updater::root::Root;
use outpost_updater::semver::Version;
use outpost_updater::signed::SignedDoc;

use crate::config::UpdateSettings;
use crate::store::Store;

/// Why the release root or the floor could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseTrustError {
    /// The updater refused the root (signature, shape, chain).
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

impl From<outpost_updater::UpdateError> for ReleaseTrustError {
    fn from(e: outpost_updater::UpdateError) -> Self {
        ReleaseTrustError::Update(Box::new(e))
    }
}

impl ReleaseTrustError {
    /// A stable code: the updater's, or `untrusted`, `store`, `invalid`.
    pub fn code(&self) -> &'static str {
        match self {
            ReleaseTrustError::Update(e) => e.code(),
            ReleaseTrustError::Store(_) => "store",
            ReleaseTrustError::NoRoot => "untrusted",
            ReleaseTrustError::Invalid(_) => "invalid",
        }
    }
}

const ROOT_KEY: &str = "updates.release_root";
const FLOOR_KEY: &str = "updates.highest_installed";

/// Root documents a release bundle may carry for rotation: `root-<version>.json`.
fn rotation_file(dir: &Path, version: u64) -> std::path::PathBuf {
    dir.join(format!("root-{version}.json"))
}

fn read_doc(path: &Path) -> Result<SignedDoc, ReleaseTrustError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ReleaseTrustError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    Ok(SignedDoc::from_json(&bytes, "release root")?)
}

/// The trusted release root: the kept one, rotated through the `root-<n>.json` files
/// of `bundle` (when given) one version at a time; the configured first root when none
/// is kept yet (checked to be signed by its own threshold). With `persist`, the result
/// is kept.
pub fn trusted_root(
    store: &Store,
    settings: &UpdateSettings,
    bundle: Option<&Path>,
    persist: bool,
) -> Result<Root, ReleaseTrustError> {
    let (mut root, mut doc, mut changed) = match store.meta_get(ROOT_KEY)? {
        Some(bytes) => {
            let doc = SignedDoc::from_json(&bytes, "release root")?;
            (Root::parse(&doc)?, doc, false)
        }
        None => {
            let path = settings
                .release_root
                .as_deref()
                .ok_or(ReleaseTrustError::NoRoot)?;
            let doc = read_doc(path)?;
            let root = Root::parse(&doc)?;
            root.verify(&doc, "release root")?;
            (root, doc, true)
        }
    };
    if let Some(dir) = bundle {
        loop {
            let next = rotation_file(dir, root.version + 1);
            if !next.is_file() {
                break;
            }
            let next_doc = read_doc(&next)?;
            root = root.rotate(&next_doc)?;
            doc = next_doc;
            changed = true;
        }
    }
    if persist && changed {
        store.meta_put(ROOT_KEY, &doc.to_json())?;
        tracing::info!(version = root.version, "Release root kept");
    }
    Ok(root)
}

/// The highest release ever installed here, if one was recorded.
pub fn floor(store: &Store) -> Result<Option<Version>, ReleaseTrustError> {
    match store.meta_get(FLOOR_KEY)? {
        Some(bytes) => {
            let s = String::from_utf8(bytes).map_err(|_| {
                ReleaseTrustError::Invalid("the kept release floor is not text".into())
            })?;
            Version::parse(&s)
                .map(Some)
                .map_err(|e| ReleaseTrustError::Invalid(format!("the kept release floor: {e}")))
        }
        None => Ok(None),
    }
}

/// Raises the floor to `v` (never lowers it).
pub fn raise_floor(store: &Store, v: &Version) -> Result<(), ReleaseTrustError> {
    if floor(store)?.is_some_and(|f| f >= *v) {
        return Ok(());
    }
    store.meta_put(FLOOR_KEY, v.to_string().as_bytes())?;
    Ok(())
}
