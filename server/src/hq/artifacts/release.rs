//! A release from the mesh, handed to the updater: the sealed tar is opened with the
//! key HQ sent, its files checked against the signed manifest, the release staged,
//! self-tested and switched, and the unit restarts into it (on probation until its
//! health gate; the census tells HQ how that ended). The updater lives above this
//! layer, so it comes in as a [`ReleaseInstaller`] (`crate::update::distribute`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use outpost_p2p::Root;
use outpost_security::stream::StreamKey;
use outpost_updater::semver::Version;

use super::{ArtifactStage, Artifacts, now_ms, unhex};
use crate::store::StoreError;

/// Why a release from the mesh was not switched to: the updater's stable code and
/// its words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} [{code}]")]
pub struct InstallError {
    /// The updater's code (`docs/updates.md`), e.g. `bad_signature`, `no_delta`.
    pub code: String,
    /// What went wrong, for HQ's operator.
    pub message: String,
}

/// Installs releases that came through the mesh.
pub trait ReleaseInstaller: Send + Sync {
    /// Opens the sealed release at `sealed` with `key`, checks it is `version`, and
    /// installs it up to the switch (verify, stage, self-test, switch). Blocking.
    fn install(
        &self,
        sealed: &Path,
        key: &StreamKey,
        version: &Version,
    ) -> Result<(), InstallError>;

    /// Restarts the unit into the release switched to (once its record is durable).
    fn restart(&self);
}

impl Artifacts {
    /// Install the complete release at `path`.
    pub(super) async fn apply_release(
        &self,
        root: Root,
        path: PathBuf,
        version: Version,
    ) -> Result<(), StoreError> {
        let Some(mut r) = self.get(&root)? else {
            return Ok(());
        };
        if r.stage == ArtifactStage::Applied {
            return Ok(());
        }
        // Killed after the switch and before the record said so: this process is the
        // release.
        if outpost_updater::stamp::running_version() == version {
            return self.applied(root, r).await;
        }
        let Some(installer) = self.releases.clone() else {
            return self
                .fail(&root, "this unit no longer updates itself".into())
                .await;
        };
        let Some(key) = unhex(&r.content_key).and_then(|k| StreamKey::from_slice(&k).ok()) else {
            return self
                .fail(&root, "the recorded content key is unusable".into())
                .await;
        };
        if r.stage != ArtifactStage::Applying {
            r.stage = ArtifactStage::Applying;
            self.put(&r).await?;
        }
        let started = std::time::Instant::now();
        let v = version.clone();
        let i = Arc::clone(&installer);
        let result = tokio::task::spawn_blocking(move || i.install(&path, &key, &v)).await;
        match result {
            Ok(Ok(())) => {
                tracing::info!(root = %r.root, release = %version, install_ms = started.elapsed().as_millis() as u64, "Switched to a release from the store mesh; restarting into it");
                self.applied(root, r).await?;
                installer.restart();
                Ok(())
            }
            Ok(Err(e)) => self.fail(&root, e.to_string()).await,
            Err(e) => self.fail(&root, format!("install task failed: {e}")).await,
        }
    }

    async fn applied(&self, root: Root, mut r: super::Record) -> Result<(), StoreError> {
        r.stage = ArtifactStage::Applied;
        r.error = None;
        r.finished_at_ms = Some(now_ms());
        self.put(&r).await?;
        self.release_older(&root).await
    }
}
